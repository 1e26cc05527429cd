using System.IO.MemoryMappedFiles;
using System.Text;
using System.Text.Json;

namespace LongCat.IO;

/// <summary>One tensor's entry in a safetensors header.</summary>
/// <param name="Name">Tensor name.</param>
/// <param name="DType">Stored element type.</param>
/// <param name="Shape">Dimensions, outermost first.</param>
/// <param name="Begin">Byte offset of the data, relative to the start of the data section.</param>
/// <param name="End">One past the last byte, relative to the data section.</param>
public sealed record TensorInfo(string Name, DType DType, long[] Shape, long Begin, long End)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
    public long ByteLength => End - Begin;
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>
/// A memory-mapped safetensors file. The header is validated completely at open (dtypes, shapes, offsets
/// in range, sizes consistent, no overlaps), so every later read is in bounds. Data stays in the mapping in
/// its stored dtype; <see cref="Tensor"/> hands out views.
/// </summary>
public sealed unsafe class SafeTensorFile : IDisposable
{
    /// <summary>The format's own limit on header size (100 MB); a larger claim is a corrupt file.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    readonly MemoryMappedFile? _mmf;
    readonly MemoryMappedViewAccessor? _view;
    readonly byte* _base;
    readonly long _dataStart;
    readonly Dictionary<string, TensorInfo> _tensors;

