using System.Text.Json;

namespace LongCat.Tests;

/// <summary>The tokenizer commands of the real <c>longcat</c> CLI.</summary>
public class TokenizerCliTests
{
    static string Tok(string name) => Fixtures.Tokenizer(name);

    [Fact]
    public void TokenizePrintsIdsTokensAndOffsets()
    {
        var (code, stdout, stderr) = CliProcess.Run("tokenize", "--tokenizer", Tok("longcat_style"), "--text", "text <s> with");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout.Trim());
        var r = doc.RootElement;
        Assert.Equal(["text", "Ġ", "<s>", "Ġwith"], r.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()));
        Assert.Equal(1, r.GetProperty("ids")[2].GetInt32());
        Assert.Equal("[[0,4],[4,5],[5,8],[8,13]]", r.GetProperty("offsets").GetRawText());
    }

    [Fact]
    public void TokenizeJsonlMatchesTheGoldenCasesAndDetokenizeInverts()
    {
        var cases = Path.Combine(Tok("longcat_style"), "cases.jsonl");
        var (code, stdout, stderr) = CliProcess.Run("tokenize", "--tokenizer", Path.Combine(Tok("longcat_style"), "tokenizer.json"), "--input-jsonl", cases);
        Assert.True(code == 0, stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var golden = TokenizerParityTests.ReadCases(cases);
        Assert.Equal(golden.Count, lines.Length);
        for (int i = 0; i < lines.Length; i++)
        {
            using var doc = JsonDocument.Parse(lines[i]);
            Assert.Equal(golden[i].Ids, doc.RootElement.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()));
            Assert.Equal(golden[i].Tokens, doc.RootElement.GetProperty("tokens").EnumerateArray().Select(x => x.GetString()!));
        }

        var ids = Path.Combine(Fixtures.NewTempDir(), "ids.jsonl");
        File.WriteAllText(ids, stdout);
        (code, stdout, stderr) = CliProcess.Run("detokenize", "--tokenizer", Tok("longcat_style"), "--input-jsonl", ids, "--skip-special-tokens");
        Assert.True(code == 0, stderr);
        lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        for (int i = 0; i < lines.Length; i++)
        {
            using var doc = JsonDocument.Parse(lines[i]);
            Assert.Equal(golden[i].DecodedSkipSpecial, doc.RootElement.GetProperty("text").GetString());
        }
        (code, stdout, _) = CliProcess.Run("detokenize", "--tokenizer", Tok("qwen3"), "--ids", "9707,1879");
        Assert.Equal(0, code);
        Assert.Equal("Hello world", stdout.TrimEnd('\n'));
    }

    [Fact]
    public void BadInputsGiveOneErrorLine()
    {
        var dir = Fixtures.NewTempDir();
        var bad = Path.Combine(dir, "tokenizer.json");
        File.WriteAllText(bad, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}");
        var (code, stdout, stderr) = CliProcess.Run("tokenize", "--tokenizer", bad, "--text", "x");
        Assert.Equal(1, code);
        Assert.Equal($"longcat: error: {bad}: model.merges: missing (a BPE model needs its merges list)", stderr.Trim());
        Assert.Equal("", stdout);

        var jsonl = Path.Combine(dir, "in.jsonl");
        File.WriteAllText(jsonl, "{\"text\": \"ok\"}\n{\"txt\": 1}\n");
        (code, _, stderr) = CliProcess.Run("tokenize", "--tokenizer", Tok("longcat_style"), "--input-jsonl", jsonl);
        Assert.Equal(1, code);
        Assert.Contains($"{jsonl}:2: expected an object with a \"text\" field", stderr);
        Assert.Single(stderr.Trim().Split('\n'));

        (code, _, stderr) = CliProcess.Run("detokenize", "--tokenizer", Tok("longcat_style"), "--ids", "1,99999");
        Assert.Equal(1, code);
        Assert.Contains("id 99999 is not in the vocabulary", stderr);

        (code, _, stderr) = CliProcess.Run("tokenize", "--tokenizer", Tok("longcat_style"));
        Assert.Equal(1, code);
        Assert.Contains("give exactly one of --text T or --input-jsonl FILE", stderr);
    }

    [Fact]
    public void TrainWritesAReloadableTokenizer()
    {
        var dir = Fixtures.NewTempDir();
        var input = Path.Combine(dir, "corpus.txt");
        File.WriteAllText(input, File.ReadAllText(Path.Combine(Fixtures.Root, "tokenizers", "bench", "bench_en_code_2mb.txt"))[..200_000]);
        var outDir = Path.Combine(dir, "out");
        var (code, stdout, stderr) = CliProcess.Run("tokenizer", "train", "--input", input, "--vocab-size", "700", "--out", outDir);
        Assert.True(code == 0, stderr);
        Assert.Contains("trained vocab 700", stdout);
        Assert.Contains("longcat: count: 100%", stderr);
        Assert.True(File.Exists(Path.Combine(outDir, "tokenizer.json")));
        (code, stdout, stderr) = CliProcess.Run("tokenize", "--tokenizer", outDir, "--text", "def f(x): return 42</longcat_s>");
        Assert.True(code == 0, stderr);
        Assert.Contains("\"</longcat_s>\"", stdout);

        (code, _, stderr) = CliProcess.Run("tokenizer", "train", "--input", input, "--vocab-size", "100", "--out", outDir);
        Assert.Equal(1, code);
        Assert.Contains("--vocab-size must be in 261..", stderr);
    }

    [Fact]
    public void BenchReportsMBPerSecondNextToHuggingFace()
    {
        var dir = Fixtures.NewTempDir();
        var input = Path.Combine(dir, "small.txt");
        File.WriteAllText(input, File.ReadAllText(Path.Combine(Fixtures.Root, "tokenizers", "bench", "bench_en_code_2mb.txt"))[..60_000]);
        var (code, stdout, stderr) = CliProcess.Run("bench", "tokenize", "--tokenizer", Tok("longcat_style"), "--input", input, "--repeats", "1", "--json", "--threads", "2");
        Assert.True(code == 0, stderr);
        var rows = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(["encode ids", "encode ids+offsets", "batch ids"], rows.Select(r => r.GetProperty("mode").GetString()));
        Assert.All(rows, r => Assert.True(r.GetProperty("mb_per_s").GetDouble() > 0));
        Assert.Equal(2, rows[2].GetProperty("threads").GetInt32());
        // HF tokenizers runs in the same run when node and bench/hf-tokenizers/node_modules are there (.ci/run installs
        // them); then it must tokenize the chunks into exactly as many tokens as we do. Otherwise the output says so.
        bool hfRan = rows[0].GetProperty("hf").GetProperty("ran").GetBoolean();
        foreach (var r in rows)
        {
            var hf = r.GetProperty("hf");
            Assert.Equal(hfRan, hf.GetProperty("ran").GetBoolean());
            if (hfRan)
            {
                Assert.Equal(r.GetProperty("tokens").GetInt64(), hf.GetProperty("tokens").GetInt64());
                Assert.True(hf.GetProperty("mb_per_s").GetDouble() > 0);
                Assert.True(hf.GetProperty("vs_hf").GetDouble() > 0);
            }
            else
                Assert.StartsWith("did not run", hf.GetProperty("note").GetString());
        }

        (code, stdout, stderr) = CliProcess.Run("bench", "tokenize", "--tokenizer", Tok("qwen3"), "--input", input, "--repeats", "1");
        Assert.True(code == 0, stderr);
        if (hfRan)
        {
            Assert.Contains("HF tokenizers reference: HF tokenizers 0.23.2 (npm", stdout);
            Assert.Contains("vs HF", stdout);
            Assert.DoesNotContain("tokenizations differ", stdout);
        }
        else
            Assert.Contains("HF tokenizers reference: did not run", stdout);

        (code, stdout, stderr) = CliProcess.Run("bench", "tokenize", "--tokenizer", Tok("qwen3"), "--input", input, "--repeats", "1", "--node", "/nonexistent/node");
        Assert.True(code == 0, stderr);
        Assert.Contains("HF tokenizers reference: did not run: could not start /nonexistent/node", stdout);
        Assert.DoesNotContain("vs HF", stdout);
    }
}
