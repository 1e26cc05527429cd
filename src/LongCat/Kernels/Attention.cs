using System.Numerics.Tensors;

namespace LongCat.Kernels;

/// <summary>Causal multi-head attention over MLA keys (per-head k_nope, shared k_rope), full and absorbed forms.</summary>
public static class Attention
{
    /// <summary>
    /// Full form. For each of B sequences: q [qLen, nh, dn+dr] (queries at positions qStart..qStart+qLen-1),
    /// kvb [kvLen, nh, dn+dv] (k_nope then v), krope [kvLen, dr] -> out [qLen, nh, dv]. Query i attends to keys
    /// 0..qStart+i. Softmax in fp32, max-subtracted. One task per (sequence, head): deterministic for any thread count.
    /// </summary>
    public static void Causal(float[] q, float[] kvb, float[] krope, float[] output, int batch, int qLen, int kvLen, int qStart,
        int nh, int dn, int dr, int dv, float scale)
    {
        int qd = dn + dr, kvbw = dn + dv;
        Parallelism.For(batch * nh, task =>
        {
            int b = task / nh, h = task % nh;
            var scores = new float[kvLen];
            for (int i = 0; i < qLen; i++)
            {
                int ti = b * qLen + i, last = qStart + i;
                var qn = q.AsSpan((ti * nh + h) * qd, dn);
                var qr = q.AsSpan((ti * nh + h) * qd + dn, dr);
                for (int j = 0; j <= last; j++)
                {
                    int tj = b * kvLen + j;
                    float s = TensorPrimitives.Dot(qn, kvb.AsSpan((tj * nh + h) * kvbw, dn))
                            + TensorPrimitives.Dot(qr, krope.AsSpan(tj * dr, dr));
                    scores[j] = s * scale;
                }
                var sc = scores.AsSpan(0, last + 1);
                Ops.Softmax(sc);
                var o = output.AsSpan((ti * nh + h) * dv, dv);
                o.Clear();
                for (int j = 0; j <= last; j++)
                {
                    int tj = b * kvLen + j;
                    TensorPrimitives.MultiplyAdd(kvb.AsSpan((tj * nh + h) * kvbw + dn, dv), sc[j], o, o);
                }
            }
        });
    }

    /// <summary>
    /// Absorbed form over the latent cache of one sequence. q [n, nh, dn+dr] at positions start..start+n-1;
    /// latent [≥start+n, r_kv], ropeKey [≥start+n, dr]; kvB = kv_b_proj [nh·(dn+dv), r_kv] -> out [n, nh, dv].
    /// Per head: q_lat = W_UKᵀ q_nope, score_j = (q_lat·c_kv_j + q_rope·k_rope_j)·scale, o_lat = Σ p_j c_kv_j,
    /// out = W_UV o_lat. Attention runs as multi-query attention over (r_kv + dr)-wide keys.
    /// </summary>
    public static void Absorbed(float[] q, float[] latent, float[] ropeKey, Weight kvB, float[] output, int n, int start,
        int nh, int dn, int dr, int dv, int rkv, float scale)
    {
        int qd = dn + dr, total = start + n;
        Parallelism.For(nh, h =>
        {
            // This head's W_UK [dn, r_kv] and W_UV [dv, r_kv] rows, dequantized once per call.
            var wuk = new float[dn * rkv];
            var wuv = new float[dv * rkv];
            int row0 = h * (dn + dv);
            for (int d = 0; d < dn; d++) kvB.DequantizeRow(row0 + d, wuk.AsSpan(d * rkv, rkv));
            for (int d = 0; d < dv; d++) kvB.DequantizeRow(row0 + dn + d, wuv.AsSpan(d * rkv, rkv));
            var qlat = new float[rkv];
            var olat = new float[rkv];
            var scores = new float[total];
            for (int i = 0; i < n; i++)
            {
                var qn = q.AsSpan((i * nh + h) * qd, dn);
                var qr = q.AsSpan((i * nh + h) * qd + dn, dr);
                Array.Clear(qlat);
                for (int d = 0; d < dn; d++) TensorPrimitives.MultiplyAdd(wuk.AsSpan(d * rkv, rkv), qn[d], qlat, qlat);
                int last = start + i;
                for (int j = 0; j <= last; j++)
                    scores[j] = (TensorPrimitives.Dot(qlat, latent.AsSpan(j * rkv, rkv)) + TensorPrimitives.Dot(qr, ropeKey.AsSpan(j * dr, dr))) * scale;
                var sc = scores.AsSpan(0, last + 1);
                Ops.Softmax(sc);
                Array.Clear(olat);
                for (int j = 0; j <= last; j++) TensorPrimitives.MultiplyAdd(latent.AsSpan(j * rkv, rkv), sc[j], olat, olat);
                var o = output.AsSpan((i * nh + h) * dv, dv);
                for (int d = 0; d < dv; d++) o[d] = TensorPrimitives.Dot(wuv.AsSpan(d * rkv, rkv), olat);
            }
        });
    }
}
