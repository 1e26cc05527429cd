namespace LongCat.Kernels;

/// <summary>
/// Causal MLA attention for training (B sequences of S tokens at positions 0..S-1, per-head k_nope and v, one rope
/// key shared by all heads) and its backward. The forward keeps nothing but its inputs: the backward recomputes each
/// query row's probabilities with the very same arithmetic, so they are bit-identical to the forward's and no
/// [B, nh, S, S] buffer is ever stored.
/// <para>Both run one task per (sequence, head). Every gradient a task writes belongs to that (sequence, head), except
/// the shared rope key's: it is kept per head and summed over heads in ascending order afterwards, so results are
/// bitwise identical for any thread count.</para>
/// </summary>
public static unsafe class AttentionGrad
{
    // Per-thread row scratch (probabilities and their gradient), reused so a training step does not allocate.
    [ThreadStatic] static float[]? t_p;
    [ThreadStatic] static float[]? t_dp;

    static float[] Scratch(ref float[]? a, int n) => a is not null && a.Length >= n ? a : a = new float[Math.Max(n, 256)];

    /// <summary>
    /// q [B·S, nh, dn+dr] (rope part rotated, scaled), kvb [B·S, nh, dn+dv] (k_nope then v), krope [B·S, dr] (rotated)
    /// -> out [B·S, nh, dv] = softmax_causal((q_nope·k_nope + q_rope·k_rope) · scale) · v.
    /// </summary>
    public static void Forward(float[] q, float[] kvb, float[] krope, float[] output, int batch, int seq, int nh, int dn, int dr, int dv, float scale)
    {
        int qd = dn + dr, kvbw = dn + dv;
        CheckSizes(q, kvb, krope, output, batch, seq, nh, dn, dr, dv);
        Parallelism.For(batch * nh, task =>
        {
            int b = task / nh, h = task % nh;
            var p = Scratch(ref t_p, seq);
            fixed (float* pq = q, pkv = kvb, pkr = krope, po = output)
                for (int i = 0; i < seq; i++)
                {
                    int ti = b * seq + i;
                    Probabilities(pq, pkv, pkr, p, b, h, i, seq, nh, dn, dr, dv, scale);
                    float* o = po + ((long)ti * nh + h) * dv;
                    new Span<float>(o, dv).Clear();
                    for (int j = 0; j <= i; j++)
                    {
                        float* v = pkv + ((long)(b * seq + j) * nh + h) * kvbw + dn;
                        float pj = p[j];
                        for (int d = 0; d < dv; d++) o[d] = MathF.FusedMultiplyAdd(pj, v[d], o[d]);
                    }
                }
        });
    }

