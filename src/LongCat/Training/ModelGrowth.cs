using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using LongCat.Config;
using LongCat.IO;
using LongCat.Model;

namespace LongCat.Training;

/// <summary>
/// Model growth initialization (spec section 4, "Model growth"): a model of n layers, trained for a while, becomes a
/// model of k·n layers by stacking its layers, and training goes on from its whole state.
/// <code>
/// grown layer i = source layer (i mod n)        i = 0 .. k·n−1   (layers 1..n, then 1..n again)
/// </code>
/// <list type="number">
/// <item>find the training checkpoint (a checkpoint folder, or the latest one of a run folder);</item>
/// <item>the grown config is the source's with num_layers k·n;</item>
/// <item>every tensor of the grown layout comes from one source tensor: <c>model.layers.{i}.*</c> (attention,
/// dense FFNs, router classifier and e_score_correction_bias, experts) from <c>model.layers.{i mod n}.*</c>; the
/// embedding, the final norm, lm_head and the MTP head (<c>model.mtp.*</c>, not a numbered layer) as they are. Adam's
/// exp_avg and exp_avg_sq follow their tensors;</item>
/// <item>the trainer state is carried (step, Adam's t, data position, tokens, faults, seed, seq_len, batch sizes,
/// data size, so the schedule and the data order continue), with the grown model config and the budget controller's
/// uncommitted counts [L, E] stacked like the layers (the token count kept);</item>
/// <item>the result is a new run folder OUT holding OUT/checkpoints/step-N and its latest pointer, written by
/// <see cref="TrainingCheckpoint"/> into a temporary folder renamed into place when complete. Tensors stream from the
/// memory-mapped source files: nothing of the size of the model is held in memory.</item>
/// </list>
/// A stacked model computes another function than its source: the loss rises at first, then falls faster than from
/// a random init (the paper's observation).
/// </summary>
public static unsafe class ModelGrowth
{
    /// <summary>n layers become 2n, as in the paper.</summary>
    public const int DefaultFactor = 2;
    const string LayerPrefix = "model.layers.";

    /// <summary>
    /// The training checkpoint <paramref name="from"/> names: a checkpoint folder (trainer_state.json and
    /// optimizer.safetensors beside the model), or a run folder (or its checkpoints folder), meaning its latest one.
    /// </summary>
    public static string FindCheckpoint(string from)
    {
        if (!Directory.Exists(from)) throw new DirectoryNotFoundException($"{from}: folder not found");
        string dir = from;
        if (!File.Exists(Path.Combine(from, "trainer_state.json")))
        {
            var root = File.Exists(Path.Combine(from, TrainingCheckpoint.LatestFile)) ? from : Path.Combine(from, "checkpoints");
            dir = (File.Exists(Path.Combine(root, TrainingCheckpoint.LatestFile)) ? TrainingCheckpoint.FindLatest(root) : null)
                ?? throw new IOException($"{from}: not a training checkpoint (no trainer_state.json) nor a run folder (no checkpoints/latest)");
        }
        // The optimizer: one file, or per-rank shards listed in optimizer-shards.json (a checkpoint of an MPI run).
        var optimizer = File.Exists(Path.Combine(dir, TrainingCheckpoint.ShardManifestFile)) ? TrainingCheckpoint.ShardManifestFile : "optimizer.safetensors";
        foreach (var f in new[] { optimizer, "model.safetensors", "config.json" })
            if (!File.Exists(Path.Combine(dir, f))) throw new IOException($"{dir}: not a training checkpoint (no {f})");
        return dir;
    }

    /// <summary>The source config with <paramref name="factor"/> times its layers.</summary>
    public static LongCatConfig GrownConfig(LongCatConfig source, int factor)
    {
        if (factor < 2) throw new ArgumentException($"the growth factor must be >= 2, got {factor}");
        var grown = source with { NumLayers = checked(source.NumLayers * factor) };
        grown.Validate();
        return grown;
    }

    /// <summary>The source tensor of grown tensor <paramref name="name"/>: layer i's from layer i mod n, the rest itself.</summary>
    public static string SourceName(string name, int sourceLayers)
    {
        if (!name.StartsWith(LayerPrefix, StringComparison.Ordinal)) return name;
        int dot = name.IndexOf('.', LayerPrefix.Length);
        int layer = int.Parse(name.AsSpan(LayerPrefix.Length, dot - LayerPrefix.Length), NumberStyles.None, CultureInfo.InvariantCulture);
        return string.Create(CultureInfo.InvariantCulture, $"{LayerPrefix}{layer % sourceLayers}{name.AsSpan(dot)}");
    }

