namespace LongCat.Inference;

/// <summary>
/// The top-k / top-p / min-p filter by sorting the whole vocabulary: what <see cref="Sampler"/> did before it
/// selected candidates instead. Kept only as the reference the sampler must equal exactly (tests) and be measured
/// against (<c>longcat bench sample</c>); never used to generate.
/// </summary>
public static class SamplingReference
{
    /// <summary>Filters probabilities <paramref name="p"/> in place as the sampler does, by a full sort.</summary>
    public static void FilterBySorting(float[] p, int topK, float topP, float minP)
    {
        int v = p.Length;
        var order = new int[v];
        for (int i = 0; i < v; i++) order[i] = i;
        Array.Sort(order, (a, b) => p[a] != p[b] ? p[b].CompareTo(p[a]) : a.CompareTo(b));
        int keep = v;
        if (topK > 0) keep = Math.Min(keep, topK);
        if (topP < 1)
        {
            double cum = 0;
            for (int i = 0; i < keep; i++) { cum += p[order[i]]; if (cum >= topP) { keep = i + 1; break; } }
        }
        if (minP > 0)
        {
            float thr = minP * p[order[0]];
            int k2 = 1;
            while (k2 < keep && p[order[k2]] >= thr) k2++;
            keep = k2;
        }
        double kept = 0;
        for (int i = 0; i < keep; i++) kept += p[order[i]];
        for (int i = keep; i < v; i++) p[order[i]] = 0;
        for (int i = 0; i < keep; i++) p[order[i]] = (float)(p[order[i]] / kept);
    }
}
