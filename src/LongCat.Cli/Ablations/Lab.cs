using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using LongCat.Cli.Commands;
using LongCat.Tokenization;
using LongCat.Training;

namespace LongCat.Cli.Ablations;

/// <summary>One training step's monitors, as read back from metrics.jsonl.</summary>
public sealed record StepPoint(long Step, long Tokens, double Ce, double RealExperts, double ExpertsStd, double HiddenMaxAbs, double GradRms, double Lr);

/// <summary>A finished training run of an ablation: its curves and the numbers the tables use.</summary>
public sealed record RunResult(string Label, string Dir, JsonObject Config, IReadOnlyList<StepPoint> Steps, IReadOnlyList<(long Step, double Loss)> Validation, double Seconds)
{
    /// <summary>The validation loss after the last step (the last validation line).</summary>
    public double FinalValLoss => Validation.Count == 0 ? double.NaN : Validation[^1].Loss;
    public long Tokens => Steps.Count == 0 ? 0 : Steps[^1].Tokens;

    /// <summary>Mean of <paramref name="f"/> over the last <paramref name="fraction"/> of the steps.</summary>
    public double Tail(Func<StepPoint, double> f, double fraction = 0.2)
    {
        int n = Math.Max(1, (int)(Steps.Count * fraction));
        return Steps.Skip(Steps.Count - n).Average(f);
    }

    public double TailStd(Func<StepPoint, double> f, double fraction = 0.2)
    {
        int n = Math.Max(1, (int)(Steps.Count * fraction));
        var xs = Steps.Skip(Steps.Count - n).Select(f).ToArray();
        double m = xs.Average();
        return Math.Sqrt(xs.Sum(x => (x - m) * (x - m)) / xs.Length);
    }
}

/// <summary>
/// The shared bench of the ablations: the corpus (data/python-docs, tokenized with a 2048-token BPE trained on it),
/// the base model and training config every ablation varies, and a content-addressed run cache: a run is identified
/// by the hash of its config, so ablations that share a variant (the base run appears in most) train it once, and an
/// interrupted ablation picks up where it stopped. Every run is bitwise deterministic, so a cached run is the run,
/// as long as the code that made it is the code running now: the cache key therefore includes
/// <see cref="EngineVersion"/>, a hash of the compiled engine (LongCat.dll) and of this command (longcat.dll, which
/// holds the ablations' own training bodies), so a run made by older code is never reported as measured.
/// </summary>
public sealed class Lab
{
    public string Root { get; }
    public string Corpus { get; }
    public long Steps { get; }
    public TextWriter Log { get; }
    const int Vocab = 2048;

    public Lab(string root, string corpus, long steps, TextWriter log)
    {
        if (steps < 10) throw new CliException($"--steps must be at least 10, got {steps}");
        if (!File.Exists(corpus)) throw new CliException($"--corpus: {corpus} not found (the repository ships data/python-docs/corpus.jsonl.gz)");
        Root = root; Corpus = corpus; Steps = steps; Log = log;
    }

    public static string F(double x, int digits = 4) => double.IsFinite(x) ? x.ToString("F" + digits, CultureInfo.InvariantCulture) : "n/a";
    public static string G(double x) => x.ToString("G3", CultureInfo.InvariantCulture).Replace("E-0", "e-").Replace("E-", "e-").Replace("E+0", "e+").Replace("E+", "e+");

    /// <summary>The prepared data folder (made on first use: tokenizer training ~3 s, tokenizing ~1 s).</summary>
    public string DataDir
    {
        get
        {
            var dir = Path.Combine(Root, "data");
            if (File.Exists(Path.Combine(dir, "meta.json"))) return dir;
            var tok = Path.Combine(Root, "tokenizer");
            Log.WriteLine($"ablate: training a {Vocab}-token BPE on {Corpus} and preparing {dir}");
            var model = BpeTrainer.TrainFiles([Corpus], new BpeTrainerOptions { VocabSize = Vocab });
            TokenizerWriter.Save(model, tok);
            TokenDataWriter.Prepare(tok, [Corpus], dir, new DataPrepareOptions { ValidationFraction = 0.03, Seed = 1 });
            return dir;
        }
    }

