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
/// <item>M &gt;= <see cref="PackedMinRows"/>: GotoBLAS/BLIS-style. x is packed once into MR-row groups (k-major,
/// rows interleaved, one contiguous slice per KC-deep block of K). A task owns a block of output columns; for each
/// KC slice it dequantizes its columns of W once into a per-thread buffer (NR-wide panels, k-major), then an
/// MR×NR register-tiled micro-kernel (AVX2: 6×16, AVX-512: 12×32) sweeps each panel (L1) against the task's row
/// groups (L2). Every output element is one sequential FMA chain over k = 0..K-1 (starting from +0, or from y
/// when accumulating), so the result does not depend on tiling, thread count, instruction set, or which other
/// rows are in the batch (batch invariance for M &gt;= 4).</item>
/// <item>M &lt; <see cref="PackedMinRows"/> (decode): memory-bound GEMV, 4 weight rows at a time, dequantized in
/// registers. Per output: 8-lane partial sums in two interleaved accumulators (16-wide steps), a fixed horizontal
/// sum, then a scalar FMA tail.</item>
/// </list>
/// Work is cut into tasks that depend only on the shape; small problems run on the calling thread.
/// Weights are never expanded in memory: at most KC × 256 values per thread (256 KiB) are dequantized at a time.
/// </para>
/// </summary>
public static unsafe partial class Gemm
{
    public const int PackedMinRows = SmallMaxRows + 1;

    /// <summary>
    /// The most rows that take the GEMV-order path: decode (M = 1), MTP verification, batched serving and small
    /// expert groups give every row the bits it gets alone (batch invariance across 1..SmallMaxRows).
    /// </summary>
    public const int SmallMaxRows = 64;

    /// <summary>GEMV problems below this many weight bytes run on the calling thread.</summary>
    const long SerialGemvBytes = 256L << 10;

    internal enum KernelIsa { Scalar, Avx2, Avx512 }

    internal static readonly KernelIsa DetectedIsa =
        Avx2.IsSupported && Fma.IsSupported
            ? (Vector512.IsHardwareAccelerated && Avx512F.IsSupported ? KernelIsa.Avx512 : KernelIsa.Avx2)
            : KernelIsa.Scalar;

    /// <summary>
    /// The kernels in use. Tests may lower it (Scalar) or force Avx512 on a machine without it (then Vector512 is
    /// emulated: slow, same bits). Never changes results.
    /// </summary>
    internal static KernelIsa Isa { get; set; } = DetectedIsa;

    /// <summary>The instruction set the kernels use, for reports.</summary>
    public static string KernelName => Isa switch
    {
        KernelIsa.Avx512 => "AVX-512 12x32",
        KernelIsa.Avx2 => "AVX2+FMA 6x16",
        _ => "scalar 6x16",
    };

    /// <summary>y [M, N] = x [M, K] · W [N, K]ᵀ. <paramref name="accumulate"/> adds into y instead of overwriting.</summary>
    public static void MatMul(ReadOnlySpan<float> x, Weight w, Span<float> y, int m, bool accumulate = false)
    {
        int n = w.Rows, k = w.Cols;
        CheckShapes(x, w, y, m);
        if (m == 0 || n == 0) return;
        var observer = Observer;
        long t0 = observer != null ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
        fixed (float* px = x, py = y)
        {
            if (k == 0)
            {
                if (!accumulate) new Span<float>(py, m * n).Clear();
            }
            else if (m < PackedMinRows) Gemv(px, w, py, m, accumulate);
            else Packed(px, w, py, m, accumulate);
        }
        observer?.Invoke(w, m, System.Diagnostics.Stopwatch.GetTimestamp() - t0);
    }

    static void CheckShapes(ReadOnlySpan<float> x, Weight w, Span<float> y, int m)
    {
        int n = w.Rows, k = w.Cols;
        if (m < 0) throw new ArgumentOutOfRangeException(nameof(m), m, "rows must be >= 0");
        if (x.Length < (long)m * k) throw new ArgumentException($"x has {x.Length} values, [{m}, {k}] needs {(long)m * k}", nameof(x));
        if (y.Length < (long)m * n) throw new ArgumentException($"y has {y.Length} values, [{m}, {n}] needs {(long)m * n}", nameof(y));
    }

