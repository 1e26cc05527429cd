using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using LongCat.Config;
using LongCat.IO;

namespace LongCat.Training;

/// <summary>
/// Training checkpoints: a folder <c>step-NNNNNNNN</c> that is a model in the official HF layout (config.json,
/// generation_config.json, model.safetensors in F32; loadable by forward and generate; tokenizer.json when the data
/// has one) plus optimizer.safetensors (Adam moments exp_avg.NAME / exp_avg_sq.NAME) and trainer_state.json.
/// <para>Atomic: everything is written into a hidden temporary folder, each file flushed to disk, the folder renamed
/// to its final name (and the parent folder synced), and only then the <c>latest</c> pointer is replaced (temp file,
/// flush, rename). A crash at any point leaves the previous checkpoint and pointer intact; leftovers of an
/// interrupted write are removed by the next save.</para>
/// </summary>
public static unsafe partial class TrainingCheckpoint
{
    public const string LatestFile = "latest";
    const string Prefix = "step-";

    /// <summary>Test hook: called before each tensor is written (the crash-safety test slows writes down with it).</summary>
    public static Action? BeforeTensorWrite { get; set; }

    public static string DirectoryName(long step) => Prefix + step.ToString("D8", CultureInfo.InvariantCulture);

    /// <summary>Writes a checkpoint of <paramref name="state"/> into <paramref name="root"/> and points latest at it.</summary>
    public static string Save(string root, TrainerState state, ParameterStore p, AdamW opt, string? tokenizerDir, int keep) =>
        Save(root, state, p, opt.FirstMoment, opt.SecondMoment, tokenizerDir, keep);

    /// <summary>The same with the Adam moments given in the parameters' layout (e.g. gathered from ZeRO-1 shards).</summary>
    public static string Save(string root, TrainerState state, ParameterStore p, ReadOnlySpan<float> firstMoment, ReadOnlySpan<float> secondMoment, string? tokenizerDir, int keep)
    {
        var moments = new List<(string, long[], nint, long)>();
        fixed (float* m = firstMoment, v = secondMoment)
        {
            foreach (var e in p.Table.Entries)
                if (e.Trainable) moments.Add(("exp_avg." + e.Name, e.Shape, (nint)(m + e.Offset), e.Count));
            foreach (var e in p.Table.Entries)
                if (e.Trainable) moments.Add(("exp_avg_sq." + e.Name, e.Shape, (nint)(v + e.Offset), e.Count));
            return Save(root, state, p.Config, ModelTensors(p), moments, tokenizerDir, keep, "longcat train");
        }
    }

    /// <summary>
    /// <see cref="Save(string, TrainerState, ParameterStore, AdamW, string?, int)"/> from tensors anywhere in native memory
    /// (a store, or a memory-mapped checkpoint for <see cref="ModelGrowth"/>): the model's tensors in checkpoint order,
    /// then the moments (exp_avg.NAME..., exp_avg_sq.NAME...). The data must stay valid until this returns.
    /// </summary>
    internal static string Save(string root, TrainerState state, LongCatConfig config, List<(string Name, long[] Shape, nint Data, long Count)> model,
        List<(string Name, long[] Shape, nint Data, long Count)> moments, string? tokenizerDir, int keep, string producer)
    {
        Directory.CreateDirectory(root);
        CleanLeftovers(root);
        string name = DirectoryName(state.Step), final = Path.Combine(root, name);
        string tmp = Path.Combine(root, $".tmp-{name}-{Environment.ProcessId}");
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        Directory.CreateDirectory(tmp);

        WriteModelFolder(tmp, config, model, tokenizerDir, $"{producer}, step {state.Step}");
        WriteF32(Path.Combine(tmp, "optimizer.safetensors"), moments, new() { ["producer"] = producer, ["optimizer"] = "AdamW", ["step"] = state.AdamStep.ToString(CultureInfo.InvariantCulture) });
        // Last: a folder with trainer_state.json is complete.
        WriteText(Path.Combine(tmp, "trainer_state.json"), state.ToJson());
        SyncDirectory(tmp);

        // Re-saving a step (after a resume) replaces the old folder only once the new one is complete.
        ReplaceDirectory(tmp, final);
        WriteText(Path.Combine(root, LatestFile), name + "\n");
        SyncDirectory(root);
        Prune(root, keep, name);
        return final;
    }

