using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using LongCat.IO;

namespace LongCat.Kernels;

/// <summary>
/// The GEMV-order kernels for M &lt; <see cref="Gemm.PackedMinRows"/>: the AVX-512 forms of the decode GEMV
/// (M = 1) and the small-batch path (M &gt;= 2), which converts each weight row once per call and runs every x row
/// against it.
/// <para>
/// The GEMV order (see <see cref="Gemm.DotPortable"/>): lanes l of two 8-wide accumulators a0 (columns c with
/// c mod 16 &lt; 8) and a1 (the others) over 16-wide steps, an 8-wide last step into a0, a fixed horizontal sum of
/// a0 + a1, then a scalar FMA tail. A 16-lane accumulator holds a0 in its lower half and a1 in its upper half, so the
/// AVX-512 kernels give the AVX2 kernels' bits. Dequantization is exact, so a weight converted to F32 once gives
/// the same bits as one dequantized in registers: row i's result depends neither on M nor on the other rows.
/// </para>
/// </summary>
public static unsafe partial class Gemm
{
    [ThreadStatic] static float[]? t_conv;

    /// <summary>
    /// Rows [r0, r1) of W for every x row, 4 weight rows at a time. Up to 4 x rows (AVX-512): one pass of a 4×m
    /// block of 16-lane accumulators straight from the stored weight, dequantized in registers, so the weight is
    /// read and converted once for all rows and each x row costs only its own FMAs (2 rows: 8 accumulators, none
    /// computed and dropped). More x rows: the 4 weight rows are converted to F32 once into an L1 buffer (exact),
    /// then every block of 4 x rows sweeps them (AVX2: one x row against the 4 rows at a time).
    /// </summary>
    static void GemvSmall(float* x, Weight w, float* y, int m, int r0, int r1, bool accumulate, GemvMode mode)
    {
        int n = w.Rows, k = w.Cols;
        bool wide = Isa == KernelIsa.Avx512;
        bool direct = wide && m <= 4 && mode is GemvMode.F32 or GemvMode.Bf16 or GemvMode.Fp8 or GemvMode.Fp8Nan or GemvMode.I8;
        var arr = t_conv;
        t_conv = null;
        long need = 4L * k + 16;
        if (!direct && (arr == null || arr.Length < need)) arr = GC.AllocateUninitializedArray<float>(checked((int)need), pinned: true);
        try
        {
            fixed (float* buf = arr)
            {
                float* wb = Align64(buf);
                float* o = stackalloc float[16];
                for (int g = r0; g < r1; g += 4)
                {
                    int ws = Math.Min(4, r1 - g);
                    // Weight rows past the range repeat the last row (computed and dropped).
                    int ra = g, rb = g + Math.Min(1, ws - 1), rc = g + Math.Min(2, ws - 1), rd = g + Math.Min(3, ws - 1);
                    if (!direct)
                    {
                        GemmPack.DequantRow(w, ra, wb); GemmPack.DequantRow(w, rb, wb + k);
                        GemmPack.DequantRow(w, rc, wb + 2L * k); GemmPack.DequantRow(w, rd, wb + 3L * k);
                    }
                    for (int i0 = 0; i0 < m; i0 += 4)
                    {
                        int xs = Math.Min(4, m - i0);
                        // x rows past M repeat the last one (computed and dropped).
                        float* x0 = x + (long)i0 * k, x1 = x + (long)(i0 + Math.Min(1, xs - 1)) * k;
                        float* x2 = x + (long)(i0 + Math.Min(2, xs - 1)) * k, x3 = x + (long)(i0 + Math.Min(3, xs - 1)) * k;
                        if (direct)
                            switch (mode)
                            {
                                case GemvMode.F32: DotRows<F32x16>(xs, w, ra, rb, rc, rd, x0, x1, x2, x3, o); break;
                                case GemvMode.Bf16: DotRows<Bf16x16>(xs, w, ra, rb, rc, rd, x0, x1, x2, x3, o); break;
                                case GemvMode.Fp8: DotRows<Fp8x16>(xs, w, ra, rb, rc, rd, x0, x1, x2, x3, o); break;
                                case GemvMode.Fp8Nan: DotRows<Fp8Nanx16>(xs, w, ra, rb, rc, rd, x0, x1, x2, x3, o); break;
                                default: DotRows<I8x16>(xs, w, ra, rb, rc, rd, x0, x1, x2, x3, o); break;
                            }
                        else if (wide) Dot4x4F32(wb, wb + k, wb + 2L * k, wb + 3L * k, x0, x1, x2, x3, k, o);
                        else
                            for (int i = 0; i < xs; i++)
                                Dot4<F32Row>(w, (byte*)wb, (byte*)(wb + k), (byte*)(wb + 2L * k), (byte*)(wb + 3L * k), ra, rb, rc, rd,
                                    x + (long)(i0 + i) * k, o + 4 * i);
                        for (int i = 0; i < xs; i++)
                            for (int q = 0; q < ws; q++)
                            {
                                long idx = (long)(i0 + i) * n + g + q;
                                y[idx] = accumulate ? y[idx] + o[4 * i + q] : o[4 * i + q];
                            }
                    }
                }
            }
        }
        finally { if (arr != null) t_conv = arr; }
    }

