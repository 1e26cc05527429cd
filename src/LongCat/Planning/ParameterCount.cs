using LongCat.Config;

namespace LongCat.Planning;

/// <summary>
/// Parameter and memory accounting of a LongCat-Flash configuration (spec section 1): totals by component,
/// activated parameters per token for a given number of real experts per layer, KV-cache bytes per token.
/// </summary>
public sealed class ParameterCount
{
    public LongCatConfig Config { get; }
    public long Embedding { get; }
    public long LmHead { get; }
    public long FinalNorm { get; }
    /// <summary>One MLA sublayer (projections and its two latent norms).</summary>
    public long MlaBlock { get; }
    /// <summary>One dense SwiGLU FFN (ffn_hidden_size).</summary>
    public long DenseFfn { get; }
    /// <summary>
    /// One dense FFN of a layer as stored: <see cref="DenseFfn"/> (shortcut, two per layer) or one of 2·ffn_hidden_size
    /// (interleaved, one per layer), so both topologies have the same parameters and compute.
    /// </summary>
    public long LayerDenseFfn { get; }
    /// <summary>One real expert (expert_ffn_hidden_size).</summary>
    public long Expert { get; }
    /// <summary>One router classifier [E+Z, H] (the selection bias is a buffer, not counted).</summary>
    public long Router { get; }
    /// <summary>The four per-layer RMSNorm weights.</summary>
    public long LayerNorms { get; }
    /// <summary>The MTP block without an own embedding: eh_proj, its norms, one MLA and one dense FFN (lm_head shared).</summary>
    public long MtpBlock { get; }

    public ParameterCount(LongCatConfig c)
    {
        Config = c;
        // Counts of absurd configs would wrap around in 64 bits: refuse them by name.
        double approx = (double)c.NumLayers * ((double)c.NRoutedExperts * 3 * c.HiddenSize * c.ExpertFfnHiddenSize
            + 2.0 * 3 * c.HiddenSize * c.FfnHiddenSize + 4.0 * c.HiddenSize * (c.QLoraRank + c.KvLoraRank + c.NumAttentionHeads * (double)(c.QHeadDim + c.VHeadDim)))
            + 2.0 * c.VocabSize * c.HiddenSize;
        if (approx > 1e18)
            throw new ConfigException($"config: the model would have about {approx:E1} parameters, more than this tool counts (1e18): check num_layers, hidden_size and the expert sizes");
        long h = c.HiddenSize, nh = c.NumAttentionHeads;
        Embedding = (long)c.VocabSize * h;
        LmHead = c.TieWordEmbeddings ? 0 : (long)c.VocabSize * h;
        FinalNorm = h;
        MlaBlock = h * c.QLoraRank + c.QLoraRank + (long)c.QLoraRank * nh * c.QHeadDim
                 + h * (c.KvLoraRank + c.QkRopeHeadDim) + c.KvLoraRank + (long)c.KvLoraRank * nh * (c.QkNopeHeadDim + c.VHeadDim)
                 + nh * c.VHeadDim * h;
        DenseFfn = 3 * h * c.FfnHiddenSize;
        LayerDenseFfn = 3 * h * c.LayerDenseFfnHiddenSize;
        Expert = 3 * h * c.ExpertFfnHiddenSize;
        Router = (long)c.NumExpertsTotal * h;
        LayerNorms = 4 * h;
        MtpBlock = 2 * h * h + 3 * h + 2 * h + MlaBlock + DenseFfn;
    }

    /// <summary>Per-layer parameters that every token uses: 2 MLA, the dense FFNs (2 of F, or 1 of 2F), router, norms.</summary>
    public long DenseLayer => 2 * MlaBlock + Config.LayerDenseFfnCount * LayerDenseFfn + Router + LayerNorms;
    public long ExpertsPerLayer => Config.NRoutedExperts * Expert;
    public long Layer => DenseLayer + ExpertsPerLayer;
    public long Layers => Config.NumLayers * Layer;
    /// <summary>Total parameters of the main model (MTP excluded).</summary>
    public long Total => Embedding + Layers + FinalNorm + LmHead;

    /// <summary>
    /// Parameters a token activates with <paramref name="realExpertsPerLayer"/> real experts in every layer: all
    /// dense parts, the router, that many experts, the final norm and lm_head; not the embedding table (a lookup).
    /// </summary>
    public double Activated(double realExpertsPerLayer) =>
        Config.NumLayers * (DenseLayer + realExpertsPerLayer * Expert) + FinalNorm + (Config.TieWordEmbeddings ? Embedding : LmHead);

    /// <summary>Latent KV cache per token: c_kv + k_rope per attention sublayer, 2 per layer.</summary>
    public long KvCacheValuesPerToken => 2L * Config.NumLayers * Config.KvCacheWidth;
    public long KvCacheValuesPerTokenMtp => Config.KvCacheWidth;

    /// <summary>Bytes of weights if stored like the release: BF16 everywhere, router classifier in F32.</summary>
    public long ReleaseStyleBytes => 2 * (Total - Config.NumLayers * Router) + 4 * Config.NumLayers * Router;
}
