using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using LongCat.Config;

namespace LongCat.Training;

/// <summary>
/// Reads train.json into <see cref="TrainingOptions"/>, with <c>key.path=value</c> overrides (the CLI's --set). Every
/// key is checked: an unknown key, a wrong type or a value out of range is a <see cref="ConfigException"/> naming it.
/// "model" is a path to a config.json or the config object itself; relative paths are against the current directory.
/// </summary>
public static class TrainConfigFile
{
    /// <summary>Loads <paramref name="path"/> and applies <paramref name="overrides"/> ("optimizer.lr=1e-3").</summary>
    public static TrainingOptions Load(string path, IEnumerable<string>? overrides = null)
    {
        if (!File.Exists(path)) throw new ConfigException($"{path}: training config not found");
        return Parse(File.ReadAllText(path), path, overrides);
    }

    /// <summary>
    /// train.json text as a JSON object (comments and trailing commas allowed), with a "model" given as a config.json
    /// path replaced by that file's object, so --set model.hidden_size=... and config rewriters (transfer, grow) see
    /// one shape either way.
    /// </summary>
    public static JsonObject ReadObject(string json, string source)
    {
        JsonObject root;
        try
        {
            root = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip }) as JsonObject
                ?? throw new ConfigException($"{source}: the top level must be a JSON object");
        }
        catch (JsonException e) { throw new ConfigException($"{source}: invalid JSON: {e.Message}"); }
        if (root["model"] is JsonValue mv && mv.TryGetValue<string>(out var modelPath))
        {
            if (!File.Exists(modelPath)) throw new ConfigException($"{source}: model config '{modelPath}' not found");
            try { root["model"] = JsonNode.Parse(File.ReadAllText(modelPath)); }
            catch (JsonException e) { throw new ConfigException($"{modelPath}: invalid JSON: {e.Message}"); }
        }
        return root;
    }

    public static TrainingOptions Parse(string json, string source, IEnumerable<string>? overrides = null)
    {
        var root = ReadObject(json, source);
        foreach (var o in overrides ?? []) ApplyOverride(root, o);

        var r = new Section(root, "", source);
        var init = r.Object("init");
        string? initFrom = init.String("from", null);
        LongCatConfig model;
        if (root["model"] is JsonObject mo) model = LongCatConfig.Parse(mo.ToJsonString(), $"{source}: model");
        else if (root["model"] is null && initFrom is not null) model = LongCatConfig.Load(Path.Combine(initFrom, "config.json"));
        else throw new ConfigException($"{source}: 'model' must be a config.json path or a config object (or give init.from)");
        r.Seen("model");

        var data = r.Object("data");
        var opt = r.Object("optimizer");
        var sched = r.Object("schedule");
        var groups = r.Object("groups");
        var loss = r.Object("loss");
        var budget = r.Object("budget");
        var eval = r.Object("eval");
        var ck = r.Object("checkpoint");
        var log = r.Object("log");
        var faults = r.Object("faults");
        long steps = r.Long("steps", 100);
        double? ke = budget.NullableDouble("target_real_experts");

        var options = new TrainingOptions
        {
            Model = model,
            InitFrom = initFrom,
            InitStd = init.Double("std", 0.02),
            Mtp = init.Bool("mtp", false),
            InitVarianceMultipliers = groups.Object("init_variance_multipliers").PerGroup(),
            DataDir = data.String("dir", null) ?? throw new ConfigException($"{source}: data.dir is required (a folder made by 'longcat data prepare')"),
            SequenceLength = data.Int("seq_len", 128),
            BatchSize = data.Int("batch_size", 8),
            MicroBatchSize = data.NullableInt("micro_batch_size") ?? data.Int("batch_size", 8),
            Seed = (ulong)r.Long("seed", 1, min: 0),
            Steps = steps,
            OutDir = r.String("out", null) ?? throw new ConfigException($"{source}: 'out' (the run folder) is required"),
            Optimizer = new AdamWOptions
            {
                Beta1 = opt.Double("beta1", 0.9),
                Beta2 = opt.Double("beta2", 0.95),
                Epsilon = opt.Double("eps", 1e-16),
                WeightDecay = opt.Double("weight_decay", 0.1),
                LrMultipliers = groups.Object("lr_multipliers").PerGroup(),
            },
            GradClip = opt.Double("grad_clip", 1.0),
            Schedule = new LearningRateSchedule
            {
                Peak = opt.Double("lr", 3e-4),
                Kind = Enum(sched, "kind", "cosine", LearningRateSchedule.ParseKind),
                WarmupSteps = sched.Long("warmup_steps", 0),
                MinRatio = sched.Double("min_lr_ratio", 0.1),
                DecaySteps = sched.Long("decay_steps", Math.Max(0, steps / 5)),
                TotalSteps = steps,
            },
            Loss = new LossOptions
            {
                MtpWeight = loss.Double("mtp_weight", 0),
                LoadBalanceAlpha = loss.Double("load_balance_alpha", 0),
                LoadBalanceGroups = loss.Int("load_balance_groups", 1),
                HiddenZLossLambda = loss.Double("z_loss_lambda", 0),
                TargetRealExperts = ke,
            },
            MtpStartStep = loss.Long("mtp_start_step", 0),
            Budget = new BudgetControllerOptions
            {
                Enabled = budget.Bool("enabled", model.ZeroExpertNum > 0),
                TargetRealExperts = ke,
                Rate = budget.Double("rate", 1e-3),
                UpdateEvery = budget.Int("update_every", 1),
                Decay = Enum(budget, "decay", "constant", LearningRateSchedule.ParseKind),
                FinalRateRatio = budget.Double("final_rate_ratio", 0.1),
            },
            EvalEvery = eval.Int("every", 50),
            EvalBatches = eval.Int("batches", 4),
            CheckpointEvery = ck.Int("every", 100),
            CheckpointKeep = ck.Int("keep", 2),
            LogEvery = log.Int("every", 1),
            Plot = log.String("plot", "svg")!,
            InjectNanAtSteps = faults.LongArray("inject_nan_at_steps"),
            MaxConsecutiveFaults = faults.Int("max_consecutive", 10),
        };
        foreach (var s in new[] { r, init, data, opt, sched, groups, loss, budget, eval, ck, log, faults }) s.RejectUnknown();
        return options;
    }

    static T Enum<T>(Section s, string key, string dflt, Func<string, T> parse)
    {
        var v = s.String(key, dflt)!;
        try { return parse(v); }
        catch (ArgumentException e) { throw new ConfigException($"{s.Source}: {s.Path(key)}: {e.Message}"); }
    }

    /// <summary>"a.b.c=value": value is JSON when it parses as JSON, else a string.</summary>
    public static void ApplyOverride(JsonObject root, string assignment)
    {
        int eq = assignment.IndexOf('=');
        if (eq <= 0) throw new ConfigException($"--set '{assignment}': expected key.path=value");
        var keys = assignment[..eq].Trim().Split('.');
        string text = assignment[(eq + 1)..];
        JsonNode? value;
        try { value = JsonNode.Parse(text); }
        catch (JsonException) { value = JsonValue.Create(text); }
        JsonObject node = root;
        for (int i = 0; i < keys.Length - 1; i++)
        {
            if (keys[i].Length == 0) throw new ConfigException($"--set '{assignment}': empty key");
            if (node[keys[i]] is JsonObject child) node = child;
            else if (node[keys[i]] is null) { var c = new JsonObject(); node[keys[i]] = c; node = c; }
            else throw new ConfigException($"--set '{assignment}': '{string.Join('.', keys[..(i + 1)])}' is not an object");
        }
        node[keys[^1]] = value;
    }

    /// <summary>One JSON object of the config, remembering which keys were read.</summary>
    sealed class Section(JsonObject? obj, string prefix, string source)
    {
        readonly HashSet<string> _seen = new(StringComparer.Ordinal);
        public string Source => source;
        public string Path(string key) => prefix.Length == 0 ? key : prefix + "." + key;

        public void Seen(string key) => _seen.Add(key);

        JsonNode? Get(string key)
        {
            _seen.Add(key);
            return obj?[key];
        }

        ConfigException Bad(string key, JsonNode? v, string rule) => new($"{source}: invalid value for '{Path(key)}' ({v?.ToJsonString() ?? "null"}): {rule}");

        public Section Object(string key)
        {
            var v = Get(key);
            if (v is null) return new Section(null, Path(key), source);
            if (v is not JsonObject o) throw Bad(key, v, "must be an object");
            return new Section(o, Path(key), source);
        }

        public double Double(string key, double dflt) => NullableDouble(key) ?? dflt;

        public double? NullableDouble(string key)
        {
            var v = Get(key);
            if (v is null) return null;
            if (v is JsonValue jv && jv.TryGetValue<double>(out var d)) return d;
            if (v is JsonValue sv && sv.TryGetValue<string>(out var s) && double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out d)) return d;
            throw Bad(key, v, "must be a number");
        }

        public long Long(string key, long dflt, long min = long.MinValue)
        {
            var v = Get(key);
            if (v is null) return dflt;
            long x;
            if (v is JsonValue jv && jv.TryGetValue<long>(out x)) { }
            else if (v is JsonValue dv && dv.TryGetValue<double>(out var d) && d == Math.Floor(d) && Math.Abs(d) < 9e15) x = (long)d;
            else if (v is JsonValue sv && sv.TryGetValue<string>(out var s) && long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out x)) { }
            else throw Bad(key, v, "must be an integer");
            if (x < min) throw Bad(key, v, $"must be >= {min}");
            return x;
        }

        public int? NullableInt(string key) => obj?[key] is null ? (int?)(Get(key) is null ? null : 0) : Int(key, 0);

        public int Int(string key, int dflt)
        {
            long x = Long(key, dflt);
            if (x < int.MinValue || x > int.MaxValue) throw Bad(key, obj?[key], "is out of range");
            return (int)x;
        }

        public bool Bool(string key, bool dflt)
        {
            var v = Get(key);
            if (v is null) return dflt;
            if (v is JsonValue jv && jv.TryGetValue<bool>(out var b)) return b;
            if (v is JsonValue sv && sv.TryGetValue<string>(out var s) && bool.TryParse(s, out b)) return b;
            throw Bad(key, v, "must be true or false");
        }

        public string? String(string key, string? dflt)
        {
            var v = Get(key);
            if (v is null) return dflt;
            if (v is JsonValue jv && jv.TryGetValue<string>(out var s)) return s;
            throw Bad(key, v, "must be a string");
        }

        public long[] LongArray(string key)
        {
            var v = Get(key);
            if (v is null) return [];
            if (v is not JsonArray a) throw Bad(key, v, "must be an array of integers");
            return a.Select(n => n is JsonValue jv && jv.TryGetValue<long>(out var x) ? x : throw Bad(key, v, "must be an array of integers")).ToArray();
        }

        /// <summary>{"embedding": m, "hidden": m, ...}: one multiplier per group, 1 when absent.</summary>
        public double[] PerGroup()
        {
            var r = ParameterGroups.All.Select(g => Double(ParameterGroups.Key(g), 1.0)).ToArray();
            RejectUnknown();
            return r;
        }

        public void RejectUnknown()
        {
            if (obj is null) return;
            foreach (var (k, _) in obj)
                if (!_seen.Contains(k)) throw new ConfigException($"{source}: unknown key '{Path(k)}'");
        }
    }
}
