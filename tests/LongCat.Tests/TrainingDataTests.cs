using LongCat.Tokenization;
using LongCat.Training;

namespace LongCat.Tests;

/// <summary>data prepare (tokenize, document boundaries, held-out split, tokenizer copy) and the packed loader.</summary>
public class TrainingDataTests
{
    static readonly string Tok = Path.Combine(Fixtures.Tokenizer("longcat_style"), "tokenizer.json");

    static string Corpus()
    {
        var dir = Fixtures.NewTempDir();
        var text = string.Join("\n\n", Enumerable.Range(0, 60).Select(i => $"Paragraph {i}: the quick brown fox {i * 7} jumps over the lazy dog.\nSecond line {i}."));
        var path = Path.Combine(dir, "corpus.txt");
        File.WriteAllText(path, text);
        File.WriteAllText(Path.Combine(dir, "more.jsonl"), "{\"text\": \"hello world\"}\n\n{\"text\": \"second document\"}\n");
        return dir;
    }

    [Fact]
    public void PrepareTokenizesDocumentsWithBoundariesAndAHeldOutSplit()
    {
        var src = Corpus();
        var outDir = Fixtures.NewTempDir();
        var r = TokenDataWriter.Prepare(Tok, [Path.Combine(src, "corpus.txt"), Path.Combine(src, "more.jsonl")], outDir,
            new DataPrepareOptions { Documents = DocumentMode.Paragraph, ValidationFraction = 0.2, Seed = 3 });
        Assert.Equal(62, r.TrainDocuments + r.ValDocuments);
        Assert.InRange(r.ValDocuments, 5, 25);
        Assert.True(File.Exists(Path.Combine(outDir, "tokenizer.json")));
        var tok = Tokenizer.Load(outDir);
        int eos = tok.EosTokenId ?? tok.TokenToId("</s>")!.Value;
        using var train = TokenDataset.Open(outDir, "train");
        using var val = TokenDataset.Open(outDir, "val");
        Assert.Equal(r.TrainTokens, train.TokenCount);
        Assert.Equal(r.ValTokens, val.TokenCount);
        // Every document ends with </s> and decodes to one paragraph of the input (or a jsonl text).
        var all = new HashSet<string>(File.ReadAllText(Path.Combine(src, "corpus.txt")).Split("\n\n")) { "hello world", "second document" };
        foreach (var ds in new[] { train, val })
            for (int d = 0; d < ds.DocumentCount; d++)
            {
                var ids = new int[ds.DocumentStarts[d + 1] - ds.DocumentStarts[d]];
                ds.CopyTokens(ds.DocumentStarts[d], ids);
                Assert.Equal(eos, ids[^1]);
                Assert.Contains(tok.Decode(ids[..^1]), all);
            }
        // Deterministic: the same inputs give the same bytes.
        var again = Fixtures.NewTempDir();
        TokenDataWriter.Prepare(Tok, [Path.Combine(src, "corpus.txt"), Path.Combine(src, "more.jsonl")], again,
            new DataPrepareOptions { Documents = DocumentMode.Paragraph, ValidationFraction = 0.2, Seed = 3 });
        Assert.Equal(File.ReadAllBytes(Path.Combine(outDir, "train.bin")), File.ReadAllBytes(Path.Combine(again, "train.bin")));
        Assert.Equal(File.ReadAllBytes(Path.Combine(outDir, "val.idx")), File.ReadAllBytes(Path.Combine(again, "val.idx")));
    }

    [Fact]
    public void ASingleDocumentStillGetsAHeldOutTail()
    {
        var src = Corpus();
        var outDir = Fixtures.NewTempDir();
        var r = TokenDataWriter.Prepare(Tok, [Path.Combine(src, "corpus.txt")], outDir, new DataPrepareOptions { ValidationFraction = 0.1 });
        Assert.Equal(1, r.TrainDocuments);
        Assert.True(r.ValTokens > 0 && Math.Abs(r.ValTokens - 0.1 * (r.TrainTokens + r.ValTokens)) <= 1);
    }

    [Fact]
    public void LoaderVisitsEveryWindowOncePerEpochInASeededOrderAndResumesByPosition()
    {
        var dir = Fixtures.NewTempDir();
        var tokens = Enumerable.Range(0, 103).ToArray();
        TokenDataWriter.WriteTokens(dir, tokens, [], 103);
        using var ds = TokenDataset.Open(dir, "train");
        var a = new PackedSequenceLoader(ds, 10, seed: 4);
        Assert.Equal(10, a.SequencesPerEpoch);
        var seen = new List<int>();
        var buf = new int[10];
        for (int i = 0; i < 10; i++)
        {
            a.Next(buf);
            Assert.Equal(0, buf[0] % 10);
            Assert.Equal(Enumerable.Range(buf[0], 10), buf);
            seen.Add(buf[0]);
        }
        Assert.Equal(Enumerable.Range(0, 10).Select(w => w * 10), seen.Order());
        Assert.NotEqual(Enumerable.Range(0, 10).Select(w => w * 10), seen);   // shuffled
        var epoch2 = new int[30];
        a.Next(epoch2);
        // A loader set to the same position continues identically; another seed gives another order.
        var b = new PackedSequenceLoader(ds, 10, seed: 4) { Position = 10 };
        var again = new int[30];
        b.Next(again);
        Assert.Equal(epoch2, again);
        var c = new PackedSequenceLoader(ds, 10, seed: 5);
        var other = new int[100];
        c.Next(other);
        var first = new PackedSequenceLoader(ds, 10, seed: 4);
        var mine = new int[100];
        first.Next(mine);
        Assert.NotEqual(mine, other);
    }

