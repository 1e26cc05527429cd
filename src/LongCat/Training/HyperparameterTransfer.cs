using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using LongCat.Config;

namespace LongCat.Training;

/// <summary>What <see cref="HyperparameterTransfer.Transfer"/> did.</summary>
public sealed record TransferResult(JsonObject Config, int ProxyWidth, int TargetWidth, double Scale,
    IReadOnlyDictionary<string, (long From, long To)> Dimensions,
    IReadOnlyDictionary<ParameterGroup, (double InitVariance, double Lr)> Multipliers);

/// <summary>
/// Width transfer of a tuned proxy's training config (spec section 4, the paper's Table 1, "Adam LR Full Align" for
/// standard parameterization). With s = target width / proxy width:
/// <list type="bullet">
/// <item>the width dimensions scale by s: hidden_size, ffn_hidden_size, expert_ffn_hidden_size, q_lora_rank,
/// kv_lora_rank and num_attention_heads (head dimensions stay, so attention width scales with the heads);</item>
/// <item>embedding: init variance and learning rate unchanged;</item>
/// <item>hidden (every hidden linear weight) and unembedding (lm_head): init variance / s and learning rate / s;</item>
/// <item>router: a hidden matrix with fan-in = width, so / s like hidden;</item>
/// <item>norms: unchanged (vectors initialised to 1, like the embedding a per-width quantity);</item>
/// <item>depth, vocabulary, experts, top-k, the expert budget, sequence length, batch, steps, schedule and every
/// loss setting unchanged.</item>
/// </list>
/// The multipliers compose with the proxy's own (a proxy that was itself transferred keeps its factors).
/// </summary>
public static class HyperparameterTransfer
{
    /// <summary>The config keys scaled by the width factor, in the order they are reported.</summary>
    public static readonly string[] WidthKeys =
        ["hidden_size", "ffn_hidden_size", "expert_ffn_hidden_size", "q_lora_rank", "kv_lora_rank", "num_attention_heads"];

    /// <summary>Per-group (init variance, LR) factors for scale <paramref name="s"/>.</summary>
    public static (double InitVariance, double Lr) Factor(ParameterGroup g, double s) => g switch
    {
        ParameterGroup.Hidden or ParameterGroup.Router or ParameterGroup.Unembedding => (1 / s, 1 / s),
        _ => (1, 1),
    };

    /// <summary>Reads the proxy train.json at <paramref name="proxyPath"/> (comments allowed) and transfers it.</summary>
    public static TransferResult TransferFile(string proxyPath, int targetWidth, string? runOut = null)
    {
        if (!File.Exists(proxyPath)) throw new ConfigException($"{proxyPath}: proxy training config not found");
        var root = TrainConfigFile.ReadObject(File.ReadAllText(proxyPath), proxyPath);
        return Transfer(root, targetWidth, proxyPath, runOut);
    }

    /// <summary>
    /// Transfers <paramref name="proxy"/> (a train.json object; not modified) to width <paramref name="targetWidth"/>.
    /// The result is validated by <see cref="TrainConfigFile"/>; "out" becomes <paramref name="runOut"/>, or the
    /// proxy's run folder with "-width{N}" appended.
    /// </summary>
    public static TransferResult Transfer(JsonObject proxy, int targetWidth, string source, string? runOut = null)
    {
        // Validate the proxy first: its errors should name the proxy, not the result.
        TrainConfigFile.Parse(proxy.ToJsonString(), source);
        var root = TrainConfigFile.ReadObject(proxy.ToJsonString(), source);
        if (root["model"] is not JsonObject model)
            throw new ConfigException($"{source}: 'model' must be a config object or a config.json path to transfer its width");
        var proxyConfig = LongCatConfig.Parse(model.ToJsonString(), $"{source}: model");
        int proxyWidth = proxyConfig.HiddenSize;
        if (targetWidth <= 0) throw new ConfigException($"target width must be a positive integer, got {targetWidth}");
        double s = (double)targetWidth / proxyWidth;

        var dims = new Dictionary<string, (long, long)>();
        foreach (var key in WidthKeys)
        {
            long from = key switch
            {
                "hidden_size" => proxyConfig.HiddenSize,
                "ffn_hidden_size" => proxyConfig.FfnHiddenSize,
                "expert_ffn_hidden_size" => proxyConfig.ExpertFfnHiddenSize,
                "q_lora_rank" => proxyConfig.QLoraRank,
                "kv_lora_rank" => proxyConfig.KvLoraRank,
                _ => proxyConfig.NumAttentionHeads,
            };
            // Exact rational scaling: from * target / proxy must be a whole number.
            long num = from * targetWidth;
            if (num % proxyWidth != 0)
                throw new ConfigException(string.Create(CultureInfo.InvariantCulture,
                    $"width {targetWidth} is not a whole multiple of the proxy: {key} = {from} x {targetWidth}/{proxyWidth} = {(double)num / proxyWidth:G6} is not an integer"));
            long to = num / proxyWidth;
            if (to > int.MaxValue) throw new ConfigException($"width {targetWidth} makes {key} = {to}, too large");
            dims[key] = (from, to);
            model[key] = (int)to;
        }

        var groups = root["groups"] as JsonObject ?? new JsonObject();
        root["groups"] = groups;
        var init = groups["init_variance_multipliers"] as JsonObject ?? new JsonObject();
        var lr = groups["lr_multipliers"] as JsonObject ?? new JsonObject();
        groups["init_variance_multipliers"] = init;
        groups["lr_multipliers"] = lr;
        var mult = new Dictionary<ParameterGroup, (double, double)>();
        foreach (var g in ParameterGroups.All)
        {
            string name = ParameterGroups.Key(g);
            var (fv, fl) = Factor(g, s);
            double v = (init[name]?.GetValue<double>() ?? 1) * fv, l = (lr[name]?.GetValue<double>() ?? 1) * fl;
            init[name] = v;
            lr[name] = l;
            mult[g] = (v, l);
        }
        root["out"] = runOut ?? (root["out"]?.GetValue<string>() ?? "out/run") + "-width" + targetWidth.ToString(CultureInfo.InvariantCulture);
        TrainConfigFile.Parse(root.ToJsonString(), $"transferred config (width {targetWidth})");
        return new TransferResult(root, proxyWidth, targetWidth, s, dims, mult);
    }
}
