using LongCat.Model;

namespace LongCat.Inference;

/// <summary>
/// Turns logits into a token: penalties (repetition, frequency, presence), the constraint's mask, temperature, top-k, top-p, min-p,
/// then a draw from a seeded generator (or argmax at temperature 0). <see cref="Distribution"/> exposes the
/// final probabilities, which speculative decoding needs for both the draft and the target.
/// </summary>
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

    /// <summary>Records a generated token (for the penalties of later steps).</summary>
    public void Accept(int token)
    {
        _outputCounts[token] = _outputCounts.GetValueOrDefault(token) + 1;
        _constraint?.Advance(token);
    }

    /// <summary>Applies the penalties and the temperature in place.</summary>
    void Adjust(Span<float> logits)
    {
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
        int v = rawLogits.Length;
        var p = new float[v];
        var l = _probs;
        rawLogits.CopyTo(l);
        Adjust(l);
        if (Greedy)
        {
            p[ArgMax(l)] = 1f;
            return p;
        }
        float inv = 1f / _o.Temperature, max = float.NegativeInfinity;
        for (int i = 0; i < v; i++) { l[i] *= inv; if (l[i] > max) max = l[i]; }
        double sum = 0;
        for (int i = 0; i < v; i++) { float e = MathF.Exp(l[i] - max); p[i] = e; sum += e; }
        for (int i = 0; i < v; i++) p[i] = (float)(p[i] / sum);
        bool filter = _o.TopK > 0 && _o.TopK < v || _o.TopP < 1 || _o.MinP > 0;
        if (!filter) return p;

        // Sort descending by probability (ties: lower id first) to apply the filters deterministically.
        for (int i = 0; i < v; i++) _order[i] = i;
        Array.Sort(_order, (a, b) => p[a] != p[b] ? p[b].CompareTo(p[a]) : a.CompareTo(b));
        int keep = v;
        if (_o.TopK > 0) keep = Math.Min(keep, _o.TopK);
        if (_o.TopP < 1)
        {
            double cum = 0;
            for (int i = 0; i < keep; i++) { cum += p[_order[i]]; if (cum >= _o.TopP) { keep = i + 1; break; } }
        }
        if (_o.MinP > 0)
        {
            float thr = _o.MinP * p[_order[0]];
            int k2 = 1;
            while (k2 < keep && p[_order[k2]] >= thr) k2++;
            keep = k2;
        }
        double kept = 0;
        for (int i = 0; i < keep; i++) kept += p[_order[i]];
        for (int i = keep; i < v; i++) p[_order[i]] = 0;
        for (int i = 0; i < keep; i++) p[_order[i]] = (float)(p[_order[i]] / kept);
        return p;
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

    public int Sample(ReadOnlySpan<float> rawLogits) => Draw(Distribution(rawLogits));

    /// <summary>Index of the largest value (lowest index on ties; NaN never wins).</summary>
    public static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best] || float.IsNaN(x[best])) best = i;
        return best;
    }
}