    [Fact]
    public void BadDataFoldersGiveClearErrors()
    {
        var missing = Path.Combine(Fixtures.NewTempDir(), "nope");
        Assert.Contains("data folder not found", Assert.Throws<IOException>(() => TokenDataset.Open(missing, "train")).Message);
        var empty = Fixtures.NewTempDir();
        Assert.Contains("longcat data prepare", Assert.Throws<IOException>(() => TokenDataset.Open(empty, "train")).Message);
        var small = Fixtures.NewTempDir();
        TokenDataWriter.WriteTokens(small, [1, 2, 3], [], 10);
        using var ds = TokenDataset.Open(small, "train");
        Assert.Contains("fewer than one sequence", Assert.Throws<ArgumentException>(() => new PackedSequenceLoader(ds, 16, 1)).Message);
        File.WriteAllBytes(Path.Combine(small, "train.bin"), new byte[7]);
        Assert.Contains("truncated", Assert.Throws<InvalidDataException>(() => TokenDataset.Open(small, "train")).Message);
    }
}

/// <summary>Gzip-compressed inputs (the shipped corpus is data/python-docs/corpus.jsonl.gz) read like plain ones.</summary>
public class CompressedCorpusTests
{
    static string Gzip(string path)
    {
        var gz = path + ".gz";
        using (var o = File.Create(gz))
        using (var z = new System.IO.Compression.GZipStream(o, System.IO.Compression.CompressionLevel.Optimal))
        using (var i = File.OpenRead(path)) i.CopyTo(z);
        return gz;
    }

    [Fact]
    public void GzipInputsGiveTheSameDataAndTokenizer()
    {
        var dir = Fixtures.NewTempDir();
        var jsonl = Path.Combine(dir, "c.jsonl");
        File.WriteAllLines(jsonl, Enumerable.Range(0, 40).Select(i => System.Text.Json.JsonSerializer.Serialize(new { text = $"def f{i}(x):\n    return x * {i} # café" })));
        var gz = Gzip(jsonl);
        var tok = Path.Combine(Fixtures.Tokenizer("longcat_style"), "tokenizer.json");
        string a = Fixtures.NewTempDir(), b = Fixtures.NewTempDir();
        var ra = TokenDataWriter.Prepare(tok, [jsonl], a, new DataPrepareOptions { ValidationFraction = 0.1 });
        var rb = TokenDataWriter.Prepare(tok, [gz], b, new DataPrepareOptions { ValidationFraction = 0.1 });
        Assert.Equal((ra.TrainTokens, ra.ValTokens, ra.TrainDocuments), (rb.TrainTokens, rb.ValTokens, rb.TrainDocuments));
        Assert.Equal(File.ReadAllBytes(Path.Combine(a, "train.bin")), File.ReadAllBytes(Path.Combine(b, "train.bin")));

        // The tokenizer trainer reads a .jsonl's "text" fields (not the JSON syntax), compressed or not, and equals
        // training on the same texts in memory.
        var texts = TextCorpus.Documents(jsonl, DocumentMode.File).ToList();
        var opts = new BpeTrainerOptions { VocabSize = 300 };
        var mem = BpeTrainer.Train(texts, opts);
        var fromGz = BpeTrainer.TrainFiles([gz], opts);
        Assert.Equal(mem.Merges, fromGz.Merges);
        Assert.DoesNotContain(fromGz.Vocab, k => k.Contains("\\\"text\\\"", StringComparison.Ordinal) || k == "text\"");

        // A .txt.gz is its text.
        var txt = Path.Combine(dir, "p.txt");
        File.WriteAllText(txt, "one\n\ntwo\n");
        Assert.Equal(["one", "two"], TextCorpus.Documents(Gzip(txt), DocumentMode.Paragraph));
    }

    [Fact]
    public void CorruptCompressedOrInvalidUtf8InputIsNamed()
    {
        var dir = Fixtures.NewTempDir();
        var bad = Path.Combine(dir, "bad.jsonl.gz");
        File.WriteAllBytes(bad, [0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        var e = Assert.Throws<InvalidDataException>(() => TextCorpus.Documents(bad, DocumentMode.File).ToList());
        Assert.Contains("bad.jsonl.gz", e.Message);
        var latin1 = Path.Combine(dir, "l.txt");
        File.WriteAllBytes(latin1, [0x63, 0x61, 0x66, 0xE9, 0x0A]);
        Assert.Contains("l.txt: not valid UTF-8", Assert.Throws<InvalidDataException>(() => TextCorpus.Documents(latin1, DocumentMode.File).ToList()).Message);
    }
}
