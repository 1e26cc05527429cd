using System.Runtime.Intrinsics;
using LongCat.Model;

namespace LongCat.Inference;

/// <summary>
/// Turns logits into a token: logit bias, penalties (repetition, frequency, presence), the constraint's mask, temperature,
/// top-k, top-p, min-p, then a draw from a seeded generator (or argmax at temperature 0). <see cref="Distribution(ReadOnlySpan{float})"/> exposes the
/// final probabilities, which speculative decoding needs for both the draft and the target.
/// </summary>
/// <remarks>
/// The filters never sort the whole vocabulary: the kept set is always a prefix of the order "probability
/// descending, lower id first", so the sampler selects only the best candidates (a bounded heap), sorts those, and
/// widens the candidate set (doubling) in the rare case top-p needs more. The kept set, its order, and so every
/// sum and result are exactly those of sorting everything (<see cref="SamplingReference"/>, which the tests and
/// <c>longcat bench sample</c> compare against).
/// </remarks>
public sealed class Sampler
{
    readonly GenerationOptions _o;
    readonly NormalRng _rng;
    readonly Dictionary<int, int> _outputCounts = [];
    readonly HashSet<int> _prompt = [];
    readonly int[] _order;
    readonly float[] _probs;
    readonly Constraints.ITokenConstraint? _constraint;


    public Sampler(GenerationOptions options, int vocabSize, IEnumerable<int> prompt)
    {
        _o = options;
        _rng = new NormalRng(options.Seed, "sampler");
        foreach (var t in prompt) _prompt.Add(t);
        _order = new int[vocabSize];
        _probs = new float[vocabSize];
        _constraint = options.Constraint?.Invoke();
    }

    public bool Greedy => _o.Temperature == 0;

    /// <summary>The vocabulary size it samples over.</summary>
    public int VocabSize => _probs.Length;

    /// <summary>Records a generated token (for the penalties of later steps).</summary>
    public void Accept(int token)
    {
        _outputCounts[token] = _outputCounts.GetValueOrDefault(token) + 1;
        _constraint?.Advance(token);
    }

    /// <summary>Applies the penalties and the temperature in place.</summary>
    void Adjust(Span<float> logits)
    {
        if (_o.LogitBias is { } bias)
            foreach (var (t, b) in bias) logits[t] += b;
        if (_o.RepetitionPenalty != 1f)
        {
            float r = _o.RepetitionPenalty;
            foreach (var t in _prompt) logits[t] = logits[t] > 0 ? logits[t] / r : logits[t] * r;
            foreach (var t in _outputCounts.Keys)
                if (!_prompt.Contains(t)) logits[t] = logits[t] > 0 ? logits[t] / r : logits[t] * r;
        }
        if (_o.FrequencyPenalty != 0 || _o.PresencePenalty != 0)
            foreach (var (t, n) in _outputCounts) logits[t] -= _o.FrequencyPenalty * n + _o.PresencePenalty;
        // Constrained decoding: disallowed tokens get -inf, so neither argmax nor a draw can pick them.
        _constraint?.Mask(logits);
    }

    /// <summary>
    /// The distribution to sample from, given raw logits (copied, not modified): probabilities over the vocabulary
    /// after penalties, temperature and the top-k / top-p / min-p filters (zero outside the kept set).
    /// Greedy gives a one-hot vector at the argmax.
    /// </summary>
    public float[] Distribution(ReadOnlySpan<float> rawLogits)
    {
        var p = new float[rawLogits.Length];
        Distribution(rawLogits, p);
        return p;
    }

    /// <summary><see cref="Distribution(ReadOnlySpan{float})"/> into <paramref name="p"/> (as many floats as logits; overwritten).</summary>
    public void Distribution(ReadOnlySpan<float> rawLogits, float[] p)
    {
        int v = rawLogits.Length;
        if (p.Length != v) throw new ArgumentException($"the distribution needs {v} floats, got {p.Length}", nameof(p));
        var l = _probs;
        rawLogits.CopyTo(l);
        Adjust(l);
        if (Greedy)
        {
            Array.Clear(p);
            p[ArgMax(l)] = 1f;
            return;
        }
        float inv = 1f / _o.Temperature, max = float.NegativeInfinity;
        for (int i = 0; i < v; i++) { l[i] *= inv; if (l[i] > max) max = l[i]; }
        double sum = 0;
        for (int i = 0; i < v; i++) { float e = MathF.Exp(l[i] - max); p[i] = e; sum += e; }
        for (int i = 0; i < v; i++) p[i] = (float)(p[i] / sum);
        bool filter = _o.TopK > 0 && _o.TopK < v || _o.TopP < 1 || _o.MinP > 0;
        if (filter) Filter(p);
    }

