using LongCat.IO;
using LongCat.Model;
using Xunit.Abstractions;

namespace LongCat.Tests;

/// <summary>Incremental decoding over the latent KV cache equals a full re-forward.</summary>
public class KvCacheTests(ITestOutputHelper output)
{
    public static TheoryData<string, bool> Cases()
    {
        var d = new TheoryData<string, bool>();
        foreach (var m in Fixtures.ReferenceModels) { d.Add(m, true); d.Add(m, false); }
        return d;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ChunkedAndTokenByTokenMatchFullForward(string name, bool absorbed)
    {
        using var model = LongCatModel.Load(Fixtures.Reference(name));
        int v = model.Config.VocabSize;
        var rng = new Random(3);
        var ids = Enumerable.Range(0, 13).Select(i => i == 0 ? 1 : rng.Next(3, v)).ToArray();
        var full = model.Forward(ids, 1, ids.Length).Logits;

        // Chunks of 5, 1, 4, then token by token.
        var cache = model.NewCache(32);
        int[] chunks = [5, 1, 4, 1, 1, 1];
        int pos = 0;
        float worst = 0;
        foreach (var n in chunks)
        {
            var r = model.ForwardCached(ids.AsSpan(pos, n), cache, allLogits: true, absorbed: absorbed);
            worst = MathF.Max(worst, Fixtures.MaxAbsDiff(r.Logits, full.AsSpan(pos * v, n * v)));
            pos += n;
        }
        Assert.Equal(ids.Length, cache.Length);
        output.WriteLine($"{name} absorbed={absorbed}: max |logit diff| {worst:E2}");
        Assert.True(worst <= 1e-4f, $"incremental logits differ by {worst}");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void CachedGreedyMatchesReference(string name, bool absorbed)
    {
        var dir = Fixtures.Reference(name);
        using var model = LongCatModel.Load(dir);
        using var expected = SafeTensorFile.Open(Path.Combine(dir, "expected.safetensors"));
        var prompt = expected.Tensor("greedy_prompt").ToInt64().Select(x => (int)x).ToArray();
        var want = expected.Tensor("greedy_continuation").ToInt64();
        var cache = model.NewCache(prompt.Length + want.Length);
        var r = model.ForwardCached(prompt, cache, absorbed: absorbed);
        var got = new List<long>();
        for (int step = 0; step < want.Length; step++)
        {
            int best = ArgMax(r.Logits);
            got.Add(best);
            if (step + 1 < want.Length) r = model.ForwardCached([best], cache, absorbed: absorbed);
        }
        Assert.Equal(want, got);
    }

    [Fact]
    public void CacheOverflowAndTruncate()
    {
        using var model = LongCatModel.Load(Fixtures.Reference("tiny"));
        var cache = model.NewCache(4);
        model.ForwardCached([1, 2, 3], cache);
        var ex = Assert.Throws<InvalidOperationException>(() => model.ForwardCached([4, 5], cache));
        Assert.Contains("capacity of 4", ex.Message);
        Assert.Equal(3, cache.Length);
        // Rolling back and re-running gives the same logits as the first time.
        var a = model.ForwardCached([4], cache).Logits;
        cache.Truncate(3);
        var b = model.ForwardCached([4], cache).Logits;
        Assert.Equal(a, b);
    }

    static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }
}

/// <summary>Continuous batching: one forward over several sequences equals running each alone.</summary>
public class BatchedDecodeTests
{
    [Theory]
    [InlineData("tiny")]
    [InlineData("small-fp8")]
    public void BatchedStepsMatchSingleSequenceSteps(string name)
    {
        using var model = LongCatModel.Load(Fixtures.Reference(name));
        int v = model.Config.VocabSize;
        int[][] prompts = [[1, 5, 9, 14, 20], [1, 7], [1, 30, 31, 32, 33, 34, 35, 36, 37]];
        // Reference: each sequence alone, greedy for 6 steps.
        var want = prompts.Select(p =>
        {
            var cache = model.NewCache(32);
            var r = model.ForwardCached(p, cache);
            var logits = new List<float[]> { r.Logits };
            for (int s = 0; s < 6; s++) { r = model.ForwardCached([ArgMax(r.Logits)], cache); logits.Add(r.Logits); }
            return logits;
        }).ToArray();
        // Batched: prefill all three in one forward, then decode all three together.
        var caches = prompts.Select(_ => model.NewCache(32)).ToArray();
        var b = model.ForwardBatch(prompts, caches);
        for (int step = 0; step <= 6; step++)
        {
            for (int i = 0; i < prompts.Length; i++)
                Assert.True(Fixtures.MaxAbsDiff(b.Logits.AsSpan(i * v, v), want[i][step]) <= 1e-4f, $"seq {i} step {step}");
            if (step == 6) break;
            var next = Enumerable.Range(0, prompts.Length).Select(i => new[] { ArgMax(b.Logits.AsSpan(i * v, v)) }).ToArray();
            b = model.ForwardBatch(next, caches);
        }
        Assert.Equal(prompts.Select(p => p.Length + 6), caches.Select(c => c.Length));
    }

    static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }
}
