using System.Buffers;

namespace LongCat.Kernels;

/// <summary>One problem of <see cref="Gemm.MatMulGrouped"/>: Y [M, N] (+)= X [M, K] · Wᵀ (N = W.Rows, K = W.Cols).</summary>
public readonly record struct GemmProblem(Weight W, ReadOnlyMemory<float> X, Memory<float> Y, int M, bool Accumulate = false);

/// <summary>One problem of <see cref="GemmGrad.InputGradGrouped"/>: Dx [M, K] (+)= Dy [M, N] · W [N, K].</summary>
public readonly record struct InputGradProblem(ReadOnlyMemory<float> Dy, ReadOnlyMemory<float> W, Memory<float> Dx, int M, int N, int K, bool Accumulate = false);

/// <summary>One problem of <see cref="GemmGrad.WeightGradGrouped"/>: DW [N, K] += Dy [M, N]ᵀ · X [M, K].</summary>
public readonly record struct WeightGradProblem(ReadOnlyMemory<float> Dy, ReadOnlyMemory<float> X, Memory<float> DW, int M, int N, int K);

/// <summary>
/// Grouped GEMM (experts): a list of independent problems run as one parallel task set over (problem, row block,
/// column block), so small expert groups keep every core busy instead of running one after another. Each problem
/// takes the path and the blocks it would take alone (chosen by its own shape), so its result is bitwise the
/// result of the matching single call (<see cref="MatMul"/>, <see cref="GemmGrad.InputGrad"/>,
/// <see cref="GemmGrad.WeightGrad"/>), for any thread count and any other problems in the group.
/// </summary>
public static unsafe partial class Gemm
{
    /// <summary>
    /// Runs every problem: Y (+)= X · Wᵀ. Problems must not write overlapping Y ranges (nor read a Y another writes).
    /// </summary>
    public static void MatMulGrouped(ReadOnlySpan<GemmProblem> problems)
    {
        for (int i = 0; i < problems.Length; i++)
        {
            var p = problems[i];
            if (p.W == null) throw new ArgumentException($"problem {i}: no weight", nameof(problems));
            long m = p.M, n = p.W.Rows, k = p.W.Cols;
            if (m < 0) throw new ArgumentOutOfRangeException(nameof(problems), $"problem {i}: rows must be >= 0, got {m}");
            if (p.X.Length < m * k) throw new ArgumentException($"problem {i} ('{p.W.Name}'): X has {p.X.Length} values, [{m}, {k}] needs {m * k}", nameof(problems));
            if (p.Y.Length < m * n) throw new ArgumentException($"problem {i} ('{p.W.Name}'): Y has {p.Y.Length} values, [{m}, {n}] needs {m * n}", nameof(problems));
        }
        var observer = Observer;
        long t0 = observer != null ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
        var g = Group.Rent();
        try
        {
            foreach (var p in problems)
            {
                int m = p.M, n = p.W.Rows, k = p.W.Cols;
                if (m == 0 || n == 0) continue;
                var hx = p.X.Pin(); g.Pins.Add(hx);
                var hy = p.Y.Pin(); g.Pins.Add(hy);
                float* x = (float*)hx.Pointer, y = (float*)hy.Pointer;
                if (k == 0)
                {
                    if (!p.Accumulate) new Span<float>(y, m * n).Clear();
                }
                else if (m < PackedMinRows) g.Gemv.Add(PlanGemv(x, p.W, y, m, p.Accumulate));
                else
                {
                    var job = PlanPacked(m, n, k, p.Accumulate);
                    job.W = p.W; job.ASrc = x; job.LdA = k; job.C = y;
                    job.Fp8NoNan = p.W.DType == IO.DType.F8_E4M3 && job.Isa != KernelIsa.Scalar && !GemmPack.Fp8HasNanCodes(p.W);
                    g.Packed.Add(job);
                }
            }
            RunGroup(g);
        }
        finally { Group.Return(g); }
        if (observer != null) ObserveGroup(observer, problems, System.Diagnostics.Stopwatch.GetTimestamp() - t0);
    }

    /// <summary>A grouped call's time, reported to <see cref="Observer"/> per problem in proportion to its FLOPs.</summary>
    static void ObserveGroup(Action<Weight, int, long> observer, ReadOnlySpan<GemmProblem> problems, long ticks)
    {
        double total = 0;
        foreach (var p in problems) total += (double)p.M * p.W.Rows * p.W.Cols;
        foreach (var p in problems)
            if (p.M > 0 && total > 0) observer(p.W, p.M, (long)(ticks * ((double)p.M * p.W.Rows * p.W.Cols / total)));
    }

