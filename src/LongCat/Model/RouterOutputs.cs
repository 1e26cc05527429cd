namespace LongCat.Model;

/// <summary>Routing in the fixtures' format: each token's K expert indices ascending, weights aligned.</summary>
public static class RouterOutputs
{
    /// <summary>Returns indices [T·K] (each row ascending) and the weights aligned with them.</summary>
    public static (long[] Indices, float[] Weights) SortedTopK(Routing r)
    {
        int t = r.Tokens, k = r.K;
        var idx = new long[t * k];
        var w = new float[t * k];
        var order = new int[k];
        for (int i = 0; i < t; i++)
        {
            for (int j = 0; j < k; j++) order[j] = j;
            Array.Sort(order, (a, b) => r.Indices[i * k + a].CompareTo(r.Indices[i * k + b]));
            for (int j = 0; j < k; j++)
            {
                idx[i * k + j] = r.Indices[i * k + order[j]];
                w[i * k + j] = r.Weights[i * k + order[j]];
            }
        }
        return (idx, w);
    }
}
