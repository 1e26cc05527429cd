using System.Numerics.Tensors;

namespace LongCat.Kernels;

/// <summary>Causal multi-head attention over MLA keys (per-head k_nope, shared k_rope) and per-head values.</summary>
public static class Attention
{
    /// <summary>
    /// q [B·S, nh, dn+dr] (nope then rope), kvb [B·S, nh, dn+dv] (k_nope then v), krope [B·S, dr]
    /// -> out [B·S, nh, dv]. Query i of a sequence attends to keys 0..i. Softmax in fp32, max-subtracted.
    /// One task per (sequence, head): deterministic for any thread count.
    /// </summary>
    public static void Causal(float[] q, float[] kvb, float[] krope, float[] output, int batch, int seq, int nh, int dn, int dr, int dv, float scale)
    {
        int qd = dn + dr, kvbw = dn + dv;
        Parallelism.For(batch * nh, task =>
        {
            int b = task / nh, h = task % nh;
            var scores = new float[seq];
            for (int i = 0; i < seq; i++)
            {
                int ti = b * seq + i;
                var qn = q.AsSpan((ti * nh + h) * qd, dn);
                var qr = q.AsSpan((ti * nh + h) * qd + dn, dr);
                for (int j = 0; j <= i; j++)
                {
                    int tj = b * seq + j;
                    float s = TensorPrimitives.Dot(qn, kvb.AsSpan((tj * nh + h) * kvbw, dn))
                            + TensorPrimitives.Dot(qr, krope.AsSpan(tj * dr, dr));
                    scores[j] = s * scale;
                }
                var sc = scores.AsSpan(0, i + 1);
                Ops.Softmax(sc);
                var o = output.AsSpan((ti * nh + h) * dv, dv);
                o.Clear();
                for (int j = 0; j <= i; j++)
                {
                    int tj = b * seq + j;
                    TensorPrimitives.MultiplyAdd(kvb.AsSpan((tj * nh + h) * kvbw + dn, dv), sc[j], o, o);
                }
            }
        });
    }
}
