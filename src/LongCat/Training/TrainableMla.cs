using LongCat.Config;
using LongCat.Kernels;
using LongCat.Model;

namespace LongCat.Training;

/// <summary>
/// One multi-head latent attention sublayer with its backward (spec section 2, reference numerics):
/// <code>
/// c_q = q_a_layernorm(q_a_proj(x));  q = q_b_proj(c_q) · α_q          # α_q applied after q_b_proj
/// [c_kv | k_rope] = kv_a_proj_with_mqa(x);  c_kv = kv_a_layernorm(c_kv) · α_kv
/// [k_nope | v] = kv_b_proj(c_kv) per head;  RoPE (interleaved) on q_rope and the shared k_rope
/// y = o_proj(softmax_causal((q_nope·k_nope + q_rope·k_rope) · (dn+dr)^-½) · v)
/// </code>
/// The forward keeps every intermediate the backward needs (x is the caller's buffer and must stay unchanged until
/// the backward); attention probabilities are recomputed, not stored.
/// </summary>
internal sealed class TrainableMla
{
    readonly LongCatConfig _c;
    public ParameterTensor QAProj { get; }     // [r_q, H]
    public ParameterTensor QANorm { get; }     // [r_q]
    public ParameterTensor QBProj { get; }     // [nh·(dn+dr), r_q]
    public ParameterTensor KvAProj { get; }    // [r_kv+dr, H]
    public ParameterTensor KvANorm { get; }    // [r_kv]
    public ParameterTensor KvBProj { get; }    // [nh·(dn+dv), r_kv]
    public ParameterTensor OProj { get; }      // [H, nh·dv]

    // Kept by the forward.
    float[] _x = [];
    int _batch, _seq;
    Rope? _rope;
    float[]? _cqRaw, _rstdQ, _cq, _q, _kv, _kvLat, _rstdKv, _ckv, _krope, _kvb, _o, _attnStats;
    // Backward scratch.
    float[]? _dO, _dq, _dkvb, _dkrope, _dkropeHeads, _dcq, _dcqRaw, _dckv, _dkvLat, _dkv;

    public TrainableMla(ParameterStore p, string prefix)
    {
        _c = p.Config;
        QAProj = p[prefix + "q_a_proj.weight"];
        QANorm = p[prefix + "q_a_layernorm.weight"];
        QBProj = p[prefix + "q_b_proj.weight"];
        KvAProj = p[prefix + "kv_a_proj_with_mqa.weight"];
        KvANorm = p[prefix + "kv_a_layernorm.weight"];
        KvBProj = p[prefix + "kv_b_proj.weight"];
        OProj = p[prefix + "o_proj.weight"];
    }

    /// <summary>x [B·S, H] -> y [B·S, H] for B sequences of S tokens at positions 0..S-1 (full causal attention).</summary>
    public void Forward(float[] x, float[] y, int batch, int seq, Rope rope)
    {
        var c = _c;
        int t = batch * seq, nh = c.NumAttentionHeads, dn = c.QkNopeHeadDim, dr = c.QkRopeHeadDim, dv = c.VHeadDim;
        int qd = dn + dr, rq = c.QLoraRank, rkv = c.KvLoraRank, kvw = rkv + dr;
        float eps = (float)c.LatentNormEps;
        _x = x; _batch = batch; _seq = seq; _rope = rope;
        var cqRaw = Buffers.Ensure(ref _cqRaw, (long)t * rq);
        var rstdQ = Buffers.Ensure(ref _rstdQ, t);
        var cq = Buffers.Ensure(ref _cq, (long)t * rq);
        var q = Buffers.Ensure(ref _q, (long)t * nh * qd);
        var kv = Buffers.Ensure(ref _kv, (long)t * kvw);
        var kvLat = Buffers.Ensure(ref _kvLat, (long)t * rkv);
        var rstdKv = Buffers.Ensure(ref _rstdKv, t);
        var ckv = Buffers.Ensure(ref _ckv, (long)t * rkv);
        var krope = Buffers.Ensure(ref _krope, (long)t * dr);
        var kvb = Buffers.Ensure(ref _kvb, (long)t * nh * (dn + dv));
        var o = Buffers.Ensure(ref _o, (long)t * nh * dv);

        Gemm.MatMul(x, QAProj.Weight, cqRaw, t);
        OpsGrad.RmsNormForward(cqRaw, QANorm.Value, cq, rstdQ, t, rq, eps);
        Gemm.MatMul(cq, QBProj.Weight, q, t);
        float aq = c.AlphaQ;
        if (aq != 1f) for (long i = 0; i < (long)t * nh * qd; i++) q[i] *= aq;

        Gemm.MatMul(x, KvAProj.Weight, kv, t);
        for (int i = 0; i < t; i++)
        {
            Array.Copy(kv, (long)i * kvw, kvLat, (long)i * rkv, rkv);
            Array.Copy(kv, (long)i * kvw + rkv, krope, (long)i * dr, dr);
        }
        OpsGrad.RmsNormForward(kvLat, KvANorm.Value, ckv, rstdKv, t, rkv, eps, c.AlphaKv);

        rope.Ensure(seq);
        for (int i = 0; i < t; i++)
        {
            int pos = i % seq;
            Ops.RopeInterleaved(krope.AsSpan(i * dr, dr), rope.Cos(pos), rope.Sin(pos));
            for (int h = 0; h < nh; h++) Ops.RopeInterleaved(q.AsSpan((i * nh + h) * qd + dn, dr), rope.Cos(pos), rope.Sin(pos));
        }
        Gemm.MatMul(ckv, KvBProj.Weight, kvb, t);
        AttentionGrad.Forward(q, kvb, krope, o, Buffers.Ensure(ref _attnStats, 2L * t * nh), batch, seq, nh, dn, dr, dv, c.SoftmaxScale);
        Gemm.MatMul(o, OProj.Weight, y, t);
    }

