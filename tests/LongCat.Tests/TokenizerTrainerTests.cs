using LongCat.Kernels;
using LongCat.Tokenization;

namespace LongCat.Tests;

/// <summary>The BPE trainer: output reloads, round-trips text exactly, is deterministic, and has LongCat's layout.</summary>
public class TokenizerTrainerTests
{
    static string Corpus()
    {
        var texts = new List<string>();
        foreach (var name in new[] { "deepseek_v3", "qwen3", "longcat_style" })
            texts.AddRange(TokenizerParityTests.ReadCases(Path.Combine(Fixtures.Tokenizer(name), "cases.jsonl")).Select(c => c.Text));
        var bench = File.ReadAllText(Path.Combine(Fixtures.Root, "tokenizers", "bench", "bench_en_code_2mb.txt"))[..300_000];
        return string.Join("\n", texts) + "\n" + bench;
    }

    static (TrainedBpe Model, string Dir) TrainToDir(string corpus, int vocab, int threads)
    {
        var dir = Fixtures.NewTempDir();
        var input = Path.Combine(dir, "corpus.txt");
        File.WriteAllText(input, corpus);
        int saved = Parallelism.Threads;
        try
        {
            Parallelism.Threads = threads;
            var progress = new List<TrainerProgress>();
            var m = BpeTrainer.TrainFiles([input], new BpeTrainerOptions { VocabSize = vocab, Progress = progress.Add });
            Assert.Contains(progress, p => p.Phase == "count" && p.Done == p.Total);
            Assert.Contains(progress, p => p.Phase == "merge");
            var outDir = Path.Combine(dir, "tok");
            TokenizerWriter.Save(m, outDir);
            return (m, outDir);
        }
        finally { Parallelism.Threads = saved; }
    }

    [Fact]
    public void TrainedTokenizerReloadsAndRoundTrips()
    {
        var corpus = Corpus();
        var (m, dir) = TrainToDir(corpus, 1500, threads: 2);
        Assert.Equal(1500, m.Vocab.Count);
        Assert.Equal(LongCatTokenizerSpec.SpecialTokens, m.Vocab.Take(5));
        Assert.Equal(256, m.Vocab.Skip(5).Take(256).Distinct().Count());
        Assert.Equal(m.Vocab.Skip(5).Take(256).Order(StringComparer.Ordinal), m.Vocab.Skip(5).Take(256));

        var tok = Tokenizer.Load(dir);
        Assert.Equal(1500, tok.VocabSize);
        Assert.Equal(1, tok.BosTokenId);
        Assert.Equal(2, tok.EosTokenId);
        Assert.Equal(3, tok.PadTokenId);
        Assert.Equal(4, tok.TokenToId("</longcat_s>"));
        Assert.Equal(ChatFormat.JinjaTemplate, tok.Config!.ChatTemplate);
        foreach (var c in TokenizerParityTests.ReadCases(Path.Combine(Fixtures.Tokenizer("qwen3"), "cases.jsonl")))
            Assert.Equal(c.Text, tok.Decode(tok.EncodeToIds(c.Text)));
        var ids = tok.EncodeToIds(corpus);
        Assert.Equal(corpus, tok.Decode(ids));
        Assert.True(ids.Length < corpus.Length / 2, $"{ids.Length} tokens for {corpus.Length} chars: merges did not compress");
        // Special tokens in the text stay whole and are not learned as merges.
        Assert.Equal([1, 4, 2], tok.EncodeToIds("<s></longcat_s></s>"));
        Assert.DoesNotContain(m.Vocab, v => v.Contains("longcat_s") && v != "</longcat_s>");
        // LongCat's pre-tokenization: single digits, CJK apart from spaces.
        Assert.Equal(["1", "2", "3"], tok.Encode("123").Tokens);
    }

    [Fact]
    public void TrainingIsDeterministicForAnyThreadCount()
    {
        var corpus = Corpus();
        var (_, a) = TrainToDir(corpus, 900, threads: 1);
        var (_, b) = TrainToDir(corpus, 900, threads: 2);
        Assert.Equal(File.ReadAllBytes(Path.Combine(a, "tokenizer.json")), File.ReadAllBytes(Path.Combine(b, "tokenizer.json")));
        Assert.Equal(File.ReadAllBytes(Path.Combine(a, "tokenizer_config.json")), File.ReadAllBytes(Path.Combine(b, "tokenizer_config.json")));
    }

    [Fact]
    public void TrainerRejectsBadOptions()
    {
        Assert.Throws<ArgumentException>(() => BpeTrainer.Train(["abc"], new BpeTrainerOptions { VocabSize = 100 }));
        Assert.Throws<ArgumentException>(() => BpeTrainer.Train(["abc"], new BpeTrainerOptions { SpecialTokens = ["<a>", "<a>"] }));
        Assert.Throws<ArgumentException>(() => BpeTrainer.Train(["abc"], new BpeTrainerOptions { SplitPatterns = ["(a"] }));
        Assert.Throws<FileNotFoundException>(() => BpeTrainer.TrainFiles(["/nonexistent/corpus.txt"], new BpeTrainerOptions()));
        // A tiny corpus stops early (no pair reaches min frequency) and still reloads.
        var m = BpeTrainer.Train(["ab ab ab"], new BpeTrainerOptions { VocabSize = 5000 });
        Assert.True(m.Vocab.Count < 5000);
    }
}
