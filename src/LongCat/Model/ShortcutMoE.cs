using LongCat.Config;
using LongCat.Kernels;

namespace LongCat.Model;

/// <summary>The routing decision for a batch: per token, K (expert, weight) slots.</summary>
public sealed class Routing(int tokens, int k)
{
    public int Tokens { get; } = tokens;
    public int K { get; } = k;
    /// <summary>[T, K] selected expert indices, in selection order (best biased score first).</summary>
    public int[] Indices { get; } = new int[tokens * k];
    /// <summary>[T, K] weights aligned with <see cref="Indices"/>: unbiased probability · routed_scaling_factor.</summary>
    public float[] Weights { get; } = new float[tokens * k];

    /// <summary>How many of token <paramref name="row"/>'s K slots went to real experts (index &lt; E): its dynamic compute.</summary>
    public int RealExperts(int row, int realExpertCount)
    {
        int n = 0;
        for (int j = 0; j < K; j++) if (Indices[row * K + j] < realExpertCount) n++;
        return n;
    }

    /// <summary>Per layer, the real experts token <paramref name="row"/> used.</summary>
    public static int[] RealExpertsPerLayer(Routing[] layers, int row, int realExpertCount)
    {
        var r = new int[layers.Length];
        for (int l = 0; l < layers.Length; l++) r[l] = layers[l].RealExperts(row, realExpertCount);
        return r;
    }
}

/// <summary>
/// The MoE branch of a ScMoE layer: softmax router over E real + Z zero (identity) experts, selection-only bias,
/// weights = unbiased probability · routed_scaling_factor (zero experts included, no renormalisation).
/// Steps: route, group tokens by real expert (counting sort, stable), run each real expert once on its rows,
/// combine in ascending expert order; zero experts cost one scaled add per token.
/// </summary>
public sealed class ShortcutMoE
{
    readonly LongCatConfig _c;
    public Weight Classifier { get; }           // [E+Z, H], F32 in checkpoints
    public float[] ScoreCorrectionBias { get; } // [E+Z], selection only
    public Ffn[] Experts { get; }

    public ShortcutMoE(WeightLoader l, string prefix)
    {
        var c = _c = l.Config;
        Classifier = l.Linear(prefix + "router.classifier.weight", c.NumExpertsTotal, c.HiddenSize);
        var biasName = prefix + "router.e_score_correction_bias";
        ScoreCorrectionBias = l.Checkpoint.Contains(biasName) ? l.Vector(biasName, c.NumExpertsTotal) : new float[c.NumExpertsTotal];
        Experts = new Ffn[c.NRoutedExperts];
        for (int e = 0; e < c.NRoutedExperts; e++)
            Experts[e] = Ffn.Load(l, $"{prefix}experts.{e}.", c.HiddenSize, c.ExpertFfnHiddenSize);
    }

    public IEnumerable<Weight> Linears => Experts.SelectMany(e => e.Linears).Prepend(Classifier);

    /// <summary>x [T, H] -> routing for T tokens.</summary>
    public Routing Route(float[] x, int t)
    {
        var c = _c;
        int ne = c.NumExpertsTotal, k = c.MoeTopK;
        var logits = new float[t * ne];
        Gemm.MatMul(x, Classifier, logits, t);
        var r = new Routing(t, k);
        float rsf = (float)c.RoutedScalingFactor;
        Parallelism.ForRange(t, 64, (t0, t1) =>
        {
            var biased = new float[ne];
            for (int i = t0; i < t1; i++)
                RouteToken(logits.AsSpan(i * ne, ne), ScoreCorrectionBias, biased, r.Indices.AsSpan(i * k, k), r.Weights.AsSpan(i * k, k), rsf, c.NormTopKProb);
        });
        return r;
    }

    /// <summary>
    /// One token's routing: router logits [E+Z] in, softmax probabilities out (in place); top-K of p + bias
    /// (selection only) into <paramref name="sel"/>; weights = p[sel] · routed_scaling_factor (renormalised over the
    /// selection first when <paramref name="normTopK"/>). Shared by inference and training.
    /// </summary>
    public static void RouteToken(Span<float> logitsToProbs, ReadOnlySpan<float> bias, Span<float> biasedScratch, Span<int> sel, Span<float> weights, float rsf, bool normTopK)
    {
        var p = logitsToProbs;
        int ne = p.Length, k = sel.Length;
        Ops.Softmax(p);
        for (int e = 0; e < ne; e++) biasedScratch[e] = p[e] + bias[e];
        Ops.TopK(biasedScratch[..ne], sel);
        float norm = 1f;
        if (normTopK)
        {
            float s = 0;
            for (int j = 0; j < k; j++) s += p[sel[j]];
            norm = s > 0 ? 1f / s : 0f;
        }
        for (int j = 0; j < k; j++) weights[j] = normTopK ? p[sel[j]] * norm * rsf : p[sel[j]] * rsf;
    }

    /// <summary>x [T, H] (the normalized MoE input) -> y [T, H] (overwritten). Returns the routing used.</summary>
    public Routing Forward(float[] x, float[] y, int t, Routing? routing = null)
    {
        var c = _c;
        int h = c.HiddenSize, k = c.MoeTopK, ne = c.NRoutedExperts;
        var r = routing ?? Route(x, t);
        Array.Clear(y, 0, t * h);

        // Group (token, slot) pairs by real expert with a stable counting sort.
        var count = new int[ne + 1];
        for (int i = 0; i < t * k; i++) { int e = r.Indices[i]; if (e < ne) count[e + 1]++; }
        for (int e = 0; e < ne; e++) count[e + 1] += count[e];
        var order = new int[count[ne]];
        var fill = (int[])count.Clone();
        for (int i = 0; i < t * k; i++) { int e = r.Indices[i]; if (e < ne) order[fill[e]++] = i; }

        var xe = new float[Math.Max(1, MaxGroup(count, ne)) * h];
        var ye = new float[xe.Length];
        for (int e = 0; e < ne; e++)
        {
            int n = count[e + 1] - count[e];
            if (n == 0) continue;
            for (int j = 0; j < n; j++)
                Array.Copy(x, (order[count[e] + j] / k) * h, xe, j * h, h);
            Experts[e].Forward(xe, ye, n);
            for (int j = 0; j < n; j++)
            {
                int slot = order[count[e] + j];
                System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(ye.AsSpan(j * h, h), r.Weights[slot], y.AsSpan((slot / k) * h, h), y.AsSpan((slot / k) * h, h));
            }
        }
        // Zero-computation experts: one scaled add of x per token, with the summed weights of its zero slots.
        for (int i = 0; i < t; i++)
        {
            float wz = 0;
            for (int j = 0; j < k; j++) if (r.Indices[i * k + j] >= ne) wz += r.Weights[i * k + j];
            if (wz != 0) System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(x.AsSpan(i * h, h), wz, y.AsSpan(i * h, h), y.AsSpan(i * h, h));
        }
        return r;
    }

    static int MaxGroup(int[] count, int ne)
    {
        int m = 0;
        for (int e = 0; e < ne; e++) m = Math.Max(m, count[e + 1] - count[e]);
        return m;
    }
}
