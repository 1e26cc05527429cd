using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using static LongCat.Kernels.Gemm;

namespace LongCat.Kernels;

/// <summary>
/// The building blocks of the attention kernels (<see cref="Attention"/>, <see cref="AttentionGrad"/>): one small
/// strided matrix multiply-accumulate and the elementwise pieces of the online softmax.
/// <para>Bit contract: every output element is computed by the same sequence of fp32 operations whatever the
/// instruction set (scalar, AVX2, AVX-512), the vector width, the blocking or which other rows share a vector: the
/// multiply-accumulate is one fused-multiply-add chain per element in ascending k, and the softmax pieces are
/// elementwise (a vector lane is a query row). So the attention kernels give the same bits on every machine, for any
/// thread count, and for any batch composition.</para>
/// </summary>
internal static unsafe class AttentionKernels
{
    /// <summary>
    /// c[r, j] (=, or += with <paramref name="acc"/>) Σ_{κ &lt; k} a[r·sr + κ·sk] · x[κ·ldx + j] for r &lt; rows, j &lt; n:
    /// one FMA chain per element, κ ascending, starting from +0 or from c. a is broadcast (any strides), x rows and c rows
    /// are contiguous. Register tiles: AVX-512 4 rows × 64 columns, AVX2 4 rows × 16 columns.
    /// </summary>
    public static void Mac(KernelIsa isa, float* a, nint sr, nint sk, float* x, nint ldx, float* c, nint ldc, int rows, int k, int n, bool acc)
    {
        if (rows <= 0 || n <= 0) return;
        if (k <= 0)
        {
            if (!acc) for (int r = 0; r < rows; r++) new Span<float>(c + r * ldc, n).Clear();
            return;
        }
        if (isa == KernelIsa.Avx512) Mac512(a, sr, sk, x, ldx, c, ldc, rows, k, n, acc);
        else if (isa == KernelIsa.Avx2) Mac256(a, sr, sk, x, ldx, c, ldc, rows, k, n, acc);
        else ScalarBlock(a, sr, sk, x, ldx, c, ldc, rows, k, 0, n, acc);
    }

    static void ScalarBlock(float* a, nint sr, nint sk, float* x, nint ldx, float* c, nint ldc, int rows, int k, int j0, int j1, bool acc)
    {
        for (int r = 0; r < rows; r++)
            for (int j = j0; j < j1; j++)
            {
                float s = acc ? c[r * ldc + j] : 0f;
                float* ar = a + r * sr;
                for (int kk = 0; kk < k; kk++) s = MathF.FusedMultiplyAdd(ar[kk * sk], x[kk * ldx + j], s);
                c[r * ldc + j] = s;
            }
    }

    // ---------------- AVX-512 (Vector512; emulated with the same bits where the hardware lacks it) ----------------

    static void Mac512(float* a, nint sr, nint sk, float* x, nint ldx, float* c, nint ldc, int rows, int k, int n, bool acc)
    {
        int r = 0;
        for (; r + 4 <= rows; r += 4)
        {
            float* ar = a + r * sr, cr = c + r * ldc;
            int j = 0;
            for (; j + 64 <= n; j += 64) M512x4x4(ar, sr, sk, x + j, ldx, cr + j, ldc, k, acc);
            if (j + 32 <= n) { M512x4x2(ar, sr, sk, x + j, ldx, cr + j, ldc, k, acc); j += 32; }
            if (j + 16 <= n) { M512x4x1(ar, sr, sk, x + j, ldx, cr + j, ldc, k, acc); j += 16; }
            if (j < n) ScalarBlock(ar, sr, sk, x, ldx, cr, ldc, 4, k, j, n, acc);
        }
        for (; r < rows; r++)
        {
            float* ar = a + r * sr, cr = c + r * ldc;
            int j = 0;
            for (; j + 16 <= n; j += 16) M512x1x1(ar, sk, x + j, ldx, cr + j, k, acc);
            if (j < n) ScalarBlock(ar, sr, sk, x, ldx, cr, ldc, 1, k, j, n, acc);
        }
    }

