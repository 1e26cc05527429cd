using System.Numerics.Tensors;
using LongCat.Config;
using LongCat.Kernels;

namespace LongCat.Model;

/// <summary>
/// Multi-head latent attention (one attention sublayer), forward and backward (spec section 2, reference numerics):
/// <code>
/// c_q = q_a_layernorm(q_a_proj(x));  q = q_b_proj(c_q) · α_q          # α_q applied after q_b_proj
/// [c_kv | k_rope] = kv_a_proj_with_mqa(x);  c_kv = kv_a_layernorm(c_kv) · α_kv
/// [k_nope | v] = kv_b_proj(c_kv) per head;  RoPE (interleaved) on q_rope and the shared k_rope
/// y = o_proj(softmax_causal((q_nope·k_nope + q_rope·k_rope) · (dn+dr)^-½) · v)
/// </code>
/// Three ways to attend: the whole sequence (training and the uncached forward; training keeps every intermediate in
/// an <see cref="MlaState"/> for <see cref="Backward"/>, attention probabilities are recomputed, not stored), and,
/// against a latent KV cache, the full form (expand every cached latent through kv_b_proj) or the absorbed form (fold
/// W_UK into the query, attend over 576-wide latents, apply W_UV after). Same math; the cached path picks whichever
/// costs fewer FLOPs for the chunk.
/// </summary>
public sealed class Mla
{
    readonly LongCatConfig _c;
    readonly Param _qa, _qaNorm, _qb, _kva, _kvaNorm, _kvb, _o;
    public Weight QAProj => _qa.Weight;     // [r_q, H]
    public Weight QBProj => _qb.Weight;     // [nh·(dn+dr), r_q]
    public Weight KvAProj => _kva.Weight;   // [r_kv+dr, H]
    public Weight KvBProj => _kvb.Weight;   // [nh·(dn+dv), r_kv]
    public Weight OProj => _o.Weight;       // [H, nh·dv]
    AbsorbedKvB? _absorbed;

    /// <summary>
    /// kv_b_proj prepared for absorbed decode (fp32 W_UK and W_UVᵀ, <see cref="AbsorbedKvB.Bytes"/>): once, on first
    /// use, for a checkpoint's fixed weights; afresh on every call for training's parameters, which change each step.
    /// </summary>
    public AbsorbedKvB KvBAbsorbed => _kvb.HasGrad
        ? AbsorbedKvB.Prepare(KvBProj, _c.NumAttentionHeads, _c.QkNopeHeadDim, _c.VHeadDim)
        : _absorbed ??= AbsorbedKvB.Prepare(KvBProj, _c.NumAttentionHeads, _c.QkNopeHeadDim, _c.VHeadDim);

    public Mla(IParameterSource p, string prefix)
    {
        var c = _c = p.Config;
        int nh = c.NumAttentionHeads;
        _qa = p.Linear(prefix + "q_a_proj.weight", c.QLoraRank, c.HiddenSize);
        _qaNorm = p.Vector(prefix + "q_a_layernorm.weight", c.QLoraRank);
        _qb = p.Linear(prefix + "q_b_proj.weight", nh * c.QHeadDim, c.QLoraRank);
        _kva = p.Linear(prefix + "kv_a_proj_with_mqa.weight", c.KvLoraRank + c.QkRopeHeadDim, c.HiddenSize);
        _kvaNorm = p.Vector(prefix + "kv_a_layernorm.weight", c.KvLoraRank);
        _kvb = p.Linear(prefix + "kv_b_proj.weight", nh * (c.QkNopeHeadDim + c.VHeadDim), c.KvLoraRank);
        _o = p.Linear(prefix + "o_proj.weight", c.HiddenSize, nh * c.VHeadDim);
    }

    public IEnumerable<Weight> Linears => [QAProj, QBProj, KvAProj, KvBProj, OProj];

