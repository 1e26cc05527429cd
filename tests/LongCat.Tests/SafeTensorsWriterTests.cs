using System.Runtime.InteropServices;
using System.Text;
using LongCat.IO;

namespace LongCat.Tests;

/// <summary>The writer: round trips per dtype, block-scaled FP8, metadata, alignment, atomic save, argument checks.</summary>
public class SafeTensorsWriterTests
{
    static string Save(SafeTensorsWriter w)
    {
        var p = Path.Combine(Fixtures.NewTempDir(), "t.safetensors");
        w.Save(p);
        return p;
    }

    [Fact]
    public void F32RoundTripIsBitwise()
    {
        float[] v = [0f, -0f, 1.5f, -2.25f, float.Epsilon, -float.Epsilon, float.MaxValue, float.MinValue,
                     float.PositiveInfinity, float.NegativeInfinity, BitConverter.UInt32BitsToSingle(0x7FC12345), 1e-40f];
        var w = new SafeTensorsWriter();
        w.AddF32("v", v, 3, 4);
        using var f = SafeTensorFile.Open(Save(w));
        var t = f.Tensor("v");
        Assert.Equal(DType.F32, t.DType);
        Assert.Equal([3L, 4], t.Shape);
        Assert.Equal(MemoryMarshal.AsBytes(v.AsSpan()).ToArray(), t.Bytes.ToArray());
        Assert.Equal(v.Select(BitConverter.SingleToUInt32Bits), t.ToFloat32().Select(BitConverter.SingleToUInt32Bits));
    }

    /// <summary>BF16 round-to-nearest-even written independently of NumberFormats: compare the dropped half with 0x8000.</summary>
    static ushort RefBf16(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        uint hi = u >> 16, lo = u & 0xFFFF;
        if (lo > 0x8000 || (lo == 0x8000 && (hi & 1) == 1)) hi++;
        return (ushort)hi;
    }

    [Fact]
    public void Bf16RoundTripRoundsToNearestEven()
    {
        var rnd = new Random(3);
        var v = new List<float> { 1f, -0f, 0f, float.PositiveInfinity, float.NegativeInfinity, float.NaN, BitConverter.UInt32BitsToSingle(0x7F800001) };
        // Exact ties (low half 0x8000) on even and odd high halves, plus their neighbours, plus random values.
        foreach (uint hi in new uint[] { 0x3F80, 0x3F81, 0xBF80, 0xBF81, 0x0000, 0x0001, 0x7F7F })
            foreach (uint lo in new uint[] { 0x7FFF, 0x8000, 0x8001 })
                v.Add(BitConverter.UInt32BitsToSingle(hi << 16 | lo));
        for (int i = 0; i < 1000; i++) v.Add(BitConverter.UInt32BitsToSingle((uint)rnd.NextInt64(0, 1L << 32)));
        var w = new SafeTensorsWriter();
        w.AddBF16("v", v.ToArray(), v.Count);
        using var f = SafeTensorFile.Open(Save(w));
        var t = f.Tensor("v");
        Assert.Equal(DType.BF16, t.DType);
        var stored = t.AsSpan<ushort>().ToArray();
        var back = t.ToFloat32();
        for (int i = 0; i < v.Count; i++)
        {
            if (float.IsNaN(v[i]))
            {
                Assert.True(float.IsNaN(back[i]), $"NaN #{i} became {back[i]}");
                continue;
            }
            Assert.True(RefBf16(v[i]) == stored[i], $"#{i} {v[i]:R}: 0x{stored[i]:X4}, expected 0x{RefBf16(v[i]):X4}");
            Assert.Equal((uint)stored[i] << 16, BitConverter.SingleToUInt32Bits(back[i])); // widening is exact
        }
    }

    [Fact]
    public void IntegerRoundTrips()
    {
        long[] l = [0, 1, -1, long.MinValue, long.MaxValue, 131071];
        int[] i = [0, -1, int.MinValue, int.MaxValue];
        var w = new SafeTensorsWriter();
        w.AddI64("l", l, 2, 3);
        w.AddI32("i", i, 4);
        using var f = SafeTensorFile.Open(Save(w));
        Assert.Equal(DType.I64, f.Tensor("l").DType);
        Assert.Equal([2L, 3], f.Tensor("l").Shape);
        Assert.Equal(l, f.Tensor("l").ToInt64());
        Assert.Equal(DType.I32, f.Tensor("i").DType);
        Assert.Equal(i.Select(x => (long)x), f.Tensor("i").ToInt64());
    }

    [Fact]
    public void AddFloatWritesF32AndBf16Only()
    {
        var w = new SafeTensorsWriter();
        w.AddFloat("a", DType.F32, [1.25f], 1);
        w.AddFloat("b", DType.BF16, [1.25f], 1);
        Assert.Throws<ArgumentException>(() => w.AddFloat("c", DType.F16, [1f], 1));
        using var f = SafeTensorFile.Open(Save(w));
        Assert.Equal(DType.F32, f.Tensor("a").DType);
        Assert.Equal(DType.BF16, f.Tensor("b").DType);
        Assert.Equal([1.25f], f.Tensor("b").ToFloat32());
    }

