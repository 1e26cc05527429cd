using LongCat.Kernels;

namespace LongCat.Tests;

/// <summary>The backward GEMMs and the fixed-order dot against naive double-precision references, on odd sizes.</summary>
[Collection(nameof(GemmGlobalState))]
public class GemmGradTests
{
    static readonly int[] Sizes = [1, 7, 63, 65, 129];

    static float[] Rand(int n, int seed)
    {
        var r = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(r.NextDouble() * 2 - 1);
        return a;
    }

    public static TheoryData<int, int, int> Shapes()
    {
        var d = new TheoryData<int, int, int>();
        foreach (var m in Sizes) foreach (var n in Sizes) foreach (var k in new[] { 1, 17, 65, 300 }) d.Add(m, n, k);
        return d;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void InputAndWeightGradsMatchNaive(int m, int n, int k)
    {
        var dy = Rand(m * n, m * 1000 + n);
        var w = Rand(n * k, n * 1000 + k);
        var x = Rand(m * k, k * 1000 + m);
        var old = Rand(Math.Max(m * k, n * k), 7);

        var dx = old[..(m * k)];
        GemmGrad.InputGrad(dy, w, dx, m, n, k, accumulate: true);
        var dx0 = new float[m * k];
        GemmGrad.InputGrad(dy, w, dx0, m, n, k);
        var dw = old[..(n * k)];
        GemmGrad.WeightGrad(dy, x, dw, m, n, k);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < k; j++)
            {
                double s = 0;
                for (int q = 0; q < n; q++) s += (double)dy[i * n + q] * w[q * k + j];
                Assert.Equal(s, dx0[i * k + j], 1e-4 * Math.Sqrt(n));
                Assert.Equal(old[i * k + j] + s, dx[i * k + j], 1e-4 * Math.Sqrt(n));
            }
        for (int i = 0; i < n; i++)
            for (int j = 0; j < k; j++)
            {
                double s = old[i * k + j];
                for (int q = 0; q < m; q++) s += (double)dy[q * n + i] * x[q * k + j];
                Assert.Equal(s, dw[i * k + j], 1e-4 * Math.Sqrt(m));
            }
    }

    [Fact]
    public void ObserverSeesEveryGradientGemmWithItsFlops()
    {
        // Shapes no other test uses, so calls from tests running alongside cannot be mistaken for these.
        const int m = 37, n = 29, k = 41;
        var dy = new float[m * n]; var w = new float[n * k]; var x = new float[m * k];
        var dx = new float[m * k]; var dw = new float[n * k];
        var seen = new System.Collections.Concurrent.ConcurrentBag<(bool Dw, double Flops)>();
        GemmGrad.Observer = (isDw, flops, ticks) => { if (ticks >= 0) seen.Add((isDw, flops)); };
        try
        {
            GemmGrad.InputGrad(dy, w, dx, m, n, k);
            GemmGrad.WeightGrad(dy, x, dw, m, n, k);
            GemmGrad.InputGradGrouped([new InputGradProblem(dy, w, dx, m, n, k), new InputGradProblem(dy, w, new float[m * k], m, n, k)]);
            GemmGrad.WeightGradGrouped([new WeightGradProblem(dy, x, dw, m, n, k)]);
        }
        finally { GemmGrad.Observer = null; }
        double one = 2.0 * m * n * k;
        Assert.Contains((false, one), seen);
        Assert.Contains((true, one), seen);
        Assert.Contains((false, 2 * one), seen);   // a grouped call reports once, with all its problems' FLOPs
        Assert.Equal(2, seen.Count(s => s == (true, one)));
    }

    [Fact]
    public void GradientGemmsAreBitwiseIdenticalForAnyThreadCount()
    {
        int m = 150, n = 70, k = 530;
        var dy = Rand(m * n, 1);
        var w = Rand(n * k, 2);
        var x = Rand(m * k, 3);
        int saved = Parallelism.Threads;
        try
        {
            float[]? dx1 = null, dw1 = null;
            foreach (var threads in new[] { 1, 2, 3 })
            {
                Parallelism.Threads = threads;
                var dx = new float[m * k];
                var dw = new float[n * k];
                GemmGrad.InputGrad(dy, w, dx, m, n, k);
                GemmGrad.WeightGrad(dy, x, dw, m, n, k);
                dx1 ??= dx;
                dw1 ??= dw;
                Assert.Equal(dx1, dx);
                Assert.Equal(dw1, dw);
            }
        }
        finally { Parallelism.Threads = saved; }
    }

