using LongCat.Kernels;

namespace LongCat.Training;

/// <summary>
/// SwiGLU feed-forward with its backward: y = down(silu(gate(x)) · up(x)). Used for the dense FFNs, every real expert
/// and the MTP layer. Activations live in caller-provided buffers so the MoE can pack all experts' rows into one.
/// </summary>
internal sealed class TrainableFfn(ParameterTensor gate, ParameterTensor up, ParameterTensor down)
{
    public ParameterTensor Gate { get; } = gate;   // [I, H]
    public ParameterTensor Up { get; } = up;       // [I, H]
    public ParameterTensor Down { get; } = down;   // [H, I]
    public int Hidden => Gate.Cols;
    public int Inner => Gate.Rows;

    public static TrainableFfn Create(ParameterStore p, string prefix) =>
        new(p[prefix + "gate_proj.weight"], p[prefix + "up_proj.weight"], p[prefix + "down_proj.weight"]);

    /// <summary>x [n, H] -> y [n, H]; keeps g = gate(x), u = up(x), a = silu(g)·u [n, I] for the backward.</summary>
    public void Forward(ReadOnlySpan<float> x, Span<float> g, Span<float> u, Span<float> a, Span<float> y, int n)
    {
        int ni = n * Inner;
        Gemm.MatMul(x, Gate.Weight, g, n);
        Gemm.MatMul(x, Up.Weight, u, n);
        Ops.SiluMul(g[..ni], u[..ni], a[..ni]);
        Gemm.MatMul(a, Down.Weight, y, n);
    }

    /// <summary>
    /// dy [n, H] -> dx [n, H] (written, or added with <paramref name="accumulate"/>); the three weight gradients
    /// accumulate. da, dg, du [n, I] are scratch.
    /// </summary>
    public void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ReadOnlySpan<float> g, ReadOnlySpan<float> u, ReadOnlySpan<float> a,
        Span<float> dx, int n, bool accumulate, Span<float> da, Span<float> dg, Span<float> du)
    {
        int h = Hidden, inner = Inner, ni = n * inner;
        if (n == 0)
        {
            if (!accumulate) dx[..0].Clear();
            return;
        }
        GemmGrad.WeightGrad(dy, a, Down.Grad, n, h, inner);
        GemmGrad.InputGrad(dy, Down.Value, da, n, h, inner);
        OpsGrad.SiluMulBackward(da[..ni], g[..ni], u[..ni], dg[..ni], du[..ni]);
        GemmGrad.WeightGrad(dg, x, Gate.Grad, n, inner, h);
        GemmGrad.WeightGrad(du, x, Up.Grad, n, inner, h);
        GemmGrad.InputGrad(dg, Gate.Value, dx, n, inner, h, accumulate);
        GemmGrad.InputGrad(du, Up.Value, dx, n, inner, h, accumulate: true);
    }
}

/// <summary>What a SwiGLU forward keeps for its backward, plus the backward's scratch: [rows, I] each.</summary>
internal sealed class FfnActivations
{
    float[]? _g, _u, _a, _da, _dg, _du;
    public float[] G => _g!;
    public float[] U => _u!;
    public float[] A => _a!;
    public float[] DA => _da!;
    public float[] DG => _dg!;
    public float[] DU => _du!;

    public void Ensure(int rows, int inner)
    {
        long n = (long)rows * inner;
        Buffers.Ensure(ref _g, n); Buffers.Ensure(ref _u, n); Buffers.Ensure(ref _a, n);
        Buffers.Ensure(ref _da, n); Buffers.Ensure(ref _dg, n); Buffers.Ensure(ref _du, n);
    }
}
