using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using LongCat.IO;

namespace LongCat.Kernels;

/// <summary>
/// Packing and in-register dequantization for <see cref="Gemm"/>. Every dequantized weight equals the scalar
/// definition bit for bit: F32 as is, BF16 = bits &lt;&lt; 16, F16 = (float)Half, FP8 = float32(e4m3) · scale
/// (one float32 multiply, <see cref="NumberFormats.Fp8E4M3Table"/>), INT8 = (float)q · scale[row] (one multiply).
/// </summary>
static unsafe class GemmPack
{
    /// <summary>2^120: an E4M3 byte's magnitude bits shifted left by 20 are a float equal to its value · 2^-120.</summary>
    internal static readonly float Pow120 = BitConverter.Int32BitsToSingle(247 << 23);

    // ---------------- x: MR-interleaved row groups ----------------

    /// <summary>
    /// Packs row groups [g0, g1) of x [M, K] (of <paramref name="groups"/> in all) for slices of depth
    /// <paramref name="kcMax"/>: the slice at k0 starts at dst + groups·mr·k0 and holds group g at g·kc·mr, as
    /// x[g·mr + i, k0 + kk] at kk·mr + i (rows past M are zero). So each slice is contiguous.
    /// </summary>
    internal static void PackX(float* x, int m, int k, int mr, int kcMax, int g0, int g1, int groups, float* dst)
    {
        for (int k0 = 0; k0 < k; k0 += kcMax)
        {
            int kc = Math.Min(kcMax, k - k0);
            float* slab = dst + (long)groups * mr * k0;
            for (int g = g0; g < g1; g++)
            {
                float* d = slab + (long)g * kc * mr;
                int r0 = g * mr, rows = Math.Min(mr, m - r0);
                if (mr == 6 && rows == 6 && kc > 8 && Avx.IsSupported)
                {
                    PackX6(x + (long)r0 * k + k0, k, kc, d);
                    continue;
                }
                if (mr == 12 && rows == 12 && kc > 8 && Avx.IsSupported)
                {
                    PackX12(x + (long)r0 * k + k0, k, kc, d);
                    continue;
                }
                for (int i = 0; i < mr; i++)
                {
                    if (i < rows)
                    {
                        float* s = x + (long)(r0 + i) * k + k0;
                        for (int kk = 0; kk < kc; kk++) d[kk * mr + i] = s[kk];
                    }
                    else
                        for (int kk = 0; kk < kc; kk++) d[kk * mr + i] = 0f;
                }
            }
        }
    }

    /// <summary>
    /// As <see cref="PackX"/> for an A given by columns, A(i, q) = src[q·ld + i] (dW's dyᵀ): each packed k step
    /// is a contiguous copy of mr values.
    /// </summary>
    internal static void PackXT(float* src, long ld, int m, int k, int mr, int kcMax, int g0, int g1, int groups, float* dst)
    {
        for (int k0 = 0; k0 < k; k0 += kcMax)
        {
            int kc = Math.Min(kcMax, k - k0);
            float* slab = dst + (long)groups * mr * k0;
            for (int g = g0; g < g1; g++)
            {
                float* d = slab + (long)g * kc * mr;
                int r0 = g * mr, rows = Math.Min(mr, m - r0);
                float* s = src + (long)k0 * ld + r0;
                if (rows == mr && mr == 12)
                    for (int kk = 0; kk < kc; kk++, s += ld, d += 12)
                    {
                        Vector256.Store(Vector256.Load(s), d);
                        Vector128.Store(Vector128.Load(s + 8), d + 8);
                    }
                else if (rows == mr && mr == 6)
                    for (int kk = 0; kk < kc; kk++, s += ld, d += 6)
                    {
                        Vector128.Store(Vector128.Load(s), d);
                        d[4] = s[4]; d[5] = s[5];
                    }
                else
                    for (int kk = 0; kk < kc; kk++, s += ld, d += mr)
                        for (int i = 0; i < mr; i++) d[i] = i < rows ? s[i] : 0f;
            }
        }
    }

