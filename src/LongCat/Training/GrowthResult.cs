using LongCat.Config;

namespace LongCat.Training;

/// <summary>What <see cref="ModelGrowth.Grow"/> wrote.</summary>
/// <param name="Source">The checkpoint folder that was grown.</param>
/// <param name="Checkpoint">The grown checkpoint folder (<c>OUT/checkpoints/step-NNNNNNNN</c>), the one to resume from.</param>
/// <param name="SourceConfig">The source model's config.</param>
/// <param name="Config">The grown model's config (num_layers × factor).</param>
/// <param name="SourceParameters">Values in the source model.safetensors (router biases and MTP head included).</param>
/// <param name="Parameters">Values in the grown model.safetensors.</param>
/// <param name="State">The grown trainer state (step, Adam's t, data position... carried).</param>
/// <param name="TrainConfig">The grown train.json written, or null when none was asked for.</param>
public sealed record GrowthResult(string Source, string Checkpoint, LongCatConfig SourceConfig, LongCatConfig Config,
    long SourceParameters, long Parameters, TrainerState State, string? TrainConfig);
