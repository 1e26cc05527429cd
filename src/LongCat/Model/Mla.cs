using System.Numerics.Tensors;
using LongCat.Config;
using LongCat.Kernels;

namespace LongCat.Model;

/// <summary>
/// Multi-head latent attention (one attention sublayer):
/// c_q = q_a_layernorm(q_a_proj(x)); q = q_b_proj(c_q)·α_q; [c_kv | k_rope] = kv_a_proj_with_mqa(x);
/// c_kv = kv_a_layernorm(c_kv)·α_kv; [k_nope | v] = kv_b_proj(c_kv) per head; RoPE on q_rope and the shared
/// k_rope; causal softmax((q_nope·k_nope + q_rope·k_rope)·(d_nope+d_rope)^-½) · v; o_proj.
/// <para>Two ways to attend: the full form (expand every cached latent through kv_b_proj) and the absorbed
/// form (fold W_UK into the query, attend over 576-wide latents, apply W_UV after). Same math; the cached
/// path picks whichever costs fewer FLOPs for the chunk.</para>
/// </summary>
public sealed class Mla
{
    readonly LongCatConfig _c;
    public Weight QAProj { get; }      // [r_q, H]
    public float[] QANorm { get; }     // [r_q]
    public Weight QBProj { get; }      // [nh·(dn+dr), r_q]
    public Weight KvAProj { get; }     // [r_kv+dr, H]
    public float[] KvANorm { get; }    // [r_kv]
    public Weight KvBProj { get; }     // [nh·(dn+dv), r_kv]
    public Weight OProj { get; }       // [H, nh·dv]
    /// <summary>kv_b_proj prepared once for absorbed decode (fp32 W_UK and W_UVᵀ; <see cref="AbsorbedKvB.Bytes"/>).</summary>
    public AbsorbedKvB KvBAbsorbed { get; }

    public Mla(WeightLoader l, string prefix)
    {
        var c = _c = l.Config;
        int nh = c.NumAttentionHeads;
        QAProj = l.Linear(prefix + "q_a_proj.weight", c.QLoraRank, c.HiddenSize);
        QANorm = l.Vector(prefix + "q_a_layernorm.weight", c.QLoraRank);
        QBProj = l.Linear(prefix + "q_b_proj.weight", nh * c.QHeadDim, c.QLoraRank);
        KvAProj = l.Linear(prefix + "kv_a_proj_with_mqa.weight", c.KvLoraRank + c.QkRopeHeadDim, c.HiddenSize);
        KvANorm = l.Vector(prefix + "kv_a_layernorm.weight", c.KvLoraRank);
        KvBProj = l.Linear(prefix + "kv_b_proj.weight", nh * (c.QkNopeHeadDim + c.VHeadDim), c.KvLoraRank);
        OProj = l.Linear(prefix + "o_proj.weight", c.HiddenSize, nh * c.VHeadDim);
        KvBAbsorbed = AbsorbedKvB.Prepare(KvBProj, nh, c.QkNopeHeadDim, c.VHeadDim);
    }

    public IEnumerable<Weight> Linears => [QAProj, QBProj, KvAProj, KvBProj, OProj];

