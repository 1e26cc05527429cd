using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using LongCat.Config;
using LongCat.IO;
using LongCat.Model;
using LongCat.Training;

namespace LongCat.Tests;

/// <summary>
/// <c>longcat grow</c> (model growth initialization) on a tiny run stopped at step 3: every tensor and Adam moment of
/// the grown checkpoint is its source layer's, bit for bit, the rest and the MTP head kept once; the trainer state is
/// carried with the budget counts stacked; the grown run resumes at step 4 through <c>longcat train --resume</c> with
/// the config grow wrote; the grown model runs forward; and bad input is one error line.
/// </summary>
// The CLI runs in-process with Console redirected: not in parallel with other tests.
[Collection("Console")]
public partial class GrowTests
{
    const int SourceSteps = 3;
    static readonly Lazy<(string Run, string Checkpoint, string Config)> Source = new(TrainSource);

    /// <summary>A 2-layer tiny run (MTP head, budget controller updating every 2 steps) checkpointed at step 3 of 8.</summary>
    static (string, string, string) TrainSource()
    {
        var data = TrainingRuns.SyntheticData(TrainingModels.Tiny.VocabSize);
        var run = Fixtures.NewTempDir();
        var config = Path.Combine(Fixtures.NewTempDir(), "train.json");
        File.WriteAllText(config, $$"""
        {
          // The half-depth run: 2 layers, grown to 4.
          "model": {"vocab_size": 40, "hidden_size": 16, "num_layers": 2, "num_attention_heads": 2, "q_lora_rank": 12, "kv_lora_rank": 8,
            "qk_nope_head_dim": 4, "qk_rope_head_dim": 4, "v_head_dim": 6, "ffn_hidden_size": 24, "expert_ffn_hidden_size": 8,
            "n_routed_experts": 4, "zero_expert_num": 2, "moe_topk": 3, "routed_scaling_factor": 2.5, "rope_theta": 10000, "max_position_embeddings": 256},
          "init": {"mtp": true},
          "data": {"dir": "{{data}}", "seq_len": 16, "batch_size": 4, "micro_batch_size": 2},
          "seed": 5, "steps": 8, "out": "{{run}}",
          "optimizer": {"lr": 3e-3},
          "schedule": {"warmup_steps": 2},
          "loss": {"mtp_weight": 0.3, "mtp_start_step": 2, "load_balance_alpha": 0.01, "z_loss_lambda": 1e-5},
          "budget": {"rate": 0.01, "update_every": 2},
          "eval": {"every": 0, "batches": 2},
          "checkpoint": {"every": 0},
          "log": {"plot": "none"},
        }
        """);
        using var t = Trainer.Create(TrainConfigFile.Load(config));
        while (t.Step < SourceSteps) t.TrainStep();
        return (run, t.SaveCheckpoint(), config);
    }

    [GeneratedRegex(@"^model\.layers\.(\d+)\.")]
    private static partial Regex LayerName();

    /// <summary>The source name of a grown tensor, worked out here independently of <see cref="ModelGrowth.SourceName"/>.</summary>
    static string SourceOf(string name, int layers)
    {
        var m = LayerName().Match(name);
        return m.Success ? $"model.layers.{int.Parse(m.Groups[1].Value) % layers}." + name[m.Length..] : name;
    }

