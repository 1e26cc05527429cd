using System.Text;
using LongCat.Evaluation;
using LongCat.Kernels;
using LongCat.Tokenization;
using LongCat.Training;

namespace LongCat.Tests;

/// <summary>
/// <c>longcat eval</c>: the metric definitions on hand-made cases (Wilson interval, ROUGE-L, argmax ties, bootstrap),
/// perplexity and choice on a model with a known (uniform) distribution, determinism across thread counts, the
/// tool-call grammar giving valid calls, and bad input errors.
/// </summary>
[Collection("Console")]
public class EvalTests
{
    static readonly string TokDir = Fixtures.Tokenizer("longcat_style");

    [Theory]
    [InlineData(0, 10, 0.0, 0.2775327998628892)]
    [InlineData(5, 10, 0.236593090512564, 0.7634069094874361)]
    [InlineData(81, 100, 0.7222115462093562, 0.8748524849023126)] // statsmodels proportion_confint(81, 100, method="wilson")
    [InlineData(10, 10, 0.7224672001371108, 1.0)]
    public void WilsonIntervalMatchesKnownValues(int k, int n, double lo, double hi)
    {
        var (l, h) = EvalMetrics.Wilson(k, n);
        Assert.Equal(lo, l, 12);
        Assert.Equal(hi, h, 12);
        Assert.Throws<ArgumentException>(() => EvalMetrics.Wilson(3, 2));
    }

    [Fact]
    public void RougeLIsTheLcsF1OverLowerCasedWords()
    {
        // LCS 5 of 6 candidate words and 5 reference words: P = 5/6, R = 1, F1 = 10/11.
        Assert.Equal(10.0 / 11, EvalMetrics.RougeL("The cat sat on the mat.", "the cat on the mat"), 12);
        Assert.Equal(1, EvalMetrics.RougeL("Serialize obj to a JSON str", "serialize OBJ to a json str!"));
        Assert.Equal(0, EvalMetrics.RougeL("alpha beta", "gamma"));
        Assert.Equal(0, EvalMetrics.RougeL("", "gamma"));
        // Order matters: LCS of "a b c d" and "d c b a" is 1 -> F1 = 2·(1/4)(1/4)/(1/2) = 1/4.
        Assert.Equal(0.25, EvalMetrics.RougeL("a b c d", "d c b a"), 12);
    }

    [Fact]
    public void ArgmaxTakesTheFirstOnTiesAndTheBootstrapIsSeeded()
    {
        Assert.Equal(1, EvalMetrics.ArgMaxFirst([-3.0, -1.0, -1.0]));
        Assert.Equal(0, EvalMetrics.ArgMaxFirst([-2.0, -2.0]));
        var v = Enumerable.Range(0, 50).Select(i => (i * 37 % 11) / 10.0).ToArray();
        var a = EvalMetrics.BootstrapMean(v, seed: 7);
        Assert.Equal(a, EvalMetrics.BootstrapMean(v, seed: 7));
        Assert.NotEqual(a, EvalMetrics.BootstrapMean(v, seed: 8));
        Assert.True(a.Lo < v.Average() && v.Average() < a.Hi);
        Assert.Equal((0.5, 0.5), EvalMetrics.BootstrapMean([0.5, 0.5, 0.5]));
    }

    /// <summary>A tiny model over the fixture tokenizer; with <paramref name="uniform"/> its lm_head is zero, so every
    /// next-token distribution is uniform over the V tokens: perplexity V, −ln(1/V) nats per token.</summary>
    static (string Dir, int Vocab) Model(bool uniform)
    {
        var tok = Tokenizer.Load(TokDir);
        var config = TrainingModels.Tiny with { VocabSize = tok.VocabSize, MaxPositionEmbeddings = 512 };
        using var m = TrainingModels.Random(config, seed: 5, std: 0.3);
        if (uniform) m.Parameters["lm_head.weight"].Value.Clear();
        var dir = Path.Combine(Fixtures.NewTempDir(), "model");
        TrainingCheckpoint.ExportModel(dir, m.Parameters, TokDir);
        return (dir, tok.VocabSize);
    }

