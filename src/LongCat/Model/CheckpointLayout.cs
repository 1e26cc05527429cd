using LongCat.Config;
using LongCat.IO;

namespace LongCat.Model;

/// <summary>What a tensor is, for initialisation and storage-precision decisions.</summary>
public enum TensorKind { Embedding, Linear, Norm, RouterClassifier, RouterBias, LmHead }

/// <summary>One tensor of the official checkpoint layout.</summary>
public sealed record TensorSpec(string Name, long[] Shape, TensorKind Kind)
{
    public long Count => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>The tensor names and shapes of a LongCat-Flash checkpoint in the official Hugging Face layout (spec section 3).</summary>
public static class CheckpointLayout
{
    public static IEnumerable<TensorSpec> Tensors(LongCatConfig c)
    {
        long h = c.HiddenSize, v = c.VocabSize;
        yield return new("model.embed_tokens.weight", [v, h], TensorKind.Embedding);
        for (int l = 0; l < c.NumLayers; l++)
        {
            var p = $"model.layers.{l}.";
            for (int s = 0; s < 2; s++)
            {
                yield return new($"{p}input_layernorm.{s}.weight", [h], TensorKind.Norm);
                yield return new($"{p}post_attention_layernorm.{s}.weight", [h], TensorKind.Norm);
                foreach (var t in Mla(c, $"{p}self_attn.{s}.")) yield return t;
                // Interleaved: one dense FFN (mlps.0, 2·ffn_hidden_size); the MoE is sublayer 1's FFN.
                if (s < c.LayerDenseFfnCount)
                    foreach (var t in Ffn($"{p}mlps.{s}.", h, c.LayerDenseFfnHiddenSize)) yield return t;
            }
            yield return new($"{p}mlp.router.classifier.weight", [c.NumExpertsTotal, h], TensorKind.RouterClassifier);
            yield return new($"{p}mlp.router.e_score_correction_bias", [c.NumExpertsTotal], TensorKind.RouterBias);
            for (int e = 0; e < c.NRoutedExperts; e++)
                foreach (var t in Ffn($"{p}mlp.experts.{e}.", h, c.ExpertFfnHiddenSize)) yield return t;
        }
        yield return new("model.norm.weight", [h], TensorKind.Norm);
        if (!c.TieWordEmbeddings) yield return new("lm_head.weight", [v, h], TensorKind.LmHead);
    }

    /// <summary>
    /// Throws naming <c>ffn_topology</c> when the checkpoint's layers were written for the other topology (a shortcut
    /// layer has <c>mlps.1</c>, an interleaved one does not), instead of a bare shape error on <c>mlps.0</c> later.
    /// </summary>
    public static void CheckTopology(LongCatConfig c, Checkpoint checkpoint)
    {
        const string mlp0 = "model.layers.0.mlps.0.gate_proj.weight", mlp1 = "model.layers.0.mlps.1.gate_proj.weight";
        bool hasMlp1 = checkpoint.Contains(mlp1);
        if (c.InterleavedFfn && hasMlp1)
            throw new ModelFormatException($"{checkpoint.Folder}: ffn_topology is \"{c.FfnTopology}\", but the checkpoint has '{mlp1}', a tensor of the shortcut (ScMoE) layer: remove ffn_topology or set it to \"{LongCatConfig.ShortcutTopology}\"");
        if (!c.InterleavedFfn && !hasMlp1 && checkpoint.Contains(mlp0))
            throw new ModelFormatException($"{checkpoint.Folder}: ffn_topology is \"{c.FfnTopology}\", but the checkpoint has no '{mlp1}': if it holds interleaved MoE/dense layers, set ffn_topology to \"{LongCatConfig.InterleavedTopology}\"");
    }

