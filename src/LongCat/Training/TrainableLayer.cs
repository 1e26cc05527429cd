using System.Numerics.Tensors;
using LongCat.Config;
using LongCat.Kernels;
using LongCat.Model;

namespace LongCat.Training;

/// <summary>
/// One ScMoE layer with its backward. Forward (what <see cref="DecoderLayer"/> computes), naming what is kept:
/// <code>
/// h1 = h0 + MLA_0(xin0 = ln_in0(h0))
/// moe = MoE(xpost0 = ln_post0(h1));  h2 = h1 + FFN_0(xpost0)
/// h3 = h2 + MLA_1(xin1 = ln_in1(h2))
/// out = (h3 + FFN_1(xpost1 = ln_post1(h3))) + moe
/// </code>
/// Backward walks it in reverse: d(out) reaches h3 and the MoE branch; FFN_0 and the MoE both read xpost0, so their
/// input gradients add before ln_post0's backward.
/// <para>With <c>ffn_topology</c> "interleaved" (the ablation baseline) the same names hold, FFN_0 has 2·ffn_hidden_size,
/// there is no FFN_1 and the MoE is the second sublayer's FFN: h2 = h1 + FFN_0(xpost0), out = h3 + MoE(xpost1).</para>
/// </summary>
internal sealed class TrainableLayer
{
    readonly LongCatConfig _c;
    readonly ParameterTensor[] _inNorm = new ParameterTensor[2], _postNorm = new ParameterTensor[2];
    readonly TrainableMla[] _attn = new TrainableMla[2];
    readonly TrainableFfn[] _mlp;
    readonly FfnActivations[] _mlpActs;
    public TrainableMoE Moe { get; }

    int _t;
    float[]? _h0, _h1, _h2, _h3, _xin0, _xpost0, _xin1, _xpost1, _r0, _r1, _r2, _r3, _moe, _y, _dmoe, _dx;

    public TrainableLayer(ParameterStore p, int index)
    {
        _c = p.Config;
        var pre = $"model.layers.{index}.";
        _mlp = new TrainableFfn[_c.LayerDenseFfnCount];
        _mlpActs = new FfnActivations[_mlp.Length];
        for (int s = 0; s < 2; s++)
        {
            _inNorm[s] = p[$"{pre}input_layernorm.{s}.weight"];
            _postNorm[s] = p[$"{pre}post_attention_layernorm.{s}.weight"];
            _attn[s] = new TrainableMla(p, $"{pre}self_attn.{s}.");
        }
        for (int s = 0; s < _mlp.Length; s++)
        {
            _mlp[s] = TrainableFfn.Create(p, $"{pre}mlps.{s}.");
            _mlpActs[s] = new FfnActivations();
        }
        Moe = new TrainableMoE(p, $"{pre}mlp.");
    }