    static Evaluator Eval(string dir, EvalOptions? o = null) => new(dir, Tokenizer.Load(dir), o ?? new EvalOptions());

    [Fact]
    public void PerplexityOfAUniformModelIsTheVocabularySize()
    {
        var (dir, v) = Model(uniform: true);
        var src = Fixtures.NewTempDir();
        var text = string.Join(" ", Enumerable.Range(0, 60).Select(i => $"word{i} ünïcode"));
        File.WriteAllText(Path.Combine(src, "a.txt"), text);
        using var ev = Eval(dir, new EvalOptions { Context = 16 });
        var r = ev.Run("perplexity", Path.Combine(src, "a.txt"));
        var m = r.Metrics.ToDictionary(x => x.Name, x => x.Value);
        var tok = Tokenizer.Load(dir);
        int n = tok.EncodeToIds(text, addSpecialTokens: true).Count(id => id != 1); // every text token is predicted once, across windows
        Assert.Equal(n, m["tokens"]);
        Assert.True(n > 16 * 3, "the text spans several windows");
        Assert.Equal(Math.Log(v), m["mean_nats"], 4);
        Assert.Equal(v, m["perplexity"], v * 1e-3);
        Assert.Equal(n * Math.Log(v) / Math.Log(2) / Encoding.UTF8.GetByteCount(text), m["bits_per_byte"], 4);
    }

    [Fact]
    public void ChoiceAccuracyUsesLogLikelihoodWithFirstIndexTiesAndByteNormalisation()
    {
        var (dir, _) = Model(uniform: true);
        var tok = Tokenizer.Load(dir);
        var file = Path.Combine(Fixtures.NewTempDir(), "c.jsonl");
        // Under a uniform model the log-likelihood is −(tokens)·ln V: fewer tokens win; equal token counts tie (first index wins);
        // acc_norm divides by the choice's UTF-8 bytes, so among equal token counts the longer string wins.
        string a = " cat", b = " dog";
        Assert.Equal(tok.EncodeToIds(a).Length, tok.EncodeToIds(b).Length);
        string longer = " éé";
        File.WriteAllLines(file,
        [
            $$"""{"context": "Pick:", "choices": ["{{a}}", "{{b}}"], "gold": 0}""",
            $$"""{"context": "Pick:", "choices": ["{{a}}", "{{b}}"], "gold": 1}""",
        ]);
        using var ev = Eval(dir);
        var r = ev.Run("choice", file).Metrics.ToDictionary(x => x.Name);
        Assert.Equal(0.5, r["acc"].Value);       // the tie goes to index 0 both times
        Assert.Equal(0.5, r["acc_norm"].Value);  // equal bytes too
        Assert.Equal(1, r["acc"].Count);
        if (tok.EncodeToIds(longer).Length == tok.EncodeToIds(a).Length && Encoding.UTF8.GetByteCount(longer) > Encoding.UTF8.GetByteCount(a))
        {
            File.WriteAllLines(file, [$$"""{"context": "Pick:", "choices": ["{{a}}", "{{longer}}"], "gold": 1}"""]);
            var n = ev.Run("choice", file).Metrics.ToDictionary(x => x.Name);
            Assert.Equal(0, n["acc"].Value);
            Assert.Equal(1, n["acc_norm"].Value);
        }
    }