    /// <summary>
    /// The base: a 2-layer LongCat-Flash at width 128 (MLA with 4 heads, dense FFN 320, 16 real experts of 64 plus 8
    /// zero-computation experts, top-4 with a budget of 3 real experts per token), 16 x 128 tokens per step, AdamW
    /// (eps 1e-16), warmup + cosine, hidden z-loss 1e-6, load-balance loss 1e-3.
    /// </summary>
    public JsonObject BaseConfig() => (JsonObject)JsonNode.Parse($$"""
        {
          "model": {
            "vocab_size": {{Vocab}}, "hidden_size": 128, "num_layers": 2, "num_attention_heads": 4,
            "q_lora_rank": 64, "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
            "ffn_hidden_size": 320, "expert_ffn_hidden_size": 64,
            "n_routed_experts": 16, "zero_expert_num": 8, "moe_topk": 4, "routed_scaling_factor": 4.0,
            "rope_theta": 10000.0, "max_position_embeddings": 1024
          },
          "init": { "std": 0.02, "mtp": false },
          "data": { "dir": "", "seq_len": 128, "batch_size": 16, "micro_batch_size": 16 },
          "seed": 1,
          "steps": {{Steps}},
          "out": "",
          "optimizer": { "lr": 3e-3, "beta1": 0.9, "beta2": 0.95, "eps": 1e-16, "weight_decay": 0.1, "grad_clip": 1.0 },
          "schedule": { "kind": "cosine", "warmup_steps": {{Math.Max(1, Steps / 10)}}, "min_lr_ratio": 0.1 },
          "loss": { "load_balance_alpha": 0.001, "load_balance_groups": 1, "z_loss_lambda": 1e-6 },
          "budget": { "enabled": true, "target_real_experts": 3.0, "rate": 0.05, "decay": "cosine", "final_rate_ratio": 0.1 },
          "eval": { "every": {{Math.Max(1, Steps / 4)}}, "batches": 16 },
          "checkpoint": { "every": 0, "keep": 1 },
          "log": { "every": 1, "plot": "none" }
        }
        """)!.AsObject();

    /// <summary>A copy of <paramref name="config"/> with "a.b=value" overrides applied (as train --set).</summary>
    public static JsonObject With(JsonObject config, params string[] overrides)
    {
        var c = (JsonObject)config.DeepClone();
        foreach (var o in overrides) TrainConfigFile.ApplyOverride(c, o);
        return c;
    }

    /// <summary>Removes key <paramref name="path"/> ("budget.target_real_experts") from a copy of the config.</summary>
    public static JsonObject Without(JsonObject config, string path)
    {
        var c = (JsonObject)config.DeepClone();
        var keys = path.Split('.');
        JsonObject node = c;
        foreach (var k in keys[..^1]) node = node[k] as JsonObject ?? throw new ArgumentException(path);
        node.Remove(keys[^1]);
        return c;
    }

