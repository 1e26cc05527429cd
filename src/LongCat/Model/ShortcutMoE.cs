using System.Numerics.Tensors;
using LongCat.Config;
using LongCat.Kernels;
using LongCat.Training;

namespace LongCat.Model;

/// <summary>The routing decision for a batch: per token, K (expert, weight) slots.</summary>
public sealed class Routing(int tokens, int k)
{
    public int Tokens { get; } = tokens;
    public int K { get; } = k;
    /// <summary>[T, K] selected expert indices, in selection order (best biased score first).</summary>
    public int[] Indices { get; } = new int[tokens * k];
    /// <summary>[T, K] weights aligned with <see cref="Indices"/>: unbiased probability · routed_scaling_factor.</summary>
    public float[] Weights { get; } = new float[tokens * k];

    /// <summary>A copy of the first <paramref name="tokens"/>·K slots of a forward's selection.</summary>
    public static Routing Copy(ReadOnlySpan<int> indices, ReadOnlySpan<float> weights, int tokens, int k)
    {
        var r = new Routing(tokens, k);
        indices[..(tokens * k)].CopyTo(r.Indices);
        weights[..(tokens * k)].CopyTo(r.Weights);
        return r;
    }

    /// <summary>How many of token <paramref name="row"/>'s K slots went to real experts (index &lt; E): its dynamic compute.</summary>
    public int RealExperts(int row, int realExpertCount)
    {
        int n = 0;
        for (int j = 0; j < K; j++) if (Indices[row * K + j] < realExpertCount) n++;
        return n;
    }

    /// <summary>Per layer, the real experts token <paramref name="row"/> used.</summary>
    public static int[] RealExpertsPerLayer(Routing[] layers, int row, int realExpertCount)
    {
        var r = new int[layers.Length];
        for (int l = 0; l < layers.Length; l++) r[l] = layers[l].RealExperts(row, realExpertCount);
        return r;
    }
}

/// <summary>
/// The MoE branch of a ScMoE layer, forward and backward. Forward steps: route (softmax over E real + Z zero experts,
/// top-K of p + bias (selection only), w = p[sel] · routed_scaling_factor, zero experts included, no renormalisation
/// unless norm_topk_prob), dispatch (stable counting sort of the (token, slot) pairs by real expert, rows gathered),
/// experts (each real expert once over its rows), combine (per token, its slots in ascending expert order, like
/// index_add_; a zero expert adds w · x: one scaled add, no FLOPs). Real experts per token are the dynamic compute.
/// <para>Backward: top-K is a selection, so gradients flow through the gathered probabilities only (as autograd does
/// through <c>gather</c>): dw = dy·expert_out (x for a zero expert), dp[sel] = dw · routed_scaling_factor,
/// dlogits = softmax backward, and the bias (selection only) gets none. Experts get dy · w, zero experts pass
/// w · dy straight to x. Optionally the device-level load-balance loss adds its dL/dp before the softmax backward.</para>
/// </summary>
public sealed class ShortcutMoE
{
    readonly LongCatConfig _c;
    readonly Param _classifier, _bias;
    const int TokenGrain = 64;

    public Weight Classifier => _classifier.Weight;                // [E+Z, H], F32 in checkpoints
    public ReadOnlySpan<float> ScoreCorrectionBias => _bias.Values;  // [E+Z], selection only
    public Ffn[] Experts { get; }

    public ShortcutMoE(IParameterSource p, string prefix)
    {
        var c = _c = p.Config;
        _classifier = p.Linear(prefix + "router.classifier.weight", c.NumExpertsTotal, c.HiddenSize);
        var biasName = prefix + "router.e_score_correction_bias";
        _bias = p.Contains(biasName) ? p.Vector(biasName, c.NumExpertsTotal) : Param.Vector(biasName, new float[c.NumExpertsTotal]);
        Experts = new Ffn[c.NRoutedExperts];
        for (int e = 0; e < c.NRoutedExperts; e++)
            Experts[e] = Ffn.Load(p, $"{prefix}experts.{e}.", c.HiddenSize, c.ExpertFfnHiddenSize);
    }

    public IEnumerable<Weight> Linears => Experts.SelectMany(e => e.Linears).Prepend(Classifier);

