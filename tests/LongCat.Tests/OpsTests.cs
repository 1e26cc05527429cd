using LongCat.Kernels;

namespace LongCat.Tests;

/// <summary>Each fast kernel against a naive double-precision reference, on odd sizes.</summary>
public class OpsTests
{
    static readonly int[] OddSizes = [1, 2, 7, 16, 63, 65, 129];

    static float[] Rand(int n, int seed, float scale = 1f)
    {
        var r = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return a;
    }

    [Fact]
    public void RmsNormMatchesNaive()
    {
        foreach (var d in OddSizes)
        {
            int rows = 3;
            var x = Rand(rows * d, d, 3f);
            var w = Rand(d, d + 1);
            var y = new float[rows * d];
            var rstd = new float[rows];
            OpsGrad.RmsNormForward(x, w, y, rstd, rows, d, 1e-5f, 2f);
            for (int r = 0; r < rows; r++)
            {
                double ss = 0;
                for (int i = 0; i < d; i++) ss += (double)x[r * d + i] * x[r * d + i];
                double inv = 1 / Math.Sqrt(ss / d + 1e-5);
                Assert.Equal(inv, rstd[r], 1e-5 * inv);
                for (int i = 0; i < d; i++)
                    Assert.Equal(w[i] * x[r * d + i] * inv * 2, y[r * d + i], 1e-5);
            }
        }
    }

    [Fact]
    public void RmsNormInPlaceEqualsOutOfPlace()
    {
        var x = Rand(4 * 65, 9);
        var w = Rand(65, 10);
        var y = new float[x.Length];
        var rstd = new float[4];
        OpsGrad.RmsNormForward(x, w, y, rstd, 4, 65, 1e-6f);
        OpsGrad.RmsNormForward(x, w, x, rstd, 4, 65, 1e-6f); // the final norm runs in place at inference
        Assert.Equal(y, x);
    }

    [Fact]
    public void RopeRotatesInterleavedPairs()
    {
        foreach (var d in new[] { 2, 8, 16, 64 })
        {
            var rope = new LongCat.Model.Rope(d, 1e7);
            rope.Ensure(100);
            foreach (var pos in new[] { 0, 1, 7, 99 })
            {
                var v = Rand(d, pos + d);
                var orig = (float[])v.Clone();
                Ops.RopeInterleaved(v, rope.Cos(pos), rope.Sin(pos));
                for (int i = 0; i < d / 2; i++)
                {
                    double ang = pos * Math.Pow(1e7, -2.0 * i / d);
                    double a = orig[2 * i], b = orig[2 * i + 1];
                    Assert.Equal(a * Math.Cos(ang) - b * Math.Sin(ang), v[2 * i], 1e-4);
                    Assert.Equal(b * Math.Cos(ang) + a * Math.Sin(ang), v[2 * i + 1], 1e-4);
                }
            }
        }
    }

    [Fact]
    public void SoftmaxMatchesNaiveAndIsStable()
    {
        foreach (var n in OddSizes)
        {
            var x = Rand(n, n, 50f);
            x[0] = 1000f; // large values must not overflow
            var y = (float[])x.Clone();
            Ops.Softmax(y);
            double max = x.Max(), sum = x.Sum(v => Math.Exp(v - max));
            for (int i = 0; i < n; i++) Assert.Equal(Math.Exp(x[i] - max) / sum, y[i], 1e-6);
        }
    }

    [Fact]
    public void SiluMulMatchesNaive()
    {
        var g = Rand(129, 1, 10f);
        var u = Rand(129, 2);
        var y = new float[129];
        Ops.SiluMul(g, u, y);
        for (int i = 0; i < 129; i++) Assert.Equal(g[i] / (1 + Math.Exp(-g[i])) * u[i], y[i], 1e-5);
    }

    [Fact]
    public void TopKPicksLargestWithLowerIndexOnTies()
    {
        var r = new Random(5);
        foreach (var n in new[] { 1, 7, 12, 65, 768 })
            foreach (var k in new[] { 1, 3, 12 }.Where(k => k <= n))
            {
                var s = new float[n];
                for (int i = 0; i < n; i++) s[i] = r.Next(0, 20) / 4f; // many ties
                var idx = new int[k];
                Ops.TopK(s, idx);
                var expect = Enumerable.Range(0, n).OrderByDescending(i => s[i]).ThenBy(i => i).Take(k).ToArray();
                Assert.Equal(expect, idx);
            }
    }

    [Fact]
    public void CausalAttentionMatchesNaive()
    {
        int batch = 2, seq = 7, nh = 3, dn = 5, dr = 4, dv = 6;
        int t = batch * seq;
        var q = Rand(t * nh * (dn + dr), 1);
        var kvb = Rand(t * nh * (dn + dv), 2);
        var kr = Rand(t * dr, 3);
        var o = new float[t * nh * dv];
        float scale = 1f / MathF.Sqrt(dn + dr);
        Attention.Causal(q, kvb, kr, o, batch, seq, seq, 0, nh, dn, dr, dv, scale);
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < nh; h++)
                for (int i = 0; i < seq; i++)
                {
                    int ti = b * seq + i;
                    var sc = new double[i + 1];
                    for (int j = 0; j <= i; j++)
                    {
                        int tj = b * seq + j;
                        double s = 0;
                        for (int d = 0; d < dn; d++) s += q[(ti * nh + h) * (dn + dr) + d] * kvb[(tj * nh + h) * (dn + dv) + d];
                        for (int d = 0; d < dr; d++) s += q[(ti * nh + h) * (dn + dr) + dn + d] * kr[tj * dr + d];
                        sc[j] = s * scale;
                    }
                    double m = sc.Max(), z = sc.Sum(v => Math.Exp(v - m));
                    for (int d = 0; d < dv; d++)
                    {
                        double acc = 0;
                        for (int j = 0; j <= i; j++) acc += Math.Exp(sc[j] - m) / z * kvb[((b * seq + j) * nh + h) * (dn + dv) + dn + d];
                        Assert.Equal(acc, o[(ti * nh + h) * dv + d], 1e-5);
                    }
                }
    }
}