    /// <summary>
    /// Packs an F32 panel B(q, j) = src[q·ld + j], q &lt; kc, j &lt; nc, into dst[q·nr + j] (columns past nc zero):
    /// a contiguous copy per depth step (backward GEMMs, whose B operand is W or x in row-major order).
    /// </summary>
    internal static void PackB(float* src, long ld, int kc, int nc, int nr, float* dst)
    {
        if (nc == nr && (nr & 7) == 0)
        {
            for (int kk = 0; kk < kc; kk++, src += ld, dst += nr)
                for (int j = 0; j < nr; j += 8) Vector256.Store(Vector256.Load(src + j), dst + j);
            return;
        }
        for (int kk = 0; kk < kc; kk++, src += ld, dst += nr)
            for (int j = 0; j < nr; j++) dst[j] = j < nc ? src[j] : 0f;
    }

    /// <summary>6 rows: 8×8 transposes (two zero rows) with overlapping 8-wide stores 6 floats apart.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void PackX6(float* s, int k, int kc, float* d)
    {
        var z = Vector256<float>.Zero;
        int kk = 0;
        // Rows 6 and 7 of each transpose are zero; t_j is stored 6 floats after t_{j-1}, so the 2 junk lanes are
        // overwritten by the next store.
        // The last store of a step writes 2 floats past the step; keep at least one column for the scalar tail
        // so nothing is written past the group.
        for (; kk + 8 < kc; kk += 8)
        {
            StoreTransposed(Vector256.Load(s + kk), Vector256.Load(s + k + kk), Vector256.Load(s + 2L * k + kk),
                Vector256.Load(s + 3L * k + kk), Vector256.Load(s + 4L * k + kk), Vector256.Load(s + 5L * k + kk), z, z, d + kk * 6, 6);
        }
        for (; kk < kc; kk++)
            for (int i = 0; i < 6; i++) d[kk * 6 + i] = s[(long)i * k + kk];
    }

    /// <summary>
    /// 12 rows (AVX-512 tiles): two 6-row transposes per step, stores interleaved so that each store's 2 junk
    /// lanes are overwritten by the next one.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void PackX12(float* s, int k, int kc, float* d)
    {
        var z = Vector256<float>.Zero;
        int kk = 0;
        for (; kk + 8 < kc; kk += 8)
        {
            float* a = s + kk, b = s + 6L * k + kk;
            var l01 = Avx.UnpackLow(Vector256.Load(a), Vector256.Load(a + k)); var h01 = Avx.UnpackHigh(Vector256.Load(a), Vector256.Load(a + k));
            var l23 = Avx.UnpackLow(Vector256.Load(a + 2L * k), Vector256.Load(a + 3L * k)); var h23 = Avx.UnpackHigh(Vector256.Load(a + 2L * k), Vector256.Load(a + 3L * k));
            var l45 = Avx.UnpackLow(Vector256.Load(a + 4L * k), Vector256.Load(a + 5L * k)); var h45 = Avx.UnpackHigh(Vector256.Load(a + 4L * k), Vector256.Load(a + 5L * k));
            var m01 = Avx.UnpackLow(Vector256.Load(b), Vector256.Load(b + k)); var g01 = Avx.UnpackHigh(Vector256.Load(b), Vector256.Load(b + k));
            var m23 = Avx.UnpackLow(Vector256.Load(b + 2L * k), Vector256.Load(b + 3L * k)); var g23 = Avx.UnpackHigh(Vector256.Load(b + 2L * k), Vector256.Load(b + 3L * k));
            var m45 = Avx.UnpackLow(Vector256.Load(b + 4L * k), Vector256.Load(b + 5L * k)); var g45 = Avx.UnpackHigh(Vector256.Load(b + 4L * k), Vector256.Load(b + 5L * k));
            // Columns j of rows 0-5 (A_j) and rows 6-11 (B_j): A_j at o + 12j, B_j at o + 12j + 6.
            var au0 = Avx.Shuffle(l01, l23, 0x44); var au1 = Avx.Shuffle(l01, l23, 0xEE);
            var au2 = Avx.Shuffle(h01, h23, 0x44); var au3 = Avx.Shuffle(h01, h23, 0xEE);
            var au4 = Avx.Shuffle(l45, z, 0x44); var au5 = Avx.Shuffle(l45, z, 0xEE);
            var au6 = Avx.Shuffle(h45, z, 0x44); var au7 = Avx.Shuffle(h45, z, 0xEE);
            var bu0 = Avx.Shuffle(m01, m23, 0x44); var bu1 = Avx.Shuffle(m01, m23, 0xEE);
            var bu2 = Avx.Shuffle(g01, g23, 0x44); var bu3 = Avx.Shuffle(g01, g23, 0xEE);
            var bu4 = Avx.Shuffle(m45, z, 0x44); var bu5 = Avx.Shuffle(m45, z, 0xEE);
            var bu6 = Avx.Shuffle(g45, z, 0x44); var bu7 = Avx.Shuffle(g45, z, 0xEE);
            float* o = d + kk * 12;
            Avx.Permute2x128(au0, au4, 0x20).Store(o); Avx.Permute2x128(bu0, bu4, 0x20).Store(o + 6);
            Avx.Permute2x128(au1, au5, 0x20).Store(o + 12); Avx.Permute2x128(bu1, bu5, 0x20).Store(o + 18);
            Avx.Permute2x128(au2, au6, 0x20).Store(o + 24); Avx.Permute2x128(bu2, bu6, 0x20).Store(o + 30);
            Avx.Permute2x128(au3, au7, 0x20).Store(o + 36); Avx.Permute2x128(bu3, bu7, 0x20).Store(o + 42);
            Avx.Permute2x128(au0, au4, 0x31).Store(o + 48); Avx.Permute2x128(bu0, bu4, 0x31).Store(o + 54);
            Avx.Permute2x128(au1, au5, 0x31).Store(o + 60); Avx.Permute2x128(bu1, bu5, 0x31).Store(o + 66);
            Avx.Permute2x128(au2, au6, 0x31).Store(o + 72); Avx.Permute2x128(bu2, bu6, 0x31).Store(o + 78);
            Avx.Permute2x128(au3, au7, 0x31).Store(o + 84); Avx.Permute2x128(bu3, bu7, 0x31).Store(o + 90);
        }
        for (; kk < kc; kk++)
            for (int i = 0; i < 12; i++) d[kk * 12 + i] = s[(long)i * k + kk];
    }