    /// <summary>
    /// y1 [M, N1] = x · W1ᵀ and y2 [M, N2] = x · W2ᵀ: two weights that read the same x (gate and up, q_a and kv_a).
    /// With M &lt; <see cref="PackedMinRows"/> (decode, MTP verification) both GEMVs run as one task set, one parallel
    /// loop instead of two; otherwise (and while <see cref="Observer"/> profiles each weight) as two calls. Each result
    /// is bitwise its own <see cref="MatMul"/>.
    /// </summary>
    public static void MatMulPair(ReadOnlySpan<float> x, Weight w1, Span<float> y1, Weight w2, Span<float> y2, int m)
    {
        if (m >= PackedMinRows || w1.Cols != w2.Cols || w1.Cols == 0 || w1.Rows == 0 || w2.Rows == 0 || Observer != null)
        {
            MatMul(x, w1, y1, m);
            MatMul(x, w2, y2, m);
            return;
        }
        CheckShapes(x, w1, y1, m);
        CheckShapes(x, w2, y2, m);
        if (m == 0) return;
        fixed (float* px = x, p1 = y1, p2 = y2)
        {
            var g = Group.Rent();
            try
            {
                g.Gemv.Add(PlanGemv(px, w1, p1, m, accumulate: false));
                g.Gemv.Add(PlanGemv(px, w2, p2, m, accumulate: false));
                RunGroup(g);
            }
            finally { Group.Return(g); }
        }
    }

    /// <summary>
    /// Optional profiling hook (benchmarks): called after every <see cref="MatMul"/> with the weight, M and the
    /// elapsed <see cref="System.Diagnostics.Stopwatch"/> ticks, and for every problem of a
    /// <see cref="MatMulGrouped"/> call with its share of the call's time (by FLOPs). Must be thread-safe.
    /// </summary>
    public static Action<Weight, int, long>? Observer { get; set; }

    // ---------------- GEMV path ----------------

    /// <summary>How a GEMV reads its weight, decided once per call.</summary>
    internal enum GemvMode { Portable, F32, Bf16, F16, Fp8, Fp8Nan, I8 }

    static GemvMode ModeOf(Weight w)
    {
        if (Isa == KernelIsa.Scalar || !Avx2.IsSupported || !Fma.IsSupported) return GemvMode.Portable;
        switch (w.DType)
        {
            case DType.F32: return GemvMode.F32;
            case DType.BF16: return GemvMode.Bf16;
            case DType.F8_E4M3:
                {
                    // SIMD needs 16-wide steps inside one scale block and every scale · 2^120 finite.
                    if (w.BlockCols % 16 != 0) return GemvMode.Portable;
                    long scales = (long)((w.Rows + w.BlockRows - 1) / w.BlockRows) * w.ScaleCols;
                    for (long i = 0; i < scales; i++)
                        if (!float.IsFinite(w.Scales[i] * GemmPack.Pow120)) return GemvMode.Portable;
                    return GemmPack.Fp8HasNanCodes(w) ? GemvMode.Fp8Nan : GemvMode.Fp8;
                }
            case DType.F16: return GemvMode.F16;
            case DType.I8: return GemvMode.I8;
            default: return GemvMode.Portable;
        }
    }

    /// <summary>One GEMV-order problem (M &lt; PackedMinRows) cut into tasks of whole groups of 4 weight rows.</summary>
    internal sealed class GemvJob
    {
        public Weight W = null!;
        public float* X, Y;
        public int M, Grain, Tasks;
        public bool Accumulate, Small, Serial;
        public GemvMode Mode;
    }

