using LongCat.Kernels;
using LongCat.Training;

namespace LongCat.Tests;

/// <summary>
/// The training loop's guarantees, on the tiny model with every feature on (MTP from step 2, load balance, z-loss,
/// budget controller, micro-batches, cosine schedule, validation): bitwise-identical loss curves and weights across runs
/// and thread counts, bit-exact resume, and fault skipping.
/// </summary>
// In the non-parallel collection: the thread-count test sets Parallelism.Threads, which must not be changed under it.
[Collection("Console")]
public class TrainingLoopTests
{
    static readonly string Data = TrainingRuns.SyntheticData(TrainingModels.Tiny.VocabSize);

    static TrainingOptions Options(string outDir, long steps = 8) => TrainingRuns.Options(TrainingModels.Tiny, Data, outDir, steps);

    [Fact]
    public void SameSeedGivesBitwiseIdenticalLossCurveAndWeightsForOneAndTwoThreads()
    {
        int saved = Parallelism.Threads;
        try
        {
            var runs = new List<(double[] Losses, float[] Weights, string Metrics)>();
            foreach (int threads in new[] { 1, 2 })
            {
                Parallelism.Threads = threads;
                var o = Options(Fixtures.NewTempDir());
                using var t = Trainer.Create(o);
                t.Run();
                runs.Add((TrainingRuns.Losses(o.OutDir), TrainingRuns.Values(t.Model.Parameters), File.ReadAllText(Path.Combine(o.OutDir, "metrics.jsonl"))));
            }
            Assert.Equal(8, runs[0].Losses.Length);
            var ce = TrainingRuns.StepLines(runs[0].Metrics.Split('\n')).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("ce").GetDouble()).ToArray();
            Assert.True(ce[^1] < ce[0], "the cross-entropy should fall");
            Assert.Equal(runs[0].Metrics.Split('\n').Where(l => l.Contains("val_loss")), runs[1].Metrics.Split('\n').Where(l => l.Contains("val_loss")));
            Assert.Equal(runs[0].Losses, runs[1].Losses);
            Assert.True(runs[0].Weights.AsSpan().SequenceEqual(runs[1].Weights), "final weights differ between 1 and 2 threads");
        }
        finally { Parallelism.Threads = saved; }
    }

    [Fact]
    public void TwoNStepsStraightEqualNPlusResumePlusNBitwise()
    {
        var straight = Options(Fixtures.NewTempDir());
        double[] lossesA;
        float[] weightsA, momentsA;
        using (var a = Trainer.Create(straight))
        {
            a.Run();
            lossesA = TrainingRuns.Losses(straight.OutDir);
            weightsA = TrainingRuns.Values(a.Model.Parameters);
            momentsA = a.Optimizer.SecondMoment.ToArray();
        }

        var split = Options(Fixtures.NewTempDir());
        using (var b1 = Trainer.Create(split))
        {
            while (b1.Step < 4) b1.TrainStep();
            b1.SaveCheckpoint();
            b1.TrainStep(); // progress after the checkpoint is lost, as in a crash: the resume redoes step 5
        }
        var latest = TrainingCheckpoint.FindLatest(Path.Combine(split.OutDir, "checkpoints"))!;
        Assert.EndsWith("step-00000004", latest);
        using (var b2 = Trainer.Create(split, latest))
        {
            Assert.Equal(4, b2.Step);
            b2.Run();
            Assert.Equal(lossesA, TrainingRuns.Losses(split.OutDir));
            Assert.True(weightsA.AsSpan().SequenceEqual(TrainingRuns.Values(b2.Model.Parameters)), "weights after resume differ from the straight run");
            Assert.True(momentsA.AsSpan().SequenceEqual(b2.Optimizer.SecondMoment), "Adam moments after resume differ");
        }
        // The final model folder is the official layout and reloads to the same weights.
        using var reloaded = ParameterStore.Load(Path.Combine(split.OutDir, "model"));
        Assert.True(weightsA.AsSpan().SequenceEqual(TrainingRuns.Values(reloaded)));
    }

    [Fact]
    public void NonFiniteGradientSkipsTheUpdateKeepsTheStateAndTheRunSurvives()
    {
        var o = Options(Fixtures.NewTempDir(), steps: 6) with { InjectNanAtSteps = [3] };
        using var t = Trainer.Create(o);
        var messages = new List<string>();
        t.Message += messages.Add;
        t.TrainStep();
        t.TrainStep();
        var weights = TrainingRuns.Values(t.Model.Parameters);
        var moments = t.Optimizer.FirstMoment.ToArray();
        var bias = t.Model.Parameters["model.layers.0.mlp.router.e_score_correction_bias"].Value.ToArray();
        var m3 = t.TrainStep();
        Assert.True(m3.Skipped);
        Assert.Equal(1, m3.Faults);
        Assert.True(weights.AsSpan().SequenceEqual(TrainingRuns.Values(t.Model.Parameters)), "a skipped step changed the weights");
        Assert.True(moments.AsSpan().SequenceEqual(t.Optimizer.FirstMoment), "a skipped step changed the moments");
        Assert.Equal(bias, t.Model.Parameters["model.layers.0.mlp.router.e_score_correction_bias"].Value.ToArray());
        Assert.Equal(2, t.Optimizer.Step);
        t.Run();
        Assert.Equal(6, t.Step);
        Assert.Equal(1, t.Faults);
        Assert.Single(messages, m => m.Contains("step 3: non-finite gradient", StringComparison.Ordinal));
        var lines = TrainingRuns.StepLines(o.OutDir);
        Assert.Contains("\"skipped\":true", lines[2]);
        Assert.All(TrainingRuns.Losses(o.OutDir), l => Assert.True(double.IsFinite(l)));
        Assert.Equal("step-00000006", Path.GetFileName(TrainingCheckpoint.FindLatest(t.CheckpointsDir)));
    }

    [Fact]
    public void PersistentFaultsStopTheRunWithAClearError()
    {
        var o = Options(Fixtures.NewTempDir(), steps: 6) with { InjectNanAtSteps = [2, 3, 4], MaxConsecutiveFaults = 3 };
        using var t = Trainer.Create(o);
        var e = Assert.Throws<InvalidOperationException>(() => t.Run());
        Assert.Contains("3 faulty steps in a row", e.Message);
    }

    [Fact]
    public void MetricsCarryEveryMonitor()
    {
        var o = Options(Fixtures.NewTempDir(), steps: 3);
        using var t = Trainer.Create(o);
        var m = t.TrainStep();
        Assert.Equal(2, m.ExpertsMean.Length);
        Assert.All(m.ExpertsMean, x => Assert.InRange(x, 0, 3));
        Assert.All(m.ExpertsStd, x => Assert.True(x > 0));
        Assert.All(m.RouterGradRatio, x => Assert.True(x > 0 && double.IsFinite(x)));   // load balance is on
        Assert.All(m.RouterCosine, x => Assert.InRange(x, -1, 1));
        Assert.True(m.HiddenRms > 0 && m.HiddenMaxAbs >= m.HiddenRms);
        Assert.True(m.GradNorm > 0 && m.GradRms > m.AdamEpsilon);
        Assert.Equal(0, m.Mtp);                     // MTP starts at step 2
        Assert.True(m.LoadBalance > 0 && m.HiddenZ > 0);
        t.TrainStep();
        Assert.True(t.TrainStep().Mtp > 0);
        var line = TrainingRuns.StepLines(o.OutDir)[0];
        foreach (var key in new[] { "loss", "ce", "mtp", "lb", "z", "lr", "grad_norm", "grad_rms", "adam_eps", "tokens_per_s", "experts_mean", "experts_std", "router_grad_ratio", "router_cosine", "hidden_rms", "hidden_max_abs", "skipped", "faults" })
            Assert.Contains($"\"{key}\":", line);
        Assert.True(t.Validate() > 0);
    }
}
