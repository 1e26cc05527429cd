using LongCat.IO;

namespace LongCat.Tests;

/// <summary>BF16 and FP8 E4M3FN conversions against the formats' definitions, exhaustively where that is cheap.</summary>
public class NumberFormatsTests
{
    /// <summary>E4M3FN as the OCP FP8 spec defines it: bias 7, no infinities, S.1111.111 NaN, subnormals m·2^-9.</summary>
    static double SpecFp8(int code)
    {
        int s = code >> 7, e = (code >> 3) & 0xF, m = code & 7;
        if (e == 0xF && m == 7) return double.NaN;
        double v = e == 0 ? m * Math.Pow(2, -9) : (1 + m / 8.0) * Math.Pow(2, e - 7);
        return s == 1 ? -v : v;
    }

    [Fact]
    public void Fp8DecodesEveryCodeAsTheSpecSays()
    {
        for (int c = 0; c < 256; c++)
        {
            double spec = SpecFp8(c);
            float got = NumberFormats.Fp8E4M3ToF32((byte)c);
            if (double.IsNaN(spec)) { Assert.True(float.IsNaN(got), $"code 0x{c:X2} must be NaN"); continue; }
            Assert.True(got == spec, $"code 0x{c:X2}: {got} != {spec}");
            Assert.Equal(c >= 0x80, float.IsNegative(got)); // -0 for 0x80
        }
        Assert.Equal(2, Enumerable.Range(0, 256).Count(c => float.IsNaN(NumberFormats.Fp8E4M3ToF32((byte)c)))); // 0x7F, 0xFF
        Assert.Equal(448f, NumberFormats.Fp8E4M3ToF32(0x7E));
        Assert.Equal(-448f, NumberFormats.Fp8E4M3ToF32(0xFE));
        Assert.Equal(NumberFormats.Fp8E4M3Max, NumberFormats.Fp8E4M3ToF32(0x7E));
        Assert.Equal(MathF.Pow(2, -9), NumberFormats.Fp8E4M3ToF32(0x01));  // smallest subnormal
        Assert.Equal(7 * MathF.Pow(2, -9), NumberFormats.Fp8E4M3ToF32(0x07)); // largest subnormal
        Assert.Equal(MathF.Pow(2, -6), NumberFormats.Fp8E4M3ToF32(0x08));  // smallest normal
        Assert.Equal(1f, NumberFormats.Fp8E4M3ToF32(0x38));
        Assert.Equal(1.125f, NumberFormats.Fp8E4M3ToF32(0x39));
        Assert.Equal(0x80000000u, BitConverter.SingleToUInt32Bits(NumberFormats.Fp8E4M3ToF32(0x80)));
    }

    [Fact]
    public void Fp8EncodeInvertsDecodeForEveryFiniteCode()
    {
        for (int c = 0; c < 256; c++)
        {
            float v = NumberFormats.Fp8E4M3ToF32((byte)c);
            if (float.IsNaN(v)) continue;
            Assert.Equal(c, NumberFormats.F32ToFp8E4M3(v));
        }
        Assert.Equal(0x00, NumberFormats.F32ToFp8E4M3(0f));
        Assert.Equal(0x80, NumberFormats.F32ToFp8E4M3(-0f));
    }

    [Fact]
    public void Fp8NaNStaysNaN()
    {
        foreach (var nan in new[] { float.NaN, -float.NaN, BitConverter.UInt32BitsToSingle(0x7F800001) })
            Assert.True(float.IsNaN(NumberFormats.Fp8E4M3ToF32(NumberFormats.F32ToFp8E4M3(nan))));
    }

