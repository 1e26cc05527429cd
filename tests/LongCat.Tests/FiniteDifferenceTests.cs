using LongCat.Config;
using LongCat.Training;
using Xunit.Abstractions;

namespace LongCat.Tests;

/// <summary>
/// Central finite differences against the analytic gradients on tiny random models, for every tensor of the model
/// (its largest-gradient coordinate and two random ones), for the configurations and losses the reference fixtures
/// do not cover: tied embeddings, renormalised top-k, no MLA scales, the MTP loss, the device-level load-balance
/// loss, the hidden z-loss, and the interleaved MoE/dense layer (<c>ffn_topology</c>). A coordinate whose perturbation flips an expert choice is skipped (top-k is not
/// differentiable there); the tests require that almost none are.
/// </summary>
public class FiniteDifferenceTests(ITestOutputHelper output)
{
    const double Step = 2e-3;

    [Fact]
    public void CrossEntropyGradientsMatchFiniteDifferences() =>
        Check(TrainingModels.Tiny, mtp: false, new LossOptions());

    [Fact]
    public void TiedEmbeddingsRenormalisedTopKWithoutScalesMatchFiniteDifferences() =>
        Check(TrainingModels.Tiny with { TieWordEmbeddings = true, NormTopKProb = true, MlaScaleQLora = false, MlaScaleKvLora = false, ZeroExpertNum = 0, MoeTopK = 2 },
            mtp: false, new LossOptions());

    [Fact]
    public void MtpLossGradientsMatchFiniteDifferences() =>
        Check(TrainingModels.Tiny, mtp: true, new LossOptions { MtpWeight = 0.7 });

    [Fact]
    public void LoadBalanceLossGradientsMatchFiniteDifferences() =>
        Check(TrainingModels.Tiny, mtp: false, new LossOptions { LoadBalanceAlpha = 0.5, LoadBalanceGroups = 2, TargetRealExperts = 2 });

    [Fact]
    public void HiddenZLossGradientsMatchFiniteDifferences() =>
        Check(TrainingModels.Tiny, mtp: false, new LossOptions { HiddenZLossLambda = 0.01 });

    [Fact]
    public void AllLossesTogetherMatchFiniteDifferences() =>
        Check(TrainingModels.Tiny, mtp: true, new LossOptions { MtpWeight = 0.3, LoadBalanceAlpha = 0.2, LoadBalanceGroups = 4, HiddenZLossLambda = 0.003 });

    [Fact]
    public void InterleavedTopologyGradientsMatchFiniteDifferences() =>
        Check(TrainingModels.Tiny with { FfnTopology = LongCatConfig.InterleavedTopology }, mtp: false, new LossOptions());

    [Fact]
    public void InterleavedTopologyWithAllLossesMatchesFiniteDifferences() =>
        Check(TrainingModels.Tiny with { FfnTopology = LongCatConfig.InterleavedTopology }, mtp: true,
            new LossOptions { MtpWeight = 0.3, LoadBalanceAlpha = 0.2, LoadBalanceGroups = 4, HiddenZLossLambda = 0.003 });

    /// <summary>Supervised fine-tuning: the masked cross-entropy (only some targets trained, one row with none), plus the
    /// load-balance and z-losses that still see every token.</summary>
    [Fact]
    public void MaskedCrossEntropyGradientsMatchFiniteDifferences() =>
        Check(TrainingModels.Tiny, mtp: false, new LossOptions { LoadBalanceAlpha = 0.2, LoadBalanceGroups = 2, HiddenZLossLambda = 0.003 },
            mask: [0, 0, 1, 1, 0, 1, 1, /* row 2: nothing trained */ 0, 1, 0, 0, 0, 0, 0]);

    void Check(LongCatConfig config, bool mtp, LossOptions options, byte[]? mask = null)
    {
        const int batch = 2, seq = 7;
        using var m = TrainingModels.Random(config, seed: 11, std: 0.3, mtp);
        var ids = TrainingModels.Ids(config.VocabSize, batch, seq, seed: 5);
        var loss = mask is null ? m.ForwardBackward(ids, batch, seq, options) : m.ForwardBackward(ids, mask, batch, seq, options);
        var routing = m.LastRouting();
        if (options.MtpWeight > 0) Assert.True(loss.Mtp > 0);
        if (options.LoadBalanceAlpha > 0) Assert.True(loss.LoadBalance > 0);
        if (options.HiddenZLossLambda > 0) Assert.True(loss.HiddenZ > 0);
        output.WriteLine($"loss {loss}");

        var rng = new Random(3);
        int checkedCount = 0, skipped = 0;
        double worst = 0, worstAbs = 0;
        string worstAt = "";
        foreach (var e in m.Parameters.Table.Entries)
        {
            var p = m.Parameters[e.Name];
            var g = p.Grad.ToArray();
            if (!e.Trainable)
            {
                Assert.All(g, v => Assert.Equal(0f, v));
                continue;
            }
            double gmax = g.Max(v => Math.Abs((double)v));
            int argmax = Array.FindIndex(g, v => Math.Abs((double)v) == gmax);
            foreach (var i in new[] { argmax, rng.Next(g.Length), rng.Next(g.Length) })
            {
                float orig = p.Value[i];
                p.Value[i] = (float)(orig + Step);
                double up = (mask is null ? m.Loss(ids, batch, seq, options) : m.Loss(ids, mask, batch, seq, options)).Total;
                bool same = SameRouting(routing, m.LastRouting());
                p.Value[i] = (float)(orig - Step);
                double down = (mask is null ? m.Loss(ids, batch, seq, options) : m.Loss(ids, mask, batch, seq, options)).Total;
                same &= SameRouting(routing, m.LastRouting());
                p.Value[i] = orig;
                if (!same) { skipped++; continue; }
                double fd = (up - down) / (2 * Step);
                // Float32 forward noise (~1e-6 of the loss) over 2·Step, plus the O(Step²) truncation error.
                double err = Math.Abs(fd - g[i]);
                double scaled = err / (2e-4 + 0.02 * Math.Abs(g[i]) + 0.01 * gmax);
                checkedCount++;
                worstAbs = Math.Max(worstAbs, err);
                if (scaled > worst) { worst = scaled; worstAt = $"{e.Name}[{i}]: analytic {g[i]:E4}, finite difference {fd:E4}"; }
            }
        }
        output.WriteLine($"{checkedCount} coordinates checked, {skipped} skipped (expert choice flipped); max |analytic - finite difference| {worstAbs:E2}; worst error / tolerance {worst:F3} at {worstAt}");
        Assert.True(skipped <= checkedCount / 20, $"{skipped} of {checkedCount + skipped} perturbations flipped an expert choice");
        Assert.True(worst <= 1, $"gradient check failed at {worstAt}");
    }

    static bool SameRouting(int[][] a, int[][] b) => a.Length == b.Length && a.Zip(b).All(p => p.First.AsSpan().SequenceEqual(p.Second));
}