    /// <summary>
    /// One token's routing: router logits [E+Z] in, softmax probabilities out (in place); top-K of p + bias
    /// (selection only) into <paramref name="sel"/>; weights = p[sel] · routed_scaling_factor (renormalised over the
    /// selection first when <paramref name="normTopK"/>).
    /// </summary>
    public static void RouteToken(Span<float> logitsToProbs, ReadOnlySpan<float> bias, Span<float> biasedScratch, Span<int> sel, Span<float> weights, float rsf, bool normTopK)
    {
        var p = logitsToProbs;
        int ne = p.Length, k = sel.Length;
        Ops.Softmax(p);
        for (int e = 0; e < ne; e++) biasedScratch[e] = p[e] + bias[e];
        Ops.TopK(biasedScratch[..ne], sel);
        float norm = 1f;
        if (normTopK)
        {
            float s = 0;
            for (int j = 0; j < k; j++) s += p[sel[j]];
            norm = s > 0 ? 1f / s : 0f;
        }
        for (int j = 0; j < k; j++) weights[j] = normTopK ? p[sel[j]] * norm * rsf : p[sel[j]] * rsf;
    }

    /// <summary>
    /// x [T, H] (the normalized MoE input; kept by reference in <paramref name="s"/>, so the caller leaves it unchanged
    /// until the backward) -> y [T, H] (overwritten). The routing stays in <paramref name="s"/>. Returns the
    /// device-level load-balance loss of this layer (0 unless <paramref name="options"/> turn it on).
    /// </summary>
    public double Forward(float[] x, float[] y, int t, MoeState s, LossOptions? options = null)
    {
        var c = _c;
        int hd = c.HiddenSize, ne = c.NumExpertsTotal, k = c.MoeTopK, nr = c.NRoutedExperts, inner = c.ExpertFfnHiddenSize;
        s.X = x; s.Tokens = t; s.K = k;
        var probs = Buffers.Ensure(ref s.Probs, (long)t * ne);
        var w = Buffers.Ensure(ref s.W, (long)t * k);
        var sel = Buffers.Ensure(ref s.Sel, (long)t * k);
        var slotOrder = Buffers.Ensure(ref s.SlotOrder, (long)t * k);

        // Route.
        Gemm.MatMul(x, Classifier, probs, t);
        float rsf = (float)c.RoutedScalingFactor;
        var bias = Buffers.Ensure(ref s.Bias, ne);
        ScoreCorrectionBias.CopyTo(bias);
        Buffers.Ensure(ref s.Biased, (long)((t + TokenGrain - 1) / TokenGrain) * ne);
        Parallelism.ForRange(t, TokenGrain, (s, ne, rsf, c.NormTopKProb), static (st, t0, t1) =>
        {
            var (s, ne, rsf, normTopK) = st;
            int k = s.K;
            float[] probs = s.Probs!, w = s.W!, bias = s.Bias!;
            int[] sel = s.Sel!, slotOrder = s.SlotOrder!;
            var biased = s.Biased.AsSpan(t0 / TokenGrain * ne, ne);
            for (int i = t0; i < t1; i++)
            {
                var si = sel.AsSpan(i * k, k);
                RouteToken(probs.AsSpan(i * ne, ne), bias, biased, si, w.AsSpan(i * k, k), rsf, normTopK);
                // The token's slots in ascending expert order: the order outputs are combined in (like index_add_).
                var so = slotOrder.AsSpan(i * k, k);
                for (int j = 0; j < k; j++)
                {
                    int m = j;
                    while (m > 0 && si[so[m - 1]] > si[j]) { so[m] = so[m - 1]; m--; }
                    so[m] = j;
                }
            }
        });

        // Dispatch: stable counting sort of the real-expert slots.
        var start = Buffers.Ensure(ref s.Start, nr + 1);
        Array.Clear(start, 0, nr + 1);
        for (int i = 0; i < t * k; i++) if (sel[i] < nr) start[sel[i] + 1]++;
        for (int e = 0; e < nr; e++) start[e + 1] += start[e];
        int rows = s.Rows = start[nr];
        var order = Buffers.Ensure(ref s.Order, (long)t * k); // the worst case, as xe below
        var rowOfSlot = Buffers.Ensure(ref s.RowOfSlot, (long)t * k);
        var fill = Buffers.Ensure(ref s.Fill, nr);
        start.AsSpan(0, nr).CopyTo(fill);
        for (int i = 0; i < t * k; i++)
        {
            if (sel[i] < nr) { int r = fill[sel[i]]++; order[r] = i; rowOfSlot[i] = r; }
            else rowOfSlot[i] = -1;
        }
        // Sized for the worst case (every slot a real expert), not this step's rows: the count moves from step to step,
        // and buffers that grew with it would reallocate whenever it hit a new high.
        var xe = Buffers.Ensure(ref s.Xe, (long)t * k * hd);
        var ye = Buffers.Ensure(ref s.Ye, (long)t * k * hd);
        for (int r = 0; r < rows; r++) Array.Copy(x, (long)(order[r] / k) * hd, xe, (long)r * hd, hd);

        // Experts: one task set for all of them (grouped GEMM), each bitwise what it computes alone.
        var acts = s.Experts;
        acts.Ensure(t * k, inner);
        Ffn.ForwardGroup(Experts, start, xe, ye, acts, s.Jobs);

        // Combine.
        Parallelism.ForRange(t, 64, (s, y, hd), static (st, t0, t1) =>
        {
            var (s, y, hd) = st;
            int k = s.K;
            float[] x = s.X, w = s.W!, ye = s.Ye!;
            int[] slotOrder = s.SlotOrder!, rowOfSlot = s.RowOfSlot!;
            for (int i = t0; i < t1; i++)
            {
                var yi = y.AsSpan(i * hd, hd);
                yi.Clear();
                for (int jj = 0; jj < k; jj++)
                {
                    int sl = i * k + slotOrder[i * k + jj];
                    var src = rowOfSlot[sl] >= 0 ? ye.AsSpan(rowOfSlot[sl] * hd, hd) : x.AsSpan(i * hd, hd);
                    TensorPrimitives.FusedMultiplyAdd(src, w[sl], yi, yi); // one rounding per element, as MathF.FusedMultiplyAdd
                }
            }
        });

        s.LoadBalanceActive = options is { LoadBalanceAlpha: > 0 };
        return s.LoadBalanceActive ? LoadBalanceForward(s, t, options!) : 0;
    }

