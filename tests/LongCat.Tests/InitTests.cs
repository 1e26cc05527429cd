using LongCat.Config;
using LongCat.IO;
using LongCat.Model;

namespace LongCat.Tests;

/// <summary>`longcat init` writes a checkpoint in the official layout that the model loads and runs.</summary>
public class InitTests
{
    [Theory]
    [InlineData("f32")]
    [InlineData("bf16")]
    public void InitWritesLoadableDeterministicCheckpoint(string dtype)
    {
        var a = Fixtures.NewTempDir();
        var b = Fixtures.NewTempDir();
        var cfg = Path.Combine(Fixtures.Reference("tiny"), "config.json");
        Assert.Equal(0, CliProcess.Run("init", "--config", cfg, "--out", a, "--seed", "7", "--dtype", dtype).Exit);
        Assert.Equal(0, CliProcess.Run("init", "--config", cfg, "--out", b, "--seed", "7", "--dtype", dtype).Exit);
        Assert.Equal(File.ReadAllBytes(Path.Combine(a, "model.safetensors")), File.ReadAllBytes(Path.Combine(b, "model.safetensors")));

        var config = LongCatConfig.Load(Path.Combine(a, "config.json"));
        Assert.Equal(LongCatConfig.Load(cfg) with { }, config with { });
        using var ck = Checkpoint.Open(a);
        var expected = CheckpointLayout.Tensors(config).ToDictionary(t => t.Name);
        Assert.Equal(expected.Keys.Order(), ck.TensorNames.Order());
        var wantDtype = dtype == "f32" ? DType.F32 : DType.BF16;
        foreach (var spec in expected.Values)
        {
            var t = ck.Tensor(spec.Name);
            Assert.Equal(spec.Shape, t.Shape);
            var v = t.ToFloat32();
            switch (spec.Kind)
            {
                case TensorKind.Norm: Assert.All(v, x => Assert.Equal(1f, x)); Assert.Equal(wantDtype, t.DType); break;
                case TensorKind.RouterBias: Assert.All(v, x => Assert.Equal(0f, x)); Assert.Equal(DType.F32, t.DType); break;
                case TensorKind.RouterClassifier: Assert.Equal(DType.F32, t.DType); goto default;
                default:
                    double mean = v.Average(x => (double)x), sd = Math.Sqrt(v.Average(x => (double)x * x) - mean * mean);
                    if (v.Length >= 1000) Assert.InRange(sd, 0.018, 0.022);
                    Assert.InRange(mean, -0.01, 0.01);
                    break;
            }
        }

        using var model = LongCatModel.Load(a);
        var r = model.Forward([1, 2, 3, 4], 1, 4);
        Assert.All(r.Logits, x => Assert.True(float.IsFinite(x)));
    }

    [Fact]
    public void DifferentSeedsGiveDifferentWeights()
    {
        var a = Fixtures.NewTempDir();
        var b = Fixtures.NewTempDir();
        var cfg = Path.Combine(Fixtures.Reference("tiny"), "config.json");
        Assert.Equal(0, CliProcess.Run("init", "--config", cfg, "--out", a, "--seed", "1").Exit);
        Assert.Equal(0, CliProcess.Run("init", "--config", cfg, "--out", b, "--seed", "2").Exit);
        Assert.NotEqual(File.ReadAllBytes(Path.Combine(a, "model.safetensors")), File.ReadAllBytes(Path.Combine(b, "model.safetensors")));
    }
}
