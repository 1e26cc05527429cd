using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace LongCat.IO;

/// <summary>
/// Builds a safetensors file: add tensors (F32, BF16, F16, I64, I32, F8_E4M3 with block scales), then
/// <see cref="Save"/> writes atomically (temp file, flush, rename), so a crash never leaves half a file.
/// </summary>
public sealed class SafeTensorsWriter
{
    readonly List<(string Name, DType DType, long[] Shape, byte[] Data)> _tensors = [];
    readonly HashSet<string> _names = new(StringComparer.Ordinal);
    public Dictionary<string, string> Metadata { get; } = new(StringComparer.Ordinal);

    public int Count => _tensors.Count;

    public void AddRaw(string name, DType dtype, long[] shape, byte[] data)
    {
        // "__metadata__" is the header's metadata key: a tensor of that name would make a file no reader accepts.
        if (name == "__metadata__") throw new ArgumentException("tensor name '__metadata__' is reserved by the safetensors format");
        if (shape.Any(d => d < 0)) throw new ArgumentException($"tensor '{name}': negative dimension");
        long n;
        try { n = checked(shape.Aggregate(1L, (a, b) => a * b) * DTypes.SizeOf(dtype)); }
        catch (OverflowException) { throw new ArgumentException($"tensor '{name}': shape [{string.Join(", ", shape)}] is too large"); }
        if (n != data.Length)
            throw new ArgumentException($"tensor '{name}': {data.Length} bytes do not match {dtype} [{string.Join(", ", shape)}]");
        if (!_names.Add(name)) throw new ArgumentException($"tensor '{name}' added twice");
        _tensors.Add((name, dtype, shape, data));
    }

    public void AddF32(string name, ReadOnlySpan<float> values, params long[] shape) =>
        AddRaw(name, DType.F32, shape, MemoryMarshal.AsBytes(values).ToArray());

    public void AddBF16(string name, ReadOnlySpan<float> values, params long[] shape)
    {
        var b = new ushort[values.Length];
        for (int i = 0; i < b.Length; i++) b[i] = NumberFormats.F32ToBF16(values[i]);
        AddRaw(name, DType.BF16, shape, MemoryMarshal.AsBytes<ushort>(b).ToArray());
    }

    public void AddI64(string name, ReadOnlySpan<long> values, params long[] shape) =>
        AddRaw(name, DType.I64, shape, MemoryMarshal.AsBytes(values).ToArray());

    public void AddI32(string name, ReadOnlySpan<int> values, params long[] shape) =>
        AddRaw(name, DType.I32, shape, MemoryMarshal.AsBytes(values).ToArray());

    /// <summary>Adds a float tensor converted to <paramref name="dtype"/> (F32, BF16).</summary>
    public void AddFloat(string name, DType dtype, ReadOnlySpan<float> values, params long[] shape)
    {
        switch (dtype)
        {
            case DType.F32: AddF32(name, values, shape); break;
            case DType.BF16: AddBF16(name, values, shape); break;
            default: throw new ArgumentException($"tensor '{name}': cannot write floats as {dtype}");
        }
    }

    /// <summary>
    /// Adds a 2-D weight [rows, cols] as block-scaled FP8 E4M3: <c>name</c> (F8_E4M3) plus
    /// <c>scaleName</c> (F32 [ceil(rows/br), ceil(cols/bc)]): per block s = amax / 448, q = RNE(w / s).
    /// </summary>
    public void AddFp8Blocked(string name, string scaleName, ReadOnlySpan<float> w, int rows, int cols, int blockRows = 128, int blockCols = 128)
    {
        var (q, s, sr, sc) = Fp8Quantizer.Quantize(w, rows, cols, blockRows, blockCols);
        AddRaw(name, DType.F8_E4M3, [rows, cols], q);
        AddF32(scaleName, s, sr, sc);
    }

    /// <summary>
    /// Adds a 2-D weight [rows, cols] as INT8 per output channel: <c>name</c> (I8) plus <c>scaleName</c>
    /// (F32 [rows, 1]): s = amax(row) / 127, q = round-to-nearest-even(w / s) (symmetric, no zero point).
    /// </summary>
    public void AddInt8PerChannel(string name, string scaleName, ReadOnlySpan<float> w, int rows, int cols)
    {
        var (q, s) = Int8Quantizer.Quantize(w, rows, cols);
        AddRaw(name, DType.I8, [rows, cols], MemoryMarshal.AsBytes<sbyte>(q).ToArray());
        AddF32(scaleName, s, rows, 1);
    }