    /// <summary>Applies top-k, top-p and min-p to probabilities <paramref name="p"/> in place (see the remarks).</summary>
    void Filter(float[] p)
    {
        int v = p.Length;
        int c = Candidates(p);
        // The cuts, over the sorted candidates exactly as over the whole order.
        int keep = _o.TopK > 0 ? Math.Min(_o.TopK, c) : c;
        bool reached = _o.TopP >= 1;
        if (_o.TopP < 1)
        {
            double cum = 0;
            for (int i = 0; i < keep; i++) { cum += p[_order[i]]; if (cum >= _o.TopP) { keep = i + 1; reached = true; break; } }
        }
        if (_o.MinP > 0)
        {
            float thr = _o.MinP * p[_order[0]];
            int k2 = 1;
            while (k2 < keep && p[_order[k2]] >= thr) k2++;
            keep = k2;
        }
        if (!reached && _o.TopK <= 0 && _o.MinP <= 0 && c < v)
        {
            // Top-p's cut lies past the candidates (only float rounding of the bucket sums can do this): sort all.
            SortAll(p);
            Filter2(p, v);
            return;
        }
        Normalize(p, keep);
    }

    /// <summary>The rare fallback: the cuts over the fully sorted order.</summary>
    void Filter2(float[] p, int v)
    {
        int keep = v;
        double cum = 0;
        for (int i = 0; i < keep; i++) { cum += p[_order[i]]; if (cum >= _o.TopP) { keep = i + 1; break; } }
        Normalize(p, keep);
    }

    void Normalize(float[] p, int keep)
    {
        double kept = 0;
        for (int i = 0; i < keep; i++) kept += p[_order[i]];
        var values = keep <= 4096 ? stackalloc float[keep] : new float[keep];
        for (int i = 0; i < keep; i++) values[i] = (float)(p[_order[i]] / kept);
        Array.Clear(p);
        for (int i = 0; i < keep; i++) p[_order[i]] = values[i];
    }

    /// <summary>
    /// Puts a sorted prefix of the order into <c>_order[0..count)</c> that is sure to hold the kept set, and returns
    /// its length: the top-k (a bounded heap); with min-p, every id at or above the threshold (one pass); with top-p
    /// alone, every id in the probability buckets (IEEE exponent and 4 mantissa bits, so monotonic) down to one past
    /// the bucket where the mass reaches p.
    /// </summary>
    int Candidates(float[] p)
    {
        int v = p.Length;
        if (_o.TopK > 0)
        {
            int k = Math.Min(_o.TopK, v);
            if (8L * k >= v) { SortAll(p); return v; }
            HeapSelect(p, k);
            return k;
        }
        int n = 0;
        if (_o.MinP > 0)
        {
            float max = 0;
            for (int i = 0; i < v; i++) if (p[i] > max) max = p[i];
            float thr = _o.MinP * max;
            for (int i = 0; i < v; i++) if (p[i] >= thr) _order[n++] = i;
        }
        else
        {
            var mass = _bucketMass ??= new double[Buckets];
            Array.Clear(mass);
            for (int i = 0; i < v; i++) mass[Bucket(p[i])] += p[i];
            // Walk down to the bucket where the mass reaches p, then take one more (a margin for the rounding of
            // these sums, which add in another order than the cut's); the cut is checked exactly afterwards.
            int lowest = 0, margin = 1;
            double cum = 0;
            for (int b = Buckets - 1; b > 0; b--)
            {
                if (mass[b] == 0) continue;
                if (cum >= _o.TopP && margin-- == 0) { lowest = b + 1; break; }
                cum += mass[b];
            }
            for (int i = 0; i < v; i++) if (Bucket(p[i]) >= lowest) _order[n++] = i;
            if (2L * n >= v) { SortAll(p); return v; }
        }
        Sort(p, n);
        return n;
    }

    const int Buckets = 1 << 12;
    double[]? _bucketMass;

    static int Bucket(float x) => x > 0 ? BitConverter.SingleToInt32Bits(x) >> 19 : 0;

    void SortAll(float[] p)
    {
        for (int i = 0; i < p.Length; i++) _order[i] = i;
        Sort(p, p.Length);
    }

    void Sort(float[] p, int count) => Array.Sort(_order, 0, count, Comparer<int>.Create((a, b) => a == b ? 0 : Before(p, a, b) ? -1 : 1));