    public string Path { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    public IReadOnlyDictionary<string, TensorInfo> Tensors => _tensors;
    public long FileLength { get; }

    SafeTensorFile(string path, MemoryMappedFile? mmf, MemoryMappedViewAccessor? view, byte* basePtr, long length,
        long dataStart, Dictionary<string, TensorInfo> tensors, Dictionary<string, string> meta)
    {
        Path = path; _mmf = mmf; _view = view; _base = basePtr; FileLength = length;
        _dataStart = dataStart; _tensors = tensors; Metadata = meta;
    }

    /// <summary>Opens and validates <paramref name="path"/>; throws <see cref="ModelFormatException"/> on any defect.</summary>
    public static SafeTensorFile Open(string path)
    {
        if (Directory.Exists(path))
            throw new ModelFormatException($"{path}: is a folder, expected a .safetensors file");
        if (!File.Exists(path))
            throw new ModelFormatException($"{path}: file not found");
        long length = new FileInfo(path).Length;
        if (length < 8)
            throw new ModelFormatException($"{path}: truncated safetensors file ({length} bytes; the 8-byte header length is missing)");
        MemoryMappedFile? mmf = null;
        MemoryMappedViewAccessor view;
        try
        {
            mmf = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            view = mmf.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            // ArgumentException: the file shrank to 0 bytes (or below `length`) after we measured it.
            mmf?.Dispose();
            throw new ModelFormatException($"{path}: cannot open: {e.Message}", e);
        }
        byte* p = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        p += view.PointerOffset;
        try
        {
            var (dataStart, tensors, meta) = ParseHeader(path, new ReadOnlySpan<byte>(p, (int)Math.Min(length, int.MaxValue)), length);
            return new SafeTensorFile(path, mmf, view, p, length, dataStart, tensors, meta);
        }
        catch
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
            view.Dispose();
            mmf.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Validates a whole safetensors image held in memory (header and bounds) and returns its entries.
    /// Used by <see cref="Open"/>; public so that fuzzing and tools can check bytes without a file.
    /// </summary>
    public static (long DataStart, Dictionary<string, TensorInfo> Tensors, Dictionary<string, string> Metadata) ParseHeader(
        string path, ReadOnlySpan<byte> file, long fileLength)
    {
        // `file` must hold at least the length prefix and the header; `fileLength` may exceed it (files over 2 GiB).
        if (fileLength < 8 || file.Length < 8)
            throw new ModelFormatException($"{path}: truncated safetensors file ({Math.Min(fileLength, file.Length)} bytes; the 8-byte header length is missing)");
        ulong n = BitConverter.ToUInt64(file[..8]);
        if (n > MaxHeaderBytes)
            throw new ModelFormatException($"{path}: header length {n} exceeds the format's limit of {MaxHeaderBytes} bytes (corrupt or not a safetensors file)");
        if ((long)n > fileLength - 8 || (long)n > file.Length - 8)
            throw new ModelFormatException($"{path}: header length {n} is larger than the file ({Math.Min(fileLength, file.Length)} bytes): truncated or corrupt");
        if (n < 2)
            throw new ModelFormatException($"{path}: header of {n} bytes cannot hold a JSON object");
        long dataStart = 8 + (long)n;
        long dataLen = fileLength - dataStart;
        var headerBytes = file.Slice(8, (int)n);

        JsonDocument doc;
        try
        {
            // Strict UTF-8 first: System.Text.Json replaces invalid sequences silently otherwise.
            _ = new UTF8Encoding(false, true).GetCharCount(headerBytes);
            // Duplicate keys are allowed by the parser but rejected in ParseRoot/ParseEntry, naming the tensor.
            doc = JsonDocument.Parse(headerBytes.ToArray(), new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (Exception e) when (e is JsonException or DecoderFallbackException or ArgumentException or InvalidOperationException)
        {
            throw new ModelFormatException($"{path}: invalid header JSON: {e.Message}", e);
        }
        using (doc)
        {
            try { return ParseRoot(path, doc.RootElement, dataStart, dataLen); }
            catch (InvalidOperationException e)
            {
                // JsonElement.GetString / property names throw this for escapes that are not valid UTF-16
                // (a lone surrogate such as "\ud800"): valid JSON syntax, but not a name we can use.
                throw new ModelFormatException($"{path}: invalid header JSON: {e.Message}", e);
            }
        }
    }

    static (long, Dictionary<string, TensorInfo>, Dictionary<string, string>) ParseRoot(string path, JsonElement root, long dataStart, long dataLen)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException($"{path}: header must be a JSON object, found {root.ValueKind}");
        var tensors = new Dictionary<string, TensorInfo>(StringComparer.Ordinal);
        var meta = new Dictionary<string, string>(StringComparer.Ordinal);
        // Duplicate keys are errors: readers that keep the first and readers that keep the last one would see
        // different files.
        bool sawMetadata = false;
        foreach (var prop in root.EnumerateObject())
        {
            if (prop.Name == "__metadata__")
            {
                if (sawMetadata)
                    throw new ModelFormatException($"{path}: __metadata__ appears twice in the header");
                sawMetadata = true;
                if (prop.Value.ValueKind != JsonValueKind.Object)
                    throw new ModelFormatException($"{path}: __metadata__ must be an object of strings");
                foreach (var m in prop.Value.EnumerateObject())
                {
                    if (m.Value.ValueKind != JsonValueKind.String)
                        throw new ModelFormatException($"{path}: __metadata__ value '{m.Name}' must be a string");
                    if (!meta.TryAdd(m.Name, m.Value.GetString()!))
                        throw new ModelFormatException($"{path}: __metadata__ key '{m.Name}' appears twice");
                }
                continue;
            }
            if (tensors.ContainsKey(prop.Name))
                throw new ModelFormatException($"{path}: tensor '{prop.Name}' appears twice in the header");
            tensors[prop.Name] = ParseEntry(path, prop.Name, prop.Value, dataLen);
        }
        CheckOverlaps(path, tensors.Values);
        return (dataStart, tensors, meta);
    }

    static TensorInfo ParseEntry(string path, string name, JsonElement e, long dataLen)
    {
        string Where() => $"{path}: tensor '{name}'";
        if (e.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException($"{Where()}: entry must be an object with dtype, shape, data_offsets");
        // Two "dtype" or two "data_offsets" would make the entry mean different things to different readers.
        var keys = new HashSet<string>(StringComparer.Ordinal);
        foreach (var p in e.EnumerateObject())
            if (!keys.Add(p.Name))
                throw new ModelFormatException($"{Where()}: key '{p.Name}' appears twice");
        if (!e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String)
            throw new ModelFormatException($"{Where()}: missing or non-string 'dtype'");
        var dtName = dt.GetString()!;
        if (!DTypes.TryParse(dtName, out var dtype))
            throw new ModelFormatException($"{Where()}: unknown dtype '{dtName}' (known: {string.Join(", ", Enum.GetNames<DType>())})");
        if (!e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw new ModelFormatException($"{Where()}: missing or non-array 'shape'");
        // Rank first, then allocate: a 100 MB header could otherwise ask for a 400 MB shape array.
        int rank = sh.GetArrayLength();
        if (rank > 8)
            throw new ModelFormatException($"{Where()}: shape has {rank} dimensions (at most 8 supported)");
        var shape = new long[rank];
        long count = 1;
        int i = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out var v) || v < 0)
                throw new ModelFormatException($"{Where()}: shape entries must be non-negative integers, found {d.GetRawText()}");
            shape[i++] = v;
            if (v != 0 && count > long.MaxValue / v / 8)
                throw new ModelFormatException($"{Where()}: shape {d.GetRawText()} overflows");
            count *= v;
        }
        if (!e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new ModelFormatException($"{Where()}: 'data_offsets' must be an array [begin, end]");
        long[] be = new long[2];
        i = 0;
        foreach (var d in off.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out var v) || v < 0)
                throw new ModelFormatException($"{Where()}: data_offsets must be non-negative integers, found {d.GetRawText()}");
            be[i++] = v;
        }
        if (be[1] < be[0])
            throw new ModelFormatException($"{Where()}: data_offsets [{be[0]}, {be[1]}] end before they begin");
        if (be[1] > dataLen)
            throw new ModelFormatException($"{Where()}: data_offsets [{be[0]}, {be[1]}] out of range: the data section has {dataLen} bytes (truncated file?)");
        long expect = count * DTypes.SizeOf(dtype);
        if (be[1] - be[0] != expect)
            throw new ModelFormatException($"{Where()}: {be[1] - be[0]} bytes of data but dtype {dtName} shape [{string.Join(", ", shape)}] needs {expect}");
        return new TensorInfo(name, dtype, shape, be[0], be[1]);
    }

    static void CheckOverlaps(string path, IEnumerable<TensorInfo> infos)
    {
        TensorInfo? prev = null;
        foreach (var t in infos.Where(t => t.ByteLength > 0).OrderBy(t => t.Begin))
        {
            if (prev is not null && t.Begin < prev.End)
                throw new ModelFormatException($"{path}: tensors '{prev.Name}' [{prev.Begin}, {prev.End}) and '{t.Name}' [{t.Begin}, {t.End}) overlap");
            prev = t;
        }
    }

    /// <summary>The named tensor; throws naming the file if absent.</summary>
    public TensorView Tensor(string name)
    {
        if (!_tensors.TryGetValue(name, out var info))
            throw new ModelFormatException($"{Path}: missing tensor '{name}'");
        return new TensorView(info, Path, _base + _dataStart + info.Begin);
    }

    public bool Contains(string name) => _tensors.ContainsKey(name);

    public void Dispose()
    {
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _mmf?.Dispose();
    }
}