    static void M512x4x4(float* a, nint sr, nint sk, float* x, nint ldx, float* c, nint ldc, int k, bool acc)
    {
        Vector512<float> c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33;
        if (acc)
        {
            c00 = Vector512.Load(c); c01 = Vector512.Load(c + 16); c02 = Vector512.Load(c + 32); c03 = Vector512.Load(c + 48);
            c10 = Vector512.Load(c + ldc); c11 = Vector512.Load(c + ldc + 16); c12 = Vector512.Load(c + ldc + 32); c13 = Vector512.Load(c + ldc + 48);
            c20 = Vector512.Load(c + 2 * ldc); c21 = Vector512.Load(c + 2 * ldc + 16); c22 = Vector512.Load(c + 2 * ldc + 32); c23 = Vector512.Load(c + 2 * ldc + 48);
            c30 = Vector512.Load(c + 3 * ldc); c31 = Vector512.Load(c + 3 * ldc + 16); c32 = Vector512.Load(c + 3 * ldc + 32); c33 = Vector512.Load(c + 3 * ldc + 48);
        }
        else
        {
            c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = c20 = c21 = c22 = c23 = c30 = c31 = c32 = c33 = Vector512<float>.Zero;
        }
        float* a0 = a, a1 = a + sr, a2 = a + 2 * sr, a3 = a + 3 * sr;
        for (int kk = 0; kk < k; kk++)
        {
            float* xr = x + kk * ldx;
            var x0 = Vector512.Load(xr); var x1 = Vector512.Load(xr + 16); var x2 = Vector512.Load(xr + 32); var x3 = Vector512.Load(xr + 48);
            nint o = kk * sk;
            var b = Vector512.Create(a0[o]);
            c00 = Vector512.FusedMultiplyAdd(b, x0, c00); c01 = Vector512.FusedMultiplyAdd(b, x1, c01);
            c02 = Vector512.FusedMultiplyAdd(b, x2, c02); c03 = Vector512.FusedMultiplyAdd(b, x3, c03);
            b = Vector512.Create(a1[o]);
            c10 = Vector512.FusedMultiplyAdd(b, x0, c10); c11 = Vector512.FusedMultiplyAdd(b, x1, c11);
            c12 = Vector512.FusedMultiplyAdd(b, x2, c12); c13 = Vector512.FusedMultiplyAdd(b, x3, c13);
            b = Vector512.Create(a2[o]);
            c20 = Vector512.FusedMultiplyAdd(b, x0, c20); c21 = Vector512.FusedMultiplyAdd(b, x1, c21);
            c22 = Vector512.FusedMultiplyAdd(b, x2, c22); c23 = Vector512.FusedMultiplyAdd(b, x3, c23);
            b = Vector512.Create(a3[o]);
            c30 = Vector512.FusedMultiplyAdd(b, x0, c30); c31 = Vector512.FusedMultiplyAdd(b, x1, c31);
            c32 = Vector512.FusedMultiplyAdd(b, x2, c32); c33 = Vector512.FusedMultiplyAdd(b, x3, c33);
        }
        c00.Store(c); c01.Store(c + 16); c02.Store(c + 32); c03.Store(c + 48);
        c10.Store(c + ldc); c11.Store(c + ldc + 16); c12.Store(c + ldc + 32); c13.Store(c + ldc + 48);
        c20.Store(c + 2 * ldc); c21.Store(c + 2 * ldc + 16); c22.Store(c + 2 * ldc + 32); c23.Store(c + 2 * ldc + 48);
        c30.Store(c + 3 * ldc); c31.Store(c + 3 * ldc + 16); c32.Store(c + 3 * ldc + 32); c33.Store(c + 3 * ldc + 48);
    }

