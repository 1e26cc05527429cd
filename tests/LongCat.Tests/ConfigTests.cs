using System.Text;
using System.Text.Json.Nodes;
using LongCat.Config;

namespace LongCat.Tests;

/// <summary>config.json parsing and validation: the released preset, defaults, and one error per broken rule.</summary>
public class ConfigTests
{
    static readonly string TinyJson = File.ReadAllText(Path.Combine(Fixtures.Reference("tiny"), "config.json"));

    /// <summary>presets/longcat-flash-chat.json: next to the test binaries (copied from the CLI project) or in the repository.</summary>
    static string PresetPath()
    {
        foreach (var p in new[]
        {
            Path.Combine(AppContext.BaseDirectory, "presets", "longcat-flash-chat.json"),
            Path.Combine(AppContext.BaseDirectory, "longcat-flash-chat.json"),
        })
            if (File.Exists(p)) return p;
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            var p = Path.Combine(d.FullName, "presets", "longcat-flash-chat.json");
            if (File.Exists(p)) return p;
        }
        throw new FileNotFoundException("presets/longcat-flash-chat.json not found");
    }

    /// <summary>The tiny fixture's config with <paramref name="key"/> set to the raw JSON <paramref name="value"/>.</summary>
    static string TinyWith(string key, string value)
    {
        var o = JsonNode.Parse(TinyJson)!.AsObject();
        o[key] = JsonNode.Parse(value);
        return o.ToJsonString();
    }

    [Fact]
    public void ReleasedPresetHasTheSpecValues()
    {
        var p = PresetPath();
        var c = LongCatConfig.Load(p);
        Assert.Equal(131072, c.VocabSize);
        Assert.Equal(6144, c.HiddenSize);
        Assert.Equal(28, c.NumLayers);
        Assert.Equal(64, c.NumAttentionHeads);
        Assert.Equal(1536, c.QLoraRank);
        Assert.Equal(512, c.KvLoraRank);
        Assert.Equal(128, c.QkNopeHeadDim);
        Assert.Equal(64, c.QkRopeHeadDim);
        Assert.Equal(128, c.VHeadDim);
        Assert.Equal(12288, c.FfnHiddenSize);
        Assert.Equal(2048, c.ExpertFfnHiddenSize);
        Assert.Equal(512, c.NRoutedExperts);
        Assert.Equal(256, c.ZeroExpertNum);
        Assert.Equal("identity", c.ZeroExpertType);
        Assert.Equal(12, c.MoeTopK);
        Assert.Equal(6.0, c.RoutedScalingFactor);
        Assert.True(c.MlaScaleQLora);
        Assert.True(c.MlaScaleKvLora);
        Assert.Equal(1e-5, c.RmsNormEps);
        Assert.Equal(1e7, c.RopeTheta);
        Assert.Equal(131072, c.MaxPositionEmbeddings);
        Assert.False(c.AttentionBias);
        Assert.Equal(1, c.BosTokenId);
        Assert.Equal(2, c.EosTokenId);
        Assert.Null(c.WeightBlockSize);
        Assert.Equal(192, c.QHeadDim);
        Assert.Equal(768, c.NumExpertsTotal);
        Assert.Equal(576, c.KvCacheWidth);
        // The preset is what the defaults describe.
        Assert.Equal(new LongCatConfig(), c);
    }

    [Fact]
    public void AbsentKeysTakeDefaults() => Assert.Equal(new LongCatConfig(), LongCatConfig.Parse("{}"));

    [Fact]
    public void UnknownKeysAreIgnored()
    {
        var o = JsonNode.Parse(File.ReadAllText(PresetPath()))!.AsObject();
        o["some_future_key"] = new JsonObject { ["nested"] = new JsonArray(1, "x", null) };
        o["transformers_version"] = "4.99";
        o["auto_map"] = new JsonObject { ["AutoConfig"] = "configuration_longcat_flash.LongcatFlashConfig" };
        Assert.Equal(new LongCatConfig(), LongCatConfig.Parse(o.ToJsonString()));
    }

    [Fact]
    public void CommentsAndTrailingCommasAreAccepted() =>
        Assert.Equal(64, LongCatConfig.Parse("{ // tiny\n \"hidden_size\": 64, /* more */ }").HiddenSize);

    [Fact]
    public void AlternativeSpellings()
    {
        Assert.Equal(3, LongCatConfig.Parse("{\"num_hidden_layers\": 3}").NumLayers);
        Assert.Equal(5, LongCatConfig.Parse("{\"eos_token_id\": [5, 7]}").EosTokenId);
        Assert.Null(LongCatConfig.Parse("{\"pad_token_id\": null}").PadTokenId);
        Assert.Equal(1e-5, LongCatConfig.Parse("{\"mla_latent_norm_eps\": null}").LatentNormEps); // null: rms_norm_eps
        Assert.Null(LongCatConfig.Parse("{\"rope_scaling\": null}").WeightBlockSize);
        Assert.Equal(64, LongCatConfig.Parse("{\"hidden_size\": 64.0}").HiddenSize);
    }

    [Fact]
    public void QuantizationConfigGivesBlockSize()
    {
        var c = LongCatConfig.Load(Path.Combine(Fixtures.Reference("small-fp8"), "config.json"));
        Assert.Equal([128, 128], c.WeightBlockSize!);
        Assert.Equal("fp8", c.QuantMethod);
        Assert.Equal([64, 32], LongCatConfig.Parse("{\"quantization_config\": {\"weight_block_size\": [64, 32]}}").WeightBlockSize!);
    }

    [Fact]
    public void ToJsonRoundTrips()
    {
        foreach (var c in new[]
        {
            LongCatConfig.Load(PresetPath()),
            LongCatConfig.Load(Path.Combine(Fixtures.Reference("small-fp8"), "config.json")),
            LongCatConfig.Parse(TinyJson) with { PadTokenId = 0, TieWordEmbeddings = true, LatentNormEps = 1e-5, NumNextnPredictLayers = 0 },
            LongCatConfig.Parse(TinyJson) with { FfnTopology = LongCatConfig.InterleavedTopology },
        })
        {
            var json = c.ToJson();
            Assert.Equal(json, LongCatConfig.Parse(json).ToJson());
        }
    }

    [Fact]
    public void FfnTopologyDefaultsToShortcutAndIsWrittenOnlyWhenInterleaved()
    {
        var tiny = LongCatConfig.Parse(TinyJson);
        Assert.Equal("shortcut", tiny.FfnTopology);
        Assert.False(tiny.InterleavedFfn);
        Assert.Equal((2, tiny.FfnHiddenSize), (tiny.LayerDenseFfnCount, tiny.LayerDenseFfnHiddenSize));
        // The default is not written: configs written before the option existed stay byte-identical.
        Assert.DoesNotContain("ffn_topology", tiny.ToJson());
        Assert.Equal(tiny, LongCatConfig.Parse(TinyWith("ffn_topology", "\"shortcut\"")));

        var inter = LongCatConfig.Parse(TinyWith("ffn_topology", "\"interleaved\""));
        Assert.True(inter.InterleavedFfn);
        Assert.Equal(tiny with { FfnTopology = "interleaved" }, inter);
        Assert.Equal((1, 2 * tiny.FfnHiddenSize), (inter.LayerDenseFfnCount, inter.LayerDenseFfnHiddenSize));
        Assert.Contains("\"ffn_topology\": \"interleaved\"", inter.ToJson());
        Assert.Equal(inter, LongCatConfig.Parse(inter.ToJson()));
    }

    [Theory]
    [InlineData("moe_topk", "13")]                 // > n_routed_experts + zero_expert_num = 12
    [InlineData("moe_topk", "0")]
    [InlineData("qk_rope_head_dim", "7")]          // odd
    [InlineData("hidden_size", "-64")]
    [InlineData("vocab_size", "0")]
    [InlineData("num_layers", "0")]
    [InlineData("n_routed_experts", "-1")]
    [InlineData("zero_expert_num", "-4")]
    [InlineData("max_position_embeddings", "0")]
    [InlineData("hidden_size", "\"64\"")]          // wrong types
    [InlineData("hidden_size", "64.5")]
    [InlineData("hidden_size", "1e12")]
    [InlineData("hidden_size", "true")]
    [InlineData("hidden_size", "[64]")]
    [InlineData("mla_scale_q_lora", "1")]
    [InlineData("mla_scale_kv_lora", "\"true\"")]
    [InlineData("zero_expert_type", "3")]
    [InlineData("zero_expert_type", "\"constant\"")]
    [InlineData("rms_norm_eps", "\"1e-5\"")]
    [InlineData("rms_norm_eps", "0")]
    [InlineData("rms_norm_eps", "1e400")]
    [InlineData("mla_latent_norm_eps", "2")]
    [InlineData("routed_scaling_factor", "-1")]
    [InlineData("routed_scaling_factor", "0")]
    [InlineData("rope_theta", "1")]
    [InlineData("attention_dropout", "1")]
    [InlineData("hidden_act", "\"gelu\"")]
    [InlineData("ffn_topology", "\"parallel\"")]
    [InlineData("ffn_topology", "\"Interleaved\"")]
    [InlineData("ffn_topology", "1")]
    [InlineData("attention_bias", "true")]
    [InlineData("router_bias", "true")]
    [InlineData("bos_token_id", "256")]            // vocab_size is 256
    [InlineData("eos_token_id", "-1")]
    [InlineData("eos_token_id", "[]")]
    [InlineData("eos_token_id", "[\"x\"]")]
    [InlineData("pad_token_id", "256")]
    [InlineData("torch_dtype", "16")]
    [InlineData("num_attention_heads", "100000000")]
    [InlineData("qk_nope_head_dim", "2147483647")]  // sums that used to wrap around (negative QHeadDim)
    [InlineData("v_head_dim", "2147483647")]
    [InlineData("kv_lora_rank", "2147483647")]
    [InlineData("n_routed_experts", "2147483647")]
    [InlineData("rope_scaling", "{\"type\": \"yarn\", \"factor\": 4}")]
    [InlineData("rope_scaling", "3")]
    [InlineData("quantization_config", "\"fp8\"")]
    [InlineData("quantization_config", "{\"quant_method\": \"awq\"}")]
    [InlineData("quantization_config", "{\"weight_block_size\": [128]}")]
    [InlineData("quantization_config", "{\"weight_block_size\": 128}")]
    [InlineData("quantization_config", "{\"weight_block_size\": [0, 128]}")]
    [InlineData("quantization_config", "{\"weight_block_size\": [128, 1.5]}")]
    public void InvalidValueNamesTheKey(string key, string value)
    {
        var e = Assert.Throws<ConfigException>(() => LongCatConfig.Parse(TinyWith(key, value), "cfg/config.json"));
        Assert.StartsWith("cfg/config.json", e.Message);
        Assert.Contains($"'{key}", e.Message); // 'key' or 'key.subkey'
    }

    [Theory]
    [InlineData("{")]
    [InlineData("")]
    [InlineData("{\"hidden_size\": 64} {}")]
    [InlineData("{\"hidden_size\": 64, \"hidden_size\": 128}")]  // duplicate key (was a bare ArgumentException)
    [InlineData("{\"zero_expert_type\": \"\\ud800\"}")]           // not valid UTF-16 (was InvalidOperationException)
    [InlineData("{\"\\udc00\": 1}")]
    public void InvalidJson(string json)
    {
        var e = Assert.Throws<ConfigException>(() => LongCatConfig.Parse(json, "cfg/config.json"));
        Assert.StartsWith("cfg/config.json: invalid JSON", e.Message);
    }

    [Fact]
    public void DuplicateKeyIsNamed() =>
        Assert.Contains("hidden_size", Assert.Throws<ConfigException>(() => LongCatConfig.Parse("{\"hidden_size\": 64, \"hidden_size\": 128}")).Message);

    [Theory]
    [InlineData("[]")]
    [InlineData("null")]
    [InlineData("42")]
    [InlineData("\"config\"")]
    public void TopLevelNotAnObject(string json) =>
        Assert.Contains("top level must be a JSON object", Assert.Throws<ConfigException>(() => LongCatConfig.Parse(json, "cfg/config.json")).Message);

    [Fact]
    public void MissingFileNamesIt()
    {
        var p = Path.Combine(Fixtures.NewTempDir(), "config.json");
        var e = Assert.Throws<ConfigException>(() => LongCatConfig.Load(p));
        Assert.Contains(p, e.Message);
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void LoadNamesTheFileInErrors()
    {
        var p = Path.Combine(Fixtures.NewTempDir(), "config.json");
        File.WriteAllText(p, TinyWith("moe_topk", "99"));
        var e = Assert.Throws<ConfigException>(() => LongCatConfig.Load(p));
        Assert.StartsWith(p, e.Message);
        Assert.Contains("'moe_topk'", e.Message);
        Assert.Contains("99", e.Message);
    }

    [Fact]
    public void MutatedConfigsOnlyThrowConfigException()
    {
        // A small fuzz of config.json text: byte edits and spliced values; anything but ConfigException is a bug.
        var rnd = new Random(99);
        var src = Encoding.UTF8.GetBytes(TinyJson);
        string[] splice = ["-1", "0", "1e400", "2147483648", "null", "true", "\"x\"", "[]", "{}", "\"\\ud800\"", "1.5", "[1,2]"];
        int ok = 0, rejected = 0;
        for (int it = 0; it < 2000; it++)
        {
            var b = new List<byte>(src);
            for (int k = 0, n = 1 + rnd.Next(3); k < n; k++)
            {
                int p = rnd.Next(b.Count);
                switch (rnd.Next(4))
                {
                    case 0: b[p] = (byte)"{}[]\",:0123456789-. \\"[rnd.Next(20)]; break;
                    case 1: b.RemoveRange(p, Math.Min(b.Count - p, 1 + rnd.Next(8))); break;
                    case 2: b[p] ^= (byte)(1 << rnd.Next(8)); break;
                    default:
                    {
                        // Replace the value after a random ':' with a spliced one.
                        int colon = b.IndexOf((byte)':', p);
                        if (colon < 0) break;
                        int end = colon + 1;
                        while (end < b.Count && b[end] != ',' && b[end] != '}' && b[end] != '\n') end++;
                        b.RemoveRange(colon + 1, end - colon - 1);
                        b.InsertRange(colon + 1, Encoding.UTF8.GetBytes(" " + splice[rnd.Next(splice.Length)]));
                        break;
                    }
                }
            }
            try { LongCatConfig.Parse(Encoding.UTF8.GetString(b.ToArray()), "fuzz.json"); ok++; }
            catch (ConfigException e) { Assert.StartsWith("fuzz.json", e.Message); rejected++; }
            catch (Exception e) { Assert.Fail($"iteration {it}: {e.GetType().Name}: {e.Message}\n{Encoding.UTF8.GetString(b.ToArray())}"); }
        }
        Assert.True(ok > 100 && rejected > 500, $"{ok} accepted, {rejected} rejected");
    }
}
