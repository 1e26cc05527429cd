using LongCat.Cli.Commands;
using LongCat.Model;
using LongCat.Tokenization;

namespace LongCat.Tests;

/// <summary>
/// The demo model shipped in models/longcat-flash-pydoc: what the README promises about it (a LongCat-Flash with zero
/// experts and an MTP head, under 50 MB, its tokenizer), that it is the trained model (its loss on Python-docs-style
/// text is far below a random model's), and that generate uses it when no --model is given.
/// </summary>
public class ShippedModelTests
{
    static readonly string Dir = CliSupport.ResolveModel(null);

    [Fact]
    public void IsALongCatFlashWithZeroExpertsAndAnMtpHeadUnder50MB()
    {
        using var m = LongCatModel.Load(Dir);
        var c = m.Config;
        Assert.True(c.ZeroExpertNum > 0 && c.NRoutedExperts > 0);
        Assert.NotNull(m.Mtp);
        long bytes = Directory.GetFiles(Dir).Sum(f => new FileInfo(f).Length);
        Assert.InRange(bytes, 1, 50L << 20);
        var tok = Tokenizer.Load(Dir);
        Assert.Equal(c.VocabSize, tok.VocabSize);
        Assert.True(File.Exists(Path.Combine(Dir, "README.md")));
        var repo = Path.GetFullPath(Path.Combine(Dir, "..", ".."));
        Assert.True(File.Exists(Path.Combine(repo, "data", "python-docs", "LICENSE")));
        Assert.True(File.Exists(Path.Combine(repo, "data", "python-docs", "corpus.jsonl.gz")));
    }

    [Fact]
    public void ItIsTrained()
    {
        // Text in the style of the corpus, written for this test (not taken from it).
        const string text = """
            The :func:`sorted` function returns a new sorted list from the items in *iterable*. The optional
            *key* argument specifies a function of one argument that is used to extract a comparison key from
            each element, for example ``key=str.lower``. The default value is ``None``.

            .. versionchanged:: 3.8
               The *reverse* argument is now keyword-only.
            """;
        using var m = LongCatModel.Load(Dir);
        var tok = Tokenizer.Load(Dir);
        var ids = tok.EncodeToIds(text);
        double ce = LongCat.Quantization.QuantDrift.NextTokenCrossEntropy(m.Forward(ids, 1, ids.Length).Logits, ids, 1, ids.Length, m.Config.VocabSize);
        // A random model is at ln(8192) = 9.0 nats; the trained one is far below.
        Assert.InRange(ce, 0.5, 5.5);
    }

    [Fact]
    public void ItsTrainedMtpHeadDraftsWellAndSpeculativeOutputIsUnchanged()
    {
        // The real head in the official layout must be loaded and used: a head that were silently wrong (wrong
        // embedding, halves swapped, h_t before the final norm) would accept about 1 draft in 8192, not most of them.
        using var m = LongCatModel.Load(Dir);
        var tok = Tokenizer.Load(Dir);
        var prompt = new[] { 1 }.Concat(tok.EncodeToIds("class Queue:\n    \"\"\"A first-in, first-out queue.")).ToArray();
        var plain = new LongCat.Inference.GenerationSession(m, prompt, new LongCat.Inference.GenerationOptions { Temperature = 0, MaxTokens = 48 });
        var spec = new LongCat.Inference.GenerationSession(m, prompt, new LongCat.Inference.GenerationOptions { Temperature = 0, MaxTokens = 48, Speculative = true });
        Assert.Equal(plain.Run(), spec.Run());
        Assert.True(spec.Result!.DraftedTokens >= 20);
        Assert.True(spec.Result.AcceptanceRate > 0.4, $"MTP acceptance {spec.Result.AcceptanceRate:P0}");
    }

    [Fact]
    public void GenerateUsesItByDefault()
    {
        var (exit, stdout, err) = CliProcess.Run("generate", "--prompt", "The json module", "--max-tokens", "12", "--temperature", "0", "--threads", "1");
        Assert.True(exit == 0, err);
        Assert.True(stdout.Trim().Length > 0);
        Assert.Contains("real experts/token", err + stdout);
    }
}
