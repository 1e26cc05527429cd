using LongCat.Config;
using LongCat.Kernels;
using LongCat.Model;

namespace LongCat.Training;

/// <summary>
/// The MoE branch of a ScMoE layer with its backward. Forward steps: route (softmax over E real + Z zero experts,
/// top-K of p + bias, w = p[sel] · routed_scaling_factor), dispatch (stable counting sort of the (token, slot) pairs
/// by real expert, rows gathered), experts (each real expert once over its rows), combine (per token, its slots in
/// ascending expert order; a zero expert adds w · x).
/// <para>Backward: top-K is a selection, so gradients flow through the gathered probabilities only (as autograd does
/// through <c>gather</c>): dw = dy·expert_out (x for a zero expert), dp[sel] = dw · routed_scaling_factor,
/// dlogits = softmax backward, and the bias (selection only) gets none. Experts get dy · w, zero experts pass
/// w · dy straight to x. Optionally the device-level load-balance loss adds its dL/dp before the softmax backward.</para>
/// </summary>
internal sealed class TrainableMoE
{
    readonly LongCatConfig _c;
    public ParameterTensor Classifier { get; }        // [E+Z, H]
    public ParameterTensor ScoreCorrectionBias { get; } // [E+Z], selection only
    public TrainableFfn[] Experts { get; }

    // Kept by the forward.
    float[] _x = [];
    int _t, _rows, _lbGroupSize;
    float[]? _probs, _w, _xe, _ye, _lbCoef;
    int[]? _sel, _slotOrder, _start, _order, _rowOfSlot;
    readonly FfnActivations _acts = new();
    // Backward scratch.
    float[]? _dw, _dye, _dxe, _dlogits;
    // Reused per step so the steady state does not allocate: the bias copy, per-chunk top-K scratch, dispatch cursors,
    // load-balance accumulators, and per-chunk sums of the language-model dL/dp (the router monitor's R_g).
    float[]? _bias, _biased;
    int[]? _fill;
    long[]? _lbCounts;
    double[]? _lbMass, _dpLmPartial;
    const int TokenGrain = 64;

    public TrainableMoE(ParameterStore p, string prefix)
    {
        _c = p.Config;
        Classifier = p[prefix + "router.classifier.weight"];
        ScoreCorrectionBias = p[prefix + "router.e_score_correction_bias"];
        Experts = new TrainableFfn[_c.NRoutedExperts];
        for (int e = 0; e < Experts.Length; e++) Experts[e] = TrainableFfn.Create(p, $"{prefix}experts.{e}.");
    }

    /// <summary>[T, K] expert indices of the last forward, in selection order.</summary>
    public ReadOnlySpan<int> Selected => _sel.AsSpan(0, _t * _c.MoeTopK);

