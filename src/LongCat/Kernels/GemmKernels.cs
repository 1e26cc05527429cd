using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace LongCat.Kernels;

/// <summary>
/// Register-tiled micro-kernels c[MR, NR] (+)= a[kc, MR]ᵀ · b[kc, NR] over packed operands (a: x rows interleaved
/// k-major, b: dequantized weight columns k-major). Each output element is one FMA chain over kk = 0..kc-1,
/// starting from c (accumulate) or +0, so every kernel (AVX2, AVX-512, scalar) gives the same bits.
/// </summary>
static unsafe class GemmKernels
{
    /// <summary>AVX2/FMA: 6×16, 12 ymm accumulators + 2 for b + 1 broadcast = 15 of 16 registers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Kernel6x16(float* a, float* b, float* c, nint ldc, int kc, bool accumulate)
    {
        Vector256<float> c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
        if (accumulate)
        {
            c00 = Vector256.Load(c); c01 = Vector256.Load(c + 8);
            c10 = Vector256.Load(c + ldc); c11 = Vector256.Load(c + ldc + 8);
            c20 = Vector256.Load(c + 2 * ldc); c21 = Vector256.Load(c + 2 * ldc + 8);
            c30 = Vector256.Load(c + 3 * ldc); c31 = Vector256.Load(c + 3 * ldc + 8);
            c40 = Vector256.Load(c + 4 * ldc); c41 = Vector256.Load(c + 4 * ldc + 8);
            c50 = Vector256.Load(c + 5 * ldc); c51 = Vector256.Load(c + 5 * ldc + 8);
        }
        else
        {
            c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = Vector256<float>.Zero;
        }
        float* end = b + (nint)kc * 16;
        while (b < end)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            Vector256<float> v;
            v = Vector256.Create(a[0]); c00 = Vector256.FusedMultiplyAdd(v, b0, c00); c01 = Vector256.FusedMultiplyAdd(v, b1, c01);
            v = Vector256.Create(a[1]); c10 = Vector256.FusedMultiplyAdd(v, b0, c10); c11 = Vector256.FusedMultiplyAdd(v, b1, c11);
            v = Vector256.Create(a[2]); c20 = Vector256.FusedMultiplyAdd(v, b0, c20); c21 = Vector256.FusedMultiplyAdd(v, b1, c21);
            v = Vector256.Create(a[3]); c30 = Vector256.FusedMultiplyAdd(v, b0, c30); c31 = Vector256.FusedMultiplyAdd(v, b1, c31);
            v = Vector256.Create(a[4]); c40 = Vector256.FusedMultiplyAdd(v, b0, c40); c41 = Vector256.FusedMultiplyAdd(v, b1, c41);
            v = Vector256.Create(a[5]); c50 = Vector256.FusedMultiplyAdd(v, b0, c50); c51 = Vector256.FusedMultiplyAdd(v, b1, c51);
            a += 6;
            b += 16;
        }
        c00.Store(c); c01.Store(c + 8);
        c10.Store(c + ldc); c11.Store(c + ldc + 8);
        c20.Store(c + 2 * ldc); c21.Store(c + 2 * ldc + 8);
        c30.Store(c + 3 * ldc); c31.Store(c + 3 * ldc + 8);
        c40.Store(c + 4 * ldc); c41.Store(c + 4 * ldc + 8);
        c50.Store(c + 5 * ldc); c51.Store(c + 5 * ldc + 8);
    }

    /// <summary>AVX-512: 12×32, 24 zmm accumulators + 2 for b + broadcasts (of 32 registers).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Kernel12x32(float* a, float* b, float* c, nint ldc, int kc, bool accumulate)
    {
        Vector512<float> c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51,
                         c60, c61, c70, c71, c80, c81, c90, c91, ca0, ca1, cb0, cb1;
        if (accumulate)
        {
            c00 = Vector512.Load(c); c01 = Vector512.Load(c + 16);
            c10 = Vector512.Load(c + ldc); c11 = Vector512.Load(c + ldc + 16);
            c20 = Vector512.Load(c + 2 * ldc); c21 = Vector512.Load(c + 2 * ldc + 16);
            c30 = Vector512.Load(c + 3 * ldc); c31 = Vector512.Load(c + 3 * ldc + 16);
            c40 = Vector512.Load(c + 4 * ldc); c41 = Vector512.Load(c + 4 * ldc + 16);
            c50 = Vector512.Load(c + 5 * ldc); c51 = Vector512.Load(c + 5 * ldc + 16);
            c60 = Vector512.Load(c + 6 * ldc); c61 = Vector512.Load(c + 6 * ldc + 16);
            c70 = Vector512.Load(c + 7 * ldc); c71 = Vector512.Load(c + 7 * ldc + 16);
            c80 = Vector512.Load(c + 8 * ldc); c81 = Vector512.Load(c + 8 * ldc + 16);
            c90 = Vector512.Load(c + 9 * ldc); c91 = Vector512.Load(c + 9 * ldc + 16);
            ca0 = Vector512.Load(c + 10 * ldc); ca1 = Vector512.Load(c + 10 * ldc + 16);
            cb0 = Vector512.Load(c + 11 * ldc); cb1 = Vector512.Load(c + 11 * ldc + 16);
        }
        else
        {
            c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 =
            c60 = c61 = c70 = c71 = c80 = c81 = c90 = c91 = ca0 = ca1 = cb0 = cb1 = Vector512<float>.Zero;
        }
        float* end = b + (nint)kc * 32;
        while (b < end)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            Vector512<float> v;
            v = Vector512.Create(a[0]); c00 = Vector512.FusedMultiplyAdd(v, b0, c00); c01 = Vector512.FusedMultiplyAdd(v, b1, c01);
            v = Vector512.Create(a[1]); c10 = Vector512.FusedMultiplyAdd(v, b0, c10); c11 = Vector512.FusedMultiplyAdd(v, b1, c11);
            v = Vector512.Create(a[2]); c20 = Vector512.FusedMultiplyAdd(v, b0, c20); c21 = Vector512.FusedMultiplyAdd(v, b1, c21);
            v = Vector512.Create(a[3]); c30 = Vector512.FusedMultiplyAdd(v, b0, c30); c31 = Vector512.FusedMultiplyAdd(v, b1, c31);
            v = Vector512.Create(a[4]); c40 = Vector512.FusedMultiplyAdd(v, b0, c40); c41 = Vector512.FusedMultiplyAdd(v, b1, c41);
            v = Vector512.Create(a[5]); c50 = Vector512.FusedMultiplyAdd(v, b0, c50); c51 = Vector512.FusedMultiplyAdd(v, b1, c51);
            v = Vector512.Create(a[6]); c60 = Vector512.FusedMultiplyAdd(v, b0, c60); c61 = Vector512.FusedMultiplyAdd(v, b1, c61);
            v = Vector512.Create(a[7]); c70 = Vector512.FusedMultiplyAdd(v, b0, c70); c71 = Vector512.FusedMultiplyAdd(v, b1, c71);
            v = Vector512.Create(a[8]); c80 = Vector512.FusedMultiplyAdd(v, b0, c80); c81 = Vector512.FusedMultiplyAdd(v, b1, c81);
            v = Vector512.Create(a[9]); c90 = Vector512.FusedMultiplyAdd(v, b0, c90); c91 = Vector512.FusedMultiplyAdd(v, b1, c91);
            v = Vector512.Create(a[10]); ca0 = Vector512.FusedMultiplyAdd(v, b0, ca0); ca1 = Vector512.FusedMultiplyAdd(v, b1, ca1);
            v = Vector512.Create(a[11]); cb0 = Vector512.FusedMultiplyAdd(v, b0, cb0); cb1 = Vector512.FusedMultiplyAdd(v, b1, cb1);
            a += 12;
            b += 32;
        }
        c00.Store(c); c01.Store(c + 16);
        c10.Store(c + ldc); c11.Store(c + ldc + 16);
        c20.Store(c + 2 * ldc); c21.Store(c + 2 * ldc + 16);
        c30.Store(c + 3 * ldc); c31.Store(c + 3 * ldc + 16);
        c40.Store(c + 4 * ldc); c41.Store(c + 4 * ldc + 16);
        c50.Store(c + 5 * ldc); c51.Store(c + 5 * ldc + 16);
        c60.Store(c + 6 * ldc); c61.Store(c + 6 * ldc + 16);
        c70.Store(c + 7 * ldc); c71.Store(c + 7 * ldc + 16);
        c80.Store(c + 8 * ldc); c81.Store(c + 8 * ldc + 16);
        c90.Store(c + 9 * ldc); c91.Store(c + 9 * ldc + 16);
        ca0.Store(c + 10 * ldc); ca1.Store(c + 10 * ldc + 16);
        cb0.Store(c + 11 * ldc); cb1.Store(c + 11 * ldc + 16);
    }

    /// <summary>Portable: the same FMA chain per element as the SIMD kernels.</summary>
    internal static void KernelScalar(float* a, int mr, float* b, int nr, float* c, nint ldc, int kc, bool accumulate)
    {
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < nr; j++)
            {
                float s = accumulate ? c[i * ldc + j] : 0f;
                for (int kk = 0; kk < kc; kk++) s = MathF.FusedMultiplyAdd(a[kk * mr + i], b[kk * nr + j], s);
                c[i * ldc + j] = s;
            }
    }
}
