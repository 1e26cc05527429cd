using System.CommandLine;
using LongCat.Cli.Bench;

namespace LongCat.Cli.Commands;

/// <summary><c>longcat bench</c>: kernel and end-to-end benchmarks (gemm, forward).</summary>
public static class BenchCommand
{
    public static Command Create()
    {
        var cmd = new Command("bench", "Benchmarks that print ratios against references measured in the same run.");
        cmd.Subcommands.Add(CreateGemm());
        cmd.Subcommands.Add(CreateForward());
        cmd.Subcommands.Add(TokenizeBench.Create());
        cmd.Subcommands.Add(GenerateBench.Create());
        cmd.Subcommands.Add(SampleBench.Create());
        cmd.Subcommands.Add(ServeBench.Create());
        cmd.Subcommands.Add(TrainBench.Create());
        cmd.Subcommands.Add(ConstrainBench.Create());
        return cmd;
    }

    static Command CreateGemm()
    {
        var json = new Option<bool>("--json") { Description = "One JSON object per line instead of tables." };
        var shapes = new Option<string>("--shapes")
        {
            Description = "Comma-separated sets (square, bench-350m, release, decode, all) and/or MxNxK shapes (x [M,K] · W[N,K]ᵀ).",
            DefaultValueFactory = _ => GemmBench.DefaultShapes,
        };
        var dtypes = new Option<string>("--dtypes") { Description = "Weight dtypes: f32, bf16, f16, fp8, int8.", DefaultValueFactory = _ => "f32,bf16,fp8,int8" };
        var seconds = new Option<double>("--seconds") { Description = "Seconds per repeat of each variant.", DefaultValueFactory = _ => 0.25 };
        var repeats = new Option<int>("--repeats") { Description = "Interleaved repeats (the median is reported).", DefaultValueFactory = _ => 5 };
        var warmup = new Option<double>("--warmup") { Description = "Seconds of sustained load before measuring.", DefaultValueFactory = _ => 3.0 };
        var noBlas = new Option<bool>("--no-blas") { Description = "Skip the OpenBLAS reference." };
        var python = new Option<string>("--python") { Description = "Python with numpy linked to OpenBLAS (Debian's).", DefaultValueFactory = _ => "/usr/bin/python3" };
        var script = new Option<string?>("--blas-script") { Description = "Path of bench/openblas_gemm.py (found from the repository by default)." };
        var cmd = new Command("gemm", "GEMM GFLOP/s (F32, BF16, FP8, INT8 weights; F32 dX and dW) on the model's shapes vs OpenBLAS sgemm, and decode GEMV GB/s vs a read-bandwidth probe.")
        {
            json, shapes, dtypes, seconds, repeats, warmup, noBlas, python, script,
        };
        cmd.SetAction(p => CliSupport.Run(p, () =>
        {
            double sec = p.GetValue(seconds);
            int rep = p.GetValue(repeats);
            if (!(sec > 0) || sec > 60) throw new CliException($"--seconds must be in (0, 60], got {sec}");
            if (rep < 1 || rep > 1000) throw new CliException($"--repeats must be in 1..1000, got {rep}");
            return GemmBench.Run(new GemmBenchOptions
            {
                Shapes = GemmBench.ParseShapes(p.GetValue(shapes)!),
                DTypes = GemmBench.ParseDTypes(p.GetValue(dtypes)!),
                Seconds = sec,
                Repeats = rep,
                WarmupSeconds = Math.Max(0, p.GetValue(warmup)),
                Json = p.GetValue(json),
                Blas = !p.GetValue(noBlas),
                Python = p.GetValue(python)!,
                BlasScript = p.GetValue(script),
            });
        }));
        return cmd;
    }

    /// <summary>--peer torch: run the PyTorch peer (bench/peer) in the same run, repeats alternating with ours.</summary>
    public static Option<string?> PeerOption() => new("--peer")
    {
        Description = "torch: also run the PyTorch peer (bench/peer/longcat_peer.py, Debian's /usr/bin/python3 with python3-torch) on the same checkpoint, repeats alternating with ours, and print the ratio.",
    };

    static Command CreateForward()
    {
        var model = CliSupport.RequiredPath("--model", "Checkpoint folder (e.g. from `longcat init --config bench/configs/bench-350m.json`).");
        var tokens = new Option<int>("--tokens") { Description = "Sequence length (batch 1).", DefaultValueFactory = _ => 512 };
        var repeats = new Option<int>("--repeats") { Description = "Timed passes after the warm-up (the median is reported).", DefaultValueFactory = _ => 3 };
        var json = new Option<bool>("--json") { Description = "One JSON object instead of text." };
        var allLogits = new Option<bool>("--all-logits") { Description = "Compute logits for every position (default: last position only, as in prefill)." };
        var peer = PeerOption();
        var cmd = new Command("forward", "Forward tokens/s of one sequence (compute only, model load excluded), with a per-phase breakdown; with --peer torch, the PyTorch peer on the same checkpoint, repeats alternating with ours.")
        {
            model, tokens, repeats, json, allLogits, peer,
        };
        cmd.SetAction(p => CliSupport.Run(p, () => ForwardBench.Run(p.GetValue(model)!, p.GetValue(tokens), p.GetValue(repeats), p.GetValue(json), p.GetValue(allLogits), TorchPeer.Parse(p.GetValue(peer)))));
        return cmd;
    }
}
