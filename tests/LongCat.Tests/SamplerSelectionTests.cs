using LongCat.Inference;

namespace LongCat.Tests;

/// <summary>
/// The sampler's top-k / top-p / min-p by candidate selection equals the full sort it replaced
/// (<see cref="SamplingReference"/>) bit for bit, on peaked, flat and tied distributions; and logit_bias works.
/// </summary>
public class SamplerSelectionTests
{
    static float[] Logits(int kind, int v, Random rng) => kind switch
    {
        0 => Enumerable.Range(0, v).Select(_ => (float)(rng.NextDouble() * 20 - 10)).ToArray(),      // peaked
        1 => Enumerable.Range(0, v).Select(_ => (float)(rng.NextDouble() * 0.01)).ToArray(),         // nearly flat: top-p needs most of it
        2 => Enumerable.Range(0, v).Select(_ => (float)rng.Next(0, 4)).ToArray(),                    // massive ties
        _ => Enumerable.Range(0, v).Select(i => i < 3 ? 30f : (float)rng.NextDouble()).ToArray(),     // three dominant tokens
    };

    /// <summary>The vector ArgMax gives the scalar definition's index: ties, -0/+0, ±inf, NaN anywhere, all NaN, any length.</summary>
    [Fact]
    public void ArgMaxEqualsTheScalarDefinition()
    {
        var rng = new Random(5);
        float[] specials = [float.NaN, float.NegativeInfinity, float.PositiveInfinity, -0f, 0f, 1f, -1f];
        foreach (int n in new[] { 0, 1, 7, 63, 64, 65, 100, 8192, 8199 })
            for (int trial = 0; trial < 40; trial++)
            {
                var x = new float[n];
                int mode = trial % 5;
                for (int i = 0; i < n; i++)
                    x[i] = mode switch
                    {
                        0 => (float)rng.NextDouble(),
                        1 => rng.Next(0, 3),                                              // ties
                        2 => specials[rng.Next(specials.Length)],                        // specials everywhere
                        3 => rng.Next(4) == 0 ? float.NaN : -0f + (rng.Next(2) == 0 ? 0f : -0f), // zeros of both signs and NaN
                        _ => float.NaN,                                                    // all NaN
                    };
                if (n > 0 && trial % 7 == 0) x[rng.Next(n)] = float.NaN;
                Assert.Equal(Sampler.ArgMaxScalar(x), Sampler.ArgMax(x));
            }
        float[] negZeroFirst = Enumerable.Repeat(-1f, 100).ToArray();
        negZeroFirst[70] = -0f; negZeroFirst[80] = 0f;
        Assert.Equal(70, Sampler.ArgMax(negZeroFirst));
    }

    [Theory]
    [InlineData(300)]
    [InlineData(8192)]
    public void SelectionEqualsTheFullSort(int v)
    {
        var rng = new Random(v);
        var settings = new List<GenerationOptions>();
        foreach (int k in new[] { 0, 1, 7, 64, 65, 200, v - 1, v, v + 5 })
            foreach (float p in new[] { 1f, 0.999f, 0.9f, 0.5f, 1e-6f })
                foreach (float m in new[] { 0f, 0.05f, 0.9f })
                    if (k > 0 || p < 1 || m > 0) settings.Add(new GenerationOptions { TopK = k, TopP = p, MinP = m });
        foreach (float t in new[] { 0.7f, 1f, 3f })
            for (int kind = 0; kind < 4; kind++)
            {
                var logits = Logits(kind, v, rng);
                foreach (var o in settings.Where((_, i) => i % (v > 1000 ? 5 : 1) == kind % (v > 1000 ? 5 : 1)))
                {
                    var opts = o with { Temperature = t, Seed = 3 };
                    var want = new Sampler(opts with { TopK = 0, TopP = 1, MinP = 0 }, v, []).Distribution(logits);
                    // The sampler filters only when a filter is on (top-k at or above the vocabulary is off).
                    if (opts.TopK > 0 && opts.TopK < v || opts.TopP < 1 || opts.MinP > 0) SamplingReference.FilterBySorting(want, opts.TopK, opts.TopP, opts.MinP);
                    var got = new Sampler(opts, v, []).Distribution(logits);
                    Assert.True(want.AsSpan().SequenceEqual(got), $"kind {kind} T={t} top_k={o.TopK} top_p={o.TopP} min_p={o.MinP}");
                }
            }
    }

    [Fact]
    public void SameSeedSameTokensAsBefore()
    {
        // Drawing from equal distributions with the same seed gives the same tokens: sample a run both ways.
        const int v = 2000;
        var rng = new Random(9);
        var o = new GenerationOptions { Temperature = 0.9f, TopP = 0.8f, TopK = 100, Seed = 42 };
        var a = new Sampler(o, v, []);
        var b = new Sampler(o, v, []);
        var plain = new Sampler(o with { TopK = 0, TopP = 1, MinP = 0 }, v, []);
        for (int i = 0; i < 50; i++)
        {
            var l = Logits(i % 4, v, rng);
            var want = plain.Distribution(l);
            SamplingReference.FilterBySorting(want, o.TopK, o.TopP, o.MinP);
            Assert.Equal(b.Draw(want), a.Sample(l));
        }
    }

    [Fact]
    public void LogitBiasMovesTokens()
    {
        const int v = 500;
        var l = Logits(0, v, new Random(1));
        int best = Sampler.ArgMax(l);
        var greedy = new GenerationOptions { Temperature = 0, LogitBias = new Dictionary<int, float> { [best] = -100, [7] = 100 } };
        Assert.Equal(7, new Sampler(greedy, v, []).Sample(l));
        var banned = new GenerationOptions { Temperature = 1, Seed = 5, LogitBias = new Dictionary<int, float> { [best] = -100 } };
        var s = new Sampler(banned, v, []);
        Assert.True(s.Distribution(l)[best] < 1e-20f);
        Assert.Throws<ArgumentException>(() => new GenerationOptions { LogitBias = new Dictionary<int, float> { [v] = 1 } }.Validate(v));
        Assert.Throws<ArgumentException>(() => new GenerationOptions { LogitBias = new Dictionary<int, float> { [1] = 101 } }.Validate(v));
        Assert.Throws<ArgumentException>(() => new GenerationOptions { LogitBias = new Dictionary<int, float> { [1] = float.NaN } }.Validate(v));
    }
}
