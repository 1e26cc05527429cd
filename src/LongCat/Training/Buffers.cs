namespace LongCat.Training;

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
