using System.CommandLine;
using System.Globalization;
using LongCat.Model;
using LongCat.Quantization;

namespace LongCat.Cli.Commands;

/// <summary>
/// <c>longcat quantize</c>: rewrites a checkpoint with FP8 (block 128×128, the official layout) or INT8 (per
/// output channel) linear weights, then reports the memory saved and the logit drift against the input model.
/// </summary>
public static class QuantizeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Input checkpoint folder (F32, BF16, FP8 or INT8).", Required = true };
        var output = new Option<string>("--out") { Description = "Output folder (model.safetensors, config.json, tokenizer files).", Required = true };
        var format = new Option<string>("--format") { Description = "fp8 (E4M3, 128x128 block scales) or int8 (symmetric, per output channel); f32 and bf16 also work.", Required = true };
        var evalSeq = new Option<int>("--eval-tokens") { Description = "Tokens per sequence of the drift check (2 sequences; 0 skips it).", DefaultValueFactory = _ => 64 };
        var cmd = new Command("quantize", "Quantize a checkpoint's linear weights (fp8 or int8); report memory saved and logit drift.")
        {
            model, output, format, evalSeq,
        };
        cmd.SetAction(p => CliSupport.Run(p, () => Run(p.GetValue(model)!, p.GetValue(output)!, p.GetValue(format)!, p.GetValue(evalSeq))));
        return cmd;
    }

    static string F(double v, string fmt) => v.ToString(fmt, CultureInfo.InvariantCulture);

    static int Run(string modelDir, string outDir, string formatText, int evalTokens)
    {
        var fmt = CheckpointQuantizer.ParseFormat(formatText);
        if (!Directory.Exists(modelDir)) throw new CliException($"{modelDir}: model folder not found");
        if (evalTokens < 0) throw new CliException($"--eval-tokens must be >= 0, got {evalTokens}");
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var r = CheckpointQuantizer.Convert(modelDir, outDir, fmt);
        Console.WriteLine($"wrote {outDir} ({CheckpointQuantizer.Name(fmt)}): {r.Quantized} linear weights converted, {r.Kept} tensors kept, {F(sw.Elapsed.TotalSeconds, "0.0")} s");
        Console.WriteLine($"weights: {F(r.BytesBefore / 1e6, "0.0")} MB -> {F(r.BytesAfter / 1e6, "0.0")} MB (saved {F((r.BytesBefore - r.BytesAfter) / 1e6, "0.0")} MB, {F(100.0 * (r.BytesBefore - r.BytesAfter) / Math.Max(1, r.BytesBefore), "0.0")}%)");
        if (evalTokens > 0)
        {
            using var a = LongCatModel.Load(modelDir);
            using var b = LongCatModel.Load(outDir);
            const int batch = 2;
            var ids = QuantDrift.PseudoText(a.Config.VocabSize, batch, evalTokens);
            var d = QuantDrift.Compare(a, b, ids, batch, evalTokens);
            Console.WriteLine($"drift on {batch}x{evalTokens} pseudo-text tokens: max |dlogit| {F(d.MaxAbsLogitDiff, "0.000e0")}, mean |dlogit| {F(d.MeanAbsLogitDiff, "0.000e0")}, top-1 agreement {F(100 * d.Top1Agreement, "0.0")}%");
            Console.WriteLine($"cross-entropy {F(d.RefCrossEntropy, "0.0000")} -> {F(d.CrossEntropy, "0.0000")} nats (perplexity {F(d.RefPerplexity, "0.00")} -> {F(d.Perplexity, "0.00")}, {F(100 * (d.Perplexity / d.RefPerplexity - 1), "+0.00;-0.00")}%)");
        }
        return 0;
    }
}
