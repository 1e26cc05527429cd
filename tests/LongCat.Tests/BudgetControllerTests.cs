using LongCat.Training;
using Xunit.Abstractions;

namespace LongCat.Tests;

/// <summary>The expert-bias budget controller (Eq. 2) steers real experts per token to K_e and holds it there.</summary>
public class BudgetControllerTests(ITestOutputHelper output)
{
    [Fact]
    public void MeanRealExpertsConvergeToTargetWithinOnePercentAndStay()
    {
        var config = TrainingModels.Tiny with { NRoutedExperts = 8, ZeroExpertNum = 4, MoeTopK = 3 };
        const double target = 1.5;  // not the default K·E/(E+Z) = 2, so the controller has work to do
        var data = TrainingRuns.SyntheticData(config.VocabSize, trainTokens: 16384);
        var o = TrainingRuns.Options(config, data, Fixtures.NewTempDir(), steps: 200) with
        {
            Mtp = false,
            Loss = new LossOptions(),
            SequenceLength = 32, BatchSize = 8, MicroBatchSize = 8,
            Schedule = new LearningRateSchedule { Kind = ScheduleKind.Cosine, Peak = 1e-3, WarmupSteps = 2, TotalSteps = 200 },
            Budget = new BudgetControllerOptions { TargetRealExperts = target, Rate = 0.3, Decay = ScheduleKind.Cosine, FinalRateRatio = 0.2 },
            EvalEvery = 0, EvalBatches = 0,
        };
        using var t = Trainer.Create(o);
        var means = new List<double>();
        t.StepCompleted += m => means.Add(m.MeanRealExperts);
        // Zero experts' biases must never move.
        var zeroBias = t.Model.Parameters["model.layers.1.mlp.router.e_score_correction_bias"].Value[config.NRoutedExperts..].ToArray();
        while (t.Step < o.Steps) t.TrainStep();
        Assert.Equal(zeroBias, t.Model.Parameters["model.layers.1.mlp.router.e_score_correction_bias"].Value[config.NRoutedExperts..].ToArray());

        // Windows of 25 steps (6,400 tokens): the run starts near K·E/(E+Z) = 2; from step 50 on every window is within 1%
        // of K_e while the router keeps training (its learning moves the routing the controller must hold).
        const int window = 25;
        for (int w = 0; w < means.Count / window; w++)
        {
            double mean = means.Skip(w * window).Take(window).Average();
            output.WriteLine($"steps {w * window + 1}-{(w + 1) * window}: {mean:F4} real experts/token");
            if (w * window >= 50) Assert.InRange(mean, target * 0.99, target * 1.01);
        }
        Assert.True(means[0] > 1.8, $"the run should start away from the target, got {means[0]}");
    }

    [Fact]
    public void UpdateFollowsEquationTwo()
    {
        var config = TrainingModels.Tiny; // E = 4, Z = 2, K = 3
        using var p = ParameterStore.Random(config, 1);
        var c = new BudgetController(config, new BudgetControllerOptions { TargetRealExperts = 2, Rate = 0.5, UpdateEvery = 2 }, totalSteps: 10);
        // Two tokens: slots {0, 1, 4} and {0, 5, 2}; layer 0 only (layer 1 sees nothing).
        c.Observe(0, [0, 1, 4, 0, 5, 2]);
        c.ObserveTokens(2);
        Assert.False(c.Commit(0, p));   // update every 2 steps
        c.Observe(0, [9, 9, 9]);         // a skipped step's routing is discarded
        c.ObserveTokens(1);
        c.DiscardPending();
        Assert.True(c.Commit(1, p));
        var b = p["model.layers.0.mlp.router.e_score_correction_bias"].Value;
        // Δb_i = μ (K_e/(K E) − T_i/(K T_all)) = 0.5 (2/12 − T_i/6), T = (2, 1, 1, 0)
        float[] expected = [(float)(0.5 * (2.0 / 12 - 2.0 / 6)), (float)(0.5 * (2.0 / 12 - 1.0 / 6)), (float)(0.5 * (2.0 / 12 - 1.0 / 6)), (float)(0.5 * (2.0 / 12)), 0, 0];
        Assert.Equal(expected, b.ToArray());
        var b1 = p["model.layers.1.mlp.router.e_score_correction_bias"].Value;
        Assert.Equal(0.5f * (float)(2.0 / 12 - 0), b1[0], 6);
    }
}
