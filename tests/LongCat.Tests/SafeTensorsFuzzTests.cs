using System.Text;
using System.Text.RegularExpressions;
using LongCat.IO;
using Xunit.Abstractions;

namespace LongCat.Tests;

/// <summary>
/// Fuzz-style test of the safetensors reader: a few thousand deterministic mutations of valid headers (from the
/// writer and from the fixtures) go to <see cref="SafeTensorFile.ParseHeader"/>, a subset as files to
/// <see cref="SafeTensorFile.Open"/>. Only <see cref="ModelFormatException"/> may escape; whatever is accepted
/// must lie inside the data section, and reading it must return exactly the file's bytes.
/// </summary>
public class SafeTensorsFuzzTests(ITestOutputHelper output)
{
    const int Iterations = 3000;
    const int OpenEvery = 8;     // every 8th mutation of a seed with its data at hand is also opened as a file
    const int Seed = 20240611;

    sealed record SeedImage(string Name, byte[] Header, long DataLength, byte[]? Data);

    static SeedImage FromBytes(string name, byte[] file, bool keepData)
    {
        var n = (int)BitConverter.ToUInt64(file, 0);
        return new SeedImage(name, file[8..(8 + n)], file.Length - 8 - n, keepData ? file[(8 + n)..] : null);
    }

    static SeedImage FromWriter(string name, Action<SafeTensorsWriter> fill)
    {
        var w = new SafeTensorsWriter();
        fill(w);
        var p = Path.Combine(Fixtures.NewTempDir(), "seed.safetensors");
        w.Save(p);
        return FromBytes(name, File.ReadAllBytes(p), keepData: true);
    }

    static List<SeedImage> Seeds()
    {
        var rnd = new Random(1);
        float[] F(int n) => Enumerable.Range(0, n).Select(_ => (float)(rnd.NextDouble() * 4 - 2)).ToArray();
        var seeds = new List<SeedImage>
        {
            FromWriter("writer-mixed", w =>
            {
                w.Metadata["format"] = "pt";
                w.Metadata["note"] = "fuzz seed \"quoted\" é";
                w.AddF32("f32", F(12), 3, 4);
                w.AddBF16("bf16", F(10), 10);
                w.AddI64("i64", [1, -2, long.MinValue, long.MaxValue], 2, 2);
                w.AddI32("i32", [5, 6, 7], 3);
                w.AddF32("scalar", [3.5f]);
                w.AddF32("empty", [], 0, 7);
                w.AddFp8Blocked("w.weight", "w.weight_scale_inv", F(20 * 9), 20, 9, 16, 4);
            }),
            FromWriter("writer-all-dtypes", w =>
            {
                foreach (var dt in Enum.GetValues<DType>())
                {
                    int size = DTypes.SizeOf(dt);
                    var bytes = new byte[6 * size];
                    rnd.NextBytes(bytes);
                    w.AddRaw("t_" + dt, dt, [2, 3], bytes);
                }
            }),
        };
        foreach (var (fixture, file, keep) in new[]
        {
            ("tiny", "expected.safetensors", true),
            ("small-fp8", "expected.safetensors", true),
            ("tiny-bf16", "model.safetensors", false),
            ("small-fp8", "model.safetensors", false),
        })
        {
            var path = Path.Combine(Fixtures.Reference(fixture), file);
            byte[] bytes;
            if (keep) bytes = File.ReadAllBytes(path);
            else
            {
                // Header only (the data stays on disk): ParseHeader needs the header bytes and the file length.
                using var fs = File.OpenRead(path);
                var pre = new byte[8];
                fs.ReadExactly(pre);
                int n = (int)BitConverter.ToUInt64(pre);
                bytes = new byte[8 + n];
                pre.CopyTo(bytes, 0);
                fs.ReadExactly(bytes, 8, n);
                seeds.Add(new SeedImage($"{fixture}/{file}", bytes[8..], fs.Length - 8 - n, null));
                continue;
            }
            seeds.Add(FromBytes($"{fixture}/{file}", bytes, keepData: true));
        }
        return seeds;
    }

