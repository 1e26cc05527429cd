using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using LongCat.Cli.Bench;
using LongCat.Kernels;
using LongCat.Tokenization;

namespace LongCat.Cli.Commands;

/// <summary>
/// <c>longcat bench tokenize</c>: encoding speed in MB/s of UTF-8 input, over a batch of fixed-size chunks (4 KB chunks;
/// one thread ids only, one thread with offsets, and a parallel batch on --threads threads), next to Hugging Face
/// tokenizers measured in the same run: the npm package <c>tokenizers</c> (Node binding of the Rust library, installed
/// by <c>npm install</c> in bench/hf-tokenizers) runs bench/hf-tokenizers/bench.js as a child process on the same
/// tokenizer.json and the same chunks, its passes alternating with ours. When node or the package is missing, the
/// output says that the reference did not run and prints no ratio.
/// </summary>
public static class TokenizeBench
{
    public static Command Create()
    {
        var tokenizer = TokenizeCommand.TokenizerOption();
        var input = CliSupport.RequiredPath("--input", "UTF-8 text file to encode (e.g. tests/fixtures/tokenizers/bench/bench_en_code_2mb.txt).");
        var chunk = new Option<int>("--chunk-chars") { Description = "Chunk size in characters (default 4096).", DefaultValueFactory = _ => 4096 };
        var repeats = new Option<int>("--repeats") { Description = "Timed passes per mode after one warm-up pass; the median is reported (default 5).", DefaultValueFactory = _ => 5 };
        var noHf = new Option<bool>("--no-hf") { Description = "Do not run the Hugging Face tokenizers reference." };
        var node = new Option<string>("--node") { Description = "Node.js executable for the reference.", DefaultValueFactory = _ => "node" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object per mode instead of the table." };
        var cmd = new Command("tokenize", "Tokenizer encoding speed (MB/s): one thread ids only, one thread with offsets, and a parallel batch on --threads threads, against HF tokenizers (npm, Node binding) measured in the same run.")
        {
            tokenizer, input, chunk, repeats, noHf, node, json,
        };
        cmd.SetAction(p => CliSupport.Run(p, () => Run(p.GetValue(tokenizer)!, p.GetValue(input)!, p.GetValue(chunk), p.GetValue(repeats), !p.GetValue(noHf), p.GetValue(node)!, p.GetValue(json))));
        return cmd;
    }

    sealed record ModeResult(string Mode, int Threads, double MBps, double CpuMBps, double TokPerS, long Tokens, double HfMBps, double HfCpuMBps, long HfTokens);

    static int Run(string tokenizerPath, string inputPath, int chunkChars, int repeats, bool hf, string node, bool json)
    {
        if (chunkChars < 16) throw new CliException($"--chunk-chars must be >= 16, got {chunkChars}");
        if (repeats < 1 || repeats > 1000) throw new CliException($"--repeats must be in 1..1000, got {repeats}");
        if (!File.Exists(inputPath)) throw new CliException($"{inputPath}: input file not found");
        var tok = TokenizeCommand.LoadTokenizer(tokenizerPath);
        var text = File.ReadAllText(inputPath);
        if (text.Length == 0) throw new CliException($"{inputPath}: empty input");
        var chunks = new List<string>();
        for (int i = 0; i < text.Length; i += chunkChars)
        {
            int end = Math.Min(text.Length, i + chunkChars);
            if (end < text.Length && char.IsHighSurrogate(text[end - 1])) end--; // never cut a surrogate pair
            chunks.Add(text[i..end]);
            i = end - chunkChars;
        }
        double mb = System.Text.Encoding.UTF8.GetByteCount(text) / 1e6;
        int threads = Parallelism.Threads;
        string? hfNote = null;
        using var reference = hf ? HfTokenizers.TryStart(node, tokenizerPath, chunks, threads, out hfNote) : null;
        if (!hf) hfNote = "not run (--no-hf)";

        var rows = new List<ModeResult>();
        var proc = Process.GetCurrentProcess();
        // Wall-clock and process CPU time per pass, medians; on a shared machine the CPU-time rate of a one-thread mode
        // is the steadier number (it excludes time the process waited for a core). Passes alternate: ours, theirs.
        void Measure(string mode, string hfMode, int th, Func<long> pass)
        {
            long tokens = pass(); // warm-up (JIT, caches)
            reference?.Run(hfMode);
            var wall = new List<double>();
            var cpu = new List<double>();
            var hfWall = new List<double>();
            var hfCpu = new List<double>();
            long hfTokens = 0;
            for (int k = 0; k < repeats; k++)
            {
                proc.Refresh();
                var c0 = proc.TotalProcessorTime;
                var sw = Stopwatch.StartNew();
                tokens = pass();
                wall.Add(sw.Elapsed.TotalSeconds);
                proc.Refresh();
                cpu.Add((proc.TotalProcessorTime - c0).TotalSeconds);
                if (reference != null)
                {
                    var r = reference.Run(hfMode);
                    hfWall.Add(r.Seconds);
                    hfCpu.Add(r.CpuSeconds);
                    hfTokens = r.Tokens;
                }
            }
            double t = BenchUtil.Median(wall);
            rows.Add(new ModeResult(mode, th, mb / t, mb / Math.Max(1e-9, BenchUtil.Median(cpu)), tokens / t, tokens,
                reference != null ? mb / BenchUtil.Median(hfWall) : double.NaN, reference != null ? mb / Math.Max(1e-9, BenchUtil.Median(hfCpu)) : double.NaN, hfTokens));
        }
        Measure("encode ids", "ids", 1, () => chunks.Sum(c => (long)tok.EncodeToIds(c).Length));
        Measure("encode ids+offsets", "offsets", 1, () => chunks.Sum(c => (long)tok.Encode(c).Count));
        Measure("batch ids", "batch", threads, () => tok.EncodeBatchToIds(chunks).Sum(x => (long)x.Length));

        if (json)
        {
            foreach (var r in rows)
            {
                var o = new Dictionary<string, object?>
                {
                    ["bench"] = "tokenize", ["tokenizer"] = tokenizerPath, ["input"] = inputPath, ["mode"] = r.Mode, ["threads"] = r.Threads,
                    ["chunk_chars"] = chunkChars, ["chunks"] = chunks.Count, ["mb"] = Math.Round(mb, 3), ["tokens"] = r.Tokens,
                    ["mb_per_s"] = Math.Round(r.MBps, 2), ["mb_per_cpu_s"] = Math.Round(r.CpuMBps, 2), ["tokens_per_s"] = Math.Round(r.TokPerS),
                    ["hf"] = reference == null ? new Dictionary<string, object?> { ["ran"] = false, ["note"] = hfNote } : new Dictionary<string, object?>
                    {
                        ["ran"] = true, ["name"] = reference.Description, ["mb_per_s"] = Math.Round(r.HfMBps, 2), ["mb_per_cpu_s"] = Math.Round(r.HfCpuMBps, 2),
                        ["tokens"] = r.HfTokens, ["vs_hf"] = Math.Round(r.MBps / r.HfMBps, 3), ["vs_hf_cpu"] = Math.Round(r.CpuMBps / r.HfCpuMBps, 3),
                    },
                };
                Console.Out.WriteLine(JsonSerializer.Serialize(o, BenchUtil.JsonOptions));
            }
            return 0;
        }
        var inv = CultureInfo.InvariantCulture;
        Console.Out.WriteLine(string.Create(inv, $"tokenizer {tokenizerPath}; input {inputPath}: {mb:F2} MB in {chunks.Count} chunks of {chunkChars} chars, {rows[0].Tokens} tokens; median of {repeats}"));
        Console.Out.WriteLine(reference != null
            ? $"HF tokenizers reference: {reference.Description}, same tokenizer.json and chunks, passes alternating with ours (measured in this run)"
            : $"HF tokenizers reference: {hfNote}; no ratio printed");
        Console.Out.WriteLine($"{"mode",-20} {"threads",7} {"MB/s",8} {"MB/cpu-s",9} {"Mtok/s",8}" + (reference != null ? $" {"HF MB/s",8} {"HF MB/cpu-s",11} {"vs HF",7} {"vs HF cpu",9}" : ""));
        foreach (var r in rows)
            Console.Out.WriteLine(string.Create(inv, $"{r.Mode,-20} {r.Threads,7} {r.MBps,8:F2} {r.CpuMBps,9:F2} {r.TokPerS / 1e6,8:F2}")
                + (reference != null ? string.Create(inv, $" {r.HfMBps,8:F2} {r.HfCpuMBps,11:F2} {r.MBps / r.HfMBps,6:F2}x {r.CpuMBps / r.HfCpuMBps,8:F2}x") : ""));
        foreach (var r in rows.Where(r => reference != null && r.HfTokens != r.Tokens))
            Console.Out.WriteLine($"note: {r.Mode}: HF produced {r.HfTokens} tokens, we produced {r.Tokens} (the tokenizations differ)");
        Console.Out.WriteLine("MB/s is wall-clock; MB/cpu-s is per second of CPU time, all threads together (steadier on a busy machine)" + (reference != null ? "; vs HF = ours / HF." : "."));
        return 0;
    }
}

/// <summary>HF tokenizers through bench/hf-tokenizers/bench.js (npm <c>tokenizers</c>) as a JSON-lines child process.</summary>
sealed class HfTokenizers : IDisposable
{
    const string Who = "HF tokenizers reference";
    readonly JsonLinesProcess _p;

