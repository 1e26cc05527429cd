using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using LongCat.Config;
using LongCat.IO;
using LongCat.Planning;

namespace LongCat.Cli.Commands;

/// <summary><c>longcat info</c>: parameter counts, activated parameters, KV-cache and weight bytes.</summary>
public static class InfoCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "Checkpoint folder: counts come from its config, bytes by dtype from its tensors." };
        var config = new Option<string?>("--config") { Description = "A config.json file, or a preset name: " + string.Join(", ", Presets.Names) + "." };
        var ke = new Option<double?>("--avg-experts") { Description = "Average real experts per token K_e for the 'at K_e' line (default: K·E/(E+Z), the balanced share)." };
        var json = new Option<bool>("--json") { Description = "Print one JSON object instead of the table." };
        var cmd = new Command("info", "Parameter count (total, by component, activated per token), KV-cache bytes per token, weight bytes by dtype.")
        {
            model, config, ke, json,
        };
        cmd.SetAction(p => CliSupport.Run(p, () => Run(p.GetValue(model), p.GetValue(config), p.GetValue(ke), p.GetValue(json))));
        return cmd;
    }

    // Billions for the real model, millions below 1B (a 16M demo model would read 0.00B everywhere).
    static string B(double n) => n < 1e9 ? M(n) : (n / 1e9).ToString("0.00", CultureInfo.InvariantCulture) + "B";
    static string M(double n) => (n / 1e6).ToString("0.00", CultureInfo.InvariantCulture) + "M";
    static string Round1(double n) => n < 1e9 ? (n / 1e6).ToString("0.0", CultureInfo.InvariantCulture) + "M" : (n / 1e9).ToString("0.0", CultureInfo.InvariantCulture) + "B";
    static string Trunc1(double n) => n < 1e9 ? (Math.Floor(n / 1e5) / 10).ToString("0.0", CultureInfo.InvariantCulture) + "M" : (Math.Floor(n / 1e8) / 10).ToString("0.0", CultureInfo.InvariantCulture) + "B";
    static string N(long n) => n.ToString("N0", CultureInfo.InvariantCulture);

    static int Run(string? modelDir, string? configArg, double? avgExperts, bool json)
    {
        if ((modelDir is null) == (configArg is null))
            throw new CliException("give exactly one of --model DIR or --config FILE|PRESET");
        LongCatConfig c;
        Dictionary<DType, long>? bytesByDtype = null;
        string source;
        if (modelDir is not null)
        {
            if (!Directory.Exists(modelDir)) throw new CliException($"{modelDir}: model folder not found");
            c = LongCatConfig.Load(Path.Combine(modelDir, "config.json"));
            using var ck = Checkpoint.Open(modelDir);
            bytesByDtype = [];
            foreach (var f in ck.Files)
                foreach (var t in f.Tensors.Values)
                    bytesByDtype[t.DType] = bytesByDtype.GetValueOrDefault(t.DType) + t.ByteLength;
            source = modelDir;
        }
        else
        {
            (c, source) = Presets.Resolve(configArg!);
        }
        var pc = new ParameterCount(c);
        int k = c.MoeTopK;
        double keDefault = c.NumExpertsTotal == 0 ? 0 : (double)k * c.NRoutedExperts / c.NumExpertsTotal;
        double ke = avgExperts ?? keDefault;
        if (double.IsNaN(ke) || ke < 0 || ke > k) throw new CliException($"--avg-experts must be in 0..moe_topk = {k}, got {ke}");
        double actMin = pc.Activated(0), actMax = pc.Activated(Math.Min(k, c.NRoutedExperts)), actKe = pc.Activated(ke);

        if (json)
        {
            var o = new Dictionary<string, object>
            {
                ["source"] = source,
                ["total_parameters"] = pc.Total,
                ["embedding"] = pc.Embedding,
                ["lm_head"] = pc.LmHead,
                ["mla_block"] = pc.MlaBlock,
                ["dense_ffn"] = pc.LayerDenseFfn,
                ["ffn_topology"] = c.FfnTopology,
                ["expert"] = pc.Expert,
                ["router"] = pc.Router,
                ["layer_total"] = pc.Layer,
                ["mtp_block"] = pc.MtpBlock,
                ["activated_min"] = actMin,
                ["activated_max"] = actMax,
                ["activated_at_avg"] = actKe,
                ["avg_real_experts"] = ke,
                ["kv_cache_values_per_token"] = pc.KvCacheValuesPerToken,
                ["kv_cache_bytes_per_token_bf16"] = pc.KvCacheValuesPerToken * 2,
                ["kv_cache_bytes_per_token_f32"] = pc.KvCacheValuesPerToken * 4,
            };
            if (bytesByDtype is not null) o["weight_bytes_by_dtype"] = bytesByDtype.ToDictionary(kv => kv.Key.ToString(), kv => kv.Value);
            else o["weight_bytes_release_style"] = pc.ReleaseStyleBytes;
            Console.WriteLine(JsonSerializer.Serialize(o));
            return 0;
        }

        var L = c.NumLayers;
        Console.WriteLine($"LongCat-Flash model: {source}");
        Console.WriteLine($"  hidden {c.HiddenSize}, {L} layers (x2 attention sublayers), {c.NumAttentionHeads} heads, vocab {c.VocabSize}");
        Console.WriteLine($"  experts: {c.NRoutedExperts} real + {c.ZeroExpertNum} zero, top-{k}, routed scaling {c.RoutedScalingFactor}");
        if (c.InterleavedFfn) Console.WriteLine("  ffn_topology interleaved: MoE and dense FFN alternate as sublayers (the ScMoE ablation baseline)");
        Console.WriteLine();
        Console.WriteLine($"Total parameters: {N(pc.Total)} ({Round1(pc.Total)})");
        Console.WriteLine($"  {"component",-34}{"each",14}{"count",8}{"total",16}");
        void Row(string name, long each, long count) => Console.WriteLine($"  {name,-34}{M(each),14}{count,8}{B((double)each * count),16}");
        Row("embedding", pc.Embedding, 1);
        Row("MLA block (attention sublayer)", pc.MlaBlock, 2L * L);
        Row(c.InterleavedFfn ? "dense SwiGLU FFN (2F)" : "dense SwiGLU FFN", pc.LayerDenseFfn, (long)c.LayerDenseFfnCount * L);
        Row("router classifier", pc.Router, L);
        Row("real expert", pc.Expert, (long)c.NRoutedExperts * L);
        Row("RMSNorm weights", c.HiddenSize, 4L * L + 1);
        Row("lm_head", pc.LmHead, pc.LmHead == 0 ? 0 : 1);
        if (c.NumNextnPredictLayers > 0)
            Console.WriteLine($"  MTP block (not in the total, lm_head shared): {M(pc.MtpBlock)}");
        Console.WriteLine();
        Console.WriteLine("Activated parameters per token (dense parts, router, chosen real experts, lm_head; not the embedding lookup):");
        void Act(string label, double v) => Console.WriteLine($"  {label,-36}{N((long)v),20} ({B(v)})");
        Act("0 real experts in every layer:", actMin);
        Act($"{Math.Min(k, c.NRoutedExperts)} real experts in every layer:", actMax);
        Act($"K_e = {ke.ToString("0.##", CultureInfo.InvariantCulture)} real experts on average:", actKe);
        Console.WriteLine($"  range: {Trunc1(actMin)}-{Trunc1(actMax)} (truncated to one decimal, the paper's convention)");
        Console.WriteLine();
        long kv = pc.KvCacheValuesPerToken;
        Console.WriteLine($"KV cache (MLA latent: {c.KvLoraRank} + {c.QkRopeHeadDim} values per token per attention sublayer, {2 * L} sublayers):");
        Console.WriteLine($"  {N(kv)} values per token = {N(kv * 2)} bytes in BF16, {N(kv * 4)} bytes in F32 (+{c.KvCacheWidth} values for the MTP head)");
        Console.WriteLine();
        if (bytesByDtype is not null)
        {
            Console.WriteLine("Weight bytes by stored dtype:");
            foreach (var (dt, bytes) in bytesByDtype.OrderByDescending(kv2 => kv2.Value))
                Console.WriteLine($"  {dt,-8}{N(bytes),22} bytes ({(bytes / (double)(1L << 30)).ToString("0.000", CultureInfo.InvariantCulture)} GiB)");
        }
        else
        {
            Console.WriteLine($"Weight bytes if stored like the release (BF16, router F32): {N(pc.ReleaseStyleBytes)} ({(pc.ReleaseStyleBytes / (double)(1L << 30)).ToString("0.0", CultureInfo.InvariantCulture)} GiB)");
        }
        return 0;
    }
}

/// <summary>Named configurations shipped in presets/ (e.g. the released LongCat-Flash-Chat).</summary>
public static class Presets
{
    public static string Folder => Path.Combine(AppContext.BaseDirectory, "presets");
    public static IEnumerable<string> Names => Directory.Exists(Folder)
        ? Directory.GetFiles(Folder, "*.json").Select(f => Path.GetFileNameWithoutExtension(f)).Order(StringComparer.Ordinal)
        : [];

    /// <summary>A config.json path, or a preset name.</summary>
    public static (LongCatConfig Config, string Source) Resolve(string arg)
    {
        if (File.Exists(arg)) return (LongCatConfig.Load(arg), arg);
        var preset = Path.Combine(Folder, arg + ".json");
        if (!arg.Contains('/') && File.Exists(preset)) return (LongCatConfig.Load(preset), $"preset {arg}");
        throw new CliException($"{arg}: no such config file or preset (presets: {string.Join(", ", Names)})");
    }
}
