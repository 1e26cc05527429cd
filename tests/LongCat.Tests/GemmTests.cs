using System.Runtime.InteropServices;
using LongCat.IO;
using LongCat.Kernels;

namespace LongCat.Tests;

/// <summary>These tests change process-wide kernel settings (threads, instruction set): run them alone.</summary>
[CollectionDefinition(nameof(GemmGlobalState), DisableParallelization = true)]
public sealed class GemmGlobalState;

/// <summary>
/// Property tests of <see cref="Gemm.MatMul"/>: against a double-precision reference for every weight dtype and odd
/// shapes; exact dequantization (a quantized weight gives the same bits as its dequantized F32 copy); bitwise
/// invariance to thread count, instruction set and batch composition.
/// </summary>
[Collection(nameof(GemmGlobalState))]
public unsafe class GemmTests
{
    /// <summary>A test weight plus its pinned storage.</summary>
    sealed class TestWeight
    {
        public required Weight W;
        public required float[] Dequant; // the scalar definition (Weight.ToFloat32)
    }

    static TestWeight Make(DType dt, int n, int k, int seed, int blockRows = 128, int blockCols = 128, float scaleMul = 1f)
    {
        var rng = new Random(seed);
        var f = new float[n * k];
        for (int i = 0; i < f.Length; i++) f[i] = (float)(rng.NextDouble() * 2 - 1) * (i % 7 == 0 ? 3f : 0.5f);
        Weight w;
        switch (dt)
        {
            case DType.F32:
                w = Weight.FromFloats("w", f, n, k);
                break;
            case DType.BF16:
            case DType.F16:
                {
                    var a = GC.AllocateUninitializedArray<ushort>(Math.Max(1, f.Length), pinned: true);
                    for (int i = 0; i < f.Length; i++)
                        a[i] = dt == DType.BF16 ? NumberFormats.F32ToBF16(f[i]) : BitConverter.HalfToUInt16Bits((Half)f[i]);
                    w = new Weight("w", dt, n, k, (byte*)Marshal.UnsafeAddrOfPinnedArrayElement(a, 0), owner: a);
                    break;
                }
            case DType.I8:
                {
                    // Per-row scales as the quantizer writes them (amax / 127), q = round(w / scale).
                    var q = new sbyte[n * k];
                    var sc = new float[n];
                    for (int r = 0; r < n; r++)
                    {
                        float amax = 0;
                        for (int c = 0; c < k; c++) amax = MathF.Max(amax, MathF.Abs(f[r * k + c]));
                        sc[r] = amax > 0 ? amax / 127f * scaleMul : 1f;
                        for (int c = 0; c < k; c++) q[r * k + c] = (sbyte)Math.Clamp(MathF.Round(f[r * k + c] * scaleMul / sc[r]), -127, 127);
                    }
                    w = Weight.FromInt8("w", q, sc, n, k);
                    break;
                }
            default:
                {
                    int sr = (n + blockRows - 1) / blockRows, sc = (k + blockCols - 1) / blockCols;
                    var scales = GC.AllocateUninitializedArray<float>(Math.Max(1, sr * sc), pinned: true);
                    for (int i = 0; i < sr * sc; i++) scales[i] = (float)(0.001 + rng.NextDouble() * 0.01) * scaleMul;
                    var q = GC.AllocateUninitializedArray<byte>(Math.Max(1, f.Length), pinned: true);
                    for (int r = 0; r < n; r++)
                        for (int c = 0; c < k; c++)
                        {
                            q[r * k + c] = NumberFormats.F32ToFp8E4M3(f[r * k + c] * 200f);
                        }
                    w = new Weight("w", DType.F8_E4M3, n, k, (byte*)Marshal.UnsafeAddrOfPinnedArrayElement(q, 0),
                        (float*)Marshal.UnsafeAddrOfPinnedArrayElement(scales, 0), blockRows, blockCols, owner: (q, scales));
                    break;
                }
        }
        return new TestWeight { W = w, Dequant = w.ToFloat32() };
    }