    /// <summary>
    /// The determinism contract, bit for bit: every output is one float FMA chain in ascending depth from its old
    /// value (or +0), on every instruction set (scalar, AVX2, AVX-512 emulated if need be) and with edge tiles.
    /// </summary>
    [Fact]
    public void GradsAreOneAscendingFmaChainOnEveryInstructionSet()
    {
        var saved = Gemm.Isa;
        try
        {
            foreach (var (m, n, k) in new[] { (1, 1, 1), (13, 33, 70), (40, 300, 65), (7, 520, 33) })
            {
                var dy = Rand(m * n, m + n);
                var w = Rand(n * k, n + k);
                var x = Rand(m * k, m + k);
                var old = Rand(n * k, 9);
                var dxWant = new float[m * k];
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < k; j++)
                    {
                        float s = 0f;
                        for (int q = 0; q < n; q++) s = MathF.FusedMultiplyAdd(dy[i * n + q], w[q * k + j], s);
                        dxWant[i * k + j] = s;
                    }
                var dwWant = (float[])old.Clone();
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < k; j++)
                    {
                        float s = old[i * k + j];
                        for (int q = 0; q < m; q++) s = MathF.FusedMultiplyAdd(dy[q * n + i], x[q * k + j], s);
                        dwWant[i * k + j] = s;
                    }
                foreach (var isa in new[] { Gemm.KernelIsa.Scalar, Gemm.KernelIsa.Avx2, Gemm.KernelIsa.Avx512 })
                {
                    if (isa != Gemm.KernelIsa.Scalar && !System.Runtime.Intrinsics.X86.Avx2.IsSupported) continue;
                    Gemm.Isa = isa;
                    var dx = new float[m * k];
                    GemmGrad.InputGrad(dy, w, dx, m, n, k);
                    var dw = (float[])old.Clone();
                    GemmGrad.WeightGrad(dy, x, dw, m, n, k);
                    Assert.True(dxWant.AsSpan().SequenceEqual(dx), $"dX [{m}x{n}x{k}] {isa}");
                    Assert.True(dwWant.AsSpan().SequenceEqual(dw), $"dW [{m}x{n}x{k}] {isa}");
                }
            }
        }
        finally { Gemm.Isa = saved; }
    }

    /// <summary>
    /// Problems whose packed A exceeds the engine's buffer cap run in row chunks: still one ascending FMA chain
    /// per element, bit for bit (dX with a deep reduction, dW with many rows, a forward with a long K).
    /// </summary>
    [Fact]
    public void LargeProblemsCutIntoRowChunksKeepTheChain()
    {
        {
            int m = 2000, n = 2100, k = 16;
            var dy = Rand(m * n, 21);
            var w = Rand(n * k, 22);
            var x = Rand(m * k, 23);
            var dx = new float[m * k];
            GemmGrad.InputGrad(dy, w, dx, m, n, k);
            var dw = new float[n * k];
            GemmGrad.WeightGrad(dy, x, dw, m, n, k);
            for (int i = 0; i < m; i += 37)
                for (int j = 0; j < k; j++)
                {
                    float s = 0f;
                    for (int q = 0; q < n; q++) s = MathF.FusedMultiplyAdd(dy[i * n + q], w[q * k + j], s);
                    Assert.Equal(BitConverter.SingleToInt32Bits(s), BitConverter.SingleToInt32Bits(dx[i * k + j]));
                }
            for (int i = 0; i < n; i += 41)
                for (int j = 0; j < k; j++)
                {
                    float s = 0f;
                    for (int q = 0; q < m; q++) s = MathF.FusedMultiplyAdd(dy[q * n + i], x[q * k + j], s);
                    Assert.Equal(BitConverter.SingleToInt32Bits(s), BitConverter.SingleToInt32Bits(dw[i * k + j]));
                }
        }
        {
            int m = 300, n = 20, k = 14000;
            var x = Rand(m * k, 24);
            var wv = Rand(n * k, 25);
            var y = new float[m * n];
            Gemm.MatMul(x, Weight.FromFloats("w", wv, n, k), y, m);
            for (int i = 0; i < m; i += 29)
                for (int j = 0; j < n; j++)
                {
                    float s = 0f;
                    for (int q = 0; q < k; q++) s = MathF.FusedMultiplyAdd(x[i * k + q], wv[j * k + q], s);
                    Assert.Equal(BitConverter.SingleToInt32Bits(s), BitConverter.SingleToInt32Bits(y[i * n + j]));
                }
        }
    }

    [Fact]
    public void DotDoesNotDependOnAlignment()
    {
        foreach (var n in new[] { 1, 7, 8, 63, 65, 129, 1000 })
        {
            var a = Rand(n + 8, n);
            var b = Rand(n + 8, n + 1);
            double want = 0;
            for (int i = 0; i < n; i++) want += (double)a[i] * b[i];
            float got = OpsGrad.Dot(a.AsSpan(0, n), b.AsSpan(0, n));
            Assert.Equal(want, got, 1e-5 * Math.Sqrt(n));
            // The same values at another address offset give the same bits.
            for (int shift = 1; shift < 8; shift++)
            {
                var a2 = new float[n + shift];
                var b2 = new float[n + shift];
                Array.Copy(a, 0, a2, shift, n);
                Array.Copy(b, 0, b2, shift, n);
                Assert.Equal(got, OpsGrad.Dot(a2.AsSpan(shift, n), b2.AsSpan(shift, n)));
            }
        }
    }
}
