using System.Runtime.Intrinsics;

namespace LongCat.Kernels;

/// <summary>
/// Row kernels of the training forward and their backward passes, in fp32 with a fixed reduction order.
/// Reductions use <see cref="Dot(ReadOnlySpan{float}, ReadOnlySpan{float})"/>, whose summation order is written down here (8 lanes from index 0, a fixed fold),
/// rather than TensorPrimitives, whose order is an undocumented implementation detail (measured address-independent in
/// .NET 10, but free to change with the library version or the vector width), so gradient bits stay pinned.
/// </summary>
public static unsafe class OpsGrad
{
    /// <summary>a · b summed in a fixed order: 8 lanes from index 0, lanes folded in a fixed tree, then the tail.</summary>
    public static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (b.Length < a.Length) throw new ArgumentException("b is shorter than a", nameof(b));
        fixed (float* pa = a, pb = b) return Dot(pa, pb, a.Length);
    }

    internal static float Dot(float* a, float* b, int n)
    {
        int nv = n & ~7;
        float s = 0;
        if (nv > 0)
        {
            var acc = Vector256<float>.Zero;
            for (int i = 0; i < nv; i += 8) acc = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), acc);
            var h = acc.GetLower() + acc.GetUpper();
            s = (h[0] + h[2]) + (h[1] + h[3]);
        }
        for (int i = nv; i < n; i++) s = MathF.FusedMultiplyAdd(a[i], b[i], s);
        return s;
    }

    /// <summary>
    /// x [rows, d] -> y [rows, d] = w · x / sqrt(mean(x²) + eps) · scale, keeping rstd [rows] = 1 / sqrt(mean(x²) + eps)
    /// for the backward. The operation order of transformers: w * (x * rsqrt(mean(x²) + eps)). Inference and training
    /// both use it (in place is allowed: each row's sum of squares is taken before the row is written).
    /// </summary>
    public static void RmsNormForward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<float> y, Span<float> rstd, int rows, int d, float eps, float scale = 1f)
    {
        fixed (float* px = x, pw = w, py = y, pr = rstd)
        {
            nint xp = (nint)px, wp = (nint)pw, yp = (nint)py, rp = (nint)pr;
            Parallelism.ForRange(rows, RowGrain(d), (r0, r1) =>
            {
                for (int r = r0; r < r1; r++)
                {
                    float* xr = (float*)xp + (long)r * d, yr = (float*)yp + (long)r * d, wr = (float*)wp;
                    float inv = 1f / MathF.Sqrt(Dot(xr, xr, d) / d + eps);
                    ((float*)rp)[r] = inv;
                    // Element-wise, so vectorised it rounds exactly as ((x · inv) · w) · scale per element.
                    var xs = new ReadOnlySpan<float>(xr, d);
                    var ys = new Span<float>(yr, d);
                    System.Numerics.Tensors.TensorPrimitives.Multiply(xs, inv, ys);
                    System.Numerics.Tensors.TensorPrimitives.Multiply(ys, new ReadOnlySpan<float>(wr, d), ys);
                    if (scale != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(ys, scale, ys);
                }
            });
        }
    }

    /// <summary>
    /// Backward of <see cref="RmsNormForward"/>: dy [rows, d], x [rows, d], rstd [rows] -> dx [rows, d] (written, or
    /// added with <paramref name="accumulate"/>) and dw [d] += Σ_rows dy · x̂ · scale, with x̂ = x · rstd.
    /// dx = rstd · (g - x̂ · mean(g · x̂)), g = scale · w · dy.
    /// </summary>
    public static void RmsNormBackward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> rstd,
        Span<float> dx, Span<float> dw, int rows, int d, float scale, bool accumulate)
    {
        fixed (float* pdy = dy, px = x, pw = w, pr = rstd, pdx = dx, pdw = dw)
        {
            nint dyp = (nint)pdy, xp = (nint)px, wp = (nint)pw, rp = (nint)pr, dxp = (nint)pdx, dwp = (nint)pdw;
            Parallelism.ForRange(rows, RowGrain(d), (r0, r1) =>
            {
                for (int r = r0; r < r1; r++)
                {
                    float* dyr = (float*)dyp + (long)r * d, xr = (float*)xp + (long)r * d, dxr = (float*)dxp + (long)r * d, wr = (float*)wp;
                    float inv = ((float*)rp)[r];
                    float dot = 0;
                    for (int i = 0; i < d; i++) dot = MathF.FusedMultiplyAdd(scale * wr[i] * dyr[i], xr[i] * inv, dot);
                    float mean = dot / d;
                    for (int i = 0; i < d; i++)
                    {
                        float g = scale * wr[i] * dyr[i];
                        float v = inv * (g - xr[i] * inv * mean);
                        dxr[i] = accumulate ? dxr[i] + v : v;
                    }
                }
            });
            // dw: a column-parallel reduction over rows in ascending order.
            Parallelism.ForRange(d, 64, (i0, i1) =>
            {
                float* dyb = (float*)dyp, xb = (float*)xp, rs = (float*)rp, g = (float*)dwp;
                for (int i = i0; i < i1; i++)
                {
                    float s = 0;
                    for (int r = 0; r < rows; r++) s = MathF.FusedMultiplyAdd(dyb[(long)r * d + i], xb[(long)r * d + i] * rs[r], s);
                    g[i] += scale * s;
                }
            });
        }
    }

    static int RowGrain(int d) => Math.Max(1, 16384 / Math.Max(1, d));

    /// <summary>Backward of <see cref="Ops.RopeInterleaved"/> in place: rotates each pair (2i, 2i+1) back by the same angle.</summary>
    public static void RopeInterleavedBackward(Span<float> g, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        int half = g.Length / 2;
        for (int i = 0; i < half; i++)
        {
            float a = g[2 * i], b = g[2 * i + 1];
            g[2 * i] = a * cos[i] + b * sin[i];
            g[2 * i + 1] = b * cos[i] - a * sin[i];
        }
    }

    /// <summary>
    /// Backward of <see cref="Ops.SiluMul"/> (y = silu(gate) · up): dGate = dy · up · σ(gate)(1 + gate(1 - σ(gate))),
    /// dUp = dy · silu(gate). Elementwise; the spans may be any length.
    /// </summary>
    public static void SiluMulBackward(ReadOnlySpan<float> dy, ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> dGate, Span<float> dUp)
    {
        for (int i = 0; i < dy.Length; i++)
        {
            float g = gate[i];
            float s = 1f / (1f + MathF.Exp(-g));
            float d = dy[i];
            dUp[i] = d * (g * s);
            dGate[i] = d * up[i] * (s * (1f + g * (1f - s)));
        }
    }

    /// <summary>Softmax backward for one row: dLogits = p · (dp - Σ p·dp). dLogits may alias dp.</summary>
    public static void SoftmaxBackward(ReadOnlySpan<float> p, ReadOnlySpan<float> dp, Span<float> dLogits)
    {
        float s = 0;
        for (int i = 0; i < p.Length; i++) s = MathF.FusedMultiplyAdd(p[i], dp[i], s);
        for (int i = 0; i < p.Length; i++) dLogits[i] = p[i] * (dp[i] - s);
    }

    /// <summary>
    /// Cross-entropy over rows of logits [rows, V] with targets [rows] (-1 = no target): returns each row's loss in
    /// <paramref name="rowLoss"/> and replaces the logits by d(Σ loss · gradScale)/dlogits = (softmax - onehot) · gradScale
    /// (rows without a target get zeros). Rows run in parallel; every row is sequential.
    /// </summary>
    public static void CrossEntropy(Span<float> logits, ReadOnlySpan<int> targets, Span<float> rowLoss, int rows, int v, float gradScale)
    {
        if (logits.Length < (long)rows * v) throw new ArgumentException("logits are smaller than [rows, V]", nameof(logits));
        fixed (float* pl = logits, pls = rowLoss)
        fixed (int* pt = targets)
        {
            nint lp = (nint)pl, tp = (nint)pt, lsp = (nint)pls;
            Parallelism.ForRange(rows, Math.Max(1, 65536 / v), (r0, r1) =>
            {
                for (int r = r0; r < r1; r++)
                {
                    var row = new Span<float>((float*)lp + (long)r * v, v);
                    int target = ((int*)tp)[r];
                    if (target < 0) { row.Clear(); ((float*)lsp)[r] = 0; continue; }
                    float max = float.NegativeInfinity;
                    for (int i = 0; i < v; i++) max = MathF.Max(max, row[i]);
                    float sum = 0;
                    for (int i = 0; i < v; i++) sum += MathF.Exp(row[i] - max);
                    float lse = max + MathF.Log(sum);
                    ((float*)lsp)[r] = lse - row[target];
                    float inv = 1f / sum;
                    for (int i = 0; i < v; i++) row[i] = MathF.Exp(row[i] - max) * inv * gradScale;
                    row[target] -= gradScale;
                }
            });
        }
    }
}
