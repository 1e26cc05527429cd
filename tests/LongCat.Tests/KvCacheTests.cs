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
