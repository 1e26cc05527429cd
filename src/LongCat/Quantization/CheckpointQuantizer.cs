using LongCat.Config;
using LongCat.IO;
using LongCat.Kernels;
using LongCat.Model;

namespace LongCat.Quantization;

/// <summary>Storage formats for the linear weights of a converted checkpoint.</summary>
public enum WeightFormat { F32, BF16, Fp8, Int8 }

/// <summary>What <see cref="CheckpointQuantizer.Convert"/> did: tensor counts and bytes before and after.</summary>
public sealed record QuantizeReport(int Quantized, int Kept, long BytesBefore, long BytesAfter);

/// <summary>
/// Rewrites a checkpoint (any readable dtype: F32, BF16, F16, FP8, INT8) with its linear weights in one format:
/// attention projections, dense MLPs, experts and the MTP linears. The embedding, lm_head, norms, router classifier
/// and router bias keep their stored dtype (FP8/INT8 ones are widened to F32), as in the official FP8 release.
/// FP8 is the official layout (E4M3 + <c>weight_scale_inv</c> [ceil(out/128), ceil(in/128)], quantization_config
/// quant_method "fp8"); INT8 is symmetric per output channel (I8 + <c>weight_scale</c> F32 [out, 1],
/// quant_method "int8", weight_scale_granularity "per_channel").
/// </summary>
public static class CheckpointQuantizer
{
    public static WeightFormat ParseFormat(string s) => s.Trim().ToLowerInvariant() switch
    {
        "f32" or "fp32" or "float32" => WeightFormat.F32,
        "bf16" or "bfloat16" => WeightFormat.BF16,
        "fp8" or "f8" or "f8_e4m3" => WeightFormat.Fp8,
        "int8" or "i8" => WeightFormat.Int8,
        _ => throw new ArgumentException($"unknown weight format '{s}' (expected f32, bf16, fp8 or int8)"),
    };

    public static string Name(WeightFormat f) => f switch
    {
        WeightFormat.F32 => "f32", WeightFormat.BF16 => "bf16", WeightFormat.Fp8 => "fp8", _ => "int8",
    };

    /// <summary>Whether a linear weight of the model is quantized (false for embedding, lm_head, router).</summary>
    public static bool IsQuantizable(string name) =>
        !name.Contains("embed_tokens", StringComparison.Ordinal) && !name.StartsWith("lm_head", StringComparison.Ordinal)
        && !name.Contains(".router.", StringComparison.Ordinal);

    /// <summary>Converts the checkpoint in <paramref name="inDir"/> into <paramref name="outDir"/> (model.safetensors + config.json + tokenizer files).</summary>
    public static QuantizeReport Convert(string inDir, string outDir, WeightFormat format)
    {
        if (Path.GetFullPath(inDir).TrimEnd('/') == Path.GetFullPath(outDir).TrimEnd('/'))
            throw new ArgumentException("--out must differ from --model");
        using var model = LongCatModel.Load(inDir);
        var cfg = model.Config;
        var linears = new Dictionary<string, Weight>(StringComparer.Ordinal);
        foreach (var w in model.Linears) linears.TryAdd(w.Name, w);
        using var ck = Checkpoint.Open(inDir);
        var writer = new SafeTensorsWriter();
        int quantized = 0, kept = 0;
        long before = 0, after = 0;
        foreach (var f in ck.Files) foreach (var t in f.Tensors.Values) before += t.ByteLength;
        foreach (var name in ck.TensorNames.OrderBy(n => n, StringComparer.Ordinal))
        {
            if (IsScaleOf(name, linears)) continue; // rewritten with its weight
            var t = ck.Tensor(name);
            if (linears.TryGetValue(name, out var w))
            {
                if (IsQuantizable(name))
                {
                    var v = w.ToFloat32();
                    string module = name.EndsWith(".weight", StringComparison.Ordinal) ? name[..^".weight".Length] : name;
                    switch (format)
                    {
                        case WeightFormat.F32: writer.AddF32(name, v, w.Rows, w.Cols); break;
                        case WeightFormat.BF16: writer.AddBF16(name, v, w.Rows, w.Cols); break;
                        case WeightFormat.Fp8: writer.AddFp8Blocked(name, module + ".weight_scale_inv", v, w.Rows, w.Cols); break;
                        case WeightFormat.Int8: writer.AddInt8PerChannel(name, module + ".weight_scale", v, w.Rows, w.Cols); break;
                    }
                    quantized++;
                    continue;
                }
                if (w.DType is DType.F8_E4M3 or DType.I8)
                {
                    writer.AddF32(name, w.ToFloat32(), w.Rows, w.Cols);
                    kept++;
                    continue;
                }
            }
            writer.AddRaw(name, t.DType, t.Shape, t.Bytes.ToArray());
            kept++;
        }
        Directory.CreateDirectory(outDir);
        var outCfg = cfg with
        {
            QuantMethod = format switch { WeightFormat.Fp8 => "fp8", WeightFormat.Int8 => "int8", _ => null },
            WeightBlockSize = format == WeightFormat.Fp8 ? [128, 128] : null,
        };
        writer.Metadata["format"] = "pt";
        var outFile = Path.Combine(outDir, "model.safetensors");
        writer.Save(outFile);
        File.WriteAllText(Path.Combine(outDir, "config.json"), outCfg.ToJson());
        foreach (var extra in new[] { "tokenizer.json", "tokenizer_config.json", "generation_config.json" })
        {
            var src = Path.Combine(inDir, extra);
            if (File.Exists(src)) File.Copy(src, Path.Combine(outDir, extra), overwrite: true);
        }
        after = new FileInfo(outFile).Length;
        return new QuantizeReport(quantized, kept, before, after);
    }

