using LongCat.IO;
using LongCat.Training;
using Xunit.Abstractions;

namespace LongCat.Tests;

/// <summary>
/// Gradient parity with PyTorch autograd on the Hugging Face reference (tests/fixtures/reference/*/grads.safetensors):
/// every parameter's gradient within 1e-4 of that tensor's largest |gradient| (float32 noise is ~1e-5 of it).
/// </summary>
public class GradientParityTests(ITestOutputHelper output)
{
    /// <summary>The fixtures that carry gradients (small-fp8 has none).</summary>
    public static TheoryData<string> Models => new(["tiny", "tiny-nozero", "tiny-bf16"]);

    public const double Tolerance = 1e-4;

    [Theory]
    [MemberData(nameof(Models))]
    public void GradientsMatchReference(string name)
    {
        var dir = Fixtures.Reference(name);
        using var model = TrainableModel.Load(dir);
        using var expected = SafeTensorFile.Open(Path.Combine(dir, "expected.safetensors"));
        using var grads = SafeTensorFile.Open(Path.Combine(dir, "grads.safetensors"));
        var idsT = expected.Tensor("input_ids");
        int b = (int)idsT.Shape[0], s = (int)idsT.Shape[1];
        var ids = idsT.ToInt64().Select(v => (int)v).ToArray();

        var loss = model.ForwardBackward(ids, b, s);
        float refLoss = expected.Tensor("loss").ToFloat32()[0];
        double dLoss = Math.Abs(loss.CrossEntropy - refLoss);
        output.WriteLine($"{name}: loss {loss.CrossEntropy:F8} (reference {refLoss:F8}, |diff| {dLoss:E2})");
        Assert.True(dLoss <= 1e-5, $"loss differs by {dLoss}");
        Assert.Equal(loss.CrossEntropy, loss.Total);

        var (worst, worstName) = Compare(model.Parameters, grads, output);
        output.WriteLine($"{name}: worst max|diff| / max|grad| = {worst:E2} ({worstName})");
        Assert.True(worst <= Tolerance, $"{worstName}: gradient differs by {worst:E2} of its largest magnitude");
    }

    [Fact]
    public void GradCommandWritesTheFixtureGradients()
    {
        var dir = Fixtures.Reference("tiny-bf16");
        var outFile = Path.Combine(Fixtures.NewTempDir(), "grads.safetensors");
        var (exit, stdout, stderr) = CliProcess.Run("grad", "--model", dir, "--input", Path.Combine(dir, "expected.safetensors"), "--output", outFile, "--threads", "2");
        output.WriteLine(stdout + stderr);
        Assert.Equal(0, exit);
        Assert.Contains("reference loss", stdout);

        using var got = SafeTensorFile.Open(outFile);
        using var want = SafeTensorFile.Open(Path.Combine(dir, "grads.safetensors"));
        using var expected = SafeTensorFile.Open(Path.Combine(dir, "expected.safetensors"));
        var loss = got.Tensor("loss");
        Assert.Equal(DType.F32, loss.DType);
        Assert.Empty(loss.Shape);
        Assert.True(Math.Abs(loss.ToFloat32()[0] - expected.Tensor("loss").ToFloat32()[0]) <= 1e-5);
        Assert.Equal(want.Tensors.Keys.Order(StringComparer.Ordinal), got.Tensors.Keys.Where(k => k != "loss").Order(StringComparer.Ordinal));
        foreach (var name in want.Tensors.Keys)
        {
            var w = want.Tensor(name).ToFloat32();
            var g = got.Tensor(name);
            Assert.Equal(DType.F32, g.DType);
            Assert.Equal(want.Tensor(name).Shape, g.Shape);
            var gv = g.ToFloat32();
            double max = w.Max(v => Math.Abs((double)v)), diff = 0;
            for (int i = 0; i < w.Length; i++) diff = Math.Max(diff, Math.Abs(gv[i] - (double)w[i]));
            Assert.True(diff <= Tolerance * max, $"{name}: max|diff| {diff:E2} vs max|grad| {max:E2}");
        }
    }

    [Theory]
    [InlineData("missing", "missing tensor 'input_ids'")]
    [InlineData("out-of-vocab", "outside the vocabulary 0..255")]
    [InlineData("short", "at least 2")]
    [InlineData("float", "expected I64 or I32")]
    public void GradCommandRejectsBadInput(string kind, string message)
    {
        var tmp = Fixtures.NewTempDir();
        var input = Path.Combine(tmp, "in.safetensors");
        var w = new SafeTensorsWriter();
        switch (kind)
        {
            case "missing": w.AddI64("ids", [1, 2, 3], 1, 3); break;
            case "out-of-vocab": w.AddI64("input_ids", [1, 5, 256, 7], 2, 2); break;
            case "short": w.AddI64("input_ids", [1, 5], 2, 1); break;
            case "float": w.AddF32("input_ids", [1, 5, 6], 1, 3); break;
        }
        w.Save(input);
        var outFile = Path.Combine(tmp, "out.safetensors");
        var (exit, _, stderr) = CliProcess.Run("grad", "--model", Fixtures.Reference("tiny"), "--input", input, "--output", outFile);
        Assert.Equal(1, exit);
        Assert.Contains(message, stderr);
        Assert.StartsWith("longcat: error:", stderr);
        Assert.Single(stderr.TrimEnd().Split('\n'));
        Assert.False(File.Exists(outFile));
    }

    /// <summary>
    /// Checks that <paramref name="reference"/> and the store's trainable tensors have the same names and shapes, and
    /// returns the worst per-tensor ratio max|ours - ref| / max|ref| (a tensor whose reference gradient is all zero
    /// must be all zero here too).
    /// </summary>
    public static (double Worst, string Name) Compare(ParameterStore store, SafeTensorFile reference, ITestOutputHelper? log = null)
    {
        var ours = store.Table.Entries.Where(e => e.Trainable).Select(e => e.Name).Order(StringComparer.Ordinal).ToArray();
        var theirs = reference.Tensors.Keys.Where(k => k != "loss").Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(theirs, ours);
        double worst = 0;
        string worstName = "";
        foreach (var name in ours)
        {
            var want = reference.Tensor(name);
            Assert.Equal(store.Table[name].Shape, want.Shape);
            var w = want.ToFloat32();
            var g = store[name].Grad;
            double max = 0, diff = 0;
            for (int i = 0; i < w.Length; i++)
            {
                max = Math.Max(max, Math.Abs(w[i]));
                diff = Math.Max(diff, Math.Abs(g[i] - (double)w[i]));
            }
            double ratio = max == 0 ? (diff == 0 ? 0 : double.PositiveInfinity) : diff / max;
            if (double.IsNaN(diff)) ratio = double.NaN;
            if (!(ratio <= worst)) { worst = ratio; worstName = name; }
            log?.WriteLine($"  {name}: max|grad| {max:E2}, max|diff| {diff:E2}, ratio {ratio:E2}");
        }
        return (worst, worstName);
    }
}