    static readonly string[] Numbers =
    [
        "0", "1", "-1", "-0", "7", "8", "24", "00", "1.0", "1e2", "1e400", "-1e400", "0.5",
        "2147483647", "2147483648", "4294967296", "4294967295", "-2147483649",
        "9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
        "18446744073709551615", "18446744073709551616", "99999999999999999999999999999",
    ];

    static readonly string[] Tokens =
    [
        "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u", "\\ud800", "\\udc00", "\\u0000", "null", "true", "[]", "{}",
        "\"__metadata__\"", "\"dtype\":\"F32\"", "\"shape\":[]", "\"data_offsets\":[0,0]", " ", "\n", "\u00e9", "\uffff",
    ];

    static readonly string[] DtypeNames = [.. Enum.GetNames<DType>(), "F4", "f32", "", "U64", "F8_E5M2", "BF16 "];

    static readonly ulong[] Prefixes = [0, 1, 2, 7, 8, 100_000_000, 100_000_001, 1UL << 31, 1UL << 32, 1UL << 63, ulong.MaxValue];

    /// <summary>One mutation case: the header bytes, the length prefix and the total file length to claim.</summary>
    sealed class Case
    {
        public required List<byte> Header;
        public ulong Prefix;
        public long DataLength;
        public bool PrefixPinned;      // ChangePrefix chose a value: structural edits keep it
        public long Cut;               // bytes removed from the end of the file
        public readonly List<string> Log = [];
    }

    static readonly Regex NumberRe = new("-?[0-9]+");
    static readonly Regex EntryRe = new("\"[^\"]*\":\\{[^{}]*\\}");
    static readonly Regex DtypeRe = new("\"dtype\":\"([^\"]*)\"");
    static readonly Regex ShapeRe = new("\"shape\":\\[[^\\]]*\\]");

