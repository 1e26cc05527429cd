using LongCat.Config;

namespace LongCat.Training;

/// <summary>
/// Which losses a training step adds to the next-token cross-entropy (spec section 4). All off by default, which
/// gives the fixtures' loss: the mean next-token cross-entropy over B·(S-1) positions.
/// </summary>
public sealed record LossOptions
{
    /// <summary>Weight of the MTP loss (mean cross-entropy of the MTP head predicting token t+2); 0 = off. Needs an MTP head.</summary>
    public double MtpWeight { get; init; }

    /// <summary>α of the device-level load-balance loss (Eq. 3-5), summed over layers; 0 = off.</summary>
    public double LoadBalanceAlpha { get; init; }

    /// <summary>D: the real experts split into this many contiguous groups (EP groups); must divide n_routed_experts.</summary>
    public int LoadBalanceGroups { get; init; } = 1;

    /// <summary>K_e: target real experts per token; null = K·E/(E+Z) (8 of 12 for the release). Must be in (0, K), or K without zero experts.</summary>
    public double? TargetRealExperts { get; init; }

    /// <summary>λ of the hidden z-loss (Eq. 10) on the last layer's output before the final norm; 0 = off.</summary>
    public double HiddenZLossLambda { get; init; }

    /// <summary>The default K_e: the share of real experts among all experts, times K.</summary>
    public static double DefaultTargetRealExperts(LongCatConfig c) => (double)c.MoeTopK * c.NRoutedExperts / c.NumExpertsTotal;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first option that does not fit <paramref name="c"/>.</summary>
    public void Validate(LongCatConfig c, bool hasMtp)
    {
        if (!(MtpWeight >= 0) || double.IsInfinity(MtpWeight)) throw new ArgumentException($"MTP loss weight must be a finite number >= 0, got {MtpWeight}");
        if (MtpWeight > 0 && !hasMtp) throw new ArgumentException("the MTP loss needs an MTP head (model.mtp.* tensors), and this model has none");
        if (!(HiddenZLossLambda >= 0) || double.IsInfinity(HiddenZLossLambda)) throw new ArgumentException($"hidden z-loss lambda must be a finite number >= 0, got {HiddenZLossLambda}");
        if (!(LoadBalanceAlpha >= 0) || double.IsInfinity(LoadBalanceAlpha)) throw new ArgumentException($"load-balance alpha must be a finite number >= 0, got {LoadBalanceAlpha}");
        if (LoadBalanceAlpha == 0) return;
        if (c.NRoutedExperts == 0) throw new ArgumentException("the load-balance loss needs real experts (n_routed_experts > 0)");
        if (LoadBalanceGroups < 1 || c.NRoutedExperts % LoadBalanceGroups != 0)
            throw new ArgumentException($"load-balance groups D = {LoadBalanceGroups} must be >= 1 and divide n_routed_experts = {c.NRoutedExperts}");
        double ke = TargetRealExperts ?? DefaultTargetRealExperts(c);
        bool ok = c.ZeroExpertNum > 0 ? ke > 0 && ke < c.MoeTopK : ke > 0 && ke <= c.MoeTopK;
        if (!ok) throw new ArgumentException($"target real experts K_e = {ke} must be in (0, {c.MoeTopK}){(c.ZeroExpertNum > 0 ? "" : "]")}");
    }
}