    [Theory]
    [InlineData(200, 300, 128, 128)] // partial edge blocks in both directions: scales [2, 3]
    [InlineData(128, 256, 128, 128)] // exact blocks
    [InlineData(1, 1, 128, 128)]
    [InlineData(70, 33, 16, 8)]
    public void Fp8BlockedRoundTrip(int rows, int cols, int br, int bc)
    {
        var rnd = new Random(rows * 1000 + cols);
        var wts = new float[rows * cols];
        for (int k = 0; k < wts.Length; k++) wts[k] = (float)((rnd.NextDouble() * 2 - 1) * Math.Pow(10, rnd.Next(-3, 2)));
        // One block entirely zero (scale must then be 1 and every code 0), if there is more than one block.
        int sr = (rows + br - 1) / br, sc = (cols + bc - 1) / bc;
        if (sr * sc > 1)
            for (int r = 0; r < Math.Min(br, rows); r++)
                for (int c = bc; c < Math.Min(2 * bc, cols); c++) wts[r * cols + c] = 0;
        var w = new SafeTensorsWriter();
        w.AddFp8Blocked("m.weight", "m.weight_scale_inv", wts, rows, cols, br, bc);
        using var f = SafeTensorFile.Open(Save(w));
        var q = f.Tensor("m.weight");
        var s = f.Tensor("m.weight_scale_inv");
        Assert.Equal(DType.F8_E4M3, q.DType);
        Assert.Equal([(long)rows, cols], q.Shape);
        Assert.Equal(DType.F32, s.DType);
        Assert.Equal([(long)sr, sc], s.Shape);
        var codes = q.Bytes.ToArray();
        var scales = s.ToFloat32();
        var decoded = q.ToFloat32();
        for (int bi = 0; bi < sr; bi++)
            for (int bj = 0; bj < sc; bj++)
            {
                float amax = 0;
                for (int r = bi * br; r < Math.Min(rows, (bi + 1) * br); r++)
                    for (int c = bj * bc; c < Math.Min(cols, (bj + 1) * bc); c++) amax = MathF.Max(amax, MathF.Abs(wts[r * cols + c]));
                float scale = scales[bi * sc + bj];
                Assert.Equal(amax > 0 ? amax / 448f : 1f, scale);
                for (int r = bi * br; r < Math.Min(rows, (bi + 1) * br); r++)
                    for (int c = bj * bc; c < Math.Min(cols, (bj + 1) * bc); c++)
                    {
                        int k = r * cols + c;
                        Assert.Equal(NumberFormats.Fp8E4M3ToF32(codes[k]), decoded[k]);
                        Assert.False(float.IsNaN(decoded[k]));
                        double x = Math.Abs(wts[k] / (double)scale);
                        // Half an E4M3 ulp at x: 2^(e-3) for normals (e = floor(log2 x) >= -6), 2^-9 below.
                        double ulp = Math.Pow(2, Math.Max(Math.Floor(Math.Log2(Math.Max(x, 1e-30))), -6) - 3);
                        double err = Math.Abs(decoded[k] * (double)scale - wts[k]);
                        Assert.True(err <= 0.5 * ulp * scale * (1 + 1e-6) + 1e-12 * scale,
                            $"[{r}, {c}] w={wts[k]:R} scale={scale:R} code=0x{codes[k]:X2} err={err:E3} > half ulp {0.5 * ulp * scale:E3}");
                        if (amax == 0) Assert.Equal(0, codes[k]);
                    }
            }
    }