    // ---------------- W: k-major column panels ----------------

    /// <summary>Prefetches (into L2) the weight bytes of W[c0 .. c0+nr, k0 .. k0+kc], the next panel to pack.</summary>
    internal static void PrefetchPanel(Weight w, int c0, int k0, int kc, int nr)
    {
        if (!Sse.IsSupported) return;
        int es = DTypes.SizeOf(w.DType);
        int r1 = Math.Min(w.Rows, c0 + nr);
        long rowBytes = (long)w.Cols * es;
        for (int r = c0; r < r1; r++)
        {
            byte* p = w.Data + r * rowBytes + (long)k0 * es;
            byte* end = p + (long)kc * es;
            for (p = (byte*)((nint)p & ~(nint)63); p < end; p += 64) Sse.Prefetch1(p);
        }
    }

    /// <summary>
    /// Dequantizes W[c0 .. c0+nr, k0 .. k0+kc] into dst[kk·nr + j] (k-major; columns past N are zero).
    /// <paramref name="scratch"/> holds 8·kc floats (F16 only).
    /// </summary>
    internal static void PackW(Weight w, int c0, int k0, int kc, int nr, float* dst, float* scratch, bool simd, bool fp8NoNan)
    {
        int n = w.Rows;
        for (int j0 = 0; j0 < nr; j0 += 8)
        {
            int r0 = c0 + j0;
            int rows = Math.Min(8, n - r0);
            if (rows == 8 && simd && kc >= 8 && Avx2.IsSupported && PackW8(w, r0, k0, kc, nr, dst + j0, scratch, fp8NoNan)) continue;
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
                case DType.I8:
                    {
                        sbyte* s = (sbyte*)w.Data + off;
                        float sc = w.Scales[r0 + j];
                        for (int kk = 0; kk < kc; kk++) d[kk * nr] = s[kk] * sc;
                        break;
                    }
            }
        }
    }

    /// <summary>8 full columns, 8 k at a time: dequantize 8 rows of W in registers, transpose, store.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static bool PackW8(Weight w, int r0, int k0, int kc, int nr, float* dst, float* scratch, bool fp8NoNan)
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
                        StoreTransposed(a0, a1, a2, a3, a4, a5, a6, a7, dst + kk * nr, nr);
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
                        StoreTransposed(a0, a1, a2, a3, a4, a5, a6, a7, dst + kk * nr, nr);
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
                        StoreTransposed(a0, a1, a2, a3, a4, a5, a6, a7, dst + kk * nr, nr);
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
                        if (fp8NoNan)
                            StoreTransposed(Fp8NoNan(p, s0[b]), Fp8NoNan(p + k, s1[b]), Fp8NoNan(p + 2L * k, s2[b]), Fp8NoNan(p + 3L * k, s3[b]),
                                Fp8NoNan(p + 4L * k, s4[b]), Fp8NoNan(p + 5L * k, s5[b]), Fp8NoNan(p + 6L * k, s6[b]), Fp8NoNan(p + 7L * k, s7[b]), dst + kk * nr, nr);
                        else
                            StoreTransposed(Fp8(p, s0[b]), Fp8(p + k, s1[b]), Fp8(p + 2L * k, s2[b]), Fp8(p + 3L * k, s3[b]),
                                Fp8(p + 4L * k, s4[b]), Fp8(p + 5L * k, s5[b]), Fp8(p + 6L * k, s6[b]), Fp8(p + 7L * k, s7[b]), dst + kk * nr, nr);
                    }
                    break;
                }
            case DType.I8:
                {
                    sbyte* s = (sbyte*)w.Data + (long)r0 * k + k0;
                    float* sp = w.Scales + r0;
                    Vector256<float> v0 = Vector256.Create(sp[0]), v1 = Vector256.Create(sp[1]), v2 = Vector256.Create(sp[2]), v3 = Vector256.Create(sp[3]);
                    Vector256<float> v4 = Vector256.Create(sp[4]), v5 = Vector256.Create(sp[5]), v6 = Vector256.Create(sp[6]), v7 = Vector256.Create(sp[7]);
                    for (int kk = 0; kk < kv; kk += 8)
                    {
                        sbyte* p = s + kk;
                        StoreTransposed(I8(p, v0), I8(p + k, v1), I8(p + 2L * k, v2), I8(p + 3L * k, v3),
                            I8(p + 4L * k, v4), I8(p + 5L * k, v5), I8(p + 6L * k, v6), I8(p + 7L * k, v7), dst + kk * nr, nr);
                    }
                    break;
                }
            default:
                return false;
        }
        if (kv < kc) PackWScalar(w, r0, 8, k0 + kv, kc - kv, nr, dst + kv * nr);
        return true;
    }

    // ---------------- whole rows ----------------

    /// <summary>Row r of W dequantized into dst[0..Cols) (F32, exactly <see cref="Weight.DequantizeRow(int, Span{float})"/>).</summary>
    internal static void DequantRow(Weight w, int r, float* dst)
    {
        int k = w.Cols, k8 = k & ~7, c = 0;
        long off = (long)r * k;
        if (Avx2.IsSupported)
            switch (w.DType)
            {
                case DType.F32:
                    new ReadOnlySpan<float>((float*)w.Data + off, k).CopyTo(new Span<float>(dst, k));
                    return;
                case DType.F16:
                    System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>((ushort*)w.Data + off, k), new Span<float>(dst, k));
                    return;
                case DType.BF16:
                    for (ushort* s = (ushort*)w.Data + off; c < k8; c += 8) Bf16(s + c).Store(dst + c);
                    break;
                case DType.I8:
                    {
                        var sc = Vector256.Create(w.Scales[r]);
                        for (sbyte* s = (sbyte*)w.Data + off; c < k8; c += 8) I8(s + c, sc).Store(dst + c);
                        break;
                    }
                case DType.F8_E4M3 when w.BlockCols % 8 == 0:
                    {
                        float* srow = w.Scales + (long)(r / w.BlockRows) * w.ScaleCols;
                        for (sbyte* s = (sbyte*)w.Data + off; c < k8; c += 8) Fp8(s + c, srow[c / w.BlockCols]).Store(dst + c);
                        break;
                    }
            }
        if (c < k) w.DequantizeRow(r, new Span<float>(dst, k)[c..], c);
    }

    /// <summary>16 INT8 values sign-extended to int32 (one instruction on AVX-512; two AVX2 ones otherwise).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<int> I8x16(sbyte* p) => Avx512F.IsSupported
        ? Avx512F.ConvertToVector512Int32(Vector128.Load(p))
        : Vector512.Create(Avx2.ConvertToVector256Int32(p), Avx2.ConvertToVector256Int32(p + 8));

    /// <summary>16 UINT16 values zero-extended to int32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<int> U16x16(ushort* p) => Avx512F.IsSupported
        ? Avx512F.ConvertToVector512Int32(Vector256.Load(p))
        : Vector512.Create(Avx2.ConvertToVector256Int32(p), Avx2.ConvertToVector256Int32(p + 8));

    // ---------------- in-register dequantization (8 values) ----------------

    /// <summary>8 BF16 values widened: bits &lt;&lt; 16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Bf16(ushort* p) => Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(p), 16).AsSingle();

    /// <summary>8 INT8 values widened (sbyte → int → float, exact) times the row scale: one multiply each.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> I8(sbyte* p, Vector256<float> scale) =>
        Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(p)) * scale;

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

    /// <summary>As <see cref="Fp8(sbyte*, float)"/> for bytes known not to be NaN codes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Fp8NoNan(sbyte* p, float scale)
    {
        var bits = Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(p), 20) & Vector256.Create(unchecked((int)0x87F00000));
        float s120 = scale * Pow120;
        return float.IsFinite(s120)
            ? bits.AsSingle() * Vector256.Create(s120)
            : bits.AsSingle() * Vector256.Create(Pow120) * Vector256.Create(scale);
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

    /// <summary>As <see cref="Fp8Scaled"/> for bytes known not to be NaN codes (no magnitude 0x7F).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Fp8ScaledNoNan(sbyte* p, Vector256<float> s120)
    {
        var bits = Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(p), 20) & Vector256.Create(unchecked((int)0x87F00000));
        return bits.AsSingle() * s120;
    }

    static readonly System.Runtime.CompilerServices.ConditionalWeakTable<Weight, object> s_fp8Nan = new();
    static readonly object s_yes = true, s_no = false;

    /// <summary>Whether an FP8 weight holds any NaN code (S.1111.111). Scanned once per weight, then cached.</summary>
    internal static bool Fp8HasNanCodes(Weight w)
    {
        if (s_fp8Nan.TryGetValue(w, out var v)) return ReferenceEquals(v, s_yes);
        long count = (long)w.Rows * w.Cols;
        bool nan = false;
        byte* p = w.Data;
        long i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var low = Vector256.Create((byte)0x7F);
            var any = Vector256<byte>.Zero;
            for (; i + 32 <= count; i += 32)
            {
                any |= Vector256.Equals(Vector256.Load(p + i) & low, low);
                if ((i & ((1 << 20) - 1)) == 0 && any != Vector256<byte>.Zero) break;
            }
            nan = any != Vector256<byte>.Zero;
        }
        for (; !nan && i < count; i++) nan = (p[i] & 0x7F) == 0x7F;
        s_fp8Nan.AddOrUpdate(w, nan ? s_yes : s_no);
        return nan;
    }

    // ---------------- 8x8 transpose ----------------

    /// <summary>Rows a0..a7 (8 floats each) stored as columns: d[j·ld + i] = a_i[j], for j = 0..7.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void StoreTransposed(Vector256<float> a0, Vector256<float> a1, Vector256<float> a2, Vector256<float> a3,
        Vector256<float> a4, Vector256<float> a5, Vector256<float> a6, Vector256<float> a7, float* d, nint ld)
    {
        var l01 = Avx.UnpackLow(a0, a1); var h01 = Avx.UnpackHigh(a0, a1);
        var l23 = Avx.UnpackLow(a2, a3); var h23 = Avx.UnpackHigh(a2, a3);
        var l45 = Avx.UnpackLow(a4, a5); var h45 = Avx.UnpackHigh(a4, a5);
        var l67 = Avx.UnpackLow(a6, a7); var h67 = Avx.UnpackHigh(a6, a7);
        var u0 = Avx.Shuffle(l01, l23, 0x44); var u1 = Avx.Shuffle(l01, l23, 0xEE);
        var u2 = Avx.Shuffle(h01, h23, 0x44); var u3 = Avx.Shuffle(h01, h23, 0xEE);
        var u4 = Avx.Shuffle(l45, l67, 0x44); var u5 = Avx.Shuffle(l45, l67, 0xEE);
        var u6 = Avx.Shuffle(h45, h67, 0x44); var u7 = Avx.Shuffle(h45, h67, 0xEE);
        Avx.Permute2x128(u0, u4, 0x20).Store(d);
        Avx.Permute2x128(u1, u5, 0x20).Store(d + ld);
        Avx.Permute2x128(u2, u6, 0x20).Store(d + 2 * ld);
        Avx.Permute2x128(u3, u7, 0x20).Store(d + 3 * ld);
        Avx.Permute2x128(u0, u4, 0x31).Store(d + 4 * ld);
        Avx.Permute2x128(u1, u5, 0x31).Store(d + 5 * ld);
        Avx.Permute2x128(u2, u6, 0x31).Store(d + 6 * ld);
        Avx.Permute2x128(u3, u7, 0x31).Store(d + 7 * ld);
    }
}
