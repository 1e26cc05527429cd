using System.Numerics.Tensors;
using LongCat.Config;
using LongCat.Kernels;
using LongCat.Model;

namespace LongCat.Training;

/// <summary>
/// LongCat-Flash for training: the forward of <see cref="LongCatModel"/> over a flat fp32 <see cref="ParameterStore"/>,
/// keeping what each module's backward needs, and an explicit backward per module (llm.c style):
/// <code>
/// embedding -> num_layers × ScMoE (or interleaved) layer -> final norm -> lm_head -> cross-entropy   (+ MTP head, LB loss, z-loss)
/// </code>
/// <see cref="ForwardBackward"/> adds d(loss)/d(parameter) to <see cref="ParameterStore"/>'s gradients (call
/// <see cref="ParameterStore.ZeroGrads"/> between steps). Activation buffers are sized for the last (B, S) and
/// reused; one step runs at a time. Every reduction has a fixed order, so losses and gradients are bitwise
/// identical for any <see cref="Parallelism.Threads"/>.
/// </summary>
public sealed class TrainableModel : IDisposable
{
    readonly ParameterTensor _embed, _finalNorm, _lmHead;
    readonly TrainableLayer[] _layers;
    readonly TrainableMtp? _mtp;
    readonly Rope _rope;

    int[]? _targets;
    float[]? _h, _hLast, _hf, _rstdF, _logits, _rowLoss, _dhf, _zLse;
    double _zScale;

    public LongCatConfig Config { get; }
    public ParameterStore Parameters { get; }

    /// <summary>A model over <paramref name="parameters"/> (which it owns and disposes).</summary>
    public TrainableModel(ParameterStore parameters)
    {
        var c = Config = parameters.Config;
        if (c.AttentionDropout != 0)
            throw new ConfigException($"config: attention_dropout = {c.AttentionDropout}: training implements no dropout (the release uses 0.0)");
        Parameters = parameters;
        _embed = parameters["model.embed_tokens.weight"];
        _finalNorm = parameters["model.norm.weight"];
        _lmHead = c.TieWordEmbeddings ? _embed : parameters["lm_head.weight"];
        _layers = new TrainableLayer[c.NumLayers];
        for (int l = 0; l < c.NumLayers; l++) _layers[l] = new TrainableLayer(parameters, l);
        if (parameters.Table.HasMtp) _mtp = new TrainableMtp(parameters, _embed, _lmHead);
        _rope = new Rope(c.QkRopeHeadDim, c.RopeTheta);
    }

    /// <summary>Loads a checkpoint folder (any stored dtype, widened to fp32).</summary>
    public static TrainableModel Load(string folder) => Own(ParameterStore.Load(folder));

    /// <summary>A randomly initialised model (the scheme of <see cref="ModelInitializer"/>).</summary>
    public static TrainableModel Random(LongCatConfig config, ulong seed, double std = 0.02, bool mtp = false) =>
        Own(ParameterStore.Random(config, seed, std, mtp));

    static TrainableModel Own(ParameterStore p)
    {
        try { return new TrainableModel(p); }
        catch { p.Dispose(); throw; }
    }

    /// <summary>True when the parameters include an MTP head (the MTP loss is available).</summary>
    public bool HasMtp => _mtp is not null;

    /// <summary>
    /// One training forward and backward over B sequences of S tokens (ids [B·S], positions 0..S-1): the loss of
    /// <paramref name="options"/> (default: mean next-token cross-entropy over B·(S-1) positions) and its gradient
    /// added to every parameter's gradient.
    /// </summary>
    public LossResult ForwardBackward(ReadOnlySpan<int> ids, int batch, int seq, LossOptions? options = null) =>
        Run(ids, batch, seq, options ?? new LossOptions(), backward: true);

    /// <summary>The same losses as <see cref="ForwardBackward"/> without the backward (gradients untouched).</summary>
    public LossResult Loss(ReadOnlySpan<int> ids, int batch, int seq, LossOptions? options = null) =>
        Run(ids, batch, seq, options ?? new LossOptions(), backward: false);

    /// <summary>The [B·S, K] experts <paramref name="layer"/> selected in the last forward (selection order), without a copy.</summary>
    public ReadOnlySpan<int> LastSelected(int layer) => _layers[layer].Moe.Selected;

    /// <summary>The last forward's final-layer output before the final norm, [B·S, H] (where massive activations show).</summary>
    public ReadOnlySpan<float> LastHidden => _hLast.AsSpan(0, _lastTokens * Config.HiddenSize);

    /// <summary>Adds the last backward's router dL/dP of <paramref name="layer"/> (see <see cref="TrainableMoE.AddRouterProbabilityGradients"/>).</summary>
    internal void AddRouterProbabilityGradients(int layer, Span<double> lm, Span<double> lb) => _layers[layer].Moe.AddRouterProbabilityGradients(lm, lb);

    int _lastTokens;

    /// <summary>Per layer, the [B·S, K] experts the last forward selected (selection order).</summary>
    public int[][] LastRouting() => _layers.Select(l => l.Moe.Selected.ToArray()).ToArray();

