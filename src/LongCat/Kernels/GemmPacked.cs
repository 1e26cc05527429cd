using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace LongCat.Kernels;

/// <summary>
/// The packed GEMM engine shared by the forward (<see cref="Gemm.MatMul"/>) and both backward GEMMs
/// (<see cref="GemmGrad"/>): C [M, N] (+)= A [M, depth] · B [depth, N], GotoBLAS/BLIS-style.
/// <para>
/// A is packed once into MR-row groups (k-major, rows interleaved, one contiguous slice per KC-deep block of the
/// depth): from row-major rows (forward x, dX's dy) or from columns (dW's dyᵀ). A task owns a block of output
/// columns; for each KC slice it packs its columns of B once into a per-thread buffer (NR-wide panels, k-major):
/// dequantized from a <see cref="Weight"/> (forward: B = Wᵀ) or copied from F32 rows (dX: B = W, dW: B = x). Then
/// the MR×NR register-tiled micro-kernel (AVX2: 6×16, AVX-512: 12×32, or scalar) sweeps each panel (L1) against the
/// task's row groups (L2). Every output element is one sequential FMA chain over the depth in ascending order
/// (starting from +0, or from C when accumulating), so no tiling, thread count, instruction set or other row
/// changes a bit.
/// </para>
/// </summary>
public static unsafe partial class Gemm
{
    /// <summary>Depth of one packed slice: a 256×16 F32 panel is 16 KiB (L1), a 6×256 x micro-panel 6 KiB.</summary>
    internal const int KC = 256;

    /// <summary>
    /// Task and cache blocking (shape-only; they never change results). A task owns at most NBMax columns: their
    /// KC-deep slice of B is packed once into a per-thread buffer (NBMax·KC floats = 256 KiB); rows are swept
    /// MC at a time so the A slice (MC×KC, 192 KiB) stays in L2 while each panel (16-32 KiB) sits in L1.
    /// TargetTasks/MinTasks keep both cores busy on small shapes.
    /// </summary>
    const int MC = 192, NBMax = 256, TargetTasks = 16, MinTasks = 8, MinCols = 64;

    /// <summary>Packed problems below this many flops run on the calling thread.</summary>
    const long SerialFlops = 4L << 20;

    /// <summary>One packed problem: its shape, its operands and its task blocks (from the shape alone).</summary>
    internal sealed class PackedJob
    {
        public Weight? W;            // forward: B(q, j) = W[j, q], dequantized while packing
        public float* B;             // backward: B(q, j) = B[q·Ldb + j]
        public long Ldb;
        public float* ASrc;          // A as given: A(i, q) = ASrc[i·LdA + q], or ASrc[q·LdA + i] when ATransposed
        public long LdA;
        public bool ATransposed;
        public float* A;             // A packed (see GemmPack.PackX), set while the job runs
        public float* C;             // C [M, N], row stride N
        public int M, N, K, MR, NR, MB, NB, NBlocks, Groups, Tasks;
        public bool Accumulate, Fp8NoNan, Serial;
        public KernelIsa Isa;

        /// <summary>Floats of packed A (plus alignment and PackX's overlapping-store slack).</summary>
        public long APackFloats => (long)Groups * MR * K + 32;
    }

    /// <summary>
    /// Shapes the job: M rows, N columns, depth K; the blocks depend on the shape alone. The job is rented from this
    /// thread's pool (a steady state of GEMM calls allocates none): give it back with <see cref="ReleaseJob(PackedJob)"/>.
    /// </summary>
    internal static PackedJob PlanPacked(int m, int n, int k, bool accumulate)
    {
        var isa = Isa;
        int mr = isa == KernelIsa.Avx512 ? 12 : 6, nr = isa == KernelIsa.Avx512 ? 32 : 16;
        Blocks(m, n, mr, nr, out int mb, out int nb);
        int mBlocks = (m + mb - 1) / mb, nBlocks = (n + nb - 1) / nb;
        var j = (t_packedJobs ??= new()).TryPop(out var free) ? free : new PackedJob();
        j.W = null; j.B = null; j.Ldb = 0; j.ASrc = null; j.LdA = 0; j.ATransposed = false; j.A = null; j.C = null;
        j.M = m; j.N = n; j.K = k; j.MR = mr; j.NR = nr; j.Groups = (m + mr - 1) / mr; j.MB = mb; j.NB = nb; j.NBlocks = nBlocks;
        j.Tasks = mBlocks * nBlocks; j.Accumulate = accumulate; j.Fp8NoNan = false; j.Isa = isa; j.Serial = 2.0 * m * n * k < SerialFlops;
        return j;
    }