    static void Mutate(Case c, Random rnd, SeedImage seed)
    {
        var h = c.Header;
        int Pos() => h.Count == 0 ? 0 : rnd.Next(h.Count);
        int op = rnd.Next(11);
        string text = op is 4 or 5 or 6 or 9 or 10 ? Encoding.Latin1.GetString(h.ToArray()) : ""; // byte-for-byte, for searching
        switch (op)
        {
            case 0: { int p = Pos(); if (h.Count > 0) { h[p] ^= (byte)(1 << rnd.Next(8)); c.Log.Add($"flip@{p}"); } break; }
            case 1:
            {
                int p = Pos();
                byte[] pick = "{}[]\",:\\0123456789-e. "u8.ToArray().Concat(new byte[] { 0x00, 0xFF, 0xC3, 0x80, 0xED }).ToArray();
                if (h.Count > 0) { h[p] = rnd.Next(3) == 0 ? (byte)rnd.Next(256) : pick[rnd.Next(pick.Length)]; c.Log.Add($"set@{p}"); }
                break;
            }
            case 2:
            {
                int p = Pos(), n = Math.Min(h.Count - p, 1 + rnd.Next(rnd.Next(2) == 0 ? 4 : 64));
                if (n > 0) { h.RemoveRange(p, n); c.Log.Add($"del@{p}+{n}"); }
                break;
            }
            case 3:
            {
                int p = Pos();
                var tok = Tokens[rnd.Next(Tokens.Length)];
                h.InsertRange(p, Encoding.UTF8.GetBytes(tok));
                c.Log.Add($"ins@{p}'{tok}'");
                break;
            }
            case 4:
            case 5:
            {
                // Replace a number: with an interesting value, a neighbour of itself, or another number of the header.
                var nums = NumberRe.Matches(text);
                if (nums.Count == 0) break;
                var m = nums[rnd.Next(nums.Count)];
                string rep = rnd.Next(3) switch
                {
                    0 => Numbers[rnd.Next(Numbers.Length)],
                    1 => long.TryParse(m.Value, out var v) ? (v + rnd.Next(-9, 10)).ToString() : "0",
                    _ => nums[rnd.Next(nums.Count)].Value,
                };
                h.RemoveRange(m.Index, m.Length);
                h.InsertRange(m.Index, Encoding.ASCII.GetBytes(rep));
                c.Log.Add($"num@{m.Index}:{m.Value}->{rep}");
                break;
            }
            case 6:
            {
                // Duplicate a tensor entry: same name (duplicate key) or a new name (its bytes overlap the original).
                var entries = EntryRe.Matches(text);
                if (entries.Count == 0) break;
                var e = entries[rnd.Next(entries.Count)];
                var copy = rnd.Next(2) == 0 ? e.Value : "\"dup_" + rnd.Next(1000) + e.Value[1..];
                int at = rnd.Next(2) == 0 ? e.Index + e.Length : e.Index;
                var bytes = Encoding.Latin1.GetBytes(at == e.Index ? copy + "," : "," + copy);
                h.InsertRange(at, bytes);
                c.Log.Add($"dup@{e.Index}");
                break;
            }
            case 7:
            {
                c.PrefixPinned = true;
                c.Prefix = rnd.Next(4) switch
                {
                    0 => Prefixes[rnd.Next(Prefixes.Length)],
                    1 => (ulong)Math.Max(0, h.Count + rnd.Next(-16, 17)),
                    2 => (ulong)(h.Count + c.DataLength + rnd.Next(-2, 3)),
                    _ => (ulong)rnd.NextInt64(),
                };
                c.Log.Add($"prefix={c.Prefix}");
                break;
            }
            case 8:
            {
                c.Cut = rnd.Next(3) == 0 ? rnd.NextInt64(1, h.Count + c.DataLength + 9) : rnd.NextInt64(1, Math.Max(2, Math.Min(c.DataLength + 1, 64)));
                c.Log.Add($"cut={c.Cut}");
                break;
            }
            case 9:
            {
                var dts = DtypeRe.Matches(text);
                if (dts.Count == 0) break;
                var g = dts[rnd.Next(dts.Count)].Groups[1];
                var to = DtypeNames[rnd.Next(DtypeNames.Length)];
                h.RemoveRange(g.Index, g.Length);
                h.InsertRange(g.Index, Encoding.ASCII.GetBytes(to));
                c.Log.Add($"dtype@{g.Index}->{to}");
                break;
            }
            default:
            {
                // Swap two shapes (same-size swaps give valid files with other shapes; others a size mismatch).
                var shapes = ShapeRe.Matches(text);
                if (shapes.Count < 2) break;
                var a = shapes[rnd.Next(shapes.Count)];
                var b = shapes[rnd.Next(shapes.Count)];
                if (a.Index == b.Index) break;
                var (first, second) = a.Index < b.Index ? (a, b) : (b, a);
                h.RemoveRange(second.Index, second.Length);
                h.InsertRange(second.Index, Encoding.Latin1.GetBytes(first.Value));
                h.RemoveRange(first.Index, first.Length);
                h.InsertRange(first.Index, Encoding.Latin1.GetBytes(second.Value));
                c.Log.Add($"swapshape@{first.Index},{second.Index}");
                break;
            }
        }
        if (!c.PrefixPinned && rnd.Next(8) != 0) c.Prefix = (ulong)h.Count; // mostly keep the prefix consistent
        _ = seed;
    }

    /// <summary>Checks an accepted header: every tensor in the data section, sizes consistent, no overlaps.</summary>
    static void CheckAccepted(long dataStart, IReadOnlyDictionary<string, TensorInfo> tensors, ulong prefix, long fileLength, Func<string> where)
    {
        Assert.True(dataStart == 8 + (long)prefix, where());
        long dataLen = fileLength - dataStart;
        Assert.True(dataLen >= 0, where());
        foreach (var t in tensors.Values)
        {
            Assert.True(t.Begin >= 0 && t.Begin <= t.End && t.End <= dataLen, $"{where()}: '{t.Name}' [{t.Begin}, {t.End}) outside [0, {dataLen})");
            Assert.True(t.Shape.Length <= 8 && t.Shape.All(d => d >= 0), where());
            Assert.True(t.ByteLength == t.ElementCount * DTypes.SizeOf(t.DType), $"{where()}: '{t.Name}' size");
        }
        long end = 0;
        foreach (var t in tensors.Values.Where(t => t.ByteLength > 0).OrderBy(t => t.Begin))
        {
            Assert.True(t.Begin >= end, $"{where()}: '{t.Name}' overlaps");
            end = t.End;
        }
    }

