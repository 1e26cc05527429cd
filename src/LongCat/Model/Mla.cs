using LongCat.Config;
using LongCat.Kernels;

namespace LongCat.Model;

/// <summary>
/// Multi-head latent attention (one attention sublayer), full form:
/// c_q = q_a_layernorm(q_a_proj(x)); q = q_b_proj(c_q)·α_q; [c_kv | k_rope] = kv_a_proj_with_mqa(x);
/// c_kv = kv_a_layernorm(c_kv)·α_kv; [k_nope | v] = kv_b_proj(c_kv) per head; RoPE on q_rope and the shared
/// k_rope; causal softmax((q_nope·k_nope + q_rope·k_rope)·(d_nope+d_rope)^-½) · v; o_proj.
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
    }

    public IEnumerable<Weight> Linears => [QAProj, QBProj, KvAProj, KvBProj, OProj];

    /// <summary>
    /// x [B·S, H] -> y [B·S, H] for B sequences of S tokens at positions 0..S-1 (full causal attention, no cache).
    /// </summary>
    public void Forward(float[] x, float[] y, int batch, int seq, Rope rope)
    {
        var c = _c;
        int t = batch * seq, nh = c.NumAttentionHeads, dn = c.QkNopeHeadDim, dr = c.QkRopeHeadDim, dv = c.VHeadDim;
        int qd = c.QHeadDim, rkv = c.KvLoraRank, kvw = rkv + dr, kvbw = dn + dv;

        var cq = new float[t * c.QLoraRank];
        Gemm.MatMul(x, QAProj, cq, t);
        Ops.RmsNorm(cq, QANorm, cq, t, c.QLoraRank, (float)c.LatentNormEps);
        var q = new float[t * nh * qd];
        Gemm.MatMul(cq, QBProj, q, t);
        float aq = c.AlphaQ;
        if (aq != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(q, aq, q);

        var kv = new float[t * kvw];
        Gemm.MatMul(x, KvAProj, kv, t);
        var ckv = new float[t * rkv];
        var krope = new float[t * dr];
        for (int i = 0; i < t; i++)
        {
            Ops.RmsNorm(kv.AsSpan(i * kvw, rkv), KvANorm, ckv.AsSpan(i * rkv, rkv), 1, rkv, (float)c.LatentNormEps);
            kv.AsSpan(i * kvw + rkv, dr).CopyTo(krope.AsSpan(i * dr, dr));
        }
        float akv = c.AlphaKv;
        if (akv != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(ckv, akv, ckv);

        rope.Ensure(seq);
        for (int i = 0; i < t; i++)
        {
            int pos = i % seq;
            for (int h = 0; h < nh; h++) Ops.RopeInterleaved(q.AsSpan((i * nh + h) * qd + dn, dr), rope.Cos(pos), rope.Sin(pos));
            Ops.RopeInterleaved(krope.AsSpan(i * dr, dr), rope.Cos(pos), rope.Sin(pos));
        }

        var kvb = new float[t * nh * kvbw];
        Gemm.MatMul(ckv, KvBProj, kvb, t);

        var attn = new float[t * nh * dv];
        Attention.Causal(q, kvb, krope, attn, batch, seq, nh, dn, dr, dv, c.SoftmaxScale);
        Gemm.MatMul(attn, OProj, y, t);
    }
}
