using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using LongCat.Cli.Bench;
using LongCat.Config;
using LongCat.Kernels;
using LongCat.Planning;
using LongCat.Training;

namespace LongCat.Cli.Commands;

/// <summary>
/// <c>longcat bench train</c>: training throughput (tokens/s) and model FLOPs utilisation against the machine's F32
/// peak measured in the same run (OpenBLAS sgemm 2048³ through numpy, <see cref="BlasReference.MeasurePeak"/>; not
/// our own kernel). A step is what the trainer does: zero gradients, forward + backward, gradient norm, AdamW
/// update, budget-controller routing counts. Model FLOPs = 6 × activated parameters (dense parts, router, the real
/// experts the step's tokens actually used, lm_head; not the embedding lookup) per token, plus causal attention
/// (3 × 2 × heads × (qk_dim + v_dim) × (S+1)/2 per token and attention sublayer). Step times are medians.
/// With <c>--peer torch</c> the model is written to a temporary checkpoint that both we and the PyTorch peer load, and
/// the peer's steps (zero grads, forward, next-token loss, backward, clip, AdamW) alternate with ours on the same ids.
/// </summary>
public static class TrainBench
{
    /// <summary>The issue's cases: bench-350m at 256 x 4, and a ~20M-parameter model at 512.</summary>
    static readonly (string Config, int Seq, int Batch)[] s_default = [("bench-350m", 256, 4), ("bench-20m", 512, 2)];

    public static Command Create()
    {
        var config = new Option<string?>("--config") { Description = "A model config.json (or a name under bench/configs); default: bench-350m at 256x4 and bench-20m at 512x2." };
        var seq = new Option<int?>("--seq") { Description = "Sequence length (with --config)." };
        var batch = new Option<int?>("--batch") { Description = "Sequences per step (with --config)." };
        var steps = new Option<int>("--steps") { Description = "Timed steps after the warm-up step (default 2).", DefaultValueFactory = _ => 2 };
        var json = new Option<bool>("--json") { Description = "One JSON object per case instead of the table." };
        var peer = BenchCommand.PeerOption();
        var cmd = new Command("train", "Training tokens/s and MFU (model FLOPs against the OpenBLAS sgemm 2048³ peak measured in the same run), with the bytes allocated by the steadiest timed step and the GC collections during the timed steps; with --peer torch, the PyTorch peer's steps alternating with ours.")
        {
            config, seq, batch, steps, json, peer,
        };
        cmd.SetAction(p => CliSupport.Run(p, () =>
        {
            var n = p.GetValue(steps);
            if (n < 1 || n > 1000) throw new CliException($"--steps must be in 1..1000, got {n}");
            var cases = p.GetValue(config) is { } c
                ? [(c, p.GetValue(seq) ?? 256, p.GetValue(batch) ?? 4)]
                : s_default;
            return Run(cases, n, p.GetValue(json), TorchPeer.Parse(p.GetValue(peer)));
        }));
        return cmd;
    }

    static string Resolve(string name)
    {
        if (File.Exists(name)) return name;
        var p = Path.Combine("bench", "configs", name + ".json");
        if (File.Exists(p)) return p;
        throw new CliException($"model config '{name}' not found (a config.json path, or a name under bench/configs when run from the repository root)");
    }