    /// <summary>h [B·S, H] updated in place (layer input -> output). Returns this layer's load-balance loss.</summary>
    public double Forward(float[] h, int batch, int seq, Rope rope, LossOptions options)
    {
        int t = _t = batch * seq, hd = _c.HiddenSize, n = t * hd;
        float eps = (float)_c.RmsNormEps;
        var h0 = Buffers.Ensure(ref _h0, n); var h1 = Buffers.Ensure(ref _h1, n);
        var h2 = Buffers.Ensure(ref _h2, n); var h3 = Buffers.Ensure(ref _h3, n);
        var xin0 = Buffers.Ensure(ref _xin0, n); var xpost0 = Buffers.Ensure(ref _xpost0, n);
        var xin1 = Buffers.Ensure(ref _xin1, n); var xpost1 = Buffers.Ensure(ref _xpost1, n);
        var r0 = Buffers.Ensure(ref _r0, t); var r1 = Buffers.Ensure(ref _r1, t);
        var r2 = Buffers.Ensure(ref _r2, t); var r3 = Buffers.Ensure(ref _r3, t);
        var y = Buffers.Ensure(ref _y, n);
        bool interleaved = _c.InterleavedFfn;
        var moe = interleaved ? y : Buffers.Ensure(ref _moe, n);

        Array.Copy(h, h0, n);
        OpsGrad.RmsNormForward(h0, _inNorm[0].Value, xin0, r0, t, hd, eps);
        _attn[0].Forward(xin0, y, batch, seq, rope);
        TensorPrimitives.Add(h0.AsSpan(0, n), y.AsSpan(0, n), h1.AsSpan(0, n));

        OpsGrad.RmsNormForward(h1, _postNorm[0].Value, xpost0, r1, t, hd, eps);
        double lb = interleaved ? 0 : Moe.Forward(xpost0, moe, t, options);
        FfnForward(0, xpost0, y, t);
        TensorPrimitives.Add(h1.AsSpan(0, n), y.AsSpan(0, n), h2.AsSpan(0, n));

        OpsGrad.RmsNormForward(h2, _inNorm[1].Value, xin1, r2, t, hd, eps);
        _attn[1].Forward(xin1, y, batch, seq, rope);
        TensorPrimitives.Add(h2.AsSpan(0, n), y.AsSpan(0, n), h3.AsSpan(0, n));

        OpsGrad.RmsNormForward(h3, _postNorm[1].Value, xpost1, r3, t, hd, eps);
        if (interleaved)
        {
            lb = Moe.Forward(xpost1, moe, t, options);
            TensorPrimitives.Add(h3.AsSpan(0, n), moe.AsSpan(0, n), h.AsSpan(0, n));
            return lb;
        }
        FfnForward(1, xpost1, y, t);
        // Same order as the reference: (residual + ffn_1) + moe.
        TensorPrimitives.Add(h3.AsSpan(0, n), y.AsSpan(0, n), h.AsSpan(0, n));
        TensorPrimitives.Add(h.AsSpan(0, n), moe.AsSpan(0, n), h.AsSpan(0, n));
        return lb;
    }

    void FfnForward(int s, float[] x, float[] y, int t)
    {
        var a = _mlpActs[s];
        a.Ensure(t, _mlp[s].Inner);
        _mlp[s].Forward(x, a.G, a.U, a.A, y, t);
    }

    void FfnBackward(int s, float[] dy, float[] x, float[] dx, int t)
    {
        var a = _mlpActs[s];
        _mlp[s].Backward(dy, x, a.G, a.U, a.A, dx, t, accumulate: false, a.DA, a.DG, a.DU);
    }

    /// <summary>dh [B·S, H]: gradient w.r.t. the layer output in, w.r.t. the layer input out (in place).</summary>
    public void Backward(float[] dh)
    {
        int t = _t, hd = _c.HiddenSize, n = t * hd;
        var dx = Buffers.Ensure(ref _dx, n);
        if (_c.InterleavedFfn)
        {
            // out = h3 + MoE(xpost1): the MoE adds its input gradient into a cleared dx.
            Array.Clear(dx, 0, n);
            Moe.Backward(dh, dx);
        }
        else
        {
            var dmoe = Buffers.Ensure(ref _dmoe, n);
            Array.Copy(dh, dmoe, n);
            FfnBackward(1, dh, _xpost1!, dx, t);
        }
        OpsGrad.RmsNormBackward(dx, _h3, _postNorm[1].Value, _r3, dh, _postNorm[1].Grad, t, hd, 1f, accumulate: true);   // dh = d h3

        _attn[1].Backward(dh, dx, accumulate: false);
        OpsGrad.RmsNormBackward(dx, _h2, _inNorm[1].Value, _r2, dh, _inNorm[1].Grad, t, hd, 1f, accumulate: true);       // dh = d h2

        FfnBackward(0, dh, _xpost0!, dx, t);
        if (!_c.InterleavedFfn) Moe.Backward(_dmoe!, dx);
        OpsGrad.RmsNormBackward(dx, _h1, _postNorm[0].Value, _r1, dh, _postNorm[0].Grad, t, hd, 1f, accumulate: true);   // dh = d h1

        _attn[0].Backward(dh, dx, accumulate: false);
        OpsGrad.RmsNormBackward(dx, _h0, _inNorm[0].Value, _r0, dh, _inNorm[0].Grad, t, hd, 1f, accumulate: true);       // dh = d h0
    }
}
