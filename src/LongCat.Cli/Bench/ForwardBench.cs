using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using LongCat.Cli.Commands;
using LongCat.Kernels;
using LongCat.Model;

namespace LongCat.Cli.Bench;

/// <summary>
/// <c>longcat bench forward</c>: prefill throughput of one sequence (batch 1) of N tokens: compute only (the model
/// is loaded and a warm-up pass run first), median of repeats; then one profiled pass splits the time by GEMM
/// category (via <see cref="Gemm.Observer"/>) and the attention core (<see cref="Attention.Observer"/>), the rest being norms,
/// RoPE, routing and gathers.
/// With <c>--peer torch</c> the PyTorch peer (<see cref="TorchPeer"/>) loads the same checkpoint and runs the same
/// sequence: one warm-up pass each, then the timed passes alternate (ours, peer, ours, ...); both medians and the ratio
/// are printed. Without torch, the output says that the reference did not run.
/// </summary>
public static class ForwardBench
{
    public static int Run(string modelDir, int tokens, int repeats, bool json, bool allLogits, bool peer = false)
    {
        if (tokens < 1) throw new CliException($"--tokens must be >= 1, got {tokens}");
        if (repeats < 1) throw new CliException($"--repeats must be >= 1, got {repeats}");
        var sw = Stopwatch.StartNew();
        using var model = LongCatModel.Load(modelDir);
        double loadS = sw.Elapsed.TotalSeconds;
        var c = model.Config;
        if (tokens > c.MaxPositionEmbeddings) throw new CliException($"--tokens {tokens} exceeds max_position_embeddings {c.MaxPositionEmbeddings}");
        var ids = new int[tokens];
        ulong s = 0x9E3779B97F4A7C15UL;
        for (int i = 0; i < tokens; i++) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; ids[i] = (int)(s % (ulong)c.VocabSize); }
        var opts = new ForwardOptions { AllLogits = allLogits };
        var dtypes = string.Join("+", model.Linears.Select(w => w.DType.ToString()).Distinct());

        string? peerNote = null;
        using var torch = peer ? StartPeer(modelDir, out peerNote) : null;

        sw.Restart();
        model.Forward(ids, 1, tokens, opts); // warm-up: JIT, page-in of mapped weights, buffers
        double warmS = sw.Elapsed.TotalSeconds;
        torch?.Forward(ids, allLogits);
        var times = new List<double>();
        var peerTimes = new List<double>();
        for (int r = 0; r < repeats; r++)
        {
            sw.Restart();
            model.Forward(ids, 1, tokens, opts);
            times.Add(sw.Elapsed.TotalSeconds);
            if (torch != null) peerTimes.Add(torch.Forward(ids, allLogits));
        }
        double med = BenchUtil.Median(times);
        double peerMed = torch != null ? BenchUtil.Median(peerTimes) : double.NaN;

        // One profiled pass: GEMM time and flops by category.
        var prof = PhaseProfile.Measure(model, () => model.Forward(ids, 1, tokens, opts));
        double profS = prof.Seconds;

        if (json)
        {
            Console.WriteLine(new JsonObject
            {
                ["bench"] = "forward", ["model"] = modelDir, ["dtype"] = dtypes, ["tokens"] = tokens, ["batch"] = 1,
                ["all_logits"] = allLogits, ["threads"] = Parallelism.Threads, ["kernel"] = Gemm.KernelName,
                ["load_seconds"] = Math.Round(loadS, 3), ["warmup_seconds"] = Math.Round(warmS, 3),
                ["seconds"] = times.Select(t => (JsonNode?)Math.Round(t, 4)).ToJsonArray(),
                ["median_seconds"] = Math.Round(med, 4), ["tokens_per_second"] = BenchUtil.J(tokens / med),
                ["gemm_gflops"] = BenchUtil.J(prof.GemmFlops / prof.GemmSeconds / 1e9), ["profiled_seconds"] = Math.Round(profS, 4),
                ["phases"] = prof.ToJson(),
                ["peer"] = !peer ? null : torch == null ? new JsonObject { ["ran"] = false, ["note"] = peerNote } : new JsonObject
                {
                    ["ran"] = true, ["name"] = torch.Description, ["environment"] = torch.EnvironmentNote,
                    ["seconds"] = peerTimes.Select(t => (JsonNode?)Math.Round(t, 4)).ToJsonArray(),
                    ["median_seconds"] = Math.Round(peerMed, 4), ["tokens_per_second"] = BenchUtil.J(tokens / peerMed),
                    ["ratio"] = BenchUtil.J(peerMed / med, 3),
                },
            }.ToJsonString(BenchUtil.JsonOptions));
            return 0;
        }
        var ci = CultureInfo.InvariantCulture;
        Console.WriteLine($"longcat bench forward: {modelDir} ({dtypes}, {c.NumLayers} layers, hidden {c.HiddenSize}), " +
            $"{Gemm.KernelName}, {Parallelism.Threads} threads");
        Console.WriteLine($"batch 1 x {tokens} tokens, {(allLogits ? "logits for every position" : "logits for the last position")}; " +
            $"load {loadS.ToString("F2", ci)} s, warm-up {warmS.ToString("F2", ci)} s");
        Console.WriteLine($"forward: median {med.ToString("F3", ci)} s of {repeats} ({string.Join(", ", times.Select(t => t.ToString("F3", ci)))})  =>  " +
            $"{BenchUtil.F(tokens / med)} tokens/s");
        if (peer && torch == null)
            Console.WriteLine($"PyTorch peer: {peerNote} (no comparison printed)");
        else if (torch != null)
        {
            Console.WriteLine(torch.EnvironmentNote);
            Console.WriteLine($"PyTorch peer: median {peerMed.ToString("F3", ci)} s of {repeats} ({string.Join(", ", peerTimes.Select(t => t.ToString("F3", ci)))})  =>  " +
                $"{BenchUtil.F(tokens / peerMed)} tokens/s; LongCat.NET / PyTorch = {(peerMed / med).ToString("F2", ci)}x (same run, repeats alternating)");
        }
        Console.WriteLine($"profiled pass {profS.ToString("F3", ci)} s:");
        prof.Print(Console.Out);
        return 0;
    }

    /// <summary>Starts the PyTorch peer and loads <paramref name="modelDir"/>; null with the reason when it cannot.</summary>
    internal static TorchPeer? StartPeer(string modelDir, out string? note)
    {
        var torch = TorchPeer.TryStart(Parallelism.Threads, out note);
        if (torch == null) return null;
        try
        {
            torch.Load(modelDir);
            return torch;
        }
        catch (IOException e)
        {
            note = $"the PyTorch reference did not run: {e.Message}";
            torch.Dispose();
            return null;
        }
    }

    static JsonArray ToJsonArray(this IEnumerable<JsonNode?> items) => new([.. items]);
}