    [Fact]
    public void Fp8TiesRoundToEven()
    {
        // Every midpoint between neighbouring finite codes (exact in float: 5 significant bits) goes to the even code.
        for (int sign = 0; sign < 2; sign++)
            for (int c = 0; c < 0x7E; c++)
            {
                int lo = c | (sign << 7), hi = (c + 1) | (sign << 7);
                float a = NumberFormats.Fp8E4M3ToF32((byte)lo), b = NumberFormats.Fp8E4M3ToF32((byte)hi);
                float mid = (a + b) / 2;
                Assert.True((double)mid == ((double)a + b) / 2, "midpoint must be exact");
                int even = (c & 1) == 0 ? lo : hi;
                Assert.True(NumberFormats.F32ToFp8E4M3(mid) == even, $"tie {mid} between 0x{lo:X2} and 0x{hi:X2}: got 0x{NumberFormats.F32ToFp8E4M3(mid):X2}");
                // Just off the midpoint: the nearer neighbour.
                Assert.Equal(lo, NumberFormats.F32ToFp8E4M3(MathF.BitDecrement(MathF.Abs(mid)) * (sign == 1 ? -1 : 1)));
                Assert.Equal(hi, NumberFormats.F32ToFp8E4M3(MathF.BitIncrement(MathF.Abs(mid)) * (sign == 1 ? -1 : 1)));
            }
        // Below half the smallest subnormal: zero; exactly half: the tie goes to (even) zero.
        Assert.Equal(0x00, NumberFormats.F32ToFp8E4M3(MathF.Pow(2, -10)));
        Assert.Equal(0x01, NumberFormats.F32ToFp8E4M3(MathF.BitIncrement(MathF.Pow(2, -10))));
        Assert.Equal(0x80, NumberFormats.F32ToFp8E4M3(-MathF.Pow(2, -10)));
        Assert.Equal(0x00, NumberFormats.F32ToFp8E4M3(1e-30f));
        Assert.Equal(0x00, NumberFormats.F32ToFp8E4M3(float.Epsilon));
    }

    [Fact]
    public void Fp8SaturatesAtPlusMinus448()
    {
        foreach (var v in new[] { 448f, 448.5f, 463.99f, 464f, 479f, 480f, 512f, 1e6f, float.MaxValue, float.PositiveInfinity })
        {
            Assert.Equal(0x7E, NumberFormats.F32ToFp8E4M3(v));
            Assert.Equal(0xFE, NumberFormats.F32ToFp8E4M3(-v));
        }
        Assert.Equal(0x7D, NumberFormats.F32ToFp8E4M3(416f));         // 416 is a code
        Assert.Equal(0x7E, NumberFormats.F32ToFp8E4M3(432f));         // tie 416/448 → even mantissa (448 = 1.110b·2^8)
        Assert.Equal(0x7D, NumberFormats.F32ToFp8E4M3(431.99f));
    }

    [Fact]
    public void Fp8EncodeIsTheNearestCodeForRandomValues()
    {
        // Brute force over the 127 non-negative finite codes, ties to the even code, saturating.
        var codes = Enumerable.Range(0, 0x7F).Select(c => (c, v: (double)NumberFormats.Fp8E4M3ToF32((byte)c))).ToArray();
        var rnd = new Random(7);
        for (int i = 0; i < 20000; i++)
        {
            // Log-uniform magnitudes across subnormals, normals and beyond the range.
            float x = (float)(Math.Pow(2, rnd.NextDouble() * 24 - 14) * (rnd.Next(2) == 0 ? 1 : -1));
            double a = Math.Abs((double)x);
            int best = 0x7E;
            if (a < 448)
            {
                double bestErr = double.MaxValue;
                foreach (var (c, v) in codes)
                {
                    double err = Math.Abs(v - a);
                    if (err < bestErr || (err == bestErr && (c & 1) == 0)) { best = c; bestErr = err; }
                }
            }
            int expect = best | (x < 0 ? 0x80 : 0);
            Assert.True(NumberFormats.F32ToFp8E4M3(x) == expect, $"{x:R}: got 0x{NumberFormats.F32ToFp8E4M3(x):X2}, nearest 0x{expect:X2}");
        }
    }

