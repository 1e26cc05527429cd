using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using LongCat.Kernels;
using LongCat.Tokenization;

namespace LongCat.Cli.Commands;

/// <summary>
/// <c>longcat bench tokenize</c>: encoding speed in MB/s of UTF-8 input, over a batch of fixed-size chunks (the
/// issue's protocol: 4 KB chunks, one thread), next to Hugging Face tokenizers' figure for the same protocol.
/// </summary>
public static class TokenizeBench
{
    /// <summary>HF tokenizers (Rust, one thread, 4 KB chunks of bench_en_code_2mb.txt) on a machine of this size,
    /// by fixture folder name (figures from the tokenizer issue).</summary>
    static readonly Dictionary<string, double> s_hfReference = new()
    {
        ["deepseek_v3"] = 3.1,
        ["qwen3"] = 3.1,
        ["longcat_style"] = 2.3,
    };

    public static Command Create()
    {
        var tokenizer = TokenizeCommand.TokenizerOption();
        var input = CliSupport.RequiredPath("--input", "UTF-8 text file to encode (e.g. tests/fixtures/tokenizers/bench/bench_en_code_2mb.txt).");
        var chunk = new Option<int>("--chunk-chars") { Description = "Chunk size in characters (default 4096).", DefaultValueFactory = _ => 4096 };
        var repeats = new Option<int>("--repeats") { Description = "Timed passes per mode after one warm-up pass; the median is reported (default 5).", DefaultValueFactory = _ => 5 };
        var hf = new Option<double?>("--hf-mbps") { Description = "Reference MB/s of HF tokenizers to compare with (default: the issue's figure for the fixture tokenizers)." };
        var json = new Option<bool>("--json") { Description = "Print one JSON object per mode instead of the table." };
        var cmd = new Command("tokenize", "Tokenizer encoding speed (MB/s): one thread ids only, one thread with offsets, and a parallel batch on --threads threads.")
        {
            tokenizer, input, chunk, repeats, hf, json,
        };
        cmd.SetAction(p => CliSupport.Run(p, () => Run(p.GetValue(tokenizer)!, p.GetValue(input)!, p.GetValue(chunk), p.GetValue(repeats), p.GetValue(hf), p.GetValue(json))));
        return cmd;
    }

    static int Run(string tokenizerPath, string inputPath, int chunkChars, int repeats, double? hfArg, bool json)
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
        string name = Path.GetFileName(Directory.Exists(tokenizerPath) ? Path.GetFullPath(tokenizerPath).TrimEnd('/') : Path.GetDirectoryName(Path.GetFullPath(tokenizerPath))!);
        double? hf = hfArg ?? (s_hfReference.TryGetValue(name, out var r) ? r : null);

        long tokens = 0;
        var rows = new List<(string Mode, int Threads, double MBps, double CpuMBps, double TokPerS)>();
        // Wall-clock and process CPU time per pass; on a shared machine the CPU-time rate of a one-thread mode is
        // the steadier number (it excludes time the process waited for a core).
        (double Wall, double Cpu, double Tok) Measure(Func<long> pass)
        {
            tokens = pass(); // warm-up (JIT, caches)
            var wall = new List<double>();
            var cpu = new List<double>();
            var proc = Process.GetCurrentProcess();
            for (int k = 0; k < repeats; k++)
            {
                proc.Refresh();
                var c0 = proc.TotalProcessorTime;
                var sw = Stopwatch.StartNew();
                tokens = pass();
                wall.Add(sw.Elapsed.TotalSeconds);
                proc.Refresh();
                cpu.Add((proc.TotalProcessorTime - c0).TotalSeconds);
            }
            wall.Sort();
            cpu.Sort();
            double t = wall[wall.Count / 2];
            return (mb / t, mb / Math.Max(1e-9, cpu[cpu.Count / 2]), tokens / t);
        }
        int threads = Parallelism.Threads;
        var a = Measure(() => chunks.Sum(c => (long)tok.EncodeToIds(c).Length));
        rows.Add(("encode ids", 1, a.Wall, a.Cpu, a.Tok));
        var b = Measure(() => chunks.Sum(c => (long)tok.Encode(c).Count));
        rows.Add(("encode ids+offsets", 1, b.Wall, b.Cpu, b.Tok));
        var c2 = Measure(() => tok.EncodeBatchToIds(chunks).Sum(x => (long)x.Length));
        rows.Add(("batch ids", threads, c2.Wall, c2.Cpu, c2.Tok));

        if (json)
        {
            foreach (var (mode, th, mbps, cpuMbps, tps) in rows)
            {
                var o = new Dictionary<string, object?>
                {
                    ["bench"] = "tokenize", ["tokenizer"] = tokenizerPath, ["input"] = inputPath, ["mode"] = mode, ["threads"] = th,
                    ["chunk_chars"] = chunkChars, ["chunks"] = chunks.Count, ["mb"] = Math.Round(mb, 3), ["tokens"] = tokens,
                    ["mb_per_s"] = Math.Round(mbps, 2), ["mb_per_cpu_s"] = Math.Round(cpuMbps, 2), ["tokens_per_s"] = Math.Round(tps), ["hf_mb_per_s"] = hf,
                    ["vs_hf"] = hf is { } h ? Math.Round(mbps / h, 2) : null,
                };
                Console.Out.WriteLine(JsonSerializer.Serialize(o));
            }
            return 0;
        }
        var inv = CultureInfo.InvariantCulture;
        Console.Out.WriteLine(string.Create(inv, $"tokenizer {tokenizerPath}; input {inputPath}: {mb:F2} MB in {chunks.Count} chunks of {chunkChars} chars, {tokens} tokens; median of {repeats}"));
        Console.Out.WriteLine(hf is { } hv
            ? string.Create(inv, $"HF tokenizers reference: {hv:F1} MB/s (Rust, one thread, same protocol)")
            : "HF tokenizers reference: none for this tokenizer (give --hf-mbps)");
        Console.Out.WriteLine($"{"mode",-20} {"threads",7} {"MB/s",8} {"vs HF",7} {"Mtok/s",8} {"MB/cpu-s",9}");
        foreach (var (mode, th, mbps, cpuMbps, tps) in rows)
            Console.Out.WriteLine(string.Create(inv, $"{mode,-20} {th,7} {mbps,8:F2} {(hf is { } h ? (mbps / h).ToString("F2", inv) + "x" : "-"),7} {tps / 1e6,8:F2} {cpuMbps,9:F2}"));
        Console.Out.WriteLine("MB/s is wall-clock; MB/cpu-s is per second of CPU time, all threads together (steadier on a busy machine).");
        return 0;
    }
}
