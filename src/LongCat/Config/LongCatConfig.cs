using System.Text.Json;
using System.Text.Json.Nodes;

namespace LongCat.Config;

/// <summary>
/// The model configuration, read from a Hugging Face <c>config.json</c> in the LongCat-Flash layout.
/// Every key of the released LongCat-Flash-Chat config is understood; absent keys take the spec's
/// defaults; unknown keys are ignored; invalid values throw <see cref="ConfigException"/> naming the key.
/// </summary>
public sealed record LongCatConfig
{
    public int VocabSize { get; init; } = 131072;
    public int HiddenSize { get; init; } = 6144;
    public int NumLayers { get; init; } = 28;
    public int NumAttentionHeads { get; init; } = 64;
    public int QLoraRank { get; init; } = 1536;
    public int KvLoraRank { get; init; } = 512;
    public int QkNopeHeadDim { get; init; } = 128;
    public int QkRopeHeadDim { get; init; } = 64;
    public int VHeadDim { get; init; } = 128;
    public int FfnHiddenSize { get; init; } = 12288;
    public int ExpertFfnHiddenSize { get; init; } = 2048;
    /// <summary>Real (FFN) experts E; indices 0..E-1.</summary>
    public int NRoutedExperts { get; init; } = 512;
    /// <summary>Zero-computation (identity) experts Z; indices E..E+Z-1.</summary>
    public int ZeroExpertNum { get; init; } = 256;
    public string ZeroExpertType { get; init; } = "identity";
    public int MoeTopK { get; init; } = 12;
    public double RoutedScalingFactor { get; init; } = 6.0;
    public bool MlaScaleQLora { get; init; } = true;
    public bool MlaScaleKvLora { get; init; } = true;
    public double RmsNormEps { get; init; } = 1e-5;
    /// <summary>
    /// Epsilon of the two MLA latent norms (q_a_layernorm, kv_a_layernorm). Hugging Face transformers uses
    /// 1e-6 there (its RMSNorm default: it does not pass rms_norm_eps), and the golden fixtures follow it, so
    /// that is our default. Config key <c>mla_latent_norm_eps</c> (ours) overrides; <c>null</c> means rms_norm_eps.
    /// </summary>
    public double LatentNormEps { get; init; } = 1e-6;
    public double RopeTheta { get; init; } = 10000000.0;
    public int MaxPositionEmbeddings { get; init; } = 131072;
    public bool AttentionBias { get; init; }
    public double AttentionDropout { get; init; }
    public int BosTokenId { get; init; } = 1;
    public int EosTokenId { get; init; } = 2;
    public int? PadTokenId { get; init; }
    public bool UseCache { get; init; } = true;
    public string HiddenAct { get; init; } = "silu";
    public bool RouterBias { get; init; }
    public bool NormTopKProb { get; init; }
    public bool TieWordEmbeddings { get; init; }
    public int NumNextnPredictLayers { get; init; } = 1;
    public string? TorchDtype { get; init; }
    /// <summary>Block size [rows, cols] of FP8 weight scales when the checkpoint is quantized, else null.</summary>
    public int[]? WeightBlockSize { get; init; }
    public string? QuantMethod { get; init; }
    /// <summary>
    /// How the MoE and the dense FFNs of a layer are wired (config key <c>ffn_topology</c>, ours):
    /// <see cref="ShortcutTopology"/> (the release's ScMoE: the MoE reads dense FFN 0's input and joins at the end of the
    /// layer) or <see cref="InterleavedTopology"/> (the paper's ablation baseline: one dense FFN of 2·ffn_hidden_size
    /// after attention 0, the MoE as the FFN after attention 1; same parameters and compute).
    /// </summary>
    public string FfnTopology { get; init; } = ShortcutTopology;

    public const string ShortcutTopology = "shortcut";
    public const string InterleavedTopology = "interleaved";