    /// <summary>
    /// dy [B·S, H] -> dx [B·S, H] (written, or added with <paramref name="accumulate"/>) for the last forward; the seven
    /// parameter gradients accumulate.
    /// </summary>
    public void Backward(float[] dy, float[] dx, bool accumulate)
    {
        var c = _c;
        int batch = _batch, seq = _seq, t = batch * seq, hd = c.HiddenSize, nh = c.NumAttentionHeads;
        int dn = c.QkNopeHeadDim, dr = c.QkRopeHeadDim, dv = c.VHeadDim, qd = dn + dr, rq = c.QLoraRank, rkv = c.KvLoraRank, kvw = rkv + dr;
        var rope = _rope ?? throw new InvalidOperationException("Backward called before Forward");
        var dO = Buffers.Ensure(ref _dO, (long)t * nh * dv);
        var dq = Buffers.Ensure(ref _dq, (long)t * nh * qd);
        var dkvb = Buffers.Ensure(ref _dkvb, (long)t * nh * (dn + dv));
        var dkrope = Buffers.Ensure(ref _dkrope, (long)t * dr);
        var dkropeHeads = Buffers.Ensure(ref _dkropeHeads, (long)t * nh * dr);
        var dcq = Buffers.Ensure(ref _dcq, (long)t * rq);
        var dcqRaw = Buffers.Ensure(ref _dcqRaw, (long)t * rq);
        var dckv = Buffers.Ensure(ref _dckv, (long)t * rkv);
        var dkvLat = Buffers.Ensure(ref _dkvLat, (long)t * rkv);
        var dkv = Buffers.Ensure(ref _dkv, (long)t * kvw);

        // y = o · Woᵀ
        GemmGrad.WeightGrad(dy, _o, OProj.Grad, t, hd, nh * dv);
        GemmGrad.InputGrad(dy, OProj.Value, dO, t, hd, nh * dv);
        // attention -> gradients w.r.t. the rotated, scaled q and the rotated shared key
        AttentionGrad.Backward(_q!, _kvb!, _krope!, _o!, _attnStats!, dO, dq, dkvb, dkrope, dkropeHeads, batch, seq, nh, dn, dr, dv, c.SoftmaxScale);
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
        GemmGrad.WeightGrad(dq, _cq, QBProj.Grad, t, nh * qd, rq);
        GemmGrad.InputGrad(dq, QBProj.Value, dcq, t, nh * qd, rq);
        OpsGrad.RmsNormBackward(dcq, _cqRaw, QANorm.Value, _rstdQ, dcqRaw, QANorm.Grad, t, rq, 1f, accumulate: false);
        // [k_nope | v] = c_kv · W_kvbᵀ, c_kv = kv_a_layernorm(kv latent) · α_kv
        GemmGrad.WeightGrad(dkvb, _ckv, KvBProj.Grad, t, nh * (dn + dv), rkv);
        GemmGrad.InputGrad(dkvb, KvBProj.Value, dckv, t, nh * (dn + dv), rkv);
        OpsGrad.RmsNormBackward(dckv, _kvLat, KvANorm.Value, _rstdKv, dkvLat, KvANorm.Grad, t, rkv, c.AlphaKv, accumulate: false);
        for (int i = 0; i < t; i++) Array.Copy(dkvLat, (long)i * rkv, dkv, (long)i * kvw, rkv);
        // the two down-projections of x
        GemmGrad.WeightGrad(dcqRaw, _x, QAProj.Grad, t, rq, hd);
        GemmGrad.InputGrad(dcqRaw, QAProj.Value, dx, t, rq, hd, accumulate);
        GemmGrad.WeightGrad(dkv, _x, KvAProj.Grad, t, kvw, hd);
        GemmGrad.InputGrad(dkv, KvAProj.Value, dx, t, kvw, hd, accumulate: true);
    }
}
