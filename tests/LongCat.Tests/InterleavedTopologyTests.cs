using LongCat.Config;
using LongCat.IO;
using LongCat.Model;
using LongCat.Training;
using Xunit.Abstractions;

namespace LongCat.Tests;

/// <summary>
/// <c>ffn_topology</c> "interleaved", the paper's baseline for the ScMoE ablation (MoE and dense FFN as alternating
/// residual sublayers): its parameter layout, inference forward = training forward for the same weights, a short
/// training run that learns and whose model folder serves. Its gradients are checked in
/// <see cref="FiniteDifferenceTests"/>, its thread independence in <see cref="TrainingDeterminismTests"/>, its counts in
/// <see cref="PlanningTests"/>.
/// </summary>
public class InterleavedTopologyTests(ITestOutputHelper output)
{
    static LongCatConfig Interleaved => TrainingModels.Tiny with { FfnTopology = LongCatConfig.InterleavedTopology };

    [Fact]
    public void LayoutHasOneDenseFfnOfTwiceTheWidthPerLayer()
    {
        var shortcut = ParameterTable.Create(TrainingModels.Tiny, mtp: true);
        var table = ParameterTable.Create(Interleaved, mtp: true);
        long h = Interleaved.HiddenSize, f2 = 2L * Interleaved.FfnHiddenSize;
        Assert.DoesNotContain(table.Entries, e => e.Name.Contains(".mlps.1.", StringComparison.Ordinal));
        for (int l = 0; l < Interleaved.NumLayers; l++)
        {
            var p = $"model.layers.{l}.mlps.0.";
            Assert.Equal([f2, h], table[p + "gate_proj.weight"].Shape);
            Assert.Equal([f2, h], table[p + "up_proj.weight"].Shape);
            Assert.Equal([h, f2], table[p + "down_proj.weight"].Shape);
            Assert.True(table.Contains($"model.layers.{l}.post_attention_layernorm.1.weight"));
        }
        // Everything else (attention, norms, router, experts, MTP head with its F-sized FFN) is the shortcut layout's.
        Assert.Equal(shortcut.Entries.Where(e => !e.Name.Contains(".mlps.", StringComparison.Ordinal)).Select(e => (e.Name, string.Join(",", e.Shape))),
            table.Entries.Where(e => !e.Name.Contains(".mlps.", StringComparison.Ordinal)).Select(e => (e.Name, string.Join(",", e.Shape))));
        Assert.Equal(shortcut.TrainableCount, table.TrainableCount);
    }

    [Theory]
    [InlineData(LongCatConfig.ShortcutTopology, LongCatConfig.InterleavedTopology)]
    [InlineData(LongCatConfig.InterleavedTopology, LongCatConfig.ShortcutTopology)]
    public void CheckpointOfTheOtherTopologyIsRefusedNamingTheKey(string written, string configured)
    {
        var dir = Fixtures.NewTempDir();
        ModelInitializer.Write(TrainingModels.Tiny with { FfnTopology = written }, dir, seed: 3);
        File.WriteAllText(Path.Combine(dir, "config.json"), (TrainingModels.Tiny with { FfnTopology = configured }).ToJson());
        foreach (var load in new Action[] { () => LongCatModel.Load(dir).Dispose(), () => ParameterStore.Load(dir).Dispose() })
        {
            var e = Assert.Throws<ModelFormatException>(load);
            Assert.StartsWith(dir, e.Message);
            Assert.Contains($"ffn_topology is \"{configured}\"", e.Message);
            Assert.Contains("model.layers.0.mlps.1.gate_proj.weight", e.Message);
        }
    }

