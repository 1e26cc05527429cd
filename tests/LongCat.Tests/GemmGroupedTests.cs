using LongCat.IO;
using LongCat.Kernels;

namespace LongCat.Tests;

/// <summary>
/// Grouped GEMM (experts as one task set): every problem's result is bitwise the matching single call's, for any
/// thread count, with problems of every path (GEMV order, small batch, packed), dtypes and accumulate flags mixed,
/// and operands that are slices of shared buffers (gathered expert rows).
/// </summary>
[Collection(nameof(GemmGlobalState))]
public class GemmGroupedTests
{
    static float[] Rand(int n, int seed)
    {
        var r = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(r.NextDouble() * 2 - 1);
        return a;
    }

    static unsafe Weight Bf16(int n, int k, int seed)
    {
        var f = Rand(n * k, seed);
        var a = GC.AllocateUninitializedArray<ushort>(Math.Max(1, f.Length), pinned: true);
        for (int i = 0; i < f.Length; i++) a[i] = NumberFormats.F32ToBF16(f[i]);
        return new Weight("bf16", DType.BF16, n, k, (byte*)System.Runtime.InteropServices.Marshal.UnsafeAddrOfPinnedArrayElement(a, 0), owner: a);
    }

    static Weight Int8(int n, int k, int seed)
    {
        var r = new Random(seed);
        var q = new sbyte[n * k];
        var s = new float[n];
        for (int i = 0; i < q.Length; i++) q[i] = (sbyte)r.Next(-127, 128);
        for (int i = 0; i < n; i++) s[i] = (float)(0.001 + r.NextDouble() * 0.01);
        return Weight.FromInt8("i8", q, s, n, k);
    }

    [Fact]
    public void ForwardGroupEqualsSingleCalls()
    {
        int k = 300;
        var experts = new[]
        {
            Weight.FromFloats("e0", Rand(70 * k, 1), 70, k), Bf16(130, k, 2), Int8(33, k, 3), Weight.FromFloats("e3", Rand(257 * k, 4), 257, k),
        };
        // (expert, rows, accumulate): GEMV (1), small batch (3, 5, SmallMaxRows), packed (PackedMinRows, 130), empty.
        var plan = new (int E, int M, bool Acc)[]
        {
            (0, 1, false), (1, 3, true), (2, 5, false), (3, Gemm.SmallMaxRows, false), (0, Gemm.PackedMinRows, true), (1, 130, false), (2, 0, false), (3, 2, false),
        };
        int totalRows = plan.Sum(p => p.M);
        var x = Rand(totalRows * k, 5); // gathered rows of every problem, one after another
        int ySize = plan.Sum(p => p.M * experts[p.E].Rows);
        var y0 = Rand(ySize, 6);
        int saved = Parallelism.Threads;
        try
        {
            foreach (int threads in new[] { 1, 2, 3 })
            {
                Parallelism.Threads = threads;
                var want = (float[])y0.Clone();
                var got = (float[])y0.Clone();
                var problems = new List<GemmProblem>();
                int xo = 0, yo = 0;
                foreach (var (e, m, acc) in plan)
                {
                    var w = experts[e];
                    Gemm.MatMul(x.AsSpan(xo, m * k), w, want.AsSpan(yo, m * w.Rows), m, acc);
                    problems.Add(new GemmProblem(w, x.AsMemory(xo, m * k), got.AsMemory(yo, m * w.Rows), m, acc));
                    xo += m * k; yo += m * w.Rows;
                }
                Gemm.MatMulGrouped(problems.ToArray());
                Assert.True(want.AsSpan().SequenceEqual(got), $"grouped forward differs from single calls at {threads} threads");
            }
        }
        finally { Parallelism.Threads = saved; }
    }

