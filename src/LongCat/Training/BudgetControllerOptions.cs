namespace LongCat.Training;

/// <summary>Settings of the expert-bias budget controller (spec section 4, Eq. 2).</summary>
public sealed record BudgetControllerOptions
{
    /// <summary>Off: the router biases stay as loaded (e.g. a zero-free model, or a frozen budget).</summary>
    public bool Enabled { get; init; } = true;

    /// <summary>K_e: the target mean number of real experts per token; null = K·E/(E+Z).</summary>
    public double? TargetRealExperts { get; init; }

    /// <summary>μ: the bias rate at the start of the run.</summary>
    public double Rate { get; init; } = 1e-3;

    /// <summary>Update every n steps from the routing counts of those n steps (small batches may need n &gt; 1).</summary>
    public int UpdateEvery { get; init; } = 1;

    /// <summary>How μ decays over the run (constant, linear, cosine) down to <see cref="FinalRateRatio"/>·μ.</summary>
    public ScheduleKind Decay { get; init; } = ScheduleKind.Constant;

    /// <summary>μ at the last step as a fraction of the initial μ.</summary>
    public double FinalRateRatio { get; init; } = 0.1;

    public void Validate(Config.LongCatConfig c)
    {
        if (!Enabled) return;
        if (!(Rate >= 0) || double.IsInfinity(Rate)) throw new ArgumentException($"budget.rate must be a finite number >= 0, got {Rate}");
        if (UpdateEvery < 1) throw new ArgumentException($"budget.update_every must be >= 1, got {UpdateEvery}");
        if (!(FinalRateRatio >= 0 && FinalRateRatio <= 1)) throw new ArgumentException($"budget.final_rate_ratio must be in [0, 1], got {FinalRateRatio}");
        if (Decay == ScheduleKind.WarmupStableDecay) throw new ArgumentException("budget.decay must be constant, linear or cosine");
        double ke = TargetRealExperts ?? LossOptions.DefaultTargetRealExperts(c);
        if (c.NRoutedExperts > 0 && !(ke > 0 && ke <= c.MoeTopK))
            throw new ArgumentException($"budget.target_real_experts K_e = {ke} must be in (0, {c.MoeTopK}]");
    }
}