    [ThreadStatic] static float[]? t_group;

    /// <summary>
    /// A grouped call's jobs, pinned operands and task ranges, reused per thread (a nested call on the same thread
    /// gets a fresh one), so a steady state of grouped calls allocates no lists.
    /// </summary>
    internal sealed class Group
    {
        [ThreadStatic] static Group? t_free;
        public readonly List<PackedJob> Packed = [];
        public readonly List<GemvJob> Gemv = [];
        public readonly List<MemoryHandle> Pins = [];
        /// <summary>Entry e owns global tasks [Starts[e], Starts[e + 1]) of the running phase.</summary>
        public int[] Starts = new int[1];
        public bool PackPhase;

        public static Group Rent()
        {
            var g = t_free ?? new Group();
            t_free = null;
            return g;
        }

        /// <summary>Unpins the operands and gives the jobs back to their pools.</summary>
        public static void Return(Group g)
        {
            foreach (var h in g.Pins) h.Dispose();
            g.Pins.Clear();
            foreach (var j in g.Packed) ReleaseJob(j);
            foreach (var j in g.Gemv) ReleaseJob(j);
            g.Packed.Clear();
            g.Gemv.Clear();
            t_free = g;
        }

        /// <summary>Sets <see cref="Starts"/> from the entries' task counts and returns the total.</summary>
        public int Plan(bool packPhase)
        {
            PackPhase = packPhase;
            int entries = Packed.Count + (packPhase ? 0 : Gemv.Count);
            if (Starts.Length < entries + 1) Starts = new int[Math.Max(entries + 1, 2 * Starts.Length)];
            for (int e = 0; e < entries; e++)
            {
                int tasks = e < Packed.Count ? (packPhase ? PackChunks(Packed[e]) : Packed[e].Tasks) : Gemv[e - Packed.Count].Tasks;
                Starts[e + 1] = checked(Starts[e] + tasks);
            }
            return Starts[entries];
        }

        /// <summary>Global task g of the planned phase.</summary>
        public void RunTask(int g)
        {
            int entries = Packed.Count + (PackPhase ? 0 : Gemv.Count);
            int e = Array.BinarySearch(Starts, 0, entries + 1, g);
            if (e < 0) e = ~e - 1;
            while (Starts[e + 1] == g) e++; // skip entries without tasks
            int t = g - Starts[e];
            if (PackPhase) PackAChunk(Packed[e], t);
            else if (e < Packed.Count) PackedTask(Packed[e], t);
            else GemvTask(Gemv[e - Packed.Count], t);
        }
    }

    /// <summary>
    /// Runs packed and GEMV jobs as one task set: first every packed job's A packing (one set over (job, chunk)),
    /// then every job's tiles (one set over (job, task)). Small groups run on the calling thread.
    /// </summary>
    internal static void RunGroup(Group g)
    {
        var packed = g.Packed;
        if (packed.Count == 0 && g.Gemv.Count == 0) return;
        bool serial = true;
        foreach (var j in packed) serial &= j.Serial;
        foreach (var j in g.Gemv) serial &= j.Serial;
        long need = 0;
        foreach (var j in packed) need += j.APackFloats + 16;
        var arr = t_group;
        t_group = null;
        // Rounded up to a power of two: expert groups change size from step to step, and a buffer sized to each new
        // high would be reallocated again and again.
        if (packed.Count > 0 && (arr == null || arr.Length < need))
        {
            long size = (long)System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)need);
            arr = GC.AllocateUninitializedArray<float>(checked((int)(size <= Array.MaxLength ? size : need)), pinned: true);
        }
        try
        {
            fixed (float* buf = arr)
            {
                float* p = buf;
                foreach (var j in packed)
                {
                    j.A = Align64(p);
                    p += j.APackFloats + 16;
                }
                // Phase 1: A packing of every packed job. Phase 2: every tile of every job.
                Run(g, g.Plan(packPhase: true), serial);
                Run(g, g.Plan(packPhase: false), serial);
                foreach (var j in packed) j.A = null;
            }
        }
        finally { if (arr != null) t_group = arr; }
    }

    static void Run(Group g, int total, bool serial)
    {
        if (serial) for (int t = 0; t < total; t++) g.RunTask(t);
        else Parallelism.For(total, g, static (g, t) => g.RunTask(t));
    }
}
