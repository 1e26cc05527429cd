using LongCat.Model;
using LongCat.Training;

namespace LongCat.Tests;

/// <summary>AdamW against a naive per-element reference (same float operations, so bitwise), and the schedules.</summary>
public class OptimizerTests
{
    [Fact]
    public unsafe void AdamWMatchesNaiveReferenceWithGroupsAndDecayRules()
    {
        var config = TrainingModels.Tiny;
        using var p = ParameterStore.Random(config, 3);
        double[] lrMult = [1.0, 0.5, 2.0, 0.25, 3.0];
        var o = new AdamWOptions { Beta1 = 0.9, Beta2 = 0.95, Epsilon = 1e-8, WeightDecay = 0.1, LrMultipliers = lrMult };
        using var opt = new AdamW(p, o);
        int n = (int)p.Length;
        var values = new Span<float>(p.ValuesPointer, n).ToArray();
        var m = new float[n]; var v = new float[n];
        var rng = new Random(1);
        for (int step = 1; step <= 3; step++)
        {
            var g = new Span<float>(p.GradsPointer, n);
            for (int i = 0; i < n; i++) g[i] = (float)(rng.NextDouble() - 0.5) * 1e-2f;
            double lr = 1e-2 * step, scale = 0.5;
            opt.Update(lr, scale);
            double bc1 = 1 - Math.Pow(0.9, step), bc2 = 1 - Math.Pow(0.95, step);
            foreach (var e in p.Table.Entries)
            {
                if (!e.Trainable) continue;
                var grp = ParameterGroups.Of(e);
                double glr = lr * lrMult[(int)grp];
                float decay = (float)(1 - glr * (grp == ParameterGroup.Norm ? 0 : 0.1)), stepSize = (float)(glr / bc1), bc2s = (float)Math.Sqrt(bc2);
                for (long i = e.Offset; i < e.Offset + e.Count; i++)
                {
                    float gi = g[(int)i] * (float)scale, pi = values[i] * decay, mi = m[i];
                    mi += (1f - 0.9f) * (gi - mi);
                    float vi = v[i] * 0.95f + (1f - 0.95f) * gi * gi;
                    pi -= stepSize * (mi / (MathF.Sqrt(vi) / bc2s + 1e-8f));
                    values[i] = pi; m[i] = mi; v[i] = vi;
                }
            }
            Assert.True(values.AsSpan().SequenceEqual(new ReadOnlySpan<float>(p.ValuesPointer, n)), $"values differ at step {step}");
            Assert.True(m.AsSpan().SequenceEqual(opt.FirstMoment), $"first moments differ at step {step}");
            Assert.True(v.AsSpan().SequenceEqual(opt.SecondMoment), $"second moments differ at step {step}");
        }
        // The router's selection bias is not trained (the budget controller owns it).
        Assert.All(p["model.layers.0.mlp.router.e_score_correction_bias"].Value.ToArray(), x => Assert.Equal(0f, x));
        Assert.Equal(3, opt.Step);
    }

    [Fact]
    public unsafe void GradientNormIsTheFixedOrderSumOfSquares()
    {
        using var p = ParameterStore.Random(TrainingModels.Tiny, 3);
        using var opt = new AdamW(p, new AdamWOptions());
        var g = new Span<float>(p.GradsPointer, (int)p.Length);
        double expected = 0;
        foreach (var e in p.Table.Entries)
            for (long i = e.Offset; i < e.Offset + e.Count; i++)
            {
                g[(int)i] = (i % 7) * 0.25f - 0.5f;
                if (e.Trainable) expected += (double)g[(int)i] * g[(int)i];
            }
        Assert.Equal(expected, opt.GradSquaredSum(), 9);
        g[5] = float.NaN;
        Assert.True(double.IsNaN(opt.GradSquaredSum()));
    }

