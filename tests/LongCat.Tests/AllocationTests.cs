using LongCat.Config;
using LongCat.Inference;
using LongCat.Kernels;
using LongCat.Model;
using LongCat.Quantization;
using LongCat.Training;
using Xunit.Abstractions;

namespace LongCat.Tests;

/// <summary>
/// The run states (workspaces): once the shapes stop growing, a training step (forward, backward, AdamW) and a decode
/// step (batch 1 and batched, MTP on and off, every weight format) allocate nothing but what the API hands out per
/// token (<see cref="GeneratedToken"/> and its expert counts). Measured on one thread (Parallelism.Threads = 1), where
/// the count is exact; with more threads each Parallel.For that really runs in parallel adds its own bookkeeping (about
/// 1.6 KB), which the tests print. In the GEMM collection: the thread count is global, so nothing runs beside them.
/// </summary>
[Collection(nameof(GemmGlobalState))]
public class AllocationTests(ITestOutputHelper output)
{
    static LongCatConfig Config => TrainingModels.Tiny with { HiddenSize = 64, QLoraRank = 48, KvLoraRank = 32, FfnHiddenSize = 96, ExpertFfnHiddenSize = 32, VocabSize = 96 };

    /// <summary>Budget of a steady decode step of the model alone (ForwardCached / ForwardBatchRows reusing their results).</summary>
    const long StepBudget = 256;

    /// <summary>Budget per generated token of a session: the yielded token record and its per-layer expert counts, with margin.</summary>
    const long TokenBudget = 1024;

    /// <summary>Budget of a steady training step (forward + backward + AdamW): the returned loss result (56 B), with margin.</summary>
    const long TrainBudget = 1024;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TrainingStepsAllocateAlmostNothing(bool chatMasked)
    {
        using var model = TrainableModel.Random(Config, 5, 0.05, mtp: true);
        const int b = 2, s = 64;
        var ids = TrainingModels.Ids(Config.VocabSize, b, s, 1);
        var mask = new byte[ids.Length];
        for (int i = 0; i < mask.Length; i++) mask[i] = (byte)(i % s < s / 3 ? 0 : 1); // a prompt part without loss
        var options = new LossOptions { MtpWeight = chatMasked ? 0 : 0.3, LoadBalanceAlpha = 0.01, HiddenZLossLambda = 1e-4 };
        var adam = new AdamW(model.Parameters, new AdamWOptions());
        void Step()
        {
            model.Parameters.ZeroGrads();
            if (chatMasked) model.ForwardBackward(ids, mask, b, s, options);
            else model.ForwardBackward(ids, b, s, options);
            adam.Update(1e-3, 1.0);
        }
        var (first, steady) = OneThread(Step, warmup: 5, repeats: 8);
        long parallel = TwoThreads(Step);
        output.WriteLine($"training step [{b}, {s}] ({(chatMasked ? "chat-masked" : "plain, MTP")}): first {first:N0} B (sizes every buffer), steady {steady:N0} B on one thread, {parallel:N0} B with 2 threads (Parallel.For's bookkeeping)");
        Assert.True(steady <= TrainBudget, $"a steady training step allocated {steady:N0} bytes (budget {TrainBudget}; the first, sizing every buffer, {first:N0})");
    }

    [Theory]
    [InlineData("tiny", "f32")]
    [InlineData("tiny", "bf16")]
    [InlineData("tiny", "fp8")]
    [InlineData("tiny", "int8")]
    [InlineData("small-fp8", "as stored")]
    public void DecodeStepsAllocateNothing(string fixture, string format)
    {
        string dir = Fixtures.Reference(fixture), tmp = "";
        if (format is not "f32" and not "as stored")
        {
            tmp = Fixtures.NewTempDir();
            CheckpointQuantizer.Convert(dir, tmp, CheckpointQuantizer.ParseFormat(format));
            dir = tmp;
        }
        try
        {
            using var model = LongCatModel.Load(dir);
            var cache = model.NewCache(128);
            model.Prefill([1, 2, 3, 4], cache);
            StepResult? r = null;
            int token = 5;
            void Step()
            {
                r = model.ForwardCached([token], cache, allLogits: false, absorbed: null, reuse: r);
                token = 3 + Sampler.ArgMax(r.Logits) % (model.Config.VocabSize - 3);
            }
            var (first, steady) = OneThread(Step, warmup: 20);
            long parallel = TwoThreads(Step);
            output.WriteLine($"{fixture} {format}: decode step {steady:N0} B on one thread (first {first:N0} B), {parallel:N0} B with 2 threads");
            Assert.True(steady <= StepBudget, $"a steady decode step allocated {steady:N0} bytes (budget {StepBudget})");
        }
        finally { if (tmp != "") Directory.Delete(tmp, true); }
    }

