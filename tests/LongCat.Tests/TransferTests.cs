using System.Text.Json.Nodes;
using LongCat.Config;
using LongCat.Training;

namespace LongCat.Tests;

/// <summary>
/// longcat transfer (spec section 4, Table 1): every parameter group's init-variance and LR factor, the width
/// dimensions, what stays, composition of transfers, that the trainer really initialises with the transferred
/// variances, and errors.
/// </summary>
public class TransferTests
{
    static JsonObject Proxy(string data = "data", string outDir = "out/proxy") => (JsonObject)JsonNode.Parse($$"""
        {
          "model": {"vocab_size": 40, "hidden_size": 16, "num_layers": 2, "num_attention_heads": 2, "q_lora_rank": 12, "kv_lora_rank": 8,
            "qk_nope_head_dim": 4, "qk_rope_head_dim": 4, "v_head_dim": 6, "ffn_hidden_size": 24, "expert_ffn_hidden_size": 8,
            "n_routed_experts": 4, "zero_expert_num": 2, "moe_topk": 3, "routed_scaling_factor": 2.5, "rope_theta": 10000, "max_position_embeddings": 256},
          "init": {"std": 0.05},
          "data": {"dir": "{{data}}", "seq_len": 16, "batch_size": 4, "micro_batch_size": 2},
          "seed": 3, "steps": 7, "out": "{{outDir}}",
          "optimizer": {"lr": 3e-3, "eps": 1e-16},
          "schedule": {"kind": "cosine", "warmup_steps": 2},
          "loss": {"z_loss_lambda": 1e-5},
          "budget": {"target_real_experts": 2.0, "rate": 0.01}
        }
        """)!.AsObject();

    [Fact]
    public void EveryGroupAndDimensionFollowsTable1()
    {
        var proxy = Proxy();
        var r = HyperparameterTransfer.Transfer(proxy, 64, "proxy.json");
        Assert.Equal(4.0, r.Scale);
        var o = TrainConfigFile.Parse(r.Config.ToJsonString(), "target");
        var m = o.Model;
        Assert.Equal((64, 8, 48, 32, 96, 32), (m.HiddenSize, m.NumAttentionHeads, m.QLoraRank, m.KvLoraRank, m.FfnHiddenSize, m.ExpertFfnHiddenSize));
        // Depth, head dims, vocabulary and sparsity are kept.
        Assert.Equal((2, 4, 4, 6, 40, 4, 2, 3), (m.NumLayers, m.QkNopeHeadDim, m.QkRopeHeadDim, m.VHeadDim, m.VocabSize, m.NRoutedExperts, m.ZeroExpertNum, m.MoeTopK));
        // Embedding and norms unchanged; hidden, router and unembedding / s, for both init variance and LR.
        double[] expected = [1, 0.25, 0.25, 0.25, 1];
        foreach (var g in ParameterGroups.All)
        {
            Assert.Equal(expected[(int)g], o.InitVarianceMultipliers[(int)g]);
            Assert.Equal(expected[(int)g], o.Optimizer.LrMultipliers![(int)g]);
            Assert.Equal((expected[(int)g], expected[(int)g]), r.Multipliers[g]);
        }
        // Everything else is the proxy's: base LR, init std, eps, schedule, batch, steps, losses, budget, seed.
        var p = TrainConfigFile.Parse(proxy.ToJsonString(), "proxy");
        Assert.Equal(p.Schedule with { }, o.Schedule);
        Assert.Equal((p.InitStd, p.Optimizer.Epsilon, p.SequenceLength, p.BatchSize, p.MicroBatchSize, p.Steps, p.Seed),
            (o.InitStd, o.Optimizer.Epsilon, o.SequenceLength, o.BatchSize, o.MicroBatchSize, o.Steps, o.Seed));
        Assert.Equal(p.Loss, o.Loss);
        Assert.Equal(p.Budget.TargetRealExperts, o.Budget.TargetRealExperts);
        Assert.Equal("out/proxy-width64", o.OutDir);
        // The proxy object itself is untouched.
        Assert.Equal(16, proxy["model"]!["hidden_size"]!.GetValue<int>());
    }