    static string ChatFile()
    {
        const string tools = """[{"type": "function", "function": {"name": "lookup_docs", "parameters": {"type": "object", "properties": {"name": {"type": "string", "enum": ["json.dumps"]}}, "required": ["name"]}}}]""";
        var file = Path.Combine(Fixtures.NewTempDir(), "chat.jsonl");
        File.WriteAllLines(file,
        [
            """{"messages": [{"role": "user", "content": "What does json.dumps do?"}], "tools": TOOLS, "expected_tool_call": {"name": "lookup_docs", "arguments": {"name": "json.dumps"}}}""".Replace("TOOLS", tools),
            """{"messages": [{"role": "user", "content": "What does json.dumps do?"}], "reference": "It serializes an object to JSON."}""",
            """{"messages": [{"role": "user", "content": "And json.loads?"}], "reference": "It parses JSON."}""",
        ]);
        return file;
    }

    [Fact]
    public void EvalIsIdenticalForAnyThreadCountAndConstrainedCallsAreValid()
    {
        var (dir, _) = Model(uniform: false);
        var text = Path.Combine(Fixtures.NewTempDir(), "t.jsonl");
        File.WriteAllLines(text, ["""{"text": "The json module encodes and decodes JSON data."}""", """{"text": "Lists are mutable sequences."}"""]);
        var chat = ChatFile();
        string Run(int threads)
        {
            int saved = Parallelism.Threads;
            try
            {
                Parallelism.Threads = threads;
                using var ev = Eval(dir, new EvalOptions { MaxTokens = 160, Constrained = true });
                return Evaluator.ToJson([ev.Run("perplexity", text), ev.Run("chat", chat)], "m");
            }
            finally { Parallelism.Threads = saved; }
        }
        var one = Run(1);
        Assert.Equal(one, Run(2));
        Assert.Equal(one, Run(3));
        using var e = Eval(dir, new EvalOptions { MaxTokens = 160, Constrained = true });
        var records = new List<System.Text.Json.Nodes.JsonObject>();
        e.ItemScored += records.Add;
        var m = e.Run("chat", chat).Metrics.ToDictionary(x => x.Name);
        Assert.Equal([1, 2, 3], records.Select(r => (int)r["line"]!));
        Assert.True((bool)records[0]["exact_call"]!);
        Assert.Equal("lookup_docs", (string?)records[0]["calls"]![0]!["name"]);
        Assert.Equal(1, m["tool_call_items"].Value);
        Assert.Equal(1, m["valid_tool_call"].Value); // the grammar allows only valid calls (and the enum only the right name)
        Assert.Equal(1, m["exact_call"].Value);
        Assert.Equal(2, m["answer_items"].Value);
        Assert.InRange(m["rouge_l_f1"].Value, 0, 1);
        // substance: the share of answers whose ROUGE-L F1 reaches 0.5, consistent with each item's own score
        var scores = records.Skip(1).Select(r => (double)r["rouge_l_f1"]!).ToList();
        Assert.Equal(scores.Select(x => x >= 0.5), records.Skip(1).Select(r => (bool)r["substance"]!));
        Assert.Equal(scores.Count(x => x >= 0.5) / 2.0, m["substance"].Value);
    }

