using System.Runtime.InteropServices;
using LongCat.IO;

namespace LongCat.Kernels;

/// <summary>
/// A linear layer's weight [Rows = out, Cols = in], row-major, kept in its stored dtype (F32, BF16, F16,
/// FP8 E4M3 with block scales, INT8 with one scale per output row). Kernels dequantize it on the fly; it is never expanded in memory.
/// Points into a mapped checkpoint, or into pinned memory it owns.
/// </summary>
public sealed unsafe class Weight
{
    readonly object? _owner; // keeps owned pinned arrays alive

    public string Name { get; }
    public DType DType { get; }
    public int Rows { get; }
    public int Cols { get; }
    public byte* Data { get; }
    /// <summary>
    /// FP8 and INT8: F32 scales [ceil(Rows/BlockRows), ceil(Cols/BlockCols)]. INT8 is per output channel:
    /// BlockRows = 1, BlockCols = Cols, so the scale of row r is Scales[r].
    /// </summary>
    public float* Scales { get; }
    public int BlockRows { get; }
    public int BlockCols { get; }
    public int ScaleCols => BlockCols == 0 ? 0 : (Cols + BlockCols - 1) / BlockCols;

    public Weight(string name, DType dtype, int rows, int cols, byte* data, float* scales = null, int blockRows = 0, int blockCols = 0, object? owner = null)
    {
        if (dtype is not (DType.F32 or DType.BF16 or DType.F16 or DType.F8_E4M3 or DType.I8))
            throw new ModelFormatException($"tensor '{name}': dtype {dtype} is not supported for linear weights (F32, BF16, F16, F8_E4M3, I8)");
        if (dtype == DType.F8_E4M3 && (scales == null || blockRows <= 0 || blockCols <= 0))
            throw new ModelFormatException($"tensor '{name}': F8_E4M3 weight without weight_scale_inv block scales");
        if (dtype == DType.I8)
        {
            if (scales == null) throw new ModelFormatException($"tensor '{name}': I8 weight without per-row weight_scale");
            blockRows = 1; blockCols = Math.Max(1, cols); // per output channel
        }
        Name = name; DType = dtype; Rows = rows; Cols = cols; Data = data; Scales = scales;
        BlockRows = blockRows; BlockCols = blockCols; _owner = owner;
    }

    /// <summary>An owned F32 weight over a pinned copy of <paramref name="values"/>.</summary>
    public static Weight FromFloats(string name, ReadOnlySpan<float> values, int rows, int cols)
    {
        if (values.Length != (long)rows * cols) throw new ArgumentException($"'{name}': {values.Length} values for [{rows}, {cols}]");
        var arr = GC.AllocateUninitializedArray<float>(values.Length, pinned: true);
        values.CopyTo(arr);
        return new Weight(name, DType.F32, rows, cols, (byte*)Unsafe(arr), owner: arr);
    }

    /// <summary>An owned INT8 weight: q [rows, cols] with one F32 scale per row (value = q · scale[row]).</summary>
    public static Weight FromInt8(string name, ReadOnlySpan<sbyte> q, ReadOnlySpan<float> rowScales, int rows, int cols)
    {
        if (q.Length != (long)rows * cols || rowScales.Length != rows) throw new ArgumentException($"'{name}': sizes do not match [{rows}, {cols}]");
        var qa = GC.AllocateUninitializedArray<sbyte>(Math.Max(1, q.Length), pinned: true);
        var sa = GC.AllocateUninitializedArray<float>(Math.Max(1, rows), pinned: true);
        q.CopyTo(qa); rowScales.CopyTo(sa);
        return new Weight(name, DType.I8, rows, cols, (byte*)Marshal.UnsafeAddrOfPinnedArrayElement(qa, 0),
            (float*)Marshal.UnsafeAddrOfPinnedArrayElement(sa, 0), owner: (qa, sa));
    }