    /// <summary>The GEMV order's end: the 8-wide last step into the lower half, the horizontal sum, the scalar tail.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Finish(Vector512<float> a, float* w, float* x, int k16, int k)
    {
        var a0 = a.GetLower();
        int c = k16;
        if (k - c >= 8)
        {
            a0 = Vector256.FusedMultiplyAdd(Vector256.Load(w + c), Vector256.Load(x + c), a0);
            c += 8;
        }
        float t = HSum(a0, a.GetUpper());
        for (; c < k; c++) t = MathF.FusedMultiplyAdd(w[c], x[c], t);
        return t;
    }

    /// <summary>4 x rows × 4 F32 weight rows: 16 accumulators; o[4·i + j] = x_i · w_j.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Dot4x4F32(float* w0, float* w1, float* w2, float* w3, float* x0, float* x1, float* x2, float* x3, int k, float* o)
    {
        int k16 = k & ~15;
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default,
            a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
        for (int c = 0; c < k16; c += 16)
        {
            var v0 = Vector512.Load(w0 + c); var v1 = Vector512.Load(w1 + c);
            var v2 = Vector512.Load(w2 + c); var v3 = Vector512.Load(w3 + c);
            var u = Vector512.Load(x0 + c);
            a00 = Vector512.FusedMultiplyAdd(v0, u, a00); a01 = Vector512.FusedMultiplyAdd(v1, u, a01);
            a02 = Vector512.FusedMultiplyAdd(v2, u, a02); a03 = Vector512.FusedMultiplyAdd(v3, u, a03);
            u = Vector512.Load(x1 + c);
            a10 = Vector512.FusedMultiplyAdd(v0, u, a10); a11 = Vector512.FusedMultiplyAdd(v1, u, a11);
            a12 = Vector512.FusedMultiplyAdd(v2, u, a12); a13 = Vector512.FusedMultiplyAdd(v3, u, a13);
            u = Vector512.Load(x2 + c);
            a20 = Vector512.FusedMultiplyAdd(v0, u, a20); a21 = Vector512.FusedMultiplyAdd(v1, u, a21);
            a22 = Vector512.FusedMultiplyAdd(v2, u, a22); a23 = Vector512.FusedMultiplyAdd(v3, u, a23);
            u = Vector512.Load(x3 + c);
            a30 = Vector512.FusedMultiplyAdd(v0, u, a30); a31 = Vector512.FusedMultiplyAdd(v1, u, a31);
            a32 = Vector512.FusedMultiplyAdd(v2, u, a32); a33 = Vector512.FusedMultiplyAdd(v3, u, a33);
        }
        o[0] = Finish(a00, w0, x0, k16, k); o[1] = Finish(a01, w1, x0, k16, k); o[2] = Finish(a02, w2, x0, k16, k); o[3] = Finish(a03, w3, x0, k16, k);
        o[4] = Finish(a10, w0, x1, k16, k); o[5] = Finish(a11, w1, x1, k16, k); o[6] = Finish(a12, w2, x1, k16, k); o[7] = Finish(a13, w3, x1, k16, k);
        o[8] = Finish(a20, w0, x2, k16, k); o[9] = Finish(a21, w1, x2, k16, k); o[10] = Finish(a22, w2, x2, k16, k); o[11] = Finish(a23, w3, x2, k16, k);
        o[12] = Finish(a30, w0, x3, k16, k); o[13] = Finish(a31, w1, x3, k16, k); o[14] = Finish(a32, w2, x3, k16, k); o[15] = Finish(a33, w3, x3, k16, k);
    }