    public int QHeadDim => QkNopeHeadDim + QkRopeHeadDim;
    public int NumExpertsTotal => NRoutedExperts + ZeroExpertNum;
    /// <summary>Values cached per token per attention sublayer in the latent KV cache: c_kv and k_rope.</summary>
    public int KvCacheWidth => KvLoraRank + QkRopeHeadDim;
    public float AlphaQ => MlaScaleQLora ? MathF.Sqrt((float)HiddenSize / QLoraRank) : 1f;
    public float AlphaKv => MlaScaleKvLora ? MathF.Sqrt((float)HiddenSize / KvLoraRank) : 1f;
    public float SoftmaxScale => 1f / MathF.Sqrt(QHeadDim);
    /// <summary>True for the interleaved MoE/dense layer (<c>ffn_topology</c> "interleaved").</summary>
    public bool InterleavedFfn => FfnTopology == InterleavedTopology;
    /// <summary>Dense FFNs per layer: mlps.0 and mlps.1 (shortcut), or mlps.0 alone (interleaved).</summary>
    public int LayerDenseFfnCount => InterleavedFfn ? 1 : 2;
    /// <summary>Intermediate size of a layer's dense FFN: ffn_hidden_size, or 2·ffn_hidden_size for the single interleaved one.</summary>
    public int LayerDenseFfnHiddenSize => InterleavedFfn ? 2 * FfnHiddenSize : FfnHiddenSize;

    /// <summary>Reads and validates a config.json file.</summary>
    public static LongCatConfig Load(string path)
    {
        if (!File.Exists(path))
            throw new ConfigException($"{path}: config file not found");
        string text;
        try { text = File.ReadAllText(path); }
        catch (IOException e) { throw new ConfigException($"{path}: cannot read config: {e.Message}"); }
        return Parse(text, path);
    }

