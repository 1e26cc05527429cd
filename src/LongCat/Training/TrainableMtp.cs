using System.Numerics.Tensors;
using LongCat.Config;
using LongCat.Kernels;
using LongCat.Model;

namespace LongCat.Training;

/// <summary>
/// The MTP head as a training objective (spec section 2, <see cref="MtpHead"/>), with its backward. For each sequence,
/// the pair (h_t, token_{t+1}) for t = 0..S-2 sits at position t of the head's own causal sequence:
/// <code>
/// e = enorm(embed(token_{t+1}));  g = hnorm(h_t)            # h_t: main hidden after the final norm
/// x0 = eh_proj([e; g]);  x1 = x0 + MLA(input_layernorm(x0));  x2 = x1 + FFN(post_attention_layernorm(x1))
/// logits = lm_head(mtp.norm(x2))  predicts token_{t+2}       # shared lm_head; loss over t = 0..S-3
/// </code>
/// Gradients reach the main model through h_t (hnorm) and the shared embedding and lm_head.
/// </summary>
internal sealed class TrainableMtp
{
    readonly LongCatConfig _c;
    readonly ParameterTensor _embed, _lmHead, _enorm, _hnorm, _eh, _inNorm, _postNorm, _norm;
    readonly TrainableMla _attn;
    readonly TrainableFfn _mlp;
    readonly FfnActivations _mlpActs = new();

    int _n, _batch, _pairs;
    int[]? _nextIds, _targets;
    float[]? _eIn, _gIn, _rE, _rG, _cat, _x0, _a, _x1, _b, _x2, _xf, _r0, _r1, _rf, _y, _logits, _rowLoss;
    float[]? _dxf, _dx, _dn, _dcat, _dsplit, _dIn;

    public TrainableMtp(ParameterStore p, ParameterTensor mainEmbedding, ParameterTensor lmHead)
    {
        _c = p.Config;
        const string pre = MtpHead.Prefix + "layers.0.";
        _embed = p.Table.MtpOwnEmbedding ? p[MtpHead.Prefix + "embed_tokens.weight"] : mainEmbedding;
        _lmHead = lmHead;
        _enorm = p[pre + "enorm.m.weight"];
        _hnorm = p[pre + "hnorm.m.weight"];
        _eh = p[pre + "eh_proj.weight"];
        _inNorm = p[pre + "input_layernorm.weight"];
        _postNorm = p[pre + "post_attention_layernorm.weight"];
        _attn = new TrainableMla(p, pre + "self_attn.");
        _mlp = TrainableFfn.Create(p, pre + "transformer_layer.mlp.");
        _norm = p[MtpHead.Prefix + "norm.weight"];
    }

    /// <summary>
    /// hf [B·S, H] (main hidden after the final norm), ids [B·S] -> the unweighted mean cross-entropy over B·(S-2)
    /// positions (0 when S &lt; 3). The logits are replaced by their gradient, scaled by <paramref name="weight"/>.
    /// </summary>
    public double Forward(float[] hf, ReadOnlySpan<int> ids, int batch, int seq, Rope rope, double weight)
    {
        var c = _c;
        int hd = c.HiddenSize, v = c.VocabSize, pairs = seq - 1, n = batch * pairs;
        float eps = (float)c.RmsNormEps;
        _batch = batch; _pairs = pairs; _n = n;
        int positions = batch * (seq - 2);
        if (positions <= 0) { _n = 0; return 0; }
        var nextIds = Buffers.Ensure(ref _nextIds, n);
        var targets = Buffers.Ensure(ref _targets, n);
        var eIn = Buffers.Ensure(ref _eIn, (long)n * hd);
        var gIn = Buffers.Ensure(ref _gIn, (long)n * hd);
        var rE = Buffers.Ensure(ref _rE, n); var rG = Buffers.Ensure(ref _rG, n);
        var cat = Buffers.Ensure(ref _cat, (long)n * 2 * hd);
        var x0 = Buffers.Ensure(ref _x0, (long)n * hd); var a = Buffers.Ensure(ref _a, (long)n * hd);
        var x1 = Buffers.Ensure(ref _x1, (long)n * hd); var b = Buffers.Ensure(ref _b, (long)n * hd);
        var x2 = Buffers.Ensure(ref _x2, (long)n * hd); var xf = Buffers.Ensure(ref _xf, (long)n * hd);
        var r0 = Buffers.Ensure(ref _r0, n); var r1 = Buffers.Ensure(ref _r1, n); var rf = Buffers.Ensure(ref _rf, n);
        var y = Buffers.Ensure(ref _y, (long)n * hd);
        var logits = Buffers.Ensure(ref _logits, (long)n * v);
        var rowLoss = Buffers.Ensure(ref _rowLoss, n);

        for (int bi = 0; bi < batch; bi++)
            for (int i = 0; i < pairs; i++)
            {
                int r = bi * pairs + i, src = bi * seq + i;
                nextIds[r] = ids[src + 1];
                targets[r] = i + 2 < seq ? ids[src + 2] : -1;
                _embed.Weight.DequantizeRow(nextIds[r], eIn.AsSpan(r * hd, hd));
                Array.Copy(hf, (long)src * hd, gIn, (long)r * hd, hd);
            }
        var en = a; // reuse as scratch: [n, H] normalized embedding half, then copied into cat
        OpsGrad.RmsNormForward(eIn, _enorm.Value, en, rE, n, hd, eps);
        for (int r = 0; r < n; r++) Array.Copy(en, (long)r * hd, cat, (long)r * 2 * hd, hd);
        OpsGrad.RmsNormForward(gIn, _hnorm.Value, en, rG, n, hd, eps);
        for (int r = 0; r < n; r++) Array.Copy(en, (long)r * hd, cat, (long)r * 2 * hd + hd, hd);
        Gemm.MatMul(cat, _eh.Weight, x0, n);

        OpsGrad.RmsNormForward(x0, _inNorm.Value, a, r0, n, hd, eps);
        _attn.Forward(a, y, batch, pairs, rope);
        TensorPrimitives.Add(x0.AsSpan(0, n * hd), y.AsSpan(0, n * hd), x1.AsSpan(0, n * hd));
        OpsGrad.RmsNormForward(x1, _postNorm.Value, b, r1, n, hd, eps);
        _mlpActs.Ensure(n, _mlp.Inner);
        _mlp.Forward(b, _mlpActs.G, _mlpActs.U, _mlpActs.A, y, n);
        TensorPrimitives.Add(x1.AsSpan(0, n * hd), y.AsSpan(0, n * hd), x2.AsSpan(0, n * hd));
        OpsGrad.RmsNormForward(x2, _norm.Value, xf, rf, n, hd, eps);
        Gemm.MatMul(xf, _lmHead.Weight, logits, n);
        OpsGrad.CrossEntropy(logits, targets, rowLoss, n, v, (float)(weight / positions));
        double sum = 0;
        for (int r = 0; r < n; r++) sum += rowLoss[r];
        return sum / positions;
    }