    /// <summary>
    /// x [T, H] (the normalized MoE input; the caller keeps it unchanged until the backward) -> y [T, H].
    /// Returns the device-level load-balance loss of this layer (0 unless <paramref name="options"/> turn it on).
    /// </summary>
    public double Forward(float[] x, float[] y, int t, LossOptions options)
    {
        var c = _c;
        int hd = c.HiddenSize, ne = c.NumExpertsTotal, k = c.MoeTopK, nr = c.NRoutedExperts, inner = c.ExpertFfnHiddenSize;
        _x = x; _t = t;
        var probs = Buffers.Ensure(ref _probs, (long)t * ne);
        var w = Buffers.Ensure(ref _w, (long)t * k);
        var sel = Buffers.Ensure(ref _sel, (long)t * k);
        var slotOrder = Buffers.Ensure(ref _slotOrder, (long)t * k);

        // Route.
        Gemm.MatMul(x, Classifier.Weight, probs, t);
        float rsf = (float)c.RoutedScalingFactor;
        var bias = Buffers.Ensure(ref _bias, ne);
        ScoreCorrectionBias.Value.CopyTo(bias);
        var biasedAll = Buffers.Ensure(ref _biased, (long)((t + TokenGrain - 1) / TokenGrain) * ne);
        Parallelism.ForRange(t, TokenGrain, (t0, t1) =>
        {
            var biased = biasedAll.AsSpan(t0 / TokenGrain * ne, ne);
            for (int i = t0; i < t1; i++)
            {
                var s = sel.AsSpan(i * k, k);
                ShortcutMoE.RouteToken(probs.AsSpan(i * ne, ne), bias, biased, s, w.AsSpan(i * k, k), rsf, c.NormTopKProb);
                // The token's slots in ascending expert order: the order outputs are combined in (like index_add_).
                var so = slotOrder.AsSpan(i * k, k);
                for (int j = 0; j < k; j++)
                {
                    int m = j;
                    while (m > 0 && s[so[m - 1]] > s[j]) { so[m] = so[m - 1]; m--; }
                    so[m] = j;
                }
            }
        });

        // Dispatch: stable counting sort of the real-expert slots.
        var start = Buffers.Ensure(ref _start, nr + 1);
        Array.Clear(start, 0, nr + 1);
        for (int s = 0; s < t * k; s++) if (sel[s] < nr) start[sel[s] + 1]++;
        for (int e = 0; e < nr; e++) start[e + 1] += start[e];
        int rows = _rows = start[nr];
        var order = Buffers.Ensure(ref _order, rows);
        var rowOfSlot = Buffers.Ensure(ref _rowOfSlot, (long)t * k);
        var fill = Buffers.Ensure(ref _fill, nr);
        start.AsSpan(0, nr).CopyTo(fill);
        for (int s = 0; s < t * k; s++)
        {
            if (sel[s] < nr) { int r = fill[sel[s]]++; order[r] = s; rowOfSlot[s] = r; }
            else rowOfSlot[s] = -1;
        }
        // Sized for the worst case (every slot a real expert), not this step's rows: the count moves from step to step,
        // and buffers that grew with it would reallocate whenever it hit a new high.
        var xe = Buffers.Ensure(ref _xe, (long)t * k * hd);
        var ye = Buffers.Ensure(ref _ye, (long)t * k * hd);
        for (int r = 0; r < rows; r++) Array.Copy(x, (long)(order[r] / k) * hd, xe, (long)r * hd, hd);

        // Experts.
        _acts.Ensure(t * k, inner);
        for (int e = 0; e < nr; e++)
        {
            int r0 = start[e], n = start[e + 1] - r0;
            if (n == 0) continue;
            Experts[e].Forward(xe.AsSpan(r0 * hd, n * hd), _acts.G.AsSpan(r0 * inner, n * inner), _acts.U.AsSpan(r0 * inner, n * inner),
                _acts.A.AsSpan(r0 * inner, n * inner), ye.AsSpan(r0 * hd, n * hd), n);
        }

        // Combine.
        Parallelism.ForRange(t, 64, (t0, t1) =>
        {
            for (int i = t0; i < t1; i++)
            {
                var yi = y.AsSpan(i * hd, hd);
                yi.Clear();
                for (int jj = 0; jj < k; jj++)
                {
                    int s = i * k + slotOrder[i * k + jj];
                    var src = rowOfSlot[s] >= 0 ? ye.AsSpan(rowOfSlot[s] * hd, hd) : x.AsSpan(i * hd, hd);
                    float ws = w[s];
                    for (int d = 0; d < hd; d++) yi[d] = MathF.FusedMultiplyAdd(ws, src[d], yi[d]);
                }
            }
        });

        return options.LoadBalanceAlpha > 0 ? LoadBalanceForward(t, options) : ClearLoadBalance();
    }

    double ClearLoadBalance()
    {
        _lbActive = false;
        return 0;
    }

    bool _lbActive;

    /// <summary>
    /// Router monitor (spec section 4, R_g): adds this step's dL/dP to <paramref name="lm"/> and <paramref name="lb"/> [E+Z],
    /// P the batch-mean probability vector, so dL/dP_i = Σ_t dL/dp_t,i. <paramref name="lm"/> gets the part from every
    /// loss but the load balance (what reached p through the gathered weights), <paramref name="lb"/> the load-balance
    /// part, α·f of the expert's group. Valid after <see cref="Backward"/>.
    /// </summary>
    public void AddRouterProbabilityGradients(Span<double> lm, Span<double> lb)
    {
        int ne = _c.NumExpertsTotal, nr = _c.NRoutedExperts, chunks = (_t + TokenGrain - 1) / TokenGrain;
        var part = _dpLmPartial!;
        for (int ch = 0; ch < chunks; ch++)
            for (int e = 0; e < ne; e++) lm[e] += part[ch * ne + e];
        if (!_lbActive) return;
        for (int e = 0; e < ne; e++) lb[e] += (double)_lbCoef![e < nr ? e / _lbGroupSize : _lbCoef.Length - 1] * _t;
    }

    /// <summary>
    /// Device-level load-balance loss (spec section 4, Eq. 3-5): real experts in D contiguous groups, zero experts one
    /// more group. L = α Σ_j f_j P_j with P_j = (1/T) Σ_t Σ_{i∈G_j} p_{t,i} and f_j = D / (K_e T) · n_j (real groups),
    /// f_zero = n_zero / ((K - K_e) T), where n_j counts the (token, slot) selections that fall in group j. f is a
    /// count (no gradient), so dL/dp_{t,i} = α f_{g(i)} / T, kept as one coefficient per group.
    /// </summary>
    double LoadBalanceForward(int t, LossOptions o)
    {
        var c = _c;
        int nr = c.NRoutedExperts, ne = c.NumExpertsTotal, k = c.MoeTopK, groups = o.LoadBalanceGroups;
        double ke = o.TargetRealExperts ?? LossOptions.DefaultTargetRealExperts(c);
        int size = _lbGroupSize = nr / groups;
        bool zeroGroup = c.ZeroExpertNum > 0;
        int ng = groups + (zeroGroup ? 1 : 0);
        int Group(int e) => e < nr ? e / size : groups;
        if (_lbCounts is null || _lbCounts.Length != ng) { _lbCounts = new long[ng]; _lbMass = new double[ng]; _lbCoef = new float[ng]; }
        var counts = _lbCounts;
        Array.Clear(counts);
        for (int s = 0; s < t * k; s++) counts[Group(_sel![s])]++;
        var mass = _lbMass!;
        Array.Clear(mass);
        for (int i = 0; i < t; i++)
            for (int e = 0; e < ne; e++) mass[Group(e)] += _probs![i * ne + e];
        var coef = _lbCoef!;
        _lbActive = true;
        double loss = 0;
        for (int j = 0; j < ng; j++)
        {
            double f = j < groups ? groups / (ke * t) * counts[j] : counts[j] / ((k - ke) * t);
            loss += o.LoadBalanceAlpha * f * (mass[j] / t);
            coef[j] = (float)(o.LoadBalanceAlpha * f / t);
        }
        return loss;
    }