    /// <summary>Writes the file atomically.</summary>
    public void Save(string path)
    {
        var header = new Dictionary<string, object>(StringComparer.Ordinal);
        if (Metadata.Count > 0) header["__metadata__"] = Metadata;
        long offset = 0;
        foreach (var t in _tensors)
        {
            header[t.Name] = new Dictionary<string, object>
            {
                ["dtype"] = DTypes.Name(t.DType),
                ["shape"] = t.Shape,
                ["data_offsets"] = new[] { offset, offset + t.Data.Length },
            };
            offset += t.Data.Length;
        }
        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        int pad = (8 - json.Length % 8) % 8; // keep the data section 8-byte aligned, as the reference writer does
        var dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        // Unique per call, not just per process: two threads saving the same path must not share a temp file.
        var tmp = System.IO.Path.Combine(dir, "." + System.IO.Path.GetFileName(path) + "." + Environment.ProcessId + "." + Guid.NewGuid().ToString("N")[..8] + ".tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            {
                fs.Write(BitConverter.GetBytes((ulong)(json.Length + pad)));
                fs.Write(json);
                for (int i = 0; i < pad; i++) fs.WriteByte((byte)' ');
                foreach (var t in _tensors) fs.Write(t.Data);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }
}

/// <summary>Block-wise FP8 E4M3 quantization in the official (DeepSeek-V3 / LongCat-Flash-FP8) layout.</summary>
public static class Fp8Quantizer
{
    /// <remarks>Block rows are quantized in parallel (each writes its own bytes and scales: same result for any thread count).</remarks>
    public static unsafe (byte[] Q, float[] Scales, int ScaleRows, int ScaleCols) Quantize(ReadOnlySpan<float> w, int rows, int cols, int br = 128, int bc = 128)
    {
        if (w.Length != (long)rows * cols) throw new ArgumentException("weight size does not match rows x cols");
        int sr = (rows + br - 1) / br, sc = (cols + bc - 1) / bc;
        var s = new float[sr * sc];
        var q = new byte[w.Length];
        fixed (float* pw = w)
        {
            nint wp = (nint)pw;
            void BlockRow(int bi)
            {
                float* w = (float*)wp;
                for (int bj = 0; bj < sc; bj++)
                {
                    int r1 = Math.Min(rows, (bi + 1) * br), c1 = Math.Min(cols, (bj + 1) * bc);
                    float amax = 0;
                    for (int r = bi * br; r < r1; r++)
                        for (int c = bj * bc; c < c1; c++) amax = MathF.Max(amax, MathF.Abs(w[(long)r * cols + c]));
                    float scale = amax > 0 ? amax / NumberFormats.Fp8E4M3Max : 1f;
                    s[bi * sc + bj] = scale;
                    for (int r = bi * br; r < r1; r++)
                        for (int c = bj * bc; c < c1; c++) q[(long)r * cols + c] = NumberFormats.F32ToFp8E4M3(w[(long)r * cols + c] / scale);
                }
            }
            if ((long)rows * cols < 1 << 16) for (int bi = 0; bi < sr; bi++) BlockRow(bi);
            else Parallel.For(0, sr, BlockRow);
        }
        return (q, s, sr, sc);
    }
}

/// <summary>Symmetric per-output-channel INT8 quantization: scale = amax / 127 per row, q in [-127, 127].</summary>
public static class Int8Quantizer
{
    public static (sbyte[] Q, float[] Scales) Quantize(ReadOnlySpan<float> w, int rows, int cols)
    {
        if (w.Length != (long)rows * cols) throw new ArgumentException("weight size does not match rows x cols");
        var q = new sbyte[w.Length];
        var s = new float[rows];
        for (int r = 0; r < rows; r++)
        {
            var row = w.Slice(r * cols, cols);
            float amax = 0;
            foreach (var v in row) amax = MathF.Max(amax, MathF.Abs(v));
            float scale = amax > 0 && float.IsFinite(amax) ? amax / 127f : 1f;
            s[r] = scale;
            for (int c = 0; c < cols; c++) q[r * cols + c] = (sbyte)Math.Clamp(MathF.Round(row[c] / scale, MidpointRounding.ToEven), -127f, 127f);
        }
        return (q, s);
    }
}