    [Fact]
    public void TransfersCompose()
    {
        var once = HyperparameterTransfer.Transfer(Proxy(), 64, "p");
        var twice = HyperparameterTransfer.Transfer(HyperparameterTransfer.Transfer(Proxy(), 32, "p").Config, 64, "p");
        foreach (var g in ParameterGroups.All)
        {
            Assert.Equal(once.Multipliers[g].InitVariance, twice.Multipliers[g].InitVariance, 15);
            Assert.Equal(once.Multipliers[g].Lr, twice.Multipliers[g].Lr, 15);
        }
        // Narrowing back undoes it.
        var back = HyperparameterTransfer.Transfer(once.Config, 16, "p", runOut: "out/back");
        foreach (var g in ParameterGroups.All) Assert.Equal((1.0, 1.0), back.Multipliers[g]);
        Assert.Equal("out/back", back.Config["out"]!.GetValue<string>());
        Assert.Equal(2, back.Config["model"]!["num_attention_heads"]!.GetValue<int>());
    }

    [Fact]
    public void TheTrainerInitialisesWithTheTransferredVariances()
    {
        var data = TrainingRuns.SyntheticData(40);
        var proxy = Proxy(data.Replace("\\", "/"), Fixtures.NewTempDir().Replace("\\", "/"));
        var target = HyperparameterTransfer.Transfer(proxy, 64, "p", runOut: Fixtures.NewTempDir().Replace("\\", "/"));
        using var t = Trainer.Create(TrainConfigFile.Parse(target.Config.ToJsonString(), "target"));
        double Std(string name)
        {
            var v = t.Model.Parameters[name].Value;
            double s = 0;
            foreach (var x in v) s += (double)x * x;
            return Math.Sqrt(s / v.Length);
        }
        // init std 0.05: the embedding keeps it, hidden / lm_head / router get 0.05 / sqrt(4) = 0.025.
        Assert.InRange(Std("model.embed_tokens.weight"), 0.045, 0.055);
        Assert.InRange(Std("lm_head.weight"), 0.0225, 0.0275);
        Assert.InRange(Std("model.layers.0.self_attn.0.q_b_proj.weight"), 0.0225, 0.0275);
        Assert.InRange(Std("model.layers.0.mlp.router.classifier.weight"), 0.0225, 0.0275);
        Assert.Equal(1f, t.Model.Parameters["model.norm.weight"].Value[0]);
        // And it trains.
        t.Run();
        Assert.True(TrainingRuns.Losses(t.Options.OutDir).All(double.IsFinite));
    }

    [Fact]
    public void BadRequestsAreNamed()
    {
        Assert.Contains("num_attention_heads = 2 x 20/16 = 2.5 is not an integer",
            Assert.Throws<ConfigException>(() => HyperparameterTransfer.Transfer(Proxy(), 20, "p")).Message);
        Assert.Contains("positive", Assert.Throws<ConfigException>(() => HyperparameterTransfer.Transfer(Proxy(), 0, "p")).Message);
        Assert.Contains("is not an integer", Assert.Throws<ConfigException>(() => HyperparameterTransfer.Transfer(Proxy(), 1, "p")).Message);
        var bad = Proxy();
        bad["optimizer"]!["lrr"] = 1;
        Assert.Contains("proxy.json: unknown key 'optimizer.lrr'", Assert.Throws<ConfigException>(() => HyperparameterTransfer.Transfer(bad, 64, "proxy.json")).Message);
        Assert.Contains("not found", Assert.Throws<ConfigException>(() => HyperparameterTransfer.TransferFile("/nonexistent/train.json", 64)).Message);
    }

    [Fact]
    public void CliWritesATrainableConfig()
    {
        var dir = Fixtures.NewTempDir();
        var proxyPath = Path.Combine(dir, "proxy.json");
        File.WriteAllText(proxyPath, "// a comment\n" + Proxy().ToJsonString());
        var outPath = Path.Combine(dir, "sub", "target.json");
        var (exit, stdout, err) = CliProcess.Run("transfer", "--proxy", proxyPath, "--width", "32", "--out", outPath);
        Assert.True(exit == 0, err);
        Assert.Contains("width 16 -> 32 (s = 2)", stdout);
        Assert.Contains("hidden       init variance x0.5, lr x0.5", stdout);
        Assert.Equal(32, TrainConfigFile.Load(outPath).Model.HiddenSize);
        (exit, _, err) = CliProcess.Run("transfer", "--proxy", proxyPath, "--width", "20", "--out", outPath);
        Assert.Equal(1, exit);
        Assert.StartsWith("longcat: error: width 20 is not a whole multiple of the proxy", err);
    }
}