    [Fact]
    public void EveryLayerTensorAndMomentIsItsSourceLayersBitForBitTheRestKeptOnceAndTheStateCarried()
    {
        var (_, src, _) = Source.Value;
        var sc = LongCatConfig.Load(Path.Combine(src, "config.json"));
        int n = sc.NumLayers, e = sc.NRoutedExperts;
        var ss = TrainingCheckpoint.ReadState(src);
        foreach (int factor in new[] { 2, 3 })
        {
            var outDir = Path.Combine(Fixtures.NewTempDir(), "grown");
            var r = ModelGrowth.Grow(src, outDir, factor);
            Assert.Equal(Path.Combine(Path.GetFullPath(outDir), "checkpoints", "step-00000003"), r.Checkpoint);
            Assert.Equal(r.Checkpoint, TrainingCheckpoint.FindLatest(Path.Combine(outDir, "checkpoints")));
            var gc = LongCatConfig.Load(Path.Combine(r.Checkpoint, "config.json"));
            Assert.Equal((sc with { NumLayers = n * factor }).ToJson(), gc.ToJson());

            foreach (var file in new[] { "model.safetensors", "optimizer.safetensors" })
            {
                using var s = SafeTensorFile.Open(Path.Combine(src, file));
                using var g = SafeTensorFile.Open(Path.Combine(r.Checkpoint, file));
                foreach (var name in g.Tensors.Keys)
                {
                    // exp_avg.NAME / exp_avg_sq.NAME: the moment of NAME's source.
                    int cut = name.StartsWith("exp_avg", StringComparison.Ordinal) ? name.IndexOf('.') + 1 : 0;
                    var from = name[..cut] + SourceOf(name[cut..], n);
                    Assert.Equal(DType.F32, g.Tensors[name].DType);
                    Assert.Equal(s.Tensors[from].Shape, g.Tensors[name].Shape);
                    Assert.True(s.Tensor(from).Bytes.SequenceEqual(g.Tensor(name).Bytes), $"{file}: {name} is not {from}");
                }
                // Each layer tensor once per copy, everything else (embedding, norm, lm_head, MTP head) once.
                static bool InLayer(string k) => k.Contains("model.layers.", StringComparison.Ordinal);
                Assert.Equal(s.Tensors.Count + (factor - 1) * s.Tensors.Keys.Count(InLayer), g.Tensors.Count);
                Assert.Equal(s.Tensors.Keys.Where(k => !InLayer(k)).Order(), g.Tensors.Keys.Where(k => !InLayer(k)).Order());
                for (int l = 0; l < n * factor; l++)
                    Assert.Contains($"model.layers.{l}.mlp.router.classifier.weight", g.Tensors.Keys.Select(k => k[k.IndexOf("model.", StringComparison.Ordinal)..]));
                Assert.DoesNotContain(g.Tensors.Keys, k => k.Contains($"model.layers.{n * factor}.", StringComparison.Ordinal));
                Assert.Equal(s.Metadata.GetValueOrDefault("step"), g.Metadata.GetValueOrDefault("step"));
            }
            using (var s = SafeTensorFile.Open(Path.Combine(src, "model.safetensors")))
            {
                // The check means something: the layers differ (the controller moved their biases), there is an MTP head.
                Assert.True(s.Contains("model.layers.1.mlp.router.e_score_correction_bias"));
                Assert.False(s.Tensor("model.layers.0.mlp.router.e_score_correction_bias").Bytes.SequenceEqual(s.Tensor("model.layers.1.mlp.router.e_score_correction_bias").Bytes));
                Assert.True(s.Contains("model.mtp.layers.0.eh_proj.weight"));
            }

            var gs = TrainingCheckpoint.ReadState(r.Checkpoint);
            Assert.Equal(ss with { ModelConfig = gs.ModelConfig, BudgetCounts = gs.BudgetCounts }, gs);
            Assert.Equal(SourceSteps, gs.Step);
            Assert.Equal(gc.ToJson(), LongCatConfig.Parse(gs.ModelConfig).ToJson());
            Assert.Equal(n * factor * e + 1, gs.BudgetCounts.Length);
            Assert.Contains(ss.BudgetCounts[..^1], c => c != 0);
            for (int l = 0; l < n * factor; l++)
                Assert.Equal(ss.BudgetCounts.AsSpan(l % n * e, e).ToArray(), gs.BudgetCounts.AsSpan(l * e, e).ToArray());
            Assert.Equal(ss.BudgetCounts[^1], gs.BudgetCounts[^1]);
            Assert.Equal(gs.BudgetCounts, r.State.BudgetCounts);
            Assert.False(Directory.EnumerateDirectories(Path.GetDirectoryName(Path.GetFullPath(outDir))!, ".tmp-*").Any());
        }
    }

    [Fact]
    public void TheGrownRunContinuesFromTheCarriedStepWithLongcatTrainResumeAndTheConfigGrowWrote()
    {
        var (run, _, config) = Source.Value;
        var dir = Fixtures.NewTempDir();
        var outDir = Path.Combine(dir, "grown-run");
        var grownConfig = Path.Combine(dir, "grown-train.json");
        var (rc, stdout, err) = Cli("grow", "--from", run, "--out", outDir, "--config", config, "--config-out", grownConfig);
        Assert.True(rc == 0, err);
        Assert.Equal("", err);
        var line = Assert.Single(stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("2 -> 4 layers", line);
        Assert.Contains("step 3 carried", line);
        Assert.Contains($"longcat train --config {grownConfig} --resume", line);

        // The grown train.json is the source's with model.num_layers 4 and out the grown run; nothing else changed.
        var options = new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true };
        var expected = JsonNode.Parse(File.ReadAllText(config), documentOptions: options)!;
        expected["model"]!["num_layers"] = 4;
        expected["out"] = outDir;
        Assert.True(JsonNode.DeepEquals(expected, JsonNode.Parse(File.ReadAllText(grownConfig))), File.ReadAllText(grownConfig));

        (rc, _, err) = Cli("train", "--config", grownConfig, "--resume", "--quiet");
        Assert.True(rc == 0, err);
        var steps = TrainingRuns.StepLines(outDir).Select(l => JsonDocument.Parse(l).RootElement).ToArray();
        Assert.Equal([4L, 5, 6, 7, 8], steps.Select(s => s.GetProperty("step").GetInt64()));
        var losses = steps.Select(s => s.GetProperty("ce").GetDouble()).ToArray();
        Assert.All(losses, l => Assert.True(double.IsFinite(l)));
        // Loss rises at growth, then falls (the paper's observation); at this scale: the last step below the first.
        Assert.True(losses[^1] < losses[0], $"cross-entropy after growth: {string.Join(", ", losses)}");
        Assert.Equal(4, LongCatConfig.Load(Path.Combine(outDir, "model", "config.json")).NumLayers);
    }