    /// <summary>
    /// Writes the model alone (HF layout, F32, plus the tokenizer when known) to <paramref name="dir"/>, replacing what was
    /// there only once the new folder is complete.
    /// </summary>
    public static void ExportModel(string dir, ParameterStore p, string? tokenizerDir)
    {
        var full = Path.GetFullPath(dir);
        var parent = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(parent);
        var tmp = Path.Combine(parent, $".tmp-{Path.GetFileName(full)}-{Environment.ProcessId}");
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        Directory.CreateDirectory(tmp);
        WriteModelFolder(tmp, p, tokenizerDir, "longcat train");
        SyncDirectory(tmp);
        ReplaceDirectory(tmp, full);
    }

    /// <summary>The model part of a folder: model.safetensors (F32), config.json, generation_config.json, tokenizer files.</summary>
    static void WriteModelFolder(string dir, ParameterStore p, string? tokenizerDir, string producer) =>
        WriteModelFolder(dir, p.Config, ModelTensors(p), tokenizerDir, producer);

    static void WriteModelFolder(string dir, LongCatConfig config, List<(string Name, long[] Shape, nint Data, long Count)> model, string? tokenizerDir, string producer)
    {
        WriteF32(Path.Combine(dir, "model.safetensors"), model, new() { ["format"] = "pt", ["producer"] = producer });
        WriteText(Path.Combine(dir, "config.json"), config.ToJson() + "\n");
        WriteText(Path.Combine(dir, "generation_config.json"), config.GenerationConfigJson());
        if (tokenizerDir is not null)
            foreach (var f in new[] { "tokenizer.json", "tokenizer_config.json" })
                if (File.Exists(Path.Combine(tokenizerDir, f))) WriteBytes(Path.Combine(dir, f), File.ReadAllBytes(Path.Combine(tokenizerDir, f)));
    }

    /// <summary>Every tensor of <paramref name="p"/>, in table (checkpoint) order.</summary>
    static List<(string Name, long[] Shape, nint Data, long Count)> ModelTensors(ParameterStore p)
    {
        var model = new List<(string, long[], nint, long)>();
        foreach (var e in p.Table.Entries) model.Add((e.Name, e.Shape, (nint)(p.ValuesPointer + e.Offset), e.Count));
        return model;
    }

    /// <summary>
    /// Puts the complete folder <paramref name="tmp"/> at <paramref name="final"/>: an existing folder is moved aside
    /// first and deleted only after the new one is in place, so a crash never leaves neither.
    /// </summary>
    internal static void ReplaceDirectory(string tmp, string final)
    {
        var parent = Path.GetDirectoryName(final)!;
        if (Directory.Exists(final))
        {
            var old = Path.Combine(parent, $".old-{Path.GetFileName(final)}-{Environment.ProcessId}");
            Directory.Move(final, old);
            Directory.Move(tmp, final);
            Directory.Delete(old, true);
        }
        else Directory.Move(tmp, final);
        SyncDirectory(parent);
    }

    /// <summary>The folder <c>latest</c> points to under <paramref name="root"/>, or null when there is none.</summary>
    public static string? FindLatest(string root)
    {
        var pointer = Path.Combine(root, LatestFile);
        if (!File.Exists(pointer)) return null;
        var name = File.ReadAllText(pointer).Trim();
        var dir = Path.Combine(root, name);
        if (!name.StartsWith(Prefix, StringComparison.Ordinal) || !File.Exists(Path.Combine(dir, "trainer_state.json")))
            throw new InvalidDataException($"{pointer}: points to '{name}', which is not a complete checkpoint");
        return dir;
    }

    public static TrainerState ReadState(string dir)
    {
        var path = Path.Combine(dir, "trainer_state.json");
        if (!File.Exists(path)) throw new IOException($"{dir}: not a training checkpoint (no trainer_state.json)");
        return TrainerState.Parse(File.ReadAllText(path), path);
    }