    /// <summary>
    /// Refuses a checkpoint whose MTP head would load partly or not at all: every tensor under <c>model.mtp.</c> must
    /// be one of the official names (<see cref="Mtp"/>, with the main or its own embedding, plus the FP8/INT8 scales of
    /// its linears), and a head that is there at all must be complete. Tensors of another draft-head layout (DeepSeek's
    /// <c>model.layers.N.eh_proj</c>, <c>enorm</c>, <c>hnorm</c>, <c>shared_head</c>) are refused by name too. Without
    /// this, a head under names this loader does not read would be silently absent (no speculative decoding, or a
    /// "no MTP head" error that hides the cause).
    /// </summary>
    public static void CheckMtp(LongCatConfig c, Checkpoint checkpoint)
    {
        var official = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in Mtp(c, ownEmbedding: true))
        {
            official.Add(t.Name);
            if (t.Kind == TensorKind.Linear)
            {
                var module = t.Name[..^".weight".Length];
                official.Add(module + ".weight_scale_inv");
                official.Add(module + ".weight_scale");
            }
        }
        var foreign = checkpoint.TensorNames.Where(n => !official.Contains(n) && LooksLikeDraftHead(n)).Order(StringComparer.Ordinal).ToList();
        if (foreign.Count > 0)
            throw new ModelFormatException($"{checkpoint.Folder}: {foreign.Count} tensor(s) of an MTP/draft head under names this loader does not recognise ({string.Join(", ", foreign.Take(6))}{(foreign.Count > 6 ? ", ..." : "")}); the official LongCat-Flash layout, as vLLM and SGLang load it, is {MtpLayoutSummary}: rename them (or remove them to load the model without its draft head)");
        var present = Mtp(c).Where(t => checkpoint.Contains(t.Name)).ToList();
        if (present.Count == 0) return;
        var missing = Mtp(c).Where(t => !checkpoint.Contains(t.Name)).Select(t => t.Name).ToList();
        if (missing.Count > 0)
            throw new ModelFormatException($"{checkpoint.Folder}: the MTP head is incomplete: it has {present.Count} of its tensors but lacks {string.Join(", ", missing.Take(6))}{(missing.Count > 6 ? $" and {missing.Count - 6} more" : "")} (official layout: {MtpLayoutSummary})");
    }

    const string MtpLayoutSummary = "model.mtp.layers.0.{enorm.m, hnorm.m, eh_proj, input_layernorm, post_attention_layernorm}.weight, " +
        "model.mtp.layers.0.self_attn.<MLA names>.weight, model.mtp.layers.0.transformer_layer.mlp.{gate,up,down}_proj.weight, " +
        "model.mtp.norm.weight and optionally model.mtp.embed_tokens.weight";

    static bool LooksLikeDraftHead(string name) =>
        name.StartsWith("model.mtp.", StringComparison.Ordinal) ||
        name.Contains(".eh_proj.", StringComparison.Ordinal) || name.StartsWith("eh_proj.", StringComparison.Ordinal) ||
        name.Contains(".enorm.", StringComparison.Ordinal) || name.StartsWith("enorm.", StringComparison.Ordinal) ||
        name.Contains(".hnorm.", StringComparison.Ordinal) || name.StartsWith("hnorm.", StringComparison.Ordinal) ||
        name.Contains("shared_head.", StringComparison.Ordinal);

    /// <summary>The MTP head's tensors (spec section 2), sharing the main embedding unless <paramref name="ownEmbedding"/>.</summary>
    public static IEnumerable<TensorSpec> Mtp(LongCatConfig c, bool ownEmbedding = false)
    {
        long h = c.HiddenSize;
        const string p = "model.mtp.layers.0.";
        if (ownEmbedding) yield return new("model.mtp.embed_tokens.weight", [c.VocabSize, h], TensorKind.Embedding);
        yield return new(p + "enorm.m.weight", [h], TensorKind.Norm);
        yield return new(p + "hnorm.m.weight", [h], TensorKind.Norm);
        yield return new(p + "eh_proj.weight", [h, 2 * h], TensorKind.Linear);
        yield return new(p + "input_layernorm.weight", [h], TensorKind.Norm);
        yield return new(p + "post_attention_layernorm.weight", [h], TensorKind.Norm);
        foreach (var t in Mla(c, p + "self_attn.")) yield return t;
        foreach (var t in Ffn(p + "transformer_layer.mlp.", h, c.FfnHiddenSize)) yield return t;
        yield return new("model.mtp.norm.weight", [h], TensorKind.Norm);
    }

    public static IEnumerable<TensorSpec> Mla(LongCatConfig c, string p)
    {
        long h = c.HiddenSize, nh = c.NumAttentionHeads;
        yield return new(p + "q_a_proj.weight", [c.QLoraRank, h], TensorKind.Linear);
        yield return new(p + "q_a_layernorm.weight", [c.QLoraRank], TensorKind.Norm);
        yield return new(p + "q_b_proj.weight", [nh * c.QHeadDim, c.QLoraRank], TensorKind.Linear);
        yield return new(p + "kv_a_proj_with_mqa.weight", [c.KvLoraRank + c.QkRopeHeadDim, h], TensorKind.Linear);
        yield return new(p + "kv_a_layernorm.weight", [c.KvLoraRank], TensorKind.Norm);
        yield return new(p + "kv_b_proj.weight", [nh * (c.QkNopeHeadDim + c.VHeadDim), c.KvLoraRank], TensorKind.Linear);
        yield return new(p + "o_proj.weight", [h, nh * c.VHeadDim], TensorKind.Linear);
    }

    public static IEnumerable<TensorSpec> Ffn(string p, long h, long inner)
    {
        yield return new(p + "gate_proj.weight", [inner, h], TensorKind.Linear);
        yield return new(p + "up_proj.weight", [inner, h], TensorKind.Linear);
        yield return new(p + "down_proj.weight", [h, inner], TensorKind.Linear);
    }
}
