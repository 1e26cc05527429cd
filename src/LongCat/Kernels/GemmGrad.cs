using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace LongCat.Kernels;

/// <summary>
/// The two backward GEMMs of a linear layer y [M, N] = x [M, K] · W [N, K]ᵀ, over fp32 buffers (training keeps
/// weights and gradients in fp32):
/// <list type="bullet">
/// <item><see cref="InputGrad"/>: dx [M, K] (+)= dy [M, N] · W [N, K]</item>
/// <item><see cref="WeightGrad"/>: dW [N, K] += dyᵀ [N, M] · x [M, K]</item>
/// </list>
/// Both are one kernel, C [R, J] (+)= Σ_q A(r, q) · B [q, J] with B's rows contiguous: a 4×16 register tile of C
/// takes one FMA per (row, q) against two 8-wide B vectors. Every element of C is a single FMA chain in ascending q,
/// started from C's old value (accumulate) or zero, so neither tiling, nor cache blocking of q, nor the thread count
/// changes a bit. Tasks are (row block, column block) tiles of C whose boundaries depend only on the shape and which
/// write disjoint outputs: no atomics, no cross-thread reductions.
/// </summary>
public static unsafe class GemmGrad
{
    const int MR = 4, NR = 16, RowBlock = 64, ColBlock = 256, QBlock = 256;

    /// <summary>dx [M, K] = dy [M, N] · W [N, K] (or += with <paramref name="accumulate"/>).</summary>
    public static void InputGrad(ReadOnlySpan<float> dy, ReadOnlySpan<float> w, Span<float> dx, int m, int n, int k, bool accumulate = false)
    {
        Check(dy.Length, (long)m * n, nameof(dy));
        Check(w.Length, (long)n * k, nameof(w));
        Check(dx.Length, (long)m * k, nameof(dx));
        fixed (float* pa = dy, pb = w, pc = dx)
            Outer(pc, m, k, pa, aRow: n, aStep: 1, pb, n, accumulate);
    }

    /// <summary>dW [N, K] += dy [M, N]ᵀ · x [M, K]: gradients accumulate over every use of the weight.</summary>
    public static void WeightGrad(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, Span<float> dw, int m, int n, int k)
    {
        Check(dy.Length, (long)m * n, nameof(dy));
        Check(x.Length, (long)m * k, nameof(x));
        Check(dw.Length, (long)n * k, nameof(dw));
        fixed (float* pa = dy, pb = x, pc = dw)
            Outer(pc, n, k, pa, aRow: 1, aStep: n, pb, m, accumulate: true);
    }

    static void Check(int have, long need, string name)
    {
        if (have < need) throw new ArgumentException($"{name} has {have} values, the shapes need {need}", name);
    }

    /// <summary>C [rows, cols] (+)= Σ_{q &lt; depth} A[r·aRow + q·aStep] · B[q·cols + j]; C and B have row stride cols.</summary>
    static void Outer(float* c, int rows, int cols, float* a, long aRow, long aStep, float* b, int depth, bool accumulate)
    {
        if (rows == 0 || cols == 0) return;
        if (depth == 0)
        {
            if (!accumulate) new Span<float>(c, checked(rows * cols)).Clear();
            return;
        }
        int rowBlocks = (rows + RowBlock - 1) / RowBlock, colBlocks = (cols + ColBlock - 1) / ColBlock;
        nint cp = (nint)c, ap = (nint)a, bp = (nint)b;
        Parallelism.For(rowBlocks * colBlocks, task =>
        {
            int rb = task / colBlocks, cb = task % colBlocks;
            int r0 = rb * RowBlock, r1 = Math.Min(rows, r0 + RowBlock);
            int c0 = cb * ColBlock, c1 = Math.Min(cols, c0 + ColBlock);
            Tile((float*)cp, cols, (float*)ap, aRow, aStep, (float*)bp, depth, r0, r1, c0, c1, accumulate);
        });
    }