    // ---------------- AVX-512 decode GEMV (M = 1), straight from the stored weight ----------------

    /// <summary>16 weights of one row, dequantized in registers (exactly the scalar definition).</summary>
    interface IRow16
    {
        /// <summary>Row r's scales (INT8: its scale; FP8: its block row of scales; others: none).</summary>
        static abstract float* ScaleRow(Weight w, int r);
        /// <summary>The value broadcast per row and scale block (INT8: the row scale; FP8: scale · 2^120).</summary>
        static abstract float Scale(float* srow, int blk);
        static abstract Vector512<float> Load16(byte* row, int c, Vector512<float> s);
        static abstract Vector256<float> Load8(byte* row, int c, Vector256<float> s);
    }

    struct F32x16 : IRow16
    {
        public static float* ScaleRow(Weight w, int r) => null;
        public static float Scale(float* srow, int blk) => 1f;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load16(byte* row, int c, Vector512<float> s) => Vector512.Load((float*)row + c);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load8(byte* row, int c, Vector256<float> s) => Vector256.Load((float*)row + c);
    }

    struct Bf16x16 : IRow16
    {
        public static float* ScaleRow(Weight w, int r) => null;
        public static float Scale(float* srow, int blk) => 1f;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load16(byte* row, int c, Vector512<float> s) => Vector512.ShiftLeft(GemmPack.U16x16((ushort*)row + c), 16).AsSingle();
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load8(byte* row, int c, Vector256<float> s) => GemmPack.Bf16((ushort*)row + c);
    }

    struct I8x16 : IRow16
    {
        public static float* ScaleRow(Weight w, int r) => w.Scales + r;
        public static float Scale(float* srow, int blk) => *srow;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load16(byte* row, int c, Vector512<float> s) => Vector512.ConvertToSingle(GemmPack.I8x16((sbyte*)row + c)) * s;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load8(byte* row, int c, Vector256<float> s) => GemmPack.I8((sbyte*)row + c, s);
    }

    struct Fp8x16 : IRow16
    {
        public static float* ScaleRow(Weight w, int r) => w.Scales + (long)(r / w.BlockRows) * w.ScaleCols;
        public static float Scale(float* srow, int blk) => srow[blk] * GemmPack.Pow120;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load16(byte* row, int c, Vector512<float> s) =>
            (Vector512.ShiftLeft(GemmPack.I8x16((sbyte*)row + c), 20) & Vector512.Create(unchecked((int)0x87F00000))).AsSingle() * s;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load8(byte* row, int c, Vector256<float> s) => GemmPack.Fp8ScaledNoNan((sbyte*)row + c, s);
    }

    struct Fp8Nanx16 : IRow16
    {
        public static float* ScaleRow(Weight w, int r) => Fp8x16.ScaleRow(w, r);
        public static float Scale(float* srow, int blk) => Fp8x16.Scale(srow, blk);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load16(byte* row, int c, Vector512<float> s)
        {
            var bits = Vector512.ShiftLeft(GemmPack.I8x16((sbyte*)row + c), 20) & Vector512.Create(unchecked((int)0x87F00000));
            var nan = Vector512.Equals(bits & Vector512.Create(0x07F00000), Vector512.Create(0x07F00000)).AsSingle();
            return (bits.AsSingle() * s) | nan;
        }
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load8(byte* row, int c, Vector256<float> s) => GemmPack.Fp8Scaled((sbyte*)row + c, s);
    }

