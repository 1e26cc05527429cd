using LongCat.Model;

namespace LongCat.Training;

/// <summary>
/// The parameter groups that get their own learning-rate and init-variance multipliers (hyperparameter transfer,
/// spec section 4: embedding unchanged, hidden and unembedding scaled by 1/s) and their own weight-decay rule.
/// </summary>
public enum ParameterGroup
{
    /// <summary>Token embeddings (model.embed_tokens, model.mtp.embed_tokens).</summary>
    Embedding,
    /// <summary>Every hidden linear weight: MLA, dense FFNs, experts, the MTP eh_proj.</summary>
    Hidden,
    /// <summary>The routers' classifier weights [E+Z, H].</summary>
    Router,
    /// <summary>lm_head (absent with tied embeddings).</summary>
    Unembedding,
    /// <summary>RMSNorm weights: never weight-decayed.</summary>
    Norm,
}

/// <summary>Which group a tensor belongs to.</summary>
public static class ParameterGroups
{
    /// <summary>All groups, in enum order (the order of multiplier arrays).</summary>
    public static readonly ParameterGroup[] All = Enum.GetValues<ParameterGroup>();

    /// <summary>The group of a trainable tensor (the router bias is not trainable and has none).</summary>
    public static ParameterGroup Of(ParameterEntry e) => e.Kind switch
    {
        TensorKind.Embedding => ParameterGroup.Embedding,
        TensorKind.Linear => ParameterGroup.Hidden,
        TensorKind.RouterClassifier => ParameterGroup.Router,
        TensorKind.LmHead => ParameterGroup.Unembedding,
        TensorKind.Norm => ParameterGroup.Norm,
        _ => throw new ArgumentException($"tensor '{e.Name}' ({e.Kind}) is not trained by the optimizer"),
    };

    /// <summary>The group's name in train.json ("embedding", "hidden", "router", "unembedding", "norm").</summary>
    public static string Key(ParameterGroup g) => g.ToString().ToLowerInvariant();

    /// <summary>Weight decay applies to matrices only: no decay on norms (and the model has no biases).</summary>
    public static bool Decays(ParameterGroup g) => g != ParameterGroup.Norm;

    /// <summary>
    /// Scales each randomly initialised tensor by sqrt(multiplier of its group): an init-variance multiplier m turns
    /// normal(0, std²) into normal(0, m·std²). Norms (initialised to 1) and the router bias are left alone.
    /// </summary>
    public static void ScaleInitVariance(ParameterStore p, IReadOnlyList<double> varianceMultipliers)
    {
        if (varianceMultipliers.Count != All.Length) throw new ArgumentException($"{varianceMultipliers.Count} init-variance multipliers for {All.Length} groups");
        foreach (var e in p.Table.Entries)
        {
            if (!e.Trainable || e.Kind == TensorKind.Norm) continue;
            double m = varianceMultipliers[(int)Of(e)];
            if (m == 1) continue;
            float s = (float)Math.Sqrt(m);
            var v = p[e.Name].Value;
            for (int i = 0; i < v.Length; i++) v[i] *= s;
        }
    }
}
