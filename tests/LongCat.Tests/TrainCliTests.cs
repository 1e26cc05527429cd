using System.Diagnostics;
using LongCat.Config;
using LongCat.IO;
using LongCat.Training;

namespace LongCat.Tests;

/// <summary>
/// longcat train / data prepare as a user runs them: config errors, crash safety of checkpoints with a real child
/// process killed in the middle of a checkpoint write, resume after it equal to a straight run, and generate on
/// the result.
/// </summary>
public class TrainCliTests
{
    /// <summary>A tiny train.json (2 layers, width 16, 4+2 experts, MTP) over <paramref name="data"/>; shared with the MPI tests.</summary>
    internal static string Config(string data, string outDir, long steps, string extra = "", int batch = 4, int micro = 2,
        int evalBatches = 2, int keep = 2, string plot = "svg")
    {
        var path = Path.Combine(Fixtures.NewTempDir(), "train.json");
        File.WriteAllText(path, $$"""
        {
          "model": {"vocab_size": 40, "hidden_size": 16, "num_layers": 2, "num_attention_heads": 2, "q_lora_rank": 12, "kv_lora_rank": 8,
            "qk_nope_head_dim": 4, "qk_rope_head_dim": 4, "v_head_dim": 6, "ffn_hidden_size": 24, "expert_ffn_hidden_size": 8,
            "n_routed_experts": 4, "zero_expert_num": 2, "moe_topk": 3, "routed_scaling_factor": 2.5, "rope_theta": 10000, "max_position_embeddings": 256},
          "init": {"mtp": true},
          "data": {"dir": "{{data}}", "seq_len": 16, "batch_size": {{batch}}, "micro_batch_size": {{micro}}},
          "seed": 3, "steps": {{steps}}, "out": "{{outDir}}",
          "optimizer": {"lr": 3e-3},
          "loss": {"mtp_weight": 0.3, "load_balance_alpha": 0.01, "z_loss_lambda": 1e-5},
          "budget": {"rate": 0.01},
          "eval": {"every": 2, "batches": {{evalBatches}}},
          "checkpoint": {"every": 2, "keep": {{keep}}},
          "log": {"every": 1, "plot": "{{plot}}"}{{extra}}
        }
        """);
        return path;
    }

    [Fact]
    public void BadConfigsNameTheKey()
    {
        var data = TrainingRuns.SyntheticData(40);
        var outDir = Fixtures.NewTempDir();
        Assert.Contains("unknown key 'optimizer.lrr'", Assert.Throws<ConfigException>(() => TrainConfigFile.Load(Config(data, outDir, 4), ["optimizer.lrr=1"])).Message);
        Assert.Contains("'optimizer.lr' (\"fast\"): must be a number", Assert.Throws<ConfigException>(() => TrainConfigFile.Load(Config(data, outDir, 4), ["optimizer.lr=fast"])).Message);
        Assert.Contains("schedule.kind", Assert.Throws<ConfigException>(() => TrainConfigFile.Load(Config(data, outDir, 4), ["schedule.kind=exponential"])).Message);
        var o = TrainConfigFile.Load(Config(data, outDir, 4), ["data.micro_batch_size=3"]);
        Assert.Contains("data.micro_batch_size", Assert.Throws<ConfigException>(() => Trainer.Create(o)).Message);
        o = TrainConfigFile.Load(Config(data, outDir, 4), ["optimizer.beta2=1.5"]);
        Assert.Contains("optimizer.beta2", Assert.Throws<ConfigException>(() => Trainer.Create(o)).Message);
        o = TrainConfigFile.Load(Config(data, outDir, 4), ["model.vocab_size=20"]);
        Assert.Contains("more than the model's vocab_size 20", Assert.Throws<ConfigException>(() => Trainer.Create(o)).Message);
        o = TrainConfigFile.Load(Config(data, outDir, 4), ["init.mtp=false"]);
        Assert.Contains("MTP head", Assert.Throws<ConfigException>(() => Trainer.Create(o)).Message);
        o = TrainConfigFile.Load(Config(Path.Combine(data, "missing"), outDir, 4));
        Assert.Contains("data folder not found", Assert.Throws<IOException>(() => Trainer.Create(o)).Message);
        Assert.Contains("not found", Assert.Throws<ConfigException>(() => TrainConfigFile.Load(Path.Combine(outDir, "none.json"))).Message);
    }

    [Fact]
    public void ResumeFromAnIncompatibleCheckpointIsRefused()
    {
        var data = TrainingRuns.SyntheticData(40);
        var outDir = Fixtures.NewTempDir();
        using (var t = Trainer.Create(TrainConfigFile.Load(Config(data, outDir, 2)))) t.Run();
        var ck = TrainingCheckpoint.FindLatest(Path.Combine(outDir, "checkpoints"))!;
        foreach (var (set, fragment) in new[] { ("data.seq_len=8", "seq_len 16"), ("model.hidden_size=32", "model config differs"), ("seed=4", "seed 3"), ("steps=1", "past this config's steps") })
        {
            var o = TrainConfigFile.Load(Config(data, outDir, 2), [set]);
            var e = Assert.Throws<ConfigException>(() => Trainer.Create(o, ck));
            Assert.Contains("cannot resume", e.Message);
            Assert.Contains(fragment, e.Message);
        }
    }