    [Theory]
    [InlineData("choice", """{"context": "x", "choices": ["a", "b"], "gold": 2}""", "c.jsonl:1: gold: 2 is not an index")]
    [InlineData("choice", """{"context": "x", "choices": ["a"], "gold": 0}""", "c.jsonl:1: choices: must be an array of at least 2")]
    [InlineData("choice", """{"choices": ["a", "b"], "gold": 0}""", "c.jsonl:1: context: missing")]
    [InlineData("chat", """{"messages": [{"role": "user", "content": "q"}]}""", "c.jsonl:1: expected_tool_call: give exactly one")]
    [InlineData("chat", """{"messages": [{"role": "user", "content": "q"}], "reference": "r", "expected_tool_call": {"name": "f"}}""", "give exactly one")]
    [InlineData("chat", """{"messages": [{"role": "user", "content": "q"}], "expected_tool_call": {"name": "f"}}""", "c.jsonl:1: tools: an item that expects a tool call must offer tools")]
    [InlineData("chat", """{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "reference": "r"}""", "c.jsonl:1: messages: must end with a user message")]
    [InlineData("chat", """{"messages": [{"role": "user", "content": "q"}], "tools": [{"type": "function", "function": {"name": "f"}}], "expected_tool_call": {"name": "g"}}""", "expected_tool_call.name: 'g' is not one of")]
    [InlineData("perplexity", "", "no text to score")]
    public void BadEvalInputIsAnErrorNamingTheLineAndField(string task, string line, string expected)
    {
        var (dir, _) = Model(uniform: true);
        var file = Path.Combine(Fixtures.NewTempDir(), task == "perplexity" ? "c.txt" : "c.jsonl");
        File.WriteAllText(file, line + "\n");
        using var ev = Eval(dir);
        var e = Assert.Throws<InvalidDataException>(() => ev.Run(task, file));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void TheCliPrintsATableAndJsonAndRefusesBadTasks()
    {
        var (dir, _) = Model(uniform: true);
        var text = Path.Combine(Fixtures.NewTempDir(), "a.txt");
        File.WriteAllText(text, "hello world, hello eval");
        var (rc, outp, _) = InProcessCli.Run("eval", "--model", dir, "--no-progress", "perplexity:" + text);
        Assert.Equal(0, rc);
        Assert.Contains("perplexity", outp);
        Assert.Contains("bits_per_byte", outp);
        (rc, outp, _) = InProcessCli.Run("eval", "--model", dir, "--no-progress", "--json", "perplexity:" + text);
        Assert.Equal(0, rc);
        var root = System.Text.Json.Nodes.JsonNode.Parse(outp)!;
        Assert.Equal("perplexity", (string?)root["results"]![0]!["task"]);
        InProcessCli.Fails(["eval", "--model", dir, "bleu:" + text], "unknown task 'bleu'");
        InProcessCli.Fails(["eval", "--model", dir, "perplexity"], "TASK:FILE");
        InProcessCli.Fails(["eval", "--model", dir, "perplexity:/nonexistent.txt"], "/nonexistent.txt: eval file not found");
        InProcessCli.Fails(["eval", "--model", dir, "--limit", "-1", "perplexity:" + text], "limit must be >= 0");
    }

    [Fact]
    public void DataPrepareFormatChatFromTheCliAndAReproducibleFineTuneForAnyThreadCount()
    {
        var data = Fixtures.NewTempDir();
        var (rc, outp, err) = InProcessCli.Run("data", "prepare", "--format", "chat", "--tokenizer", TokDir, "--input", SftDataTests.ChatFile(16), "--out", data, "--val-fraction", "0.25");
        Assert.True(rc == 0, err);
        Assert.Contains("tokens trained (assistant replies)", outp);
        Assert.Contains("of row tokens are padding", outp);
        InProcessCli.Fails(["data", "prepare", "--format", "html", "--tokenizer", TokDir, "--input", SftDataTests.ChatFile(2), "--out", data], "--format must be text or chat");

        var config = TrainingModels.Tiny with { VocabSize = Tokenizer.Load(data).VocabSize };
        double[] Run(int threads)
        {
            int saved = Parallelism.Threads;
            try
            {
                Parallelism.Threads = threads;
                var o = TrainingRuns.Options(config, data, Fixtures.NewTempDir(), 3) with
                {
                    Mtp = false, Loss = new LossOptions { LoadBalanceAlpha = 0.01, LoadBalanceGroups = 2 }, MtpStartStep = 0, SequenceLength = 48, EvalEvery = 0,
                };
                using var t = Trainer.Create(o);
                t.Run();
                return [.. TrainingRuns.Losses(o.OutDir), t.LastValidationLoss!.Value];
            }
            finally { Parallelism.Threads = saved; }
        }
        var one = Run(1);
        Assert.Equal(one, Run(2)); // bitwise: losses of every step and the masked validation loss
    }
}
