using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using LongCat.IO;

namespace LongCat.Kernels;

/// <summary>
/// Packing and in-register dequantization for <see cref="Gemm"/>. Every dequantized weight equals the scalar
/// definition bit for bit: F32 as is, BF16 = bits &lt;&lt; 16, F16 = (float)Half, FP8 = float32(e4m3) · scale
/// (one float32 multiply, <see cref="NumberFormats.Fp8E4M3Table"/>).
/// </summary>
static unsafe class GemmPack
{
    /// <summary>2^120: an E4M3 byte's magnitude bits shifted left by 20 are a float equal to its value · 2^-120.</summary>
    internal static readonly float Pow120 = BitConverter.Int32BitsToSingle(247 << 23);

    // ---------------- x: MR-interleaved row groups ----------------

    /// <summary>
    /// Packs row groups [g0, g1) of x [M, K] into dst: group g at dst + g·gstride holds x[g·MR + i, k] at k·MR + i
    /// (rows past M are zero).
    /// </summary>
    internal static void PackX(float* x, int m, int k, int mr, int g0, int g1, float* dst, long gstride)
    {
        for (int g = g0; g < g1; g++)
        {
            float* d = dst + g * gstride;
            int r0 = g * mr, rows = Math.Min(mr, m - r0);
            if (mr == 6 && rows == 6 && k >= 8 && Avx.IsSupported)
            {
                PackX6(x + (long)r0 * k, k, d);
                continue;
            }
            for (int i = 0; i < mr; i++)
            {
                if (i < rows)
                {
                    float* s = x + (long)(r0 + i) * k;
                    for (int kk = 0; kk < k; kk++) d[kk * mr + i] = s[kk];
                }
                else
                    for (int kk = 0; kk < k; kk++) d[kk * mr + i] = 0f;
            }
        }
    }

    /// <summary>6 rows: 8×8 transposes (two zero rows) with overlapping 8-wide stores 6 floats apart.</summary>
    static void PackX6(float* s, int k, float* d)
    {
        var z = Vector256<float>.Zero;
        int kk = 0;
        // The last store of a step writes 2 floats past the step; keep one step for the scalar tail so we
        // never write past the group (the group stride has padding, but stay inside K·6 anyway).
        for (; kk + 8 < k; kk += 8)
        {
            var r0 = Vector256.Load(s + kk);
            var r1 = Vector256.Load(s + k + kk);
            var r2 = Vector256.Load(s + 2L * k + kk);
            var r3 = Vector256.Load(s + 3L * k + kk);
            var r4 = Vector256.Load(s + 4L * k + kk);
            var r5 = Vector256.Load(s + 5L * k + kk);
            Transpose8x8(ref r0, ref r1, ref r2, ref r3, ref r4, ref r5, ref z, ref z, out var t0, out var t1, out var t2, out var t3, out var t4, out var t5, out var t6, out var t7);
            float* o = d + kk * 6;
            t0.Store(o); t1.Store(o + 6); t2.Store(o + 12); t3.Store(o + 18);
            t4.Store(o + 24); t5.Store(o + 30); t6.Store(o + 36); t7.Store(o + 42);
            z = Vector256<float>.Zero;
        }
        for (; kk < k; kk++)
            for (int i = 0; i < 6; i++) d[kk * 6 + i] = s[(long)i * k + kk];
    }

    // ---------------- W: k-major column panels ----------------

    /// <summary>
    /// Dequantizes W[c0 .. c0+nr, k0 .. k0+kc] into dst[kk·nr + j] (k-major; columns past N are zero).
    /// <paramref name="scratch"/> holds 8·kc floats (F16 only).
    /// </summary>
    internal static void PackW(Weight w, int c0, int k0, int kc, int nr, float* dst, float* scratch, bool simd)
    {
        int n = w.Rows;
        for (int j0 = 0; j0 < nr; j0 += 8)
        {
            int r0 = c0 + j0;
            int rows = Math.Min(8, n - r0);
            if (rows == 8 && simd && kc >= 8 && Avx2.IsSupported && PackW8(w, r0, k0, kc, nr, dst + j0, scratch)) continue;
            PackWScalar(w, r0, Math.Max(0, rows), k0, kc, nr, dst + j0);
        }
    }