    static int Run((string Config, int Seq, int Batch)[] cases, int steps, bool json, bool peer)
    {
        var inv = CultureInfo.InvariantCulture;
        double peak = BlasReference.MeasurePeak(Parallelism.Threads, out var blasName, out var blasNote);
        string? peerNote = null;
        using var torch = peer ? TorchPeer.TryStart(Parallelism.Threads, out peerNote) : null;
        if (!json)
        {
            Console.WriteLine(double.IsNaN(peak)
                ? $"F32 peak not measured ({blasNote}): MFU is not computed"
                : string.Create(inv, $"F32 peak measured now: {blasName} sgemm 2048³ = {peak:F1} GFLOP/s (best of 3 after 1 s of warm-up); MFU = model FLOPs/s / this peak"));
            if (peer) Console.WriteLine(torch != null ? torch.EnvironmentNote : $"PyTorch peer: {peerNote}");
            Console.WriteLine($"{"model",-12} {"params",8} {"activated",9} {"tokens",7} {"step s",8} {"tokens/s",9} {"GFLOP/tok",9} {"GFLOP/s",8} {"MFU",6} {"experts",7} {"alloc/step",11} {"gen0/1/2",9}"
                + (torch != null ? $" {"torch step s",12} {"torch tok/s",11} {"torch MFU",9} {"vs torch",8}" : ""));
        }
        var profiles = new List<(string Name, PhaseProfile Profile, (string, double)[] Split)>();
        foreach (var (configName, seq, batch) in cases)
        {
            var path = Resolve(configName);
            var name = Path.GetFileNameWithoutExtension(path);
            var c = LongCatConfig.Load(path);
            if (seq < 2 || batch < 1) throw new CliException($"--seq must be >= 2 and --batch >= 1, got {seq} and {batch}");
            string? ckpt = null;
            string? casePeerNote = peerNote;
            bool peerRuns = false;
            if (torch != null)
            {
                // One checkpoint for both: the same weights, so the same routing and expert loads.
                ckpt = Path.Combine(Path.GetTempPath(), $"longcat-bench-train-{Environment.ProcessId}-{name}");
                LongCat.Model.ModelInitializer.Write(c, ckpt, 1);
            }
            try
            {
            using var model = ckpt != null ? TrainableModel.Load(ckpt) : TrainableModel.Random(c, 1);
            using var opt = new AdamW(model.Parameters, new AdamWOptions());
            var budget = new BudgetController(c, new BudgetControllerOptions { Enabled = c.ZeroExpertNum > 0 }, 1000);
            var rng = new Random(1);
            var ids = Enumerable.Range(0, seq * batch).Select(_ => rng.Next(3, c.VocabSize)).ToArray();
            var counts = new ParameterCount(c);
            double realSum = 0;
            long fbTicks = 0;   // the last step's forward + backward (the rest of a step: zeroing, budget, clipping, AdamW)
            void Step(int s)
            {
                model.Parameters.ZeroGrads();
                long fb0 = Stopwatch.GetTimestamp();
                model.ForwardBackward(ids, batch, seq);
                fbTicks = Stopwatch.GetTimestamp() - fb0;
                for (int l = 0; l < c.NumLayers; l++) budget.Observe(l, model.LastSelected(l));
                budget.ObserveTokens(seq * batch);
                double norm = Math.Sqrt(opt.GradSquaredSum());
                opt.Update(1e-4, norm > 1 ? 1 / norm : 1);
                budget.Commit(s, model.Parameters);
            }
            double RealExperts()
            {
                long real = 0;
                for (int l = 0; l < c.NumLayers; l++)
                    foreach (var e in model.LastSelected(l)) if (e < c.NRoutedExperts) real++;
                return (double)real / (seq * batch) / c.NumLayers;
            }
            if (torch != null)
            {
                try
                {
                    torch.Load(ckpt!);
                    torch.TrainSetup(ids, batch, seq);
                    peerRuns = true;
                }
                catch (IOException e) { casePeerNote = $"the PyTorch reference did not run: {e.Message}"; }
            }
            Step(0); // warm-up: JIT, buffers sized
            if (peerRuns) torch!.TrainStep();
            int g0 = GC.CollectionCount(0), g1 = GC.CollectionCount(1), g2 = GC.CollectionCount(2);
            long allocPerStep = long.MaxValue;
            var times = new List<double>();
            var peerTimes = new List<double>();
            for (int s = 1; s <= steps; s++)
            {
                // Per step, the least allocated is the steady state (the first timed steps may still re-JIT hot methods).
                long a0 = GC.GetTotalAllocatedBytes(true);
                long t0 = Stopwatch.GetTimestamp();
                Step(s);
                times.Add(Stopwatch.GetElapsedTime(t0).TotalSeconds);
                allocPerStep = Math.Min(allocPerStep, GC.GetTotalAllocatedBytes(true) - a0);
                realSum += RealExperts();
                if (peerRuns) peerTimes.Add(torch!.TrainStep());
            }
            // One profiled step after the timed ones: where its time goes (forward GEMMs, backward dX and dW GEMMs,
            // the attention core forward and backward, the optimizer, the rest of forward and backward).
            var prof = PhaseProfile.Measure(null, () => Step(steps + 1), backward: true);
            double fbS = fbTicks / (double)Stopwatch.Frequency;
            (string, double)[] split =
            [
                ("optimizer (AdamW, clipping, budget, zeroing)", prof.Seconds - fbS),
                ("the rest of forward and backward (norms, rope, routing, gathers, losses)", Math.Max(0, fbS - prof.GemmSeconds - prof.AttentionSeconds)),
            ];
            profiles.Add((name, prof, split));
            double secs = BenchUtil.Median(times);
            double peerSecs = peerRuns ? BenchUtil.Median(peerTimes) : double.NaN;
            int d0 = GC.CollectionCount(0) - g0, d1 = GC.CollectionCount(1) - g1, d2 = GC.CollectionCount(2) - g2;
            double real = realSum / steps;
            double activated = counts.Activated(real);
            double attn = 3.0 * 2 * c.NumAttentionHeads * (c.QHeadDim + c.VHeadDim) * (seq + 1) / 2.0 * 2 * c.NumLayers;
            double flopsPerToken = 6 * activated + attn;
            double tokensPerSec = seq * batch / secs;
            double achieved = flopsPerToken * tokensPerSec / 1e9;
            double mfu = achieved / peak;
            double peerTps = seq * batch / peerSecs;
            if (json)
                Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object?>
                {
                    ["bench"] = "train", ["model"] = name, ["params"] = counts.Total, ["activated_params"] = activated, ["seq"] = seq, ["batch"] = batch,
                    ["threads"] = Parallelism.Threads, ["steps"] = steps, ["step_s"] = secs, ["tokens_per_s"] = tokensPerSec,
                    ["model_gflop_per_token"] = flopsPerToken / 1e9, ["achieved_gflops"] = achieved, ["peak_gflops"] = BenchUtil.J(peak),
                    ["peak_source"] = double.IsNaN(peak) ? blasNote : $"{blasName} sgemm 2048x2048x2048", ["mfu"] = BenchUtil.J(mfu, 4),
                    ["real_experts_per_token"] = real, ["allocated_bytes_per_step"] = allocPerStep, ["gc_gen0"] = d0, ["gc_gen1"] = d1, ["gc_gen2"] = d2,
                    ["profiled_step_s"] = prof.Seconds, ["profile"] = prof.ToJson(split),
                    ["peer"] = !peer ? null : !peerRuns ? new Dictionary<string, object?> { ["ran"] = false, ["note"] = casePeerNote } : new Dictionary<string, object?>
                    {
                        ["ran"] = true, ["name"] = torch!.Description, ["step_s"] = peerSecs, ["tokens_per_s"] = peerTps,
                        ["mfu"] = BenchUtil.J(flopsPerToken * peerTps / 1e9 / peak, 4), ["ratio"] = BenchUtil.J(tokensPerSec / peerTps, 3),
                        ["environment"] = torch.EnvironmentNote,
                    },
                }, BenchUtil.JsonOptions));
            else
                Console.WriteLine(string.Create(inv,
                    $"{name,-12} {counts.Total / 1e6,7:F1}M {activated / 1e6,8:F1}M {seq}x{batch,-4} {secs,8:F2} {tokensPerSec,9:F1} {flopsPerToken / 1e9,9:F3} {achieved,8:F1} {(double.IsNaN(mfu) ? "-" : mfu.ToString("P1", inv)),6} {real,7:F2} {Bytes(allocPerStep),11} {$"{d0}/{d1}/{d2}",9}")
                    + (peerRuns ? string.Create(inv, $" {peerSecs,12:F2} {peerTps,11:F1} {(double.IsNaN(peak) ? "-" : (flopsPerToken * peerTps / 1e9 / peak).ToString("P1", inv)),9} {tokensPerSec / peerTps,7:F2}x") : ""));
            if (!json && peer && !peerRuns) Console.WriteLine($"  {name}: {casePeerNote}");
            }
            finally
            {
                if (ckpt != null && Directory.Exists(ckpt)) Directory.Delete(ckpt, recursive: true);
            }
        }
        if (!json && torch != null)
            Console.WriteLine("vs torch: LongCat.NET tokens/s / PyTorch peer tokens/s, median step times, steps alternating; the peer's MFU uses the same model FLOPs and peak.");
        if (!json)
            foreach (var (name, profile, split) in profiles)
            {
                Console.WriteLine(string.Create(inv, $"profiled step, {name}: {profile.Seconds:F3} s"));
                profile.Print(Console.Out, split);
            }
        return 0;
    }

    static string Bytes(long b) => b >= 1 << 20 ? $"{b / (double)(1 << 20):F1} MiB" : b >= 1 << 10 ? $"{b / 1024.0:F1} KiB" : $"{b} B";
}
