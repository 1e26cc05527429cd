using LongCat.Kernels;

namespace LongCat.Model;

/// <summary>
/// SwiGLU feed-forward, no biases: y = down(silu(gate(x)) · up(x)). Used for the dense FFNs, every real expert and the
/// MTP layer, in inference and in training. The forward writes its activations (g, u, a) into caller-provided
/// buffers, which the backward beside it reads, so the MoE can pack all experts' rows into one set.
/// </summary>
public sealed class Ffn(Param gate, Param up, Param down)
{
    readonly Param _gate = gate, _up = up, _down = down;
    public Weight Gate => _gate.Weight;   // [I, H]
    public Weight Up => _up.Weight;       // [I, H]
    public Weight Down => _down.Weight;   // [H, I]
    public int Hidden => Gate.Cols;
    public int Inner => Gate.Rows;

    public static Ffn Load(IParameterSource p, string prefix, int hidden, int inner) => new(
        p.Linear(prefix + "gate_proj.weight", inner, hidden),
        p.Linear(prefix + "up_proj.weight", inner, hidden),
        p.Linear(prefix + "down_proj.weight", hidden, inner));

    public IEnumerable<Weight> Linears => [Gate, Up, Down];

    /// <summary>x [n, H] -> y [n, H], the activations kept in <paramref name="act"/> (sized here).</summary>
    public void Forward(ReadOnlySpan<float> x, Span<float> y, int n, FfnActivations act)
    {
        act.Ensure(n, Inner);
        Forward(x, y, n, act.G, act.U, act.A);
    }

    /// <summary>x [n, H] -> y [n, H]; writes g = gate(x), u = up(x), a = silu(g)·u [n, I].</summary>
    public void Forward(ReadOnlySpan<float> x, Span<float> y, int n, Span<float> g, Span<float> u, Span<float> a)
    {
        int ni = n * Inner;
        Gemm.MatMul(x, Gate, g, n);
        Gemm.MatMul(x, Up, u, n);
        Ops.SiluMul(g[..ni], u[..ni], a[..ni]);
        Gemm.MatMul(a, Down, y, n);
    }

    /// <summary>Backward of <see cref="Forward(ReadOnlySpan{float}, Span{float}, int, FfnActivations)"/>.</summary>
    public void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, Span<float> dx, int n, bool accumulate, FfnActivations act) =>
        Backward(dy, x, act.G, act.U, act.A, dx, n, accumulate, act.DA, act.DG, act.DU);

    /// <summary>
    /// dy [n, H] -> dx [n, H] (written, or added with <paramref name="accumulate"/>); the three weight gradients
    /// accumulate. g, u, a are the forward's activations; da, dg, du [n, I] are scratch.
    /// </summary>
    public void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ReadOnlySpan<float> g, ReadOnlySpan<float> u, ReadOnlySpan<float> a,
        Span<float> dx, int n, bool accumulate, Span<float> da, Span<float> dg, Span<float> du)
    {
        int h = Hidden, inner = Inner, ni = n * inner;
        if (n == 0) return;
        GemmGrad.WeightGrad(dy, a, _down.Grad, n, h, inner);
        GemmGrad.InputGrad(dy, _down.Values, da, n, h, inner);
        OpsGrad.SiluMulBackward(da[..ni], g[..ni], u[..ni], dg[..ni], du[..ni]);
        GemmGrad.WeightGrad(dg, x, _gate.Grad, n, inner, h);
        GemmGrad.WeightGrad(du, x, _up.Grad, n, inner, h);
        GemmGrad.InputGrad(dg, _gate.Values, dx, n, inner, h, accumulate);
        GemmGrad.InputGrad(du, _up.Values, dx, n, inner, h, accumulate: true);
    }
}

/// <summary>
/// A SwiGLU forward's activations (g, u, a), which the backward reads, plus the backward's scratch (da, dg, du):
/// [rows, I] each, grown on demand and reused, so a steady state allocates nothing.
/// </summary>
public sealed class FfnActivations
{
    float[]? _g, _u, _a, _da, _dg, _du;
    public float[] G => _g!;
    public float[] U => _u!;
    public float[] A => _a!;
    public float[] DA => _da ??= new float[_g!.Length];
    public float[] DG => _dg ??= new float[_g!.Length];
    public float[] DU => _du ??= new float[_g!.Length];

    public void Ensure(int rows, int inner)
    {
        long n = (long)rows * inner;
        Buffers.Ensure(ref _g, n); Buffers.Ensure(ref _u, n); Buffers.Ensure(ref _a, n);
        if (_da is not null && _da.Length < _g!.Length) _da = _dg = _du = null; // the backward's scratch regrows with the forward's
    }
}
