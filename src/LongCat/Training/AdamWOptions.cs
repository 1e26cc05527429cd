namespace LongCat.Training;

/// <summary>AdamW hyperparameters (PyTorch's AdamW update; epsilon 1e-16 as LongCat uses, spec section 4).</summary>
public sealed record AdamWOptions
{
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.95;
    /// <summary>Added to sqrt(v̂). LongCat: 1e-16, far below the gradient RMS (loss degrades once eps nears it).</summary>
    public double Epsilon { get; init; } = 1e-16;
    /// <summary>Decoupled weight decay (p ← p·(1 − lr·wd)), on matrices only: never on norms or biases.</summary>
    public double WeightDecay { get; init; } = 0.1;
    /// <summary>Per-group learning-rate multipliers, indexed by <see cref="ParameterGroup"/>; null = all 1.</summary>
    public double[]? LrMultipliers { get; init; }

    public void Validate()
    {
        if (!(Beta1 >= 0 && Beta1 < 1)) throw new ArgumentException($"optimizer.beta1 must be in [0, 1), got {Beta1}");
        if (!(Beta2 >= 0 && Beta2 < 1)) throw new ArgumentException($"optimizer.beta2 must be in [0, 1), got {Beta2}");
        if (!(Epsilon > 0) || double.IsInfinity(Epsilon)) throw new ArgumentException($"optimizer.eps must be a finite number > 0, got {Epsilon}");
        if (!(WeightDecay >= 0) || double.IsInfinity(WeightDecay)) throw new ArgumentException($"optimizer.weight_decay must be a finite number >= 0, got {WeightDecay}");
        if (LrMultipliers is { } m)
        {
            if (m.Length != ParameterGroups.All.Length) throw new ArgumentException($"{m.Length} learning-rate multipliers for {ParameterGroups.All.Length} parameter groups");
            foreach (var g in ParameterGroups.All)
                if (!(m[(int)g] >= 0) || double.IsInfinity(m[(int)g]))
                    throw new ArgumentException($"groups.lr_multipliers.{ParameterGroups.Key(g)} must be a finite number >= 0, got {m[(int)g]}");
        }
    }
}
