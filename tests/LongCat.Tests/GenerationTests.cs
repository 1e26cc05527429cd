using System.Text.Json;
using LongCat.Config;
using LongCat.Inference;
using LongCat.IO;
using LongCat.Model;

namespace LongCat.Tests;

/// <summary>Generation API, sampling, and MTP speculative decoding.</summary>
public class GenerationTests
{
    /// <summary>A copy of a fixture with a randomly initialised MTP head added as a second shard.</summary>
    internal static string FixtureWithMtp(string name, ulong seed = 11)
    {
        var src = Fixtures.Reference(name);
        var dir = Fixtures.NewTempDir();
        File.Copy(Path.Combine(src, "config.json"), Path.Combine(dir, "config.json"));
        File.Copy(Path.Combine(src, "model.safetensors"), Path.Combine(dir, "model-00001-of-00002.safetensors"));
        var config = LongCatConfig.Load(Path.Combine(dir, "config.json"));
        var w = new SafeTensorsWriter();
        foreach (var t in CheckpointLayout.Mtp(config))
        {
            var v = new float[t.Count];
            if (t.Kind == TensorKind.Norm) Array.Fill(v, 1f);
            else { var rng = new NormalRng(seed, t.Name); for (int i = 0; i < v.Length; i++) v[i] = (float)(rng.Next() * 0.02); }
            w.AddF32(t.Name, v, t.Shape);
        }
        w.Save(Path.Combine(dir, "model-00002-of-00002.safetensors"));
        var map = new Dictionary<string, string>();
        using (var a = SafeTensorFile.Open(Path.Combine(dir, "model-00001-of-00002.safetensors")))
            foreach (var n in a.Tensors.Keys) map[n] = "model-00001-of-00002.safetensors";
        foreach (var t in CheckpointLayout.Mtp(config)) map[t.Name] = "model-00002-of-00002.safetensors";
        File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"), JsonSerializer.Serialize(new { metadata = new { }, weight_map = map }));
        return dir;
    }

    static (int[] Prompt, long[] Want) Greedy(string name)
    {
        using var e = SafeTensorFile.Open(Path.Combine(Fixtures.Reference(name), "expected.safetensors"));
        return (e.Tensor("greedy_prompt").ToInt64().Select(x => (int)x).ToArray(), e.Tensor("greedy_continuation").ToInt64());
    }

    [Theory]
    [InlineData("tiny")]
    [InlineData("small-fp8")]
    public void GreedyGenerationMatchesReference(string name)
    {
        using var model = LongCatModel.Load(Fixtures.Reference(name));
        var (prompt, want) = Greedy(name);
        var s = new GenerationSession(model, prompt, new GenerationOptions { Temperature = 0, MaxTokens = want.Length });
        var got = s.Run();
        Assert.Equal(want, got.Select(x => (long)x));
        Assert.Equal(StopReason.Length, s.Result!.StopReason);
        Assert.Equal(want.Length, s.Result.CompletionTokens);
        Assert.Equal(prompt.Length, s.Result.PromptTokens);
    }

    [Theory]
    [InlineData("tiny")]
    [InlineData("tiny-nozero")]
    [InlineData("small-fp8")]
    public void SpeculativeGreedyEqualsPlainGreedy(string name)
    {
        using var model = LongCatModel.Load(FixtureWithMtp(name));
        Assert.NotNull(model.Mtp);
        var (prompt, want) = Greedy(name);
        var opts = new GenerationOptions { Temperature = 0, MaxTokens = want.Length, Speculative = true };
        // The random MTP head is a poor draft: mostly rejections.
        var s = new GenerationSession(model, prompt, opts);
        Assert.Equal(want, s.Run().Select(x => (long)x));
        Assert.True(s.Result!.DraftedTokens > 0);
        // A perfect draft: every draft accepted, two tokens per main forward, same output.
        var oracle = new GenerationSession(model, prompt, opts)
        {
            OracleDraft = seq => { var r = model.Forward(seq, 1, seq.Length, new ForwardOptions { AllLogits = false }); return Sampler.ArgMax(r.Logits); },
        };
        Assert.Equal(want, oracle.Run().Select(x => (long)x));
        Assert.Equal(oracle.Result!.DraftedTokens, oracle.Result.AcceptedDrafts);
        Assert.True(oracle.Result.AcceptedDrafts >= want.Length / 2 - 1);
    }