    static void M512x4x2(float* a, nint sr, nint sk, float* x, nint ldx, float* c, nint ldc, int k, bool acc)
    {
        Vector512<float> c00, c01, c10, c11, c20, c21, c30, c31;
        if (acc)
        {
            c00 = Vector512.Load(c); c01 = Vector512.Load(c + 16);
            c10 = Vector512.Load(c + ldc); c11 = Vector512.Load(c + ldc + 16);
            c20 = Vector512.Load(c + 2 * ldc); c21 = Vector512.Load(c + 2 * ldc + 16);
            c30 = Vector512.Load(c + 3 * ldc); c31 = Vector512.Load(c + 3 * ldc + 16);
        }
        else c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = Vector512<float>.Zero;
        float* a0 = a, a1 = a + sr, a2 = a + 2 * sr, a3 = a + 3 * sr;
        for (int kk = 0; kk < k; kk++)
        {
            float* xr = x + kk * ldx;
            var x0 = Vector512.Load(xr); var x1 = Vector512.Load(xr + 16);
            nint o = kk * sk;
            var b = Vector512.Create(a0[o]);
            c00 = Vector512.FusedMultiplyAdd(b, x0, c00); c01 = Vector512.FusedMultiplyAdd(b, x1, c01);
            b = Vector512.Create(a1[o]);
            c10 = Vector512.FusedMultiplyAdd(b, x0, c10); c11 = Vector512.FusedMultiplyAdd(b, x1, c11);
            b = Vector512.Create(a2[o]);
            c20 = Vector512.FusedMultiplyAdd(b, x0, c20); c21 = Vector512.FusedMultiplyAdd(b, x1, c21);
            b = Vector512.Create(a3[o]);
            c30 = Vector512.FusedMultiplyAdd(b, x0, c30); c31 = Vector512.FusedMultiplyAdd(b, x1, c31);
        }
        c00.Store(c); c01.Store(c + 16);
        c10.Store(c + ldc); c11.Store(c + ldc + 16);
        c20.Store(c + 2 * ldc); c21.Store(c + 2 * ldc + 16);
        c30.Store(c + 3 * ldc); c31.Store(c + 3 * ldc + 16);
    }

    static void M512x4x1(float* a, nint sr, nint sk, float* x, nint ldx, float* c, nint ldc, int k, bool acc)
    {
        Vector512<float> c0, c1, c2, c3;
        if (acc) { c0 = Vector512.Load(c); c1 = Vector512.Load(c + ldc); c2 = Vector512.Load(c + 2 * ldc); c3 = Vector512.Load(c + 3 * ldc); }
        else c0 = c1 = c2 = c3 = Vector512<float>.Zero;
        float* a0 = a, a1 = a + sr, a2 = a + 2 * sr, a3 = a + 3 * sr;
        for (int kk = 0; kk < k; kk++)
        {
            var x0 = Vector512.Load(x + kk * ldx);
            nint o = kk * sk;
            c0 = Vector512.FusedMultiplyAdd(Vector512.Create(a0[o]), x0, c0);
            c1 = Vector512.FusedMultiplyAdd(Vector512.Create(a1[o]), x0, c1);
            c2 = Vector512.FusedMultiplyAdd(Vector512.Create(a2[o]), x0, c2);
            c3 = Vector512.FusedMultiplyAdd(Vector512.Create(a3[o]), x0, c3);
        }
        c0.Store(c); c1.Store(c + ldc); c2.Store(c + 2 * ldc); c3.Store(c + 3 * ldc);
    }

    static void M512x1x1(float* a, nint sk, float* x, nint ldx, float* c, int k, bool acc)
    {
        var c0 = acc ? Vector512.Load(c) : Vector512<float>.Zero;
        for (int kk = 0; kk < k; kk++) c0 = Vector512.FusedMultiplyAdd(Vector512.Create(a[kk * sk]), Vector512.Load(x + kk * ldx), c0);
        c0.Store(c);
    }

    // ---------------- AVX2 (Vector256) ----------------