    /// <summary>Scalar packing of up to 8 columns (rows of W) into an 8-wide slot of the panel.</summary>
    internal static void PackWScalar(Weight w, int r0, int rows, int k0, int kc, int nr, float* dst)
    {
        int k = w.Cols;
        for (int j = 0; j < 8; j++)
        {
            float* d = dst + j;
            if (j >= rows)
            {
                for (int kk = 0; kk < kc; kk++) d[kk * nr] = 0f;
                continue;
            }
            long off = (long)(r0 + j) * k + k0;
            switch (w.DType)
            {
                case DType.F32:
                    { float* s = (float*)w.Data + off; for (int kk = 0; kk < kc; kk++) d[kk * nr] = s[kk]; break; }
                case DType.BF16:
                    { ushort* s = (ushort*)w.Data + off; for (int kk = 0; kk < kc; kk++) d[kk * nr] = BitConverter.Int32BitsToSingle(s[kk] << 16); break; }
                case DType.F16:
                    { ushort* s = (ushort*)w.Data + off; for (int kk = 0; kk < kc; kk++) d[kk * nr] = (float)BitConverter.UInt16BitsToHalf(s[kk]); break; }
                case DType.F8_E4M3:
                    {
                        byte* s = w.Data + off;
                        float* srow = w.Scales + (long)((r0 + j) / w.BlockRows) * w.ScaleCols;
                        var t = NumberFormats.Fp8E4M3Table;
                        int bc = w.BlockCols;
                        for (int kk = 0; kk < kc; kk++) d[kk * nr] = t[s[kk]] * srow[(k0 + kk) / bc];
                        break;
                    }
            }
        }
    }

