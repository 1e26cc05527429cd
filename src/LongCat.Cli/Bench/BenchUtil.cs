using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using LongCat.IO;
using LongCat.Kernels;

namespace LongCat.Cli.Bench;

/// <summary>Timing, statistics and synthetic operands shared by the benchmarks.</summary>
public static unsafe class BenchUtil
{
    /// <summary>Runs <paramref name="call"/> back to back for at least <paramref name="seconds"/> (at least once); returns calls per second.</summary>
    public static double CallsPerSecond(Action call, double seconds)
    {
        long t0 = Stopwatch.GetTimestamp();
        long end = t0 + (long)(seconds * Stopwatch.Frequency);
        int calls = 0;
        long t;
        do { call(); calls++; t = Stopwatch.GetTimestamp(); } while (t < end);
        return calls * (double)Stopwatch.Frequency / (t - t0);
    }

    public static double Median(IEnumerable<double> values)
    {
        var v = values.Where(d => !double.IsNaN(d)).OrderBy(d => d).ToArray();
        if (v.Length == 0) return double.NaN;
        return v.Length % 2 == 1 ? v[v.Length / 2] : 0.5 * (v[v.Length / 2 - 1] + v[v.Length / 2]);
    }

    public static string F(double v, int decimals = 1) =>
        double.IsNaN(v) ? "-" : v.ToString("F" + decimals.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);

    /// <summary>Compact JSON without escaping '+' and the like (the output is not embedded in HTML).</summary>
    public static readonly System.Text.Json.JsonSerializerOptions JsonOptions = new()
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>JSON number or null.</summary>
    public static double? J(double v, int decimals = 2) => double.IsNaN(v) || double.IsInfinity(v) ? null : Math.Round(v, decimals);

    /// <summary>Deterministic uniform floats in [-a, a) (xorshift per row block; fast enough for GB-sized operands).</summary>
    public static void FillUniform(Span<float> dst, float a, ulong seed)
    {
        ulong s = seed * 0x9E3779B97F4A7C15UL + 0x632BE59BD9B4E019UL;
        for (int i = 0; i < dst.Length; i++)
        {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            dst[i] = ((int)(s >> 40) * (1f / (1 << 23)) - 1f) * a;
        }
    }