    [Fact]
    public unsafe void ShardedOptimizersTogetherEqualTheWholeOne()
    {
        // ZeRO-1's building block: 3 optimizers over AdamW.ShardStarts ranges update exactly the values of one
        // optimizer over everything, and their chunk partials add up (in order) to the same gradient norm.
        var config = TrainingModels.Tiny;
        using var whole = ParameterStore.Random(config, 3);
        int n = (int)whole.Length;
        var grads = new Span<float>(whole.GradsPointer, n);
        var rng = new Random(2);
        for (int i = 0; i < n; i++) grads[i] = (float)(rng.NextDouble() - 0.5);
        var starts = AdamW.ShardStarts(whole.Table, 3);
        Assert.Equal(0, starts[0]);
        Assert.Equal(whole.Length, starts[3]);
        for (int k = 0; k < 3; k++) Assert.True(starts[k] < starts[k + 1], $"shard {k} is empty");
        using var sharded = ParameterStore.Random(config, 3);
        new Span<float>(whole.GradsPointer, n).CopyTo(new Span<float>(sharded.GradsPointer, n));
        var o = new AdamWOptions { WeightDecay = 0.1 };
        using var one = new AdamW(whole, o);
        var parts = Enumerable.Range(0, 3).Select(k => new AdamW(sharded, o, starts[k], starts[k + 1])).ToArray();
        try
        {
            double norm = 0;
            foreach (var part in parts) foreach (var x in part.GradSquaredPartials()) norm += x;
            Assert.Equal(one.GradSquaredSum(), norm);
            Assert.Equal(parts.Sum(x => x.ChunkCount), one.ChunkCount);
            for (int step = 0; step < 3; step++)
            {
                one.Update(1e-2, 0.5);
                foreach (var part in parts) part.Update(1e-2, 0.5);
            }
            Assert.True(new Span<float>(whole.ValuesPointer, n).SequenceEqual(new Span<float>(sharded.ValuesPointer, n)), "sharded updates differ from the whole one");
            for (int k = 0; k < 3; k++)
                Assert.True(one.SecondMoment[(int)starts[k]..(int)starts[k + 1]].SequenceEqual(parts[k].OwnedSecondMoment), $"shard {k}'s moments differ");
            Assert.Throws<InvalidOperationException>(() => parts[1].FirstMoment.Length);
        }
        finally { foreach (var part in parts) part.Dispose(); }
    }

    [Fact]
    public void SchedulesHaveTheirShapes()
    {
        var cos = new LearningRateSchedule { Kind = ScheduleKind.Cosine, Peak = 1, WarmupSteps = 10, TotalSteps = 110, MinRatio = 0.1 };
        Assert.Equal(0.1, cos.At(0), 12);
        Assert.Equal(1.0, cos.At(9), 12);
        Assert.Equal(1.0, cos.At(10), 12);
        Assert.InRange(cos.At(60), 0.5, 0.6);
        Assert.Equal(0.1, cos.At(109), 12);
        var wsd = new LearningRateSchedule { Kind = ScheduleKind.WarmupStableDecay, Peak = 2, WarmupSteps = 0, TotalSteps = 100, MinRatio = 0, DecaySteps = 21 };
        Assert.Equal(2.0, wsd.At(0));
        Assert.Equal(2.0, wsd.At(78));
        Assert.Equal(2.0, wsd.At(79));
        Assert.Equal(1.0, wsd.At(89), 12);
        Assert.Equal(0.0, wsd.At(99), 12);
        Assert.Equal(3.0, new LearningRateSchedule { Kind = ScheduleKind.Constant, Peak = 3, TotalSteps = 5 }.At(4));
        Assert.Throws<ArgumentException>(() => LearningRateSchedule.ParseKind("exponential"));
    }

    [Fact]
    public void InitVarianceMultipliersScaleTheirGroupOnly()
    {
        var config = TrainingModels.Tiny;
        using var a = ParameterStore.Random(config, 9);
        using var b = ParameterStore.Random(config, 9);
        ParameterGroups.ScaleInitVariance(b, [1.0, 0.25, 1.0, 4.0, 1.0]);   // hidden std x0.5, unembedding std x2
        foreach (var e in a.Table.Entries)
        {
            float s = e.Kind switch { TensorKind.Linear => 0.5f, TensorKind.LmHead => 2f, _ => 1f };
            var x = a[e.Name].Value; var y = b[e.Name].Value;
            for (int i = 0; i < x.Length; i++) Assert.Equal(x[i] * s, y[i]);
        }
    }
}