    /// <summary>True when id <paramref name="a"/> comes before <paramref name="b"/>: more probable, or as probable and lower.</summary>
    static bool Before(float[] p, int a, int b)
    {
        int c = p[b].CompareTo(p[a]);
        return c != 0 ? c < 0 : a < b;
    }

    /// <summary>
    /// The <paramref name="count"/> first ids of the order into <c>_order[0..count)</c>, sorted: a heap whose root is
    /// the last of the best so far (most ids fail one comparison with it), then a sort of those only.
    /// </summary>
    void HeapSelect(float[] p, int count)
    {
        var h = _order;
        for (int i = 0; i < count; i++) { h[i] = i; SiftUp(p, h, i); }
        for (int i = count; i < p.Length; i++)
            if (Before(p, i, h[0])) { h[0] = i; SiftDown(p, h, count); }
        Sort(p, count);
    }

    // The heap keeps its last-in-order element at the root: a parent never comes before its children.
    static void SiftUp(float[] p, int[] h, int i)
    {
        while (i > 0)
        {
            int parent = (i - 1) >> 1;
            if (!Before(p, h[parent], h[i])) break;
            (h[parent], h[i]) = (h[i], h[parent]);
            i = parent;
        }
    }

    static void SiftDown(float[] p, int[] h, int n)
    {
        int i = 0;
        while (true)
        {
            int l = 2 * i + 1, r = l + 1, last = i;
            if (l < n && Before(p, h[last], h[l])) last = l;
            if (r < n && Before(p, h[last], h[r])) last = r;
            if (last == i) return;
            (h[last], h[i]) = (h[i], h[last]);
            i = last;
        }
    }

    /// <summary>Draws a token from a distribution (argmax when greedy).</summary>
    public int Draw(ReadOnlySpan<float> p)
    {
        if (Greedy) return ArgMax(p);
        double u = _rng.NextDouble(), cum = 0;
        int last = -1;
        for (int i = 0; i < p.Length; i++)
        {
            if (p[i] <= 0) continue;
            cum += p[i];
            last = i;
            if (u < cum) return i;
        }
        return last >= 0 ? last : ArgMax(p);
    }

    /// <summary>Uniform (0, 1) from the sampler's generator (speculative acceptance).</summary>
    public double NextUniform() => _rng.NextDouble();

    /// <summary>Draws the next token from raw logits (the distribution in a buffer reused from call to call).</summary>
    public int Sample(ReadOnlySpan<float> rawLogits)
    {
        if (_sample is null || _sample.Length != rawLogits.Length) _sample = new float[rawLogits.Length];
        Distribution(rawLogits, _sample);
        return Draw(_sample);
    }

    float[]? _sample;

    /// <summary>
    /// Index of the largest value (lowest index on ties, -0 and +0 being equal; NaN never wins; all NaN: the last
    /// index). The result of <see cref="ArgMaxScalar"/>, found with two vector passes: the largest non-NaN value, then
    /// its first index (greedy decoding runs this over the vocabulary several times per token).
    /// </summary>
    public static int ArgMax(ReadOnlySpan<float> x)
    {
        int n = x.Length;
        if (n < 64 || !Vector256.IsHardwareAccelerated) return ArgMaxScalar(x);
        ref float x0 = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(x);
        var m = Vector256.Create(float.NegativeInfinity);
        int i = 0;
        for (; i <= n - 8; i += 8)
        {
            var v = Vector256.LoadUnsafe(ref x0, (nuint)i);
            m = Vector256.ConditionalSelect(Vector256.GreaterThan(v, m), v, m); // NaN: not greater
        }
        float max = float.NegativeInfinity;
        for (int l = 0; l < 8; l++) if (m.GetElement(l) > max) max = m.GetElement(l);
        for (; i < n; i++) if (x[i] > max) max = x[i];
        var mv = Vector256.Create(max);
        for (i = 0; i <= n - 8; i += 8)
        {
            uint eq = Vector256.Equals(Vector256.LoadUnsafe(ref x0, (nuint)i), mv).ExtractMostSignificantBits();
            if (eq != 0) return i + System.Numerics.BitOperations.TrailingZeroCount(eq);
        }
        for (; i < n; i++) if (x[i] == max) return i;
        return n - 1; // every value NaN
    }

    /// <summary>The definition of <see cref="ArgMax"/>: one scalar pass.</summary>
    internal static int ArgMaxScalar(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best] || float.IsNaN(x[best])) best = i;
        return best;
    }
}