    /// <summary>
    /// x [T, H] -> q [T, nh, dn+dr] (scaled, rope part rotated), c_kv [T, r_kv] (normalised, scaled) and
    /// k_rope [T, dr] (rotated). <paramref name="positions"/>[i] is token i's position. The pre-norm latents and
    /// their inverse RMS stay in <paramref name="s"/> (what the backward of the two norms reads).
    /// </summary>
    public void Project(float[] x, int t, ReadOnlySpan<int> positions, Rope rope, float[] q, Span<float> ckv, Span<float> krope, MlaState s)
    {
        var c = _c;
        int nh = c.NumAttentionHeads, dn = c.QkNopeHeadDim, dr = c.QkRopeHeadDim, qd = c.QHeadDim, rq = c.QLoraRank, rkv = c.KvLoraRank, kvw = rkv + dr;
        float eps = (float)c.LatentNormEps;
        var cqRaw = Buffers.Ensure(ref s.CqRaw, (long)t * rq);
        var rstdQ = Buffers.Ensure(ref s.RstdQ, t);
        var cq = Buffers.Ensure(ref s.Cq, (long)t * rq);
        var kv = Buffers.Ensure(ref s.Kv, (long)t * kvw);
        var kvLat = Buffers.Ensure(ref s.KvLat, (long)t * rkv);
        var rstdKv = Buffers.Ensure(ref s.RstdKv, t);

        Gemm.MatMulPair(x, QAProj, cqRaw, KvAProj, kv, t);
        OpsGrad.RmsNormForward(cqRaw, _qaNorm.Values, cq, rstdQ, t, rq, eps);
        Gemm.MatMul(cq, QBProj, q, t);
        float aq = c.AlphaQ;
        if (aq != 1f) TensorPrimitives.Multiply(q.AsSpan(0, t * nh * qd), aq, q.AsSpan(0, t * nh * qd));

        for (int i = 0; i < t; i++)
        {
            kv.AsSpan(i * kvw, rkv).CopyTo(kvLat.AsSpan(i * rkv, rkv));
            kv.AsSpan(i * kvw + rkv, dr).CopyTo(krope.Slice(i * dr, dr));
        }
        OpsGrad.RmsNormForward(kvLat, _kvaNorm.Values, ckv, rstdKv, t, rkv, eps, c.AlphaKv);

        int maxPos = 0;
        for (int i = 0; i < t; i++) maxPos = Math.Max(maxPos, positions[i]);
        rope.Ensure(maxPos + 1);
        for (int i = 0; i < t; i++)
        {
            int pos = positions[i];
            Ops.RopeInterleaved(krope.Slice(i * dr, dr), rope.Cos(pos), rope.Sin(pos));
            for (int h = 0; h < nh; h++) Ops.RopeInterleaved(q.AsSpan((i * nh + h) * qd + dn, dr), rope.Cos(pos), rope.Sin(pos));
        }
    }

    /// <summary>
    /// x [B·S, H] -> y [B·S, H] for B sequences of S tokens at positions 0..S-1 (full causal attention, no cache).
    /// <paramref name="s"/> keeps what <see cref="Backward"/> needs (x by reference: leave it unchanged until then).
    /// </summary>
    public void Forward(float[] x, float[] y, int batch, int seq, Rope rope, MlaState s)
    {
        var c = _c;
        int t = batch * seq, nh = c.NumAttentionHeads, dn = c.QkNopeHeadDim, dr = c.QkRopeHeadDim, dv = c.VHeadDim;
        s.X = x; s.Batch = batch; s.Seq = seq; s.Rope = rope;
        var q = Buffers.Ensure(ref s.Q, (long)t * nh * (dn + dr));
        var ckv = Buffers.Ensure(ref s.Ckv, (long)t * c.KvLoraRank);
        var krope = Buffers.Ensure(ref s.Krope, (long)t * dr);
        var kvb = Buffers.Ensure(ref s.Kvb, (long)t * nh * (dn + dv));
        var o = Buffers.Ensure(ref s.O, (long)t * nh * dv);
        var pos = Buffers.Ensure(ref s.Positions, t);
        for (int i = 0; i < t; i++) pos[i] = i % seq;
        Project(x, t, pos, rope, q, ckv, krope, s);
        Gemm.MatMul(ckv, KvBProj, kvb, t);
        if (s.ForBackward) AttentionGrad.Forward(q, kvb, krope, o, Buffers.Ensure(ref s.AttnStats, 2L * t * nh), batch, seq, nh, dn, dr, dv, c.SoftmaxScale);
        else Attention.Causal(q, kvb, krope, o, batch, seq, seq, 0, nh, dn, dr, dv, c.SoftmaxScale);
        Gemm.MatMul(o, OProj, y, t);
    }

