using LongCat.Config;
using LongCat.IO;
using LongCat.Kernels;
using LongCat.Training;

namespace LongCat.Tests;

/// <summary>Losses and every gradient are bitwise identical for any thread count, and across repeated steps.</summary>
public class TrainingDeterminismTests
{
    [Fact]
    public void FixtureGradientsAreBitwiseIdenticalForAnyThreadCount()
    {
        var dir = Fixtures.Reference("tiny");
        using var model = TrainableModel.Load(dir);
        using var expected = SafeTensorFile.Open(Path.Combine(dir, "expected.safetensors"));
        var t = expected.Tensor("input_ids");
        var ids = t.ToInt64().Select(v => (int)v).ToArray();
        AssertThreadIndependent(model, ids, (int)t.Shape[0], (int)t.Shape[1], new LossOptions());
    }

    // Big enough that GEMM tiles, attention tasks and norm chunks really split across threads.
    static LongCatConfig Larger => TrainingModels.Tiny with
    {
        VocabSize = 300, HiddenSize = 80, NumAttentionHeads = 3, QLoraRank = 40, KvLoraRank = 24,
        QkNopeHeadDim = 8, QkRopeHeadDim = 8, VHeadDim = 8, FfnHiddenSize = 96, ExpertFfnHiddenSize = 24,
        NRoutedExperts = 6, ZeroExpertNum = 3, MoeTopK = 4,
    };

    [Theory]
    [InlineData(LongCatConfig.ShortcutTopology)]
    [InlineData(LongCatConfig.InterleavedTopology)]
    public void LargerModelWithEveryLossIsBitwiseIdenticalForAnyThreadCount(string topology)
    {
        var config = Larger with { FfnTopology = topology };
        using var model = TrainingModels.Random(config, seed: 21, std: 0.1, mtp: true);
        var ids = TrainingModels.Ids(config.VocabSize, 3, 40, seed: 9);
        AssertThreadIndependent(model, ids, 3, 40,
            new LossOptions { MtpWeight = 0.5, LoadBalanceAlpha = 0.01, LoadBalanceGroups = 3, HiddenZLossLambda = 1e-4 });
    }

    static void AssertThreadIndependent(TrainableModel model, int[] ids, int b, int s, LossOptions options)
    {
        int saved = Parallelism.Threads;
        try
        {
            Parallelism.Threads = 1;
            var (loss1, grads1) = Step(model, ids, b, s, options);
            foreach (var threads in new[] { 2, 3, 1 })
            {
                Parallelism.Threads = threads;
                var (loss, grads) = Step(model, ids, b, s, options);
                Assert.Equal(loss1, loss);
                Assert.True(grads1.AsSpan().SequenceEqual(grads), $"gradients differ with {threads} threads");
            }
        }
        finally { Parallelism.Threads = saved; }
    }

    static unsafe (LossResult, float[]) Step(TrainableModel model, int[] ids, int b, int s, LossOptions options)
    {
        var p = model.Parameters;
        p.ZeroGrads();
        var loss = model.ForwardBackward(ids, b, s, options);
        return (loss, new ReadOnlySpan<float>(p.GradsPointer, checked((int)p.Length)).ToArray());
    }
}