    static void Tile(float* c, int ldc, float* a, long aRow, long aStep, float* b, int depth, int r0, int r1, int c0, int c1, bool accumulate)
    {
        // Blocking q keeps a QBlock × ColBlock panel of B in cache while every row tile passes over it; C is
        // stored and reloaded between blocks, which is exact, so each element's FMA chain is unchanged.
        for (int q0 = 0; q0 < depth; q0 += QBlock)
        {
            int q1 = Math.Min(depth, q0 + QBlock);
            bool acc = accumulate || q0 > 0;
            for (int r = r0; r < r1; r += MR)
            {
                int mr = Math.Min(MR, r1 - r);
                for (int j = c0; j < c1; j += NR)
                {
                    int nc = Math.Min(NR, c1 - j);
                    if (mr == MR && nc == NR) Micro(c + (long)r * ldc + j, ldc, a + r * aRow, aRow, aStep, b + j, ldc, q0, q1, acc);
                    else Edge(c, ldc, a, aRow, aStep, b, r, r + mr, j, j + nc, q0, q1, acc);
                }
            }
        }
    }

    /// <summary>c[4, 16] (+)= Σ_q a(i, q) · b[q, 0..16]: eight 8-wide accumulators, one FMA chain per element.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Micro(float* c, int ldc, float* a, long aRow, long aStep, float* b, int ldb, int q0, int q1, bool accumulate)
    {
        Vector256<float> c00, c01, c10, c11, c20, c21, c30, c31;
        if (accumulate)
        {
            c00 = Vector256.Load(c); c01 = Vector256.Load(c + 8);
            c10 = Vector256.Load(c + ldc); c11 = Vector256.Load(c + ldc + 8);
            c20 = Vector256.Load(c + 2 * ldc); c21 = Vector256.Load(c + 2 * ldc + 8);
            c30 = Vector256.Load(c + 3 * ldc); c31 = Vector256.Load(c + 3 * ldc + 8);
        }
        else c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = Vector256<float>.Zero;
        float* a0 = a + q0 * aStep, a1 = a0 + aRow, a2 = a1 + aRow, a3 = a2 + aRow;
        float* bq = b + (long)q0 * ldb;
        for (int q = q0; q < q1; q++)
        {
            var b0 = Vector256.Load(bq);
            var b1 = Vector256.Load(bq + 8);
            bq += ldb;
            Vector256<float> v;
            v = Vector256.Create(*a0); c00 = Vector256.FusedMultiplyAdd(v, b0, c00); c01 = Vector256.FusedMultiplyAdd(v, b1, c01);
            v = Vector256.Create(*a1); c10 = Vector256.FusedMultiplyAdd(v, b0, c10); c11 = Vector256.FusedMultiplyAdd(v, b1, c11);
            v = Vector256.Create(*a2); c20 = Vector256.FusedMultiplyAdd(v, b0, c20); c21 = Vector256.FusedMultiplyAdd(v, b1, c21);
            v = Vector256.Create(*a3); c30 = Vector256.FusedMultiplyAdd(v, b0, c30); c31 = Vector256.FusedMultiplyAdd(v, b1, c31);
            a0 += aStep; a1 += aStep; a2 += aStep; a3 += aStep;
        }
        c00.Store(c); c01.Store(c + 8);
        c10.Store(c + ldc); c11.Store(c + ldc + 8);
        c20.Store(c + 2 * ldc); c21.Store(c + 2 * ldc + 8);
        c30.Store(c + 3 * ldc); c31.Store(c + 3 * ldc + 8);
    }

    /// <summary>Partial tiles: the same FMA chain per element as <see cref="Micro"/> (a scalar FMA rounds once, like a vector lane).</summary>
    static void Edge(float* c, int ldc, float* a, long aRow, long aStep, float* b, int r0, int r1, int j0, int j1, int q0, int q1, bool accumulate)
    {
        for (int r = r0; r < r1; r++)
        {
            float* ar = a + r * aRow;
            for (int j = j0; j < j1; j++)
            {
                float* cij = c + (long)r * ldc + j;
                float s = accumulate ? *cij : 0f;
                for (int q = q0; q < q1; q++) s = MathF.FusedMultiplyAdd(ar[q * aStep], b[(long)q * ldc + j], s);
                *cij = s;
            }
        }
    }
}
