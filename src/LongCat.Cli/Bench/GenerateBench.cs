using System.CommandLine;
using System.Diagnostics;
using System.Text.Json.Nodes;
using LongCat.Cli.Commands;
using LongCat.Inference;
using LongCat.IO;
using LongCat.Kernels;
using LongCat.Model;
using LongCat.Quantization;

namespace LongCat.Cli.Bench;

/// <summary>
/// <c>longcat bench generate</c>: prefill tokens/s (one 512-token prompt) and decode tokens/s at batch 1, for the
/// model converted to each weight format (f32, bf16, fp8, int8; converted into temp folders with the quantizer),
/// with MTP speculative decoding when asked and the model has an MTP head. Beside decode: the memory-bandwidth
/// roofline, i.e. the weight bytes actually read per decoded token (every GEMM/GEMV call's weight bytes, counted
/// through <see cref="Gemm.Observer"/>: dense parts, the experts really used, lm_head, the MTP head) divided by the
/// read bandwidth measured in the same run (<see cref="BenchUtil.ReadBandwidth"/>). Prefill is also shown as
/// GEMM GFLOP/s against the F32 GEMM peak measured in the same run.
/// </summary>
public static class GenerateBench
{
    public static Command Create()
    {
        var model = CliSupport.RequiredPath("--model", "Checkpoint folder (e.g. from `longcat init --config bench/configs/bench-350m.json --mtp`).");
        var spec = new Option<string?>("--speculative") { Description = "mtp: decode with the MTP draft head (when the model has one)." };
        var json = new Option<bool>("--json") { Description = "One JSON object per line instead of the table." };
        var formats = new Option<string>("--formats") { Description = "Weight formats to convert to and measure: f32, bf16, fp8, int8.", DefaultValueFactory = _ => "f32,bf16,fp8,int8" };
        var prompt = new Option<int>("--prompt-tokens") { Description = "Prompt length (prefill).", DefaultValueFactory = _ => 512 };
        var decode = new Option<int>("--decode-tokens") { Description = "Tokens to decode (greedy).", DefaultValueFactory = _ => 32 };
        var cmd = new Command("generate", "Prefill and decode tokens/s per weight format (f32/bf16/fp8/int8), with the memory-bandwidth roofline of decode.")
        {
            model, spec, json, formats, prompt, decode,
        };
        cmd.SetAction(p => CliSupport.Run(p, () => Run(p.GetValue(model)!, p.GetValue(spec), p.GetValue(json), p.GetValue(formats)!, p.GetValue(prompt), p.GetValue(decode))));
        return cmd;
    }

    sealed record Row(string Format, long WeightBytes, double PrefillTps, double PrefillGflops, double DecodeTps,
        double BytesPerToken, double RooflineTps, bool Mtp, double Acceptance);

