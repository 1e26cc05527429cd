using LongCat.IO;
using LongCat.Kernels;
using LongCat.Model;
using LongCat.Quantization;

namespace LongCat.Tests;

/// <summary>
/// <c>longcat quantize</c> and <see cref="CheckpointQuantizer"/>: the fixtures converted to FP8 (128×128 blocks)
/// and INT8 (per channel) load with <see cref="LongCatModel.Load"/>, keep embedding/lm_head/norms/router in their
/// stored dtype, and give logits close to the original.
/// <para>
/// Tolerances: a per-channel INT8 weight is off by at most amax(row)/254 (0.4% of the row's largest weight), an
/// E4M3 weight by at most 2^-4 of itself (3 mantissa bits, 6.25%). For the fixtures' random weights (amax ≈ 4σ)
/// that is an RMS relative error of ≈ 0.9% (INT8) and ≈ 2-3% (FP8) per weight; the errors of the K terms of a dot
/// product are independent and compound over the layers, so we require max |Δlogit| below 5% (INT8) / 10% (FP8)
/// of the largest |logit|, mean next-token cross-entropy within 1%, and top-1 agreement of at least 90% of
/// positions (measured on the fixtures: INT8 at most 2.1% of the largest |logit|, &lt;0.05% CE change, ~99% top-1).
/// </para>
/// </summary>
[Collection("Console")]
public class QuantizeTests
{
    static (int Rc, string Out, string Err) Cli(params string[] args)
    {
        var oldOut = Console.Out; var oldErr = Console.Error;
        var o = new StringWriter(); var e = new StringWriter();
        try
        {
            Console.SetOut(o); Console.SetError(e);
            int rc = LongCat.Cli.Program.Main(args);
            return (rc, o.ToString(), e.ToString());
        }
        finally { Console.SetOut(oldOut); Console.SetError(oldErr); }
    }

