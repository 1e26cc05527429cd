namespace LongCat.Kernels;

/// <summary>
/// The two backward GEMMs of a linear layer y [M, N] = x [M, K] · W [N, K]ᵀ, over fp32 buffers (training keeps
/// weights and gradients in fp32):
/// <list type="bullet">
/// <item><see cref="InputGrad"/>: dx [M, K] (+)= dy [M, N] · W [N, K]</item>
/// <item><see cref="WeightGrad"/>: dW [N, K] += dyᵀ [N, M] · x [M, K]</item>
/// </list>
/// Both run on the forward's packed engine (<see cref="Gemm"/>: the same MR×NR micro-kernels, AVX-512 12×32 or
/// AVX2 6×16 chosen at startup, scalar fallback); only the packing differs: dX packs dy by rows and W's rows as
/// B panels, dW packs dy by columns and x's rows as B panels, both plain copies. Every element of the result is a
/// single FMA chain in ascending depth (n for dX, m for dW), started from its old value (accumulate) or +0, so
/// neither tiling, nor cache blocking, nor the thread count changes a bit. Tasks are (row block, column block)
/// tiles whose boundaries depend only on the shape and which write disjoint outputs: no atomics, no cross-thread
/// reductions.
/// </summary>
public static unsafe class GemmGrad
{
    /// <summary>
    /// Profiling hook (null: off): after each call, (true for dW / false for dX, FLOPs, Stopwatch ticks). Grouped calls
    /// report once with their total FLOPs. Used by <c>bench train</c>'s profiled step.
    /// </summary>
    public static Action<bool, double, long>? Observer { get; set; }

    static long Start() => Observer != null ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;

    static void Report(bool weightGrad, double flops, long t0)
    {
        if (t0 != 0) Observer?.Invoke(weightGrad, flops, System.Diagnostics.Stopwatch.GetTimestamp() - t0);   // 0: off at the start
    }

    /// <summary>dx [M, K] = dy [M, N] · W [N, K] (or += with <paramref name="accumulate"/>).</summary>
    public static void InputGrad(ReadOnlySpan<float> dy, ReadOnlySpan<float> w, Span<float> dx, int m, int n, int k, bool accumulate = false)
    {
        CheckShape(m, n, k);
        Check(dy.Length, (long)m * n, nameof(dy));
        Check(w.Length, (long)n * k, nameof(w));
        Check(dx.Length, (long)m * k, nameof(dx));
        if (m == 0 || k == 0) return;
        long t0 = Start();
        fixed (float* pa = dy, pb = w, pc = dx)
        {
            if (n == 0) { if (!accumulate) new Span<float>(pc, checked(m * k)).Clear(); return; }
            Gemm.PackedF32(pa, n, aTransposed: false, pb, k, pc, m, k, n, accumulate);
        }
        Report(false, 2.0 * m * n * k, t0);
    }

    /// <summary>dW [N, K] += dy [M, N]ᵀ · x [M, K]: gradients accumulate over every use of the weight.</summary>
    public static void WeightGrad(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, Span<float> dw, int m, int n, int k)
    {
        CheckShape(m, n, k);
        Check(dy.Length, (long)m * n, nameof(dy));
        Check(x.Length, (long)m * k, nameof(x));
        Check(dw.Length, (long)n * k, nameof(dw));
        if (m == 0 || n == 0 || k == 0) return;
        long t0 = Start();
        fixed (float* pa = dy, pb = x, pc = dw)
            Gemm.PackedF32(pa, n, aTransposed: true, pb, k, pc, n, k, m, accumulate: true);
        Report(true, 2.0 * m * n * k, t0);
    }