    /// <summary>
    /// A draft over the first token ids only (the lm_head's first rows): the main model still decides every token, so
    /// greedy output is the plain greedy output whatever the draft vocabulary, even one that misses most tokens.
    /// </summary>
    [Theory]
    [InlineData("tiny", 16)]
    [InlineData("tiny", 200)]
    [InlineData("small-fp8", 40)]
    public void SpeculativeGreedyWithDraftVocabularyEqualsPlainGreedy(string name, int draftVocab)
    {
        using var model = LongCatModel.Load(FixtureWithMtp(name));
        var (prompt, want) = Greedy(name);
        var s = new GenerationSession(model, prompt, new GenerationOptions { Temperature = 0, MaxTokens = want.Length, Speculative = true, DraftVocabulary = draftVocab });
        Assert.Equal(want, s.Run().Select(x => (long)x));
        Assert.True(s.Result!.DraftedTokens > 0);
        Assert.Equal(draftVocab, s.Result.DraftVocabulary);   // an explicit size is kept
    }

    /// <summary>
    /// The automatic draft vocabulary widens to the whole vocabulary once the main model often picks tokens outside it
    /// (here: the first 4 ids of 256, which almost no generated token falls in), and the output stays plain greedy's.
    /// </summary>
    [Fact]
    public void AutomaticDraftVocabularyWidensWhenTokensFallOutside()
    {
        using var model = LongCatModel.Load(FixtureWithMtp("tiny"));
        int[] prompt = [1, 5, 6, 7];
        var plain = new GenerationSession(model, prompt, new GenerationOptions { Temperature = 0, MaxTokens = 48 }).Run().ToArray();
        var s = new GenerationSession(model, prompt, new GenerationOptions { Temperature = 0, MaxTokens = 48, Speculative = true }) { AutoDraftVocabulary = 4 };
        Assert.Equal(plain, s.Run());
        Assert.True(plain.Count(t => t >= 4) * 8 > 32, "the test needs tokens outside the draft vocabulary");
        Assert.Equal(model.Config.VocabSize, s.Result!.DraftVocabulary);
        // The rule: kept for the first 32 tokens, then while at most 1 in 8 fall outside.
        Assert.True(DraftVocabularyState.Keep(31, 31));
        Assert.True(DraftVocabularyState.Keep(32, 4));
        Assert.False(DraftVocabularyState.Keep(32, 5));
        Assert.True(DraftVocabularyState.Keep(800, 100));
        Assert.False(DraftVocabularyState.Keep(800, 101));
    }

    [Fact]
    public void ChunkedPrefillGivesTheSameContinuation()
    {
        using var model = LongCatModel.Load(Fixtures.Reference("tiny"));
        var (prompt, want) = Greedy("tiny");
        var s = new GenerationSession(model, prompt, new GenerationOptions { Temperature = 0, MaxTokens = want.Length }) { PrefillChunk = 2 };
        Assert.Equal(want, s.Run().Select(x => (long)x));
    }