    public static TheoryData<string, string> Cases => new()
    {
        { "tiny", "fp8" }, { "tiny", "int8" }, { "small-fp8", "int8" }, { "small-fp8", "fp8" }, { "tiny-bf16", "int8" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void QuantizedCheckpointLoadsAndStaysClose(string fixture, string format)
    {
        var src = Fixtures.Reference(fixture);
        var dst = Path.Combine(Fixtures.NewTempDir(), "q");
        var (rc, stdout, err) = Cli("quantize", "--model", src, "--out", dst, "--format", format, "--eval-tokens", "16");
        Assert.True(rc == 0, err);
        Assert.Contains("saved", stdout);
        Assert.Contains("perplexity", stdout);

        using var a = LongCatModel.Load(src);
        using var b = LongCatModel.Load(dst);
        var want = format == "fp8" ? DType.F8_E4M3 : DType.I8;
        foreach (var w in b.Linears)
        {
            if (CheckpointQuantizer.IsQuantizable(w.Name)) Assert.True(w.DType == want, $"{w.Name}: {w.DType}");
            else Assert.True(w.DType is DType.F32 or DType.BF16 or DType.F16, $"{w.Name} must stay in higher precision, is {w.DType}");
        }
        Assert.Equal(format, b.Config.QuantMethod);

        const int batch = 2, seq = 24;
        var ids = QuantDrift.PseudoText(a.Config.VocabSize, batch, seq, 7);
        var d = QuantDrift.Compare(a, b, ids, batch, seq);
        var logits = a.Forward(ids, batch, seq).Logits;
        double scale = logits.Max(MathF.Abs);
        double rel = format == "fp8" ? 0.10 : 0.05;
        Assert.True(d.MaxAbsLogitDiff <= rel * scale, $"max |dlogit| {d.MaxAbsLogitDiff} > {rel} * {scale}");
        Assert.True(Math.Abs(d.CrossEntropy - d.RefCrossEntropy) <= 0.01 * d.RefCrossEntropy, $"CE {d.RefCrossEntropy} -> {d.CrossEntropy}");
        Assert.True(d.Top1Agreement >= 0.9, $"top-1 agreement {d.Top1Agreement}");

        // Greedy decoding from the quantized model is still the original's: same first next tokens.
        int[] prompt = ids[..8];
        Assert.Equal(Greedy(a, prompt, 3)[0], Greedy(b, prompt, 3)[0]);
    }

    static int[] Greedy(LongCatModel m, int[] prompt, int n)
    {
        var seq = prompt.ToList();
        for (int i = 0; i < n; i++)
        {
            var r = m.Forward(seq.ToArray(), 1, seq.Count, new ForwardOptions { AllLogits = false });
            seq.Add(System.Numerics.Tensors.TensorPrimitives.IndexOfMax(r.Logits));
        }
        return seq.Skip(prompt.Length).ToArray();
    }

    [Fact]
    public void RequantizingIsIdempotentForInt8()
    {
        // int8 -> int8 reads q · s and finds the same amax row by row: identical bytes.
        var d1 = Path.Combine(Fixtures.NewTempDir(), "a");
        var d2 = Path.Combine(Fixtures.NewTempDir(), "b");
        CheckpointQuantizer.Convert(Fixtures.Reference("tiny"), d1, WeightFormat.Int8);
        CheckpointQuantizer.Convert(d1, d2, WeightFormat.Int8);
        using var a = LongCatModel.Load(d1);
        using var b = LongCatModel.Load(d2);
        var wa = a.Linears.First(w => w.DType == DType.I8);
        var wb = b.Linears.First(w => w.Name == wa.Name);
        Assert.Equal(wa.ToFloat32(), wb.ToFloat32());
    }

    [Fact]
    public void Int8QuantizerRoundsToNearestWithAmaxOver127()
    {
        float[] w = [1f, -0.5f, 0.25f, 0f, /* row 2 */ 0f, 0f, 0f, 0f];
        var (q, s) = Int8Quantizer.Quantize(w, 2, 4);
        Assert.Equal(1f / 127f, s[0]);
        Assert.Equal(new sbyte[] { 127, -64, 32, 0, 0, 0, 0, 0 }, q); // -63.5 and 31.75 round to nearest (even)
        Assert.Equal(1f, s[1]);
    }

    [Fact]
    public void UnknownFormatFails()
    {
        var (rc, _, err) = Cli("quantize", "--model", Fixtures.Reference("tiny"), "--out", Path.Combine(Fixtures.NewTempDir(), "x"), "--format", "int4");
        Assert.Equal(1, rc);
        Assert.StartsWith("longcat: error: ", err);
        Assert.Contains("int4", err);
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void MissingModelFails()
    {
        var missing = Path.Combine(Fixtures.NewTempDir(), "nope");
        var (rc, _, err) = Cli("quantize", "--model", missing, "--out", Path.Combine(Fixtures.NewTempDir(), "x"), "--format", "fp8");
        Assert.Equal(1, rc);
        Assert.StartsWith("longcat: error: ", err);
        Assert.Contains("not found", err);
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void MissingInt8ScalesFail()
    {
        var dir = Path.Combine(Fixtures.NewTempDir(), "q");
        CheckpointQuantizer.Convert(Fixtures.Reference("tiny"), dir, WeightFormat.Int8);
        // Rewrite the checkpoint without one scale tensor.
        using (var ck = Checkpoint.Open(dir))
        {
            var w = new SafeTensorsWriter();
            string drop = ck.TensorNames.First(n => n.EndsWith(".weight_scale", StringComparison.Ordinal));
            foreach (var n in ck.TensorNames.Where(n => n != drop).ToList()) { var t = ck.Tensor(n); w.AddRaw(n, t.DType, t.Shape, t.Bytes.ToArray()); }
            w.Save(Path.Combine(dir, "model2.tmp"));
        }
        File.Move(Path.Combine(dir, "model2.tmp"), Path.Combine(dir, "model.safetensors"), overwrite: true);
        var e = Assert.Throws<ModelFormatException>(() => LongCatModel.Load(dir));
        Assert.Contains("weight_scale", e.Message);
    }

    [Fact]
    public void BenchGenerateReportsEachFormat()
    {
        var (rc, stdout, err) = Cli("bench", "generate", "--model", Fixtures.Reference("tiny"), "--formats", "int8,fp8", "--json",
            "--prompt-tokens", "8", "--decode-tokens", "3", "--repeats", "1");
        Assert.True(rc == 0, err);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        var o = System.Text.Json.Nodes.JsonNode.Parse(lines[0])!;
        Assert.Equal("int8", (string?)o["format"]);
        Assert.True((double)o["decode_tokens_per_s"]! > 0);
        Assert.True((double)o["weight_bytes_per_token"]! > 0);
        Assert.True((double)o["roofline_ratio"]! > 0);
        Assert.Equal("fp8", (string?)System.Text.Json.Nodes.JsonNode.Parse(lines[1])!["format"]);
    }

    [Fact]
    public void BenchGenerateRejectsBadOptions()
    {
        var (rc, _, err) = Cli("bench", "generate", "--model", Fixtures.Reference("tiny"), "--formats", "int3");
        Assert.Equal(1, rc);
        Assert.StartsWith("longcat: error: ", err);
        Assert.Contains("int3", err);
        (rc, _, err) = Cli("bench", "generate", "--model", Fixtures.Reference("tiny"), "--speculative", "eagle");
        Assert.Equal(1, rc);
        Assert.Contains("eagle", err);
    }
}