    /// <summary>
    /// Backward of <see cref="Forward"/>: dOut [B·S, nh, dv] -> dq [B·S, nh, dn+dr], dkvb [B·S, nh, dn+dv] (both
    /// overwritten; gradients w.r.t. the forward's inputs, i.e. after RoPE and scaling) and dkrope [B·S, dr]
    /// (overwritten; summed over heads). <paramref name="dkropeHeads"/> is scratch of at least B·S·nh·dr floats.
    /// Per query row i: dP_j = dO_i·v_j, dS_j = p_j (dP_j - Σ_l p_l dP_l) · scale, dq_i = Σ_j dS_j k_j,
    /// dk_j += dS_j q_i, dv_j += p_j dO_i.
    /// </summary>
    public static void Backward(float[] q, float[] kvb, float[] krope, float[] dOut, float[] dq, float[] dkvb, float[] dkrope, float[] dkropeHeads,
        int batch, int seq, int nh, int dn, int dr, int dv, float scale)
    {
        int qd = dn + dr, kvbw = dn + dv, t = batch * seq;
        CheckSizes(q, kvb, krope, dOut, batch, seq, nh, dn, dr, dv);
        CheckSizes(dq, dkvb, dkrope, dOut, batch, seq, nh, dn, dr, dv);
        if (dkropeHeads.Length < (long)t * nh * dr) throw new ArgumentException("dkropeHeads is smaller than [B·S, nh, dr]", nameof(dkropeHeads));
        Parallelism.For(batch * nh, task =>
        {
            int b = task / nh, h = task % nh;
            var p = Scratch(ref t_p, seq);
            var dp = Scratch(ref t_dp, seq);
            fixed (float* pq = q, pkv = kvb, pkr = krope, pdo = dOut, pdq = dq, pdkv = dkvb, pdkrh = dkropeHeads)
            {
                for (int j = 0; j < seq; j++)
                {
                    long tj = (long)b * seq + j;
                    new Span<float>(pdkv + (tj * nh + h) * kvbw, kvbw).Clear();
                    new Span<float>(pdkrh + (tj * nh + h) * dr, dr).Clear();
                }
                for (int i = 0; i < seq; i++)
                {
                    long ti = (long)b * seq + i;
                    Probabilities(pq, pkv, pkr, p, b, h, i, seq, nh, dn, dr, dv, scale);
                    float* dO = pdo + (ti * nh + h) * dv;
                    float sum = 0;
                    for (int j = 0; j <= i; j++)
                    {
                        float* v = pkv + (((long)b * seq + j) * nh + h) * kvbw + dn;
                        dp[j] = OpsGrad.Dot(dO, v, dv);
                        sum = MathF.FusedMultiplyAdd(p[j], dp[j], sum);
                    }
                    float* qi = pq + (ti * nh + h) * qd;
                    float* dqi = pdq + (ti * nh + h) * qd;
                    new Span<float>(dqi, qd).Clear();
                    for (int j = 0; j <= i; j++)
                    {
                        long tj = (long)b * seq + j;
                        float ds = p[j] * (dp[j] - sum) * scale;
                        float* kn = pkv + (tj * nh + h) * kvbw;
                        float* kr = pkr + tj * dr;
                        float* dkn = pdkv + (tj * nh + h) * kvbw;
                        float* dkr = pdkrh + (tj * nh + h) * dr;
                        for (int d = 0; d < dn; d++)
                        {
                            dqi[d] = MathF.FusedMultiplyAdd(ds, kn[d], dqi[d]);
                            dkn[d] = MathF.FusedMultiplyAdd(ds, qi[d], dkn[d]);
                        }
                        for (int d = 0; d < dr; d++)
                        {
                            dqi[dn + d] = MathF.FusedMultiplyAdd(ds, kr[d], dqi[dn + d]);
                            dkr[d] = MathF.FusedMultiplyAdd(ds, qi[dn + d], dkr[d]);
                        }
                        float pj = p[j];
                        float* dvj = dkn + dn;
                        for (int d = 0; d < dv; d++) dvj[d] = MathF.FusedMultiplyAdd(pj, dO[d], dvj[d]);
                    }
                }
            }
        });
        // The shared rope key: sum the heads' contributions in ascending head order.
        Parallelism.ForRange(t, 256, (t0, t1) =>
        {
            for (int ti = t0; ti < t1; ti++)
                for (int d = 0; d < dr; d++)
                {
                    float s = 0;
                    for (int h = 0; h < nh; h++) s += dkropeHeads[((long)ti * nh + h) * dr + d];
                    dkrope[ti * dr + d] = s;
                }
        });
    }

    /// <summary>p[0..i] = causal softmax of query row i of (sequence b, head h): the one place scores are computed.</summary>
    static void Probabilities(float* q, float* kvb, float* krope, float[] p, int b, int h, int i, int seq, int nh, int dn, int dr, int dv, float scale)
    {
        int qd = dn + dr, kvbw = dn + dv;
        long ti = (long)b * seq + i;
        float* qn = q + (ti * nh + h) * qd, qr = qn + dn;
        for (int j = 0; j <= i; j++)
        {
            long tj = (long)b * seq + j;
            float s = OpsGrad.Dot(qn, kvb + (tj * nh + h) * kvbw, dn) + OpsGrad.Dot(qr, krope + tj * dr, dr);
            p[j] = s * scale;
        }
        Ops.Softmax(p.AsSpan(0, i + 1));
    }

    static void CheckSizes(float[] q, float[] kvb, float[] krope, float[] o, int batch, int seq, int nh, int dn, int dr, int dv)
    {
        long t = (long)batch * seq;
        if (q.Length < t * nh * (dn + dr)) throw new ArgumentException("q is smaller than [B·S, nh, dn+dr]", nameof(q));
        if (kvb.Length < t * nh * (dn + dv)) throw new ArgumentException("kvb is smaller than [B·S, nh, dn+dv]", nameof(kvb));
        if (krope.Length < t * dr) throw new ArgumentException("krope is smaller than [B·S, dr]", nameof(krope));
        if (o.Length < t * nh * dv) throw new ArgumentException("the output is smaller than [B·S, nh, dv]", nameof(o));
    }
}
