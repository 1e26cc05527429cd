namespace LongCat.Training;

/// <summary>
/// The monitors of one training step (spec section 4's stability suite plus throughput), as written to the metrics
/// JSONL. Per-layer arrays have one value per MoE layer.
/// </summary>
public sealed record StepMetrics
{
    /// <summary>1-based: steps completed including this one.</summary>
    public long Step { get; init; }
    public long TotalSteps { get; init; }
    /// <summary>Tokens trained on so far (skipped steps included: their data is consumed).</summary>
    public long Tokens { get; init; }
    /// <summary>Mean over micro-batches of each loss term (as in <see cref="LossResult"/>).</summary>
    public double Loss { get; init; }
    public double CrossEntropy { get; init; }
    public double Mtp { get; init; }
    public double LoadBalance { get; init; }
    public double HiddenZ { get; init; }
    public double LearningRate { get; init; }
    /// <summary>Global gradient norm before clipping (of the averaged gradient).</summary>
    public double GradNorm { get; init; }
    /// <summary>Gradient RMS over trainable values, to compare with <see cref="AdamEpsilon"/>.</summary>
    public double GradRms { get; init; }
    public double AdamEpsilon { get; init; }
    public double TokensPerSecond { get; init; }
    public double StepSeconds { get; init; }
    /// <summary>Mean and std of real experts per token, per layer.</summary>
    public double[] ExpertsMean { get; init; } = [];
    public double[] ExpertsStd { get; init; } = [];
    /// <summary>R_g = ||dL_LB/dP|| / ||dL_LM/dP|| per layer (0 without the load-balance loss); keep below 0.1.</summary>
    public double[] RouterGradRatio { get; init; } = [];
    /// <summary>Mean pairwise cosine similarity of the router vectors (classifier rows), per layer.</summary>
    public double[] RouterCosine { get; init; } = [];
    /// <summary>RMS and max |x| of the last layer's output (before the final norm): massive activations.</summary>
    public double HiddenRms { get; init; }
    public double HiddenMaxAbs { get; init; }
    /// <summary>μ of the budget controller at this step (0 when off).</summary>
    public double BudgetRate { get; init; }
    /// <summary>True when a non-finite loss or gradient made this step skip its update.</summary>
    public bool Skipped { get; init; }
    /// <summary>Faulty steps so far.</summary>
    public int Faults { get; init; }

    /// <summary>Mean of <see cref="ExpertsMean"/> over layers: the model's real experts per token.</summary>
    public double MeanRealExperts => ExpertsMean.Length == 0 ? 0 : ExpertsMean.Average();
}