    static void Mac256(float* a, nint sr, nint sk, float* x, nint ldx, float* c, nint ldc, int rows, int k, int n, bool acc)
    {
        int r = 0;
        for (; r + 4 <= rows; r += 4)
        {
            float* ar = a + r * sr, cr = c + r * ldc;
            int j = 0;
            for (; j + 16 <= n; j += 16) M256x4x2(ar, sr, sk, x + j, ldx, cr + j, ldc, k, acc);
            if (j + 8 <= n) { M256x4x1(ar, sr, sk, x + j, ldx, cr + j, ldc, k, acc); j += 8; }
            if (j < n) ScalarBlock(ar, sr, sk, x, ldx, cr, ldc, 4, k, j, n, acc);
        }
        for (; r < rows; r++)
        {
            float* ar = a + r * sr, cr = c + r * ldc;
            int j = 0;
            for (; j + 8 <= n; j += 8) M256x1x1(ar, sk, x + j, ldx, cr + j, k, acc);
            if (j < n) ScalarBlock(ar, sr, sk, x, ldx, cr, ldc, 1, k, j, n, acc);
        }
    }

    static void M256x4x2(float* a, nint sr, nint sk, float* x, nint ldx, float* c, nint ldc, int k, bool acc)
    {
        Vector256<float> c00, c01, c10, c11, c20, c21, c30, c31;
        if (acc)
        {
            c00 = Vector256.Load(c); c01 = Vector256.Load(c + 8);
            c10 = Vector256.Load(c + ldc); c11 = Vector256.Load(c + ldc + 8);
            c20 = Vector256.Load(c + 2 * ldc); c21 = Vector256.Load(c + 2 * ldc + 8);
            c30 = Vector256.Load(c + 3 * ldc); c31 = Vector256.Load(c + 3 * ldc + 8);
        }
        else c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = Vector256<float>.Zero;
        float* a0 = a, a1 = a + sr, a2 = a + 2 * sr, a3 = a + 3 * sr;
        for (int kk = 0; kk < k; kk++)
        {
            float* xr = x + kk * ldx;
            var x0 = Vector256.Load(xr); var x1 = Vector256.Load(xr + 8);
            nint o = kk * sk;
            var b = Vector256.Create(a0[o]);
            c00 = Vector256.FusedMultiplyAdd(b, x0, c00); c01 = Vector256.FusedMultiplyAdd(b, x1, c01);
            b = Vector256.Create(a1[o]);
            c10 = Vector256.FusedMultiplyAdd(b, x0, c10); c11 = Vector256.FusedMultiplyAdd(b, x1, c11);
            b = Vector256.Create(a2[o]);
            c20 = Vector256.FusedMultiplyAdd(b, x0, c20); c21 = Vector256.FusedMultiplyAdd(b, x1, c21);
            b = Vector256.Create(a3[o]);
            c30 = Vector256.FusedMultiplyAdd(b, x0, c30); c31 = Vector256.FusedMultiplyAdd(b, x1, c31);
        }
        c00.Store(c); c01.Store(c + 8);
        c10.Store(c + ldc); c11.Store(c + ldc + 8);
        c20.Store(c + 2 * ldc); c21.Store(c + 2 * ldc + 8);
        c30.Store(c + 3 * ldc); c31.Store(c + 3 * ldc + 8);
    }

    static void M256x4x1(float* a, nint sr, nint sk, float* x, nint ldx, float* c, nint ldc, int k, bool acc)
    {
        Vector256<float> c0, c1, c2, c3;
        if (acc) { c0 = Vector256.Load(c); c1 = Vector256.Load(c + ldc); c2 = Vector256.Load(c + 2 * ldc); c3 = Vector256.Load(c + 3 * ldc); }
        else c0 = c1 = c2 = c3 = Vector256<float>.Zero;
        float* a0 = a, a1 = a + sr, a2 = a + 2 * sr, a3 = a + 3 * sr;
        for (int kk = 0; kk < k; kk++)
        {
            var x0 = Vector256.Load(x + kk * ldx);
            nint o = kk * sk;
            c0 = Vector256.FusedMultiplyAdd(Vector256.Create(a0[o]), x0, c0);
            c1 = Vector256.FusedMultiplyAdd(Vector256.Create(a1[o]), x0, c1);
            c2 = Vector256.FusedMultiplyAdd(Vector256.Create(a2[o]), x0, c2);
            c3 = Vector256.FusedMultiplyAdd(Vector256.Create(a3[o]), x0, c3);
        }
        c0.Store(c); c1.Store(c + ldc); c2.Store(c + 2 * ldc); c3.Store(c + 3 * ldc);
    }