    [Fact]
    public void BackwardGroupsEqualSingleCalls()
    {
        var shapes = new (int M, int N, int K, bool Acc)[] { (1, 40, 33, false), (7, 70, 300, true), (65, 33, 129, false), (0, 5, 5, false), (150, 64, 256, true) };
        int saved = Parallelism.Threads;
        try
        {
            foreach (int threads in new[] { 1, 2 })
            {
                Parallelism.Threads = threads;
                var ig = new List<InputGradProblem>();
                var wg = new List<WeightGradProblem>();
                var wantDx = new List<float[]>();
                var wantDw = new List<float[]>();
                var gotDx = new List<float[]>();
                var gotDw = new List<float[]>();
                int seed = 10;
                foreach (var (m, n, k, acc) in shapes)
                {
                    var dy = Rand(m * n, seed++);
                    var w = Rand(n * k, seed++);
                    var x = Rand(m * k, seed++);
                    var dx0 = Rand(m * k, seed++);
                    var dw0 = Rand(n * k, seed++);
                    var dx = (float[])dx0.Clone();
                    var dw = (float[])dw0.Clone();
                    GemmGrad.InputGrad(dy, w, dx, m, n, k, acc);
                    GemmGrad.WeightGrad(dy, x, dw, m, n, k);
                    wantDx.Add(dx); wantDw.Add(dw);
                    var gx = (float[])dx0.Clone();
                    var gw = (float[])dw0.Clone();
                    gotDx.Add(gx); gotDw.Add(gw);
                    ig.Add(new InputGradProblem(dy, w, gx, m, n, k, acc));
                    wg.Add(new WeightGradProblem(dy, x, gw, m, n, k));
                }
                GemmGrad.InputGradGrouped(ig.ToArray());
                GemmGrad.WeightGradGrouped(wg.ToArray());
                for (int i = 0; i < shapes.Length; i++)
                {
                    Assert.True(wantDx[i].AsSpan().SequenceEqual(gotDx[i]), $"grouped dX of problem {i} at {threads} threads");
                    Assert.True(wantDw[i].AsSpan().SequenceEqual(gotDw[i]), $"grouped dW of problem {i} at {threads} threads");
                }
            }
        }
        finally { Parallelism.Threads = saved; }
    }

    /// <summary>Gate and up (or q_a and kv_a) as one task set: each bitwise its own call, any rows, dtypes and threads.</summary>
    [Fact]
    public void PairEqualsTwoCalls()
    {
        int k = 4096; // large enough that each GEMV alone runs in parallel
        var pairs = new[] { (Weight.FromFloats("a", Rand(96 * k, 7), 96, k), Bf16(40, k, 8)), (Int8(64, k, 9), Weight.FromFloats("b", Rand(8 * k, 10), 8, k)) };
        int saved = Parallelism.Threads;
        try
        {
            foreach (var (w1, w2) in pairs)
                foreach (int m in new[] { 1, 2, 5, Gemm.SmallMaxRows, Gemm.PackedMinRows })
                {
                    var x = Rand(m * k, m);
                    Parallelism.Threads = 1;
                    var want1 = new float[m * w1.Rows];
                    var want2 = new float[m * w2.Rows];
                    Gemm.MatMul(x, w1, want1, m);
                    Gemm.MatMul(x, w2, want2, m);
                    foreach (int threads in new[] { 1, 2, 3 })
                    {
                        Parallelism.Threads = threads;
                        var got1 = Rand(m * w1.Rows, 11);
                        var got2 = Rand(m * w2.Rows, 12);
                        Gemm.MatMulPair(x, w1, got1, w2, got2, m);
                        Assert.True(want1.AsSpan().SequenceEqual(got1), $"{w1.Name} of the pair, {m} rows, {threads} threads");
                        Assert.True(want2.AsSpan().SequenceEqual(got2), $"{w2.Name} of the pair, {m} rows, {threads} threads");
                    }
                }
        }
        finally { Parallelism.Threads = saved; }
    }

    [Fact]
    public void BadProblemsAreRefusedByName()
    {
        var w = Weight.FromFloats("expert.7", new float[6], 3, 2);
        var e = Assert.Throws<ArgumentException>(() => Gemm.MatMulGrouped([new GemmProblem(w, new float[4], new float[5], 2)]));
        Assert.Contains("expert.7", e.Message);
        Assert.Contains("Y has 5 values", e.Message);
        var g = Assert.Throws<ArgumentException>(() => GemmGrad.WeightGradGrouped([new WeightGradProblem(new float[6], new float[4], new float[5], 2, 3, 2)]));
        Assert.Contains("problem 0: DW", g.Message);
        Gemm.MatMulGrouped([]);
    }
}