    /// <summary>Loads the Adam moments of <paramref name="dir"/> into <paramref name="opt"/> (same layout as <paramref name="p"/>).</summary>
    public static void LoadMoments(string dir, ParameterStore p, AdamW opt)
    {
        var path = Path.Combine(dir, "optimizer.safetensors");
        using var f = SafeTensorFile.Open(path);
        // A sharded (ZeRO-1) optimizer takes the part of each tensor inside its range.
        var (lo, hi) = opt.Range;
        var m = opt.OwnedFirstMoment; var v = opt.OwnedSecondMoment;
        float[] whole = [];
        foreach (var e in p.Table.Entries)
        {
            if (!e.Trainable) continue;
            long from = Math.Max(lo, e.Offset), to = Math.Min(hi, e.Offset + e.Count);
            if (from >= to) continue;
            foreach (var (prefix, dst) in new[] { ("exp_avg.", 0), ("exp_avg_sq.", 1) })
            {
                if (!f.Contains(prefix + e.Name)) throw new ModelFormatException($"{path}: missing tensor '{prefix + e.Name}'");
                var t = f.Tensor(prefix + e.Name).ExpectShape(e.Shape);
                if (t.DType != DType.F32) throw new ModelFormatException($"{path}: tensor '{prefix + e.Name}' is {t.DType}, expected F32");
                var target = (dst == 0 ? m : v).Slice(checked((int)(from - lo)), checked((int)(to - from)));
                if (from == e.Offset && to == e.Offset + e.Count) t.CopyToFloat32(target);
                else
                {
                    if (whole.Length < e.Count) whole = new float[e.Count];
                    t.CopyToFloat32(whole.AsSpan(0, e.Count));
                    whole.AsSpan(checked((int)(from - e.Offset)), target.Length).CopyTo(target);
                }
            }
        }
    }

    static void Prune(string root, int keep, string current)
    {
        var all = Directory.GetDirectories(root, Prefix + "*").Select(Path.GetFileName).Where(n => n is not null).Order(StringComparer.Ordinal).ToList();
        all.Remove(current);
        for (int i = 0; i < all.Count - (keep - 1); i++) Directory.Delete(Path.Combine(root, all[i]!), true);
    }

    static void CleanLeftovers(string root)
    {
        foreach (var d in Directory.GetDirectories(root, ".tmp-*")) Directory.Delete(d, true);
        foreach (var d in Directory.GetDirectories(root, ".old-*"))
        {
            // An .old folder is only left when a crash hit between the two renames: restore it if its slot is empty.
            var name = Path.GetFileName(d)[5..];
            name = name[..name.LastIndexOf('-')];
            var final = Path.Combine(root, name);
            if (!Directory.Exists(final)) Directory.Move(d, final);
            else Directory.Delete(d, true);
        }
    }

    /// <summary>A safetensors file of F32 tensors streamed from native memory (no copy of the model in managed memory).</summary>
    static void WriteF32(string path, List<(string Name, long[] Shape, nint Data, long Count)> tensors, Dictionary<string, string> metadata)
    {
        var header = new Dictionary<string, object>(StringComparer.Ordinal) { ["__metadata__"] = metadata };
        long offset = 0;
        foreach (var t in tensors)
        {
            header[t.Name] = new Dictionary<string, object> { ["dtype"] = "F32", ["shape"] = t.Shape, ["data_offsets"] = new[] { offset, offset + t.Count * 4 } };
            offset += t.Count * 4;
        }
        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        int pad = (8 - json.Length % 8) % 8;
        using var fs = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
        fs.Write(BitConverter.GetBytes((ulong)(json.Length + pad)));
        fs.Write(json);
        for (int i = 0; i < pad; i++) fs.WriteByte((byte)' ');
        foreach (var t in tensors)
        {
            BeforeTensorWrite?.Invoke();
            byte* src = (byte*)t.Data;
            long bytes = t.Count * 4;
            for (long o = 0; o < bytes; o += 1 << 30)
                fs.Write(new ReadOnlySpan<byte>(src + o, (int)Math.Min(1 << 30, bytes - o)));
        }
        fs.Flush(flushToDisk: true);
    }

    static void WriteText(string path, string text) => WriteBytes(path, Encoding.UTF8.GetBytes(text));

    /// <summary>Temp file, flush to disk, rename over <paramref name="path"/>.</summary>
    static void WriteBytes(string path, byte[] data) => TokenDataWriter.AtomicWrite(path, data);

    /// <summary>fsync a folder so a rename inside it survives a power loss (Linux; elsewhere a no-op).</summary>
    internal static void SyncDirectory(string dir)
    {
        if (!OperatingSystem.IsLinux()) return;
        int fd = Open(dir, 0 /* O_RDONLY */);
        if (fd < 0) return;
        Fsync(fd);
        Close(fd);
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync")]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}