    static void M256x1x1(float* a, nint sk, float* x, nint ldx, float* c, int k, bool acc)
    {
        var c0 = acc ? Vector256.Load(c) : Vector256<float>.Zero;
        for (int kk = 0; kk < k; kk++) c0 = Vector256.FusedMultiplyAdd(Vector256.Create(a[kk * sk]), Vector256.Load(x + kk * ldx), c0);
        c0.Store(c);
    }

    // ---------------- exp2 and the online softmax ----------------

    // 2^f on [-0.5, 0.5] (Cephes exp2f minimax, relative error ~2e-7): 1 + f·(P5 + f·(P4 + … f·P0)).
    const float P0 = 1.535336188319500e-4f, P1 = 1.339887440266574e-3f, P2 = 9.618437357674640e-3f,
        P3 = 5.550332471162809e-2f, P4 = 2.402264791363012e-1f, P5 = 6.931472028550421e-1f;
    const float Magic = 12582912f; // 1.5·2^23: t + Magic rounds t to the nearest integer (ties to even) in the low bits
    const int MagicBits = 0x4B400000;

    /// <summary>
    /// 2^t for t ≤ 0 (t = -∞ gives 0; below -126.5 flushes to 0). The scalar form of <see cref="Exp2(Vector256{float})"/>:
    /// the same operations, so the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Exp2(float t)
    {
        t = t > -127f ? t : -127f;
        float y = t + Magic;
        float f = t - (y - Magic);
        float p = MathF.FusedMultiplyAdd(P0, f, P1);
        p = MathF.FusedMultiplyAdd(p, f, P2);
        p = MathF.FusedMultiplyAdd(p, f, P3);
        p = MathF.FusedMultiplyAdd(p, f, P4);
        p = MathF.FusedMultiplyAdd(p, f, P5);
        p = MathF.FusedMultiplyAdd(p, f, 1f);
        return p * BitConverter.Int32BitsToSingle((BitConverter.SingleToInt32Bits(y) - MagicBits + 127) << 23);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp2(Vector256<float> t)
    {
        t = Vector256.MaxNative(t, Vector256.Create(-127f));
        var y = t + Vector256.Create(Magic);
        var f = t - (y - Vector256.Create(Magic));
        var p = Vector256.FusedMultiplyAdd(Vector256.Create(P0), f, Vector256.Create(P1));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(P2));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(P3));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(P4));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(P5));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256<float>.One);
        var e = (y.AsInt32() - Vector256.Create(MagicBits - 127)) << 23;
        return p * e.AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float MaxNative(float a, float b) => a > b ? a : b;

    /// <summary>
    /// One key tile of the online softmax for <paramref name="cols"/> query rows (a multiple of 8), scores s [nk, ldS]
    /// (key-major: s[j·ldS + i]): m_new = max(m, max_j s_j); α = 2^((m - m_new)·c); p_j = 2^((s_j - m_new)·c), written
    /// over s; l = l·α + p_0 + p_1 + … (ascending j). Writes α per row into <paramref name="alpha"/> and returns whether
    /// any α differs from 1 (then the caller rescales its accumulator; α = 1 is exact, so skipping it changes no bit).
    /// </summary>
    public static bool OnlineSoftmax(bool simd, float* s, int nk, int ldS, int cols, float* m, float* l, float* alpha, float c)
    {
        bool rescale = false;
        if (simd)
        {
            var vc = Vector256.Create(c);
            for (int i = 0; i < cols; i += 8)
            {
                var mOld = Vector256.Load(m + i);
                var mx = mOld;
                for (int j = 0; j < nk; j++) mx = Vector256.MaxNative(mx, Vector256.Load(s + j * ldS + i));
                var a = Exp2((mOld - mx) * vc);
                var sum = Vector256.Load(l + i) * a;
                for (int j = 0; j < nk; j++)
                {
                    var p = Exp2((Vector256.Load(s + j * ldS + i) - mx) * vc);
                    p.Store(s + j * ldS + i);
                    sum += p;
                }
                mx.Store(m + i); sum.Store(l + i); a.Store(alpha + i);
                rescale |= !Vector256.EqualsAll(a, Vector256<float>.One);
            }
            return rescale;
        }
        for (int i = 0; i < cols; i++)
        {
            float mOld = m[i], mx = mOld;
            for (int j = 0; j < nk; j++) mx = MaxNative(mx, s[j * ldS + i]);
            float a = Exp2((mOld - mx) * c);
            float sum = l[i] * a;
            for (int j = 0; j < nk; j++)
            {
                float p = Exp2((s[j * ldS + i] - mx) * c);
                s[j * ldS + i] = p;
                sum += p;
            }
            m[i] = mx; l[i] = sum; alpha[i] = a;
            rescale |= a != 1f;
        }
        return rescale;
    }

    /// <summary>acc[d·ld + i] *= alpha[i] for d &lt; rows, i &lt; cols (a multiple of 8).</summary>
    public static void Rescale(bool simd, float* acc, int rows, int ld, int cols, float* alpha)
    {
        for (int d = 0; d < rows; d++)
        {
            float* row = acc + d * ld;
            if (simd) for (int i = 0; i < cols; i += 8) (Vector256.Load(row + i) * Vector256.Load(alpha + i)).Store(row + i);
            else for (int i = 0; i < cols; i++) row[i] *= alpha[i];
        }
    }

    /// <summary>
    /// Causal mask on a key tile: s[j·ldS + i] = -∞ where key j0 + j lies after row i's last visible key limit[i].
    /// </summary>
    public static void Mask(bool simd, float* s, int nk, int ldS, int cols, int j0, float* limit)
    {
        var ninf = Vector256.Create(float.NegativeInfinity);
        for (int j = 0; j < nk; j++)
        {
            float key = j0 + j;
            float* row = s + j * ldS;
            if (simd)
                for (int i = 0; i < cols; i += 8)
                {
                    var hidden = Vector256.LessThan(Vector256.Load(limit + i), Vector256.Create(key));
                    Vector256.ConditionalSelect(hidden, ninf, Vector256.Load(row + i)).Store(row + i);
                }
            else
                for (int i = 0; i < cols; i++) if (limit[i] < key) row[i] = float.NegativeInfinity;
        }
    }

    /// <summary>
    /// Backward: p = 2^((s - m)·c) · rl (the forward's probabilities from its row max m and 1/row sum rl) written over s,
    /// and ds = p · (dp - δ) · scale written over dp, for nk keys × cols rows (a multiple of 8).
    /// </summary>
    public static void ProbabilitiesAndScoreGrad(bool simd, float* s, float* dp, int nk, int ld, int cols, float* m, float* rl, float* delta, float c, float scale)
    {
        for (int j = 0; j < nk; j++)
        {
            float* sr = s + j * ld, dr = dp + j * ld;
            if (simd)
            {
                var vc = Vector256.Create(c);
                var vs = Vector256.Create(scale);
                for (int i = 0; i < cols; i += 8)
                {
                    var p = Exp2((Vector256.Load(sr + i) - Vector256.Load(m + i)) * vc) * Vector256.Load(rl + i);
                    p.Store(sr + i);
                    ((Vector256.Load(dr + i) - Vector256.Load(delta + i)) * p * vs).Store(dr + i);
                }
            }
            else
                for (int i = 0; i < cols; i++)
                {
                    float p = Exp2((sr[i] - m[i]) * c) * rl[i];
                    sr[i] = p;
                    dr[i] = (dr[i] - delta[i]) * p * scale;
                }
        }
    }
}