    [ThreadStatic] static Stack<PackedJob>? t_packedJobs;

    internal static void ReleaseJob(PackedJob j)
    {
        j.W = null; j.B = j.ASrc = j.A = j.C = null;
        (t_packedJobs ??= new()).Push(j);
    }

    /// <summary>Forward: y [M, N] (+)= x [M, K] · Wᵀ.</summary>
    static void Packed(float* x, Weight w, float* y, int m, bool accumulate)
    {
        var job = PlanPacked(m, w.Rows, w.Cols, accumulate);
        job.W = w; job.ASrc = x; job.LdA = w.Cols; job.C = y;
        job.Fp8NoNan = w.DType == IO.DType.F8_E4M3 && job.Isa != KernelIsa.Scalar && !GemmPack.Fp8HasNanCodes(w);
        RunPacked(job);
        ReleaseJob(job);
    }

    /// <summary>C [m, n] (+)= A · B [depth, n] with B's rows contiguous (row stride ldb).</summary>
    internal static void PackedF32(float* a, long lda, bool aTransposed, float* b, long ldb, float* c, int m, int n, int depth, bool accumulate)
    {
        var job = PlanPackedF32(a, lda, aTransposed, b, ldb, c, m, n, depth, accumulate);
        RunPacked(job);
        ReleaseJob(job);
    }

    internal static PackedJob PlanPackedF32(float* a, long lda, bool aTransposed, float* b, long ldb, float* c, int m, int n, int depth, bool accumulate)
    {
        var job = PlanPacked(m, n, depth, accumulate);
        job.B = b; job.Ldb = ldb; job.ASrc = a; job.LdA = lda; job.ATransposed = aTransposed; job.C = c;
        return job;
    }

    /// <summary>
    /// W dequantized into the panels <see cref="PackedTask"/> would pack: slice k0 (KC deep) at k0 · Npad, panel P
    /// (columns P·nr ..) at P · kc · nr within it, k-major, columns past N zero. Null for an empty weight.
    /// </summary>
    internal static float[]? PrepackPanels(Weight w, out int nr)
    {
        var isa = Isa;
        nr = isa == KernelIsa.Avx512 ? 32 : 16;
        int n = w.Rows, k = w.Cols;
        if (n == 0 || k == 0) return null;
        if (w.Prepacked != null && w.PrepackedNr == nr) return w.Prepacked;
        int panels = (n + nr - 1) / nr, pnr = nr;
        long npad = (long)panels * nr;
        var arr = GC.AllocateUninitializedArray<float>(checked((int)(npad * k)), pinned: true);
        bool simd = isa != KernelIsa.Scalar;
        bool noNan = w.DType == IO.DType.F8_E4M3 && simd && !GemmPack.Fp8HasNanCodes(w);
        Parallelism.For(panels, p =>
        {
            var scratch = new float[8 * KC];
            fixed (float* dst = arr, sc = scratch)
                for (int k0 = 0; k0 < k; k0 += KC)
                {
                    int kc = Math.Min(KC, k - k0);
                    GemmPack.PackW(w, p * pnr, k0, kc, pnr, dst + k0 * npad + (long)p * kc * pnr, sc, simd, noNan);
                }
        });
        return arr;
    }

    [ThreadStatic] static float[]? t_x;
    [ThreadStatic] static float[]? t_w;

    /// <summary>At most this many floats of packed A per call (16 MiB): larger problems run in row chunks.</summary>
    const long ACapFloats = 4L << 20;

