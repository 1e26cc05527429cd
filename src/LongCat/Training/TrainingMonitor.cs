using LongCat.Config;
using LongCat.Kernels;

namespace LongCat.Training;

/// <summary>
/// Accumulates the per-step monitors over a step's micro-batches, one record per micro-batch added in micro-batch order: real experts per token (integer sums, so exact),
/// the router's dL/dP split into LM and load-balance parts (R_g), and the last layer's hidden RMS and max |x|.
/// Buffers are allocated once.
/// </summary>
internal sealed class TrainingMonitor
{
    readonly LongCatConfig _c;
    readonly long[] _real, _realSq;
    readonly double[][] _lm, _lb;
    long _tokens;
    double _hiddenSq;
    long _hiddenCount;
    float _hiddenMax;

    public TrainingMonitor(LongCatConfig c)
    {
        _c = c;
        _real = new long[c.NumLayers];
        _realSq = new long[c.NumLayers];
        _lm = Enumerable.Range(0, c.NumLayers).Select(_ => new double[c.NumExpertsTotal]).ToArray();
        _lb = Enumerable.Range(0, c.NumLayers).Select(_ => new double[c.NumExpertsTotal]).ToArray();
    }

    public void Reset()
    {
        Array.Clear(_real); Array.Clear(_realSq);
        foreach (var a in _lm) Array.Clear(a);
        foreach (var a in _lb) Array.Clear(a);
        _tokens = 0; _hiddenSq = 0; _hiddenCount = 0; _hiddenMax = 0;
    }

    /// <summary>Doubles in one micro-batch's monitor record (see <see cref="Capture"/>).</summary>
    public static int RecordLength(LongCatConfig c) => 2 * c.NumLayers + 2 * c.NumLayers * c.NumExpertsTotal + 3;

    /// <summary>
    /// One micro-batch's monitors, after its forward (and backward, when <paramref name="backward"/>), into
    /// <paramref name="record"/> [<see cref="RecordLength"/>]: per layer the real experts per token summed and squared
    /// (integers, exact in a double), the router's dL/dP (LM and load-balance parts), then Σh², the count of h and max |h|
    /// of the last hidden state. A record depends on the micro-batch alone, so records can be computed on any rank and
    /// <see cref="Fold"/>ed in micro-batch order.
    /// </summary>
    public static void Capture(TrainableModel model, int tokens, bool backward, Span<double> record)
    {
        var c = model.Config;
        int k = c.MoeTopK, e = c.NRoutedExperts, layers = c.NumLayers, ne = c.NumExpertsTotal;
        record.Clear();
        for (int l = 0; l < layers; l++)
        {
            var sel = model.LastSelected(l);
            long sum = 0, sq = 0;
            for (int t = 0; t < tokens; t++)
            {
                int n = 0;
                for (int j = 0; j < k; j++) if (sel[t * k + j] < e) n++;
                sum += n; sq += n * n;
            }
            record[l] = sum; record[layers + l] = sq;
            if (backward)
                model.AddRouterProbabilityGradients(l, record.Slice(2 * layers + l * ne, ne), record.Slice(2 * layers + (layers + l) * ne, ne));
        }
        var h = model.LastHidden;
        double s = 0;
        float max = 0;
        for (int i = 0; i < h.Length; i++)
        {
            float v = h[i];
            s += (double)v * v;
            max = MathF.Max(max, MathF.Abs(v));
        }
        int at = 2 * layers + 2 * layers * ne;
        record[at] = s; record[at + 1] = h.Length; record[at + 2] = max;
    }

    /// <summary>Adds one micro-batch's <paramref name="record"/> (from <see cref="Capture"/>) to the step's monitors.</summary>
    public void Fold(ReadOnlySpan<double> record, int tokens)
    {
        int layers = _c.NumLayers, ne = _c.NumExpertsTotal;
        _tokens += tokens;
        for (int l = 0; l < layers; l++)
        {
            _real[l] += (long)record[l]; _realSq[l] += (long)record[layers + l];
            var lm = record.Slice(2 * layers + l * ne, ne);
            var lb = record.Slice(2 * layers + (layers + l) * ne, ne);
            for (int j = 0; j < ne; j++) { _lm[l][j] += lm[j]; _lb[l][j] += lb[j]; }
        }
        int at = 2 * layers + 2 * layers * ne;
        _hiddenSq += record[at]; _hiddenCount += (long)record[at + 1]; _hiddenMax = MathF.Max(_hiddenMax, (float)record[at + 2]);
    }

    public (double[] Mean, double[] Std, double[] Rg, double Rms, double Max) Finish()
    {
        int layers = _c.NumLayers;
        var mean = new double[layers]; var std = new double[layers]; var rg = new double[layers];
        for (int l = 0; l < layers; l++)
        {
            if (_tokens == 0) continue;
            double m = (double)_real[l] / _tokens;
            mean[l] = m;
            std[l] = Math.Sqrt(Math.Max(0, (double)_realSq[l] / _tokens - m * m));
            double lm = 0, lb = 0;
            foreach (var x in _lm[l]) lm += x * x;
            foreach (var x in _lb[l]) lb += x * x;
            rg[l] = lm > 0 ? Math.Sqrt(lb / lm) : 0;
        }
        return (mean, std, rg, _hiddenCount > 0 ? Math.Sqrt(_hiddenSq / _hiddenCount) : 0, _hiddenMax);
    }

    /// <summary>Mean pairwise cosine similarity of each layer's router vectors (rows of the classifier, all E+Z experts).</summary>
    public static double[] RouterCosine(ParameterStore p)
    {
        var c = p.Config;
        int n = c.NumExpertsTotal, h = c.HiddenSize;
        var r = new double[c.NumLayers];
        var norms = new double[n];
        for (int l = 0; l < c.NumLayers; l++)
        {
            var w = p[$"model.layers.{l}.mlp.router.classifier.weight"].Value;
            for (int i = 0; i < n; i++) norms[i] = Math.Sqrt(OpsGrad.Dot(w.Slice(i * h, h), w.Slice(i * h, h)));
            double sum = 0;
            long pairs = 0;
            for (int i = 0; i < n; i++)
                for (int j = i + 1; j < n; j++, pairs++)
                {
                    double d = norms[i] * norms[j];
                    if (d > 0) sum += OpsGrad.Dot(w.Slice(i * h, h), w.Slice(j * h, h)) / d;
                }
            r[l] = pairs > 0 ? sum / pairs : 0;
        }
        return r;
    }
}
