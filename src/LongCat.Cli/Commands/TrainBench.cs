using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using LongCat.Config;
using LongCat.Kernels;
using LongCat.Planning;
using LongCat.Training;

namespace LongCat.Cli.Commands;

/// <summary>
/// <c>longcat bench train</c>: training throughput (tokens/s) and model FLOPs utilisation against the F32 GEMM peak
/// measured in the same run. A step is what the trainer does: zero gradients, forward + backward, gradient norm, AdamW
/// update, budget-controller routing counts. Model FLOPs = 6 × activated parameters (dense parts, router, the real
/// experts the step's tokens actually used, lm_head; not the embedding lookup) per token, plus causal attention
/// (3 × 2 × heads × (qk_dim + v_dim) × (S+1)/2 per token and attention sublayer).
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
        var cmd = new Command("train", "Training tokens/s and MFU (model FLOPs against the F32 GEMM peak measured in the same run), with the bytes allocated by the steadiest timed step and the GC collections during the timed steps.")
        {
            config, seq, batch, steps, json,
        };
        cmd.SetAction(p => CliSupport.Run(p, () =>
        {
            var n = p.GetValue(steps);
            if (n < 1 || n > 1000) throw new CliException($"--steps must be in 1..1000, got {n}");
            var cases = p.GetValue(config) is { } c
                ? [(c, p.GetValue(seq) ?? 256, p.GetValue(batch) ?? 4)]
                : s_default;
            return Run(cases, n, p.GetValue(json));
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

    static int Run((string Config, int Seq, int Batch)[] cases, int steps, bool json)
    {
        var inv = CultureInfo.InvariantCulture;
        var (gemmFwd, gemmBwd) = MeasureGemmPeak();
        double peak = Math.Max(gemmFwd, gemmBwd);
        if (!json)
        {
            Console.WriteLine(string.Create(inv, $"F32 GEMM peak measured now ({Parallelism.Threads} threads, 512x1024x1024): forward Gemm.MatMul {gemmFwd:F1} GFLOP/s, backward GemmGrad {gemmBwd:F1} GFLOP/s; peak = {peak:F1} GFLOP/s"));
            Console.WriteLine($"{"model",-12} {"params",8} {"activated",9} {"tokens",7} {"step s",8} {"tokens/s",9} {"GFLOP/tok",9} {"GFLOP/s",8} {"MFU",6} {"experts",7} {"alloc/step",11} {"gen0/1/2",9}");
        }
        foreach (var (configName, seq, batch) in cases)
        {
            var path = Resolve(configName);
            var name = Path.GetFileNameWithoutExtension(path);
            var c = LongCatConfig.Load(path);
            if (seq < 2 || batch < 1) throw new CliException($"--seq must be >= 2 and --batch >= 1, got {seq} and {batch}");
            using var model = TrainableModel.Random(c, 1);
            using var opt = new AdamW(model.Parameters, new AdamWOptions());
            var budget = new BudgetController(c, new BudgetControllerOptions { Enabled = c.ZeroExpertNum > 0 }, 1000);
            var rng = new Random(1);
            var ids = Enumerable.Range(0, seq * batch).Select(_ => rng.Next(3, c.VocabSize)).ToArray();
            var counts = new ParameterCount(c);
            double realSum = 0;
            void Step(int s)
            {
                model.Parameters.ZeroGrads();
                model.ForwardBackward(ids, batch, seq);
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
            Step(0); // warm-up: JIT, buffers sized
            int g0 = GC.CollectionCount(0), g1 = GC.CollectionCount(1), g2 = GC.CollectionCount(2);
            long allocPerStep = long.MaxValue;
            double secs = 0;
            for (int s = 1; s <= steps; s++)
            {
                // Per step, the least allocated is the steady state (the first timed steps may still re-JIT hot methods).
                long a0 = GC.GetTotalAllocatedBytes(true);
                long t0 = Stopwatch.GetTimestamp();
                Step(s);
                secs += Stopwatch.GetElapsedTime(t0).TotalSeconds;
                allocPerStep = Math.Min(allocPerStep, GC.GetTotalAllocatedBytes(true) - a0);
                realSum += RealExperts();
            }
            secs /= steps;
            int d0 = GC.CollectionCount(0) - g0, d1 = GC.CollectionCount(1) - g1, d2 = GC.CollectionCount(2) - g2;
            double real = realSum / steps;
            double activated = counts.Activated(real);
            double attn = 3.0 * 2 * c.NumAttentionHeads * (c.QHeadDim + c.VHeadDim) * (seq + 1) / 2.0 * 2 * c.NumLayers;
            double flopsPerToken = 6 * activated + attn;
            double tokensPerSec = seq * batch / secs;
            double achieved = flopsPerToken * tokensPerSec / 1e9;
            double mfu = achieved / peak;
            if (json)
                Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
                {
                    ["bench"] = "train", ["model"] = name, ["params"] = counts.Total, ["activated_params"] = activated, ["seq"] = seq, ["batch"] = batch,
                    ["threads"] = Parallelism.Threads, ["steps"] = steps, ["step_s"] = secs, ["tokens_per_s"] = tokensPerSec,
                    ["model_gflop_per_token"] = flopsPerToken / 1e9, ["achieved_gflops"] = achieved, ["peak_gflops"] = peak,
                    ["gemm_forward_gflops"] = gemmFwd, ["gemm_backward_gflops"] = gemmBwd, ["mfu"] = mfu,
                    ["real_experts_per_token"] = real, ["allocated_bytes_per_step"] = allocPerStep, ["gc_gen0"] = d0, ["gc_gen1"] = d1, ["gc_gen2"] = d2,
                }));
            else
                Console.WriteLine(string.Create(inv,
                    $"{name,-12} {counts.Total / 1e6,7:F1}M {activated / 1e6,8:F1}M {seq}x{batch,-4} {secs,8:F2} {tokensPerSec,9:F1} {flopsPerToken / 1e9,9:F3} {achieved,8:F1} {mfu,6:P1} {real,7:F2} {Bytes(allocPerStep),11} {$"{d0}/{d1}/{d2}",9}"));
        }
        if (!json)
            Console.WriteLine("reference (the training issue): PyTorch training the reference implementation on bench-350m at 256x4 reaches ~65% MFU, 176-190 tokens/s on this machine; the target is 70% MFU.");
        return 0;
    }

    static string Bytes(long b) => b >= 1 << 20 ? $"{b / (double)(1 << 20):F1} MiB" : b >= 1 << 10 ? $"{b / 1024.0:F1} KiB" : $"{b} B";

    /// <summary>Best of 3 for y[512,1024] = x·Wᵀ (Gemm.MatMul, F32 weight) and dx = dy·W (GemmGrad), in GFLOP/s.</summary>
    static (double Forward, double Backward) MeasureGemmPeak()
    {
        const int m = 512, n = 1024, k = 1024;
        var rng = new Random(1);
        var x = Enumerable.Range(0, m * k).Select(_ => (float)rng.NextDouble()).ToArray();
        var wv = Enumerable.Range(0, n * k).Select(_ => (float)rng.NextDouble()).ToArray();
        var w = Weight.FromFloats("w", wv, n, k);
        var y = new float[m * n];
        var dx = new float[m * k];
        double flops = 2.0 * m * n * k;
        double Best(Action a)
        {
            a();
            double best = double.MaxValue;
            for (int i = 0; i < 3; i++)
            {
                var sw = Stopwatch.StartNew();
                a();
                best = Math.Min(best, sw.Elapsed.TotalSeconds);
            }
            return flops / best / 1e9;
        }
        return (Best(() => Gemm.MatMul(x, w, y, m)), Best(() => GemmGrad.InputGrad(y, wv, dx, m, n, k)));
    }
}