    static void RunPacked(PackedJob job)
    {
        if (job.APackFloats > ACapFloats && job.M > job.MR)
        {
            // Rows of C are independent and each element's FMA chain runs over the depth alone, so cutting the
            // rows into chunks (each packed and tiled on its own) cannot change a bit; it bounds A's buffer
            // (e.g. lm_head's dX and dW in training would otherwise pack 1024 × 32000 floats).
            int rows = (int)Math.Max(job.MR, ACapFloats / job.K / job.MR * job.MR);
            for (int r0 = 0; r0 < job.M; r0 += rows)
            {
                int mc = Math.Min(rows, job.M - r0);
                var part = PlanPacked(mc, job.N, job.K, job.Accumulate);
                part.W = job.W; part.B = job.B; part.Ldb = job.Ldb; part.Fp8NoNan = job.Fp8NoNan; part.LdA = job.LdA;
                part.ATransposed = job.ATransposed;
                part.ASrc = job.ATransposed ? job.ASrc + r0 : job.ASrc + r0 * job.LdA;
                part.C = job.C + (long)r0 * job.N;
                RunPackedChunk(part);
                ReleaseJob(part);
            }
            return;
        }
        RunPackedChunk(job);
    }

    static void RunPackedChunk(PackedJob job)
    {
        // Rent the caller's A buffer (a nested call on this thread gets a fresh one).
        var xArr = t_x;
        t_x = null;
        long need = job.APackFloats;
        if (xArr == null || xArr.Length < need) xArr = GC.AllocateUninitializedArray<float>(checked((int)need), pinned: true);
        try
        {
            fixed (float* xbuf = xArr)
            {
                job.A = Align64(xbuf);
                PackA(job, !job.Serial);
                if (job.Serial) for (int t = 0; t < job.Tasks; t++) PackedTask(job, t);
                else Parallelism.For(job.Tasks, job, static (j, t) => PackedTask(j, t));
                job.A = null;
            }
        }
        finally { t_x = xArr; }
    }

    static float* Align64(float* p) => (float*)(((nint)p + 63) & ~(nint)63);

    const int PackGroupsPerChunk = 16;

    /// <summary>Chunks of A packing (16 row groups each): a copy, so chunking cannot change results.</summary>
    static int PackChunks(PackedJob j) => (j.Groups + PackGroupsPerChunk - 1) / PackGroupsPerChunk;

    static void PackA(PackedJob j, bool parallel)
    {
        int chunks = PackChunks(j);
        if (!parallel || chunks == 1 || (long)j.M * j.K < 1 << 16)
            for (int c = 0; c < chunks; c++) PackAChunk(j, c);
        else Parallelism.For(chunks, j, static (j, c) => PackAChunk(j, c));
    }

    static void PackAChunk(PackedJob j, int chunk)
    {
        int g0 = chunk * PackGroupsPerChunk, g1 = Math.Min(j.Groups, g0 + PackGroupsPerChunk);
        if (j.ATransposed) GemmPack.PackXT(j.ASrc, j.LdA, j.M, j.K, j.MR, KC, g0, g1, j.Groups, j.A);
        else GemmPack.PackX(j.ASrc, j.M, j.K, j.MR, KC, g0, g1, j.Groups, j.A);
    }

    /// <summary>
    /// Task blocks from the shape alone. Columns first (each task packs its columns of B once per K slice
    /// and sweeps all its rows), NBMax at most, split evenly into at least TargetTasks when columns allow (64+
    /// per task); rows are split only when the columns cannot give MinTasks tasks (a row split re-packs B).
    /// </summary>
    static void Blocks(int m, int n, int mr, int nr, out int mb, out int nb)
    {
        int nBlocks = (n + NBMax - 1) / NBMax, mBlocks = 1;
        while (nBlocks < TargetTasks && n / (nBlocks + 1) >= MinCols) nBlocks++;
        while ((long)mBlocks * nBlocks < MinTasks && m / (mBlocks + 1) >= 8 * mr) mBlocks++;
        mb = RoundUp((m + mBlocks - 1) / mBlocks, mr);
        nb = RoundUp((n + nBlocks - 1) / nBlocks, nr);
    }

    static int RoundUp(int v, int to) => (v + to - 1) / to * to;

