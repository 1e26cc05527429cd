using LongCat.Config;
using LongCat.Kernels;

namespace LongCat.Training;

/// <summary>
/// Accumulates the per-step monitors over a step's micro-batches: real experts per token (integer sums, so exact),
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

    /// <summary>After a micro-batch's forward (and backward, when <paramref name="backward"/>).</summary>
    public void Observe(TrainableModel model, int tokens, bool backward)
    {
        int k = _c.MoeTopK, e = _c.NRoutedExperts;
        _tokens += tokens;
        for (int l = 0; l < _c.NumLayers; l++)
        {
            var sel = model.LastSelected(l);
            long sum = 0, sq = 0;
            for (int t = 0; t < tokens; t++)
            {
                int n = 0;
                for (int j = 0; j < k; j++) if (sel[t * k + j] < e) n++;
                sum += n; sq += n * n;
            }
            _real[l] += sum; _realSq[l] += sq;
            if (backward) model.AddRouterProbabilityGradients(l, _lm[l], _lb[l]);
        }
        var h = model.LastHidden;
        double s = 0;
        float max = _hiddenMax;
        for (int i = 0; i < h.Length; i++)
        {
            float v = h[i];
            s += (double)v * v;
            max = MathF.Max(max, MathF.Abs(v));
        }
        _hiddenSq += s; _hiddenCount += h.Length; _hiddenMax = max;
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