    [Fact]
    public void KillDuringCheckpointWriteLeavesThePreviousCheckpointAndResumeMatchesAStraightRun()
    {
        var data = TrainingRuns.SyntheticData(40);
        // Straight: 6 steps in one go.
        var straightOut = Fixtures.NewTempDir();
        var (rc, _, err) = CliProcess.Run("train", "--config", Config(data, straightOut, 6), "--threads", "2");
        Assert.True(rc == 0, err);
        Assert.True(File.Exists(Path.Combine(straightOut, "plot.svg")));
        Assert.Contains("<svg", File.ReadAllText(Path.Combine(straightOut, "plot.svg")));

        // Killed: checkpoint writes slowed down; kill once the step-4 checkpoint is half written.
        var killedOut = Fixtures.NewTempDir();
        var config = Config(data, killedOut, 6);
        var ckRoot = Path.Combine(killedOut, "checkpoints");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "exec", Path.Combine(AppContext.BaseDirectory, "longcat.dll"), "train", "--config", config, "--threads", "1" }) psi.ArgumentList.Add(a);
        psi.Environment["LONGCAT_TEST_CHECKPOINT_DELAY_MS"] = "10";
        using (var p = Process.Start(psi)!)
        {
            var se = new System.Text.StringBuilder();
            p.OutputDataReceived += (_, _) => { };
            p.ErrorDataReceived += (_, e) => { lock (se) se.AppendLine(e.Data); };
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
            var sw = Stopwatch.StartNew();
            string? partial = null;
            while (partial is null && sw.Elapsed < TimeSpan.FromMinutes(2) && !p.HasExited)
            {
                if (Directory.Exists(ckRoot))
                    partial = Directory.GetDirectories(ckRoot, ".tmp-step-00000004-*").Select(d => Path.Combine(d, "model.safetensors")).FirstOrDefault(File.Exists);
                if (partial is null) Thread.Sleep(5);
            }
            Assert.True(partial is not null, "never saw the step-4 checkpoint being written: " + (p.HasExited ? se.ToString() : "timeout"));
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
        }
        // The previous checkpoint is intact, is what latest points to, and loads as a model and as training state.
        var latest = TrainingCheckpoint.FindLatest(ckRoot)!;
        Assert.Equal("step-00000002", Path.GetFileName(latest));
        Assert.False(Directory.Exists(Path.Combine(ckRoot, "step-00000004")));
        using (var m = LongCat.Model.LongCatModel.Load(latest)) Assert.Equal(2, m.Config.NumLayers);
        Assert.Equal(2, TrainingCheckpoint.ReadState(latest).Step);

        // Resume: finishes, cleans the torn write, and ends bit-identical to the straight run.
        (rc, _, err) = CliProcess.Run("train", "--config", config, "--resume", "--threads", "2");
        Assert.True(rc == 0, err);
        Assert.Empty(Directory.GetDirectories(ckRoot, ".tmp-*"));
        Assert.Equal(File.ReadAllBytes(ModelFile(straightOut)), File.ReadAllBytes(ModelFile(killedOut)));
        Assert.Equal(TrainingRuns.Losses(straightOut), TrainingRuns.Losses(killedOut));

        // The trained model generates.
        (rc, var o, err) = CliProcess.Run("generate", "--model", Path.Combine(killedOut, "model"), "--prompt-ids", "5,6,7", "--max-tokens", "4", "--temperature", "0");
        Assert.True(rc == 0, err);
        Assert.Equal(4, o.Trim().Split(',').Length);
    }

    static string ModelFile(string outDir)
    {
        // Compare tensor bytes, not file bytes: the producer metadata is the same, but be explicit about what matters.
        var path = Path.Combine(outDir, "model", "model.safetensors");
        using var f = SafeTensorFile.Open(path);
        var copy = Path.Combine(Fixtures.NewTempDir(), "tensors.bin");
        using (var fs = File.Create(copy))
            foreach (var name in f.Tensors.Keys.Order(StringComparer.Ordinal)) fs.Write(f.Tensor(name).Bytes);
        return copy;
    }

    [Fact]
    public void TrainCliErrorsAreOneLine()
    {
        var data = TrainingRuns.SyntheticData(40);
        var outDir = Fixtures.NewTempDir();
        var config = Config(data, outDir, 2);
        foreach (var (args, fragment) in new (string[], string)[]
        {
            (["train", "--config", config + ".missing"], "training config not found"),
            (["train", "--config", config, "--set", "optimizer.beta1=2"], "optimizer.beta1"),
            (["train", "--config", config, "--set", "data.dir=" + Path.Combine(outDir, "nodata")], "data folder not found"),
            (["train", "--config", config, "--set", "budget.typo=1"], "unknown key 'budget.typo'"),
            (["train", "--config", config, "--resume"], "no checkpoint under"),
        })
        {
            var (rc, _, err) = CliProcess.Run(args);
            Assert.Equal(1, rc);
            var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.True(lines.Length == 1, err);
            Assert.StartsWith("longcat: error: ", lines[0]);
            Assert.Contains(fragment, lines[0]);
        }
    }

    [Fact]
    public void DataPrepareCliWritesAPreparedFolder()
    {
        var src = Path.Combine(Fixtures.NewTempDir(), "a.txt");
        File.WriteAllText(src, string.Join("\n\n", Enumerable.Range(0, 30).Select(i => $"document number {i} with some words")));
        var outDir = Fixtures.NewTempDir();
        var (rc, o, err) = CliProcess.Run("data", "prepare", "--tokenizer", Fixtures.Tokenizer("longcat_style"), "--input", src, "--out", outDir, "--documents", "paragraph", "--val-fraction", "0.2");
        Assert.True(rc == 0, err);
        Assert.Contains("train ", o);
        using var ds = TokenDataset.Open(outDir, "train");
        Assert.True(ds.DocumentCount > 10);
        (rc, _, err) = CliProcess.Run("data", "prepare", "--tokenizer", Fixtures.Tokenizer("longcat_style"), "--input", src + ".missing", "--out", outDir);
        Assert.Equal(1, rc);
        Assert.StartsWith("longcat: error: ", err);
        Assert.Contains("input file not found", err);
    }
}