    static void PackedTask(PackedJob j, int task)
    {
        int mr = j.MR, nr = j.NR, m = j.M, n = j.N, k = j.K;
        int r0 = task / j.NBlocks * j.MB, r1 = Math.Min(m, r0 + j.MB);
        int c0 = task % j.NBlocks * j.NB, c1 = Math.Min(n, c0 + j.NB);
        int panels = (c1 - c0 + nr - 1) / nr;
        var isa = j.Isa;
        bool simd = isa != KernelIsa.Scalar;

        var arr = t_w;
        t_w = null;
        int need = panels * KC * nr + mr * nr + 8 * KC + 16;
        if (arr == null || arr.Length < need) arr = GC.AllocateUninitializedArray<float>(Math.Max(need, NBMax * KC + 32 * 12 + 8 * KC + 16), pinned: true);
        // A pre-packed weight (Weight.Prepack) for this panel width: its panels are used in place.
        var pre = j.W?.Prepacked is { } pa && j.W.PrepackedNr == nr ? pa : null;
        long npad = j.W != null ? (long)(j.W.Rows + nr - 1) / nr * nr : 0;
        try
        {
            fixed (float* buf = arr, pp = pre)
            {
                float* wp = Align64(buf), tile = wp + panels * KC * nr, scratch = tile + mr * nr;
                float* y = j.C;
                for (int k0 = 0; k0 < k; k0 += KC)
                {
                    int kc = Math.Min(KC, k - k0);
                    bool acc = j.Accumulate || k0 > 0;
                    if (pp != null) wp = pp + k0 * npad + (long)(c0 / nr) * kc * nr;
                    // This task's columns of B for the slice, packed once: panels of kc×nr, k-major.
                    for (int p = 0; p < panels && pp == null; p++)
                    {
                        int cp0 = c0 + p * nr;
                        if (j.W != null)
                        {
                            if (p + 1 < panels) GemmPack.PrefetchPanel(j.W, cp0 + nr, k0, kc, nr);
                            GemmPack.PackW(j.W, cp0, k0, kc, nr, wp + p * kc * nr, scratch, simd, j.Fp8NoNan);
                        }
                        else GemmPack.PackB(j.B + (long)k0 * j.Ldb + cp0, j.Ldb, kc, Math.Min(nr, n - cp0), nr, wp + p * kc * nr);
                    }
                    // The A slice of this K block: groups of mr rows, kc×mr each, contiguous.
                    float* slab = j.A + (long)j.Groups * mr * k0;
                    for (int ms = r0; ms < r1; ms += MC)
                    {
                        int me = Math.Min(r1, ms + MC);
                        for (int p = 0; p < panels; p++)
                        {
                            int c = c0 + p * nr, nc = Math.Min(nr, n - c);
                            float* b = wp + p * kc * nr;
                            for (int r = ms; r < me; r += mr)
                            {
                                float* a = slab + (long)(r / mr) * kc * mr;
                                int mrr = Math.Min(mr, m - r);
                                float* cp = y + (long)r * n + c;
                                if (Sse.IsSupported && r + mr < me)
                                {
                                    // The next tile's rows of C into L2: the kernel loads them first thing.
                                    float* cn = cp + (long)mr * n;
                                    for (int i = 0; i < mr; i++) { Sse.Prefetch1(cn + (long)i * n); Sse.Prefetch1(cn + (long)i * n + nr - 1); }
                                }
                                if (mrr == mr && nc == nr)
                                {
                                    Kernel(isa, a, b, cp, n, kc, acc, mr, nr);
                                    continue;
                                }
                                // Edge tile: run the full kernel on a scratch tile, copy the valid part.
                                for (int i = 0; i < mr; i++)
                                    for (int jj = 0; jj < nr; jj++)
                                        tile[i * nr + jj] = acc && i < mrr && jj < nc ? cp[(long)i * n + jj] : 0f;
                                Kernel(isa, a, b, tile, nr, kc, true, mr, nr);
                                for (int i = 0; i < mrr; i++)
                                    new ReadOnlySpan<float>(tile + i * nr, nc).CopyTo(new Span<float>(cp + (long)i * n, nc));
                            }
                        }
                    }
                }
            }
        }
        finally { t_w = arr; }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Kernel(KernelIsa isa, float* a, float* b, float* c, nint ldc, int kc, bool acc, int mr, int nr)
    {
        if (isa == KernelIsa.Avx2) GemmKernels.Kernel6x16(a, b, c, ldc, kc, acc);
        else if (isa == KernelIsa.Avx512) GemmKernels.Kernel12x32(a, b, c, ldc, kc, acc);
        else GemmKernels.KernelScalar(a, mr, b, nr, c, ldc, kc, acc);
    }
}