    [Fact]
    public void TheGrownModelLoadsIntoTheTrainerAtTheCarriedStateAndRunsForward()
    {
        var (_, src, config) = Source.Value;
        var outDir = Path.Combine(Fixtures.NewTempDir(), "grown");
        var r = ModelGrowth.Grow(src, outDir);
        var ss = TrainingCheckpoint.ReadState(src);

        var o = TrainConfigFile.Load(config, ["model.num_layers=4", $"out={outDir}"]);
        using (var t = Trainer.Create(o, r.Checkpoint))
        {
            Assert.Equal(SourceSteps, t.Step);
            Assert.Equal(ss.AdamStep, t.Optimizer.Step);
            Assert.Equal(4, t.Model.Config.NumLayers);
            Assert.True(t.Model.HasMtp);
            Assert.Equal(r.State.BudgetCounts, t.Budget.SaveState());
            using var grown = SafeTensorFile.Open(Path.Combine(r.Checkpoint, "optimizer.safetensors"));
            var name = "model.layers.3.self_attn.1.q_b_proj.weight";
            var entry = t.Model.Parameters.Table[name];
            Assert.Equal(grown.Tensor("exp_avg_sq." + name).ToFloat32(), t.Optimizer.SecondMoment.Slice((int)entry.Offset, entry.Count).ToArray());
            var m = t.TrainStep();
            Assert.Equal(SourceSteps + 1, m.Step);
            Assert.True(double.IsFinite(m.Loss) && double.IsFinite(m.GradNorm));
        }

        using var model = LongCatModel.Load(r.Checkpoint);
        Assert.Equal(4, model.Layers.Length);
        Assert.NotNull(model.Mtp);
        const int batch = 2, seq = 8;
        var logits = model.Forward(TrainingModels.Ids(model.Config.VocabSize, batch, seq, 1), batch, seq).Logits;
        Assert.Equal(batch * seq * model.Config.VocabSize, logits.Length);
        Assert.All(logits, x => Assert.True(float.IsFinite(x)));
    }

    [Fact]
    public void BadInputIsOneErrorLineAndWritesNothing()
    {
        var (run, src, config) = Source.Value;
        var dir = Fixtures.NewTempDir();
        string Out() => Path.Combine(dir, Guid.NewGuid().ToString("N"));

        Fails(["grow", "--from", Path.Combine(dir, "missing"), "--out", Out()], "folder not found");
        var empty = Directory.CreateDirectory(Path.Combine(dir, "empty")).FullName;
        Fails(["grow", "--from", empty, "--out", Out()], "not a training checkpoint");
        var noOptimizer = Directory.CreateDirectory(Path.Combine(dir, "no-optimizer")).FullName;
        foreach (var f in Directory.GetFiles(src).Where(f => !f.EndsWith("optimizer.safetensors", StringComparison.Ordinal)))
            File.Copy(f, Path.Combine(noOptimizer, Path.GetFileName(f)));
        Fails(["grow", "--from", noOptimizer, "--out", Out()], "not a training checkpoint", "optimizer.safetensors");

        var full = Directory.CreateDirectory(Path.Combine(dir, "full")).FullName;
        File.WriteAllText(Path.Combine(full, "keep.txt"), "mine");
        Fails(["grow", "--from", run, "--out", full], "exists and is not empty");
        Assert.Equal(["keep.txt"], Directory.EnumerateFileSystemEntries(full).Select(Path.GetFileName));

        Fails(["grow", "--from", run, "--out", Out(), "--factor", "1"], "--factor must be >= 2");
        Fails(["grow", "--from", run, "--out", Out(), "--config", config], "--config and --config-out go together");

        var other = Path.Combine(dir, "other.json");
        File.WriteAllText(other, File.ReadAllText(config).Replace("\"hidden_size\": 16", "\"hidden_size\": 32", StringComparison.Ordinal));
        var o = Out();
        Fails(["grow", "--from", run, "--out", o, "--config", other, "--config-out", Path.Combine(dir, "g.json")], "not the checkpoint's model");
        Assert.False(Directory.Exists(o));
        Assert.False(File.Exists(Path.Combine(dir, "g.json")));
        Assert.Empty(Directory.EnumerateDirectories(dir, ".tmp-*"));
    }

    static (int Rc, string Out, string Err) Cli(params string[] args) => InProcessCli.Run(args);

    static void Fails(string[] args, params string[] fragments) => InProcessCli.Fails(args, fragments);
}