    /// <summary>
    /// The version of the code a run is made by: a hash of the module version ids (MVIDs) of the engine assembly
    /// (LongCat.dll: model, kernels, trainer) and of the CLI assembly (the ablations' own run bodies). The builds are
    /// deterministic, so an MVID is a hash of the compiled assembly: it changes whenever the compiled code does (a
    /// kernel's summation order, an optimizer fix) and never otherwise, with nothing for a developer to remember to bump.
    /// A bench or server change also starts a fresh cache (the CLI assembly changed): recomputed runs are the price of
    /// never reporting a run by older code as measured.
    /// </summary>
    public static readonly string EngineVersion = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(
        typeof(Trainer).Assembly.ManifestModule.ModuleVersionId.ToString("N") + typeof(Lab).Assembly.ManifestModule.ModuleVersionId.ToString("N"))))[..16];

    /// <summary>The engine's informational version (e.g. "1.0.0+commit") beside <see cref="EngineVersion"/>, for the reports.</summary>
    public static string EngineDescription =>
        $"LongCat.NET {System.Reflection.CustomAttributeExtensions.GetCustomAttribute<System.Reflection.AssemblyInformationalVersionAttribute>(typeof(Trainer).Assembly)?.InformationalVersion ?? "?"}, build {EngineVersion}";

    static string Hash(JsonObject config, string? variant)
    {
        var c = (JsonObject)config.DeepClone();
        c.Remove("out");
        if (variant is not null) c["variant"] = variant;
        c["engine"] = EngineVersion;
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(c.ToJsonString())))[..16];
    }

    /// <summary>The run folder a config trains into (runs/HASH).</summary>
    public string RunDir(JsonObject config, string? variant = null) => Path.Combine(Root, "runs", Hash(config, variant));

    /// <summary>
    /// Trains <paramref name="config"/> (data.dir and out are filled in) unless the cache has it, and returns its
    /// curves. <paramref name="body"/> (given the filled-in config and the label) replaces the plain
    /// <see cref="Trainer.Run"/> when a run needs steps of its own; such a run names its <paramref name="variant"/>,
    /// which is part of the cache key (its config alone is the plain run's).
    /// </summary>
    public RunResult Run(string label, JsonObject config, Action<JsonObject, string>? body = null, string? variant = null)
    {
        if ((body is null) != (variant is null)) throw new ArgumentException("a run with its own body needs a variant name, and only then");
        var c = (JsonObject)config.DeepClone();
        ((JsonObject)c["data"]!)["dir"] = DataDir;
        var dir = RunDir(c, variant);
        c["out"] = dir;
        var done = Path.Combine(dir, "done.json");
        if (File.Exists(done))
        {
            var d = JsonNode.Parse(File.ReadAllText(done))!.AsObject();
            if (JsonNode.DeepEquals(d["config"], c) && d["variant"]?.GetValue<string>() == variant && d["engine"]?.GetValue<string>() == EngineVersion)
            {
                Log.WriteLine($"ablate: {label}: cached ({dir})");
                return Read(label, dir, c, d["seconds"]!.GetValue<double>());
            }
        }
        if (Directory.Exists(dir)) Directory.Delete(dir, true);
        Directory.CreateDirectory(dir);
        Log.WriteLine($"ablate: {label}: training ({dir})");
        var sw = Stopwatch.StartNew();
        (body ?? TrainPlain)(c, label);
        double seconds = sw.Elapsed.TotalSeconds;
        File.WriteAllText(done + ".tmp", new JsonObject { ["label"] = label, ["variant"] = variant, ["engine"] = EngineVersion, ["seconds"] = seconds, ["config"] = c.DeepClone() }.ToJsonString());
        File.Move(done + ".tmp", done, overwrite: true);
        return Read(label, dir, c, seconds);
    }

    void TrainPlain(JsonObject c, string label)
    {
        using var t = Trainer.Create(TrainConfigFile.Parse(c.ToJsonString(), label));
        Attach(t, label);
        t.Run();
    }

    /// <summary>Progress lines of a trainer: every quarter of the run and every validation.</summary>
    public void Attach(Trainer t, string label)
    {
        long every = Math.Max(1, t.Options.Steps / 4);
        t.StepCompleted += m =>
        {
            if (m.Step % every == 0 || m.Step == 1)
                Log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"ablate: {label}: step {m.Step}/{m.TotalSteps} ce {m.CrossEntropy:F4} experts/token {m.MeanRealExperts:F2} {m.TokensPerSecond:F0} tok/s"));
        };
        t.Validated += (s, l) => Log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ablate: {label}: step {s} validation loss {l:F4}"));
    }

    /// <summary>Reads a run folder's metrics.jsonl (the last entry wins for a step written twice by a resume).</summary>
    public static RunResult Read(string label, string dir, JsonObject config, double seconds)
    {
        var steps = new SortedDictionary<long, StepPoint>();
        var val = new SortedDictionary<long, double>();
        foreach (var line in File.ReadLines(Path.Combine(dir, "metrics.jsonl")))
        {
            using var d = JsonDocument.Parse(line);
            var r = d.RootElement;
            long step = r.GetProperty("step").GetInt64();
            if (r.TryGetProperty("val_loss", out var v)) { val[step] = Num(v); continue; }
            if (!r.TryGetProperty("ce", out var ce)) continue;
            static double Mean(JsonElement a) { double s = 0; int n = 0; foreach (var x in a.EnumerateArray()) { s += Num(x); n++; } return n == 0 ? 0 : s / n; }
            steps[step] = new StepPoint(step, r.GetProperty("tokens").GetInt64(), Num(ce), Mean(r.GetProperty("experts_mean")),
                Mean(r.GetProperty("experts_std")), Num(r.GetProperty("hidden_max_abs")), Num(r.GetProperty("grad_rms")), Num(r.GetProperty("lr")));
        }
        return new RunResult(label, dir, config, steps.Values.ToList(), val.Select(kv => (kv.Key, kv.Value)).ToList(), seconds);
    }

    static double Num(JsonElement e) => e.ValueKind == JsonValueKind.Number ? e.GetDouble() : double.NaN;

    /// <summary>Activated real-expert FLOPs per token of a config at <paramref name="realExperts"/> per token and layer
    /// (forward, 2 FLOPs per multiply-add, 3 matrices per SwiGLU expert).</summary>
    public static double ExpertFlops(JsonObject config, double realExperts)
    {
        var m = config["model"]!;
        return 2.0 * 3 * m["hidden_size"]!.GetValue<double>() * m["expert_ffn_hidden_size"]!.GetValue<double>() * realExperts * m["num_layers"]!.GetValue<double>();
    }
}