    /// <summary>
    /// A view of rows [0, <paramref name="rows"/>) (no copy; shares the data and the scales, and keeps this weight alive):
    /// e.g. the lm_head over the first token ids, for the MTP draft's reduced vocabulary.
    /// </summary>
    public Weight FirstRows(int rows)
    {
        if (rows < 1 || rows > Rows) throw new ArgumentOutOfRangeException(nameof(rows), rows, $"'{Name}' has {Rows} rows: a view needs 1..{Rows}");
        return rows == Rows ? this : new Weight($"{Name}[:{rows}]", DType, rows, Cols, Data, Scales, BlockRows, BlockCols, owner: this);
    }

    static float* Unsafe(float[] pinned) => (float*)Marshal.UnsafeAddrOfPinnedArrayElement(pinned, 0);

    /// <summary>
    /// F32 copy of the weight in the packed GEMM's panel layout (see <see cref="Prepack"/>), or null; with the
    /// panel width it was made for (a kernel of another width ignores it).
    /// </summary>
    internal float[]? Prepacked { get; private set; }
    internal int PrepackedNr { get; private set; }

    /// <summary>
    /// Pre-packs the weight for the packed GEMM path (M &gt;= <see cref="Gemm.PackedMinRows"/>): its values
    /// dequantized to F32 once, in the micro-kernel's panel layout, so prefill and training forwards skip the
    /// per-call dequantize-and-transpose of every panel. Same bits (dequantization is exact). Costs 4 bytes per
    /// parameter (columns padded to the panel width) on top of the stored weight, which the GEMV path keeps
    /// reading. Returns the bytes added. Idempotent for the current instruction set.
    /// </summary>
    public long Prepack()
    {
        var p = Gemm.PrepackPanels(this, out int nr);
        if (p != null) { Prepacked = p; PrepackedNr = nr; }
        return Prepacked == null ? 0 : 4L * Prepacked.Length;
    }

    /// <summary>Drops the pre-packed copy (see <see cref="Prepack"/>).</summary>
    public void DropPrepacked() { Prepacked = null; PrepackedNr = 0; }

    /// <summary>Bytes of weight data (plus scales) in memory.</summary>
    public long Bytes => (long)Rows * Cols * DTypes.SizeOf(DType) + (Scales == null ? 0 : 4L * ((Rows + BlockRows - 1) / BlockRows) * ScaleCols);

    /// <summary>Dequantizes row <paramref name="r"/> into <paramref name="dst"/> (length Cols).</summary>
    public void DequantizeRow(int r, Span<float> dst) => DequantizeRow(r, dst, 0);

    /// <summary>Columns <paramref name="c0"/>..Cols-1 of row <paramref name="r"/> into dst[0..Cols-c0) (the definition every kernel matches).</summary>
    internal void DequantizeRow(int r, Span<float> dst, int c0)
    {
        long off = (long)r * Cols;
        int n = Cols - c0;
        switch (DType)
        {
            case DType.F32: new ReadOnlySpan<float>((float*)Data + off + c0, n).CopyTo(dst); break;
            case DType.BF16: { var s = (ushort*)Data + off; for (int c = c0; c < Cols; c++) dst[c - c0] = NumberFormats.BF16ToF32(s[c]); break; }
            case DType.F16: { var s = (ushort*)Data + off; for (int c = c0; c < Cols; c++) dst[c - c0] = NumberFormats.F16ToF32(s[c]); break; }
            case DType.F8_E4M3:
                {
                    var s = Data + off;
                    var sc = Scales + (r / BlockRows) * ScaleCols;
                    var t = NumberFormats.Fp8E4M3Table;
                    for (int c = c0; c < Cols; c++) dst[c - c0] = t[s[c]] * sc[c / BlockCols];
                    break;
                }
            case DType.I8:
                {
                    var s = (sbyte*)Data + off;
                    float sc = Scales[r];
                    for (int c = c0; c < Cols; c++) dst[c - c0] = s[c] * sc; // exact int -> float, one multiply
                    break;
                }
        }
    }

    /// <summary>The whole weight dequantized to a new F32 array (for tests and tools, not the hot path).</summary>
    public float[] ToFloat32()
    {
        var r = new float[(long)Rows * Cols];
        for (int i = 0; i < Rows; i++) DequantizeRow(i, r.AsSpan(i * Cols, Cols));
        return r;
    }
}