    /// <summary>8 full columns, 8 k at a time: dequantize 8 rows of W in registers, transpose, store.</summary>
    static bool PackW8(Weight w, int r0, int k0, int kc, int nr, float* dst, float* scratch)
    {
        int k = w.Cols;
        int kv = kc & ~7;
        switch (w.DType)
        {
            case DType.F32:
                {
                    float* s = (float*)w.Data + (long)r0 * k + k0;
                    for (int kk = 0; kk < kv; kk += 8)
                    {
                        float* p = s + kk;
                        var a0 = Vector256.Load(p); var a1 = Vector256.Load(p + k);
                        var a2 = Vector256.Load(p + 2L * k); var a3 = Vector256.Load(p + 3L * k);
                        var a4 = Vector256.Load(p + 4L * k); var a5 = Vector256.Load(p + 5L * k);
                        var a6 = Vector256.Load(p + 6L * k); var a7 = Vector256.Load(p + 7L * k);
                        StoreTransposed(ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7, dst + kk * nr, nr);
                    }
                    break;
                }
            case DType.BF16:
                {
                    ushort* s = (ushort*)w.Data + (long)r0 * k + k0;
                    for (int kk = 0; kk < kv; kk += 8)
                    {
                        ushort* p = s + kk;
                        var a0 = Bf16(p); var a1 = Bf16(p + k);
                        var a2 = Bf16(p + 2L * k); var a3 = Bf16(p + 3L * k);
                        var a4 = Bf16(p + 4L * k); var a5 = Bf16(p + 5L * k);
                        var a6 = Bf16(p + 6L * k); var a7 = Bf16(p + 7L * k);
                        StoreTransposed(ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7, dst + kk * nr, nr);
                    }
                    break;
                }
            case DType.F16:
                {
                    // Widen the 8 rows into scratch (exact), then transpose as F32.
                    ushort* s = (ushort*)w.Data + (long)r0 * k + k0;
                    for (int j = 0; j < 8; j++)
                        System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(
                            new ReadOnlySpan<Half>(s + (long)j * k, kc), new Span<float>(scratch + j * kc, kc));
                    for (int kk = 0; kk < kv; kk += 8)
                    {
                        float* p = scratch + kk;
                        var a0 = Vector256.Load(p); var a1 = Vector256.Load(p + kc);
                        var a2 = Vector256.Load(p + 2 * kc); var a3 = Vector256.Load(p + 3 * kc);
                        var a4 = Vector256.Load(p + 4 * kc); var a5 = Vector256.Load(p + 5 * kc);
                        var a6 = Vector256.Load(p + 6 * kc); var a7 = Vector256.Load(p + 7 * kc);
                        StoreTransposed(ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7, dst + kk * nr, nr);
                    }
                    for (int kk = kv; kk < kc; kk++)
                        for (int j = 0; j < 8; j++) dst[kk * nr + j] = scratch[j * kc + kk];
                    return true;
                }
            case DType.F8_E4M3:
                {
                    int bc = w.BlockCols, br = w.BlockRows;
                    if (bc % 8 != 0 || k0 % 8 != 0) return false; // an 8-wide step must stay in one scale block
                    sbyte* s = (sbyte*)w.Data + (long)r0 * k + k0;
                    int sc = w.ScaleCols;
                    float* s0 = w.Scales + (long)(r0 / br) * sc, s1 = w.Scales + (long)((r0 + 1) / br) * sc;
                    float* s2 = w.Scales + (long)((r0 + 2) / br) * sc, s3 = w.Scales + (long)((r0 + 3) / br) * sc;
                    float* s4 = w.Scales + (long)((r0 + 4) / br) * sc, s5 = w.Scales + (long)((r0 + 5) / br) * sc;
                    float* s6 = w.Scales + (long)((r0 + 6) / br) * sc, s7 = w.Scales + (long)((r0 + 7) / br) * sc;
                    for (int kk = 0; kk < kv; kk += 8)
                    {
                        sbyte* p = s + kk;
                        int b = (k0 + kk) / bc;
                        var a0 = Fp8(p, s0[b]); var a1 = Fp8(p + k, s1[b]);
                        var a2 = Fp8(p + 2L * k, s2[b]); var a3 = Fp8(p + 3L * k, s3[b]);
                        var a4 = Fp8(p + 4L * k, s4[b]); var a5 = Fp8(p + 5L * k, s5[b]);
                        var a6 = Fp8(p + 6L * k, s6[b]); var a7 = Fp8(p + 7L * k, s7[b]);
                        StoreTransposed(ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7, dst + kk * nr, nr);
                    }
                    break;
                }
            default:
                return false;
        }
        if (kv < kc) PackWScalar(w, r0, 8, k0 + kv, kc - kv, nr, dst + kv * nr);
        return true;
    }

    // ---------------- in-register dequantization (8 values) ----------------

    /// <summary>8 BF16 values widened: bits &lt;&lt; 16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Bf16(ushort* p) => Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(p), 16).AsSingle();

    /// <summary>
    /// 8 E4M3 values times <paramref name="scale"/>, equal to Fp8E4M3Table[b] · scale in float32.
    /// The sign-extended byte shifted left by 20 and masked is sign | magnitude bits as a float equal to
    /// value · 2^-120 (exact, normals and subnormals alike); multiplying by scale · 2^120 is then one rounding of
    /// the exact product value · scale. When scale · 2^120 is not finite, two multiplies (the first exact).
    /// Magnitude 0x7F is NaN.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Fp8(sbyte* p, float scale)
    {
        var v = Avx2.ConvertToVector256Int32(p);
        var bits = Avx2.ShiftLeftLogical(v, 20) & Vector256.Create(unchecked((int)0x87F00000));
        var mag = bits & Vector256.Create(0x07F00000);
        var nan = Vector256.Equals(mag, Vector256.Create(0x07F00000)).AsSingle();
        float s120 = scale * Pow120;
        Vector256<float> f = float.IsFinite(s120)
            ? bits.AsSingle() * Vector256.Create(s120)
            : bits.AsSingle() * Vector256.Create(Pow120) * Vector256.Create(scale);
        return f | nan;
    }