    public string Description { get; }

    HfTokenizers(JsonLinesProcess p)
    {
        _p = p;
        Description = $"HF tokenizers {p.Info["tokenizers"]} (npm, Node {p.Info["node"]})";
    }

    public static HfTokenizers? TryStart(string node, string tokenizerPath, IReadOnlyList<string> chunks, int threads, out string? note)
    {
        note = null;
        var script = JsonLinesProcess.FindBenchFile("hf-tokenizers", "bench.js");
        if (script == null) { note = "did not run: bench/hf-tokenizers/bench.js not found (run from the repository)"; return null; }
        var file = Directory.Exists(tokenizerPath) ? Path.Combine(tokenizerPath, "tokenizer.json") : tokenizerPath;
        var p = JsonLinesProcess.TryStart(node, [script], new Dictionary<string, string>
        {
            ["RAYON_NUM_THREADS"] = threads.ToString(CultureInfo.InvariantCulture),
            ["TOKENIZERS_PARALLELISM"] = "true",
        }, out var error);
        if (p == null)
        {
            note = $"did not run: {error}" + (error != null && error.Contains("could not start", StringComparison.Ordinal) ? " (install Node.js, e.g. apt-get install -y nodejs npm)" : "");
            return null;
        }
        var r = new HfTokenizers(p);
        try
        {
            p.Call(new JsonObject { ["op"] = "load", ["tokenizer"] = Path.GetFullPath(file), ["chunks"] = new JsonArray([.. chunks.Select(c => (JsonNode?)c)]) }, Who);
        }
        catch (IOException e)
        {
            note = $"did not run: {e.Message}";
            r.Dispose();
            return null;
        }
        return r;
    }

    public (double Seconds, double CpuSeconds, long Tokens) Run(string mode)
    {
        var o = _p.Call(new JsonObject { ["op"] = "run", ["mode"] = mode }, Who);
        return (o["seconds"]!.GetValue<double>(), o["cpu_seconds"]!.GetValue<double>(), o["tokens"]!.GetValue<long>());
    }

    public void Dispose() => _p.Dispose();
}