    /// <summary>
    /// Device-level load-balance loss (spec section 4, Eq. 3-5): real experts in D contiguous groups, zero experts one
    /// more group. L = α Σ_j f_j P_j with P_j = (1/T) Σ_t Σ_{i∈G_j} p_{t,i} and f_j = D / (K_e T) · n_j (real groups),
    /// f_zero = n_zero / ((K - K_e) T), where n_j counts the (token, slot) selections that fall in group j. f is a
    /// count (no gradient), so dL/dp_{t,i} = α f_{g(i)} / T, kept as one coefficient per group.
    /// </summary>
    double LoadBalanceForward(MoeState s, int t, LossOptions o)
    {
        var c = _c;
        int nr = c.NRoutedExperts, ne = c.NumExpertsTotal, k = c.MoeTopK, groups = o.LoadBalanceGroups;
        double ke = o.TargetRealExperts ?? LossOptions.DefaultTargetRealExperts(c);
        int size = s.LbGroupSize = nr / groups;
        bool zeroGroup = c.ZeroExpertNum > 0;
        int ng = groups + (zeroGroup ? 1 : 0);
        int Group(int e) => e < nr ? e / size : groups;
        if (s.LbCounts is null || s.LbCounts.Length != ng) { s.LbCounts = new long[ng]; s.LbMass = new double[ng]; s.LbCoef = new float[ng]; }
        var counts = s.LbCounts;
        Array.Clear(counts);
        for (int i = 0; i < t * k; i++) counts[Group(s.Sel![i])]++;
        var mass = s.LbMass!;
        Array.Clear(mass);
        for (int i = 0; i < t; i++)
            for (int e = 0; e < ne; e++) mass[Group(e)] += s.Probs![i * ne + e];
        var coef = s.LbCoef!;
        double loss = 0;
        for (int j = 0; j < ng; j++)
        {
            double f = j < groups ? groups / (ke * t) * counts[j] : counts[j] / ((k - ke) * t);
            loss += o.LoadBalanceAlpha * f * (mass[j] / t);
            coef[j] = (float)(o.LoadBalanceAlpha * f / t);
        }
        return loss;
    }

