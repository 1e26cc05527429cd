using System.Text.Json.Nodes;
using LongCat.Config;
using LongCat.IO;
using LongCat.Model;

namespace LongCat.Tests;

/// <summary>
/// Loading a model from a checkpoint that disagrees with its config: every error names the tensor (and the file).
/// Each test edits a copy of a fixture folder.
/// </summary>
public class ModelLoadErrorTests
{
    const string QA = "model.layers.1.self_attn.0.q_a_proj.weight";

    static ModelFormatException LoadFails(string dir, params string[] fragments) =>
        St.Fails(() => LongCatModel.Load(dir).Dispose(), fragments);

    static byte[] F32Bytes(long n) => new byte[n * 4];

    [Fact]
    public void TensorShapeDisagreeingWithConfig()
    {
        var d = St.CopyFixture("tiny");
        St.Rewrite(Path.Combine(d, "model.safetensors"), (n, dt, s, b) => n == QA ? (DType.F32, [32L, 63], F32Bytes(32 * 63)) : (dt, s, b));
        LoadFails(d, Path.Combine(d, "model.safetensors"), $"tensor '{QA}'", "[32, 63]", "config implies [32, 64]");
    }

    [Fact]
    public void ConfigHiddenSizeDisagreeingWithTensors()
    {
        var d = St.CopyFixture("tiny");
        var cfg = Path.Combine(d, "config.json");
        var o = JsonNode.Parse(File.ReadAllText(cfg))!.AsObject();
        o["hidden_size"] = 96;
        File.WriteAllText(cfg, o.ToJsonString());
        LoadFails(d, "tensor 'model.embed_tokens.weight'", "[256, 64]", "[256, 96]");
    }

    [Fact]
    public void NormShapeDisagreeingWithConfig()
    {
        var d = St.CopyFixture("tiny");
        St.Rewrite(Path.Combine(d, "model.safetensors"), (n, dt, s, b) => n == "model.norm.weight" ? (DType.F32, [65L], F32Bytes(65)) : (dt, s, b));
        LoadFails(d, "tensor 'model.norm.weight'", "[65]", "[64]");
    }

    [Theory]
    [InlineData("model.layers.1.mlp.router.classifier.weight")]
    [InlineData("model.layers.0.mlp.experts.7.down_proj.weight")]
    [InlineData("model.layers.0.self_attn.1.kv_a_layernorm.weight")]
    [InlineData("model.norm.weight")]
    [InlineData("lm_head.weight")]
    public void MissingTensorIsNamed(string name)
    {
        var d = St.CopyFixture("tiny");
        St.Rewrite(Path.Combine(d, "model.safetensors"), (n, dt, s, b) => n == name ? null : (dt, s, b));
        LoadFails(d, d, $"missing tensor '{name}'");
    }

    [Fact]
    public void LinearWithAnIntegerDtype()
    {
        var d = St.CopyFixture("tiny");
        St.Rewrite(Path.Combine(d, "model.safetensors"), (n, dt, s, b) => n == QA ? (DType.I32, s, b) : (dt, s, b));
        LoadFails(d, $"tensor '{QA}'", "dtype I32");
    }

    [Fact]
    public void NormWithAnIntegerDtype()
    {
        var d = St.CopyFixture("tiny");
        St.Rewrite(Path.Combine(d, "model.safetensors"), (n, dt, s, b) => n == "model.norm.weight" ? (DType.I32, s, b) : (dt, s, b));
        LoadFails(d, "tensor 'model.norm.weight'", "dtype I32");
    }

    const string Fp8W = "model.layers.0.self_attn.0.q_a_proj.weight";
    const string Fp8S = "model.layers.0.self_attn.0.q_a_proj.weight_scale_inv";

    [Fact]
    public void Fp8WeightWithoutScales()
    {
        var d = St.CopyFixture("small-fp8");
        St.Rewrite(Path.Combine(d, "model.safetensors"), (n, dt, s, b) => n == Fp8S ? null : (dt, s, b));
        LoadFails(d, $"'{Fp8W}'", $"'{Fp8S}'");
    }

