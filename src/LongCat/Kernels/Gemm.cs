using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using LongCat.IO;

namespace LongCat.Kernels;

/// <summary>
/// y = x · Wᵀ for a weight W [N, K] in its stored dtype (F32, BF16, F16, FP8 block-scaled).
/// <para>
/// Two paths, chosen by M alone (never by thread count):
/// <list type="bullet">
/// <item>M &gt;= <see cref="PackedMinRows"/>: GotoBLAS-style. Panels of 32 output columns × KC of the weight are
/// dequantized into a small packed buffer (k-major), then an 8×32 register-tiled micro-kernel does outer-product
/// FMAs. Every output element is one sequential FMA chain over k = 0..K-1, so the result does not depend on
/// tiling, threads, or which rows share a tile.</item>
/// <item>M &lt; <see cref="PackedMinRows"/> (decode): memory-bound GEMV; each row of W is read once and
/// dequantized in registers inside the dot product.</item>
/// </list>
/// Work is split into (column group, row block) tasks that depend only on the shape.
/// </para>
/// </summary>
public static unsafe class Gemm
{
    public const int PackedMinRows = 4;
    const int MR = 8, NR = 32, KC = 256, PanelsPerTask = 4, RowBlock = 256;

    /// <summary>y [M, N] = x [M, K] · W [N, K]ᵀ. <paramref name="accumulate"/> adds into y instead of overwriting.</summary>
    public static void MatMul(ReadOnlySpan<float> x, Weight w, Span<float> y, int m, bool accumulate = false)
    {
        int n = w.Rows, k = w.Cols;
        if (x.Length < (long)m * k) throw new ArgumentException($"x has {x.Length} values, [{m}, {k}] needs {(long)m * k}", nameof(x));
        if (y.Length < (long)m * n) throw new ArgumentException($"y has {y.Length} values, [{m}, {n}] needs {(long)m * n}", nameof(y));
        if (m == 0 || n == 0) return;
        fixed (float* px = x, py = y)
        {
            if (m < PackedMinRows) Gemv(px, w, py, m, accumulate);
            else Packed(px, w, py, m, accumulate);
        }
    }

    // ---------------- packed path ----------------

    static void Packed(float* x, Weight w, float* y, int m, bool accumulate)
    {
        int n = w.Rows, k = w.Cols;
        int panels = (n + NR - 1) / NR;
        int groups = (panels + PanelsPerTask - 1) / PanelsPerTask;
        int rowBlocks = (m + RowBlock - 1) / RowBlock;
        nint xp = (nint)x, yp = (nint)y;
        Parallelism.For(groups * rowBlocks, task =>
        {
            int g = task % groups, rb = task / groups;
            int p0 = g * PanelsPerTask, p1 = Math.Min(panels, p0 + PanelsPerTask);
            int r0 = rb * RowBlock, r1 = Math.Min(m, r0 + RowBlock);
            PackedTask((float*)xp, w, (float*)yp, m, k, n, p0, p1, r0, r1, accumulate);
        });
    }

    [ThreadStatic] static float[]? t_panel;
    [ThreadStatic] static float[]? t_scratch;

    static void PackedTask(float* x, Weight w, float* y, int m, int k, int n, int p0, int p1, int r0, int r1, bool accumulate)
    {
        var panelArr = t_panel ??= GC.AllocateUninitializedArray<float>(PanelsPerTask * KC * NR, pinned: true);
        // scratch: an 8-row x-block padded with zero rows, and an 8x32 output tile for edges.
        var scratchArr = t_scratch ??= GC.AllocateUninitializedArray<float>(MR * KC + MR * NR, pinned: true);
        fixed (float* panel = panelArr, scratch = scratchArr)
        {
            float* xpad = scratch, ctile = scratch + MR * KC;
            for (int k0 = 0; k0 < k; k0 += KC)
            {
                int kc = Math.Min(KC, k - k0);
                bool acc = accumulate || k0 > 0;
                for (int p = p0; p < p1; p++) PackPanel(w, p * NR, k0, kc, panel + (p - p0) * KC * NR);
                for (int r = r0; r < r1; r += MR)
                {
                    int mr = Math.Min(MR, r1 - r);
                    float* xb = x + (long)r * k + k0;
                    int ldx = k;
                    if (mr < MR)
                    {
                        for (int i = 0; i < MR; i++)
                            for (int kk = 0; kk < kc; kk++)
                                xpad[i * kc + kk] = i < mr ? xb[(long)i * k + kk] : 0f;
                        xb = xpad; ldx = kc;
                    }
                    for (int p = p0; p < p1; p++)
                    {
                        int c0 = p * NR, nc = Math.Min(NR, n - c0);
                        float* pp = panel + (p - p0) * KC * NR;
                        if (mr == MR && nc == NR)
                            Kernel(xb, ldx, pp, y + (long)r * n + c0, n, kc, acc);
                        else
                        {
                            for (int i = 0; i < MR; i++)
                                for (int j = 0; j < NR; j++)
                                    ctile[i * NR + j] = acc && i < mr && j < nc ? y[(long)(r + i) * n + c0 + j] : 0f;
                            Kernel(xb, ldx, pp, ctile, NR, kc, true);
                            for (int i = 0; i < mr; i++)
                                for (int j = 0; j < nc; j++)
                                    y[(long)(r + i) * n + c0 + j] = ctile[i * NR + j];
                        }
                    }
                }
            }
        }
    }

