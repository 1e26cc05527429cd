using System.Numerics.Tensors;
using LongCat.Config;
using LongCat.Kernels;
using LongCat.Training;

namespace LongCat.Model;

/// <summary>Runs attention sublayer <paramref name="sublayer"/> of a layer: x [T, H] -> y [T, H], with that sublayer's state.</summary>
public delegate void AttentionStep(Mla mla, int sublayer, float[] x, float[] y, MlaState state);

/// <summary>
/// One ScMoE layer, forward and backward: two attention + dense-FFN sublayers, and the MoE branch that reads the
/// normalized input of dense FFN 0 and joins the residual stream at the end of the layer. Naming what the state keeps:
/// <code>
/// h1 = h0 + MLA_0(xin0 = ln_in0(h0))
/// moe = MoE(xpost0 = ln_post0(h1));  h2 = h1 + FFN_0(xpost0)
/// h3 = h2 + MLA_1(xin1 = ln_in1(h2))
/// out = (h3 + FFN_1(xpost1 = ln_post1(h3))) + moe            # the reference's order
/// </code>
/// The backward walks it in reverse: d(out) reaches h3 and the MoE branch; FFN_0 and the MoE both read xpost0, so
/// their input gradients add before ln_post0's backward.
/// <para>With <c>ffn_topology</c> "interleaved" (the paper's ablation baseline) the MoE is instead the second
/// sublayer's FFN, and the only dense FFN (<see cref="Mlps"/> has one, of 2·ffn_hidden_size) is the first's:
/// h2 = h1 + FFN_0(xpost0), out = h3 + MoE(xpost1).</para>
/// </summary>
public sealed class DecoderLayer
{
    readonly LongCatConfig _c;
    readonly Param[] _inNorm = new Param[2], _postNorm = new Param[2];
    public Mla[] Attention { get; } = new Mla[2];
    /// <summary>The dense FFNs: mlps.0 and mlps.1, or mlps.0 alone in the interleaved topology.</summary>
    public Ffn[] Mlps { get; }
    public ShortcutMoE Moe { get; }

    public DecoderLayer(IParameterSource p, int index)
    {
        var c = _c = p.Config;
        var pre = $"model.layers.{index}.";
        Mlps = new Ffn[c.LayerDenseFfnCount];
        for (int s = 0; s < 2; s++)
        {
            _inNorm[s] = p.Vector($"{pre}input_layernorm.{s}.weight", c.HiddenSize);
            _postNorm[s] = p.Vector($"{pre}post_attention_layernorm.{s}.weight", c.HiddenSize);
            Attention[s] = new Mla(p, $"{pre}self_attn.{s}.");
            if (s < Mlps.Length) Mlps[s] = Ffn.Load(p, $"{pre}mlps.{s}.", c.HiddenSize, c.LayerDenseFfnHiddenSize);
        }
        Moe = new ShortcutMoE(p, $"{pre}mlp.");
    }

    public IEnumerable<Weight> Linears => Attention.SelectMany(a => a.Linears).Concat(Mlps.SelectMany(m => m.Linears)).Concat(Moe.Linears);