    /// <summary>How many x rows (1 to 4) a <see cref="Dot4xN{T, R}"/> instance runs: a constant for the JIT.</summary>
    interface IXRows { static abstract int Count { get; } }
    struct X1 : IXRows { public static int Count => 1; }
    struct X2 : IXRows { public static int Count => 2; }
    struct X3 : IXRows { public static int Count => 3; }
    struct X4 : IXRows { public static int Count => 4; }

    /// <summary><see cref="Dot4xN{T, R}"/> for <paramref name="xs"/> (1 to 4) x rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void DotRows<T>(int xs, Weight w, int ra, int rb, int rc, int rd, float* x0, float* x1, float* x2, float* x3, float* o) where T : struct, IRow16
    {
        switch (xs)
        {
            case 1: Dot4xN<T, X1>(w, ra, rb, rc, rd, x0, x1, x2, x3, o); break;
            case 2: Dot4xN<T, X2>(w, ra, rb, rc, rd, x0, x1, x2, x3, o); break;
            case 3: Dot4xN<T, X3>(w, ra, rb, rc, rd, x0, x1, x2, x3, o); break;
            default: Dot4xN<T, X4>(w, ra, rb, rc, rd, x0, x1, x2, x3, o); break;
        }
    }

    /// <summary>
    /// 4 stored weight rows (dequantized in registers, once for all x rows) × R x rows (1 to 4): 4·R 16-lane
    /// accumulators; o[4·i + j] = x_i · w_j. The decode GEMV is R = 1 (one 16-lane accumulator per row = the AVX2
    /// kernels' two 8-lane ones); every R gives each row the same bits. Scales are broadcast once per row and scale
    /// block (column blocks of FP8 scales are multiples of 16, see ModeOf); software prefetch a few lines ahead.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Dot4xN<T, R>(Weight w, int ra, int rb, int rc, int rd, float* x0, float* x1, float* x2, float* x3, float* o)
        where T : struct, IRow16 where R : struct, IXRows
    {
        int k = w.Cols, k16 = k & ~15, es = DTypes.SizeOf(w.DType);
        int bc = w.DType == DType.F8_E4M3 ? w.BlockCols : Math.Max(16, k16);
        long rowBytes = (long)k * es;
        byte* p0 = w.Data + ra * rowBytes, p1 = w.Data + rb * rowBytes, p2 = w.Data + rc * rowBytes, p3 = w.Data + rd * rowBytes;
        float* s0 = T.ScaleRow(w, ra), s1 = T.ScaleRow(w, rb), s2 = T.ScaleRow(w, rc), s3 = T.ScaleRow(w, rd);
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default,
            a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
        int pf = 16 * 64 / es; // prefetch distance: 16 cache lines ahead
        for (int cs = 0, blk = 0; cs < k16; cs += bc, blk++)
        {
            int ce = Math.Min(cs + bc, k16);
            var e0 = Vector512.Create(T.Scale(s0, blk)); var e1 = Vector512.Create(T.Scale(s1, blk));
            var e2 = Vector512.Create(T.Scale(s2, blk)); var e3 = Vector512.Create(T.Scale(s3, blk));
            for (int c = cs; c < ce; c += 16)
            {
                if (Sse.IsSupported && ((c * es) & 63) == 0 && c + pf < k)
                {
                    long off = (long)(c + pf) * es;
                    Sse.Prefetch0(p0 + off); Sse.Prefetch0(p1 + off); Sse.Prefetch0(p2 + off); Sse.Prefetch0(p3 + off);
                }
                var v0 = T.Load16(p0, c, e0); var v1 = T.Load16(p1, c, e1);
                var v2 = T.Load16(p2, c, e2); var v3 = T.Load16(p3, c, e3);
                var u = Vector512.Load(x0 + c);
                a00 = Vector512.FusedMultiplyAdd(v0, u, a00); a01 = Vector512.FusedMultiplyAdd(v1, u, a01);
                a02 = Vector512.FusedMultiplyAdd(v2, u, a02); a03 = Vector512.FusedMultiplyAdd(v3, u, a03);
                if (R.Count > 1)
                {
                    u = Vector512.Load(x1 + c);
                    a10 = Vector512.FusedMultiplyAdd(v0, u, a10); a11 = Vector512.FusedMultiplyAdd(v1, u, a11);
                    a12 = Vector512.FusedMultiplyAdd(v2, u, a12); a13 = Vector512.FusedMultiplyAdd(v3, u, a13);
                }
                if (R.Count > 2)
                {
                    u = Vector512.Load(x2 + c);
                    a20 = Vector512.FusedMultiplyAdd(v0, u, a20); a21 = Vector512.FusedMultiplyAdd(v1, u, a21);
                    a22 = Vector512.FusedMultiplyAdd(v2, u, a22); a23 = Vector512.FusedMultiplyAdd(v3, u, a23);
                }
                if (R.Count > 3)
                {
                    u = Vector512.Load(x3 + c);
                    a30 = Vector512.FusedMultiplyAdd(v0, u, a30); a31 = Vector512.FusedMultiplyAdd(v1, u, a31);
                    a32 = Vector512.FusedMultiplyAdd(v2, u, a32); a33 = Vector512.FusedMultiplyAdd(v3, u, a33);
                }
            }
        }
        // The 8-wide last step and the scalar tail, per output, from the dequantized values (exact).
        int blk8 = k16 / bc;
        Finish4<T>(w, a00, a01, a02, a03, p0, p1, p2, p3, s0, s1, s2, s3, ra, rb, rc, rd, blk8, x0, k16, o);
        if (R.Count > 1) Finish4<T>(w, a10, a11, a12, a13, p0, p1, p2, p3, s0, s1, s2, s3, ra, rb, rc, rd, blk8, x1, k16, o + 4);
        if (R.Count > 2) Finish4<T>(w, a20, a21, a22, a23, p0, p1, p2, p3, s0, s1, s2, s3, ra, rb, rc, rd, blk8, x2, k16, o + 8);
        if (R.Count > 3) Finish4<T>(w, a30, a31, a32, a33, p0, p1, p2, p3, s0, s1, s2, s3, ra, rb, rc, rd, blk8, x3, k16, o + 12);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Finish4<T>(Weight w, Vector512<float> a0, Vector512<float> a1, Vector512<float> a2, Vector512<float> a3,
        byte* p0, byte* p1, byte* p2, byte* p3, float* s0, float* s1, float* s2, float* s3, int ra, int rb, int rc, int rd,
        int blk, float* x, int k16, float* o) where T : struct, IRow16
    {
        int k = w.Cols, kEnd = k16;
        var l0 = a0.GetLower(); var l1 = a1.GetLower(); var l2 = a2.GetLower(); var l3 = a3.GetLower();
        if (k - k16 >= 8)
        {
            var u = Vector256.Load(x + k16);
            l0 = Vector256.FusedMultiplyAdd(T.Load8(p0, k16, Vector256.Create(T.Scale(s0, blk))), u, l0);
            l1 = Vector256.FusedMultiplyAdd(T.Load8(p1, k16, Vector256.Create(T.Scale(s1, blk))), u, l1);
            l2 = Vector256.FusedMultiplyAdd(T.Load8(p2, k16, Vector256.Create(T.Scale(s2, blk))), u, l2);
            l3 = Vector256.FusedMultiplyAdd(T.Load8(p3, k16, Vector256.Create(T.Scale(s3, blk))), u, l3);
            kEnd += 8;
        }
        Store4(HSum(l0, a0.GetUpper()), HSum(l1, a1.GetUpper()), HSum(l2, a2.GetUpper()), HSum(l3, a3.GetUpper()), w, ra, rb, rc, rd, x, kEnd, o);
    }
}