    [Fact]
    public void SpeculativeSamplingRuleReproducesTargetDistribution()
    {
        // p target, q draft over 5 tokens; d ~ q, then accept-or-resample must be distributed as p.
        float[] p = [0.5f, 0.2f, 0.15f, 0.1f, 0.05f];
        float[] q = [0.1f, 0.4f, 0.1f, 0.3f, 0.1f];
        var sampler = new Sampler(new GenerationOptions { Temperature = 1, Seed = 42 }, 5, []);
        var counts = new int[5];
        const int n = 200_000;
        for (int i = 0; i < n; i++)
        {
            int d = sampler.Draw(q);
            counts[GenerationSession.AcceptOrResample(p, q, d, sampler)]++;
        }
        // Chi-square with 4 degrees of freedom: 18.5 is the 0.1% critical value.
        double chi = 0;
        for (int i = 0; i < 5; i++) { double e = n * p[i]; chi += (counts[i] - e) * (counts[i] - e) / e; }
        Assert.True(chi < 18.5, $"chi-square {chi}: counts {string.Join(",", counts)}");

        // A draft over a reduced vocabulary (q = 0 past its first ids) keeps the target distribution too.
        float[] qr = [0.6f, 0.4f, 0f, 0f, 0f];
        Array.Clear(counts);
        for (int i = 0; i < n; i++)
        {
            int d = sampler.Draw(qr);
            counts[GenerationSession.AcceptOrResample(p, qr, d, sampler)]++;
        }
        chi = 0;
        for (int i = 0; i < 5; i++) { double e = n * p[i]; chi += (counts[i] - e) * (counts[i] - e) / e; }
        Assert.True(chi < 18.5, $"reduced draft vocabulary: chi-square {chi}: counts {string.Join(",", counts)}");
    }

    [Fact]
    public void SameSeedSameOutputDifferentSeedDifferentOutput()
    {
        using var model = LongCatModel.Load(Fixtures.Reference("tiny"));
        int[] prompt = [1, 20, 30];
        IReadOnlyList<int> Gen(ulong seed) => new GenerationSession(model, prompt,
            new GenerationOptions { Temperature = 1.5f, TopK = 50, TopP = 0.95f, MaxTokens = 24, Seed = seed }).Run();
        Assert.Equal(Gen(5), Gen(5));
        Assert.NotEqual(Gen(5), Gen(6));
    }

    [Fact]
    public void SamplerFiltersAndPenalties()
    {
        float[] logits = [2f, 1f, 0.5f, -1f, 3f];
        var topk = new Sampler(new GenerationOptions { Temperature = 1, TopK = 2 }, 5, []).Distribution(logits);
        Assert.Equal(0, topk[1]); Assert.Equal(0, topk[2]); Assert.Equal(0, topk[3]);
        Assert.Equal(1.0, topk[0] + topk[4], 5);
        Assert.Equal(1 / (1 + Math.Exp(-1)), topk[4], 5);

        var topp = new Sampler(new GenerationOptions { Temperature = 1, TopP = 0.5f }, 5, []).Distribution(logits);
        Assert.Equal(1f, topp[4]);   // p(4) = 0.59 >= 0.5 alone

        var minp = new Sampler(new GenerationOptions { Temperature = 1, MinP = 0.3f }, 5, []).Distribution(logits);
        Assert.True(minp[0] > 0); Assert.Equal(0, minp[1]); // p1/pmax = e^-2 < 0.3 ; p0/pmax = e^-1 > 0.3

        var greedyPenalized = new Sampler(new GenerationOptions { Temperature = 0, RepetitionPenalty = 2f }, 5, [4]).Distribution(logits);
        Assert.Equal(1f, greedyPenalized[0]); // 3/2 = 1.5 < 2

        var freq = new Sampler(new GenerationOptions { Temperature = 0, FrequencyPenalty = 0.6f, PresencePenalty = 0.5f }, 5, []);
        freq.Accept(4);
        Assert.Equal(1f, freq.Distribution(logits)[0]); // 3 - 0.6 - 0.5 = 1.9 < 2
    }