    static int Run(string modelDir, string? speculative, bool json, string formatList, int promptTokens, int decodeTokens)
    {
        if (speculative is not (null or "mtp")) throw new CliException($"--speculative must be 'mtp', got '{speculative}'");
        if (promptTokens < 1) throw new CliException($"--prompt-tokens must be >= 1, got {promptTokens}");
        if (decodeTokens < 2) throw new CliException($"--decode-tokens must be >= 2, got {decodeTokens}");
        if (!Directory.Exists(modelDir)) throw new CliException($"{modelDir}: model folder not found");
        var formats = formatList.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(CheckpointQuantizer.ParseFormat).Distinct().ToList();
        if (formats.Count == 0) throw new CliException("--formats is empty");

        double bw = BenchUtil.ReadBandwidth(512, 1.0);
        double peak = F32GemmPeak();
        if (!json)
        {
            Console.WriteLine($"{modelDir}: batch 1, prompt {promptTokens} tokens, {decodeTokens} decoded (greedy{(speculative == "mtp" ? ", MTP speculative" : "")}), {Parallelism.Threads} threads, {Gemm.KernelName}");
            Console.WriteLine($"read bandwidth {BenchUtil.F(bw, 1)} GB/s, F32 GEMM peak {BenchUtil.F(peak, 1)} GFLOP/s (512x1024x1024)");
            Console.WriteLine();
            Console.WriteLine($"{"format",-6} {"weights MB",10} {"prefill tok/s",13} {"GFLOP/s",8} {"% peak",6} {"decode tok/s",12} {"MB/token",9} {"roofline tok/s",14} {"x roofline",10}{(speculative == "mtp" ? "  accept" : "")}");
        }
        var tmpRoot = Path.Combine(Path.GetTempPath(), "longcat-bench-generate-" + Environment.ProcessId);
        try
        {
            foreach (var f in formats)
            {
                var dir = Path.Combine(tmpRoot, CheckpointQuantizer.Name(f));
                CheckpointQuantizer.Convert(modelDir, dir, f);
                Row row;
                using (var m = LongCatModel.Load(dir))
                    row = Measure(m, CheckpointQuantizer.Name(f), speculative == "mtp", promptTokens, decodeTokens, bw);
                Directory.Delete(dir, recursive: true);
                double ratio = row.RooflineTps / row.DecodeTps;
                if (json)
                {
                    var o = new JsonObject
                    {
                        ["bench"] = "generate", ["model"] = modelDir, ["format"] = row.Format, ["weight_bytes"] = row.WeightBytes,
                        ["prompt_tokens"] = promptTokens, ["decode_tokens"] = decodeTokens, ["threads"] = Parallelism.Threads,
                        ["prefill_tokens_per_s"] = BenchUtil.J(row.PrefillTps), ["prefill_gemm_gflops"] = BenchUtil.J(row.PrefillGflops),
                        ["f32_gemm_peak_gflops"] = BenchUtil.J(peak), ["prefill_fraction_of_peak"] = BenchUtil.J(row.PrefillGflops / peak, 3),
                        ["decode_tokens_per_s"] = BenchUtil.J(row.DecodeTps), ["weight_bytes_per_token"] = Math.Round(row.BytesPerToken),
                        ["read_bandwidth_gbs"] = BenchUtil.J(bw), ["roofline_tokens_per_s"] = BenchUtil.J(row.RooflineTps),
                        ["roofline_ratio"] = BenchUtil.J(ratio, 3), ["speculative"] = row.Mtp ? "mtp" : null,
                        ["acceptance_rate"] = row.Mtp ? BenchUtil.J(row.Acceptance, 3) : null,
                    };
                    Console.WriteLine(o.ToJsonString());
                }
                else
                    Console.WriteLine($"{row.Format,-6} {BenchUtil.F(row.WeightBytes / 1e6, 1),10} {BenchUtil.F(row.PrefillTps, 1),13} {BenchUtil.F(row.PrefillGflops, 1),8} {BenchUtil.F(100 * row.PrefillGflops / peak, 0),6} {BenchUtil.F(row.DecodeTps, 2),12} {BenchUtil.F(row.BytesPerToken / 1e6, 1),9} {BenchUtil.F(row.RooflineTps, 2),14} {BenchUtil.F(ratio, 2),10}{(row.Mtp ? "  " + BenchUtil.F(100 * row.Acceptance, 0) + "%" : "")}");
            }
        }
        finally
        {
            if (Directory.Exists(tmpRoot)) Directory.Delete(tmpRoot, recursive: true);
        }
        return 0;
    }

    static Row Measure(LongCatModel model, string format, bool speculative, int promptTokens, int decodeTokens, double bwGBs)
    {
        var c = model.Config;
        bool mtp = speculative && model.Mtp is not null;
        var prompt = QuantDrift.PseudoText(c.VocabSize, 1, promptTokens, 99);
        var opts = new GenerationOptions { MaxTokens = decodeTokens, Temperature = 0f, Speculative = mtp };
        // Warm-up: JIT, page-in of the weights, buffers.
        new GenerationSession(model, prompt[..Math.Min(promptTokens, 16)], opts with { MaxTokens = 4 }).Run();

        double prefillFlops = 0, decodeBytes = 0;
        bool decoding = false;
        var gate = new object();
        Gemm.Observer = (w, m, _) =>
        {
            lock (gate)
            {
                if (decoding) decodeBytes += w.Bytes;
                else prefillFlops += 2.0 * m * w.Rows * w.Cols;
            }
        };
        var session = new GenerationSession(model, prompt, opts);
        var sw = Stopwatch.StartNew();
        double prefillS = 0;
        int n = 0;
        try
        {
            foreach (var _ in session.Generate())
            {
                if (n++ == 0)
                {
                    prefillS = sw.Elapsed.TotalSeconds;
                    lock (gate) decoding = true;
                    sw.Restart();
                }
            }
        }
        finally { Gemm.Observer = null; }
        double decodeS = sw.Elapsed.TotalSeconds;
        int decoded = n - 1;
        double bytesPerToken = decodeBytes / Math.Max(1, decoded);
        var r = session.Result;
        return new Row(format, model.Linears.Sum(w => w.Bytes), promptTokens / prefillS, prefillFlops / prefillS / 1e9,
            decoded / decodeS, bytesPerToken, bwGBs * 1e9 / bytesPerToken, mtp, r?.AcceptanceRate ?? 0);
    }

    /// <summary>F32 GEMM GFLOP/s on a prefill-like shape (x [512, 1024] · W [1024, 1024]ᵀ).</summary>
    static double F32GemmPeak()
    {
        const int m = 512, n = 1024, k = 1024;
        var w = BenchUtil.RandomWeight(DType.F32, n, k, 1);
        var x = new float[m * k];
        BenchUtil.FillUniform(x, 1f, 2);
        var y = new float[m * n];
        Gemm.MatMul(x, w, y, m);
        return BenchUtil.CallsPerSecond(() => Gemm.MatMul(x, w, y, m), 1.0) * 2.0 * m * n * k / 1e9;
    }
}
