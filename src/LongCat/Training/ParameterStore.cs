using System.Runtime.InteropServices;
using LongCat.Config;
using LongCat.IO;
using LongCat.Model;

namespace LongCat.Training;

/// <summary>
/// A trainable model's parameters and gradients as two flat fp32 buffers (llm.c style) laid out by a
/// <see cref="ParameterTable"/>: an optimizer is one loop over <see cref="Length"/> floats and a checkpoint is one pass
/// over the table. The buffers are native, 64-byte aligned and never move, so <see cref="ParameterTensor.Weight"/>
/// views can feed the GEMM kernels directly.
/// </summary>
public sealed unsafe class ParameterStore : IDisposable, IParameterSource
{
    float* _values, _grads;
    readonly Dictionary<string, ParameterTensor> _tensors = new(StringComparer.Ordinal);

    public LongCatConfig Config { get; }
    public ParameterTable Table { get; }

    /// <summary>Floats in each buffer (padding between tensors included; padding stays zero).</summary>
    public long Length => Table.Length;

    /// <summary>A zero-filled store for <paramref name="config"/> laid out by <paramref name="table"/>.</summary>
    public ParameterStore(LongCatConfig config, ParameterTable table)
    {
        Config = config;
        Table = table;
        nuint bytes = checked((nuint)(Math.Max(1, table.Length) * sizeof(float)));
        _values = (float*)NativeMemory.AlignedAlloc(bytes, 64);
        _grads = (float*)NativeMemory.AlignedAlloc(bytes, 64);
        NativeMemory.Clear(_values, bytes);
        NativeMemory.Clear(_grads, bytes);
        foreach (var e in table.Entries)
            _tensors[e.Name] = new ParameterTensor(e, _values + e.Offset, _grads + e.Offset, this);
    }

    /// <summary>All parameter values (the optimizer's view); valid until <see cref="Dispose"/>.</summary>
    public float* ValuesPointer => Alive(_values);

    /// <summary>All gradients, same layout as <see cref="ValuesPointer"/>.</summary>
    public float* GradsPointer => Alive(_grads);

    float* Alive(float* p) => p != null ? p : throw new ObjectDisposedException(nameof(ParameterStore));

    /// <summary>The named tensor's views.</summary>
    public ParameterTensor this[string name] =>
        _tensors.TryGetValue(name, out var t) ? t : throw new KeyNotFoundException($"the parameter layout has no tensor '{name}'");

    public bool Contains(string name) => _tensors.ContainsKey(name);

    /// <summary>The named tensor as a module parameter, its shape checked against what the module expects.</summary>
    public Param Linear(string name, int rows, int cols)
    {
        var t = this[name];
        if (t.Entry.Shape.Length != 2 || t.Rows != rows || t.Cols != cols)
            throw new ModelFormatException($"parameter '{name}' has shape [{string.Join(", ", t.Entry.Shape)}], expected [{rows}, {cols}]");
        return t.Param;
    }

    public Param Vector(string name, int length)
    {
        var t = this[name];
        if (t.Entry.Shape.Length != 1 || t.Count != length)
            throw new ModelFormatException($"parameter '{name}' has shape [{string.Join(", ", t.Entry.Shape)}], expected [{length}]");
        return t.Param;
    }

    /// <summary>Sets every gradient to zero (backward passes accumulate).</summary>
    public void ZeroGrads() => NativeMemory.Clear(Alive(_grads), (nuint)(Length * sizeof(float)));

    /// <summary>
    /// A store initialised like <see cref="ModelInitializer"/> (same seed, same numbers as <c>longcat init</c> in F32):
    /// normal(0, std) linears, embedding, lm_head and router; unit norms; zero router bias.
    /// </summary>
    public static ParameterStore Random(LongCatConfig config, ulong seed, double std = 0.02, bool mtp = false)
    {
        var table = ParameterTable.Create(config, mtp);
        var store = new ParameterStore(config, table);
        var specs = CheckpointLayout.Tensors(config).Concat(mtp ? CheckpointLayout.Mtp(config) : []).ToArray();
        Kernels.Parallelism.For(specs.Length, i => ModelInitializer.Fill(specs[i], seed, std, store[specs[i].Name].Value));
        return store;
    }

