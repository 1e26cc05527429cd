using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using LongCat.Cli.Commands;
using LongCat.Inference.Constraints;
using LongCat.Model;
using LongCat.Tokenization;

namespace LongCat.Cli.Bench;

/// <summary>
/// <c>longcat bench constrain</c>: the cost of constrained decoding per token (the mask of the current state plus
/// advancing past the chosen token) for each vocabulary, for any JSON object and for a schema with strings,
/// numbers, arrays, enums and nested objects, against one decode step of a model measured in the same run.
/// A seeded random "model" picks the tokens (the argmax of random logits leaning towards closing characters, over
/// the allowed ones; not timed). Cold: the first sequences on a fresh grammar (every state's mask is a trie walk);
/// warm: later sequences, which find the masks of the states they revisit cached.
/// </summary>
public static class ConstrainBench
{
    /// <summary>The schema measured beside json_object: every supported keyword kind that costs something.</summary>
    public const string Schema = """
        {"type":"object","properties":{
          "name":{"type":"string"},"age":{"type":"integer"},"score":{"type":"number"},
          "tags":{"type":"array","items":{"type":"string"},"maxItems":4},
          "kind":{"enum":["person","robot","cat"]},
          "address":{"type":"object","properties":{"city":{"type":"string"},"zip":{"type":["string","null"]}},"required":["city"],"additionalProperties":false},
          "extra":{"anyOf":[{"type":"boolean"},{"type":"array","items":{"type":"integer"}}]}},
         "required":["name","age","kind","address"],"additionalProperties":false}
        """;

    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "Checkpoint whose decode step is the reference (e.g. from `longcat init --config bench/configs/bench-350m.json --out /tmp/b350 --dtype bf16`)." };
        var tokenizers = new Option<string[]>("--tokenizer")
        {
            Description = "tokenizer.json files to measure (repeatable). Default: the demo model's (8k) and the Qwen3 fixture's (151k).",
            AllowMultipleArgumentsPerToken = true,
        };
        var tokens = new Option<int>("--tokens") { Description = "Constrained tokens per grammar (cold + warm), at least 200.", DefaultValueFactory = _ => 2000 };
        var cmd = new Command("constrain", "Constrained decoding (JSON grammar) cost per token per vocabulary vs one decode step of a model.")
        {
            model, tokenizers, tokens,
        };
        cmd.SetAction(p => CliSupport.Run(p, () => Run(p.GetValue(model), p.GetValue(tokenizers), p.GetValue(tokens))));
        return cmd;
    }

    static int Run(string? modelDir, string[]? tokenizerPaths, int tokens)
    {
        if (tokens < 200) throw new CliException($"--tokens must be >= 200, got {tokens}");
        var paths = tokenizerPaths is { Length: > 0 } ? tokenizerPaths : DefaultTokenizers();
        foreach (var p in paths)
            if (!File.Exists(p)) throw new CliException($"{p}: tokenizer not found");

        double stepMs = double.NaN;
        if (modelDir is not null)
        {
            if (!Directory.Exists(modelDir)) throw new CliException($"{modelDir}: model folder not found");
            stepMs = DecodeStepMs(modelDir);
            Console.WriteLine($"{modelDir}: one decode step (batch 1, median of 20) = {BenchUtil.F(stepMs, 2)} ms");
        }
        else Console.WriteLine("no --model: the decode-step reference was not measured (percentages omitted)");
        Console.WriteLine($"{Environment.ProcessorCount} cores; mask + advance per token, µs (median over steps; mean includes trie walks)");
        Console.WriteLine();
        Console.WriteLine($"{"vocab",7} {"trie nodes",10} {"build ms",8} {"grammar",-11} {"cold mean",9} {"warm mean",9} {"warm med",8} {"max",8} {"walks",6} {"% step cold",11} {"% step warm",11}");
        foreach (var path in paths)
        {
            var tok = Tokenizer.Load(path);
            int end = tok.EosTokenId ?? tok.TokenToId(ChatFormat.EndOfTurn) ?? tok.TokenToId("<|im_end|>") ?? tok.TokenToId("<|endoftext|>")
                ?? throw new CliException($"{path}: no end-of-text token found");
            var sw = Stopwatch.StartNew();
            var bytes = new byte[]?[tok.VocabSize];
            for (int i = 0; i < bytes.Length; i++) bytes[i] = tok.IsSpecial(i) ? null : tok.TokenBytes(i).ToArray();
            var vocab = new TokenVocabulary(bytes, tok.VocabSize, [end]);
            double buildMs = sw.Elapsed.TotalMilliseconds;
            using var schema = JsonDocument.Parse(Schema);
            var grammars = new (string, Func<JsonGrammar>)[]
            {
                ("json_object", () => JsonGrammar.ForJsonObject(vocab)),
                ("json_schema", () => JsonGrammar.ForSchema(vocab, schema.RootElement, strict: true)),
            };
            // JIT warm-up on throwaway grammars, so that "cold" means cold caches, not cold code.
            foreach (var (_, make) in grammars) Measure(make(), 200);
            foreach (var (name, make) in grammars)
            {
                var g = make();
                var r = Measure(g, tokens);
                string Pct(double us) => double.IsNaN(stepMs) ? "-" : BenchUtil.F(100 * us / 1000 / stepMs, 2) + "%";
                Console.WriteLine($"{vocab.Size,7} {vocab.TrieNodes,10} {BenchUtil.F(buildMs, 0),8} {name,-11} {BenchUtil.F(r.ColdMean, 1),9} {BenchUtil.F(r.WarmMean, 1),9} {BenchUtil.F(r.WarmMedian, 1),8} {BenchUtil.F(r.Max, 0),8} {g.Stats.Walks,6} {Pct(r.ColdMean),11} {Pct(r.WarmMean),11}  {g.Stats.States} states, {g.Stats.Visits} trie visits, {g.Stats.Drops} cache drops");
            }
        }
        return 0;
    }

    sealed record Result(double ColdMean, double WarmMean, double WarmMedian, double Max);

    /// <summary>Runs sequences on one grammar until <paramref name="tokens"/> tokens; the first quarter is "cold".</summary>
    static Result Measure(JsonGrammar g, int tokens)
    {
        var v = g.Vocabulary;
        var lean = new float[v.Size];
        for (int i = 0; i < v.Size; i++)
        {
            var b = v.Bytes(i);
            bool opens = b.IndexOfAny("{[,"u8) >= 0;
            lean[i] = (!opens && b.IndexOfAny("}]"u8) >= 0 ? 4f : 0f) + (b.IndexOf((byte)'"') >= 0 ? 6f : 0f) - (opens ? 4f : 0f);
        }
        var rng = new Random(7);
        var logits = new float[v.Size];
        var times = new List<double>();
        int cold = tokens / 4;
        double f = 1e6 / Stopwatch.Frequency;
        while (times.Count < tokens)
        {
            var c = g.Start();
            for (int n = 0; n < 600 && times.Count < tokens; n++)
            {
                for (int i = 0; i < logits.Length; i++) logits[i] = (float)(rng.NextDouble() * 6) + lean[i] * (1 + n / 40f);
                long t0 = Stopwatch.GetTimestamp();
                c.Mask(logits);
                long t1 = Stopwatch.GetTimestamp();
                int pick = ArgMax(logits);
                long t2 = Stopwatch.GetTimestamp();
                if (v.IsEnd(pick)) { times.Add((t1 - t0) * f); break; }
                c.Advance(pick);
                times.Add(((t1 - t0) + (Stopwatch.GetTimestamp() - t2)) * f);
            }
        }
        var warm = times.Skip(cold).ToList();
        return new Result(times.Take(cold).Average(), warm.Average(), BenchUtil.Median(warm), times.Max());
    }

    static int ArgMax(float[] x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }

    static double DecodeStepMs(string dir)
    {
        using var model = LongCatModel.Load(dir);
        var cache = model.NewCache(256);
        var prompt = Enumerable.Range(0, 32).Select(i => 1 + i * 7 % (model.Config.VocabSize - 1)).ToArray();
        model.Prefill(prompt, cache);
        var ms = new List<double>();
        int y = 5;
        for (int i = 0; i < 25; i++)
        {
            var sw = Stopwatch.StartNew();
            var r = model.ForwardCached([y], cache);
            double t = sw.Elapsed.TotalMilliseconds;
            if (i >= 5) ms.Add(t);
            y = ArgMax(r.Logits);
        }
        return BenchUtil.Median(ms);
    }

    static string[] DefaultTokenizers()
    {
        for (var d = new DirectoryInfo(Directory.GetCurrentDirectory()); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "LongCat.slnx")))
                return [Path.Combine(d.FullName, LongCat.IO.DemoModels.BasePath, "tokenizer.json"), Path.Combine(d.FullName, "tests", "fixtures", "tokenizers", "qwen3", "tokenizer.json")];
        throw new CliException("run from inside the repository, or name tokenizers with --tokenizer");
    }
}
