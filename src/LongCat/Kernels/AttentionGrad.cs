using static LongCat.Kernels.AttentionKernels;
using static LongCat.Kernels.Gemm;

namespace LongCat.Kernels;

/// <summary>
/// Causal MLA attention for training (B sequences of S tokens at positions 0..S-1, per-head k_nope and v, one rope
/// key shared by all heads) and its backward.
/// <para>The forward is the inference forward (<see cref="Attention.Causal(ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, Span{float}, int, int, int, int, int, int, int, int, float)"/>,
/// same bits) keeping each row's max score and softmax sum (2 floats per token and head). The backward recomputes the
/// probabilities tile by tile from them (flash-attention style): no [B, nh, S, S] buffer is ever stored, and its
/// scratch is a few tiles per thread.</para>
/// <para>The backward runs one task per (sequence, head): every gradient a task writes belongs to that (sequence, head),
/// except the shared rope key's, which is kept per head and summed over heads in ascending order afterwards; inside a
/// task every sum runs in a fixed order. So results are bitwise identical for any thread count and instruction set.</para>
/// </summary>
public static unsafe class AttentionGrad
{
    /// <summary>
    /// q [B·S, nh, dn+dr] (rope part rotated, scaled), kvb [B·S, nh, dn+dv] (k_nope then v), krope [B·S, dr] (rotated)
    /// -> out [B·S, nh, dv] = softmax_causal((q_nope·k_nope + q_rope·k_rope) · scale) · v, and
    /// <paramref name="stats"/> [2, B·S, nh] (each row's max score and softmax sum) for <see cref="Backward"/>.
    /// </summary>
    public static void Forward(float[] q, float[] kvb, float[] krope, float[] output, float[] stats, int batch, int seq, int nh, int dn, int dr, int dv, float scale)
    {
        if (stats.Length < 2L * batch * seq * nh) throw new ArgumentException("stats is smaller than [2, B·S, nh]", nameof(stats));
        Attention.Causal(q, kvb, krope, output, stats, batch, seq, seq, 0, nh, dn, dr, dv, scale);
    }

    [ThreadStatic] static float[]? t_tile;

    /// <summary>
    /// Backward of <see cref="Forward"/> (given its <paramref name="output"/> and <paramref name="stats"/>): dOut [B·S, nh, dv]
    /// -> dq [B·S, nh, dn+dr], dkvb [B·S, nh, dn+dv] (both overwritten; gradients w.r.t. the forward's inputs, i.e. after
    /// RoPE and scaling) and dkrope [B·S, dr] (overwritten; summed over heads). <paramref name="dkropeHeads"/> is scratch
    /// of at least B·S·nh·dr floats. Per query row i: δ_i = dO_i·O_i, p_ij recomputed, dP_ij = dO_i·v_j,
    /// dS_ij = p_ij (dP_ij - δ_i) · scale, dq_i = Σ_j dS_ij k_j, dk_j += dS_ij q_i, dv_j += p_ij dO_i.
    /// </summary>
    public static void Backward(float[] q, float[] kvb, float[] krope, float[] output, float[] stats, float[] dOut,
        float[] dq, float[] dkvb, float[] dkrope, float[] dkropeHeads, int batch, int seq, int nh, int dn, int dr, int dv, float scale)
    {
        int qd = dn + dr, kvbw = dn + dv, t = batch * seq;
        CheckSizes(q, kvb, krope, dOut, batch, seq, nh, dn, dr, dv);
        CheckSizes(dq, dkvb, dkrope, output, batch, seq, nh, dn, dr, dv);
        if (stats.Length < 2L * t * nh) throw new ArgumentException("stats is smaller than [2, B·S, nh]", nameof(stats));
        if (dkropeHeads.Length < (long)t * nh * dr) throw new ArgumentException("dkropeHeads is smaller than [B·S, nh, dr]", nameof(dkropeHeads));
        if (t == 0) return;
        long start = Attention.Observer != null ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
        var isa = Gemm.Isa;
        float c = scale * 1.4426950408889634f;
        fixed (float* pq = q, pkv = kvb, pkr = krope, po = output, pst = stats, pdo = dOut, pdq = dq, pdkv = dkvb, pdkrh = dkropeHeads)
        {
            float* fq = pq, fkv = pkv, fkr = pkr, fo = po, fst = pst, fdo = pdo, fdq = pdq, fdkv = pdkv, fdkrh = pdkrh;
            var st = new BackwardTasks
            {
                Q = fq, Kv = fkv, Kr = fkr, O = fo, St = fst, DOut = fdo, Dq = fdq, Dkv = fdkv, Dkrh = fdkrh,
                T = t, Seq = seq, Nh = nh, Dn = dn, Dr = dr, Dv = dv, C = c, Scale = scale, Isa = isa,
            };
            Parallelism.For(batch * nh, st, BackwardHead);
        }
        // The shared rope key: sum the heads' contributions in ascending head order.
        Parallelism.ForRange(t, 256, (dkropeHeads, dkrope, nh, dr), static (s, t0, t1) =>
        {
            var (dkropeHeads, dkrope, nh, dr) = s;
            for (int ti = t0; ti < t1; ti++)
                for (int d = 0; d < dr; d++)
                {
                    float sum = 0;
                    for (int h = 0; h < nh; h++) sum += dkropeHeads[((long)ti * nh + h) * dr + d];
                    dkrope[ti * dr + d] = sum;
                }
        });
        Attention.Observer?.Invoke(System.Diagnostics.Stopwatch.GetTimestamp() - start);
    }