    LossResult Run(ReadOnlySpan<int> ids, int batch, int seq, LossOptions options, bool backward)
    {
        var c = Config;
        if (batch <= 0) throw new ArgumentException($"batch size must be positive, got {batch}");
        if (seq < 2) throw new ArgumentException($"sequences must have at least 2 tokens for a next-token loss, got {seq}");
        if (ids.Length != (long)batch * seq) throw new ArgumentException($"{ids.Length} token ids for a [{batch}, {seq}] batch");
        if (seq > c.MaxPositionEmbeddings) throw new ArgumentException($"sequence length {seq} exceeds max_position_embeddings {c.MaxPositionEmbeddings}");
        options.Validate(c, HasMtp);
        for (int i = 0; i < ids.Length; i++)
            if ((uint)ids[i] >= (uint)c.VocabSize)
                throw new ArgumentException($"token id {ids[i]} at [{i / seq}, {i % seq}] is outside the vocabulary 0..{c.VocabSize - 1}");

        int t = _lastTokens = batch * seq, hd = c.HiddenSize, v = c.VocabSize;
        if ((long)t * v > int.MaxValue) throw new ArgumentException($"B·S·V = {(long)t * v} logits do not fit one buffer; use a smaller batch");
        var h = Buffers.Ensure(ref _h, (long)t * hd);
        var hLast = Buffers.Ensure(ref _hLast, (long)t * hd);
        var hf = Buffers.Ensure(ref _hf, (long)t * hd);
        var rstdF = Buffers.Ensure(ref _rstdF, t);
        var logits = Buffers.Ensure(ref _logits, (long)t * v);
        var rowLoss = Buffers.Ensure(ref _rowLoss, t);
        var targets = Buffers.Ensure(ref _targets, t);

        // Forward.
        for (int i = 0; i < t; i++) _embed.Value.Slice(ids[i] * hd, hd).CopyTo(h.AsSpan(i * hd, hd));
        double lb = 0;
        foreach (var layer in _layers) lb += layer.Forward(h, batch, seq, _rope, options);
        Array.Copy(h, hLast, t * hd);
        OpsGrad.RmsNormForward(hLast, _finalNorm.Value, hf, rstdF, t, hd, (float)c.RmsNormEps);
        Gemm.MatMul(hf, _lmHead.Weight, logits, t);

        int positions = batch * (seq - 1);
        for (int b = 0; b < batch; b++)
            for (int s = 0; s < seq; s++) targets[b * seq + s] = s + 1 < seq ? ids[b * seq + s + 1] : -1;
        OpsGrad.CrossEntropy(logits, targets, rowLoss, t, v, 1f / positions);
        double ce = 0;
        for (int i = 0; i < t; i++) ce += rowLoss[i];
        ce /= positions;

        double mtp = _mtp is not null && options.MtpWeight > 0 ? _mtp.Forward(hf, ids, batch, seq, _rope, options.MtpWeight) : 0;
        double z = options.HiddenZLossLambda > 0 ? HiddenZLossForward(hLast, t, options.HiddenZLossLambda) : 0;
        var result = new LossResult(ce + options.MtpWeight * mtp + lb + z, ce, mtp, lb, z);
        if (!backward) return result;

        // Backward. The logits buffer now holds d(loss)/d(logits).
        var dhf = Buffers.Ensure(ref _dhf, (long)t * hd);
        GemmGrad.WeightGrad(logits, hf, _lmHead.Grad, t, v, hd);
        GemmGrad.InputGrad(logits, _lmHead.Value, dhf, t, v, hd);
        if (_mtp is not null && options.MtpWeight > 0) _mtp.Backward(dhf, seq);
        OpsGrad.RmsNormBackward(dhf, hLast, _finalNorm.Value, rstdF, h, _finalNorm.Grad, t, hd, 1f, accumulate: false);
        if (options.HiddenZLossLambda > 0) HiddenZLossBackward(hLast, h, t);
        for (int l = _layers.Length - 1; l >= 0; l--) _layers[l].Backward(h);
        // Embedding rows: a scatter-add in token order.
        var de = _embed.Grad;
        for (int i = 0; i < t; i++)
        {
            var row = de.Slice(ids[i] * hd, hd);
            TensorPrimitives.Add(row, h.AsSpan(i * hd, hd), row);
        }
        return result;
    }

    /// <summary>
    /// Hidden z-loss (spec section 4, Eq. 10) on z [T, H], the last layer's output before the final norm:
    /// L = (λ / T) Σ_t (log Σ_i exp |z_t,i|)². Keeps each token's log-sum-exp for the backward.
    /// </summary>
    double HiddenZLossForward(float[] z, int t, double lambda)
    {
        int hd = Config.HiddenSize;
        var lse = Buffers.Ensure(ref _zLse, t);
        Parallelism.ForRange(t, 64, (t0, t1) =>
        {
            for (int i = t0; i < t1; i++)
            {
                var row = z.AsSpan(i * hd, hd);
                float max = 0;
                for (int d = 0; d < hd; d++) max = MathF.Max(max, MathF.Abs(row[d]));
                float sum = 0;
                for (int d = 0; d < hd; d++) sum += MathF.Exp(MathF.Abs(row[d]) - max);
                lse[i] = max + MathF.Log(sum);
            }
        });
        double total = 0;
        for (int i = 0; i < t; i++) total += (double)lse[i] * lse[i];
        _zScale = lambda / t;
        return _zScale * total;
    }

    /// <summary>dz_t,i += (λ / T) · 2 lse_t · softmax(|z_t|)_i · sign(z_t,i) (sign(0) = 0, as autograd's abs).</summary>
    void HiddenZLossBackward(float[] z, float[] dz, int t)
    {
        int hd = Config.HiddenSize;
        var lse = _zLse!;
        float scale = (float)_zScale;
        Parallelism.ForRange(t, 64, (t0, t1) =>
        {
            for (int i = t0; i < t1; i++)
            {
                var row = z.AsSpan(i * hd, hd);
                var d = dz.AsSpan(i * hd, hd);
                float g = scale * 2f * lse[i];
                for (int k = 0; k < hd; k++)
                {
                    float p = MathF.Exp(MathF.Abs(row[k]) - lse[i]);
                    if (row[k] != 0) d[k] += row[k] > 0 ? g * p : -(g * p);
                }
            }
        });
    }

    public void Dispose() => Parameters.Dispose();
}
