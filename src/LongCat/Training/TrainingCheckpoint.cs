using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using LongCat.Config;
using LongCat.Distributed;
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
/// <para>Sharded layout (ZeRO-1 over several MPI ranks, <see cref="SaveSharded"/>): instead of optimizer.safetensors,
/// each rank k of N writes its own range of the moments, <c>optimizer-0000k-of-0000N.safetensors</c> (tensors
/// <c>exp_avg</c> and <c>exp_avg_sq</c> over the flat floats [start, end) of the parameter layout), and rank 0 lists
/// them in <c>optimizer-shards.json</c> once every rank has written and flushed its shard; trainer_state.json is still
/// written last, then the folder renamed and latest replaced. <see cref="LoadMoments"/> reads either layout, for a
/// range of any size (elastic resume with another number of ranks).</para>
/// </summary>
public static unsafe partial class TrainingCheckpoint
{
    public const string LatestFile = "latest";
    const string Prefix = "step-";

    /// <summary>The sharded layout's list of optimizer shards (written by rank 0 after every shard is on disk).</summary>
    public const string ShardManifestFile = "optimizer-shards.json";
    const string ShardManifestFormat = "longcat optimizer shards 1";

    /// <summary>Test hook: called before each tensor is written (the crash-safety test slows writes down with it).</summary>
    public static Action? BeforeTensorWrite { get; set; }

    /// <summary>Test hook of <see cref="SaveSharded"/>: called on every rank once its part is on disk, before the commit (argument: the step).</summary>
    public static Action<long>? AfterShardWritten { get; set; }

