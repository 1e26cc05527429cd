using System.Runtime.CompilerServices;

namespace LongCat.IO;

/// <summary>Scalar conversions for the storage formats (BF16, F16, FP8 E4M3FN).</summary>
public static class NumberFormats
{
    /// <summary>BF16 is the top half of an IEEE float: widening is exact.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float BF16ToF32(ushort b) => BitConverter.Int32BitsToSingle(b << 16);

    /// <summary>Round-to-nearest-even F32 to BF16 (NaN stays NaN), as torch's .to(bfloat16).</summary>
    public static ushort F32ToBF16(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if (float.IsNaN(f)) return (ushort)((u >> 16) | 0x40);
        uint rounding = 0x7FFF + ((u >> 16) & 1);
        return (ushort)((u + rounding) >> 16);
    }

    public static float F16ToF32(ushort h) => (float)BitConverter.UInt16BitsToHalf(h);

    /// <summary>Every E4M3FN byte decoded to float (OCP FP8: bias 7, no infinities, S.1111.111 = NaN).</summary>
    public static readonly float[] Fp8E4M3Table = BuildFp8Table();

    static float[] BuildFp8Table()
    {
        var t = new float[256];
        for (int b = 0; b < 256; b++)
        {
            int sign = b >> 7, exp = (b >> 3) & 0xF, man = b & 7;
            float v;
            if (exp == 0xF && man == 7) v = float.NaN;
            else if (exp == 0) v = man * MathF.Pow(2, -9);          // subnormal: m/8 * 2^-6
            else v = (1 + man / 8f) * MathF.Pow(2, exp - 7);
            t[b] = sign == 1 ? -v : v;
        }
        return t;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Fp8E4M3ToF32(byte b) => Fp8E4M3Table[b];

    /// <summary>Largest finite E4M3FN magnitude.</summary>
    public const float Fp8E4M3Max = 448f;

    /// <summary>Round-to-nearest-even, saturating conversion to E4M3FN (NaN maps to NaN).</summary>
    public static byte F32ToFp8E4M3(float f)
    {
        // Bit-level round-to-nearest-even (exactly F32ToFp8E4M3Reference, tested on a sweep of all floats).
        if (float.IsNaN(f)) return 0x7F;
        uint bits = BitConverter.SingleToUInt32Bits(f);
        byte sign = (byte)((bits >> 24) & 0x80);
        uint m = bits & 0x7FFFFFFF;
        float a = BitConverter.UInt32BitsToSingle(m);
        if (a >= Fp8E4M3Max) return (byte)(sign | 0x7E);
        if (a < 1f / 64) return (byte)(sign | (int)MathF.Round(a * 512f, MidpointRounding.ToEven)); // subnormals, 8 = 2^-6
        uint r = m + 0x7FFFF + ((m >> 20) & 1); // drop 20 mantissa bits, ties to even
        return (byte)(sign | Math.Min((int)(r >> 20) - (120 << 3), 0x7E));
    }

    /// <summary>The definition of <see cref="F32ToFp8E4M3"/> in double arithmetic (slow; for tests).</summary>
    internal static byte F32ToFp8E4M3Reference(float f)
    {
        if (float.IsNaN(f)) return 0x7F;
        byte sign = (byte)(f < 0 || (f == 0 && float.IsNegative(f)) ? 0x80 : 0);
        double a = Math.Abs((double)f);
        if (a >= Fp8E4M3Max) return (byte)(sign | 0x7E);
        // Step between neighbours: 2^-9 below the smallest normal (2^-6), else 2^(e-3).
        double step = a < 1.0 / 64 ? Math.Pow(2, -9) : Math.Pow(2, Math.Floor(Math.Log2(a)) - 3);
        // Guard against log2 rounding at exact powers of two.
        if (a >= 1.0 / 64 && a / step >= 16) step *= 2;
        if (a >= 1.0 / 64 && a / step < 8) step /= 2;
        double k = Math.Round(a / step, MidpointRounding.ToEven);
        double v = k * step;
        if (v > Fp8E4M3Max) v = Fp8E4M3Max;
        return (byte)(sign | EncodePositive(v));
    }

    static int EncodePositive(double v)
    {
        if (v == 0) return 0;
        if (v < 1.0 / 64) return (int)Math.Round(v / Math.Pow(2, -9)); // subnormal codes 1..7 (8 is the min normal)
        int e = (int)Math.Floor(Math.Log2(v));
        double m = v / Math.Pow(2, e);
        if (m >= 2) { e++; m /= 2; }
        if (m < 1) { e--; m *= 2; }
        int man = (int)Math.Round((m - 1) * 8);
        return ((e + 7) << 3) | man;
    }
}