    /// <summary>dy [T, H] (gradient of the MoE output) -> dx [T, H] += gradient w.r.t. the MoE input.</summary>
    public void Backward(float[] dy, float[] dx)
    {
        var c = _c;
        int t = _t, hd = c.HiddenSize, ne = c.NumExpertsTotal, k = c.MoeTopK, nr = c.NRoutedExperts, inner = c.ExpertFfnHiddenSize, rows = _rows;
        float[] x = _x, w = _w!, ye = _ye!, xe = _xe!, probs = _probs!;
        int[] sel = _sel!, slotOrder = _slotOrder!, rowOfSlot = _rowOfSlot!, start = _start!;
        var dw = Buffers.Ensure(ref _dw, (long)t * k);
        var dye = Buffers.Ensure(ref _dye, (long)t * k * hd);
        var dxe = Buffers.Ensure(ref _dxe, (long)t * k * hd);
        var dlogits = Buffers.Ensure(ref _dlogits, (long)t * ne);

        // Combine backward: dw = dy · (expert output or x); the expert's output gradient is w · dy.
        Parallelism.ForRange(t, 64, (t0, t1) =>
        {
            for (int i = t0; i < t1; i++)
            {
                var dyi = dy.AsSpan(i * hd, hd);
                for (int j = 0; j < k; j++)
                {
                    int s = i * k + j, r = rowOfSlot[s];
                    if (r >= 0)
                    {
                        dw[s] = OpsGrad.Dot(dyi, ye.AsSpan(r * hd, hd));
                        var d = dye.AsSpan(r * hd, hd);
                        float ws = w[s];
                        for (int m = 0; m < hd; m++) d[m] = ws * dyi[m];
                    }
                    else dw[s] = OpsGrad.Dot(dyi, x.AsSpan(i * hd, hd));
                }
            }
        });

        // Experts backward, each on its own rows.
        for (int e = 0; e < nr; e++)
        {
            int r0 = start[e], n = start[e + 1] - r0;
            if (n == 0) continue;
            var ni = n * inner;
            Experts[e].Backward(dye.AsSpan(r0 * hd, n * hd), xe.AsSpan(r0 * hd, n * hd), _acts.G.AsSpan(r0 * inner, ni), _acts.U.AsSpan(r0 * inner, ni),
                _acts.A.AsSpan(r0 * inner, ni), dxe.AsSpan(r0 * hd, n * hd), n, accumulate: false,
                _acts.DA.AsSpan(r0 * inner, ni), _acts.DG.AsSpan(r0 * inner, ni), _acts.DU.AsSpan(r0 * inner, ni));
        }

        // Scatter back to the tokens (slots in ascending expert order, as in the forward) and route backward.
        float rsf = (float)c.RoutedScalingFactor;
        var coef = _lbActive ? _lbCoef : null;
        int groupSize = _lbGroupSize;
        var dpLm = Buffers.Ensure(ref _dpLmPartial, (long)((t + TokenGrain - 1) / TokenGrain) * ne);
        Parallelism.ForRange(t, TokenGrain, (t0, t1) =>
        {
            var dpSum = dpLm.AsSpan(t0 / TokenGrain * ne, ne);
            dpSum.Clear();
            for (int i = t0; i < t1; i++)
            {
                var dxi = dx.AsSpan(i * hd, hd);
                var dyi = dy.AsSpan(i * hd, hd);
                for (int jj = 0; jj < k; jj++)
                {
                    int s = i * k + slotOrder[i * k + jj], r = rowOfSlot[s];
                    if (r >= 0)
                    {
                        var g = dxe.AsSpan(r * hd, hd);
                        for (int m = 0; m < hd; m++) dxi[m] += g[m];
                    }
                    else
                    {
                        float ws = w[s];
                        for (int m = 0; m < hd; m++) dxi[m] = MathF.FusedMultiplyAdd(ws, dyi[m], dxi[m]);
                    }
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
        GemmGrad.WeightGrad(dlogits, x, Classifier.Grad, t, ne, hd);
        GemmGrad.InputGrad(dlogits, Classifier.Value, dx, t, ne, hd, accumulate: true);
    }
}