    /// <summary>The file of rank <paramref name="rank"/>'s optimizer shard in a checkpoint written by <paramref name="ranks"/> ranks.</summary>
    public static string ShardFileName(int rank, int ranks) =>
        string.Create(CultureInfo.InvariantCulture, $"optimizer-{rank:D5}-of-{ranks:D5}.safetensors");

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
        Commit(root, tmp, name, state, keep);
        return final;
    }

    /// <summary>
    /// The commit of a checkpoint written into <paramref name="tmp"/>: trainer_state.json last (a folder with it is
    /// complete), flushed, then the folder renamed to its step's name (re-saving a step after a resume replaces the old
    /// folder only once the new one is complete), latest pointed at it, older checkpoints pruned.
    /// </summary>
    static void Commit(string root, string tmp, string name, TrainerState state, int keep)
    {
        WriteText(Path.Combine(tmp, "trainer_state.json"), state.ToJson());
        SyncDirectory(tmp);
        ReplaceDirectory(tmp, Path.Combine(root, name));
        WriteText(Path.Combine(root, LatestFile), name + "\n");
        SyncDirectory(root);
        Prune(root, keep, name);
    }

    /// <summary>
    /// Collective (every rank of <paramref name="comm"/>, each with its ZeRO-1 optimizer <paramref name="opt"/>): a
    /// checkpoint in the sharded layout. Rank 0 makes the temporary folder; every rank writes its moment shard into it
    /// (rank 0 also the model) and flushes it to disk; after a barrier (every shard complete) rank 0 checks the shards,
    /// writes optimizer-shards.json and trainer_state.json, renames the folder and replaces latest. A rank that dies
    /// before the barrier leaves the previous checkpoint as latest (the partial folder is removed by the next save).
    /// No rank ever holds more than its own range of the moments. <paramref name="beforeCommit"/> runs on rank 0 just
    /// before the commit. Returns the checkpoint folder.
    /// </summary>
    public static string SaveSharded(Communicator comm, string root, TrainerState state, ParameterStore p, AdamW opt,
        string? tokenizerDir, int keep, Action? beforeCommit = null)
    {
        const string producer = "longcat train";
        bool writer = comm.Rank == 0;
        string name = DirectoryName(state.Step), final = Path.Combine(root, name);
        Span<int> id = [Environment.ProcessId];
        comm.Broadcast(id, 0);   // the temporary folder carries rank 0's process id on every rank
        string tmp = Path.Combine(root, string.Create(CultureInfo.InvariantCulture, $".tmp-{name}-{id[0]}"));
        if (writer)
        {
            Directory.CreateDirectory(root);
            CleanLeftovers(root);
            Directory.CreateDirectory(tmp);
        }
        comm.Barrier();
        if (!Directory.Exists(tmp))
            throw new IOException($"rank {comm.Rank}: {tmp}, made by rank 0, is not visible here: with several machines the training out_dir must be on a file system every rank shares");

        var (lo, hi) = opt.Range;
        fixed (float* m = opt.OwnedFirstMoment, v = opt.OwnedSecondMoment)
            WriteF32(Path.Combine(tmp, ShardFileName(comm.Rank, comm.Size)),
                [("exp_avg", [hi - lo], (nint)m, hi - lo), ("exp_avg_sq", [hi - lo], (nint)v, hi - lo)],
                new()
                {
                    ["producer"] = producer, ["optimizer"] = "AdamW", ["step"] = state.AdamStep.ToString(CultureInfo.InvariantCulture),
                    ["rank"] = comm.Rank.ToString(CultureInfo.InvariantCulture), ["ranks"] = comm.Size.ToString(CultureInfo.InvariantCulture),
                    ["start"] = lo.ToString(CultureInfo.InvariantCulture), ["end"] = hi.ToString(CultureInfo.InvariantCulture),
                    ["length"] = p.Length.ToString(CultureInfo.InvariantCulture),
                });
        if (writer) WriteModelFolder(tmp, p, tokenizerDir, $"{producer}, step {state.Step}");
        AfterShardWritten?.Invoke(state.Step);

        // Every rank's shard is flushed to disk once every rank is past this barrier.
        Span<long> range = [lo, hi];
        var ranges = new long[2 * comm.Size];
        comm.Allgather<long>(range, ranges);
        if (writer)
        {
            var shards = new System.Text.Json.Nodes.JsonArray();
            for (int k = 0; k < comm.Size; k++)
            {
                string file = ShardFileName(k, comm.Size);
                if (!File.Exists(Path.Combine(tmp, file)))
                    throw new IOException($"rank {k}'s optimizer shard {file} is missing from {tmp}: with several machines the training out_dir must be on a file system every rank shares");
                shards.Add(new System.Text.Json.Nodes.JsonObject { ["file"] = file, ["start"] = ranges[2 * k], ["end"] = ranges[2 * k + 1] });
            }
            var manifest = new System.Text.Json.Nodes.JsonObject { ["format"] = ShardManifestFormat, ["length"] = p.Length, ["ranks"] = comm.Size, ["shards"] = shards };
            beforeCommit?.Invoke();
            WriteText(Path.Combine(tmp, ShardManifestFile), manifest.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
            Commit(root, tmp, name, state, keep);
        }
        comm.Barrier();   // committed for everyone
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

    /// <summary>
    /// Loads the Adam moments of <paramref name="dir"/> (either layout, written by any number of ranks) into
    /// <paramref name="opt"/>, for its range of <paramref name="p"/>'s layout.
    /// </summary>
    public static void LoadMoments(string dir, ParameterStore p, AdamW opt)
    {
        var (lo, hi) = opt.Range;
        LoadMomentRange(dir, p.Table, lo, hi, opt.OwnedFirstMoment, opt.OwnedSecondMoment);
    }

    /// <summary>Every Adam moment of <paramref name="dir"/> in the parameters' layout (non-trainable floats are 0), from either layout.</summary>
    public static (float[] First, float[] Second) ReadMoments(string dir, ParameterTable table)
    {
        var m = new float[table.Length];
        var v = new float[table.Length];
        LoadMomentRange(dir, table, 0, table.Length, m, v);
        return (m, v);
    }

    /// <summary>The moments of the flat floats [<paramref name="lo"/>, <paramref name="hi"/>) into <paramref name="m"/> and <paramref name="v"/>.</summary>
    static void LoadMomentRange(string dir, ParameterTable table, long lo, long hi, Span<float> m, Span<float> v)
    {
        if (File.Exists(Path.Combine(dir, ShardManifestFile)))
        {
            LoadShardedRange(dir, table, lo, hi, m, v);
            return;
        }
        var path = Path.Combine(dir, "optimizer.safetensors");
        using var f = SafeTensorFile.Open(path);
        // A sharded (ZeRO-1) optimizer takes the part of each tensor inside its range.
        foreach (var e in table.Entries)
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
                new ReadOnlySpan<float>((float*)t.Data + (from - e.Offset), target.Length).CopyTo(target);
            }
        }
    }

    /// <summary>The sharded layout: the parts of the shards listed in optimizer-shards.json that overlap [lo, hi).</summary>
    static void LoadShardedRange(string dir, ParameterTable table, long lo, long hi, Span<float> m, Span<float> v)
    {
        var manifestPath = Path.Combine(dir, ShardManifestFile);
        var shards = new List<(string File, long Start, long End)>();
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(manifestPath));
            var r = doc.RootElement;
            if (r.GetProperty("format").GetString() != ShardManifestFormat)
                throw new ModelFormatException($"{manifestPath}: format '{r.GetProperty("format").GetString()}' is not '{ShardManifestFormat}'");
            long length = r.GetProperty("length").GetInt64();
            if (length != table.Length)
                throw new ModelFormatException($"{manifestPath}: the shards cover {length} floats, this model's layout has {table.Length}");
            foreach (var s in r.GetProperty("shards").EnumerateArray())
                shards.Add((s.GetProperty("file").GetString()!, s.GetProperty("start").GetInt64(), s.GetProperty("end").GetInt64()));
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new ModelFormatException($"{manifestPath}: not a valid shard list ({e.Message})");
        }
        long next = 0;
        foreach (var (file, start, end) in shards)
        {
            if (start != next || end < start || file.Contains('/') || file.Contains('\\'))
                throw new ModelFormatException($"{manifestPath}: shard {file} [{start}, {end}) does not continue at {next}");
            next = end;
        }
        if (next != table.Length) throw new ModelFormatException($"{manifestPath}: the shards end at {next}, the layout at {table.Length}");
        foreach (var (file, start, end) in shards)
        {
            long from = Math.Max(lo, start), to = Math.Min(hi, end);
            if (from >= to) continue;
            var path = Path.Combine(dir, file);
            if (!File.Exists(path)) throw new ModelFormatException($"{dir}: optimizer shard {file} listed in {ShardManifestFile} is missing");
            using var f = SafeTensorFile.Open(path);
            foreach (var (name, dst) in new[] { ("exp_avg", 0), ("exp_avg_sq", 1) })
            {
                var t = f.Tensor(name).ExpectShape(end - start);
                if (t.DType != DType.F32) throw new ModelFormatException($"{path}: tensor '{name}' is {t.DType}, expected F32");
                var target = (dst == 0 ? m : v).Slice(checked((int)(from - lo)), checked((int)(to - from)));
                new ReadOnlySpan<float>((float*)t.Data + (from - start), target.Length).CopyTo(target);
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