    /// <summary>As <see cref="Fp8(sbyte*, float)"/> with a precomputed finite scale · 2^120.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Fp8Scaled(sbyte* p, Vector256<float> s120)
    {
        var v = Avx2.ConvertToVector256Int32(p);
        var bits = Avx2.ShiftLeftLogical(v, 20) & Vector256.Create(unchecked((int)0x87F00000));
        var mag = bits & Vector256.Create(0x07F00000);
        var nan = Vector256.Equals(mag, Vector256.Create(0x07F00000)).AsSingle();
        return (bits.AsSingle() * s120) | nan;
    }

    // ---------------- 8x8 transpose ----------------

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void StoreTransposed(ref Vector256<float> a0, ref Vector256<float> a1, ref Vector256<float> a2, ref Vector256<float> a3,
        ref Vector256<float> a4, ref Vector256<float> a5, ref Vector256<float> a6, ref Vector256<float> a7, float* d, int ld)
    {
        Transpose8x8(ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7,
            out var t0, out var t1, out var t2, out var t3, out var t4, out var t5, out var t6, out var t7);
        t0.Store(d); t1.Store(d + ld); t2.Store(d + 2 * ld); t3.Store(d + 3 * ld);
        t4.Store(d + 4 * ld); t5.Store(d + 5 * ld); t6.Store(d + 6 * ld); t7.Store(d + 7 * ld);
    }

    /// <summary>Rows r0..r7 (8 floats each) to columns t0..t7: t_j[i] = r_i[j].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Transpose8x8(ref Vector256<float> r0, ref Vector256<float> r1, ref Vector256<float> r2, ref Vector256<float> r3,
        ref Vector256<float> r4, ref Vector256<float> r5, ref Vector256<float> r6, ref Vector256<float> r7,
        out Vector256<float> t0, out Vector256<float> t1, out Vector256<float> t2, out Vector256<float> t3,
        out Vector256<float> t4, out Vector256<float> t5, out Vector256<float> t6, out Vector256<float> t7)
    {
        var l01 = Avx.UnpackLow(r0, r1); var h01 = Avx.UnpackHigh(r0, r1);
        var l23 = Avx.UnpackLow(r2, r3); var h23 = Avx.UnpackHigh(r2, r3);
        var l45 = Avx.UnpackLow(r4, r5); var h45 = Avx.UnpackHigh(r4, r5);
        var l67 = Avx.UnpackLow(r6, r7); var h67 = Avx.UnpackHigh(r6, r7);
        var u0 = Avx.Shuffle(l01, l23, 0x44); var u1 = Avx.Shuffle(l01, l23, 0xEE);
        var u2 = Avx.Shuffle(h01, h23, 0x44); var u3 = Avx.Shuffle(h01, h23, 0xEE);
        var u4 = Avx.Shuffle(l45, l67, 0x44); var u5 = Avx.Shuffle(l45, l67, 0xEE);
        var u6 = Avx.Shuffle(h45, h67, 0x44); var u7 = Avx.Shuffle(h45, h67, 0xEE);
        t0 = Avx.Permute2x128(u0, u4, 0x20); t1 = Avx.Permute2x128(u1, u5, 0x20);
        t2 = Avx.Permute2x128(u2, u6, 0x20); t3 = Avx.Permute2x128(u3, u7, 0x20);
        t4 = Avx.Permute2x128(u0, u4, 0x31); t5 = Avx.Permute2x128(u1, u5, 0x31);
        t6 = Avx.Permute2x128(u2, u6, 0x31); t7 = Avx.Permute2x128(u3, u7, 0x31);
    }
}
