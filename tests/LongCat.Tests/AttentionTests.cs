using System.Runtime.Intrinsics;
using LongCat.Kernels;

namespace LongCat.Tests;

/// <summary>
/// The attention kernel family (<see cref="Attention"/>, <see cref="AttentionGrad"/>): against naive double-precision
/// references on shapes that cross query and key tiles, and its bit contract: the same bits for every instruction set
/// and thread count, for the training forward and a chunked inference prefill, and for a decode step whatever the
/// number of tokens verified at once.
/// </summary>
public class AttentionTests
{
    static float[] Rand(long n, int seed, float scale = 1f)
    {
        var r = new Random(seed);
        var a = new float[n];
        for (long i = 0; i < n; i++) a[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return a;
    }

    static void AssertBitwise(float[] want, float[] got, string what)
    {
        Assert.Equal(want.Length, got.Length);
        for (int i = 0; i < want.Length; i++)
            if (BitConverter.SingleToInt32Bits(want[i]) != BitConverter.SingleToInt32Bits(got[i]))
                Assert.Fail($"{what}: element {i} is {got[i]:R}, expected {want[i]:R} (bitwise)");
    }

    /// <summary>A shape: B sequences, queries at qStart.. of kvLen keys, nh heads, head dims.</summary>
    sealed record Shape(int Batch, int QLen, int KvLen, int QStart, int Nh, int Dn, int Dr, int Dv)
    {
        public float Scale => 1f / MathF.Sqrt(Dn + Dr);
    }

    sealed class Inputs(Shape s, int seed)
    {
        public readonly float[] Q = Rand((long)s.Batch * s.QLen * s.Nh * (s.Dn + s.Dr), seed, 1.5f);
        public readonly float[] Kvb = Rand((long)s.Batch * s.KvLen * s.Nh * (s.Dn + s.Dv), seed + 1, 1.5f);
        public readonly float[] Krope = Rand((long)s.Batch * s.KvLen * s.Dr, seed + 2, 1.5f);
    }

    /// <summary>Naive causal attention in double: out [B·qLen, nh, dv] and the probabilities p[b, h, i][j].</summary>
    static (double[] Out, double[][] P) Naive(Shape s, Inputs x)
    {
        int qd = s.Dn + s.Dr, kvbw = s.Dn + s.Dv;
        var o = new double[(long)s.Batch * s.QLen * s.Nh * s.Dv];
        var probs = new double[s.Batch * s.Nh * s.QLen][];
        for (int b = 0; b < s.Batch; b++)
            for (int h = 0; h < s.Nh; h++)
                for (int i = 0; i < s.QLen; i++)
                {
                    int ti = b * s.QLen + i, last = s.QStart + i;
                    var sc = new double[last + 1];
                    for (int j = 0; j <= last; j++)
                    {
                        int tj = b * s.KvLen + j;
                        double acc = 0;
                        for (int d = 0; d < s.Dn; d++) acc += (double)x.Q[(ti * s.Nh + h) * qd + d] * x.Kvb[(tj * s.Nh + h) * kvbw + d];
                        for (int d = 0; d < s.Dr; d++) acc += (double)x.Q[(ti * s.Nh + h) * qd + s.Dn + d] * x.Krope[tj * s.Dr + d];
                        sc[j] = acc * s.Scale;
                    }
                    double m = sc.Max(), z = sc.Sum(v => Math.Exp(v - m));
                    var p = sc.Select(v => Math.Exp(v - m) / z).ToArray();
                    probs[(b * s.Nh + h) * s.QLen + i] = p;
                    for (int d = 0; d < s.Dv; d++)
                    {
                        double acc = 0;
                        for (int j = 0; j <= last; j++) acc += p[j] * x.Kvb[((b * s.KvLen + j) * s.Nh + h) * kvbw + s.Dn + d];
                        o[(ti * s.Nh + h) * s.Dv + d] = acc;
                    }
                }
        return (o, probs);
    }

    static float[] Causal(Shape s, Inputs x)
    {
        var o = new float[(long)s.Batch * s.QLen * s.Nh * s.Dv];
        Attention.Causal(x.Q, x.Kvb, x.Krope, o, s.Batch, s.QLen, s.KvLen, s.QStart, s.Nh, s.Dn, s.Dr, s.Dv, s.Scale);
        return o;
    }

    public static TheoryData<int, int, int, int, int, int, int, int> Shapes => new()
    {
        // batch, qLen, kvLen, qStart, nh, dn, dr, dv: odd dims (scalar tails), several query and key tiles, a query
        // tile that starts mid key tile (qStart), head dims of the demo model.
        { 2, 150, 170, 20, 3, 5, 3, 7 },
        { 1, 130, 130, 0, 2, 32, 16, 32 },
        { 3, 1, 70, 69, 2, 17, 0, 9 },
        { 1, 65, 200, 135, 1, 64, 32, 64 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void CausalMatchesNaive(int batch, int qLen, int kvLen, int qStart, int nh, int dn, int dr, int dv)
    {
        var s = new Shape(batch, qLen, kvLen, qStart, nh, dn, dr, dv);
        var x = new Inputs(s, 11);
        var got = Causal(s, x);
        var (want, _) = Naive(s, x);
        for (int i = 0; i < want.Length; i++) Assert.True(Math.Abs(want[i] - got[i]) <= 2e-6 * (1 + Math.Abs(want[i])), $"element {i}: {got[i]} vs {want[i]}");
    }

    /// <summary>Backward against the analytic gradient of the naive double attention.</summary>
    [Theory]
    [InlineData(2, 150, 3, 5, 3, 7)]
    [InlineData(1, 130, 2, 32, 16, 32)]
    [InlineData(2, 9, 2, 8, 0, 16)]
    public void BackwardMatchesNaive(int batch, int seq, int nh, int dn, int dr, int dv)
    {
        var s = new Shape(batch, seq, seq, 0, nh, dn, dr, dv);
        var x = new Inputs(s, 5);
        var g = Grad(s, x);
        var (o, probs) = Naive(s, x);
        int qd = dn + dr, kvbw = dn + dv, t = batch * seq;
        for (int i = 0; i < o.Length; i++) Assert.True(Math.Abs(o[i] - g.Out[i]) <= 2e-6 * (1 + Math.Abs(o[i])), $"forward element {i}");
        var dq = new double[g.Dq.Length];
        var dkvb = new double[g.Dkvb.Length];
        var dkr = new double[g.Dkrope.Length];
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < nh; h++)
                for (int i = 0; i < seq; i++)
                {
                    int ti = b * seq + i;
                    var p = probs[(b * nh + h) * seq + i];
                    var dp = new double[i + 1];
                    double sum = 0;
                    for (int j = 0; j <= i; j++)
                    {
                        for (int d = 0; d < dv; d++) dp[j] += (double)g.DOut[(ti * nh + h) * dv + d] * x.Kvb[((b * seq + j) * nh + h) * kvbw + dn + d];
                        sum += p[j] * dp[j];
                    }
                    for (int j = 0; j <= i; j++)
                    {
                        int tj = b * seq + j;
                        double ds = p[j] * (dp[j] - sum) * s.Scale;
                        for (int d = 0; d < dn; d++)
                        {
                            dq[(ti * nh + h) * qd + d] += ds * x.Kvb[(tj * nh + h) * kvbw + d];
                            dkvb[(tj * nh + h) * kvbw + d] += ds * x.Q[(ti * nh + h) * qd + d];
                        }
                        for (int d = 0; d < dr; d++)
                        {
                            dq[(ti * nh + h) * qd + dn + d] += ds * x.Krope[tj * dr + d];
                            dkr[tj * dr + d] += ds * x.Q[(ti * nh + h) * qd + dn + d];
                        }
                        for (int d = 0; d < dv; d++) dkvb[(tj * nh + h) * kvbw + dn + d] += p[j] * g.DOut[(ti * nh + h) * dv + d];
                    }
                }
        void Check(double[] want, float[] got, string name)
        {
            double max = want.Length == 0 ? 0 : want.Max(Math.Abs);
            for (int i = 0; i < want.Length; i++)
                Assert.True(Math.Abs(want[i] - got[i]) <= 1e-5 * (1 + max), $"{name}[{i}]: {got[i]} vs {want[i]:G9}");
        }
        Check(dq, g.Dq, "dq");
        Check(dkvb, g.Dkvb, "dkvb");
        Check(dkr, g.Dkrope, "dkrope");
    }

    sealed record Grads(float[] Out, float[] Stats, float[] DOut, float[] Dq, float[] Dkvb, float[] Dkrope);

    static Grads Grad(Shape s, Inputs x)
    {
        int t = s.Batch * s.QLen;
        var o = new float[t * s.Nh * s.Dv];
        var stats = new float[2 * t * s.Nh];
        AttentionGrad.Forward(x.Q, x.Kvb, x.Krope, o, stats, s.Batch, s.QLen, s.Nh, s.Dn, s.Dr, s.Dv, s.Scale);
        var dOut = Rand(o.Length, 99);
        // Garbage in the outputs and scratch: the backward must overwrite, not accumulate.
        var dq = Rand(x.Q.Length, 1); var dkvb = Rand(x.Kvb.Length, 2); var dkr = Rand(x.Krope.Length, 3);
        var dkrHeads = Rand((long)t * s.Nh * s.Dr, 4);
        AttentionGrad.Backward(x.Q, x.Kvb, x.Krope, o, stats, dOut, dq, dkvb, dkr, dkrHeads, s.Batch, s.QLen, s.Nh, s.Dn, s.Dr, s.Dv, s.Scale);
        return new Grads(o, stats, dOut, dq, dkvb, dkr);
    }

    /// <summary>Full-form inference prefill of one sequence from its latents, in chunks, as a KV cache would run it.</summary>
    static float[] PrefillInChunks(Shape s, float[] q, float[] latent, float[] krope, Weight kvB, int rkv, int[] chunks)
    {
        int qd = s.Dn + s.Dr, seq = s.QLen;
        var o = new float[seq * s.Nh * s.Dv];
        int start = 0;
        foreach (var n in chunks.Append(seq - chunks.Sum()))
        {
            if (n == 0) continue;
            var oc = new float[n * s.Nh * s.Dv];
            Attention.CausalLatent(q.AsSpan(start * s.Nh * qd, n * s.Nh * qd), latent, krope, kvB, oc, n, start, s.Nh, s.Dn, s.Dr, s.Dv, rkv, s.Scale);
            oc.CopyTo(o, start * s.Nh * s.Dv);
            start += n;
        }
        return o;
    }

    /// <summary>
    /// The training forward (all sequences at once, keys expanded for the whole batch) and the inference prefill (one
    /// sequence, from its latents, in chunks of any size, with key blocks of any size) give the same bits.
    /// </summary>
    [Fact]
    public void TrainingForwardEqualsChunkedInferencePrefillBitwise()
    {
        int batch = 2, seq = 150, nh = 3, dn = 16, dr = 8, dv = 12, rkv = 24;
        var s = new Shape(batch, seq, seq, 0, nh, dn, dr, dv);
        int t = batch * seq, qd = dn + dr;
        var q = Rand(t * nh * qd, 1);
        var latent = Rand(t * rkv, 2);
        var krope = Rand(t * dr, 3);
        var kvB = Weight.FromFloats("kv_b", Rand(nh * (dn + dv) * rkv, 4, 0.5f), nh * (dn + dv), rkv);
        var kvb = new float[t * nh * (dn + dv)];
        Gemm.MatMul(latent, kvB, kvb, t);
        var train = new float[t * nh * dv];
        AttentionGrad.Forward(q, kvb, krope, train, new float[2 * t * nh], batch, seq, nh, dn, dr, dv, s.Scale);

        var saved = Attention.KeyBlockOverride;
        try
        {
            foreach (int? block in new int?[] { null, 64, 128 })
                foreach (var chunks in new[] { Array.Empty<int>(), new[] { 1, 2, 70 }, new[] { 64, 1, 1, 17 } })
                {
                    Attention.KeyBlockOverride = block;
                    for (int b = 0; b < batch; b++)
                    {
                        var got = PrefillInChunks(s, q.AsSpan(b * seq * nh * qd, seq * nh * qd).ToArray(), latent.AsSpan(b * seq * rkv, seq * rkv).ToArray(),
                            krope.AsSpan(b * seq * dr, seq * dr).ToArray(), kvB, rkv, chunks);
                        AssertBitwise(train.AsSpan(b * seq * nh * dv, seq * nh * dv).ToArray(), got,
                            $"sequence {b}, key block {block?.ToString() ?? "default"}, chunks [{string.Join(",", chunks)}]");
                    }
                }
        }
        finally { Attention.KeyBlockOverride = saved; }
    }

    /// <summary>Absorbed decode over the latent cache: agrees with the full form, and a row's bits do not depend on how
    /// many tokens the call verifies (speculative decoding checks k drafts in one call).</summary>
    [Fact]
    public void AbsorbedAgreesWithFullFormAndIsInvariantToTheTokensPerCall()
    {
        int seq = 140, nh = 4, dn = 16, dr = 8, dv = 12, rkv = 40, qd = dn + dr;
        var s = new Shape(1, seq, seq, 0, nh, dn, dr, dv);
        var q = Rand(seq * nh * qd, 7);
        var latent = Rand(seq * rkv, 8);
        var krope = Rand(seq * dr, 9);
        var kvB = Weight.FromFloats("kv_b", Rand(nh * (dn + dv) * rkv, 10, 0.4f), nh * (dn + dv), rkv);
        var absorbedKvB = AbsorbedKvB.Prepare(kvB, nh, dn, dv);
        Assert.Equal(4L * nh * (dn + dv) * rkv, absorbedKvB.Bytes);
        var full = PrefillInChunks(s, q, latent, krope, kvB, rkv, []);

        int start = 100, n = 40;
        var all = new float[n * nh * dv];
        Attention.Absorbed(q.AsSpan(start * nh * qd, n * nh * qd), latent, krope, absorbedKvB, all, n, start, nh, dn, dr, dv, rkv, s.Scale);
        for (int i = 0; i < all.Length; i++)
        {
            float want = full[start * nh * dv + i];
            Assert.True(Math.Abs(want - all[i]) <= 2e-5 * (1 + Math.Abs(want)), $"absorbed element {i}: {all[i]} vs full {want}");
        }
        foreach (var step in new[] { 1, 3 })
            for (int p = 0; p < n; p += step)
            {
                int k = Math.Min(step, n - p);
                var o = new float[k * nh * dv];
                Attention.Absorbed(q.AsSpan((start + p) * nh * qd, k * nh * qd), latent, krope, absorbedKvB, o, k, start + p, nh, dn, dr, dv, rkv, s.Scale);
                AssertBitwise(all.AsSpan(p * nh * dv, k * nh * dv).ToArray(), o, $"tokens {start + p}..{start + p + k - 1} verified {step} at a time");
            }
    }

    /// <summary>Scalar, AVX2 and AVX-512 (emulated where the machine lacks it) and 1 or 3 threads give the same bits,
    /// for every entry point.</summary>
    [Fact]
    public void InstructionSetsAndThreadCountsGiveTheSameBits()
    {
        int seq = 130, nh = 2, dn = 20, dr = 8, dv = 36, rkv = 24, qd = dn + dr;
        var s = new Shape(2, seq, seq, 0, nh, dn, dr, dv);
        var x = new Inputs(s, 21);
        var latent = Rand(seq * rkv, 22);
        var kvB = Weight.FromFloats("kv_b", Rand(nh * (dn + dv) * rkv, 23, 0.4f), nh * (dn + dv), rkv);
        var absorbedKvB = AbsorbedKvB.Prepare(kvB, nh, dn, dv);
        float[][] RunAll()
        {
            var g = Grad(s, x);
            var lat = new float[seq * nh * dv];
            Attention.CausalLatent(x.Q.AsSpan(0, seq * nh * qd), latent, x.Krope, kvB, lat, seq, 0, nh, dn, dr, dv, rkv, s.Scale);
            var abs = new float[5 * nh * dv];
            Attention.Absorbed(x.Q.AsSpan(0, 5 * nh * qd), latent, x.Krope, absorbedKvB, abs, 5, seq - 5, nh, dn, dr, dv, rkv, s.Scale);
            return [g.Out, g.Stats, g.Dq, g.Dkvb, g.Dkrope, lat, abs];
        }
        var savedIsa = Gemm.Isa;
        int savedThreads = Parallelism.Threads;
        try
        {
            Gemm.Isa = Gemm.KernelIsa.Scalar;
            Parallelism.Threads = 1;
            var want = RunAll();
            foreach (var isa in new[] { Gemm.KernelIsa.Scalar, Gemm.KernelIsa.Avx2, Gemm.KernelIsa.Avx512 })
                foreach (var threads in new[] { 1, 3 })
                {
                    Gemm.Isa = isa;
                    Parallelism.Threads = threads;
                    var got = RunAll();
                    string[] names = ["forward", "stats", "dq", "dkvb", "dkrope", "latent prefill", "absorbed"];
                    for (int i = 0; i < want.Length; i++) AssertBitwise(want[i], got[i], $"{names[i]} with {isa}, {threads} threads");
                }
        }
        finally { Gemm.Isa = savedIsa; Parallelism.Threads = savedThreads; }
    }

    /// <summary>The vectorised exp2 of the online softmax: accurate, exact at 0, zero below the normal range, and the
    /// same bits as its scalar form.</summary>
    [Fact]
    public void Exp2IsAccurateAndMatchesItsScalarForm()
    {
        Assert.Equal(1f, AttentionKernels.Exp2(0f));
        Assert.Equal(1f, AttentionKernels.Exp2(-0f));
        Assert.Equal(0f, AttentionKernels.Exp2(float.NegativeInfinity));
        Assert.Equal(0f, AttentionKernels.Exp2(-200f));
        var r = new Random(3);
        var t = new float[4096];
        for (int i = 0; i < t.Length; i++) t[i] = i < 64 ? -i * 0.5f : -(float)(r.NextDouble() * (i % 2 == 0 ? 2 : 126));
        double worst = 0;
        for (int i = 0; i < t.Length; i += 8)
        {
            var v = AttentionKernels.Exp2(Vector256.Create(t, i));
            for (int k = 0; k < 8; k++)
            {
                float s = AttentionKernels.Exp2(t[i + k]);
                Assert.Equal(BitConverter.SingleToInt32Bits(s), BitConverter.SingleToInt32Bits(v[k]));
                worst = Math.Max(worst, Math.Abs(s / Math.Pow(2, t[i + k]) - 1));
            }
        }
        Assert.True(worst < 5e-7, $"exp2 relative error {worst:E2}");
    }

    /// <summary>After the first call (per-thread scratch), a long causal prefill from the latent cache allocates next to
    /// nothing: no [T, T] scores and no [T, nh, dn+dv] keys per call.</summary>
    [Fact]
    public void LatentPrefillAllocatesNoPerCallScratch()
    {
        int seq = 1500, nh = 2, dn = 16, dr = 8, dv = 16, rkv = 16, qd = dn + dr;
        var q = Rand(seq * nh * qd, 1);
        var latent = Rand(seq * rkv, 2);
        var krope = Rand(seq * dr, 3);
        var kvB = Weight.FromFloats("kv_b", Rand(nh * (dn + dv) * rkv, 4, 0.4f), nh * (dn + dv), rkv);
        var o = new float[seq * nh * dv];
        int saved = Parallelism.Threads;
        try
        {
            Parallelism.Threads = 1; // everything on this thread, so its allocation counter sees it all
            Attention.CausalLatent(q, latent, krope, kvB, o, seq, 0, nh, dn, dr, dv, rkv, 0.2f);
            long before = GC.GetAllocatedBytesForCurrentThread();
            Attention.CausalLatent(q, latent, krope, kvB, o, seq, 0, nh, dn, dr, dv, rkv, 0.2f);
            long bytes = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.True(bytes < 16 << 10, $"{bytes} bytes allocated by a warm call ([T, nh, dn+dv] would be {4L * seq * nh * (dn + dv)})");
        }
        finally { Parallelism.Threads = saved; }
    }

    [Fact]
    public void BadShapesAreRefusedByName()
    {
        var s = new Shape(1, 10, 10, 0, 2, 4, 2, 4);
        var x = new Inputs(s, 1);
        var o = new float[10 * 2 * 4];
        var e = Assert.Throws<ArgumentException>(() => Attention.Causal(x.Q.AsSpan(1), x.Kvb, x.Krope, o, 1, 10, 10, 0, 2, 4, 2, 4, 0.5f));
        Assert.Contains("q has", e.Message);
        e = Assert.Throws<ArgumentException>(() => Attention.Causal(x.Q, x.Kvb, x.Krope, o, 1, 10, 10, 1, 2, 4, 2, 4, 0.5f));
        Assert.Contains("kvLen", e.Message);
        e = Assert.Throws<ArgumentException>(() => Attention.Causal(x.Q, x.Kvb, x.Krope, o.AsSpan(1), 1, 10, 10, 0, 2, 4, 2, 4, 0.5f));
        Assert.Contains("output", e.Message);
        var kvB = Weight.FromFloats("kv_b", Rand(2 * 8 * 6, 2), 2 * 8, 6);
        e = Assert.Throws<ArgumentException>(() => AbsorbedKvB.Prepare(kvB, 3, 4, 4));
        Assert.Contains("kv_b", e.Message);
        var prepared = AbsorbedKvB.Prepare(kvB, 2, 4, 4);
        e = Assert.Throws<ArgumentException>(() => Attention.Absorbed(x.Q, new float[60], new float[20], prepared, o, 10, 0, 2, 4, 2, 4, 5, 0.5f));
        Assert.Contains("r_kv", e.Message);
        e = Assert.Throws<ArgumentException>(() => Attention.CausalLatent(x.Q, new float[60], new float[20], kvB, o, 10, 0, 2, 4, 2, 5, 6, 0.5f));
        Assert.Contains("kv_b_proj", e.Message);
        var stats = new float[3];
        e = Assert.Throws<ArgumentException>(() => AttentionGrad.Forward(x.Q, x.Kvb, x.Krope, o, stats, 1, 10, 2, 4, 2, 4, 0.5f));
        Assert.Contains("stats", e.Message);
    }
}
