using LongCat.Config;
using LongCat.Kernels;

namespace LongCat.Model;

/// <summary>
/// The multi-token-prediction head (one dense layer), the speculative-decoding draft model:
/// <code>
/// e = enorm(embed(token_{t+1})); g = hnorm(h_t)      // h_t: main hidden after the final norm
/// x = eh_proj([e; g])                                 // [H, 2H], embedding half first
/// x += MLA(input_layernorm(x)); x += FFN(post_attention_layernorm(x))
/// logits_{t+2} = lm_head(mtp.norm(x))                 // the main lm_head
/// </code>
/// The pair (h_t, token_{t+1}) sits at position t for RoPE and in the head's own one-sublayer KV cache.
/// </summary>
public sealed class MtpHead
{
    readonly LongCatConfig _c;
    public const string Prefix = "model.mtp.";
    public Weight Embed { get; }          // own or the main embedding
    public bool OwnEmbedding { get; }
    public float[] ENorm { get; }
    public float[] HNorm { get; }
    public Weight EhProj { get; }          // [H, 2H]
    public float[] InputNorm { get; }
    public float[] PostAttentionNorm { get; }
    public Mla Attention { get; }
    public Ffn Mlp { get; }
    public float[] Norm { get; }

    /// <summary>True when the checkpoint has MTP weights.</summary>
    public static bool Present(WeightLoader l) => l.Checkpoint.Contains(Prefix + "layers.0.eh_proj.weight");

    public MtpHead(WeightLoader l, Weight mainEmbedding)
    {
        var c = _c = l.Config;
        int h = c.HiddenSize;
        var p = Prefix + "layers.0.";
        OwnEmbedding = l.Checkpoint.Contains(Prefix + "embed_tokens.weight");
        Embed = OwnEmbedding ? l.Linear(Prefix + "embed_tokens.weight", c.VocabSize, h) : mainEmbedding;
        ENorm = l.Vector(p + "enorm.m.weight", h);
        HNorm = l.Vector(p + "hnorm.m.weight", h);
        EhProj = l.Linear(p + "eh_proj.weight", h, 2 * h);
        InputNorm = l.Vector(p + "input_layernorm.weight", h);
        PostAttentionNorm = l.Vector(p + "post_attention_layernorm.weight", h);
        Attention = new Mla(l, p + "self_attn.");
        Mlp = Ffn.Load(l, p + "transformer_layer.mlp.", h, c.FfnHiddenSize);
        Norm = l.Vector(Prefix + "norm.weight", h);
    }

    public IEnumerable<Weight> Linears => (OwnEmbedding ? new[] { Embed } : []).Concat([EhProj]).Concat(Attention.Linears).Concat(Mlp.Linears);

    public KvCache NewCache(int capacity) => new(_c, capacity, 1);

    /// <summary>
    /// n pairs: mainHidden [n, H] (h_t after the final norm) and nextTokens [n] (token_{t+1}) at positions
    /// cache.Length.. -> draft logits [n or 1, V] for token_{t+2}. Appends to the head's cache.
    /// </summary>
    public float[] Forward(ReadOnlySpan<float> mainHidden, ReadOnlySpan<int> nextTokens, KvCache cache, Weight lmHead, Rope rope, bool allLogits = false)
    {
        var c = _c;
        int n = nextTokens.Length, hd = c.HiddenSize;
        var x = Body(mainHidden, nextTokens, (a, y) => Attention.ForwardCached(a, y, n, cache, 0, rope));
        cache.Advance(n);
        int rows = allLogits ? n : 1;
        return Logits(x, n - rows, rows, lmHead);
    }