    /// <summary>
    /// h [T, H] updated in place (layer input -> output); <paramref name="attend"/> runs attention sublayer s (0 or 1)
    /// on x [T, H] into y [T, H] (the whole sequence, or against a KV cache). <paramref name="s"/> keeps what
    /// <see cref="Backward"/> needs and this layer's routing. Returns the layer's load-balance loss (0 unless
    /// <paramref name="options"/> turn it on).
    /// </summary>
    public double Forward(float[] h, int t, AttentionStep attend, LayerState s, LossOptions? options = null)
    {
        int hd = _c.HiddenSize, n = t * hd;
        float eps = (float)_c.RmsNormEps;
        s.Tokens = t;
        var h0 = Buffers.Ensure(ref s.H0, n); var h1 = Buffers.Ensure(ref s.H1, n);
        var h2 = Buffers.Ensure(ref s.H2, n); var h3 = Buffers.Ensure(ref s.H3, n);
        var xin0 = Buffers.Ensure(ref s.Xin0, n); var xpost0 = Buffers.Ensure(ref s.Xpost0, n);
        var xin1 = Buffers.Ensure(ref s.Xin1, n); var xpost1 = Buffers.Ensure(ref s.Xpost1, n);
        var r0 = Buffers.Ensure(ref s.R0, t); var r1 = Buffers.Ensure(ref s.R1, t);
        var r2 = Buffers.Ensure(ref s.R2, t); var r3 = Buffers.Ensure(ref s.R3, t);
        var y = Buffers.Ensure(ref s.Y, n);
        bool interleaved = _c.InterleavedFfn;
        var moe = interleaved ? y : Buffers.Ensure(ref s.MoeOut, n);

        Array.Copy(h, h0, n);
        OpsGrad.RmsNormForward(h0, _inNorm[0].Values, xin0, r0, t, hd, eps);
        attend(Attention[0], 0, xin0, y, s.Attention[0]);
        TensorPrimitives.Add(h0.AsSpan(0, n), y.AsSpan(0, n), h1.AsSpan(0, n));

        OpsGrad.RmsNormForward(h1, _postNorm[0].Values, xpost0, r1, t, hd, eps);
        double lb = interleaved ? 0 : Moe.Forward(xpost0, moe, t, s.Moe, options);
        Mlps[0].Forward(xpost0, y, t, s.Mlp[0]);
        TensorPrimitives.Add(h1.AsSpan(0, n), y.AsSpan(0, n), h2.AsSpan(0, n));

        OpsGrad.RmsNormForward(h2, _inNorm[1].Values, xin1, r2, t, hd, eps);
        attend(Attention[1], 1, xin1, y, s.Attention[1]);
        TensorPrimitives.Add(h2.AsSpan(0, n), y.AsSpan(0, n), h3.AsSpan(0, n));

        OpsGrad.RmsNormForward(h3, _postNorm[1].Values, xpost1, r3, t, hd, eps);
        if (interleaved)
        {
            lb = Moe.Forward(xpost1, moe, t, s.Moe, options);
            TensorPrimitives.Add(h3.AsSpan(0, n), moe.AsSpan(0, n), h.AsSpan(0, n));
            return lb;
        }
        Mlps[1].Forward(xpost1, y, t, s.Mlp[1]);
        // Same order as the reference: (residual + ffn_1) + moe.
        TensorPrimitives.Add(h3.AsSpan(0, n), y.AsSpan(0, n), h.AsSpan(0, n));
        TensorPrimitives.Add(h.AsSpan(0, n), moe.AsSpan(0, n), h.AsSpan(0, n));
        return lb;
    }

    /// <summary>dh [T, H]: gradient w.r.t. the layer output in, w.r.t. the layer input out (in place), for the forward kept in <paramref name="s"/>.</summary>
    public void Backward(float[] dh, LayerState s)
    {
        int t = s.Tokens, hd = _c.HiddenSize, n = t * hd;
        var dx = Buffers.Ensure(ref s.Dx, n);
        if (_c.InterleavedFfn)
        {
            // out = h3 + MoE(xpost1): the MoE adds its input gradient into a cleared dx.
            Array.Clear(dx, 0, n);
            Moe.Backward(dh, dx, s.Moe);
        }
        else
        {
            var dmoe = Buffers.Ensure(ref s.Dmoe, n);
            Array.Copy(dh, dmoe, n);
            Mlps[1].Backward(dh, s.Xpost1, dx, t, accumulate: false, s.Mlp[1]);
        }
        OpsGrad.RmsNormBackward(dx, s.H3, _postNorm[1].Values, s.R3, dh, _postNorm[1].Grad, t, hd, 1f, accumulate: true);   // dh = d h3

        Attention[1].Backward(dh, dx, accumulate: false, s.Attention[1]);
        OpsGrad.RmsNormBackward(dx, s.H2, _inNorm[1].Values, s.R2, dh, _inNorm[1].Grad, t, hd, 1f, accumulate: true);       // dh = d h2

        Mlps[0].Backward(dh, s.Xpost0, dx, t, accumulate: false, s.Mlp[0]);
        if (!_c.InterleavedFfn) Moe.Backward(s.Dmoe!, dx, s.Moe);
        OpsGrad.RmsNormBackward(dx, s.H1, _postNorm[0].Values, s.R1, dh, _postNorm[0].Grad, t, hd, 1f, accumulate: true);   // dh = d h1

        Attention[0].Backward(dh, dx, accumulate: false, s.Attention[0]);
        OpsGrad.RmsNormBackward(dx, s.H0, _inNorm[0].Values, s.R0, dh, _inNorm[0].Grad, t, hd, 1f, accumulate: true);       // dh = d h0
    }
}

/// <summary>
/// One layer's forward state: the residual stream at each step, the normalized sublayer inputs and their inverse RMS,
/// and the states of its two MLAs, its dense FFNs and its MoE (whose routing the caller reads after the forward).
/// Training keeps one per layer; inference reuses one across layers and steps (a workspace: nothing allocated once
/// the shapes stop growing).
/// </summary>
public sealed class LayerState(bool forBackward)
{
    internal int Tokens;
    internal float[]? H0, H1, H2, H3, Xin0, Xpost0, Xin1, Xpost1, R0, R1, R2, R3, MoeOut, Y, Dmoe, Dx;
    public bool ForBackward { get; } = forBackward;
    public MlaState[] Attention { get; } = [new(forBackward), new(forBackward)];
    public FfnActivations[] Mlp { get; } = [new(), new()];
    public MoeState Moe { get; } = new();
}