    /// <summary>A random weight [n, k] of the given dtype, owning pinned storage. FP8 gets 128×128 block scales.</summary>
    public static Weight RandomWeight(DType dt, int n, int k, ulong seed)
    {
        long count = (long)n * k;
        const int rowsPerChunk = 64;
        int chunks = (n + rowsPerChunk - 1) / rowsPerChunk;
        switch (dt)
        {
            case DType.F32:
                {
                    var a = GC.AllocateUninitializedArray<float>(checked((int)count), pinned: true);
                    Parallel.For(0, chunks, c =>
                    {
                        int r0 = c * rowsPerChunk, r1 = Math.Min(n, r0 + rowsPerChunk);
                        FillUniform(a.AsSpan(r0 * k, (r1 - r0) * k), 0.05f, seed + (ulong)c);
                    });
                    return new Weight("bench.f32", DType.F32, n, k, (byte*)Marshal.UnsafeAddrOfPinnedArrayElement(a, 0), owner: a);
                }
            case DType.BF16:
            case DType.F16:
                {
                    var a = GC.AllocateUninitializedArray<ushort>(checked((int)count), pinned: true);
                    Parallel.For(0, chunks, c =>
                    {
                        int r0 = c * rowsPerChunk, r1 = Math.Min(n, r0 + rowsPerChunk);
                        var tmp = new float[k];
                        for (int r = r0; r < r1; r++)
                        {
                            FillUniform(tmp, 0.05f, seed + (ulong)r * 31);
                            for (int i = 0; i < k; i++)
                                a[(long)r * k + i] = dt == DType.BF16 ? NumberFormats.F32ToBF16(tmp[i]) : BitConverter.HalfToUInt16Bits((Half)tmp[i]);
                        }
                    });
                    return new Weight($"bench.{dt}", dt, n, k, (byte*)Marshal.UnsafeAddrOfPinnedArrayElement(a, 0), owner: a);
                }
            case DType.F8_E4M3:
                {
                    var q = GC.AllocateUninitializedArray<byte>(checked((int)count), pinned: true);
                    int sr = (n + 127) / 128, sc = (k + 127) / 128;
                    var scales = GC.AllocateUninitializedArray<float>(sr * sc, pinned: true);
                    FillUniform(scales, 1f, seed);
                    for (int i = 0; i < scales.Length; i++) scales[i] = 1e-4f * (1.5f + scales[i]);
                    Parallel.For(0, chunks, c =>
                    {
                        int r0 = c * rowsPerChunk, r1 = Math.Min(n, r0 + rowsPerChunk);
                        var tmp = new float[k];
                        for (int r = r0; r < r1; r++)
                        {
                            FillUniform(tmp, 448f, seed + (ulong)r * 31);
                            for (int i = 0; i < k; i++) q[(long)r * k + i] = Fp8Code(tmp[i]);
                        }
                    });
                    return new Weight("bench.fp8", DType.F8_E4M3, n, k, (byte*)Marshal.UnsafeAddrOfPinnedArrayElement(q, 0),
                        (float*)Marshal.UnsafeAddrOfPinnedArrayElement(scales, 0), 128, 128, owner: (q, scales));
                }
            case DType.I8:
                {
                    var q = GC.AllocateUninitializedArray<sbyte>(checked((int)count), pinned: true);
                    var scales = GC.AllocateUninitializedArray<float>(n, pinned: true);
                    FillUniform(scales, 1f, seed);
                    for (int i = 0; i < n; i++) scales[i] = 4e-4f * (1.5f + scales[i]);
                    Parallel.For(0, chunks, c =>
                    {
                        int r0 = c * rowsPerChunk, r1 = Math.Min(n, r0 + rowsPerChunk);
                        var tmp = new float[k];
                        for (int r = r0; r < r1; r++)
                        {
                            FillUniform(tmp, 127f, seed + (ulong)r * 31);
                            for (int i = 0; i < k; i++) q[(long)r * k + i] = (sbyte)MathF.Round(tmp[i]);
                        }
                    });
                    return Weight.FromInt8("bench.i8", q, scales, n, k);
                }
            default:
                throw new ArgumentException($"no random weights for {dt}");
        }
    }

    /// <summary>
    /// An E4M3 code for v in (-448, 448), mantissa truncated (cheap; any valid code will do for timing). Values
    /// uniform in ±448 give realistic codes: like quantized weights, almost none is subnormal (subnormal codes
    /// decode to denormal floats, which this class of CPU multiplies slowly).
    /// </summary>
    static byte Fp8Code(float v)
    {
        uint u = BitConverter.SingleToUInt32Bits(v);
        byte sign = (byte)((u >> 24) & 0x80);
        float a = Math.Abs(v);
        if (a < 1f / 64) return (byte)(sign | (int)(a * 512));   // subnormal: m · 2^-9
        int e = (int)((u >> 23) & 0xFF) - 127 + 7, m = (int)((u >> 20) & 7);
        if (e > 15 || (e == 15 && m == 7)) { e = 15; m = 6; }    // 448, never the NaN code
        return (byte)(sign | e << 3 | m);
    }

    /// <summary>Memory read bandwidth with the kernel threads: sum over a large array in 1 MiB chunks, GB/s.</summary>
    public static double ReadBandwidth(int mib, double seconds)
    {
        var a = GC.AllocateUninitializedArray<float>(mib * (1 << 18));
        a.AsSpan().Fill(1f);
        const int chunk = 1 << 18;
        int chunks = a.Length / chunk;
        var partial = new float[chunks];
        void Pass() => Parallelism.For(chunks, c => partial[c] = System.Numerics.Tensors.TensorPrimitives.Sum(a.AsSpan(c * chunk, chunk)));
        Pass();
        return CallsPerSecond(Pass, seconds) * a.Length * 4.0 / 1e9;
    }
}
