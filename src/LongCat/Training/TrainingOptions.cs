using LongCat.Config;

namespace LongCat.Training;

/// <summary>
/// Everything a training run needs (what train.json holds, see <see cref="TrainConfigFile"/>). Paths are as given
/// (relative ones against the current directory).
/// </summary>
public sealed record TrainingOptions
{
    /// <summary>The model architecture (ignored when <see cref="InitFrom"/> is set: the checkpoint's config is used).</summary>
    public required LongCatConfig Model { get; init; }
    /// <summary>Start from this checkpoint folder's weights instead of a random init.</summary>
    public string? InitFrom { get; init; }
    /// <summary>Standard deviation of the random init (normal(0, std²)), before the per-group variance multipliers.</summary>
    public double InitStd { get; init; } = 0.02;
    /// <summary>Random init with an MTP head (needed for the MTP loss).</summary>
    public bool Mtp { get; init; }
    /// <summary>Init-variance multipliers per <see cref="ParameterGroup"/>.</summary>
    public double[] InitVarianceMultipliers { get; init; } = [.. ParameterGroups.All.Select(_ => 1.0)];

    /// <summary>A prepared data folder (<c>longcat data prepare</c>).</summary>
    public required string DataDir { get; init; }
    public int SequenceLength { get; init; } = 128;
    /// <summary>Sequences per optimizer step.</summary>
    public int BatchSize { get; init; } = 8;
    /// <summary>Sequences per forward/backward; gradients of BatchSize / MicroBatchSize micro-batches are averaged.</summary>
    public int MicroBatchSize { get; init; } = 8;

    public ulong Seed { get; init; } = 1;
    public long Steps { get; init; } = 100;
    public required string OutDir { get; init; }

    public AdamWOptions Optimizer { get; init; } = new();
    /// <summary>Clip the global gradient norm to this (0 = off).</summary>
    public double GradClip { get; init; } = 1.0;
    /// <summary>The learning-rate schedule (its TotalSteps is <see cref="Steps"/>).</summary>
    public LearningRateSchedule Schedule { get; init; } = new();

    /// <summary>Loss terms (MTP, load balance, z-loss); K_e comes from <see cref="Budget"/>.</summary>
    public LossOptions Loss { get; init; } = new();
    /// <summary>The MTP loss is added from this step on (the paper adds it late in pre-training).</summary>
    public long MtpStartStep { get; init; }
    public BudgetControllerOptions Budget { get; init; } = new();

    /// <summary>Validate every n steps (0 = only at the end) on this many held-out batches.</summary>
    public int EvalEvery { get; init; } = 50;
    public int EvalBatches { get; init; } = 4;
    /// <summary>Checkpoint every n steps (0 = only at the end); keep the last k.</summary>
    public int CheckpointEvery { get; init; } = 100;
    public int CheckpointKeep { get; init; } = 2;

    /// <summary>Progress every n steps (metrics are written every step regardless).</summary>
    public int LogEvery { get; init; } = 1;
    /// <summary>"svg" (written next to the metrics) or "none".</summary>
    public string Plot { get; init; } = "svg";

    /// <summary>Testing: put a NaN into the gradients at these 1-based steps (fault handling must skip them).</summary>
    public long[] InjectNanAtSteps { get; init; } = [];
    /// <summary>Stop with an error after this many faulty steps in a row.</summary>
    public int MaxConsecutiveFaults { get; init; } = 10;

    public int MicroBatches => BatchSize / MicroBatchSize;
    public int TokensPerStep => BatchSize * SequenceLength;

    /// <summary>The loss options of 0-based step <paramref name="step"/> (the MTP loss starts at <see cref="MtpStartStep"/>).</summary>
    public LossOptions LossAt(long step) => step >= MtpStartStep ? Loss : Loss with { MtpWeight = 0 };

    /// <summary>Throws <see cref="ConfigException"/> naming the first bad key.</summary>
    public void Validate(LongCatConfig model, bool hasMtp, string source = "train.json")
    {
        void Check(bool ok, string key, object value, string rule)
        {
            if (!ok) throw ConfigException.Invalid(source, key, value, rule);
        }
        Check(Steps >= 1, "steps", Steps, "must be >= 1");
        Check(SequenceLength >= 2, "data.seq_len", SequenceLength, "must be >= 2");
        Check(SequenceLength <= model.MaxPositionEmbeddings, "data.seq_len", SequenceLength, $"must be <= the model's max_position_embeddings {model.MaxPositionEmbeddings}");
        Check(BatchSize >= 1, "data.batch_size", BatchSize, "must be >= 1");
        Check(MicroBatchSize >= 1 && BatchSize % MicroBatchSize == 0, "data.micro_batch_size", MicroBatchSize, $"must be >= 1 and divide data.batch_size {BatchSize}");
        Check((long)MicroBatchSize * SequenceLength * model.VocabSize <= int.MaxValue, "data.micro_batch_size", MicroBatchSize, "micro_batch_size x seq_len x vocab_size logits must fit one buffer (2^31 floats)");
        Check(InitStd > 0 && double.IsFinite(InitStd), "init.std", InitStd, "must be a finite number > 0");
        Check(GradClip >= 0 && double.IsFinite(GradClip), "optimizer.grad_clip", GradClip, "must be a finite number >= 0 (0 = off)");
        Check(EvalEvery >= 0, "eval.every", EvalEvery, "must be >= 0");
        Check(EvalBatches >= 0, "eval.batches", EvalBatches, "must be >= 0");
        Check(CheckpointEvery >= 0, "checkpoint.every", CheckpointEvery, "must be >= 0");
        Check(CheckpointKeep >= 1, "checkpoint.keep", CheckpointKeep, "must be >= 1");
        Check(LogEvery >= 1, "log.every", LogEvery, "must be >= 1");
        Check(Plot is "svg" or "none", "log.plot", Plot, "must be \"svg\" or \"none\"");
        Check(MtpStartStep >= 0, "loss.mtp_start_step", MtpStartStep, "must be >= 0");
        Check(MaxConsecutiveFaults >= 1, "faults.max_consecutive", MaxConsecutiveFaults, "must be >= 1");
        foreach (var m in InitVarianceMultipliers) Check(m > 0 && double.IsFinite(m), "groups.init_variance_multipliers", m, "must be finite numbers > 0");
        Rethrow(source, () => Optimizer.Validate());
        Rethrow(source, () => (Schedule with { TotalSteps = Steps }).Validate("schedule"));
        Rethrow(source, () => Budget.Validate(model));
        Rethrow(source, () => Loss.Validate(model, hasMtp));
    }

    static void Rethrow(string source, Action a)
    {
        try { a(); }
        catch (ArgumentException e) { throw new ConfigException($"{source}: {e.Message}"); }
    }
}