    /// <summary>
    /// Reads a checkpoint folder (any stored dtype: F32, BF16, F16 or block-scaled FP8, widened to fp32). An MTP head
    /// is included when the checkpoint has one; a missing e_score_correction_bias reads as zeros.
    /// </summary>
    public static ParameterStore Load(string folder)
    {
        if (!Directory.Exists(folder)) throw new ModelFormatException($"{folder}: model folder not found");
        var config = LongCatConfig.Load(Path.Combine(folder, "config.json"));
        using var ck = Checkpoint.Open(folder);
        return FromCheckpoint(config, ck);
    }

    /// <summary>Copies (and widens) every tensor of <paramref name="checkpoint"/> into a new store.</summary>
    public static ParameterStore FromCheckpoint(LongCatConfig config, Checkpoint checkpoint)
    {
        CheckpointLayout.CheckTopology(config, checkpoint);
        bool mtp = checkpoint.Contains(MtpHead.Prefix + "layers.0.eh_proj.weight");
        bool ownEmbedding = mtp && checkpoint.Contains(MtpHead.Prefix + "embed_tokens.weight");
        var table = ParameterTable.Create(config, mtp, ownEmbedding);
        var store = new ParameterStore(config, table);
        try
        {
            var loader = new WeightLoader(checkpoint, config);
            foreach (var e in table.Entries)
            {
                var dst = store[e.Name];
                if (e.Shape.Length == 2)
                {
                    var w = loader.Linear(e.Name, e.Rows, e.Cols);
                    for (int r = 0; r < e.Rows; r++) w.DequantizeRow(r, dst.Value.Slice(r * e.Cols, e.Cols));
                }
                else if (e.Kind == TensorKind.RouterBias && !checkpoint.Contains(e.Name)) dst.Value.Clear();
                else
                {
                    var t = checkpoint.Tensor(e.Name).ExpectShape(e.Shape);
                    if (!DTypes.IsFloat(t.DType))
                        throw new ModelFormatException($"{t.File}: tensor '{e.Name}' has dtype {t.DType}, expected a float dtype");
                    t.CopyToFloat32(dst.Value);
                }
            }
            return store;
        }
        catch
        {
            store.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Writes <c>loss</c> (F32 scalar) and the gradient of every trainable tensor (F32, official names, experts one by
    /// one; no e_score_correction_bias) to a safetensors file, the format of the fixtures' grads.safetensors.
    /// </summary>
    public void SaveGradients(string path, float loss, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var w = new SafeTensorsWriter();
        if (metadata is not null) foreach (var (k, v) in metadata) w.Metadata[k] = v;
        w.AddF32("loss", [loss]);
        foreach (var e in Table.Entries)
            if (e.Trainable) w.AddF32(e.Name, this[e.Name].Grad, e.Shape);
        w.Save(path);
    }

    /// <summary>Writes the parameters as a checkpoint folder (config.json + model.safetensors, F32) in one pass.</summary>
    public void Save(string folder)
    {
        Directory.CreateDirectory(folder);
        var w = new SafeTensorsWriter();
        w.Metadata["format"] = "pt";
        foreach (var e in Table.Entries) w.AddF32(e.Name, this[e.Name].Value, e.Shape);
        w.Save(Path.Combine(folder, "model.safetensors"));
        File.WriteAllText(Path.Combine(folder, "config.json"), Config.ToJson() + "\n");
    }

    void Free()
    {
        if (_values != null) NativeMemory.AlignedFree(_values);
        if (_grads != null) NativeMemory.AlignedFree(_grads);
        _values = _grads = null;
    }

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    ~ParameterStore() => Free();
}