    /// <summary>
    /// The draft step of several sequences in one forward (continuous batching): sequence i feeds
    /// nextTokens[i].Length pairs, its rows of mainHidden [T, H] back to back, at positions caches[i].Length..
    /// -> draft logits [S, V], one row per sequence (its last pair). Appends to every head cache.
    /// </summary>
    public float[] ForwardBatch(ReadOnlySpan<float> mainHidden, IReadOnlyList<int[]> nextTokens, IReadOnlyList<KvCache> caches, Weight lmHead, Rope rope)
    {
        if (nextTokens.Count != caches.Count || nextTokens.Count == 0) throw new ArgumentException("one head cache per sequence, at least one sequence");
        var counts = new int[nextTokens.Count];
        int t = 0;
        for (int i = 0; i < counts.Length; i++)
        {
            if (nextTokens[i].Length == 0) throw new ArgumentException($"sequence {i} has no draft inputs");
            if (caches[i].Sublayers != 1) throw new ArgumentException($"cache {i} is not an MTP head cache");
            counts[i] = nextTokens[i].Length;
            t += counts[i];
        }
        var flat = new int[t];
        for (int i = 0, o = 0; i < counts.Length; o += counts[i], i++) nextTokens[i].CopyTo(flat, o);
        var x = Body(mainHidden, flat, (a, y) => Attention.ForwardCachedBatch(a, y, caches, counts, 0, rope));
        for (int i = 0; i < caches.Count; i++) caches[i].Advance(counts[i]);
        int hd = _c.HiddenSize;
        var last = new float[counts.Length * hd];
        for (int i = 0, o = 0; i < counts.Length; i++) { o += counts[i]; x.AsSpan((o - 1) * hd, hd).CopyTo(last.AsSpan(i * hd)); }
        return Logits(last, 0, counts.Length, lmHead);
    }

    /// <summary>Embedding + hidden fusion, attention (via <paramref name="attend"/>: a [n, H] -> y [n, H]) and FFN: x [n, H] before mtp.norm.</summary>
    float[] Body(ReadOnlySpan<float> mainHidden, ReadOnlySpan<int> nextTokens, Action<float[], float[]> attend)
    {
        var c = _c;
        int n = nextTokens.Length, hd = c.HiddenSize;
        float eps = (float)c.RmsNormEps;
        if (mainHidden.Length != n * hd) throw new ArgumentException($"{mainHidden.Length} hidden values for {n} tokens");
        var eh = new float[n * 2 * hd];
        var tmp = new float[hd];
        for (int i = 0; i < n; i++)
        {
            int id = nextTokens[i];
            if ((uint)id >= (uint)c.VocabSize) throw new ArgumentOutOfRangeException(nameof(nextTokens), $"token id {id} is outside the vocabulary");
            Embed.DequantizeRow(id, tmp);
            Ops.RmsNorm(tmp, ENorm, eh.AsSpan(i * 2 * hd, hd), 1, hd, eps);
            Ops.RmsNorm(mainHidden.Slice(i * hd, hd), HNorm, eh.AsSpan(i * 2 * hd + hd, hd), 1, hd, eps);
        }
        var x = new float[n * hd];
        Gemm.MatMul(eh, EhProj, x, n);
        var a = new float[n * hd];
        var y = new float[n * hd];
        Ops.RmsNorm(x, InputNorm, a, n, hd, eps);
        attend(a, y);
        System.Numerics.Tensors.TensorPrimitives.Add(x, y, x);
        Ops.RmsNorm(x, PostAttentionNorm, a, n, hd, eps);
        Mlp.Forward(a, y, n);
        System.Numerics.Tensors.TensorPrimitives.Add(x, y, x);
        return x;
    }

    /// <summary>mtp.norm then the main lm_head over rows [first, first+rows) of x [*, H] -> logits [rows, V].</summary>
    float[] Logits(float[] x, int first, int rows, Weight lmHead)
    {
        var c = _c;
        int hd = c.HiddenSize;
        var a = new float[rows * hd];
        Ops.RmsNorm(x.AsSpan(first * hd, rows * hd), Norm, a, rows, hd, (float)c.RmsNormEps);
        var logits = new float[rows * c.VocabSize];
        Gemm.MatMul(a, lmHead, logits, rows);
        return logits;
    }
}