    [Fact]
    public void BatchedDecodeStepsAllocateNothing()
    {
        using var model = LongCatModel.Load(Fixtures.Reference("tiny"));
        var caches = new[] { model.NewCache(128), model.NewCache(128), model.NewCache(128) };
        for (int i = 0; i < caches.Length; i++) model.Prefill([1, 2 + i, 3], caches[i]);
        var tokens = new[] { new[] { 5 }, new[] { 6 }, new[] { 7, 8 } }; // the last one verifies a draft
        int[] rows = [1, 1, 2];
        BatchRowsResult? r = null;
        void Step()
        {
            r = model.ForwardBatchRows(tokens, caches, rows, r);
            for (int i = 0; i < caches.Length; i++) caches[i].Truncate(caches[i].Length - tokens[i].Length + 1);
        }
        var (first, steady) = OneThread(Step, warmup: 10);
        output.WriteLine($"batched decode step (3 sequences, 4 rows): {steady:N0} B on one thread (first {first:N0} B), {TwoThreads(Step):N0} B with 2 threads");
        Assert.True(steady <= StepBudget, $"a steady batched decode step allocated {steady:N0} bytes (budget {StepBudget})");
    }

    [Theory]
    [InlineData(false, null)]
    [InlineData(true, null)]
    [InlineData(true, 100)]   // a draft over the first 100 token ids
    public void GenerationAllocatesOnlyItsTokens(bool mtp, int? draftVocab)
    {
        using var model = LongCatModel.Load(GenerationTests.FixtureWithMtp("tiny"));
        var session = new GenerationSession(model, [1, 2, 3], new GenerationOptions { Temperature = 0, MaxTokens = 100, Speculative = mtp, StopTokenIds = [], DraftVocabulary = draftVocab });
        using var tokens = session.Generate().GetEnumerator();
        int saved = Parallelism.Threads;
        try
        {
            Parallelism.Threads = 1;
            for (int i = 0; i < 20; i++) Assert.True(tokens.MoveNext());
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 40; i++) Assert.True(tokens.MoveNext());
            long perToken = (GC.GetAllocatedBytesForCurrentThread() - before) / 40;
            output.WriteLine($"generation ({(mtp ? "MTP" : "plain")}): {perToken:N0} B per token on one thread (the yielded GeneratedToken and its expert counts)");
            Assert.True(perToken <= TokenBudget, $"generation allocated {perToken:N0} bytes per token (budget {TokenBudget})");
        }
        finally { Parallelism.Threads = saved; }
    }

    /// <summary>
    /// On one thread: the first call's bytes, then (after warm-up) the least of a few steady calls (the runtime's tiered
    /// JIT allocates a little now and then while it recompiles hot methods; the least call is the model's own count).
    /// </summary>
    static (long First, long Steady) OneThread(Action step, int warmup = 2, int repeats = 3)
    {
        int saved = Parallelism.Threads;
        try
        {
            Parallelism.Threads = 1;
            long first = Allocated(step);
            for (int i = 0; i < warmup; i++) step();
            long steady = long.MaxValue;
            for (int i = 0; i < repeats; i++) steady = Math.Min(steady, Allocated(step));
            return (first, steady);
        }
        finally { Parallelism.Threads = saved; }
    }

    /// <summary>With 2 threads: the whole process's bytes for one step (for the report; Parallel.For's share varies).</summary>
    static long TwoThreads(Action step)
    {
        int saved = Parallelism.Threads;
        try
        {
            Parallelism.Threads = 2;
            step(); step();
            long before = GC.GetTotalAllocatedBytes(precise: true);
            step();
            return GC.GetTotalAllocatedBytes(precise: true) - before;
        }
        finally { Parallelism.Threads = saved; }
    }

    static long Allocated(Action step)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        step();
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }
}
