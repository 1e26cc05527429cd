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
            var st = new NormRows { X = px, W = pw, Y = py, R = pr, D = d, Eps = eps, Scale = scale };
            Parallelism.ForRange(rows, RowGrain(d), st, static (s, r0, r1) =>
            {
                int d = s.D;
                float scale = s.Scale;
                for (int r = r0; r < r1; r++)
                {
                    float* xr = s.X + (long)r * d, yr = s.Y + (long)r * d, wr = s.W;
                    float inv = 1f / MathF.Sqrt(Dot(xr, xr, d) / d + s.Eps);
                    s.R[r] = inv;
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
            var st = new NormRows { Dy = pdy, X = px, W = pw, R = pr, Y = pdx, Dw = pdw, D = d, Rows = rows, Scale = scale, Accumulate = accumulate };
            Parallelism.ForRange(rows, RowGrain(d), st, static (s, r0, r1) =>
            {
                int d = s.D;
                float scale = s.Scale;
                for (int r = r0; r < r1; r++)
                {
                    float* dyr = s.Dy + (long)r * d, xr = s.X + (long)r * d, dxr = s.Y + (long)r * d, wr = s.W;
                    float inv = s.R[r];
                    float dot = 0;
                    for (int i = 0; i < d; i++) dot = MathF.FusedMultiplyAdd(scale * wr[i] * dyr[i], xr[i] * inv, dot);
                    float mean = dot / d;
                    for (int i = 0; i < d; i++)
                    {
                        float g = scale * wr[i] * dyr[i];
                        float v = inv * (g - xr[i] * inv * mean);
                        dxr[i] = s.Accumulate ? dxr[i] + v : v;
                    }
                }
            });
            // dw: a column-parallel reduction over rows in ascending order.
            Parallelism.ForRange(d, 64, st, static (s, i0, i1) =>
            {
                float* dyb = s.Dy, xb = s.X, rs = s.R, g = s.Dw;
                int d = s.D;
                for (int i = i0; i < i1; i++)
                {
                    float sum = 0;
                    for (int r = 0; r < s.Rows; r++) sum = MathF.FusedMultiplyAdd(dyb[(long)r * d + i], xb[(long)r * d + i] * rs[r], sum);
                    g[i] += s.Scale * sum;
                }
            });
        }
    }

    /// <summary>What the row loops of the RMSNorm forward and backward read (no closure per call).</summary>
    struct NormRows
    {
        public float* X, W, Y, R, Dy, Dw;
        public int D, Rows;
        public float Eps, Scale;
        public bool Accumulate;
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
            Parallelism.ForRange(rows, Math.Max(1, 65536 / v), ((nint)pl, (nint)pt, (nint)pls, v, gradScale), static (s, r0, r1) =>
            {
                var (lp, tp, lsp, v, gradScale) = s;
                for (int r = r0; r < r1; r++)
                {
                    var row = new Span<float>((float*)lp + (long)r * v, v);
                    int target = ((int*)tp)[r];
                    if (target < 0) { row.Clear(); ((float*)lsp)[r] = 0; continue; }
                    // max is exact in any order; the sum stays one ascending scalar chain, and each exp is computed
                    // once and kept in the row (the same values as computing it again), so the bits are those of the
                    // plain three-loop form.
                    float max = System.Numerics.Tensors.TensorPrimitives.Max<float>(row);
                    float targetLogit = row[target];
                    float sum = 0;
                    for (int i = 0; i < v; i++)
                    {
                        float e = MathF.Exp(row[i] - max);
                        row[i] = e;
                        sum += e;
                    }
                    float lse = max + MathF.Log(sum);
                    ((float*)lsp)[r] = lse - targetLogit;
                    float inv = 1f / sum;
                    System.Numerics.Tensors.TensorPrimitives.Multiply(row, inv, row);
                    System.Numerics.Tensors.TensorPrimitives.Multiply(row, gradScale, row);
                    row[target] -= gradScale;
                }
            });
        }
    }
}
