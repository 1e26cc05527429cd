namespace LongCat.Inference;

/// <summary>A generated token's log-probability and the most likely alternatives at its position.</summary>
/// <param name="Id">The token.</param>
/// <param name="Logprob">Its natural-log probability.</param>
/// <param name="Top">The most likely tokens at this position, most likely first (ties: lower id first).</param>
public sealed record TokenLogprob(int Id, float Logprob, IReadOnlyList<(int Id, float Logprob)> Top);

/// <summary>
/// Log-probabilities as the server reports them: the log-softmax of the model's raw logits at the position (the
/// model's own distribution, as OpenAI and vLLM report by default), not of the distribution after logit bias,
/// penalties, temperature and top-k/top-p/min-p: that one is one-hot when greedy and -inf outside the kept set, so
/// it says nothing about how sure the model was.
/// </summary>
public static class TokenLogprobs
{
    /// <summary>Most alternatives a request may ask for (OpenAI's top_logprobs limit).</summary>
    public const int MaxTop = 20;

    public static TokenLogprob Compute(ReadOnlySpan<float> logits, int token, int top)
    {
        float max = float.NegativeInfinity;
        foreach (var x in logits) if (x > max) max = x;
        double sum = 0;
        foreach (var x in logits) sum += Math.Exp(x - max);
        float logZ = max + (float)Math.Log(sum);
        top = Math.Min(top, logits.Length);
        // The top entries by insertion into a short sorted list (top <= 20): one pass, no sort of the vocabulary.
        var ids = new int[top];
        int n = 0;
        for (int i = 0; i < logits.Length && top > 0; i++)
        {
            float x = logits[i];
            if (n == top && !(x > logits[ids[n - 1]])) continue;
            int j = n < top ? n++ : n - 1;
            while (j > 0 && x > logits[ids[j - 1]]) { ids[j] = ids[j - 1]; j--; }
            ids[j] = i;
        }
        var list = new (int, float)[n];
        for (int i = 0; i < n; i++) list[i] = (ids[i], logits[ids[i]] - logZ);
        return new TokenLogprob(token, logits[token] - logZ, list);
    }
}