    static float[] RandomX(int m, int k, int seed)
    {
        var rng = new Random(seed);
        var x = new float[m * k];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }

    static float[] Run(float[] x, Weight w, int m, float[]? y0 = null)
    {
        var y = y0 != null ? (float[])y0.Clone() : new float[m * w.Rows];
        Gemm.MatMul(x, w, y, m, accumulate: y0 != null);
        return y;
    }

    static void CheckAgainstReference(float[] x, TestWeight tw, int m, float[] y, float[]? y0, string what)
    {
        int n = tw.W.Rows, k = tw.W.Cols;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = y0?[i * n + j] ?? 0, mag = Math.Abs(s);
                for (int c = 0; c < k; c++)
                {
                    double p = (double)x[i * k + c] * tw.Dequant[j * k + c];
                    s += p; mag += Math.Abs(p);
                }
                // A float32 FMA chain (or tree) over K terms is within ~K·u·Σ|x||w| of the exact sum.
                double tol = (k + 4) * 6e-8 * mag + 1e-30;
                double err = Math.Abs(y[i * n + j] - s);
                Assert.True(err <= tol, $"{what}: y[{i},{j}] = {y[i * n + j]}, reference {s}, error {err:E3} > {tol:E3}");
            }
    }

    static void AssertBitwise(float[] a, float[] b, string what)
    {
        Assert.Equal(a.Length, b.Length);
        for (int i = 0; i < a.Length; i++)
            if (BitConverter.SingleToInt32Bits(a[i]) != BitConverter.SingleToInt32Bits(b[i]))
                Assert.Fail($"{what}: element {i} differs: {a[i]:R} vs {b[i]:R}");
    }

    public static TheoryData<DType> DTypesAll => new(DType.F32, DType.BF16, DType.F16, DType.F8_E4M3, DType.I8);

    static readonly (int M, int N, int K)[] OddShapes =
    [
        (1, 1, 1), (1, 7, 63), (2, 65, 7), (3, 63, 129), (3, 9, 17), (1, 40, 300),
        (4, 1, 1), (4, 7, 65), (5, 63, 7), (6, 16, 256), (7, 65, 129), (13, 129, 63), (12, 32, 257),
        (65, 17, 300), (20, 70, 520), (64, 33, 129), (66, 40, 71), (130, 37, 300),
    ];

    [Theory]
    [MemberData(nameof(DTypesAll))]
    public void MatchesDoubleReference_OddShapes(DType dt)
    {
        int seed = 1;
        foreach (var (m, n, k) in OddShapes)
        {
            var tw = Make(dt, n, k, seed++);
            var x = RandomX(m, k, seed++);
            var y = Run(x, tw.W, m);
            CheckAgainstReference(x, tw, m, y, null, $"{dt} [{m}x{n}x{k}]");
            var y0 = RandomX(m, n, seed++);
            var ya = Run(x, tw.W, m, y0);
            CheckAgainstReference(x, tw, m, ya, y0, $"{dt} accumulate [{m}x{n}x{k}]");
        }
    }

    /// <summary>Dequantization inside the kernels is exact: a quantized weight and its F32 copy give the same bits.</summary>
    [Theory]
    [MemberData(nameof(DTypesAll))]
    public void QuantizedWeightEqualsItsDequantizedCopy(DType dt)
    {
        int seed = 100;
        foreach (var (m, n, k) in OddShapes)
        {
            var tw = Make(dt, n, k, seed++);
            var f32 = Weight.FromFloats("f", tw.Dequant, n, k);
            var x = RandomX(m, k, seed++);
            AssertBitwise(Run(x, f32, m), Run(x, tw.W, m), $"{dt} [{m}x{n}x{k}]");
        }
    }

    public static TheoryData<int, int> Fp8Blocks => new() { { 128, 128 }, { 16, 16 }, { 8, 24 }, { 3, 5 }, { 1, 128 }, { 7, 32 } };

    /// <summary>FP8 with partial edge blocks and block shapes that do not fit the 8/16-wide SIMD steps.</summary>
    [Theory]
    [MemberData(nameof(Fp8Blocks))]
    public void Fp8BlockScales(int br, int bc)
    {
        int seed = 200;
        foreach (var (m, n, k) in new[] { (1, 37, 300), (3, 129, 140), (4, 130, 136), (9, 33, 260), (20, 70, 129) })
        {
            var tw = Make(DType.F8_E4M3, n, k, seed++, br, bc);
            var x = RandomX(m, k, seed++);
            var y = Run(x, tw.W, m);
            CheckAgainstReference(x, tw, m, y, null, $"fp8 {br}x{bc} [{m}x{n}x{k}]");
            AssertBitwise(Run(x, Weight.FromFloats("f", tw.Dequant, n, k), m), y, $"fp8 {br}x{bc} exact [{m}x{n}x{k}]");
        }
    }

    /// <summary>Scales so large that scale · 2^120 overflows take the two-multiply path, still exact.</summary>
    [Fact]
    public void Fp8HugeScales()
    {
        foreach (var (m, n, k) in new[] { (1, 9, 272), (5, 40, 272) })
        {
            var tw = Make(DType.F8_E4M3, n, k, 7, 16, 16, scaleMul: 1e30f);
            var x = RandomX(m, k, 8);
            AssertBitwise(Run(x, Weight.FromFloats("f", tw.Dequant, n, k), m), Run(x, tw.W, m), $"fp8 huge scales [{m}x{n}x{k}]");
        }
    }

    [Fact]
    public void Fp8DequantMatchesTableForEveryByte()
    {
        // All 256 codes, one per column, block scales 0.37 and 3e-3: weight = table[b] * scale exactly. Each code
        // is read alone (x = one-hot); the NaN codes (0x7F, 0xFF) get their own weight so 0 · NaN stays out.
        foreach (bool nanCodes in new[] { false, true })
        {
            var q = GC.AllocateUninitializedArray<byte>(256, pinned: true);
            for (int i = 0; i < 256; i++) q[i] = (byte)((i & 0x7F) == 0x7F ? (nanCodes ? i : 0) : (nanCodes ? 0 : i));
            var s = GC.AllocateUninitializedArray<float>(2, pinned: true);
            s[0] = 0.37f; s[1] = 3e-3f;
            var w = new Weight("w", DType.F8_E4M3, 1, 256, (byte*)Marshal.UnsafeAddrOfPinnedArrayElement(q, 0),
                (float*)Marshal.UnsafeAddrOfPinnedArrayElement(s, 0), 128, 128, owner: (q, s));
            for (int c = 0; c < 256; c++)
            {
                if (((c & 0x7F) == 0x7F) != nanCodes) continue;
                var x = new float[256];
                x[c] = 1f;
                float expect = NumberFormats.Fp8E4M3Table[c] * s[c / 128] + 0f; // a sum from +0: -0 becomes +0
                float gemv = Run(x, w, 1)[0];
                var x4 = new float[4 * 256];
                for (int i = 0; i < 4; i++) x4[i * 256 + c] = 1f;
                float packed = Run(x4, w, 4)[3];
                var xp = new float[Gemm.PackedMinRows * 256];
                for (int i = 0; i < Gemm.PackedMinRows; i++) xp[i * 256 + c] = 1f;
                float packedBig = Run(xp, w, Gemm.PackedMinRows)[5];
                Assert.True(float.IsNaN(expect) ? float.IsNaN(packedBig) : BitConverter.SingleToInt32Bits(expect) == BitConverter.SingleToInt32Bits(packedBig), $"packed byte {c:X2}: {packedBig:R} != {expect:R}");
                if (float.IsNaN(expect)) { Assert.True(float.IsNaN(gemv) && float.IsNaN(packed), $"byte {c:X2} must be NaN"); continue; }
                Assert.True(BitConverter.SingleToInt32Bits(expect) == BitConverter.SingleToInt32Bits(gemv), $"GEMV byte {c:X2}: {gemv:R} != {expect:R}");
                Assert.True(BitConverter.SingleToInt32Bits(expect) == BitConverter.SingleToInt32Bits(packed), $"packed byte {c:X2}: {packed:R} != {expect:R}");
            }
        }
    }

    /// <summary>Every INT8 code -128..127 with odd row scales: GEMV and packed give exactly (float)q · scale[row].</summary>
    [Fact]
    public void Int8DequantMatchesDefinitionForEveryCode()
    {
        var q = new sbyte[2 * 256];
        for (int i = 0; i < 256; i++) { q[i] = (sbyte)(i - 128); q[256 + i] = (sbyte)(127 - i); }
        float[] s = [0.37f, 3.1e-3f];
        var w = Weight.FromInt8("w", q, s, 2, 256);
        for (int c = 0; c < 256; c++)
        {
            var x = new float[256];
            x[c] = 1f;
            var x4 = new float[4 * 256];
            for (int i = 0; i < 4; i++) x4[i * 256 + c] = 1f;
            var gemv = Run(x, w, 1);
            var small = Run(x4, w, 4);
            var xp = new float[Gemm.PackedMinRows * 256];
            for (int i = 0; i < Gemm.PackedMinRows; i++) xp[i * 256 + c] = 1f;
            var packed = Run(xp, w, Gemm.PackedMinRows);
            for (int r = 0; r < 2; r++)
            {
                float expect = q[r * 256 + c] * s[r] + 0f;
                Assert.True(BitConverter.SingleToInt32Bits(expect) == BitConverter.SingleToInt32Bits(gemv[r]), $"GEMV code {q[r * 256 + c]} row {r}");
                Assert.True(BitConverter.SingleToInt32Bits(expect) == BitConverter.SingleToInt32Bits(small[3 * 2 + r]), $"small-batch code {q[r * 256 + c]} row {r}");
                Assert.True(BitConverter.SingleToInt32Bits(expect) == BitConverter.SingleToInt32Bits(packed[5 * 2 + r]), $"packed code {q[r * 256 + c]} row {r}");
            }
        }
    }

    /// <summary>Shapes big enough to run in parallel: bitwise equal results for 1, 2 and 3 threads.</summary>
    [Theory]
    [MemberData(nameof(DTypesAll))]
    public void BitwiseIdenticalForAnyThreadCount(DType dt)
    {
        int saved = Parallelism.Threads;
        try
        {
            foreach (var (m, n, k) in new[] { (70, 300, 290), (2, 700, 300), (1, 1000, 130), (200, 520, 64), (40, 700, 300) })
            {
                var tw = Make(dt, n, k, m + n);
                var x = RandomX(m, k, k);
                var y0 = RandomX(m, n, 5);
                Parallelism.Threads = 1;
                var r1 = Run(x, tw.W, m);
                var a1 = Run(x, tw.W, m, y0);
                foreach (int t in new[] { 2, 3, 8 })
                {
                    Parallelism.Threads = t;
                    AssertBitwise(r1, Run(x, tw.W, m), $"{dt} [{m}x{n}x{k}] threads {t}");
                    AssertBitwise(a1, Run(x, tw.W, m, y0), $"{dt} accumulate [{m}x{n}x{k}] threads {t}");
                }
            }
        }
        finally { Parallelism.Threads = saved; }
    }

    /// <summary>
    /// Packed path (M &gt;= PackedMinRows): a row's result does not depend on the other rows of the batch, nor on
    /// its position.
    /// </summary>
    [Theory]
    [MemberData(nameof(DTypesAll))]
    public void PackedRowsAreBatchInvariant(DType dt)
    {
        int n = 150, k = 300, m = 300;
        var tw = Make(dt, n, k, 11);
        var x = RandomX(m, k, 12);
        var all = Run(x, tw.W, m);
        foreach (var (start, len) in new[] { (0, 65), (5, 66), (37, 77), (100, 130), (190, 110), (3, 297) })
        {
            var part = x.AsSpan(start * k, len * k).ToArray();
            var y = Run(part, tw.W, len);
            AssertBitwise(all.AsSpan(start * n, len * n).ToArray(), y, $"{dt} rows {start}..{start + len} of {m}");
        }
    }

    /// <summary>
    /// GEMV-order path (M &lt;= SmallMaxRows: decode, MTP verification, batched serving, small expert groups): a
    /// row's result is bitwise the one it gets alone (M = 1), whatever M, its position and the other rows, for every
    /// weight dtype and instruction set, with and without accumulation, for K with and without 16/8-wide tails.
    /// </summary>
    [Theory]
    [MemberData(nameof(DTypesAll))]
    public void SmallBatchRowsEqualSingleRows(DType dt)
    {
        var saved = Gemm.Isa;
        try
        {
            foreach (var (n, k) in new[] { (37, 203), (70, 256), (9, 24) })
            {
                var tw = Make(dt, n, k, 3 + n);
                int mMax = Gemm.SmallMaxRows;
                var x = RandomX(mMax, k, 4);
                var y0 = RandomX(mMax, n, 5);
                foreach (var isa in new[] { Gemm.KernelIsa.Scalar, Gemm.KernelIsa.Avx2, Gemm.KernelIsa.Avx512 })
                {
                    if (isa != Gemm.KernelIsa.Scalar && !System.Runtime.Intrinsics.X86.Avx2.IsSupported) continue;
                    Gemm.Isa = isa;
                    var single = new float[mMax * n];
                    var singleAcc = new float[mMax * n];
                    for (int i = 0; i < mMax; i++)
                    {
                        Run(x.AsSpan(i * k, k).ToArray(), tw.W, 1).CopyTo(single, i * n);
                        Run(x.AsSpan(i * k, k).ToArray(), tw.W, 1, y0.AsSpan(i * n, n).ToArray()).CopyTo(singleAcc, i * n);
                    }
                    foreach (var (start, m) in new[] { (0, 2), (1, 3), (5, 4), (3, 5), (10, 17), (0, mMax) })
                    {
                        var xs = x.AsSpan(start * k, m * k).ToArray();
                        AssertBitwise(single.AsSpan(start * n, m * n).ToArray(), Run(xs, tw.W, m), $"{dt} {isa} rows {start}..{start + m} [{n}x{k}]");
                        AssertBitwise(singleAcc.AsSpan(start * n, m * n).ToArray(), Run(xs, tw.W, m, y0.AsSpan(start * n, m * n).ToArray()),
                            $"{dt} {isa} accumulate rows {start}..{start + m} [{n}x{k}]");
                    }
                }
            }
        }
        finally { Gemm.Isa = saved; }
    }

    /// <summary>A view of a weight's first rows (the MTP draft's lm_head) gives those rows' bits, scales included.</summary>
    [Theory]
    [MemberData(nameof(DTypesAll))]
    public void FirstRowsViewGivesTheFirstRowsBits(DType dt)
    {
        var tw = Make(dt, 70, 203, 21, blockRows: 16, blockCols: 32);
        foreach (int m in new[] { 1, 2 })
        {
            var x = RandomX(m, 203, 22);
            var full = Run(x, tw.W, m);
            foreach (int rows in new[] { 1, 33, 70 })
            {
                var view = tw.W.FirstRows(rows);
                Assert.Equal(rows, view.Rows);
                var got = Run(x, view, m);
                for (int i = 0; i < m; i++) AssertBitwise(full.AsSpan(i * 70, rows).ToArray(), got.AsSpan(i * rows, rows).ToArray(), $"{dt} m={m} first {rows} rows");
            }
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => tw.W.FirstRows(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => tw.W.FirstRows(71));
    }

    /// <summary>Scalar, AVX2 and (emulated if need be) AVX-512 kernels produce the same bits.</summary>
    [Theory]
    [MemberData(nameof(DTypesAll))]
    public void KernelInstructionSetsAgree(DType dt)
    {
        var saved = Gemm.Isa;
        try
        {
            foreach (var (m, n, k) in new[] { (1, 33, 300), (3, 20, 41), (4, 33, 40), (13, 70, 300), (25, 40, 24), (70, 40, 300) })
            {
                var tw = Make(dt, n, k, m * 3 + n);
                var x = RandomX(m, k, 9);
                var y0 = RandomX(m, n, 10);
                Gemm.Isa = Gemm.KernelIsa.Scalar;
                var rs = Run(x, tw.W, m);
                var ra = Run(x, tw.W, m, y0);
                foreach (var isa in new[] { Gemm.KernelIsa.Avx2, Gemm.KernelIsa.Avx512 })
                {
                    if (!System.Runtime.Intrinsics.X86.Avx2.IsSupported) continue;
                    Gemm.Isa = isa;
                    AssertBitwise(rs, Run(x, tw.W, m), $"{dt} [{m}x{n}x{k}] {isa}");
                    AssertBitwise(ra, Run(x, tw.W, m, y0), $"{dt} accumulate [{m}x{n}x{k}] {isa}");
                }
            }
        }
        finally { Gemm.Isa = saved; }
    }

    /// <summary>A pre-packed weight gives the bits of the on-the-fly packing, on every instruction set.</summary>
    [Theory]
    [MemberData(nameof(DTypesAll))]
    public void PrepackedWeightGivesTheSameBits(DType dt)
    {
        var saved = Gemm.Isa;
        try
        {
            foreach (var (m, n, k) in new[] { (70, 33, 300), (130, 70, 257), (65, 1, 1) })
            {
                var tw = Make(dt, n, k, m + n);
                var x = RandomX(m, k, 3);
                var y0 = RandomX(m, n, 4);
                foreach (var isa in new[] { Gemm.KernelIsa.Scalar, Gemm.KernelIsa.Avx2, Gemm.KernelIsa.Avx512 })
                {
                    if (isa != Gemm.KernelIsa.Scalar && !System.Runtime.Intrinsics.X86.Avx2.IsSupported) continue;
                    Gemm.Isa = isa;
                    tw.W.DropPrepacked();
                    var want = Run(x, tw.W, m);
                    var wantAcc = Run(x, tw.W, m, y0);
                    long bytes = tw.W.Prepack();
                    Assert.True(bytes >= 4L * n * k, $"{dt} {isa}: {bytes} bytes pre-packed");
                    AssertBitwise(want, Run(x, tw.W, m), $"{dt} prepacked [{m}x{n}x{k}] {isa}");
                    AssertBitwise(wantAcc, Run(x, tw.W, m, y0), $"{dt} prepacked accumulate [{m}x{n}x{k}] {isa}");
                }
                Gemm.Isa = Gemm.KernelIsa.Scalar; // a pre-packing for another panel width is ignored
                tw.W.DropPrepacked();
                var s = Run(x, tw.W, m);
                Gemm.Isa = saved;
                tw.W.Prepack();
                Gemm.Isa = saved == Gemm.KernelIsa.Avx512 ? Gemm.KernelIsa.Avx2 : Gemm.KernelIsa.Scalar;
                AssertBitwise(s, Run(x, tw.W, m), $"{dt} prepacked for another width [{m}x{n}x{k}]");
                tw.W.DropPrepacked();
            }
        }
        finally { Gemm.Isa = saved; }
    }

    [Fact]
    public void EmptyAndZeroDepth()
    {
        var w = Weight.FromFloats("w", [], 3, 0);
        var y = new float[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
        Gemm.MatMul([], w, y, 4, accumulate: true);
        Assert.Equal(12f, y[11]);
        Gemm.MatMul([], w, y, 4);
        Assert.All(y, v => Assert.Equal(0f, v));
        Gemm.MatMul([], Weight.FromFloats("w", new float[6], 3, 2), Span<float>.Empty, 0);
    }
}