    /// <summary>
    /// x [T, H] -> q [T, nh, dn+dr] (scaled, rope part rotated), c_kv [T, r_kv] (normalised, scaled) and
    /// k_rope [T, dr] (rotated). <paramref name="position"/>(i) gives token i's position.
    /// </summary>
    public void Project(float[] x, int t, Func<int, int> position, Rope rope, float[] q, Span<float> ckv, Span<float> krope)
    {
        var c = _c;
        int nh = c.NumAttentionHeads, dn = c.QkNopeHeadDim, dr = c.QkRopeHeadDim, qd = c.QHeadDim, rkv = c.KvLoraRank, kvw = rkv + dr;
        var cq = new float[t * c.QLoraRank];
        Gemm.MatMul(x, QAProj, cq, t);
        Ops.RmsNorm(cq, QANorm, cq, t, c.QLoraRank, (float)c.LatentNormEps);
        Gemm.MatMul(cq, QBProj, q, t);
        float aq = c.AlphaQ;
        if (aq != 1f) TensorPrimitives.Multiply(q.AsSpan(0, t * nh * qd), aq, q.AsSpan(0, t * nh * qd));

        var kv = new float[t * kvw];
        Gemm.MatMul(x, KvAProj, kv, t);
        float akv = c.AlphaKv;
        int maxPos = 0;
        for (int i = 0; i < t; i++) maxPos = Math.Max(maxPos, position(i));
        rope.Ensure(maxPos + 1);
        for (int i = 0; i < t; i++)
        {
            var lat = ckv.Slice(i * rkv, rkv);
            Ops.RmsNorm(kv.AsSpan(i * kvw, rkv), KvANorm, lat, 1, rkv, (float)c.LatentNormEps);
            if (akv != 1f) TensorPrimitives.Multiply(lat, akv, lat);
            int pos = position(i);
            var kr = krope.Slice(i * dr, dr);
            kv.AsSpan(i * kvw + rkv, dr).CopyTo(kr);
            Ops.RopeInterleaved(kr, rope.Cos(pos), rope.Sin(pos));
            for (int h = 0; h < nh; h++) Ops.RopeInterleaved(q.AsSpan((i * nh + h) * qd + dn, dr), rope.Cos(pos), rope.Sin(pos));
        }
    }

    /// <summary>
    /// x [B·S, H] -> y [B·S, H] for B sequences of S tokens at positions 0..S-1 (full causal attention, no cache).
    /// </summary>
    public void Forward(float[] x, float[] y, int batch, int seq, Rope rope)
    {
        var c = _c;
        int t = batch * seq, nh = c.NumAttentionHeads;
        var q = new float[t * nh * c.QHeadDim];
        var ckv = new float[t * c.KvLoraRank];
        var krope = new float[t * c.QkRopeHeadDim];
        Project(x, t, i => i % seq, rope, q, ckv, krope);
        var kvb = new float[t * nh * (c.QkNopeHeadDim + c.VHeadDim)];
        Gemm.MatMul(ckv, KvBProj, kvb, t);
        var attn = new float[t * nh * c.VHeadDim];
        Attention.Causal(q, kvb, krope, attn, batch, seq, seq, 0, nh, c.QkNopeHeadDim, c.QkRopeHeadDim, c.VHeadDim, c.SoftmaxScale);
        Gemm.MatMul(attn, OProj, y, t);
    }

    /// <summary>
    /// x [n, H] -> y [n, H] for n new tokens of one sequence at positions cache.Length .. cache.Length+n-1. Writes
    /// their latents into <paramref name="cache"/> (sublayer <paramref name="sublayer"/>); the caller advances it.
    /// </summary>
    public void ForwardCached(float[] x, float[] y, int n, KvCache cache, int sublayer, Rope rope, bool? absorbed = null)
    {
        var c = _c;
        int nh = c.NumAttentionHeads, dn = c.QkNopeHeadDim, dr = c.QkRopeHeadDim, dv = c.VHeadDim, rkv = c.KvLoraRank;
        int start = cache.Length, total = start + n;
        if (total > cache.Capacity)
            throw new InvalidOperationException($"KV cache full: {start} cached + {n} new tokens exceed its capacity of {cache.Capacity}");
        var latent = cache.Latent(sublayer);
        var ropeKey = cache.RopeKey(sublayer);
        var q = new float[n * nh * c.QHeadDim];
        Project(x, n, i => start + i, rope, q, latent.AsSpan(start * rkv, n * rkv), ropeKey.AsSpan(start * dr, n * dr));

        var attn = new float[n * nh * dv];
        if (absorbed ?? UseAbsorbed(n, total))
            Attention.Absorbed(q, latent, ropeKey, KvBAbsorbed, attn, n, start, nh, dn, dr, dv, rkv, c.SoftmaxScale);
        else
            Attention.CausalLatent(q, latent, ropeKey, KvBProj, attn, n, start, nh, dn, dr, dv, rkv, c.SoftmaxScale);
        Gemm.MatMul(attn, OProj, y, n);
    }

