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
        var pins = new List<MemoryHandle>(2 * problems.Length);
        try
        {
            var packed = new List<PackedJob>();
            var gemv = new List<GemvJob>();
            foreach (var p in problems)
            {
                int m = p.M, n = p.W.Rows, k = p.W.Cols;
                if (m == 0 || n == 0) continue;
                var hx = p.X.Pin(); pins.Add(hx);
                var hy = p.Y.Pin(); pins.Add(hy);
                float* x = (float*)hx.Pointer, y = (float*)hy.Pointer;
                if (k == 0)
                {
                    if (!p.Accumulate) new Span<float>(y, m * n).Clear();
                }
                else if (m < PackedMinRows) gemv.Add(PlanGemv(x, p.W, y, m, p.Accumulate));
                else
                {
                    var job = PlanPacked(m, n, k, p.Accumulate);
                    job.W = p.W; job.ASrc = x; job.LdA = k; job.C = y;
                    job.Fp8NoNan = p.W.DType == IO.DType.F8_E4M3 && job.Isa != KernelIsa.Scalar && !GemmPack.Fp8HasNanCodes(p.W);
                    packed.Add(job);
                }
            }
            RunGroup(packed, gemv);
        }
        finally { foreach (var h in pins) h.Dispose(); }
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
    /// Runs packed and GEMV jobs as one task set: first every packed job's A packing (one set over (job, chunk)),
    /// then every job's tiles (one set over (job, task)). Small groups run on the calling thread.
    /// </summary>
    internal static void RunGroup(List<PackedJob> packed, List<GemvJob> gemv)
    {
        if (packed.Count == 0 && gemv.Count == 0) return;
        bool serial = packed.TrueForAll(j => j.Serial) && gemv.TrueForAll(j => j.Serial);
        long need = 0;
        foreach (var j in packed) need += j.APackFloats + 16;
        var arr = t_group;
        t_group = null;
        if (packed.Count > 0 && (arr == null || arr.Length < need)) arr = GC.AllocateUninitializedArray<float>(checked((int)need), pinned: true);
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
                // Phase 1: A packing of every packed job.
                var packStarts = Starts(packed.ConvertAll(PackChunks));
                Run(packStarts, serial, (e, c) => PackAChunk(packed[e], c));
                // Phase 2: every tile of every job.
                var counts = packed.ConvertAll(j => j.Tasks);
                counts.AddRange(gemv.ConvertAll(j => j.Tasks));
                int np = packed.Count;
                Run(Starts(counts), serial, (e, t) =>
                {
                    if (e < np) PackedTask(packed[e], t);
                    else GemvTask(gemv[e - np], t);
                });
                foreach (var j in packed) j.A = null;
            }
        }
        finally { if (arr != null) t_group = arr; }
    }

    /// <summary>Prefix sums of task counts: entry e owns global tasks [starts[e], starts[e + 1]).</summary>
    static int[] Starts(List<int> counts)
    {
        var s = new int[counts.Count + 1];
        for (int i = 0; i < counts.Count; i++) s[i + 1] = checked(s[i] + counts[i]);
        return s;
    }

    static void Run(int[] starts, bool serial, Action<int, int> body)
    {
        int total = starts[^1];
        void One(int g)
        {
            int e = Array.BinarySearch(starts, g);
            if (e < 0) e = ~e - 1;
            while (starts[e + 1] == g) e++; // skip entries without tasks
            body(e, g - starts[e]);
        }
        if (serial) for (int g = 0; g < total; g++) One(g);
        else Parallelism.For(total, One);
    }
}