    static bool IsScaleOf(string name, Dictionary<string, Weight> linears)
    {
        foreach (var suffix in new[] { ".weight_scale_inv", ".weight_scale" })
            if (name.EndsWith(suffix, StringComparison.Ordinal) && linears.ContainsKey(name[..^suffix.Length] + ".weight"))
                return true;
        return false;
    }
}

/// <summary>Logit drift of a model against a reference on the same tokens.</summary>
/// <param name="MaxAbsLogitDiff">max |Δlogit| over every position and vocabulary entry.</param>
/// <param name="MeanAbsLogitDiff">mean |Δlogit|.</param>
/// <param name="RefCrossEntropy">mean next-token cross-entropy (nats) of the reference.</param>
/// <param name="CrossEntropy">the same for the compared model.</param>
/// <param name="Top1Agreement">fraction of positions whose argmax agrees.</param>
public sealed record DriftReport(double MaxAbsLogitDiff, double MeanAbsLogitDiff, double RefCrossEntropy, double CrossEntropy, double Top1Agreement)
{
    public double RefPerplexity => Math.Exp(RefCrossEntropy);
    public double Perplexity => Math.Exp(CrossEntropy);
}

public static class QuantDrift
{
    /// <summary>
    /// A deterministic pseudo-text: <paramref name="batch"/> sequences of <paramref name="seq"/> ids drawn from a
    /// fixed LCG over a Zipf-like range of the vocabulary (frequent low ids, as real token streams have).
    /// </summary>
    public static int[] PseudoText(int vocab, int batch, int seq, ulong seed = 12345)
    {
        var ids = new int[batch * seq];
        ulong s = seed;
        for (int i = 0; i < ids.Length; i++)
        {
            s = s * 6364136223846793005UL + 1442695040888963407UL;
            double u = ((s >> 11) + 1) / (double)(1UL << 53);
            ids[i] = Math.Min(vocab - 1, (int)Math.Floor(Math.Pow(vocab, u)) - 1 + (vocab > 3 ? 3 : 0));
            ids[i] = Math.Clamp(ids[i], 0, vocab - 1);
        }
        return ids;
    }

    public static DriftReport Compare(LongCatModel reference, LongCatModel model, int[] ids, int batch, int seq)
    {
        var a = reference.Forward(ids, batch, seq).Logits;
        var b = model.Forward(ids, batch, seq).Logits;
        int v = reference.Config.VocabSize;
        double maxD = 0, sumD = 0;
        int agree = 0;
        for (int r = 0; r < batch * seq; r++)
        {
            var ra = a.AsSpan(r * v, v); var rb = b.AsSpan(r * v, v);
            for (int j = 0; j < v; j++) { double d = Math.Abs(ra[j] - rb[j]); maxD = Math.Max(maxD, d); sumD += d; }
            if (System.Numerics.Tensors.TensorPrimitives.IndexOfMax(ra) == System.Numerics.Tensors.TensorPrimitives.IndexOfMax(rb)) agree++;
        }
        return new DriftReport(maxD, sumD / ((double)batch * seq * v), NextTokenCrossEntropy(a, ids, batch, seq, v),
            NextTokenCrossEntropy(b, ids, batch, seq, v), agree / (double)(batch * seq));
    }

    /// <summary>Mean next-token cross-entropy (nats) of logits [B·S, V] for the ids [B·S] they were computed from
    /// (the last position of each sequence has no target); 0 when no position has one.</summary>
    public static double NextTokenCrossEntropy(ReadOnlySpan<float> logits, ReadOnlySpan<int> ids, int batch, int seq, int v)
    {
        double ce = 0;
        int n = 0;
        for (int r = 0; r < batch * seq; r++)
        {
            if (r % seq == seq - 1) continue;
            var row = logits.Slice(r * v, v);
            ce += Lse(row) - row[ids[r + 1]];
            n++;
        }
        return n == 0 ? 0 : ce / n;
    }

    static double Lse(ReadOnlySpan<float> x)
    {
        double m = double.NegativeInfinity;
        foreach (var f in x) m = Math.Max(m, f);
        double s = 0;
        foreach (var f in x) s += Math.Exp(f - m);
        return m + Math.Log(s);
    }
}