    /// <summary>The budget controller's state ([L·E] counts, then tokens) of the grown model: each layer's counts from its source layer.</summary>
    public static long[] GrowBudgetCounts(long[] counts, LongCatConfig source, int factor)
    {
        int n = source.NumLayers, e = source.NRoutedExperts;
        if (counts.Length != n * e + 1)
            throw new InvalidDataException($"budget_counts has {counts.Length} values, a model of {n} layers and {e} experts needs {n * e + 1}");
        var grown = new long[n * factor * e + 1];
        for (int l = 0; l < n * factor; l++) counts.AsSpan(l % n * e, e).CopyTo(grown.AsSpan(l * e, e));
        grown[^1] = counts[^1];
        return grown;
    }

    /// <summary>
    /// Grows the checkpoint <paramref name="from"/> names (see <see cref="FindCheckpoint"/>) <paramref name="factor"/>
    /// times into the new run folder <paramref name="outDir"/> (absent or empty). With <paramref name="trainConfig"/>
    /// (the source run's train.json) also writes <paramref name="trainConfigOut"/>, its copy for the grown run
    /// (<see cref="GrowTrainConfig"/>); the config is checked before anything is written.
    /// </summary>
    public static GrowthResult Grow(string from, string outDir, int factor = DefaultFactor, string? trainConfig = null, string? trainConfigOut = null)
    {
        if ((trainConfig is null) != (trainConfigOut is null)) throw new ArgumentException("the source train config and the grown one's path go together");
        var src = FindCheckpoint(from);
        var sourceConfig = LongCatConfig.Load(Path.Combine(src, "config.json"));
        var config = GrownConfig(sourceConfig, factor);
        var state = TrainingCheckpoint.ReadState(src);
        if (LongCatConfig.Parse(state.ModelConfig, Path.Combine(src, "trainer_state.json")).ToJson() != sourceConfig.ToJson())
            throw new InvalidDataException($"{src}: trainer_state.json's model_config is not config.json's");
        string? trainJson = null;
        if (trainConfig is not null)
        {
            if (!File.Exists(trainConfig)) throw new ConfigException($"{trainConfig}: training config not found");
            if (Path.GetFullPath(trainConfig) == Path.GetFullPath(trainConfigOut!))
                throw new ArgumentException($"{trainConfigOut}: would overwrite the source run's config; give another path");
            trainJson = GrowTrainConfig(File.ReadAllText(trainConfig), trainConfig, sourceConfig, config, outDir);
        }

        var full = Path.GetFullPath(outDir);
        if (File.Exists(full)) throw new IOException($"{outDir}: is a file, expected a new run folder");
        if (Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any())
            throw new IOException($"{outDir}: exists and is not empty (the grown run needs a new folder)");
        var parent = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(parent);
        var tmp = Path.Combine(parent, $".tmp-{Path.GetFileName(full)}-{Environment.ProcessId}");
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        Directory.CreateDirectory(tmp);
        var pins = new List<System.Runtime.InteropServices.GCHandle>();
        try
        {
            using var model = SafeTensorFile.Open(Path.Combine(src, "model.safetensors"));
            bool sharded = File.Exists(Path.Combine(src, TrainingCheckpoint.ShardManifestFile));
            using var optimizer = sharded ? null : SafeTensorFile.Open(Path.Combine(src, "optimizer.safetensors"));
            bool mtp = model.Contains(MtpHead.Prefix + "layers.0.eh_proj.weight");
            bool mtpEmbedding = mtp && model.Contains(MtpHead.Prefix + "embed_tokens.weight");
            var table = ParameterTable.Create(config, mtp, mtpEmbedding);
            var used = new HashSet<string>(StringComparer.Ordinal);
            var tensors = new List<(string, long[], nint, long)>();
            var moments = new List<(string, long[], nint, long)>();
            foreach (var e in table.Entries) tensors.Add(Stacked(model, "", e, sourceConfig.NumLayers, used));
            if (sharded)
            {
                // Per-rank shards: the source's moments in its flat layout (8 bytes per parameter in this process).
                var sourceTable = ParameterTable.Create(sourceConfig, mtp, mtpEmbedding);
                var (m, v) = TrainingCheckpoint.ReadMoments(src, sourceTable);
                foreach (var (prefix, flat) in new[] { ("exp_avg.", m), ("exp_avg_sq.", v) })
                {
                    var pin = System.Runtime.InteropServices.GCHandle.Alloc(flat, System.Runtime.InteropServices.GCHandleType.Pinned);
                    pins.Add(pin);
                    foreach (var e in table.Entries)
                        if (e.Trainable)
                            moments.Add((prefix + e.Name, e.Shape, pin.AddrOfPinnedObject() + (nint)(sourceTable[SourceName(e.Name, sourceConfig.NumLayers)].Offset * sizeof(float)), e.Count));
                }
            }
            else
                foreach (var prefix in new[] { "exp_avg.", "exp_avg_sq." })
                    foreach (var e in table.Entries)
                        if (e.Trainable) moments.Add(Stacked(optimizer!, prefix, e, sourceConfig.NumLayers, used));
            foreach (var f in sharded ? new[] { model } : [model, optimizer!])
                if (f.Tensors.Keys.FirstOrDefault(k => !used.Contains(k)) is { } unused)
                    throw new ModelFormatException($"{f.Path}: tensor '{unused}' is not part of a {sourceConfig.NumLayers}-layer model's layout");

            var grownState = state with { ModelConfig = config.ToJson(), BudgetCounts = GrowBudgetCounts(state.BudgetCounts, sourceConfig, factor) };
            var checkpoint = TrainingCheckpoint.Save(Path.Combine(tmp, "checkpoints"), grownState, config, tensors, moments, src, keep: 1, "longcat grow");
            TrainingCheckpoint.SyncDirectory(tmp);
            TrainingCheckpoint.ReplaceDirectory(tmp, full);
            if (trainJson is not null)
            {
                Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(trainConfigOut!))!);
                TokenDataWriter.AtomicWrite(trainConfigOut!, System.Text.Encoding.UTF8.GetBytes(trainJson));
            }
            return new GrowthResult(src, Path.Combine(full, "checkpoints", Path.GetFileName(checkpoint)), sourceConfig, config,
                model.Tensors.Values.Sum(t => t.ElementCount), tensors.Sum(t => t.Item4), grownState, trainJson is null ? null : trainConfigOut);
        }
        finally
        {
            foreach (var pin in pins) pin.Free();
            if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        }
    }

    /// <summary>Grown tensor <paramref name="prefix"/> + e.Name, pointing into the source file's mapping.</summary>
    static (string, long[], nint, long) Stacked(SafeTensorFile f, string prefix, ParameterEntry e, int sourceLayers, HashSet<string> used)
    {
        var name = prefix + SourceName(e.Name, sourceLayers);
        var t = f.Tensor(name).ExpectShape(e.Shape);
        if (t.DType != DType.F32) throw new ModelFormatException($"{f.Path}: tensor '{name}' is {t.DType}, a training checkpoint's tensors are F32");
        used.Add(name);
        return (prefix + e.Name, e.Shape, (nint)t.Data, e.Count);
    }

    /// <summary>
    /// The source run's train.json (<paramref name="json"/>, comments allowed) for the grown run: the model with
    /// num_layers grown (a model object, or a model path inlined as its file's object, keeps its other keys; a
    /// model taken from init.from becomes the grown config object and init.from goes: the grown checkpoint is the start), and "out" set to
    /// <paramref name="outDir"/>. Everything else is kept (data, seed, batch sizes, steps: what a resume checks). The
    /// source config must describe <paramref name="sourceModel"/>. Plain JSON (comments are not kept).
    /// </summary>
    public static string GrowTrainConfig(string json, string source, LongCatConfig sourceModel, LongCatConfig grown, string outDir)
    {
        var o = TrainConfigFile.Parse(json, source);
        if (o.InitFrom is null && o.Model.ToJson() != sourceModel.ToJson())
            throw new ConfigException($"{source}: its model is not the checkpoint's model (is it the config of the run that wrote the checkpoint?)");
        var root = TrainConfigFile.ReadObject(json, source);
        if (root["model"] is JsonObject model && root["init"]?["from"] is null)
        {
            var key = model.ContainsKey("num_layers") || !model.ContainsKey("num_hidden_layers") ? "num_layers" : "num_hidden_layers";
            model[key] = grown.NumLayers;
        }
        else
        {
            root["model"] = JsonNode.Parse(grown.ToJson());
            (root["init"] as JsonObject)?.Remove("from");
        }
        root["out"] = outDir;
        var text = root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
        if (TrainConfigFile.Parse(text, source).Model.ToJson() != grown.ToJson())
            throw new InvalidOperationException($"{source}: the grown config's model is not the grown model");
        return text;
    }
}
