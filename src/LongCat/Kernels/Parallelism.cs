namespace LongCat.Kernels;

/// <summary>
/// The process-wide thread count and a deterministic parallel-for. Work is always cut into chunks whose
/// boundaries depend only on the problem size, never on the thread count, and every chunk writes disjoint
/// outputs; so results are bitwise identical for 1, 2 or N threads.
/// <para>Hot paths (every decode and training step) use the overloads with an explicit state and a static body:
/// the state travels in a reused holder instead of a closure, so a call allocates nothing itself; what remains is
/// <see cref="Parallel.For(int, int, ParallelOptions, Action{int})"/>'s own bookkeeping (about 1.6 KB per call that
/// really runs in parallel, none on one thread or for one chunk).</para>
/// </summary>
public static class Parallelism
{
    static int _threads = Environment.ProcessorCount;
    static ParallelOptions _options = new() { MaxDegreeOfParallelism = Environment.ProcessorCount };

    /// <summary>Worker threads for kernels (default: all cores). Changing it never changes results.</summary>
    public static int Threads
    {
        get => _threads;
        set
        {
            if (value < 1 || value > 1024) throw new ArgumentOutOfRangeException(nameof(value), value, "threads must be in 1..1024");
            _threads = value;
            _options = new ParallelOptions { MaxDegreeOfParallelism = value };
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
        Parallel.For(0, count, _options, body);
    }

    /// <summary>Runs <paramref name="body"/> over [0, n) cut into fixed ranges of <paramref name="grain"/> items.</summary>
    public static void ForRange(int n, int grain, Action<int, int> body)
    {
        if (n <= 0) return;
        grain = Math.Max(1, grain);
        int chunks = (n + grain - 1) / grain;
        For(chunks, c => body(c * grain, Math.Min(n, (c + 1) * grain)));
    }

    /// <summary>
    /// <see cref="For(int, Action{int})"/> without a closure: <paramref name="body"/>(state, i) for i in [0, count).
    /// Pass a static lambda (cached by the compiler) and the values it needs as <paramref name="state"/> (a struct).
    /// </summary>
    public static void For<TState>(int count, TState state, Action<TState, int> body)
    {
        if (count <= 0) return;
        if (count == 1 || _threads == 1)
        {
            for (int i = 0; i < count; i++) body(state, i);
            return;
        }
        var loop = Loop<TState>.Rent();
        loop.State = state;
        loop.Body = body;
        try { Parallel.For(0, count, _options, loop.Run); }
        finally { Loop<TState>.Return(loop); }
    }

    /// <summary><see cref="ForRange(int, int, Action{int, int})"/> without a closure: <paramref name="body"/>(state, start, end).</summary>
    public static void ForRange<TState>(int n, int grain, TState state, Action<TState, int, int> body)
    {
        if (n <= 0) return;
        grain = Math.Max(1, grain);
        int chunks = (n + grain - 1) / grain;
        if (chunks == 1 || _threads == 1)
        {
            for (int c = 0; c < chunks; c++) body(state, c * grain, Math.Min(n, (c + 1) * grain));
            return;
        }
        var loop = Loop<TState>.Rent();
        loop.State = state;
        loop.RangeBody = body;
        loop.N = n;
        loop.Grain = grain;
        try { Parallel.For(0, chunks, _options, loop.RunRange); }
        finally { Loop<TState>.Return(loop); }
    }

    /// <summary>A loop's state and body, with the two delegates Parallel.For calls bound once; one kept per thread.</summary>
    sealed class Loop<TState>
    {
        [ThreadStatic] static Loop<TState>? t_free;
        public TState State = default!;
        public Action<TState, int>? Body;
        public Action<TState, int, int>? RangeBody;
        public int N, Grain;
        public readonly Action<int> Run, RunRange;

        Loop()
        {
            Run = i => Body!(State, i);
            RunRange = c => RangeBody!(State, c * Grain, Math.Min(N, (c + 1) * Grain));
        }

        /// <summary>This thread's holder (a nested loop on the same thread gets a fresh one).</summary>
        public static Loop<TState> Rent()
        {
            var l = t_free ?? new Loop<TState>();
            t_free = null;
            return l;
        }

        public static void Return(Loop<TState> l)
        {
            l.State = default!;
            l.Body = null;
            l.RangeBody = null;
            t_free = l;
        }
    }
}