    [Fact]
    public void MetadataRoundTrips()
    {
        var w = new SafeTensorsWriter();
        w.Metadata["format"] = "pt";
        w.Metadata["quote\"and\\back"] = "line\nbreak, <html> & + 'single' é 日本 \U0001F600";
        w.Metadata[""] = "";
        w.AddF32("x", [1f], 1);
        using var f = SafeTensorFile.Open(Save(w));
        Assert.Equal(w.Metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal), f.Metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal));
    }

    [Fact]
    public void NoTensorsIsAValidFile()
    {
        using var f = SafeTensorFile.Open(Save(new SafeTensorsWriter()));
        Assert.Empty(f.Tensors);
    }

    [Fact]
    public void DataSectionIsEightByteAligned()
    {
        // Names of 1..16 characters cover every header length mod 8.
        for (int n = 1; n <= 16; n++)
        {
            var w = new SafeTensorsWriter();
            w.AddF32(new string('n', n), [1, 2], 2);
            w.AddI64("i", [5], 1);
            var p = Save(w);
            var bytes = File.ReadAllBytes(p);
            long headerLen = (long)BitConverter.ToUInt64(bytes, 0);
            Assert.Equal(0, (8 + headerLen) % 8);
            var header = Encoding.UTF8.GetString(bytes, 8, (int)headerLen);
            Assert.EndsWith("}", header.TrimEnd(' '));          // padding is spaces after the JSON
            Assert.True(header.Length - header.TrimEnd(' ').Length < 8);
            Assert.Equal(8 + headerLen + 8 + 8, bytes.Length);   // data follows the padding directly
            using var f = SafeTensorFile.Open(p);
            Assert.Equal([5L], f.Tensor("i").ToInt64());
            unsafe { Assert.Equal(0, (long)f.Tensor("i").Data % 8); } // mapping is page aligned, so the data is too
        }
    }

    [Fact]
    public void SaveLeavesNoTempFileAndReplacesAnExistingFile()
    {
        var dir = Fixtures.NewTempDir();
        var p = Path.Combine(dir, "m.safetensors");
        var w1 = new SafeTensorsWriter();
        w1.AddF32("x", [1, 2, 3], 3);
        w1.Save(p);
        Assert.Equal(["m.safetensors"], Directory.GetFiles(dir).Select(Path.GetFileName));
        var w2 = new SafeTensorsWriter();
        w2.AddI32("y", [4], 1);
        w2.Save(p);
        Assert.Equal(["m.safetensors"], Directory.GetFiles(dir).Select(Path.GetFileName));
        using var f = SafeTensorFile.Open(p);
        Assert.Equal(["y"], f.Tensors.Keys);
    }

    [Fact]
    public void SaveCreatesMissingFolders()
    {
        var p = Path.Combine(Fixtures.NewTempDir(), "a", "b", "m.safetensors");
        var w = new SafeTensorsWriter();
        w.AddF32("x", [1], 1);
        w.Save(p);
        using var f = SafeTensorFile.Open(p);
        Assert.True(f.Contains("x"));
    }

    [Fact]
    public void FailedSaveLeavesNoTempFile()
    {
        var dir = Fixtures.NewTempDir();
        var target = Directory.CreateDirectory(Path.Combine(dir, "m.safetensors")).FullName; // a folder where the file should go
        var w = new SafeTensorsWriter();
        w.AddF32("x", [1], 1);
        Assert.ThrowsAny<IOException>(() => w.Save(target));
        Assert.Empty(Directory.GetFiles(dir));
        Assert.True(Directory.Exists(target));
    }

    [Fact]
    public void ReplacingAMappedFileKeepsTheOldMappingIntact()
    {
        if (OperatingSystem.IsWindows()) return; // rename over a mapped file is refused there
        var p = Path.Combine(Fixtures.NewTempDir(), "m.safetensors");
        var w1 = new SafeTensorsWriter();
        w1.AddF32("x", [1, 2, 3], 3);
        w1.Save(p);
        using var old = SafeTensorFile.Open(p);
        var w2 = new SafeTensorsWriter();
        w2.AddF32("x", [7, 8, 9, 10], 4);
        w2.Save(p);
        Assert.Equal([1f, 2, 3], old.Tensor("x").ToFloat32()); // the reader still sees a whole (old) file
        using var fresh = SafeTensorFile.Open(p);
        Assert.Equal([7f, 8, 9, 10], fresh.Tensor("x").ToFloat32());
    }

    [Fact]
    public void ConcurrentSavesToOnePathDoNotCollide()
    {
        // The temp name used to be per process only: two threads saving the same path shared it.
        var p = Path.Combine(Fixtures.NewTempDir(), "m.safetensors");
        // Dedicated threads (not the pool), 10 saves of 128 KB each, so that saves really overlap.
        var errors = new System.Collections.Concurrent.ConcurrentBag<Exception>();
        var threads = Enumerable.Range(0, 4).Select(i => new Thread(() =>
        {
            try
            {
                for (int k = 0; k < 10; k++)
                {
                    var w = new SafeTensorsWriter();
                    w.AddF32("x", Enumerable.Repeat((float)(i * 100 + k), 1 << 15).ToArray(), 1 << 15);
                    w.Save(p);
                }
            }
            catch (Exception e) { errors.Add(e); }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.Empty(errors);
        using var f = SafeTensorFile.Open(p);
        var x = f.Tensor("x").ToFloat32();
        Assert.All(x, v => Assert.Equal(x[0], v)); // one whole save won
        Assert.Equal(["m.safetensors"], Directory.GetFiles(Path.GetDirectoryName(p)!).Select(Path.GetFileName));
    }

    [Fact]
    public void BadArgumentsNameTheTensor()
    {
        var w = new SafeTensorsWriter();
        w.AddF32("x", [1], 1);
        Assert.Contains("'x'", Assert.Throws<ArgumentException>(() => w.AddF32("x", [1], 1)).Message);
        Assert.Contains("'y'", Assert.Throws<ArgumentException>(() => w.AddF32("y", [1, 2], 3)).Message);
        Assert.Contains("'z'", Assert.Throws<ArgumentException>(() => w.AddRaw("z", DType.F32, [-1, -4], new byte[16])).Message);
        Assert.Contains("'h'", Assert.Throws<ArgumentException>(() => w.AddRaw("h", DType.F32, [1L << 32, 1L << 32], new byte[4])).Message);
        Assert.Contains("__metadata__", Assert.Throws<ArgumentException>(() => w.AddF32("__metadata__", [1], 1)).Message);
        Assert.Equal(1, w.Count);
    }
}
