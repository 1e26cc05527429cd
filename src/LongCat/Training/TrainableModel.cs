using System.Numerics.Tensors;
using LongCat.Config;
using LongCat.Kernels;
using LongCat.Model;

namespace LongCat.Training;

/// <summary>
/// LongCat-Flash for training: the one network, <see cref="LongCatModel"/>, built over a flat fp32
/// <see cref="ParameterStore"/> (values and gradients), run with one state per layer that keeps what each module's
/// backward (beside its forward, llm.c style) needs, plus the training losses:
/// <code>
/// embedding -> num_layers × ScMoE (or interleaved) layer -> final norm -> lm_head -> cross-entropy   (+ MTP head, LB loss, z-loss)
/// </code>
/// <c>ForwardBackward</c> adds d(loss)/d(parameter) to <see cref="ParameterStore"/>'s gradients (call
/// <see cref="ParameterStore.ZeroGrads"/> between steps). Activation buffers are sized for the last (B, S) and
/// reused; one step runs at a time. Every reduction has a fixed order, so losses and gradients are bitwise
/// identical for any <see cref="Parallelism.Threads"/>.
/// </summary>
public sealed class TrainableModel : IDisposable
{
    readonly LayerState[] _layerStates;
    readonly MtpState? _mtpState;

    int[]? _targets;
    float[]? _h, _hLast, _hf, _rstdF, _logits, _rowLoss, _dhf, _zLse;
    double _zScale;

    public LongCatConfig Config { get; }
    public ParameterStore Parameters { get; }
    /// <summary>The network (the same modules inference runs) over <see cref="Parameters"/>.</summary>
    public LongCatModel Network { get; }