    [Fact]
    public void Fp8ScalesWithTheWrongShape()
    {
        var d = St.CopyFixture("small-fp8");
        St.Rewrite(Path.Combine(d, "model.safetensors"), (n, dt, s, b) => n == Fp8S ? (DType.F32, [2L, 2], F32Bytes(4)) : (dt, s, b));
        LoadFails(d, $"tensor '{Fp8S}'", "[2, 2]", "config implies [1, 2]");
    }

    [Fact]
    public void Fp8ScalesWithTheWrongDtype()
    {
        var d = St.CopyFixture("small-fp8");
        St.Rewrite(Path.Combine(d, "model.safetensors"), (n, dt, s, b) => n == Fp8S ? (DType.BF16, s, new byte[4]) : (dt, s, b));
        LoadFails(d, $"tensor '{Fp8S}'", "BF16", "F32");
    }

    [Fact]
    public void MissingConfig()
    {
        var d = St.CopyFixture("tiny");
        File.Delete(Path.Combine(d, "config.json"));
        var e = Assert.Throws<ConfigException>(() => LongCatModel.Load(d).Dispose());
        Assert.Contains(Path.Combine(d, "config.json"), e.Message);
    }

    [Fact]
    public void InvalidConfigKey()
    {
        var d = St.CopyFixture("tiny");
        var cfg = Path.Combine(d, "config.json");
        var o = JsonNode.Parse(File.ReadAllText(cfg))!.AsObject();
        o["moe_topk"] = 100;
        File.WriteAllText(cfg, o.ToJsonString());
        var e = Assert.Throws<ConfigException>(() => LongCatModel.Load(d).Dispose());
        Assert.StartsWith(cfg, e.Message);
        Assert.Contains("'moe_topk'", e.Message);
    }

    [Fact]
    public void MissingModelFolder()
    {
        var d = Path.Combine(Fixtures.NewTempDir(), "nothing-here");
        LoadFails(d, d, "not found");
    }

    [Fact]
    public void TruncatedModelFile()
    {
        var d = St.CopyFixture("tiny");
        var m = Path.Combine(d, "model.safetensors");
        using (var fs = new FileStream(m, FileMode.Open)) fs.SetLength(fs.Length / 2);
        LoadFails(d, m, "out of range");
    }

    [Fact]
    public void ShardedCopyLoadsAndMatchesTheSingleFile()
    {
        // Split tiny's model.safetensors into two shards with an index: same tensors, same logits, bit for bit.
        var src = Fixtures.Reference("tiny");
        var d = St.CopyFixture("tiny");
        var single = Path.Combine(d, "model.safetensors");
        var w1 = new SafeTensorsWriter();
        var w2 = new SafeTensorsWriter();
        var map = new JsonObject();
        using (var f = SafeTensorFile.Open(single))
        {
            foreach (var name in f.Tensors.Keys.Order(StringComparer.Ordinal))
            {
                var t = f.Tensor(name);
                bool second = name.Contains("layers.1.") || name == "lm_head.weight";
                (second ? w2 : w1).AddRaw(name, t.DType, t.Shape, t.Bytes.ToArray());
                map[name] = second ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors";
            }
        }
        File.Delete(single);
        w1.Save(Path.Combine(d, "model-00001-of-00002.safetensors"));
        w2.Save(Path.Combine(d, "model-00002-of-00002.safetensors"));
        File.WriteAllText(Path.Combine(d, "model.safetensors.index.json"), new JsonObject { ["metadata"] = new JsonObject(), ["weight_map"] = map }.ToJsonString());

        int[] ids = [1, 5, 9, 200, 3, 77];
        using var a = LongCatModel.Load(src);
        using var b = LongCatModel.Load(d);
        Assert.Equal(a.Forward(ids, 1, 6).Logits, b.Forward(ids, 1, 6).Logits);

        // And a shard that goes missing is named, with a tensor that needs it.
        b.Dispose();
        File.Delete(Path.Combine(d, "model-00002-of-00002.safetensors"));
        LoadFails(d, "model.safetensors.index.json", "model-00002-of-00002.safetensors", "does not exist");
    }
}