    /// <summary>Plans a GEMV job (rented from this thread's pool: give it back with <see cref="ReleaseJob(GemvJob)"/>).</summary>
    internal static GemvJob PlanGemv(float* x, Weight w, float* y, int m, bool accumulate)
    {
        int n = w.Rows, k = w.Cols;
        long rowBytes = (long)k * DTypes.SizeOf(w.DType);
        // ~128 KiB of weight per task (per 4 x rows), whole groups of 4 rows.
        int grain = (int)Math.Clamp(RoundUp((int)Math.Min(int.MaxValue / 2, ((128L << 10) + rowBytes - 1) / rowBytes), 4), 4, 1 << 20);
        bool small = m > 1 && Isa != KernelIsa.Scalar; // the weight is read (and converted) once for all rows
        if (small) grain = Math.Max(4, RoundUp(grain / ((m + 3) / 4), 4));
        int tasks = (n + grain - 1) / grain;
        var j = (t_gemvJobs ??= new()).TryPop(out var free) ? free : new GemvJob();
        j.W = w; j.X = x; j.Y = y; j.M = m; j.Grain = grain; j.Tasks = tasks; j.Accumulate = accumulate; j.Small = small; j.Mode = ModeOf(w);
        // On the calling thread only when both the weight and the work are small: M = 1 to ~4 rows are bound by reading
        // the weight (once for all rows), more rows by the FLOPs. (A FLOP threshold alone put a 2-row MTP verification's
        // mid-sized GEMVs on one thread while the 1-row step ran them on all.)
        j.Serial = tasks == 1 || (rowBytes * n < SerialGemvBytes && 2.0 * m * n * k < SerialFlops);
        return j;
    }

    /// <summary>Job objects are reused per thread, so a steady state of GEMM calls allocates none.</summary>
    [ThreadStatic] static Stack<GemvJob>? t_gemvJobs;

    internal static void ReleaseJob(GemvJob j)
    {
        j.W = null!; j.X = j.Y = null;
        (t_gemvJobs ??= new()).Push(j);
    }

    internal static void GemvTask(GemvJob j, int task)
    {
        int r0 = task * j.Grain, r1 = Math.Min(j.W.Rows, r0 + j.Grain);
        if (j.Small) GemvSmall(j.X, j.W, j.Y, j.M, r0, r1, j.Accumulate, j.Mode);
        else GemvRows(j.X, j.W, j.Y, j.M, r0, r1, j.Accumulate, j.Mode);
    }

    static void Gemv(float* x, Weight w, float* y, int m, bool accumulate)
    {
        var j = PlanGemv(x, w, y, m, accumulate);
        if (j.Serial) for (int t = 0; t < j.Tasks; t++) GemvTask(j, t);
        else Parallelism.For(j.Tasks, j, static (j, t) => GemvTask(j, t));
        ReleaseJob(j);
    }

    [ThreadStatic] static float[]? t_f16;