    [Fact]
    public void Bf16RoundsToNearestEven()
    {
        static ushort B(uint f32Bits) => NumberFormats.F32ToBF16(BitConverter.UInt32BitsToSingle(f32Bits));
        Assert.Equal(0x3F80, B(0x3F800000)); // 1.0 exact
        Assert.Equal(0x3F80, B(0x3F808000)); // 1 + 2^-8: tie between 0x3F80 and 0x3F81 → even 0x3F80
        Assert.Equal(0x3F82, B(0x3F818000)); // tie between 0x3F81 and 0x3F82 → even 0x3F82
        Assert.Equal(0x3F81, B(0x3F808001)); // just above the tie
        Assert.Equal(0x3F81, B(0x3F817FFF)); // just below the next tie
        Assert.Equal(0xBF82, B(0xBF818000)); // negative ties too
        Assert.Equal(0x8000, B(0x80000000)); // -0
        Assert.Equal(0x7F80, B(0x7F800000)); // +inf
        Assert.Equal(0xFF80, B(0xFF800000)); // -inf
        Assert.Equal(0x7F80, B(0x7F7FFFFF)); // float.MaxValue rounds up to inf, as IEEE RNE (and torch) do
        Assert.Equal(0x0000, B(0x00008000)); // subnormal tie between 0x0000 and 0x0001 → even 0x0000
        Assert.Equal(0x0002, B(0x00018000)); // subnormal tie between 0x0001 and 0x0002 → even 0x0002
    }

    [Fact]
    public void Bf16KeepsNaNsQuietAndNotInfinite()
    {
        // A NaN whose payload lives only in the low 16 bits must not truncate to infinity.
        foreach (var bits in new uint[] { 0x7F800001, 0x7FC00000, 0xFF800001, 0x7FFFFFFF })
        {
            var b = NumberFormats.F32ToBF16(BitConverter.UInt32BitsToSingle(bits));
            Assert.True(float.IsNaN(NumberFormats.BF16ToF32(b)), $"0x{bits:X8} -> 0x{b:X4}");
            Assert.Equal(bits >> 31, (uint)b >> 15); // sign kept
        }
    }

    [Fact]
    public void Bf16WideningIsExactAndRoundTrips()
    {
        for (int b = 0; b < 65536; b++)
        {
            float f = NumberFormats.BF16ToF32((ushort)b);
            Assert.Equal((uint)b << 16, BitConverter.SingleToUInt32Bits(f));
            if (!float.IsNaN(f)) Assert.Equal(b, NumberFormats.F32ToBF16(f));
        }
    }

    /// <summary>The bit-level F32 → E4M3 rounding equals the double-arithmetic definition: a sweep of float bit
    /// patterns over the whole range, plus every midpoint between neighbouring codes and its float neighbours.</summary>
    [Fact]
    public void Fp8FastEncodeMatchesReference()
    {
        for (uint b = 0; b < 0x44000000u; b += 61)
            foreach (var f in new[] { BitConverter.UInt32BitsToSingle(b), -BitConverter.UInt32BitsToSingle(b) })
                Assert.True(NumberFormats.F32ToFp8E4M3Reference(f) == NumberFormats.F32ToFp8E4M3(f), $"{f:R}");
        for (int c = 0; c < 0x7E; c++)
        {
            float mid = (NumberFormats.Fp8E4M3ToF32((byte)c) + NumberFormats.Fp8E4M3ToF32((byte)(c + 1))) / 2;
            foreach (var f in new[] { mid, MathF.BitDecrement(mid), MathF.BitIncrement(mid), -mid, NumberFormats.Fp8E4M3ToF32((byte)c) })
                Assert.True(NumberFormats.F32ToFp8E4M3Reference(f) == NumberFormats.F32ToFp8E4M3(f), $"{f:R}");
        }
        foreach (var f in new[] { 448f, 449f, 464f, 1e30f, float.PositiveInfinity, float.NegativeInfinity, float.Epsilon, 1f / 1024, 1f / 64 })
            Assert.True(NumberFormats.F32ToFp8E4M3Reference(f) == NumberFormats.F32ToFp8E4M3(f), $"{f:R}");
    }
}