    /// <summary>Parses and validates config.json text; <paramref name="source"/> names it in errors.</summary>
    public static LongCatConfig Parse(string json, string source = "config.json")
    {
        JsonObject obj;
        try
        {
            // Duplicate keys: rejected at parse (JsonObject would otherwise throw a bare ArgumentException on first use).
            obj = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip, AllowDuplicateProperties = false }) as JsonObject
                ?? throw new ConfigException($"{source}: the top level must be a JSON object");
            // JsonNode decodes strings lazily; decode everything now so that an escape that is not valid UTF-16
            // (a lone surrogate such as "\ud800") is reported here, not as an InvalidOperationException later.
            _ = obj.ToJsonString();
        }
        catch (JsonException e) { throw new ConfigException($"{source}: invalid JSON: {e.Message}"); }
        catch (InvalidOperationException e) { throw new ConfigException($"{source}: invalid JSON: {e.Message}"); }

        var r = new Reader(obj, source);
        var d = new LongCatConfig();
        var layersKey = obj.ContainsKey("num_layers") || !obj.ContainsKey("num_hidden_layers") ? "num_layers" : "num_hidden_layers";
        var c = new LongCatConfig
        {
            VocabSize = r.Int("vocab_size", d.VocabSize),
            HiddenSize = r.Int("hidden_size", d.HiddenSize),
            NumLayers = r.Int(layersKey, d.NumLayers),
            NumAttentionHeads = r.Int("num_attention_heads", d.NumAttentionHeads),
            QLoraRank = r.Int("q_lora_rank", d.QLoraRank),
            KvLoraRank = r.Int("kv_lora_rank", d.KvLoraRank),
            QkNopeHeadDim = r.Int("qk_nope_head_dim", d.QkNopeHeadDim),
            QkRopeHeadDim = r.Int("qk_rope_head_dim", d.QkRopeHeadDim),
            VHeadDim = r.Int("v_head_dim", d.VHeadDim),
            FfnHiddenSize = r.Int("ffn_hidden_size", d.FfnHiddenSize),
            ExpertFfnHiddenSize = r.Int("expert_ffn_hidden_size", d.ExpertFfnHiddenSize),
            NRoutedExperts = r.Int("n_routed_experts", d.NRoutedExperts),
            ZeroExpertNum = r.Int("zero_expert_num", d.ZeroExpertNum),
            ZeroExpertType = r.Str("zero_expert_type", d.ZeroExpertType),
            MoeTopK = r.Int("moe_topk", d.MoeTopK),
            RoutedScalingFactor = r.Double("routed_scaling_factor", d.RoutedScalingFactor),
            MlaScaleQLora = r.Bool("mla_scale_q_lora", d.MlaScaleQLora),
            MlaScaleKvLora = r.Bool("mla_scale_kv_lora", d.MlaScaleKvLora),
            RmsNormEps = r.Double("rms_norm_eps", d.RmsNormEps),
            RopeTheta = r.Double("rope_theta", d.RopeTheta),
            MaxPositionEmbeddings = r.Int("max_position_embeddings", d.MaxPositionEmbeddings),
            AttentionBias = r.Bool("attention_bias", d.AttentionBias),
            AttentionDropout = r.Double("attention_dropout", d.AttentionDropout),
            BosTokenId = r.Int("bos_token_id", d.BosTokenId),
            EosTokenId = r.FirstInt("eos_token_id", d.EosTokenId),
            PadTokenId = r.NullableInt("pad_token_id"),
            UseCache = r.Bool("use_cache", d.UseCache),
            HiddenAct = r.Str("hidden_act", d.HiddenAct),
            RouterBias = r.Bool("router_bias", d.RouterBias),
            NormTopKProb = r.Bool("norm_topk_prob", d.NormTopKProb),
            TieWordEmbeddings = r.Bool("tie_word_embeddings", d.TieWordEmbeddings),
            NumNextnPredictLayers = r.Int("num_nextn_predict_layers", d.NumNextnPredictLayers),
            TorchDtype = r.OptStr("torch_dtype"),
            FfnTopology = r.Str("ffn_topology", d.FfnTopology),
        };
        c = c with { LatentNormEps = obj.ContainsKey("mla_latent_norm_eps") && obj["mla_latent_norm_eps"] is null ? c.RmsNormEps : r.Double("mla_latent_norm_eps", d.LatentNormEps) };

        if (obj["rope_scaling"] is JsonObject rs)
        {
            var type = (rs["type"] ?? rs["rope_type"])?.ToString() ?? "default";
            if (type != "default")
                throw ConfigException.Invalid(source, "rope_scaling.type", type, "only unscaled RoPE (null or type \"default\") is supported so far");
        }
        else if (obj["rope_scaling"] is not null)
            throw ConfigException.Invalid(source, "rope_scaling", obj["rope_scaling"]!.ToJsonString(), "must be null or an object");

        if (obj["quantization_config"] is not (null or JsonObject))
            throw ConfigException.Invalid(source, "quantization_config", obj["quantization_config"]!.ToJsonString(), "must be null or an object");
        if (obj["quantization_config"] is JsonObject q)
        {
            var qr = new Reader(q, source + " quantization_config");
            var method = qr.OptStr("quant_method") ?? "fp8";
            if (method == "int8")
            {
                // INT8 per output channel: weights I8 [out, in] + <module>.weight_scale F32 [out, 1].
                var gran = qr.OptStr("weight_scale_granularity") ?? "per_channel";
                if (gran != "per_channel")
                    throw ConfigException.Invalid(source, "quantization_config.weight_scale_granularity", gran, "only \"per_channel\" INT8 scales are read");
                c = c with { QuantMethod = method, WeightBlockSize = null };
                c.Validate(source);
                return c;
            }
            if (method != "fp8")
                throw ConfigException.Invalid(source, "quantization_config.quant_method", method, "only \"fp8\" (block-scaled E4M3) and \"int8\" (per-channel) checkpoints are read");
            int[] block = [128, 128];
            if (q["weight_block_size"] is not (null or JsonArray))
                throw ConfigException.Invalid(source, "quantization_config.weight_block_size", q["weight_block_size"]!.ToJsonString(), "must be [rows, cols]");
            if (q["weight_block_size"] is JsonArray arr)
            {
                if (arr.Count != 2) throw ConfigException.Invalid(source, "quantization_config.weight_block_size", arr.ToJsonString(), "must be [rows, cols]");
                block = [ToInt(arr[0], source, "quantization_config.weight_block_size"), ToInt(arr[1], source, "quantization_config.weight_block_size")];
                if (block[0] <= 0 || block[1] <= 0) throw ConfigException.Invalid(source, "quantization_config.weight_block_size", arr.ToJsonString(), "block sizes must be positive");
            }
            c = c with { QuantMethod = method, WeightBlockSize = block };
        }
        c.Validate(source);
        return c;
    }

    /// <summary>Checks every rule; throws <see cref="ConfigException"/> naming the first key that breaks one.</summary>
    public void Validate(string source = "config")
    {
        void Positive(string key, long v) { if (v <= 0) throw ConfigException.Invalid(source, key, v, "must be a positive integer"); }
        void NonNegative(string key, long v) { if (v < 0) throw ConfigException.Invalid(source, key, v, "must be >= 0"); }
        Positive("vocab_size", VocabSize);
        Positive("hidden_size", HiddenSize);
        Positive("num_layers", NumLayers);
        Positive("num_attention_heads", NumAttentionHeads);
        Positive("q_lora_rank", QLoraRank);
        Positive("kv_lora_rank", KvLoraRank);
        Positive("qk_nope_head_dim", QkNopeHeadDim);
        Positive("qk_rope_head_dim", QkRopeHeadDim);
        Positive("v_head_dim", VHeadDim);
        Positive("ffn_hidden_size", FfnHiddenSize);
        Positive("expert_ffn_hidden_size", ExpertFfnHiddenSize);
        NonNegative("n_routed_experts", NRoutedExperts);
        NonNegative("zero_expert_num", ZeroExpertNum);
        Positive("max_position_embeddings", MaxPositionEmbeddings);
        NonNegative("num_nextn_predict_layers", NumNextnPredictLayers);
        if (QkRopeHeadDim % 2 != 0)
            throw ConfigException.Invalid(source, "qk_rope_head_dim", QkRopeHeadDim, "must be even: RoPE rotates pairs of dimensions (2i, 2i+1)");
        // Derived sizes (QHeadDim, KvCacheWidth, NumExpertsTotal, ...) are int sums: they must not wrap around.
        if ((long)NRoutedExperts + ZeroExpertNum > int.MaxValue / 8)
            throw ConfigException.Invalid(source, "n_routed_experts", NRoutedExperts, "n_routed_experts + zero_expert_num is too large");
        if ((long)QkNopeHeadDim + QkRopeHeadDim > int.MaxValue / 8)
            throw ConfigException.Invalid(source, "qk_nope_head_dim", QkNopeHeadDim, "qk_nope_head_dim + qk_rope_head_dim is too large");
        if ((long)QkNopeHeadDim + VHeadDim > int.MaxValue / 8)
            throw ConfigException.Invalid(source, "v_head_dim", VHeadDim, "qk_nope_head_dim + v_head_dim is too large");
        if ((long)KvLoraRank + QkRopeHeadDim > int.MaxValue / 8)
            throw ConfigException.Invalid(source, "kv_lora_rank", KvLoraRank, "kv_lora_rank + qk_rope_head_dim is too large");
        if (NRoutedExperts + ZeroExpertNum <= 0)
            throw ConfigException.Invalid(source, "n_routed_experts", NRoutedExperts, "n_routed_experts + zero_expert_num must be at least 1");
        if (MoeTopK <= 0 || MoeTopK > NRoutedExperts + ZeroExpertNum)
            throw ConfigException.Invalid(source, "moe_topk", MoeTopK, $"must be in 1..n_routed_experts + zero_expert_num = {NRoutedExperts + ZeroExpertNum}");
        if (ZeroExpertType != "identity")
            throw ConfigException.Invalid(source, "zero_expert_type", ZeroExpertType, "only \"identity\" zero-computation experts exist in LongCat-Flash");
        if (FfnTopology is not (ShortcutTopology or InterleavedTopology))
            throw ConfigException.Invalid(source, "ffn_topology", FfnTopology, $"must be \"{ShortcutTopology}\" (ScMoE, the release) or \"{InterleavedTopology}\" (MoE and dense FFN as alternating sublayers)");
        if (InterleavedFfn && FfnHiddenSize > int.MaxValue / 16)
            throw ConfigException.Invalid(source, "ffn_hidden_size", FfnHiddenSize, "2 * ffn_hidden_size (the interleaved layer's dense FFN) is too large");
        if (HiddenAct != "silu")
            throw ConfigException.Invalid(source, "hidden_act", HiddenAct, "LongCat-Flash uses SwiGLU: only \"silu\" is supported");
        if (AttentionBias)
            throw ConfigException.Invalid(source, "attention_bias", true, "LongCat-Flash attention has no biases: only false is supported");
        if (RouterBias)
            throw ConfigException.Invalid(source, "router_bias", true, "the released router classifier has no bias: only false is supported");
        if (!(RoutedScalingFactor > 0) || double.IsInfinity(RoutedScalingFactor))
            throw ConfigException.Invalid(source, "routed_scaling_factor", RoutedScalingFactor, "must be a finite number > 0");
        if (!(RmsNormEps > 0) || RmsNormEps >= 1)
            throw ConfigException.Invalid(source, "rms_norm_eps", RmsNormEps, "must be in (0, 1)");
        if (!(LatentNormEps > 0) || LatentNormEps >= 1)
            throw ConfigException.Invalid(source, "mla_latent_norm_eps", LatentNormEps, "must be in (0, 1)");
        if (!(RopeTheta > 1) || double.IsInfinity(RopeTheta))
            throw ConfigException.Invalid(source, "rope_theta", RopeTheta, "must be a finite number > 1");
        if (AttentionDropout < 0 || AttentionDropout >= 1)
            throw ConfigException.Invalid(source, "attention_dropout", AttentionDropout, "must be in [0, 1)");
        if (BosTokenId < 0 || BosTokenId >= VocabSize)
            throw ConfigException.Invalid(source, "bos_token_id", BosTokenId, $"must be a token id in 0..vocab_size-1 = {VocabSize - 1}");
        if (EosTokenId < 0 || EosTokenId >= VocabSize)
            throw ConfigException.Invalid(source, "eos_token_id", EosTokenId, $"must be a token id in 0..vocab_size-1 = {VocabSize - 1}");
        if (PadTokenId is { } p && (p < 0 || p >= VocabSize))
            throw ConfigException.Invalid(source, "pad_token_id", p, $"must be a token id in 0..vocab_size-1 = {VocabSize - 1}");
        // Products that size buffers must fit in an int index.
        if ((long)NumAttentionHeads * Math.Max(QHeadDim, QkNopeHeadDim + VHeadDim) > int.MaxValue / 8)
            throw ConfigException.Invalid(source, "num_attention_heads", NumAttentionHeads, "num_attention_heads * head dims is too large");
    }

    /// <summary>Serialises to config.json text with the official key names.</summary>
    public string ToJson()
    {
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray("LongcatFlashForCausalLM"),
            ["model_type"] = "longcat_flash",
            ["attention_method"] = "MLA",
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["ffn_hidden_size"] = FfnHiddenSize,
            ["expert_ffn_hidden_size"] = ExpertFfnHiddenSize,
            ["num_layers"] = NumLayers,
            ["num_attention_heads"] = NumAttentionHeads,
            ["q_lora_rank"] = QLoraRank,
            ["kv_lora_rank"] = KvLoraRank,
            ["qk_nope_head_dim"] = QkNopeHeadDim,
            ["qk_rope_head_dim"] = QkRopeHeadDim,
            ["v_head_dim"] = VHeadDim,
            ["n_routed_experts"] = NRoutedExperts,
            ["zero_expert_num"] = ZeroExpertNum,
            ["zero_expert_type"] = ZeroExpertType,
            ["moe_topk"] = MoeTopK,
            ["routed_scaling_factor"] = RoutedScalingFactor,
            ["mla_scale_q_lora"] = MlaScaleQLora,
            ["mla_scale_kv_lora"] = MlaScaleKvLora,
            ["rms_norm_eps"] = RmsNormEps,
            ["rope_theta"] = RopeTheta,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["attention_bias"] = AttentionBias,
            ["attention_dropout"] = AttentionDropout,
            ["bos_token_id"] = BosTokenId,
            ["eos_token_id"] = EosTokenId,
            ["use_cache"] = UseCache,
        };
        if (PadTokenId is { } pad) o["pad_token_id"] = pad;
        if (TieWordEmbeddings) o["tie_word_embeddings"] = true;
        if (NormTopKProb) o["norm_topk_prob"] = true;
        if (LatentNormEps != 1e-6) o["mla_latent_norm_eps"] = LatentNormEps;
        if (NumNextnPredictLayers != 1) o["num_nextn_predict_layers"] = NumNextnPredictLayers;
        if (TorchDtype is not null) o["torch_dtype"] = TorchDtype;
        if (FfnTopology != ShortcutTopology) o["ffn_topology"] = FfnTopology;
        if (QuantMethod == "int8")
            o["quantization_config"] = new JsonObject
            {
                ["quant_method"] = "int8",
                ["weight_scale_granularity"] = "per_channel",
                ["symmetric"] = true,
                ["activation_scheme"] = "none",
            };
        else if (WeightBlockSize is not null)
            o["quantization_config"] = new JsonObject
            {
                ["quant_method"] = QuantMethod ?? "fp8",
                ["fmt"] = "e4m3",
                ["activation_scheme"] = "dynamic",
                ["weight_block_size"] = new JsonArray(WeightBlockSize[0], WeightBlockSize[1]),
            };
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>generation_config.json text: bos, eos and pad (3, the release's, when the config has none).</summary>
    public string GenerationConfigJson() =>
        $"{{\n  \"bos_token_id\": {BosTokenId},\n  \"eos_token_id\": {EosTokenId},\n  \"pad_token_id\": {PadTokenId ?? 3}\n}}\n";

    static int ToInt(JsonNode? n, string source, string key)
    {
        if (n is JsonValue v && v.TryGetValue(out double d) && d == Math.Floor(d) && Math.Abs(d) <= int.MaxValue) return (int)d;
        throw ConfigException.Invalid(source, key, n?.ToJsonString(), "must be an integer");
    }

    sealed class Reader(JsonObject obj, string source)
    {
        public int Int(string key, int dflt)
        {
            var n = obj[key];
            if (n is null) return dflt;
            return ToInt(n, source, key);
        }

        public int? NullableInt(string key) => obj[key] is null ? null : Int(key, 0);

        public int FirstInt(string key, int dflt)
        {
            // eos_token_id may be a list in HF configs: the first entry is the primary one.
            if (obj[key] is JsonArray a)
            {
                if (a.Count == 0) throw ConfigException.Invalid(source, key, "[]", "must be an integer or a non-empty list of integers");
                return ToInt(a[0], source, key);
            }
            return Int(key, dflt);
        }

        public double Double(string key, double dflt)
        {
            var n = obj[key];
            if (n is null) return dflt;
            if (n is JsonValue v && v.TryGetValue(out double d) && double.IsFinite(d)) return d;
            throw ConfigException.Invalid(source, key, n.ToJsonString(), "must be a number");
        }

        public bool Bool(string key, bool dflt)
        {
            var n = obj[key];
            if (n is null) return dflt;
            if (n is JsonValue v && v.TryGetValue(out bool b)) return b;
            throw ConfigException.Invalid(source, key, n.ToJsonString(), "must be true or false");
        }

        public string Str(string key, string dflt) => OptStr(key) ?? dflt;

        public string? OptStr(string key)
        {
            var n = obj[key];
            if (n is null) return null;
            if (n is JsonValue v && v.TryGetValue(out string? s)) return s;
            throw ConfigException.Invalid(source, key, n.ToJsonString(), "must be a string");
        }
    }
}
