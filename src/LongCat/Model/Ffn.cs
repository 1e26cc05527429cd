using LongCat.Kernels;

namespace LongCat.Model;

/// <summary>SwiGLU feed-forward: down(silu(gate(x)) · up(x)), no biases. Used for the dense FFNs and every real expert.</summary>
public sealed class Ffn(Weight gate, Weight up, Weight down)
{
    public Weight Gate { get; } = gate;   // [I, H]
    public Weight Up { get; } = up;       // [I, H]
    public Weight Down { get; } = down;   // [H, I]

    public static Ffn Load(WeightLoader l, string prefix, int hidden, int inner) => new(
        l.Linear(prefix + "gate_proj.weight", inner, hidden),
        l.Linear(prefix + "up_proj.weight", inner, hidden),
        l.Linear(prefix + "down_proj.weight", hidden, inner));

    public IEnumerable<Weight> Linears => [Gate, Up, Down];

    /// <summary>x [T, H] -> y [T, H].</summary>
    public void Forward(ReadOnlySpan<float> x, Span<float> y, int t)
    {
        int inner = Gate.Rows;
        var g = new float[t * inner];
        var u = new float[t * inner];
        Gemm.MatMul(x, Gate, g, t);
        Gemm.MatMul(x, Up, u, t);
        Ops.SiluMul(g, u, g);
        Gemm.MatMul(g, Down, y, t);
    }
}