    [Fact]
    public void MutatedHeadersNeverCrashOrReadOutOfRange()
    {
        var seeds = Seeds();
        var rnd = new Random(Seed);
        var file = Path.Combine(Fixtures.NewTempDir(), "fuzz.safetensors");
        int accepted = 0, rejected = 0, opened = 0, openAccepted = 0;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        for (int it = 0; it < Iterations; it++)
        {
            var seed = seeds[it % seeds.Count];
            var c = new Case { Header = [.. seed.Header], Prefix = (ulong)seed.Header.Length, DataLength = seed.DataLength };
            int nMut = 1 + rnd.Next(3);
            for (int k = 0; k < nMut; k++) Mutate(c, rnd, seed);

            long fileLength = 8 + c.Header.Count + c.DataLength - c.Cut;
            if (fileLength < 0) fileLength = 0;
            // ParseHeader gets the prefix and header bytes only (cut if the file is): reading past them would throw.
            var image = new byte[Math.Min(8 + c.Header.Count, fileLength)];
            var full = new byte[8 + c.Header.Count];
            BitConverter.TryWriteBytes(full.AsSpan(0, 8), c.Prefix);
            c.Header.CopyTo(full, 8);
            Array.Copy(full, image, image.Length);
            string Where() => $"iteration {it} ({seed.Name}: {string.Join(" ", c.Log)})";

            try
            {
                var (start, tensors, _) = SafeTensorFile.ParseHeader("fuzz.safetensors", image, fileLength);
                CheckAccepted(start, tensors, c.Prefix, fileLength, Where);
                accepted++;
            }
            catch (ModelFormatException e)
            {
                Assert.Contains("fuzz.safetensors", e.Message);
                rejected++;
            }
            catch (Exception e) when (e is not Xunit.Sdk.XunitException)
            {
                Assert.Fail($"{Where()}: {e.GetType().Name} escaped ParseHeader: {e.Message}");
            }

            if (seed.Data is null || it % OpenEvery != 0) continue;
            // The same case as a file on disk, data included.
            var bytes = new byte[fileLength];
            Array.Copy(full, bytes, Math.Min(full.Length, fileLength));
            if (fileLength > full.Length) Array.Copy(seed.Data, 0, bytes, full.Length, fileLength - full.Length);
            File.WriteAllBytes(file, bytes);
            opened++;
            try
            {
                using var f = SafeTensorFile.Open(file);
                long dataStart = 8 + (long)c.Prefix;
                CheckAccepted(dataStart, f.Tensors, c.Prefix, fileLength, Where);
                Assert.Equal(fileLength, f.FileLength);
                foreach (var name in f.Tensors.Keys)
                {
                    var t = f.Tensor(name);
                    // Reading through the mapping returns exactly the file's bytes for [begin, end).
                    Assert.True(t.Bytes.SequenceEqual(bytes.AsSpan((int)(dataStart + t.Info.Begin), (int)t.Info.ByteLength)), $"{Where()}: '{name}' bytes");
                    if (t.DType is DType.BOOL) continue;
                    if (DTypes.IsFloat(t.DType)) Assert.Equal(t.ElementCount, t.ToFloat32().Length);
                    else Assert.Equal(t.ElementCount, t.ToInt64().Length);
                }
                openAccepted++;
            }
            catch (ModelFormatException e)
            {
                Assert.Contains(file, e.Message);
            }
            catch (Exception e) when (e is not Xunit.Sdk.XunitException)
            {
                Assert.Fail($"{Where()}: {e.GetType().Name} escaped Open: {e.Message}");
            }
        }
        output.WriteLine($"{Iterations} mutations: {accepted} accepted, {rejected} rejected; {opened} opened as files, {openAccepted} accepted; {sw.ElapsedMilliseconds} ms");
        // The mutations must exercise both paths: many rejected, and enough accepted to check the bounds on.
        Assert.True(rejected >= Iterations / 2, $"only {rejected} rejected");
        Assert.True(accepted >= Iterations / 20, $"only {accepted} accepted");
        Assert.True(openAccepted >= 10, $"only {openAccepted} files accepted");
    }
}