    /// <summary>
    /// Every problem's dX as one task set over (problem, row block, column block); each result is bitwise the one
    /// <see cref="InputGrad"/> gives for that problem alone. Problems must not write overlapping Dx ranges.
    /// </summary>
    public static void InputGradGrouped(ReadOnlySpan<InputGradProblem> problems)
    {
        for (int i = 0; i < problems.Length; i++)
        {
            var p = problems[i];
            CheckShape(p.M, p.N, p.K);
            Check(p.Dy.Length, (long)p.M * p.N, i, "Dy");
            Check(p.W.Length, (long)p.N * p.K, i, "W");
            Check(p.Dx.Length, (long)p.M * p.K, i, "Dx");
        }
        long t0 = Start();
        var g = Gemm.Group.Rent();
        try
        {
            foreach (var p in problems)
            {
                if (p.M == 0 || p.K == 0) continue;
                var hc = p.Dx.Pin(); g.Pins.Add(hc);
                if (p.N == 0) { if (!p.Accumulate) new Span<float>(hc.Pointer, p.M * p.K).Clear(); continue; }
                var ha = p.Dy.Pin(); g.Pins.Add(ha);
                var hb = p.W.Pin(); g.Pins.Add(hb);
                g.Packed.Add(Gemm.PlanPackedF32((float*)ha.Pointer, p.N, false, (float*)hb.Pointer, p.K, (float*)hc.Pointer, p.M, p.K, p.N, p.Accumulate));
            }
            Gemm.RunGroup(g);
        }
        finally { Gemm.Group.Return(g); }
        if (Observer != null) Report(false, Flops(problems), t0);
    }

    static double Flops(ReadOnlySpan<InputGradProblem> problems)
    {
        double f = 0;
        foreach (var p in problems) f += 2.0 * p.M * p.N * p.K;
        return f;
    }

    static double Flops(ReadOnlySpan<WeightGradProblem> problems)
    {
        double f = 0;
        foreach (var p in problems) f += 2.0 * p.M * p.N * p.K;
        return f;
    }

    /// <summary>
    /// Every problem's dW (+=) as one task set; each result is bitwise the one <see cref="WeightGrad"/> gives for
    /// that problem alone. Problems must not write overlapping DW ranges.
    /// </summary>
    public static void WeightGradGrouped(ReadOnlySpan<WeightGradProblem> problems)
    {
        for (int i = 0; i < problems.Length; i++)
        {
            var p = problems[i];
            CheckShape(p.M, p.N, p.K);
            Check(p.Dy.Length, (long)p.M * p.N, i, "Dy");
            Check(p.X.Length, (long)p.M * p.K, i, "X");
            Check(p.DW.Length, (long)p.N * p.K, i, "DW");
        }
        long t0 = Start();
        var g = Gemm.Group.Rent();
        try
        {
            foreach (var p in problems)
            {
                if (p.M == 0 || p.N == 0 || p.K == 0) continue;
                var ha = p.Dy.Pin(); g.Pins.Add(ha);
                var hb = p.X.Pin(); g.Pins.Add(hb);
                var hc = p.DW.Pin(); g.Pins.Add(hc);
                g.Packed.Add(Gemm.PlanPackedF32((float*)ha.Pointer, p.N, true, (float*)hb.Pointer, p.K, (float*)hc.Pointer, p.N, p.K, p.M, true));
            }
            Gemm.RunGroup(g);
        }
        finally { Gemm.Group.Return(g); }
        if (Observer != null) Report(true, Flops(problems), t0);
    }

    static void CheckShape(int m, int n, int k)
    {
        if (m < 0 || n < 0 || k < 0) throw new ArgumentOutOfRangeException(nameof(m), $"sizes must be >= 0 (m {m}, n {n}, k {k})");
    }

    static void Check(int have, long need, string name)
    {
        if (have < need) throw new ArgumentException($"{name} has {have} values, the shapes need {need}", name);
    }

    /// <summary>The check of a grouped call's operand (the message is built only when it fails).</summary>
    static void Check(int have, long need, int problem, string name)
    {
        if (have < need) throw new ArgumentException($"problem {problem}: {name} has {have} values, the shapes need {need}", "problems");
    }
}
