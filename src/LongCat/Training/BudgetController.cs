using LongCat.Config;

namespace LongCat.Training;

/// <summary>
/// The expert-bias budget controller (spec section 4, Eq. 2): a proportional controller on each layer's
/// e_score_correction_bias that steers the mean number of real experts per token to K_e.
/// <code>
/// Δb_i = μ_t · ( K_e / (K·E)  −  T_i / (K·T_all) )    real experts i &lt; E
/// Δb_i = 0                                             zero experts: never change
/// </code>
/// T_all = tokens seen since the last update, T_i = (token, slot) selections of real expert i among them. Routing is
/// observed per micro-batch into a pending buffer, committed when the step's update is applied (a skipped step's
/// routing is dropped), and every <see cref="BudgetControllerOptions.UpdateEvery"/> steps the committed counts move
/// the biases and are cleared. Counts are integers and the update runs in double, so it is deterministic.
/// </summary>
public sealed class BudgetController
{
    readonly LongCatConfig _c;
    readonly long[] _pending, _counts;   // [L, E]
    long _pendingTokens, _tokens;

    public BudgetControllerOptions Options { get; }
    public double TargetRealExperts { get; }
    public long TotalSteps { get; }

    public BudgetController(LongCatConfig config, BudgetControllerOptions options, long totalSteps)
    {
        options.Validate(config);
        _c = config;
        Options = options;
        TotalSteps = Math.Max(1, totalSteps);
        TargetRealExperts = options.TargetRealExperts ?? LossOptions.DefaultTargetRealExperts(config);
        _pending = new long[config.NumLayers * config.NRoutedExperts];
        _counts = new long[_pending.Length];
    }

    /// <summary>μ at 0-based <paramref name="step"/>.</summary>
    public double RateAt(long step) => new LearningRateSchedule
    {
        Kind = Options.Decay, Peak = Options.Rate, TotalSteps = TotalSteps, MinRatio = Options.FinalRateRatio,
    }.At(step);

    /// <summary>Adds one micro-batch's routing of <paramref name="layer"/>: selected [T, K] expert indices.</summary>
    public void Observe(int layer, ReadOnlySpan<int> selected)
    {
        int e = _c.NRoutedExperts;
        var counts = _pending.AsSpan(layer * e, e);
        foreach (int s in selected) if (s < e) counts[s]++;
    }

    /// <summary>One micro-batch's selections of each real expert, [L·E] (counted as in <see cref="Observe"/>), into <paramref name="counts"/>.</summary>
    public static void Count(TrainableModel model, Span<double> counts)
    {
        var c = model.Config;
        int e = c.NRoutedExperts;
        counts.Clear();
        for (int l = 0; l < c.NumLayers; l++)
            foreach (int s in model.LastSelected(l)) if (s < e) counts[l * e + s]++;
    }

    /// <summary>Adds one micro-batch's counts from <see cref="Count"/> and its token count.</summary>
    public void ObserveCounts(ReadOnlySpan<double> counts, int tokens)
    {
        for (int i = 0; i < _pending.Length; i++) _pending[i] += (long)counts[i];
        _pendingTokens += tokens;
    }

    /// <summary>Adds one micro-batch's token count (once per micro-batch, not per layer).</summary>
    public void ObserveTokens(int tokens) => _pendingTokens += tokens;

    /// <summary>Drops the routing observed since the last commit (a skipped step).</summary>
    public void DiscardPending()
    {
        Array.Clear(_pending);
        _pendingTokens = 0;
    }

    /// <summary>
    /// Commits the step's routing and, every n-th step, moves the real experts' biases (Eq. 2). Returns true when the
    /// biases moved. <paramref name="step"/> is the 0-based index of the step just applied.
    /// </summary>
    public bool Commit(long step, ParameterStore parameters)
    {
        for (int i = 0; i < _counts.Length; i++) _counts[i] += _pending[i];
        _tokens += _pendingTokens;
        DiscardPending();
        if (!Options.Enabled || (step + 1) % Options.UpdateEvery != 0 || _tokens == 0) return false;
        int e = _c.NRoutedExperts, k = _c.MoeTopK;
        if (e == 0) return false;
        double mu = RateAt(step), target = TargetRealExperts / ((double)k * e), perSel = 1.0 / ((double)k * _tokens);
        for (int l = 0; l < _c.NumLayers; l++)
        {
            var bias = parameters[$"model.layers.{l}.mlp.router.e_score_correction_bias"].Value;
            for (int i = 0; i < e; i++) bias[i] = (float)(bias[i] + mu * (target - _counts[l * e + i] * perSel));
        }
        Array.Clear(_counts);
        _tokens = 0;
        return true;
    }

    /// <summary>The committed counts not yet used by an update (for checkpoints): [L·E] then tokens.</summary>
    public long[] SaveState()
    {
        var s = new long[_counts.Length + 1];
        _counts.CopyTo(s, 0);
        s[^1] = _tokens;
        return s;
    }

    public void LoadState(long[] state)
    {
        if (state.Length != _counts.Length + 1)
            throw new ArgumentException($"budget controller state has {state.Length} values, this model needs {_counts.Length + 1}");
        state.AsSpan(0, _counts.Length).CopyTo(_counts);
        _tokens = state[^1];
        DiscardPending();
    }
}
