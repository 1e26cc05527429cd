using LongCat.Config;
using LongCat.Training;

namespace LongCat.Tests;

/// <summary>Synthetic prepared data and small training configs for the training-loop tests.</summary>
public static class TrainingRuns
{
    /// <summary>
    /// A prepared data folder of a noisy repeating pattern (learnable, so losses fall): tokens 3..vocab-1, ~4k train and
    /// ~600 held-out tokens. Deterministic.
    /// </summary>
    public static string SyntheticData(int vocab, int trainTokens = 4096, int valTokens = 640, int seed = 7)
    {
        var dir = Fixtures.NewTempDir();
        var r = new Random(seed);
        int[] Make(int n)
        {
            var a = new int[n];
            for (int i = 0; i < n; i++) a[i] = r.Next(10) < 7 ? 3 + (i * 5 + i / 7) % (vocab - 3) : r.Next(3, vocab);
            return a;
        }
        TokenDataWriter.WriteTokens(dir, Make(trainTokens), Make(valTokens), vocab);
        return dir;
    }

    /// <summary>A few-step run of the tiny model with every framework feature on.</summary>
    public static TrainingOptions Options(LongCatConfig model, string data, string outDir, long steps) => new()
    {
        Model = model,
        Mtp = true,
        DataDir = data,
        OutDir = outDir,
        SequenceLength = 16,
        BatchSize = 4,
        MicroBatchSize = 2,
        Seed = 5,
        Steps = steps,
        Optimizer = new AdamWOptions { WeightDecay = 0.1 },
        Schedule = new LearningRateSchedule { Kind = ScheduleKind.Cosine, Peak = 3e-3, WarmupSteps = 2, TotalSteps = steps },
        Loss = new LossOptions { MtpWeight = 0.3, LoadBalanceAlpha = 0.01, LoadBalanceGroups = 2, HiddenZLossLambda = 1e-5 },
        MtpStartStep = 2,
        Budget = new BudgetControllerOptions { Rate = 0.01, Decay = ScheduleKind.Linear },
        EvalEvery = 3,
        EvalBatches = 2,
        CheckpointEvery = 0,
        Plot = "none",
    };

    /// <summary>The metrics.jsonl lines of training steps (not validation lines).</summary>
    public static string[] StepLines(string outDir) => StepLines(File.ReadAllLines(Path.Combine(outDir, "metrics.jsonl")));

    public static string[] StepLines(IEnumerable<string> lines) => lines.Where(l => l.Contains("\"loss\"", StringComparison.Ordinal)).ToArray();

    /// <summary>The losses of a run's metrics, as written (the exact doubles).</summary>
    public static double[] Losses(string outDir) =>
        StepLines(outDir).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("loss").GetDouble()).ToArray();

    public static unsafe float[] Values(ParameterStore p) => new ReadOnlySpan<float>(p.ValuesPointer, checked((int)p.Length)).ToArray();
}
