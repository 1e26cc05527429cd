using System.Runtime.InteropServices;

namespace LongCat.IO;

/// <summary>
/// A tensor in its stored dtype, pointing into a mapped file (or pinned owned memory). Valid while its
/// owner (a <see cref="SafeTensorFile"/> or <see cref="Checkpoint"/>) is open.
/// </summary>
public readonly unsafe struct TensorView
{
    public TensorInfo Info { get; }
    public string File { get; }
    public byte* Data { get; }

    public TensorView(TensorInfo info, string file, byte* data) { Info = info; File = file; Data = data; }

    public string Name => Info.Name;
    public DType DType => Info.DType;
    public long[] Shape => Info.Shape;
    public long ElementCount => Info.ElementCount;
    public ReadOnlySpan<byte> Bytes => new(Data, checked((int)Info.ByteLength));

    /// <summary>Throws naming the tensor if its shape is not <paramref name="expected"/>.</summary>
    public TensorView ExpectShape(params long[] expected)
    {
        if (!Shape.AsSpan().SequenceEqual(expected))
            throw new ModelFormatException($"{File}: tensor '{Name}' has shape {Info.ShapeText}, but the config implies [{string.Join(", ", expected)}]");
        return this;
    }

    /// <summary>Copies and widens any float dtype (or integer) to a new float array.</summary>
    public float[] ToFloat32()
    {
        var n = checked((int)ElementCount);
        var r = new float[n];
        CopyToFloat32(r);
        return r;
    }

    public void CopyToFloat32(Span<float> dst)
    {
        var n = checked((int)ElementCount);
        if (dst.Length < n) throw new ArgumentException("destination too small", nameof(dst));
        switch (DType)
        {
            case DType.F32: new ReadOnlySpan<float>(Data, n).CopyTo(dst); break;
            case DType.BF16: { var s = new ReadOnlySpan<ushort>(Data, n); for (int i = 0; i < n; i++) dst[i] = NumberFormats.BF16ToF32(s[i]); break; }
            case DType.F16: { var s = new ReadOnlySpan<ushort>(Data, n); for (int i = 0; i < n; i++) dst[i] = NumberFormats.F16ToF32(s[i]); break; }
            case DType.F8_E4M3: { var s = new ReadOnlySpan<byte>(Data, n); for (int i = 0; i < n; i++) dst[i] = NumberFormats.Fp8E4M3ToF32(s[i]); break; }
            case DType.F64: { var s = new ReadOnlySpan<double>(Data, n); for (int i = 0; i < n; i++) dst[i] = (float)s[i]; break; }
            case DType.I64: { var s = new ReadOnlySpan<long>(Data, n); for (int i = 0; i < n; i++) dst[i] = s[i]; break; }
            case DType.I32: { var s = new ReadOnlySpan<int>(Data, n); for (int i = 0; i < n; i++) dst[i] = s[i]; break; }
            default: throw new ModelFormatException($"{File}: tensor '{Name}' has dtype {DType}, which cannot be read as float");
        }
    }

    /// <summary>Reads an integer tensor (I64, I32, I16, I8, U8) as longs.</summary>
    public long[] ToInt64()
    {
        var n = checked((int)ElementCount);
        var r = new long[n];
        switch (DType)
        {
            case DType.I64: new ReadOnlySpan<long>(Data, n).CopyTo(r); break;
            case DType.I32: { var s = new ReadOnlySpan<int>(Data, n); for (int i = 0; i < n; i++) r[i] = s[i]; break; }
            case DType.I16: { var s = new ReadOnlySpan<short>(Data, n); for (int i = 0; i < n; i++) r[i] = s[i]; break; }
            case DType.I8: { var s = new ReadOnlySpan<sbyte>(Data, n); for (int i = 0; i < n; i++) r[i] = s[i]; break; }
            case DType.U8: { var s = new ReadOnlySpan<byte>(Data, n); for (int i = 0; i < n; i++) r[i] = s[i]; break; }
            default: throw new ModelFormatException($"{File}: tensor '{Name}' has dtype {DType}, expected an integer dtype");
        }
        return r;
    }

    public ReadOnlySpan<T> AsSpan<T>() where T : unmanaged => new(Data, checked((int)(Info.ByteLength / Marshal.SizeOf<T>())));
}