    /// <summary>A model over <paramref name="parameters"/> (which it owns and disposes).</summary>
    public TrainableModel(ParameterStore parameters)
    {
        var c = Config = parameters.Config;
        if (c.AttentionDropout != 0)
            throw new ConfigException($"config: attention_dropout = {c.AttentionDropout}: training implements no dropout (the release uses 0.0)");
        Parameters = parameters;
        Network = new LongCatModel(parameters);
        _layerStates = new LayerState[c.NumLayers];
        for (int l = 0; l < c.NumLayers; l++) _layerStates[l] = new LayerState(forBackward: true);
        if (Network.Mtp is not null) _mtpState = new MtpState(forBackward: true);
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
    public bool HasMtp => Network.Mtp is not null;

    /// <summary>
    /// One training forward and backward over B sequences of S tokens (ids [B·S], positions 0..S-1): the loss of
    /// <paramref name="options"/> (default: mean next-token cross-entropy over B·(S-1) positions) and its gradient
    /// added to every parameter's gradient.
    /// </summary>
    public LossResult ForwardBackward(ReadOnlySpan<int> ids, int batch, int seq, LossOptions? options = null) =>
        Run(ids, default, 0, batch, seq, options ?? new LossOptions(), backward: true);

    /// <summary>
    /// Supervised fine-tuning: as <see cref="ForwardBackward(ReadOnlySpan{int}, int, int, LossOptions?)"/>, but the
    /// cross-entropy only counts the positions whose target token is trained (<paramref name="lossMask"/>[i + 1] = 1
    /// for the prediction at i; [B·S] bytes): a masked target contributes no loss and no gradient. The loss is the sum
    /// over trained targets divided by <paramref name="lossTokens"/> (0 = the number of trained targets here; a caller
    /// that splits a step into micro-batches passes the step's count so the step's loss is the mean over all its trained
    /// targets). No trained target gives a cross-entropy of 0 and no gradient from it. The MTP loss is not masked and
    /// is refused with a mask.
    /// </summary>
    public LossResult ForwardBackward(ReadOnlySpan<int> ids, ReadOnlySpan<byte> lossMask, int batch, int seq, LossOptions? options = null, double lossTokens = 0) =>
        Run(ids, lossMask, lossTokens, batch, seq, options ?? new LossOptions(), backward: true);

    /// <summary>The same losses as <see cref="ForwardBackward(ReadOnlySpan{int}, int, int, LossOptions?)"/> without the backward (gradients untouched).</summary>
    public LossResult Loss(ReadOnlySpan<int> ids, int batch, int seq, LossOptions? options = null) =>
        Run(ids, default, 0, batch, seq, options ?? new LossOptions(), backward: false);

    /// <summary>The masked losses of <see cref="ForwardBackward(ReadOnlySpan{int}, ReadOnlySpan{byte}, int, int, LossOptions?, double)"/> without the backward.</summary>
    public LossResult Loss(ReadOnlySpan<int> ids, ReadOnlySpan<byte> lossMask, int batch, int seq, LossOptions? options = null, double lossTokens = 0) =>
        Run(ids, lossMask, lossTokens, batch, seq, options ?? new LossOptions(), backward: false);

    /// <summary>
    /// The last forward's next-token negative log-likelihoods in nats, [B·S]: entry b·S + s is −log p(ids[b·S + s + 1] |
    /// ids[b·S .. b·S + s]); 0 at each sequence's last position and at masked targets. For evaluation.
    /// </summary>
    public ReadOnlySpan<float> LastTokenLoss => _rowLoss.AsSpan(0, _lastTokens);

    /// <summary>The [B·S, K] experts <paramref name="layer"/> selected in the last forward (selection order), without a copy.</summary>
    public ReadOnlySpan<int> LastSelected(int layer) => _layerStates[layer].Moe.Selected;

    /// <summary>The last forward's final-layer output before the final norm, [B·S, H] (where massive activations show).</summary>
    public ReadOnlySpan<float> LastHidden => _hLast.AsSpan(0, _lastTokens * Config.HiddenSize);

    /// <summary>Adds the last backward's router dL/dP of <paramref name="layer"/> (see <see cref="ShortcutMoE.AddRouterProbabilityGradients"/>).</summary>
    internal void AddRouterProbabilityGradients(int layer, Span<double> lm, Span<double> lb) =>
        Network.Layers[layer].Moe.AddRouterProbabilityGradients(_layerStates[layer].Moe, lm, lb);

    int _lastTokens;
    /// <summary>The whole-sequence attention step, bound once to the batch shape of the running step.</summary>
    AttentionStep? _attend;
    int _batch, _seq;

    /// <summary>
    /// Called (on the calling thread) right after layer l's backward: its parameters' gradients are final for this
    /// backward (data parallelism starts sending them while the earlier layers' backward runs).
    /// </summary>
    internal Action<int>? AfterLayerBackward { get; set; }

    /// <summary>Per layer, the [B·S, K] experts the last forward selected (selection order).</summary>
    public int[][] LastRouting() => _layerStates.Select(l => l.Moe.Selected.ToArray()).ToArray();

    LossResult Run(ReadOnlySpan<int> ids, ReadOnlySpan<byte> mask, double lossTokens, int batch, int seq, LossOptions options, bool backward)
    {
        var c = Config;
        if (batch <= 0) throw new ArgumentException($"batch size must be positive, got {batch}");
        if (seq < 2) throw new ArgumentException($"sequences must have at least 2 tokens for a next-token loss, got {seq}");
        if (ids.Length != (long)batch * seq) throw new ArgumentException($"{ids.Length} token ids for a [{batch}, {seq}] batch");
        if (seq > c.MaxPositionEmbeddings) throw new ArgumentException($"sequence length {seq} exceeds max_position_embeddings {c.MaxPositionEmbeddings}");
        options.Validate(c, HasMtp);
        if (!mask.IsEmpty && mask.Length != ids.Length) throw new ArgumentException($"{mask.Length} loss-mask entries for {ids.Length} token ids");
        if (!mask.IsEmpty && options.MtpWeight > 0) throw new ArgumentException("the MTP loss is not masked: it cannot train on masked (chat) data; set loss.mtp_weight to 0");
        if (!(lossTokens >= 0) || double.IsInfinity(lossTokens)) throw new ArgumentException($"loss token count must be a finite number >= 0, got {lossTokens}");
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
        var net = Network;
        net.Embed(ids, h);
        _batch = batch; _seq = seq;
        double lb = 0;
        for (int l = 0; l < _layerStates.Length; l++) lb += net.Layers[l].Forward(h, t, _attend ??= (mla, _, x, y, st) => mla.Forward(x, y, _batch, _seq, Network.Rope, st), _layerStates[l], options);
        Array.Copy(h, hLast, t * hd);
        net.FinalNorm(hLast, hf, rstdF, t);
        net.LmHeadForward(hf, logits, t);

        int trained = 0;
        for (int b = 0; b < batch; b++)
            for (int s = 0; s < seq; s++)
            {
                int i = b * seq + s;
                bool on = s + 1 < seq && (mask.IsEmpty || mask[i + 1] != 0);
                targets[i] = on ? ids[i + 1] : -1;
                if (on) trained++;
            }
        double positions = lossTokens > 0 ? lossTokens : trained;
        float scale = positions > 0 ? 1f / (float)positions : 0f; // 1f / B·(S-1) without a mask, as before masking
        OpsGrad.CrossEntropy(logits, targets, rowLoss, t, v, scale);
        double ce = 0;
        for (int i = 0; i < t; i++) ce += rowLoss[i];
        ce = positions > 0 ? ce / positions : 0;

        bool mtpOn = net.Mtp is not null && options.MtpWeight > 0;
        double mtp = mtpOn ? net.Mtp!.Forward(net, hf, ids, batch, seq, options.MtpWeight, _mtpState!) : 0;
        double z = options.HiddenZLossLambda > 0 ? HiddenZLossForward(hLast, t, options.HiddenZLossLambda) : 0;
        var result = new LossResult(ce + options.MtpWeight * mtp + lb + z, ce, mtp, lb, z);
        if (!backward) return result;

        // Backward. The logits buffer now holds d(loss)/d(logits).
        var dhf = Buffers.Ensure(ref _dhf, (long)t * hd);
        net.LmHeadBackward(logits, hf, dhf, t);
        if (mtpOn) net.Mtp!.Backward(net, dhf, seq, _mtpState!);
        net.FinalNormBackward(dhf, hLast, rstdF, h, t);
        if (options.HiddenZLossLambda > 0) HiddenZLossBackward(hLast, h, t);
        for (int l = _layerStates.Length - 1; l >= 0; l--)
        {
            net.Layers[l].Backward(h, _layerStates[l]);
            AfterLayerBackward?.Invoke(l);
        }
        net.EmbedBackward(ids, h);
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
        Parallelism.ForRange(t, 64, (z, lse, hd), static (s, t0, t1) =>
        {
            var (z, lse, hd) = s;
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
        Parallelism.ForRange(t, 64, (z, dz, lse, hd, scale), static (s, t0, t1) =>
        {
            var (z, dz, lse, hd, scale) = s;
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