    /// <summary>Backward of the last forward (whose logits hold the weighted gradient): adds to dhf [B·S, H] and the parameter gradients.</summary>
    public void Backward(float[] dhf, int seq)
    {
        int n = _n;
        if (n == 0) return;
        var c = _c;
        int hd = c.HiddenSize, v = c.VocabSize, batch = _batch, pairs = _pairs;
        var dxf = Buffers.Ensure(ref _dxf, (long)n * hd);
        var dx = Buffers.Ensure(ref _dx, (long)n * hd);
        var dn = Buffers.Ensure(ref _dn, (long)n * hd);
        var dcat = Buffers.Ensure(ref _dcat, (long)n * 2 * hd);
        var dsplit = Buffers.Ensure(ref _dsplit, (long)n * hd);
        var dIn = Buffers.Ensure(ref _dIn, (long)n * hd);

        GemmGrad.WeightGrad(_logits, _xf, _lmHead.Grad, n, v, hd);
        GemmGrad.InputGrad(_logits, _lmHead.Value, dxf, n, v, hd);
        OpsGrad.RmsNormBackward(dxf, _x2, _norm.Value, _rf, dx, _norm.Grad, n, hd, 1f, accumulate: false);      // dx = d x2
        _mlp.Backward(dx, _b, _mlpActs.G, _mlpActs.U, _mlpActs.A, dn, n, accumulate: false, _mlpActs.DA, _mlpActs.DG, _mlpActs.DU);
        OpsGrad.RmsNormBackward(dn, _x1, _postNorm.Value, _r1, dx, _postNorm.Grad, n, hd, 1f, accumulate: true); // dx = d x1
        _attn.Backward(dx, dn, accumulate: false);
        OpsGrad.RmsNormBackward(dn, _x0, _inNorm.Value, _r0, dx, _inNorm.Grad, n, hd, 1f, accumulate: true);    // dx = d x0
        GemmGrad.WeightGrad(dx, _cat, _eh.Grad, n, hd, 2 * hd);
        GemmGrad.InputGrad(dx, _eh.Value, dcat, n, hd, 2 * hd);

        // Embedding half: enorm backward, then scatter into the embedding rows of token_{t+1} (ascending rows).
        for (int r = 0; r < n; r++) Array.Copy(dcat, (long)r * 2 * hd, dsplit, (long)r * hd, hd);
        OpsGrad.RmsNormBackward(dsplit, _eIn, _enorm.Value, _rE, dIn, _enorm.Grad, n, hd, 1f, accumulate: false);
        var de = _embed.Grad;
        for (int r = 0; r < n; r++)
        {
            var row = de.Slice(_nextIds![r] * hd, hd);
            TensorPrimitives.Add(row, dIn.AsSpan(r * hd, hd), row);
        }
        // Hidden half: hnorm backward, then into the main model's final-norm output h_t.
        for (int r = 0; r < n; r++) Array.Copy(dcat, (long)r * 2 * hd + hd, dsplit, (long)r * hd, hd);
        OpsGrad.RmsNormBackward(dsplit, _gIn, _hnorm.Value, _rG, dIn, _hnorm.Grad, n, hd, 1f, accumulate: false);
        for (int bi = 0; bi < batch; bi++)
            for (int i = 0; i < pairs; i++)
            {
                var dst = dhf.AsSpan((bi * seq + i) * hd, hd);
                TensorPrimitives.Add(dst, dIn.AsSpan((bi * pairs + i) * hd, hd), dst);
            }
    }
}
