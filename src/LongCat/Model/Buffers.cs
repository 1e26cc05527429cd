namespace LongCat.Model;

/// <summary>Activation buffers sized once per shape and reused while the shape does not grow.</summary>
internal static class Buffers
{
    /// <summary>Returns <paramref name="a"/> if it holds at least <paramref name="n"/> floats, else a new array of n.</summary>
    public static float[] Ensure(ref float[]? a, long n)
    {
        if (a is null || a.Length < n) a = new float[checked((int)Math.Max(1, n))];
        return a;
    }

    public static double[] Ensure(ref double[]? a, long n)
    {
        if (a is null || a.Length < n) a = new double[checked((int)Math.Max(1, n))];
        return a;
    }

    public static int[] Ensure(ref int[]? a, long n)
    {
        if (a is null || a.Length < n) a = new int[checked((int)Math.Max(1, n))];
        return a;
    }
}

/// <summary>
/// Reusable run states (workspaces) of a model: a forward rents one, runs, and gives it back, so a steady state of
/// decode steps allocates no activations, and concurrent callers never share one.
/// </summary>
internal sealed class WorkspacePool<T>(Func<T> create) where T : class
{
    readonly System.Collections.Concurrent.ConcurrentBag<T> _free = [];
    public T Rent() => _free.TryTake(out var w) ? w : create();
    public void Return(T w) => _free.Add(w);
}
