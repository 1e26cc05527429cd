namespace LongCat.Training;

/// <summary>The shape of a learning-rate (or controller-rate) schedule after warmup.</summary>
public enum ScheduleKind
{
    /// <summary>Peak value after warmup, to the end.</summary>
    Constant,
    /// <summary>Half-cosine from the peak down to peak · min_ratio at the last step.</summary>
    Cosine,
    /// <summary>Warmup-stable-decay: the peak until the last decay_steps, then linear down to peak · min_ratio.</summary>
    WarmupStableDecay,
    /// <summary>Linear from the peak down to peak · min_ratio at the last step.</summary>
    Linear,
}

/// <summary>
/// A learning-rate schedule as a pure function of the step index (so a resumed run gets the same value):
/// linear warmup from peak/warmup to the peak over <see cref="WarmupSteps"/>, then <see cref="Kind"/>.
/// </summary>
public sealed record LearningRateSchedule
{
    public ScheduleKind Kind { get; init; } = ScheduleKind.Cosine;
    public double Peak { get; init; } = 3e-4;
    public long WarmupSteps { get; init; }
    /// <summary>Steps of the whole run (the schedule ends there).</summary>
    public long TotalSteps { get; init; } = 1;
    /// <summary>Final value as a fraction of the peak (cosine, linear, WSD).</summary>
    public double MinRatio { get; init; } = 0.1;
    /// <summary>WSD only: the length of the final decay.</summary>
    public long DecaySteps { get; init; }

    /// <summary>The value for the update at 0-based <paramref name="step"/>.</summary>
    public double At(long step)
    {
        if (step < WarmupSteps) return Peak * (step + 1) / WarmupSteps;
        double min = Peak * MinRatio;
        long span = Math.Max(1, TotalSteps - WarmupSteps - 1);
        double progress = Math.Clamp((double)(step - WarmupSteps) / span, 0, 1);
        switch (Kind)
        {
            case ScheduleKind.Constant: return Peak;
            case ScheduleKind.Cosine: return min + (Peak - min) * 0.5 * (1 + Math.Cos(Math.PI * progress));
            case ScheduleKind.Linear: return Peak + (min - Peak) * progress;
            case ScheduleKind.WarmupStableDecay:
                {
                    long decayStart = TotalSteps - DecaySteps;
                    if (step < decayStart || DecaySteps <= 0) return Peak;
                    double p = DecaySteps <= 1 ? 1 : Math.Clamp((double)(step - decayStart) / (DecaySteps - 1), 0, 1);
                    return Peak + (min - Peak) * p;
                }
            default: throw new InvalidOperationException($"unknown schedule {Kind}");
        }
    }

    /// <summary>Throws naming the first inconsistent field.</summary>
    public void Validate(string what = "schedule")
    {
        if (!(Peak >= 0) || double.IsInfinity(Peak)) throw new ArgumentException($"{what}: peak must be a finite number >= 0, got {Peak}");
        if (WarmupSteps < 0) throw new ArgumentException($"{what}: warmup_steps must be >= 0, got {WarmupSteps}");
        if (TotalSteps < 1) throw new ArgumentException($"{what}: the run needs at least 1 step, got {TotalSteps}");
        if (!(MinRatio >= 0 && MinRatio <= 1)) throw new ArgumentException($"{what}: min_lr_ratio must be in [0, 1], got {MinRatio}");
        if (Kind == ScheduleKind.WarmupStableDecay && (DecaySteps < 0 || DecaySteps > TotalSteps - WarmupSteps))
            throw new ArgumentException($"{what}: decay_steps must be in 0..{TotalSteps - WarmupSteps} (steps - warmup_steps), got {DecaySteps}");
    }

    /// <summary>Parses "constant", "cosine", "wsd" (or "warmup_stable_decay"), "linear".</summary>
    public static ScheduleKind ParseKind(string s) => s.ToLowerInvariant() switch
    {
        "constant" => ScheduleKind.Constant,
        "cosine" => ScheduleKind.Cosine,
        "wsd" or "warmup_stable_decay" or "warmup-stable-decay" => ScheduleKind.WarmupStableDecay,
        "linear" => ScheduleKind.Linear,
        _ => throw new ArgumentException($"unknown schedule '{s}' (constant, cosine, wsd, linear)"),
    };
}
