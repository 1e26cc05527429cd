using System.Text.RegularExpressions;

namespace LongCat.Evaluation;

/// <summary>The statistics <c>longcat eval</c> reports (definitions in docs/post-training.md).</summary>
public static partial class EvalMetrics
{
    /// <summary>z of a two-sided 95% interval.</summary>
    public const double Z95 = 1.959963984540054;

    /// <summary>
    /// Wilson score interval of a rate k/n (95% by default): centre (p + z²/2n) / (1 + z²/n), half-width
    /// z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n). Well-behaved at 0 and 1 and for small n, unlike p ± z·sqrt(p(1-p)/n).
    /// n = 0 gives (0, 1).
    /// </summary>
    public static (double Lo, double Hi) Wilson(long k, long n, double z = Z95)
    {
        if (k < 0 || n < 0 || k > n) throw new ArgumentException($"a rate needs 0 <= k <= n, got {k}/{n}");
        if (n == 0) return (0, 1);
        double p = (double)k / n, z2 = z * z;
        double denom = 1 + z2 / n;
        double centre = (p + z2 / (2 * n)) / denom;
        double half = z * Math.Sqrt(p * (1 - p) / n + z2 / (4.0 * n * n)) / denom;
        return (Math.Max(0, centre - half), Math.Min(1, centre + half));
    }

    /// <summary>
    /// Percentile bootstrap 95% interval of the mean of <paramref name="values"/>: <paramref name="resamples"/> resamples
    /// with replacement drawn by a generator seeded with <paramref name="seed"/> (deterministic), the 2.5th and 97.5th
    /// percentiles of their means (nearest rank). Empty input gives (0, 0).
    /// </summary>
    public static (double Lo, double Hi) BootstrapMean(IReadOnlyList<double> values, int resamples = 1000, ulong seed = 1234)
    {
        int n = values.Count;
        if (n == 0) return (0, 0);
        var means = new double[resamples];
        ulong state = seed;
        for (int r = 0; r < resamples; r++)
        {
            double sum = 0;
            for (int i = 0; i < n; i++) sum += values[(int)(SplitMix(ref state) % (ulong)n)];
            means[r] = sum / n;
        }
        Array.Sort(means);
        return (means[(int)Math.Floor(0.025 * (resamples - 1))], means[(int)Math.Ceiling(0.975 * (resamples - 1))]);
    }

    static ulong SplitMix(ref ulong s)
    {
        ulong z = s += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>
    /// ROUGE-L F1 of <paramref name="candidate"/> against <paramref name="reference"/>: both lower-cased and split into
    /// word tokens (runs of letters and digits), L = the longest common subsequence, P = L / |candidate|,
    /// R = L / |reference|, F1 = 2PR / (P + R) (0 when L = 0; 1 when both are empty).
    /// </summary>
    public static double RougeL(string candidate, string reference)
    {
        var c = Words(candidate); var r = Words(reference);
        if (c.Length == 0 && r.Length == 0) return 1;
        if (c.Length == 0 || r.Length == 0) return 0;
        var prev = new int[r.Length + 1]; var cur = new int[r.Length + 1];
        for (int i = 1; i <= c.Length; i++)
        {
            for (int j = 1; j <= r.Length; j++)
                cur[j] = c[i - 1] == r[j - 1] ? prev[j - 1] + 1 : Math.Max(prev[j], cur[j - 1]);
            (prev, cur) = (cur, prev);
        }
        int l = prev[r.Length];
        if (l == 0) return 0;
        double p = (double)l / c.Length, rec = (double)l / r.Length;
        return 2 * p * rec / (p + rec);
    }

    /// <summary>
    /// An answer "reproduces the substance" of its reference when their ROUGE-L F1 is at least this: half of the words in
    /// order on both sides (a paraphrase that keeps the key words passes, an unrelated sentence of the same style does not).
    /// </summary>
    public const double SubstanceRougeL = 0.5;

    /// <summary>The word tokens ROUGE-L compares.</summary>
    public static string[] Words(string s) => WordRegex().Matches(s.ToLowerInvariant()).Select(m => m.Value).ToArray();

    [GeneratedRegex(@"[\p{L}\p{N}]+")]
    private static partial Regex WordRegex();

    /// <summary>Index of the largest value, the first one on ties (numpy's argmax, as lm-evaluation-harness uses).</summary>
    public static int ArgMaxFirst(ReadOnlySpan<double> values)
    {
        if (values.IsEmpty) throw new ArgumentException("argmax of nothing");
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }
}