    /// <summary>Dequantizes W[c0..c0+32, k0..k0+kc] into dst[kk * 32 + j] (k-major); rows past N are zero.</summary>
    static void PackPanel(Weight w, int c0, int k0, int kc, float* dst)
    {
        int n = w.Rows, k = w.Cols;
        int nc = Math.Min(NR, n - c0);
        for (int j = nc; j < NR; j++)
            for (int kk = 0; kk < kc; kk++) dst[kk * NR + j] = 0f;
        switch (w.DType)
        {
            case DType.F32:
                for (int j = 0; j < nc; j++)
                {
                    float* src = (float*)w.Data + (long)(c0 + j) * k + k0;
                    for (int kk = 0; kk < kc; kk++) dst[kk * NR + j] = src[kk];
                }
                break;
            case DType.BF16:
                for (int j = 0; j < nc; j++)
                {
                    ushort* src = (ushort*)w.Data + (long)(c0 + j) * k + k0;
                    for (int kk = 0; kk < kc; kk++) dst[kk * NR + j] = BitConverter.Int32BitsToSingle(src[kk] << 16);
                }
                break;
            case DType.F16:
                for (int j = 0; j < nc; j++)
                {
                    ushort* src = (ushort*)w.Data + (long)(c0 + j) * k + k0;
                    for (int kk = 0; kk < kc; kk++) dst[kk * NR + j] = (float)BitConverter.UInt16BitsToHalf(src[kk]);
                }
                break;
            case DType.F8_E4M3:
                {
                    var table = NumberFormats.Fp8E4M3Table;
                    int sc = w.ScaleCols;
                    for (int j = 0; j < nc; j++)
                    {
                        byte* src = w.Data + (long)(c0 + j) * k + k0;
                        float* srow = w.Scales + (long)((c0 + j) / w.BlockRows) * sc;
                        for (int kk = 0; kk < kc; kk++) dst[kk * NR + j] = table[src[kk]] * srow[(k0 + kk) / w.BlockCols];
                    }
                    break;
                }
        }
    }

