using LongCat.Config;
using LongCat.Kernels;

namespace LongCat.Model;

/// <summary>Runs attention sublayer <paramref name="sublayer"/> of a layer: x [T, H] -> y [T, H].</summary>
public delegate void AttentionStep(Mla mla, int sublayer, float[] x, float[] y);

/// <summary>
/// One ScMoE layer: two attention + dense-FFN sublayers, and the MoE branch that reads the normalized input of
/// dense FFN 0 and joins the residual stream at the end of the layer:
/// <code>
/// h += MLA_0(ln_in0(h)); x = ln_post0(h); moe = MoE(x); h += FFN_0(x)
/// h += MLA_1(ln_in1(h)); h += FFN_1(ln_post1(h)) + moe
/// </code>
/// With <c>ffn_topology</c> "interleaved" (the paper's ablation baseline) the MoE is instead the second sublayer's
/// FFN, and the only dense FFN (<see cref="Mlps"/> has one, of 2·ffn_hidden_size) is the first's:
/// <code>
/// h += MLA_0(ln_in0(h)); h += FFN_0(ln_post0(h))
/// h += MLA_1(ln_in1(h)); h += MoE(ln_post1(h))
/// </code>
/// </summary>
public sealed class DecoderLayer
{
    readonly LongCatConfig _c;
    public float[][] InputNorm { get; } = new float[2][];
    public float[][] PostAttentionNorm { get; } = new float[2][];
    public Mla[] Attention { get; } = new Mla[2];
    /// <summary>The dense FFNs: mlps.0 and mlps.1, or mlps.0 alone in the interleaved topology.</summary>
    public Ffn[] Mlps { get; }
    public ShortcutMoE Moe { get; }

    public DecoderLayer(WeightLoader l, int index)
    {
        var c = _c = l.Config;
        var p = $"model.layers.{index}.";
        Mlps = new Ffn[c.LayerDenseFfnCount];
        for (int s = 0; s < 2; s++)
        {
            InputNorm[s] = l.Vector($"{p}input_layernorm.{s}.weight", c.HiddenSize);
            PostAttentionNorm[s] = l.Vector($"{p}post_attention_layernorm.{s}.weight", c.HiddenSize);
            Attention[s] = new Mla(l, $"{p}self_attn.{s}.");
            if (s < Mlps.Length) Mlps[s] = Ffn.Load(l, $"{p}mlps.{s}.", c.HiddenSize, c.LayerDenseFfnHiddenSize);
        }
        Moe = new ShortcutMoE(l, $"{p}mlp.");
    }

    public IEnumerable<Weight> Linears => Attention.SelectMany(a => a.Linears).Concat(Mlps.SelectMany(m => m.Linears)).Concat(Moe.Linears);

    /// <summary>h [B·S, H] updated in place, B sequences of S tokens at positions 0..S-1, no cache.</summary>
    public Routing Forward(float[] h, int batch, int seq, Rope rope) =>
        Forward(h, batch * seq, (mla, _, x, y) => mla.Forward(x, y, batch, seq, rope));

    /// <summary>
    /// h [T, H] updated in place; <paramref name="attend"/> runs attention sublayer s (0 or 1) on x [T, H] into
    /// y [T, H] (full causal, or against a KV cache). Returns the MoE routing of this layer.
    /// </summary>
    public Routing Forward(float[] h, int t, AttentionStep attend)
    {
        var c = _c;
        int hd = c.HiddenSize;
        float eps = (float)c.RmsNormEps;
        var x = new float[t * hd];
        var y = new float[t * hd];
        bool interleaved = c.InterleavedFfn;
        var moe = interleaved ? y : new float[t * hd];

        Ops.RmsNorm(h, InputNorm[0], x, t, hd, eps);
        attend(Attention[0], 0, x, y);
        Add(h, y);
        Ops.RmsNorm(h, PostAttentionNorm[0], x, t, hd, eps);
        Routing? shortcut = interleaved ? null : Moe.Forward(x, moe, t);
        Mlps[0].Forward(x, y, t);
        Add(h, y);

        Ops.RmsNorm(h, InputNorm[1], x, t, hd, eps);
        attend(Attention[1], 1, x, y);
        Add(h, y);
        Ops.RmsNorm(h, PostAttentionNorm[1], x, t, hd, eps);
        if (shortcut is null)
        {
            var routing = Moe.Forward(x, moe, t);
            Add(h, moe);
            return routing;
        }
        Mlps[1].Forward(x, y, t);
        // Same order as the reference: (residual + ffn_1) + moe.
        Add(h, y);
        Add(h, moe);
        return shortcut;
    }

    static void Add(float[] h, float[] y) => System.Numerics.Tensors.TensorPrimitives.Add(h, y, h);
}
