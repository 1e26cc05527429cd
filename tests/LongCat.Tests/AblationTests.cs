using System.Text.Json.Nodes;
using LongCat.Cli.Ablations;

namespace LongCat.Tests;

/// <summary>
/// The ablation lab (longcat ablate): its run cache (a config trains once; a changed config trains again), the
/// metrics it reads back, the report files, and the command's errors. The ablations themselves take minutes each and
/// live in docs/ablations.md, not in the test run.
/// </summary>
public class AblationTests
{
    static string TinyCorpus()
    {
        var dir = Fixtures.NewTempDir();
        var path = Path.Combine(dir, "corpus.jsonl");
        File.WriteAllLines(path, Enumerable.Range(0, 60).Select(i => System.Text.Json.JsonSerializer.Serialize(
            new { text = $"def f{i}(x):\n    \"\"\"Return x times {i}.\"\"\"\n    return x * {i}\n\nThe :func:`f{i}` function multiplies. " + string.Concat(Enumerable.Repeat($"word{i % 7} ", 40)) })));
        return path;
    }

    static JsonObject Tiny(Lab lab) => Lab.With(lab.BaseConfig(), "model.vocab_size=2048", "model.hidden_size=16", "model.num_attention_heads=2",
        "model.q_lora_rank=8", "model.kv_lora_rank=8", "model.qk_nope_head_dim=4", "model.qk_rope_head_dim=4", "model.v_head_dim=4",
        "model.ffn_hidden_size=24", "model.expert_ffn_hidden_size=8", "data.seq_len=16", "data.batch_size=4", "data.micro_batch_size=4", "eval.batches=2");

    [Fact]
    public void RunsAreCachedByConfigAndReadBack()
    {
        var root = Fixtures.NewTempDir();
        var log = new StringWriter();
        var lab = new Lab(root, TinyCorpus(), 10, log);
        var c = Tiny(lab);
        var a = lab.Run("a", c);
        Assert.Equal(10, a.Steps.Count);
        Assert.Equal(Enumerable.Range(1, 10).Select(i => (long)i), a.Steps.Select(s => s.Step));
        Assert.Equal(10 * 4 * 16, a.Tokens);
        Assert.True(double.IsFinite(a.FinalValLoss));
        Assert.Equal(10, a.Validation[^1].Step);
        Assert.All(a.Steps, s => Assert.InRange(s.RealExperts, 0, 4));
        Assert.Contains("a: training", log.ToString());

        // The same config again: read from the cache, the same numbers.
        var b = lab.Run("b", c);
        Assert.Contains("b: cached", log.ToString());
        Assert.Equal(a.Dir, b.Dir);
        Assert.Equal(a.Steps, b.Steps);
        Assert.Equal(a.FinalValLoss, b.FinalValLoss);

        // A run with its own body (e.g. growth) is keyed by its variant name too: same config, another folder.
        var v = lab.Run("v", c, variant: "custom", body: (cfg, label) =>
        {
            using var t = LongCat.Training.Trainer.Create(LongCat.Training.TrainConfigFile.Parse(cfg.ToJsonString(), label));
            t.Run();
        });
        Assert.NotEqual(a.Dir, v.Dir);
        Assert.True(v.Seconds > 0);
        Assert.Equal(a.Steps.Select(s => s.Ce), v.Steps.Select(s => s.Ce));
        Assert.Equal(v.Dir, lab.Run("v2", c, variant: "custom", body: (_, _) => throw new InvalidOperationException("not cached")).Dir);

        // A different config trains into another folder; a stale done.json (different config) is not trusted.
        var d = lab.Run("d", Lab.With(c, "optimizer.lr=1e-3"));
        Assert.NotEqual(a.Dir, d.Dir);
        var done = Path.Combine(a.Dir, "done.json");
        var j = JsonNode.Parse(File.ReadAllText(done))!.AsObject();
        j["config"]!["seed"] = 99;
        File.WriteAllText(done, j.ToJsonString());
        var again = lab.Run("again", c);
        Assert.Contains("again: training", log.ToString());
        Assert.Equal(a.Steps.Select(s => s.Ce), again.Steps.Select(s => s.Ce)); // deterministic retrain

        // A run made by other code (another engine build) is never reported as measured: the folder is keyed by the
        // engine version, and a done.json stamped with another one is not trusted either.
        Assert.Matches("^[0-9a-f]{16}$", Lab.EngineVersion);
        j = JsonNode.Parse(File.ReadAllText(done))!.AsObject();
        Assert.Equal(Lab.EngineVersion, j["engine"]!.GetValue<string>());
        j["engine"] = "0000000000000000";
        File.WriteAllText(done, j.ToJsonString());
        var rebuilt = lab.Run("rebuilt", c);
        Assert.Contains("rebuilt: training", log.ToString());
        Assert.Equal(a.Steps.Select(s => s.Ce), rebuilt.Steps.Select(s => s.Ce));
    }

    [Fact]
    public void ReportWritesMarkdownJsonAndPlots()
    {
        var dir = Fixtures.NewTempDir();
        var rep = new Report("x", "X. A title", dir)
            .Claim("a claim").Setup("a setup")
            .Table(["run", "loss"], [["one", "1.0000"], ["two", "2.0000"]])
            .Measured("numbers")
            .Value("delta", 0.5)
            .Plot(new Chart("t", "x", "y", logX: true).Series("s", [(1e-8, 1.0), (1e-4, 2.0), (double.NaN, 3.0)], markers: true).VLine(1e-6, "v"), "p.svg", "caption");
        var md = rep.Save("longcat ablate x");
        Assert.Contains("| one | 1.0000 |", md);
        Assert.Contains("![caption](p.svg)", md);
        Assert.Contains("Rerun: `longcat ablate x`", md);
        Assert.Contains($"measured by LongCat.NET ", md);
        Assert.Contains(Lab.EngineVersion, md);
        Assert.StartsWith("<?xml", File.ReadAllText(Path.Combine(dir, "p.svg")).TrimStart());
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "results.json")))!;
        Assert.Equal(0.5, json["delta"]!.GetValue<double>());
        Assert.Equal("two", json["rows"]![1]!["run"]!.GetValue<string>());
        Assert.Equal(Lab.EngineVersion, json["engine"]!.GetValue<string>());
    }

    [Fact]
    public void BadArgumentsAreOneLine()
    {
        var (exit, _, err) = CliProcess.Run("ablate", "nonsense");
        Assert.Equal(1, exit);
        Assert.StartsWith("longcat: error: unknown ablation 'nonsense': use one of zero-experts (A1)", err);
        (exit, _, err) = CliProcess.Run("ablate", "A4", "--steps", "3");
        Assert.Equal(1, exit);
        Assert.Contains("--steps must be at least 10", err);
        (exit, _, err) = CliProcess.Run("ablate", "a4", "--corpus", "/nonexistent/c.jsonl.gz");
        Assert.Equal(1, exit);
        Assert.Contains("--corpus: /nonexistent/c.jsonl.gz not found", err);
        (exit, _, err) = CliProcess.Run("ablate", "mtp", "--model", "/nonexistent/model", "--corpus", TinyCorpus(), "--out", Fixtures.NewTempDir());
        Assert.Equal(1, exit);
        Assert.Contains("not a model folder", err);
    }
}