    /// <summary>c[8, 32] (+)= a[8, kc] · p[kc, 32]: one FMA chain per element, k ascending.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Kernel(float* a, int lda, float* p, float* c, int ldc, int kc, bool accumulate)
    {
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<float> c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71;
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
            }
            else
            {
                c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = c60 = c61 = c70 = c71 = Vector512<float>.Zero;
            }
            float* a0 = a, a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda, a4 = a + 4 * lda, a5 = a + 5 * lda, a6 = a + 6 * lda, a7 = a + 7 * lda;
            for (int kk = 0; kk < kc; kk++)
            {
                var b0 = Vector512.Load(p);
                var b1 = Vector512.Load(p + 16);
                p += NR;
                Vector512<float> v;
                v = Vector512.Create(a0[kk]); c00 = Vector512.FusedMultiplyAdd(v, b0, c00); c01 = Vector512.FusedMultiplyAdd(v, b1, c01);
                v = Vector512.Create(a1[kk]); c10 = Vector512.FusedMultiplyAdd(v, b0, c10); c11 = Vector512.FusedMultiplyAdd(v, b1, c11);
                v = Vector512.Create(a2[kk]); c20 = Vector512.FusedMultiplyAdd(v, b0, c20); c21 = Vector512.FusedMultiplyAdd(v, b1, c21);
                v = Vector512.Create(a3[kk]); c30 = Vector512.FusedMultiplyAdd(v, b0, c30); c31 = Vector512.FusedMultiplyAdd(v, b1, c31);
                v = Vector512.Create(a4[kk]); c40 = Vector512.FusedMultiplyAdd(v, b0, c40); c41 = Vector512.FusedMultiplyAdd(v, b1, c41);
                v = Vector512.Create(a5[kk]); c50 = Vector512.FusedMultiplyAdd(v, b0, c50); c51 = Vector512.FusedMultiplyAdd(v, b1, c51);
                v = Vector512.Create(a6[kk]); c60 = Vector512.FusedMultiplyAdd(v, b0, c60); c61 = Vector512.FusedMultiplyAdd(v, b1, c61);
                v = Vector512.Create(a7[kk]); c70 = Vector512.FusedMultiplyAdd(v, b0, c70); c71 = Vector512.FusedMultiplyAdd(v, b1, c71);
            }
            c00.Store(c); c01.Store(c + 16);
            c10.Store(c + ldc); c11.Store(c + ldc + 16);
            c20.Store(c + 2 * ldc); c21.Store(c + 2 * ldc + 16);
            c30.Store(c + 3 * ldc); c31.Store(c + 3 * ldc + 16);
            c40.Store(c + 4 * ldc); c41.Store(c + 4 * ldc + 16);
            c50.Store(c + 5 * ldc); c51.Store(c + 5 * ldc + 16);
            c60.Store(c + 6 * ldc); c61.Store(c + 6 * ldc + 16);
            c70.Store(c + 7 * ldc); c71.Store(c + 7 * ldc + 16);
            return;
        }
        // Portable path: the same FMA chain per element, so results are bitwise equal to the SIMD path.
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++)
            {
                float s = accumulate ? c[i * ldc + j] : 0f;
                for (int kk = 0; kk < kc; kk++) s = MathF.FusedMultiplyAdd(a[i * lda + kk], p[kk * NR + j], s);
                c[i * ldc + j] = s;
            }
    }

    // ---------------- GEMV path ----------------

    const int GemvRowsPerTask = 64;

    static void Gemv(float* x, Weight w, float* y, int m, bool accumulate)
    {
        int n = w.Rows;
        nint xp = (nint)x, yp = (nint)y;
        Parallelism.ForRange(n, GemvRowsPerTask, (r0, r1) =>
        {
            float* xx = (float*)xp, yy = (float*)yp;
            for (int r = r0; r < r1; r++)
                for (int i = 0; i < m; i++)
                {
                    float d = Dot(w, r, xx + (long)i * w.Cols);
                    long o = (long)i * n + r;
                    yy[o] = accumulate ? yy[o] + d : d;
                }
        });
    }

    /// <summary>W[r, :] · x with W dequantized in registers. Fixed order: 16-lane partial sums, lanes summed, then the tail.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float Dot(Weight w, int r, float* x)
    {
        int k = w.Cols;
        long off = (long)r * k;
        int kv = Vector512.IsHardwareAccelerated ? k & ~15 : 0;
        var acc0 = Vector512<float>.Zero;
        float tail = 0;
        switch (w.DType)
        {
            case DType.F32:
                {
                    float* row = (float*)w.Data + off;
                    for (int c = 0; c < kv; c += 16) acc0 = Vector512.FusedMultiplyAdd(Vector512.Load(row + c), Vector512.Load(x + c), acc0);
                    for (int c = kv; c < k; c++) tail = MathF.FusedMultiplyAdd(row[c], x[c], tail);
                    break;
                }
            case DType.BF16:
                {
                    ushort* row = (ushort*)w.Data + off;
                    for (int c = 0; c < kv; c += 16)
                    {
                        var h = Vector256.Load(row + c);
                        var f = Vector512.ShiftLeft(Avx512F.ConvertToVector512UInt32(h), 16).AsSingle();
                        acc0 = Vector512.FusedMultiplyAdd(f, Vector512.Load(x + c), acc0);
                    }
                    for (int c = kv; c < k; c++) tail = MathF.FusedMultiplyAdd(BitConverter.Int32BitsToSingle(row[c] << 16), x[c], tail);
                    break;
                }
            case DType.F16:
                {
                    ushort* row = (ushort*)w.Data + off;
                    for (int c = 0; c < k; c++) tail = MathF.FusedMultiplyAdd((float)BitConverter.UInt16BitsToHalf(row[c]), x[c], tail);
                    kv = 0;
                    break;
                }
            case DType.F8_E4M3:
                {
                    byte* row = w.Data + off;
                    float* srow = w.Scales + (long)(r / w.BlockRows) * w.ScaleCols;
                    int bc = w.BlockCols;
                    if (bc % 16 != 0) kv = 0; // a 16-lane group must not straddle two scale blocks
                    var t = NumberFormats.Fp8E4M3Table;
                    var lowMask = Vector512.Create(0x7Fu);
                    var pow120 = Vector512.Create(BitConverter.Int32BitsToSingle(247 << 23)); // 2^120
                    var nan = Vector512.Create(float.NaN);
                    for (int c = 0; c < kv; c += 16)
                    {
                        var b = Avx512F.ConvertToVector512UInt32(Vector128.Load(row + c));
                        var mag = b & lowMask;
                        // (e4m3 & 0x7F) << 20 is a float with the same exponent/mantissa bits shifted down by 120:
                        // scaling by 2^120 is exact for normals and subnormals alike.
                        var v = Vector512.ShiftLeft(mag, 20).AsSingle() * pow120;
                        v = Vector512.ConditionalSelect(Vector512.Equals(mag, lowMask).AsSingle(), nan, v);
                        v = (v.AsUInt32() | Vector512.ShiftLeft(b & Vector512.Create(0x80u), 24)).AsSingle();
                        v *= Vector512.Create(srow[c / bc]);
                        acc0 = Vector512.FusedMultiplyAdd(v, Vector512.Load(x + c), acc0);
                    }
                    for (int c = kv; c < k; c++) tail = MathF.FusedMultiplyAdd(t[row[c]] * srow[c / bc], x[c], tail);
                    break;
                }
        }
        return kv > 0 ? Vector512.Sum(acc0) + tail : tail;
    }
}
