namespace LongCat.Kernels;

/// <summary>
/// The process-wide thread count and a deterministic parallel-for. Work is always cut into chunks whose
/// boundaries depend only on the problem size, never on the thread count, and every chunk writes disjoint
/// outputs; so results are bitwise identical for 1, 2 or N threads.
/// </summary>
public static class Parallelism
{
    static int _threads = Environment.ProcessorCount;

    /// <summary>Worker threads for kernels (default: all cores). Changing it never changes results.</summary>
    public static int Threads
    {
        get => _threads;
        set
        {
            if (value < 1 || value > 1024) throw new ArgumentOutOfRangeException(nameof(value), value, "threads must be in 1..1024");
            _threads = value;
        }
    }

    /// <summary>Runs <paramref name="body"/>(i) for i in [0, count). Chunks run in any order on any thread.</summary>
    public static void For(int count, Action<int> body)
    {
        if (count <= 0) return;
        if (count == 1 || _threads == 1)
        {
            for (int i = 0; i < count; i++) body(i);
            return;
        }
        Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = _threads }, body);
    }

    /// <summary>Runs <paramref name="body"/> over [0, n) cut into fixed ranges of <paramref name="grain"/> items.</summary>
    public static void ForRange(int n, int grain, Action<int, int> body)
    {
        if (n <= 0) return;
        grain = Math.Max(1, grain);
        int chunks = (n + grain - 1) / grain;
        For(chunks, c => body(c * grain, Math.Min(n, (c + 1) * grain)));
    }
}