    /// <summary>dy [T, H] (gradient of the MoE output) -> dx [T, H] += gradient w.r.t. the MoE input, for the forward kept in <paramref name="s"/>.</summary>
    public void Backward(float[] dy, float[] dx, MoeState s)
    {
        var c = _c;
        int t = s.Tokens, hd = c.HiddenSize, ne = c.NumExpertsTotal, k = c.MoeTopK, nr = c.NRoutedExperts, inner = c.ExpertFfnHiddenSize;
        float[] xe = s.Xe!;
        int[] start = s.Start!;
        var acts = s.Experts;
        Buffers.Ensure(ref s.Dw, (long)t * k);
        var dye = Buffers.Ensure(ref s.Dye, (long)t * k * hd);
        var dxe = Buffers.Ensure(ref s.Dxe, (long)t * k * hd);
        var dlogits = Buffers.Ensure(ref s.Dlogits, (long)t * ne);

        // Combine backward: dw = dy · (expert output or x); the expert's output gradient is w · dy.
        Parallelism.ForRange(t, 64, (s, dy, hd), static (st, t0, t1) =>
        {
            var (s, dy, hd) = st;
            int k = s.K;
            float[] x = s.X, w = s.W!, ye = s.Ye!, dw = s.Dw!, dye = s.Dye!;
            int[] rowOfSlot = s.RowOfSlot!;
            for (int i = t0; i < t1; i++)
            {
                var dyi = dy.AsSpan(i * hd, hd);
                for (int j = 0; j < k; j++)
                {
                    int sl = i * k + j, r = rowOfSlot[sl];
                    if (r >= 0)
                    {
                        dw[sl] = OpsGrad.Dot(dyi, ye.AsSpan(r * hd, hd));
                        TensorPrimitives.Multiply(dyi, w[sl], dye.AsSpan(r * hd, hd));
                    }
                    else dw[sl] = OpsGrad.Dot(dyi, x.AsSpan(i * hd, hd));
                }
            }
        });

        // Experts backward, each on its own rows.
        Ffn.BackwardGroup(Experts, start, dye, xe, dxe, acts, s.Jobs);

        // Scatter back to the tokens (slots in ascending expert order, as in the forward) and route backward.
        Buffers.Ensure(ref s.DpLmPartial, (long)((t + TokenGrain - 1) / TokenGrain) * ne);
        Parallelism.ForRange(t, TokenGrain, (s, this, dy, dx), static (st, t0, t1) =>
        {
            var (s, moe, dy, dx) = st;
            var c = moe._c;
            int hd = c.HiddenSize, ne = c.NumExpertsTotal, k = s.K, nr = c.NRoutedExperts, groupSize = s.LbGroupSize;
            float rsf = (float)c.RoutedScalingFactor;
            var coef = s.LoadBalanceActive ? s.LbCoef : null;
            float[] w = s.W!, probs = s.Probs!, dw = s.Dw!, dxe = s.Dxe!, dlogits = s.Dlogits!;
            int[] sel = s.Sel!, slotOrder = s.SlotOrder!, rowOfSlot = s.RowOfSlot!;
            var dpSum = s.DpLmPartial.AsSpan(t0 / TokenGrain * ne, ne);
            dpSum.Clear();
            for (int i = t0; i < t1; i++)
            {
                var dxi = dx.AsSpan(i * hd, hd);
                var dyi = dy.AsSpan(i * hd, hd);
                for (int jj = 0; jj < k; jj++)
                {
                    int sl = i * k + slotOrder[i * k + jj], r = rowOfSlot[sl];
                    if (r >= 0) TensorPrimitives.Add(dxi, dxe.AsSpan(r * hd, hd), dxi);
                    else TensorPrimitives.FusedMultiplyAdd(dyi, w[sl], dxi, dxi);
                }
                // dL/dp: the gathered probabilities (top-K is a selection: no gradient for the choice or the bias).
                var p = probs.AsSpan(i * ne, ne);
                var dp = dlogits.AsSpan(i * ne, ne);
                dp.Clear();
                if (c.NormTopKProb)
                {
                    // w_j = rsf · p_j / S, S = Σ_sel p: dp_j = rsf (dw_j - Σ_l dw_l p_l / S) / S.
                    float sum = 0, dot = 0;
                    for (int j = 0; j < k; j++) { sum += p[sel[i * k + j]]; dot += dw[i * k + j] * p[sel[i * k + j]]; }
                    if (sum > 0)
                        for (int j = 0; j < k; j++) dp[sel[i * k + j]] += rsf * (dw[i * k + j] - dot / sum) / sum;
                }
                else
                    for (int j = 0; j < k; j++) dp[sel[i * k + j]] += rsf * dw[i * k + j];
                for (int e = 0; e < ne; e++) dpSum[e] += dp[e];
                if (coef is not null)
                    for (int e = 0; e < ne; e++) dp[e] += coef[e < nr ? e / groupSize : coef.Length - 1];
                OpsGrad.SoftmaxBackward(p, dp, dp);
            }
        });
        // logits = x · W_routerᵀ
        GemmGrad.WeightGrad(dlogits, s.X, _classifier.Grad, t, ne, hd);
        GemmGrad.InputGrad(dlogits, _classifier.Values, dx, t, ne, hd, accumulate: true);
    }