    /// <summary>
    /// Batched cached attention: x [T, H] holds the new tokens of several sequences back to back
    /// (<paramref name="counts"/>[i] tokens for <paramref name="caches"/>[i], at positions caches[i].Length..).
    /// Projections and o_proj run once over all T tokens; attention runs per sequence against its own cache.
    /// The callers advance every cache afterwards.
    /// </summary>
    public void ForwardCachedBatch(float[] x, float[] y, IReadOnlyList<KvCache> caches, IReadOnlyList<int> counts, int sublayer, Rope rope)
    {
        var c = _c;
        int nh = c.NumAttentionHeads, dn = c.QkNopeHeadDim, dr = c.QkRopeHeadDim, dv = c.VHeadDim, rkv = c.KvLoraRank, qd = c.QHeadDim;
        int seqs = caches.Count, t = 0;
        var first = new int[seqs + 1];
        for (int i = 0; i < seqs; i++)
        {
            if (caches[i].Length + counts[i] > caches[i].Capacity)
                throw new InvalidOperationException($"KV cache full: {caches[i].Length} cached + {counts[i]} new tokens exceed its capacity of {caches[i].Capacity}");
            first[i] = t; t += counts[i];
        }
        first[seqs] = t;
        var owner = new int[t];
        for (int i = 0; i < seqs; i++) for (int j = first[i]; j < first[i + 1]; j++) owner[j] = i;
        var q = new float[t * nh * qd];
        var ckv = new float[t * rkv];
        var krope = new float[t * dr];
        Project(x, t, j => caches[owner[j]].Length + (j - first[owner[j]]), rope, q, ckv, krope);
        var attn = new float[t * nh * dv];
        for (int i = 0; i < seqs; i++)
        {
            int n = counts[i], start = caches[i].Length, total = start + n;
            if (n == 0) continue;
            var latent = caches[i].Latent(sublayer);
            var ropeKey = caches[i].RopeKey(sublayer);
            ckv.AsSpan(first[i] * rkv, n * rkv).CopyTo(latent.AsSpan(start * rkv));
            krope.AsSpan(first[i] * dr, n * dr).CopyTo(ropeKey.AsSpan(start * dr));
            var qi = q.AsSpan(first[i] * nh * qd, n * nh * qd).ToArray();
            var oi = new float[n * nh * dv];
            if (UseAbsorbed(n, total))
                Attention.Absorbed(qi, latent, ropeKey, KvBAbsorbed, oi, n, start, nh, dn, dr, dv, rkv, c.SoftmaxScale);
            else
                Attention.CausalLatent(qi, latent, ropeKey, KvBProj, oi, n, start, nh, dn, dr, dv, rkv, c.SoftmaxScale);
            oi.CopyTo(attn, first[i] * nh * dv);
        }
        Gemm.MatMul(attn, OProj, y, t);
    }

    /// <summary>FLOP model: the absorbed form wins when many cached tokens would otherwise go through kv_b_proj.</summary>
    bool UseAbsorbed(int n, int total)
    {
        var c = _c;
        long nh = c.NumAttentionHeads, dn = c.QkNopeHeadDim, dr = c.QkRopeHeadDim, dv = c.VHeadDim, rkv = c.KvLoraRank;
        long full = total * rkv * nh * (dn + dv) + (long)n * total * nh * (dn + dr + dv);
        long abs = n * nh * rkv * (dn + dv) + (long)n * total * nh * (2 * rkv + dr);
        return abs < full;
    }
}