    [Fact]
    public async Task StopTokensStopStringsAndStreaming()
    {
        using var model = LongCatModel.Load(Fixtures.Reference("tiny"));
        var (prompt, want) = Greedy("tiny");
        int stopAt = (int)want[3];
        var s = new GenerationSession(model, prompt, new GenerationOptions { Temperature = 0, MaxTokens = 16, StopTokenIds = [stopAt] });
        var got = s.Run();
        Assert.Equal(StopReason.StopToken, s.Result!.StopReason);
        Assert.Equal(want.Take(want.ToList().IndexOf(stopAt) + 1), got.Select(x => (long)x));

        string Decode(IReadOnlyList<int> ids) => string.Join(" ", ids);
        var stop = $"{want[1]} {want[2]}";
        var s2 = new GenerationSession(model, prompt, new GenerationOptions { Temperature = 0, MaxTokens = 16, StopStrings = [stop], Decode = Decode });
        var streamed = new List<int>();
        await foreach (var t in s2.StreamAsync()) streamed.Add(t.Id);
        Assert.Equal(StopReason.StopString, s2.Result!.StopReason);
        Assert.Equal(stop, s2.Result.MatchedStop);
        Assert.Equal(want.Take(3), streamed.Select(x => (long)x));
    }

    [Fact]
    public void CancellationStopsWithReason()
    {
        using var model = LongCatModel.Load(Fixtures.Reference("tiny"));
        using var cts = new CancellationTokenSource();
        var s = new GenerationSession(model, [1, 2], new GenerationOptions { Temperature = 0, MaxTokens = 100 });
        int n = 0;
        foreach (var _ in s.Generate(cts.Token)) if (++n == 5) cts.Cancel();
        Assert.Equal(StopReason.Cancelled, s.Result!.StopReason);
        Assert.Equal(5, s.Result.CompletionTokens);
    }

    [Fact]
    public void BadInputIsRejectedClearly()
    {
        using var model = LongCatModel.Load(Fixtures.Reference("tiny"));
        Assert.Contains("vocabulary", Assert.Throws<ArgumentException>(() => new GenerationSession(model, [1, 999], new GenerationOptions())).Message);
        Assert.Contains("empty", Assert.Throws<ArgumentException>(() => new GenerationSession(model, [], new GenerationOptions())).Message);
        Assert.Contains("top_p", Assert.Throws<ArgumentException>(() => new GenerationSession(model, [1], new GenerationOptions { TopP = 0 })).Message);
        Assert.Contains("temperature", Assert.Throws<ArgumentException>(() => new GenerationSession(model, [1], new GenerationOptions { Temperature = -1 })).Message);
        Assert.Contains("MTP", Assert.Throws<ArgumentException>(() => new GenerationSession(model, [1], new GenerationOptions { Speculative = true })).Message);
        Assert.Contains("draft_vocabulary", Assert.Throws<ArgumentException>(() => new GenerationSession(model, [1], new GenerationOptions { DraftVocabulary = 0 })).Message);
        Assert.Contains("draft_vocabulary", Assert.Throws<ArgumentException>(() => new GenerationSession(model, [1], new GenerationOptions { DraftVocabulary = model.Config.VocabSize + 1 })).Message);
        Assert.Contains("context", Assert.Throws<ContextLengthExceededException>(() => new GenerationSession(model, [1, 2, 3, 4], new GenerationOptions(), contextLength: 4)).Message);
    }

    [Fact]
    public void ExpertsPerTokenAreCounted()
    {
        using var model = LongCatModel.Load(Fixtures.Reference("tiny"));
        var tokens = new List<GeneratedToken>();
        var s = new GenerationSession(model, [1, 5, 6], new GenerationOptions { Temperature = 0, MaxTokens = 8 });
        tokens.AddRange(s.Generate());
        Assert.All(tokens, t => Assert.Equal(model.Config.NumLayers, t.RealExpertsPerLayer.Length));
        Assert.All(tokens, t => Assert.All(t.RealExpertsPerLayer, n => Assert.InRange(n, 0, model.Config.MoeTopK)));
        Assert.Equal(8 * model.Config.NumLayers, s.Result!.RealExpertHistogram.Sum());
        Assert.Equal(tokens.SelectMany(t => t.RealExpertsPerLayer).Average(), s.Result.MeanRealExperts, 9);
    }
}