    [Theory]
    [InlineData(LongCatConfig.ShortcutTopology)]
    [InlineData(LongCatConfig.InterleavedTopology)]
    public void InferenceForwardEqualsTrainingForward(string topology)
    {
        const int batch = 2, seq = 9;
        var config = TrainingModels.Tiny with { FfnTopology = topology };
        using var trainable = TrainingModels.Random(config, seed: 4, std: 0.1);
        var ids = TrainingModels.Ids(config.VocabSize, batch, seq, seed: 6);
        var loss = trainable.Loss(ids, batch, seq);
        var hidden = trainable.LastHidden.ToArray();
        var routing = trainable.LastRouting();

        var dir = Fixtures.NewTempDir();
        trainable.Parameters.Save(dir);
        using var model = LongCatModel.Load(dir);
        Assert.Equal(config, model.Config);
        Assert.All(model.Layers, l => Assert.Equal(config.LayerDenseFfnCount, l.Mlps.Length));
        var r = model.Forward(ids, batch, seq, new ForwardOptions { KeepHiddenStates = true, KeepRouting = true });
        for (int l = 0; l < config.NumLayers; l++) Assert.Equal(routing[l], r.Routing[l].Indices);
        float dh = Fixtures.MaxAbsDiff(hidden, r.HiddenAfterLayer[^1]);

        // Cross-entropy of the inference logits, in double, as the trainer defines it (mean over B·(S-1) positions).
        int v = config.VocabSize;
        double ce = 0;
        for (int b = 0; b < batch; b++)
            for (int s = 0; s + 1 < seq; s++)
            {
                var row = r.Logits.AsSpan((b * seq + s) * v, v);
                double max = double.NegativeInfinity, sum = 0;
                foreach (var x in row) max = Math.Max(max, x);
                foreach (var x in row) sum += Math.Exp(x - max);
                ce += max + Math.Log(sum) - row[ids[b * seq + s + 1]];
            }
        ce /= batch * (seq - 1);
        output.WriteLine($"{topology}: max |hidden diff| {dh:E2}, cross-entropy training {loss.CrossEntropy:F8} inference {ce:F8}");
        Assert.True(dh <= 1e-5f * (1 + hidden.Max(MathF.Abs)), $"last-layer hidden states differ by {dh}");
        Assert.True(Math.Abs(loss.CrossEntropy - ce) <= 1e-5, $"cross-entropy {loss.CrossEntropy} vs {ce}");
    }

    [Fact]
    public void TrainingLearnsAndTheModelFolderServes()
    {
        var data = TrainingRuns.SyntheticData(Interleaved.VocabSize);
        var o = TrainingRuns.Options(Interleaved, data, Fixtures.NewTempDir(), steps: 8);
        using var t = Trainer.Create(o);
        Assert.DoesNotContain(t.Model.Parameters.Table.Entries, e => e.Name.Contains(".mlps.1.", StringComparison.Ordinal));
        t.Run();
        var ce = TrainingRuns.StepLines(o.OutDir).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("ce").GetDouble()).ToArray();
        output.WriteLine($"cross-entropy per step: {string.Join(", ", ce.Select(x => x.ToString("F4", System.Globalization.CultureInfo.InvariantCulture)))}");
        Assert.Equal(8, ce.Length);
        Assert.All(ce, x => Assert.True(double.IsFinite(x)));
        Assert.True(ce[^1] < ce[0], "the cross-entropy should fall");
        Assert.True(ce.TakeLast(3).Average() < ce.Take(3).Average(), "the cross-entropy should fall");

        // The written model keeps the topology and runs in inference: incremental decoding over the KV cache equals
        // the full forward, as for the shortcut layer.
        Assert.Contains("\"ffn_topology\": \"interleaved\"", File.ReadAllText(Path.Combine(t.ModelDir, "config.json")));
        using var model = LongCatModel.Load(t.ModelDir);
        Assert.True(model.Config.InterleavedFfn);
        var ids = TrainingModels.Ids(model.Config.VocabSize, 1, 10, seed: 8);
        var full = model.Forward(ids, 1, ids.Length).Logits;
        var cache = model.NewCache(16);
        int v = model.Config.VocabSize, pos = 0;
        float worst = 0;
        foreach (int n in new[] { 4, 1, 3, 1, 1 })
        {
            var step = model.ForwardCached(ids.AsSpan(pos, n), cache, allLogits: true);
            worst = MathF.Max(worst, Fixtures.MaxAbsDiff(step.Logits, full.AsSpan(pos * v, n * v)));
            pos += n;
        }
        output.WriteLine($"cached vs full forward: max |logit diff| {worst:E2}");
        Assert.True(worst <= 1e-4f, $"incremental logits differ by {worst}");
    }
}