    /// <summary>
    /// dy [B·S, H] -> dx [B·S, H] (written, or added with <paramref name="accumulate"/>) for the forward kept in
    /// <paramref name="s"/>; the seven parameter gradients accumulate.
    /// </summary>
    public void Backward(float[] dy, float[] dx, bool accumulate, MlaState s)
    {
        var c = _c;
        int batch = s.Batch, seq = s.Seq, t = batch * seq, hd = c.HiddenSize, nh = c.NumAttentionHeads;
        int dn = c.QkNopeHeadDim, dr = c.QkRopeHeadDim, dv = c.VHeadDim, qd = dn + dr, rq = c.QLoraRank, rkv = c.KvLoraRank, kvw = rkv + dr;
        var rope = s.Rope ?? throw new InvalidOperationException("Backward called before Forward");
        var dO = Buffers.Ensure(ref s.DO, (long)t * nh * dv);
        var dq = Buffers.Ensure(ref s.Dq, (long)t * nh * qd);
        var dkvb = Buffers.Ensure(ref s.Dkvb, (long)t * nh * (dn + dv));
        var dkrope = Buffers.Ensure(ref s.Dkrope, (long)t * dr);
        var dkropeHeads = Buffers.Ensure(ref s.DkropeHeads, (long)t * nh * dr);
        var dcq = Buffers.Ensure(ref s.Dcq, (long)t * rq);
        var dcqRaw = Buffers.Ensure(ref s.DcqRaw, (long)t * rq);
        var dckv = Buffers.Ensure(ref s.Dckv, (long)t * rkv);
        var dkvLat = Buffers.Ensure(ref s.DkvLat, (long)t * rkv);
        var dkv = Buffers.Ensure(ref s.Dkv, (long)t * kvw);

        // y = o · Woᵀ
        GemmGrad.WeightGrad(dy, s.O, _o.Grad, t, hd, nh * dv);
        GemmGrad.InputGrad(dy, _o.Values, dO, t, hd, nh * dv);
        // attention -> gradients w.r.t. the rotated, scaled q and the rotated shared key
        AttentionGrad.Backward(s.Q!, s.Kvb!, s.Krope!, s.O!, s.AttnStats!, dO, dq, dkvb, dkrope, dkropeHeads, batch, seq, nh, dn, dr, dv, c.SoftmaxScale);
        for (int i = 0; i < t; i++)
        {
            int pos = i % seq;
            var dkr = dkrope.AsSpan(i * dr, dr);
            OpsGrad.RopeInterleavedBackward(dkr, rope.Cos(pos), rope.Sin(pos));
            Array.Copy(dkrope, (long)i * dr, dkv, (long)i * kvw + rkv, dr);
            for (int h = 0; h < nh; h++) OpsGrad.RopeInterleavedBackward(dq.AsSpan((i * nh + h) * qd + dn, dr), rope.Cos(pos), rope.Sin(pos));
        }
        // q = (c_q · W_qbᵀ) · α_q
        float aq = c.AlphaQ;
        if (aq != 1f) for (long i = 0; i < (long)t * nh * qd; i++) dq[i] *= aq;
        GemmGrad.WeightGrad(dq, s.Cq, _qb.Grad, t, nh * qd, rq);
        GemmGrad.InputGrad(dq, _qb.Values, dcq, t, nh * qd, rq);
        OpsGrad.RmsNormBackward(dcq, s.CqRaw, _qaNorm.Values, s.RstdQ, dcqRaw, _qaNorm.Grad, t, rq, 1f, accumulate: false);
        // [k_nope | v] = c_kv · W_kvbᵀ, c_kv = kv_a_layernorm(kv latent) · α_kv
        GemmGrad.WeightGrad(dkvb, s.Ckv, _kvb.Grad, t, nh * (dn + dv), rkv);
        GemmGrad.InputGrad(dkvb, _kvb.Values, dckv, t, nh * (dn + dv), rkv);
        OpsGrad.RmsNormBackward(dckv, s.KvLat, _kvaNorm.Values, s.RstdKv, dkvLat, _kvaNorm.Grad, t, rkv, c.AlphaKv, accumulate: false);
        for (int i = 0; i < t; i++) Array.Copy(dkvLat, (long)i * rkv, dkv, (long)i * kvw, rkv);
        // the two down-projections of x
        GemmGrad.WeightGrad(dcqRaw, s.X, _qa.Grad, t, rq, hd);
        GemmGrad.InputGrad(dcqRaw, _qa.Values, dx, t, rq, hd, accumulate);
        GemmGrad.WeightGrad(dkv, s.X, _kva.Grad, t, kvw, hd);
        GemmGrad.InputGrad(dkv, _kva.Values, dx, t, kvw, hd, accumulate: true);
    }

