using LongCat.Config;
using LongCat.Model;
using LongCat.Training;
using Xunit.Abstractions;

namespace LongCat.Tests;

/// <summary>
/// The run states (workspaces): once the shapes stop growing, a training step and a decode step allocate no
/// activations, only the scheduling of parallel loops (about 1.5 KB per Parallel.For, whatever the size) and what the
/// API returns. Measured on the calling thread, where every module sizes its buffers.
/// </summary>
public class AllocationTests(ITestOutputHelper output)
{
    static LongCatConfig Config => TrainingModels.Tiny with { HiddenSize = 64, QLoraRank = 48, KvLoraRank = 32, FfnHiddenSize = 96, ExpertFfnHiddenSize = 32, VocabSize = 96 };

    [Fact]
    public void TrainingStepsAllocateNoActivations()
    {
        using var model = TrainableModel.Random(Config, 5, 0.05, mtp: true);
        const int b = 2, s = 64;
        var ids = TrainingModels.Ids(Config.VocabSize, b, s, 1);
        var options = new LossOptions { MtpWeight = 0.3, LoadBalanceAlpha = 0.01, HiddenZLossLambda = 1e-4 };
        long first = Allocated(() => model.ForwardBackward(ids, b, s, options));
        model.ForwardBackward(ids, b, s, options);
        long steady = Allocated(() => model.ForwardBackward(ids, b, s, options));
        output.WriteLine($"training step [{b}, {s}]: first {first:N0} B (sizes every buffer), steady {steady:N0} B");
        // The activations kept for the backward are ~6 MB here; the loop scheduling is a fixed ~100 KB.
        Assert.True(steady * 16 < first, $"a steady training step allocated {steady:N0} bytes (the first, sizing every buffer, {first:N0})");
    }

    [Fact]
    public void DecodeStepsAllocateNoActivations()
    {
        using var model = LongCatModel.Load(Fixtures.Reference("tiny"));
        var cache = model.NewCache(64);
        model.Prefill([1, 2, 3, 4], cache);
        int token = 5;
        for (int i = 0; i < 3; i++) model.ForwardCached([token], cache);
        long early = Allocated(() => model.ForwardCached([token], cache));
        for (int i = 0; i < 40; i++) model.ForwardCached([token], cache);
        long late = Allocated(() => model.ForwardCached([token], cache));
        output.WriteLine($"decode step at position 8: {early:N0} B, at position 49: {late:N0} B (logits {4 * model.Config.VocabSize:N0} B)");
        // The model's own activations live in the workspace, so nothing it allocates grows with the context; what does
        // is the attention kernel's per-call score row (Kernels/Attention.cs: at most one float per head and cached
        // position in each head of each sublayer).
        var c = model.Config;
        long kernelScores = (41L * 4 + 8) * c.NumAttentionHeads * 2 * c.NumLayers; // + 8: array size rounding
        Assert.True(late <= early + kernelScores, $"a decode step allocated {early:N0} bytes at position 8 but {late:N0} at position 49");
    }

    static long Allocated(Action step)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        step();
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }
}
