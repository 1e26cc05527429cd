namespace LongCat.Training;

/// <summary>The losses of one training forward (each already weighted as it enters <see cref="Total"/>).</summary>
/// <param name="Total">Everything the gradients are of: cross-entropy + MTP weight · MTP + load balance + z-loss.</param>
/// <param name="CrossEntropy">Mean next-token cross-entropy over the B·(S-1) positions (the fixtures' loss).</param>
/// <param name="Mtp">Unweighted mean cross-entropy of the MTP head over B·(S-2) positions (0 when off).</param>
/// <param name="LoadBalance">Device-level load-balance loss summed over layers, α included (0 when off).</param>
/// <param name="HiddenZ">Hidden z-loss, λ included (0 when off).</param>
public sealed record LossResult(double Total, double CrossEntropy, double Mtp, double LoadBalance, double HiddenZ);