    static void GemvRows(float* x, Weight w, float* y, int m, int r0, int r1, bool accumulate, GemvMode mode)
    {
        int n = w.Rows, k = w.Cols;
        float* o = stackalloc float[4];
        float[]? f16 = null;
        if (mode == GemvMode.F16)
        {
            f16 = t_f16;
            t_f16 = null; // rented
            if (f16 == null || f16.Length < 4 * k) f16 = GC.AllocateUninitializedArray<float>(4 * k, pinned: true);
        }
        bool wide = Isa == KernelIsa.Avx512;
        bool prefetch = mode is GemvMode.I8 or GemvMode.Fp8 or GemvMode.Fp8Nan;
        for (int r = r0; r < r1; r += 4)
        {
            int rows = Math.Min(4, r1 - r);
            // Rows past the range repeat the last row (computed and dropped: each row's result is independent).
            int ra = r, rb = r + Math.Min(1, rows - 1), rc = r + Math.Min(2, rows - 1), rd = r + Math.Min(3, rows - 1);
            // Quantized weights: the next 4 rows into L2 while these are dequantized (their GEMV is slower per byte
            // than F32's, so the hardware prefetcher alone leaves it waiting on memory).
            if (prefetch && r + 4 < r1) GemmPack.PrefetchPanel(w, r + 4, 0, k, Math.Min(4, r1 - r - 4));
            if (f16 != null)
            {
                // F16 has no vector conversion among .NET's x86 intrinsics: widen the 4 rows (exactly) with
                // TensorPrimitives, then run the F32 kernel on them.
                WidenF16(w, ra, f16.AsSpan(0, k)); WidenF16(w, rb, f16.AsSpan(k, k));
                WidenF16(w, rc, f16.AsSpan(2 * k, k)); WidenF16(w, rd, f16.AsSpan(3 * k, k));
            }
            for (int i = 0; i < m; i++)
            {
                float* xi = x + (long)i * k;
                switch (mode)
                {
                    case GemvMode.F32 when wide: Dot4xN<F32x16, X1>(w, ra, rb, rc, rd, xi, xi, xi, xi, o); break;
                    case GemvMode.Bf16 when wide: Dot4xN<Bf16x16, X1>(w, ra, rb, rc, rd, xi, xi, xi, xi, o); break;
                    case GemvMode.Fp8 when wide: Dot4xN<Fp8x16, X1>(w, ra, rb, rc, rd, xi, xi, xi, xi, o); break;
                    case GemvMode.Fp8Nan when wide: Dot4xN<Fp8Nanx16, X1>(w, ra, rb, rc, rd, xi, xi, xi, xi, o); break;
                    case GemvMode.I8 when wide: Dot4xN<I8x16, X1>(w, ra, rb, rc, rd, xi, xi, xi, xi, o); break;
                    case GemvMode.F32: Dot4<F32Row>(w, RowPtr(w, ra), RowPtr(w, rb), RowPtr(w, rc), RowPtr(w, rd), ra, rb, rc, rd, xi, o); break;
                    case GemvMode.Bf16: Dot4<Bf16Row>(w, RowPtr(w, ra), RowPtr(w, rb), RowPtr(w, rc), RowPtr(w, rd), ra, rb, rc, rd, xi, o); break;
                    case GemvMode.F16:
                        fixed (float* fp = f16)
                            Dot4<F32Row>(w, (byte*)fp, (byte*)(fp + k), (byte*)(fp + 2 * k), (byte*)(fp + 3 * k), ra, rb, rc, rd, xi, o);
                        break;
                    case GemvMode.Fp8: Dot4Fp8<Fp8NoNan>(w, ra, rb, rc, rd, xi, o); break;
                    case GemvMode.Fp8Nan: Dot4Fp8<Fp8WithNan>(w, ra, rb, rc, rd, xi, o); break;
                    case GemvMode.I8: Dot4I8(w, ra, rb, rc, rd, xi, o); break;
                    default:
                        o[0] = DotPortable(w, ra, xi); o[1] = DotPortable(w, rb, xi);
                        o[2] = DotPortable(w, rc, xi); o[3] = DotPortable(w, rd, xi);
                        break;
                }
                for (int q = 0; q < rows; q++)
                {
                    long idx = (long)i * n + r + q;
                    y[idx] = accumulate ? y[idx] + o[q] : o[q];
                }
            }
        }
        if (f16 != null) t_f16 = f16;
    }