    /// <summary>
    /// Router monitor (spec section 4, R_g): adds this step's dL/dP to <paramref name="lm"/> and <paramref name="lb"/> [E+Z],
    /// P the batch-mean probability vector, so dL/dP_i = Σ_t dL/dp_t,i. <paramref name="lm"/> gets the part from every
    /// loss but the load balance (what reached p through the gathered weights), <paramref name="lb"/> the load-balance
    /// part, α·f of the expert's group. Valid after <see cref="Backward"/>.
    /// </summary>
    public void AddRouterProbabilityGradients(MoeState s, Span<double> lm, Span<double> lb)
    {
        int ne = _c.NumExpertsTotal, nr = _c.NRoutedExperts, chunks = (s.Tokens + TokenGrain - 1) / TokenGrain;
        var part = s.DpLmPartial!;
        for (int ch = 0; ch < chunks; ch++)
            for (int e = 0; e < ne; e++) lm[e] += part[ch * ne + e];
        if (!s.LoadBalanceActive) return;
        for (int e = 0; e < ne; e++) lb[e] += (double)s.LbCoef![e < nr ? e / s.LbGroupSize : s.LbCoef.Length - 1] * s.Tokens;
    }
}

/// <summary>
/// One MoE forward's state: the routing (probabilities, selection, weights), the dispatch, the experts' gathered rows
/// and activations, which the backward reads, plus the backward's scratch. Buffers grow on demand and are reused.
/// </summary>
public sealed class MoeState
{
    internal float[] X = [];
    internal int Tokens, K, Rows, LbGroupSize;
    internal bool LoadBalanceActive;
    internal float[]? Probs, W, Xe, Ye, LbCoef, Dw, Dye, Dxe, Dlogits, Bias, Biased;
    internal int[]? Sel, SlotOrder, Start, Order, RowOfSlot, Fill;
    internal long[]? LbCounts;
    internal double[]? LbMass, DpLmPartial;
    internal readonly FfnActivations Experts = new();
    internal readonly FfnGroupJobs Jobs = new();

    /// <summary>[T, K] expert indices of the last forward, in selection order.</summary>
    public ReadOnlySpan<int> Selected => Sel.AsSpan(0, Tokens * K);

    /// <summary>The last forward's routing as a new <see cref="Routing"/> (K slots per token, selection order).</summary>
    public Routing ToRouting() => Routing.Copy(Sel, W, Tokens, K);

    /// <summary>Copies the last forward's routing into <paramref name="r"/> (made for the same tokens and K).</summary>
    internal void CopyRouting(Routing r)
    {
        Sel.AsSpan(0, Tokens * K).CopyTo(r.Indices);
        W.AsSpan(0, Tokens * K).CopyTo(r.Weights);
    }
}