    /// <summary>
    /// x [n, H] -> y [n, H] for n new tokens of one sequence at positions cache.Length .. cache.Length+n-1. Writes
    /// their latents into <paramref name="cache"/> (sublayer <paramref name="sublayer"/>); the caller advances it.
    /// </summary>
    public void ForwardCached(float[] x, float[] y, int n, KvCache cache, int sublayer, Rope rope, MlaState s, bool? absorbed = null)
    {
        var c = _c;
        int nh = c.NumAttentionHeads, dn = c.QkNopeHeadDim, dr = c.QkRopeHeadDim, dv = c.VHeadDim, rkv = c.KvLoraRank;
        int start = cache.Length, total = start + n;
        if (total > cache.Capacity)
            throw new InvalidOperationException($"KV cache full: {start} cached + {n} new tokens exceed its capacity of {cache.Capacity}");
        var latent = cache.Latent(sublayer);
        var ropeKey = cache.RopeKey(sublayer);
        var q = Buffers.Ensure(ref s.Q, (long)n * nh * c.QHeadDim);
        var pos = Buffers.Ensure(ref s.Positions, n);
        for (int i = 0; i < n; i++) pos[i] = start + i;
        Project(x, n, pos, rope, q, latent.AsSpan(start * rkv, n * rkv), ropeKey.AsSpan(start * dr, n * dr), s);

        var attn = Buffers.Ensure(ref s.O, (long)n * nh * dv);
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
    public void ForwardCachedBatch(float[] x, float[] y, IReadOnlyList<KvCache> caches, IReadOnlyList<int> counts, int sublayer, Rope rope, MlaState s)
    {
        var c = _c;
        int nh = c.NumAttentionHeads, dn = c.QkNopeHeadDim, dr = c.QkRopeHeadDim, dv = c.VHeadDim, rkv = c.KvLoraRank, qd = c.QHeadDim;
        int seqs = caches.Count, t = 0;
        var first = Buffers.Ensure(ref s.First, seqs + 1);
        for (int i = 0; i < seqs; i++)
        {
            if (caches[i].Length + counts[i] > caches[i].Capacity)
                throw new InvalidOperationException($"KV cache full: {caches[i].Length} cached + {counts[i]} new tokens exceed its capacity of {caches[i].Capacity}");
            first[i] = t; t += counts[i];
        }
        first[seqs] = t;
        var pos = Buffers.Ensure(ref s.Positions, t);
        for (int i = 0; i < seqs; i++) for (int j = first[i]; j < first[i + 1]; j++) pos[j] = caches[i].Length + (j - first[i]);
        var q = Buffers.Ensure(ref s.Q, (long)t * nh * qd);
        var ckv = Buffers.Ensure(ref s.Ckv, (long)t * rkv);
        var krope = Buffers.Ensure(ref s.Krope, (long)t * dr);
        Project(x, t, pos, rope, q, ckv, krope, s);
        var attn = Buffers.Ensure(ref s.O, (long)t * nh * dv);
        for (int i = 0; i < seqs; i++)
        {
            int n = counts[i], start = caches[i].Length, total = start + n;
            if (n == 0) continue;
            var latent = caches[i].Latent(sublayer);
            var ropeKey = caches[i].RopeKey(sublayer);
            ckv.AsSpan(first[i] * rkv, n * rkv).CopyTo(latent.AsSpan(start * rkv));
            krope.AsSpan(first[i] * dr, n * dr).CopyTo(ropeKey.AsSpan(start * dr));
            // The attention kernels read from index 0: the sequence's queries and output in their own buffers.
            var qi = Buffers.Ensure(ref s.SeqQ, (long)n * nh * qd);
            var oi = Buffers.Ensure(ref s.SeqO, (long)n * nh * dv);
            q.AsSpan(first[i] * nh * qd, n * nh * qd).CopyTo(qi);
            if (UseAbsorbed(n, total))
                Attention.Absorbed(qi, latent, ropeKey, KvBAbsorbed, oi, n, start, nh, dn, dr, dv, rkv, c.SoftmaxScale);
            else
                Attention.CausalLatent(qi, latent, ropeKey, KvBProj, oi, n, start, nh, dn, dr, dv, rkv, c.SoftmaxScale);
            oi.AsSpan(0, n * nh * dv).CopyTo(attn.AsSpan(first[i] * nh * dv));
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

/// <summary>
/// One MLA sublayer's forward state: the intermediates its backward reads (x by reference, the pre-norm latents and
/// their inverse RMS, q, c_kv, k_rope, [k_nope | v], the attention output) and the backward's scratch. Buffers grow on
/// demand and are reused. <see cref="ForBackward"/> picks the attention kernel whose backward exists
/// (<see cref="AttentionGrad"/>); inference uses <see cref="Attention"/>.
/// </summary>
public sealed class MlaState(bool forBackward)
{
    public bool ForBackward { get; } = forBackward;
    internal float[] X = [];
    internal int Batch, Seq;
    internal Rope? Rope;
    internal float[]? CqRaw, RstdQ, Cq, Q, Kv, KvLat, RstdKv, Ckv, Krope, Kvb, O, AttnStats;
    internal float[]? SeqQ, SeqO;
    internal int[]? First, Positions;
    internal float[]? DO, Dq, Dkvb, Dkrope, DkropeHeads, Dcq, DcqRaw, Dckv, DkvLat, Dkv;
}
