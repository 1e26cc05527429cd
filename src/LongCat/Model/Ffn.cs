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
        Gemm.MatMulPair(x, Gate, g, Up, u, n);
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

    /// <summary>
    /// The experts of an MoE layer as one task set: expert e runs on rows [start[e], start[e+1]) of x [rows, H] ->
    /// y [rows, H], its activations in the same rows of <paramref name="act"/> (sized by the caller). Each GEMM stage
    /// (gate and up of every expert, then down of every expert) is one grouped call, so small expert groups keep every
    /// core busy; every expert's result is bitwise its own <see cref="Forward(ReadOnlySpan{float}, Span{float}, int, Span{float}, Span{float}, Span{float})"/>.
    /// </summary>
    public static void ForwardGroup(Ffn[] experts, int[] start, float[] x, float[] y, FfnActivations act, FfnGroupJobs jobs)
    {
        int h = experts[0].Hidden, inner = experts[0].Inner;
        var p = jobs.Forward(2 * experts.Length);
        int n = 0;
        for (int e = 0; e < experts.Length; e++)
        {
            int r0 = start[e], m = start[e + 1] - r0;
            if (m == 0) continue;
            var xe = x.AsMemory(r0 * h, m * h);
            p[n++] = new GemmProblem(experts[e].Gate, xe, act.G.AsMemory(r0 * inner, m * inner), m);
            p[n++] = new GemmProblem(experts[e].Up, xe, act.U.AsMemory(r0 * inner, m * inner), m);
        }
        Gemm.MatMulGrouped(p.AsSpan(0, n));
        n = 0;
        for (int e = 0; e < experts.Length; e++)
        {
            int r0 = start[e], m = start[e + 1] - r0;
            if (m == 0) continue;
            int a0 = r0 * inner, ni = m * inner;
            Ops.SiluMul(act.G.AsSpan(a0, ni), act.U.AsSpan(a0, ni), act.A.AsSpan(a0, ni));
            p[n++] = new GemmProblem(experts[e].Down, act.A.AsMemory(a0, ni), y.AsMemory(r0 * h, m * h), m);
        }
        Gemm.MatMulGrouped(p.AsSpan(0, n));
    }

    /// <summary>
    /// Backward of <see cref="ForwardGroup"/>: dy [rows, H] -> dx [rows, H] (written); every expert's weight gradients
    /// accumulate. The same stages as <see cref="Backward(ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, Span{float}, int, bool, Span{float}, Span{float}, Span{float})"/>,
    /// each one grouped call over the experts, so every gradient is bitwise the per-expert result.
    /// </summary>
    public static void BackwardGroup(Ffn[] experts, int[] start, float[] dy, float[] x, float[] dx, FfnActivations act, FfnGroupJobs jobs)
    {
        int h = experts[0].Hidden, inner = experts[0].Inner;
        float[] g = act.G, u = act.U, a = act.A, da = act.DA, dg = act.DG, du = act.DU;
        var (wg, ig) = jobs.Backward(2 * experts.Length);
        int nw = 0, ni = 0;
        for (int e = 0; e < experts.Length; e++)
        {
            int r0 = start[e], m = start[e + 1] - r0;
            if (m == 0) continue;
            var f = experts[e];
            var dye = dy.AsMemory(r0 * h, m * h);
            wg[nw++] = new WeightGradProblem(dye, a.AsMemory(r0 * inner, m * inner), f._down.GradMemory, m, h, inner);
            ig[ni++] = new InputGradProblem(dye, f._down.ValuesMemory, da.AsMemory(r0 * inner, m * inner), m, h, inner);
        }
        GemmGrad.WeightGradGrouped(wg.AsSpan(0, nw));
        GemmGrad.InputGradGrouped(ig.AsSpan(0, ni));
        nw = 0; ni = 0;
        for (int e = 0; e < experts.Length; e++)
        {
            int r0 = start[e], m = start[e + 1] - r0;
            if (m == 0) continue;
            var f = experts[e];
            int a0 = r0 * inner, n = m * inner;
            OpsGrad.SiluMulBackward(da.AsSpan(a0, n), g.AsSpan(a0, n), u.AsSpan(a0, n), dg.AsSpan(a0, n), du.AsSpan(a0, n));
            var xe = x.AsMemory(r0 * h, m * h);
            wg[nw++] = new WeightGradProblem(dg.AsMemory(a0, n), xe, f._gate.GradMemory, m, inner, h);
            wg[nw++] = new WeightGradProblem(du.AsMemory(a0, n), xe, f._up.GradMemory, m, inner, h);
            ig[ni++] = new InputGradProblem(dg.AsMemory(a0, n), f._gate.ValuesMemory, dx.AsMemory(r0 * h, m * h), m, inner, h);
        }
        GemmGrad.WeightGradGrouped(wg.AsSpan(0, nw));
        GemmGrad.InputGradGrouped(ig.AsSpan(0, ni));
        // dx += du · W_up: after the gate's dx of the same rows is written (one problem per expert, disjoint rows).
        ni = 0;
        for (int e = 0; e < experts.Length; e++)
        {
            int r0 = start[e], m = start[e + 1] - r0;
            if (m == 0) continue;
            ig[ni++] = new InputGradProblem(du.AsMemory(r0 * inner, m * inner), experts[e]._up.ValuesMemory, dx.AsMemory(r0 * h, m * h), m, inner, h, Accumulate: true);
        }
        GemmGrad.InputGradGrouped(ig.AsSpan(0, ni));
    }
}

/// <summary>Reused problem lists for <see cref="Ffn.ForwardGroup"/> and <see cref="Ffn.BackwardGroup"/> (no allocation per step).</summary>
public sealed class FfnGroupJobs
{
    GemmProblem[] _f = [];
    WeightGradProblem[] _w = [];
    InputGradProblem[] _i = [];
    internal GemmProblem[] Forward(int n) => _f.Length >= n ? _f : _f = new GemmProblem[n];
    internal (WeightGradProblem[], InputGradProblem[]) Backward(int n)
    {
        if (_w.Length < n) { _w = new WeightGradProblem[n]; _i = new InputGradProblem[n]; }
        return (_w, _i);
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