    static void WidenF16(Weight w, int r, Span<float> dst) =>
        System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>((ushort*)w.Data + (long)r * w.Cols, w.Cols), dst);

    static byte* RowPtr(Weight w, int r) => w.Data + (long)r * w.Cols * DTypes.SizeOf(w.DType);

    /// <summary>Scalar dequantization of W[r, c] (the definition the SIMD paths match bit for bit).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float At(Weight w, int r, int c)
    {
        long i = (long)r * w.Cols + c;
        return w.DType switch
        {
            DType.F32 => ((float*)w.Data)[i],
            DType.BF16 => BitConverter.Int32BitsToSingle(((ushort*)w.Data)[i] << 16),
            DType.F16 => (float)BitConverter.UInt16BitsToHalf(((ushort*)w.Data)[i]),
            DType.I8 => ((sbyte*)w.Data)[i] * w.Scales[r],
            _ => NumberFormats.Fp8E4M3Table[w.Data[i]] * w.Scales[(long)(r / w.BlockRows) * w.ScaleCols + c / w.BlockCols],
        };
    }

    /// <summary>The GEMV reduction order, written with scalars: lanes l of two 8-wide accumulators, combined.</summary>
    internal static float DotPortable(Weight w, int r, float* x)
    {
        int k = w.Cols, k16 = k & ~15;
        float* a0 = stackalloc float[8];
        float* a1 = stackalloc float[8];
        for (int l = 0; l < 8; l++) { a0[l] = 0; a1[l] = 0; }
        int c = 0;
        for (; c < k16; c += 16)
            for (int l = 0; l < 8; l++)
            {
                a0[l] = MathF.FusedMultiplyAdd(At(w, r, c + l), x[c + l], a0[l]);
                a1[l] = MathF.FusedMultiplyAdd(At(w, r, c + 8 + l), x[c + 8 + l], a1[l]);
            }
        if (k - c >= 8)
        {
            for (int l = 0; l < 8; l++) a0[l] = MathF.FusedMultiplyAdd(At(w, r, c + l), x[c + l], a0[l]);
            c += 8;
        }
        float* s = stackalloc float[8];
        for (int l = 0; l < 8; l++) s[l] = a0[l] + a1[l];
        float t = ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
        for (; c < k; c++) t = MathF.FusedMultiplyAdd(At(w, r, c), x[c], t);
        return t;
    }

    /// <summary>Horizontal sum of a0 + a1 in <see cref="DotPortable"/>'s order (no calls: keeps the loops' registers).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float HSum(Vector256<float> a0, Vector256<float> a1)
    {
        var s = a0 + a1;
        var h = s.GetLower() + s.GetUpper();               // l + l+4
        return (h.GetElement(0) + h.GetElement(2)) + (h.GetElement(1) + h.GetElement(3));
    }

    /// <summary>The scalar FMA tail of a dot product, columns c..K-1.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    static float Tail(Weight w, int r, float* x, int c, float t)
    {
        for (int k = w.Cols; c < k; c++) t = MathF.FusedMultiplyAdd(At(w, r, c), x[c], t);
        return t;
    }

    /// <summary>Writes the four row results, adding the scalar tails when K is not a multiple of 8.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Store4(float t0, float t1, float t2, float t3, Weight w, int ra, int rb, int rc, int rd, float* x, int c, float* o)
    {
        if (c < w.Cols)
        {
            t0 = Tail(w, ra, x, c, t0); t1 = Tail(w, rb, x, c, t1);
            t2 = Tail(w, rc, x, c, t2); t3 = Tail(w, rd, x, c, t3);
        }
        o[0] = t0; o[1] = t1; o[2] = t2; o[3] = t3;
    }

    interface IRow8
    {
        static abstract Vector256<float> Load(byte* row, int c);
    }

    struct F32Row : IRow8
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load(byte* row, int c) => Vector256.Load((float*)row + c);
    }

    struct Bf16Row : IRow8
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load(byte* row, int c) => GemmPack.Bf16((ushort*)row + c);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Dot4<T>(Weight w, byte* w0, byte* w1, byte* w2, byte* w3, int ra, int rb, int rc, int rd, float* x, float* o)
        where T : struct, IRow8
    {
        int k = w.Cols, k16 = k & ~15;
        Vector256<float> a00 = default, a01 = default, a10 = default, a11 = default, a20 = default, a21 = default, a30 = default, a31 = default;
        int c = 0;
        for (; c < k16; c += 16)
        {
            var x0 = Vector256.Load(x + c);
            var x1 = Vector256.Load(x + c + 8);
            a00 = Vector256.FusedMultiplyAdd(T.Load(w0, c), x0, a00); a01 = Vector256.FusedMultiplyAdd(T.Load(w0, c + 8), x1, a01);
            a10 = Vector256.FusedMultiplyAdd(T.Load(w1, c), x0, a10); a11 = Vector256.FusedMultiplyAdd(T.Load(w1, c + 8), x1, a11);
            a20 = Vector256.FusedMultiplyAdd(T.Load(w2, c), x0, a20); a21 = Vector256.FusedMultiplyAdd(T.Load(w2, c + 8), x1, a21);
            a30 = Vector256.FusedMultiplyAdd(T.Load(w3, c), x0, a30); a31 = Vector256.FusedMultiplyAdd(T.Load(w3, c + 8), x1, a31);
        }
        if (k - c >= 8)
        {
            var x0 = Vector256.Load(x + c);
            a00 = Vector256.FusedMultiplyAdd(T.Load(w0, c), x0, a00);
            a10 = Vector256.FusedMultiplyAdd(T.Load(w1, c), x0, a10);
            a20 = Vector256.FusedMultiplyAdd(T.Load(w2, c), x0, a20);
            a30 = Vector256.FusedMultiplyAdd(T.Load(w3, c), x0, a30);
            c += 8;
        }
        Store4(HSum(a00, a01), HSum(a10, a11), HSum(a20, a21), HSum(a30, a31), w, ra, rb, rc, rd, x, c, o);
    }

    interface IFp8Decode
    {
        static abstract Vector256<float> Decode(sbyte* p, Vector256<float> s120);
    }

    /// <summary>For weights without NaN codes (checked once per weight): 5 instructions per 8 values.</summary>
    struct Fp8NoNan : IFp8Decode
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Decode(sbyte* p, Vector256<float> s120) => GemmPack.Fp8ScaledNoNan(p, s120);
    }

    struct Fp8WithNan : IFp8Decode
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Decode(sbyte* p, Vector256<float> s120) => GemmPack.Fp8Scaled(p, s120);
    }

    /// <summary>FP8 rows (column blocks a multiple of 16, scales · 2^120 finite): per scale block, 4 broadcast scales.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Dot4Fp8<T>(Weight w, int ra, int rb, int rc, int rd, float* x, float* o) where T : struct, IFp8Decode
    {
        int k = w.Cols, k16 = k & ~15, bc = w.BlockCols, sc = w.ScaleCols, br = w.BlockRows;
        float* s0 = w.Scales + (long)(ra / br) * sc, s1 = w.Scales + (long)(rb / br) * sc;
        float* s2 = w.Scales + (long)(rc / br) * sc, s3 = w.Scales + (long)(rd / br) * sc;
        sbyte* w0 = (sbyte*)w.Data + (long)ra * k, w1 = (sbyte*)w.Data + (long)rb * k;
        sbyte* w2 = (sbyte*)w.Data + (long)rc * k, w3 = (sbyte*)w.Data + (long)rd * k;
        Vector256<float> a00 = default, a01 = default, a10 = default, a11 = default, a20 = default, a21 = default, a30 = default, a31 = default;
        float p = GemmPack.Pow120;
        for (int cs = 0, blk = 0; cs < k16; cs += bc, blk++)
        {
            int ce = Math.Min(cs + bc, k16);
            var v0 = Vector256.Create(s0[blk] * p);
            var v1 = Vector256.Create(s1[blk] * p);
            var v2 = Vector256.Create(s2[blk] * p);
            var v3 = Vector256.Create(s3[blk] * p);
            for (int c = cs; c < ce; c += 16)
            {
                var x0 = Vector256.Load(x + c);
                var x1 = Vector256.Load(x + c + 8);
                a00 = Vector256.FusedMultiplyAdd(T.Decode(w0 + c, v0), x0, a00); a01 = Vector256.FusedMultiplyAdd(T.Decode(w0 + c + 8, v0), x1, a01);
                a10 = Vector256.FusedMultiplyAdd(T.Decode(w1 + c, v1), x0, a10); a11 = Vector256.FusedMultiplyAdd(T.Decode(w1 + c + 8, v1), x1, a11);
                a20 = Vector256.FusedMultiplyAdd(T.Decode(w2 + c, v2), x0, a20); a21 = Vector256.FusedMultiplyAdd(T.Decode(w2 + c + 8, v2), x1, a21);
                a30 = Vector256.FusedMultiplyAdd(T.Decode(w3 + c, v3), x0, a30); a31 = Vector256.FusedMultiplyAdd(T.Decode(w3 + c + 8, v3), x1, a31);
            }
        }
        int kEnd = k16;
        if (k - k16 >= 8) // the last 8-wide step (k % 16 >= 8) goes to the first accumulator; same block (bc % 16 == 0)
        {
            int blk = k16 / bc;
            var x0 = Vector256.Load(x + k16);
            a00 = Vector256.FusedMultiplyAdd(T.Decode(w0 + k16, Vector256.Create(s0[blk] * p)), x0, a00);
            a10 = Vector256.FusedMultiplyAdd(T.Decode(w1 + k16, Vector256.Create(s1[blk] * p)), x0, a10);
            a20 = Vector256.FusedMultiplyAdd(T.Decode(w2 + k16, Vector256.Create(s2[blk] * p)), x0, a20);
            a30 = Vector256.FusedMultiplyAdd(T.Decode(w3 + k16, Vector256.Create(s3[blk] * p)), x0, a30);
            kEnd += 8;
        }
        Store4(HSum(a00, a01), HSum(a10, a11), HSum(a20, a21), HSum(a30, a31), w, ra, rb, rc, rd, x, kEnd, o);
    }

    /// <summary>INT8 rows: widen sbyte → int → float in registers, times the row's scale (broadcast once per row).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Dot4I8(Weight w, int ra, int rb, int rc, int rd, float* x, float* o)
    {
        int k = w.Cols, k16 = k & ~15;
        var v0 = Vector256.Create(w.Scales[ra]); var v1 = Vector256.Create(w.Scales[rb]);
        var v2 = Vector256.Create(w.Scales[rc]); var v3 = Vector256.Create(w.Scales[rd]);
        sbyte* w0 = (sbyte*)w.Data + (long)ra * k, w1 = (sbyte*)w.Data + (long)rb * k;
        sbyte* w2 = (sbyte*)w.Data + (long)rc * k, w3 = (sbyte*)w.Data + (long)rd * k;
        Vector256<float> a00 = default, a01 = default, a10 = default, a11 = default, a20 = default, a21 = default, a30 = default, a31 = default;
        int c = 0;
        for (; c < k16; c += 16)
        {
            var x0 = Vector256.Load(x + c);
            var x1 = Vector256.Load(x + c + 8);
            a00 = Vector256.FusedMultiplyAdd(GemmPack.I8(w0 + c, v0), x0, a00); a01 = Vector256.FusedMultiplyAdd(GemmPack.I8(w0 + c + 8, v0), x1, a01);
            a10 = Vector256.FusedMultiplyAdd(GemmPack.I8(w1 + c, v1), x0, a10); a11 = Vector256.FusedMultiplyAdd(GemmPack.I8(w1 + c + 8, v1), x1, a11);
            a20 = Vector256.FusedMultiplyAdd(GemmPack.I8(w2 + c, v2), x0, a20); a21 = Vector256.FusedMultiplyAdd(GemmPack.I8(w2 + c + 8, v2), x1, a21);
            a30 = Vector256.FusedMultiplyAdd(GemmPack.I8(w3 + c, v3), x0, a30); a31 = Vector256.FusedMultiplyAdd(GemmPack.I8(w3 + c + 8, v3), x1, a31);
        }
        if (k - c >= 8)
        {
            var x0 = Vector256.Load(x + c);
            a00 = Vector256.FusedMultiplyAdd(GemmPack.I8(w0 + c, v0), x0, a00);
            a10 = Vector256.FusedMultiplyAdd(GemmPack.I8(w1 + c, v1), x0, a10);
            a20 = Vector256.FusedMultiplyAdd(GemmPack.I8(w2 + c, v2), x0, a20);
            a30 = Vector256.FusedMultiplyAdd(GemmPack.I8(w3 + c, v3), x0, a30);
            c += 8;
        }
        Store4(HSum(a00, a01), HSum(a10, a11), HSum(a20, a21), HSum(a30, a31), w, ra, rb, rc, rd, x, c, o);
    }
}