    /// <summary>What the tasks of <see cref="Backward"/> read (no closure per call).</summary>
    struct BackwardTasks
    {
        public float* Q, Kv, Kr, O, St, DOut, Dq, Dkv, Dkrh;
        public int T, Seq, Nh, Dn, Dr, Dv;
        public float C, Scale;
        public KernelIsa Isa;
    }

    /// <summary>One (sequence, head) task of <see cref="Backward"/>.</summary>
    static void BackwardHead(BackwardTasks st, int task)
    {
        float* fq = st.Q, fkv = st.Kv, fkr = st.Kr, fo = st.O, fst = st.St, fdo = st.DOut, fdq = st.Dq, fdkv = st.Dkv, fdkrh = st.Dkrh;
        int t = st.T, seq = st.Seq, nh = st.Nh, dn = st.Dn, dr = st.Dr, dv = st.Dv, qd = dn + dr, kvbw = dn + dv;
        float c = st.C, scale = st.Scale;
        var isa = st.Isa;
        bool simd = isa != KernelIsa.Scalar;
        const int bq = Attention.QueryTile, bk = Attention.KeyTile;
        int b = task / nh, h = task % nh;
        long row0 = (long)b * seq * nh + h;       // (token b·S, head h) in [B·S, nh] order
        nint ldq = nh * qd, ldkv = nh * kvbw, ldo = nh * dv, ldkr = nh * dr;
        float* qh = fq + row0 * qd, kh = fkv + row0 * kvbw, vh = kh + dn, kr = fkr + (long)b * seq * dr;
        float* oh = fo + row0 * dv, doh = fdo + row0 * dv, dqh = fdq + row0 * qd, dkh = fdkv + row0 * kvbw, dvh = dkh + dn;
        float* dkrh = fdkrh + row0 * dr;
        for (int j = 0; j < seq; j++)
        {
            new Span<float>(dkh + j * ldkv, kvbw).Clear();
            new Span<float>(dkrh + j * ldkr, dr).Clear();
        }
        var buf = Attention.Scratch(ref t_tile, (long)bq * (qd + dv + 2 * bk + 4));
        fixed (float* pb = buf)
            for (int i0 = 0; i0 < seq; i0 += bq)
            {
                int nq = Math.Min(bq, seq - i0), cols = (nq + 15) & ~15;
                float* qt = pb, dot = qt + qd * cols, s = dot + dv * cols, dp = s + bk * cols;
                float* m = dp + bk * cols, rl = m + cols, delta = rl + cols, lim = delta + cols;
                for (int i = 0; i < cols; i++)
                {
                    bool valid = i < nq;
                    long r = i0 + (valid ? i : nq - 1);
                    float* qi = qh + r * ldq, doi = doh + r * ldo, oi = oh + r * ldo;
                    for (int d = 0; d < qd; d++) qt[d * cols + i] = valid ? qi[d] : 0f;
                    for (int d = 0; d < dv; d++) dot[d * cols + i] = valid ? doi[d] : 0f;
                    lim[i] = r;
                    if (valid)
                    {
                        m[i] = fst[row0 + r * nh];
                        rl[i] = 1f / fst[(long)t * nh + row0 + r * nh];
                        float dlt = 0;
                        for (int d = 0; d < dv; d++) dlt = MathF.FusedMultiplyAdd(doi[d], oi[d], dlt);
                        delta[i] = dlt;
                        new Span<float>(dqh + r * ldq, qd).Clear();
                    }
                    else { m[i] = 0f; rl[i] = 0f; delta[i] = 0f; }
                }
                int end = i0 + nq;
                for (int j0 = 0; j0 < end; j0 += bk)
                {
                    int nk = Math.Min(bk, end - j0);
                    // Recompute the scores exactly as the forward did, then P and dS = P ∘ (dP - δ) · scale.
                    Mac(isa, kh + j0 * ldkv, ldkv, 1, qt, cols, s, cols, nk, dn, cols, acc: false);
                    Mac(isa, kr + j0 * dr, dr, 1, qt + dn * cols, cols, s, cols, nk, dr, cols, acc: true);
                    if (lim[0] < j0 + nk - 1) Mask(simd, s, nk, cols, cols, j0, lim);
                    Mac(isa, vh + j0 * ldkv, ldkv, 1, dot, cols, dp, cols, nk, dv, cols, acc: false);
                    ProbabilitiesAndScoreGrad(simd, s, dp, nk, cols, cols, m, rl, delta, c, scale);
                    // dv_j += Σ_i p_ij dO_i;  dk_j += Σ_i dS_ij q_i (k_nope, then the rope key of this head)
                    Mac(isa, s, cols, 1, doh + i0 * ldo, ldo, dvh + j0 * ldkv, ldkv, nk, nq, dv, acc: true);
                    Mac(isa, dp, cols, 1, qh + i0 * ldq, ldq, dkh + j0 * ldkv, ldkv, nk, nq, dn, acc: true);
                    Mac(isa, dp, cols, 1, qh + i0 * ldq + dn, ldq, dkrh + j0 * ldkr, ldkr, nk, nq, dr, acc: true);
                    // dq_i += Σ_j dS_ij k_j
                    Mac(isa, dp, 1, cols, kh + j0 * ldkv, ldkv, dqh + i0 * ldq, ldq, nq, nk, dn, acc: true);
                    Mac(isa, dp, 1, cols, kr + j0 * dr, dr, dqh + i0 * ldq + dn, ldq, nq, nk, dr, acc: true);
                }
            }
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
