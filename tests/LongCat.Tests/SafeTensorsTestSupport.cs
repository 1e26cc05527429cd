using System.Text;
using LongCat.IO;

namespace LongCat.Tests;

/// <summary>Builds raw safetensors images (valid or not) and checks format errors, for the reader tests.</summary>
public static class St
{
    /// <summary>An image: 8-byte little-endian length prefix, the header bytes, then <paramref name="dataBytes"/> bytes of data.</summary>
    public static byte[] Image(byte[] header, int dataBytes, ulong? prefix = null)
    {
        var r = new byte[8 + header.Length + dataBytes];
        BitConverter.TryWriteBytes(r.AsSpan(0, 8), prefix ?? (ulong)header.Length);
        header.CopyTo(r, 8);
        for (int i = 0; i < dataBytes; i++) r[8 + header.Length + i] = (byte)(i * 7 + 1);
        return r;
    }

    public static byte[] Image(string header, int dataBytes, ulong? prefix = null) => Image(Encoding.UTF8.GetBytes(header), dataBytes, prefix);

    /// <summary>Writes <paramref name="bytes"/> to a new file <paramref name="name"/> in a fresh temp folder.</summary>
    public static string WriteTemp(byte[] bytes, string name = "model.safetensors")
    {
        var p = Path.Combine(Fixtures.NewTempDir(), name);
        File.WriteAllBytes(p, bytes);
        return p;
    }

    /// <summary>Asserts that <paramref name="act"/> throws <see cref="ModelFormatException"/> whose message contains every fragment.</summary>
    public static ModelFormatException Fails(Action act, params string[] fragments)
    {
        var e = Assert.Throws<ModelFormatException>(act);
        foreach (var f in fragments) Assert.Contains(f, e.Message);
        return e;
    }

    /// <summary>Opening <paramref name="path"/> must fail naming the file and every fragment.</summary>
    public static ModelFormatException OpenFails(string path, params string[] fragments) =>
        Fails(() => SafeTensorFile.Open(path).Dispose(), [path, .. fragments]);

    /// <summary>Writes the image to a file and expects both <see cref="SafeTensorFile.ParseHeader"/> and Open to fail.</summary>
    public static ModelFormatException BothFail(byte[] image, params string[] fragments)
    {
        Fails(() => SafeTensorFile.ParseHeader("mem.safetensors", image, image.Length), ["mem.safetensors", .. fragments]);
        return OpenFails(WriteTemp(image), fragments);
    }

    /// <summary>A small valid file from the writer: 'a' F32 [2, 3], 'b' I64 [4], 'c' BF16 [5].</summary>
    public static string WriteSmall(string? dir = null, string name = "model.safetensors")
    {
        var w = new SafeTensorsWriter();
        w.AddF32("a", [1, 2, 3, 4, 5, 6], 2, 3);
        w.AddI64("b", [10, -20, 30, long.MaxValue], 4);
        w.AddBF16("c", [1, -2, 0.5f, 0, 3], 5);
        var p = Path.Combine(dir ?? Fixtures.NewTempDir(), name);
        w.Save(p);
        return p;
    }

    /// <summary>Copies a fixture folder's config.json and model.safetensors to a fresh temp folder.</summary>
    public static string CopyFixture(string name)
    {
        var dst = Fixtures.NewTempDir();
        foreach (var f in new[] { "config.json", "model.safetensors" })
            File.Copy(Path.Combine(Fixtures.Reference(name), f), Path.Combine(dst, f));
        return dst;
    }

    /// <summary>
    /// Rewrites <paramref name="file"/> through the writer, keeping every tensor's bytes, except that
    /// <paramref name="edit"/> may replace (return a new tuple) or drop (return null) any of them.
    /// </summary>
    public static void Rewrite(string file, Func<string, DType, long[], byte[], (DType, long[], byte[])?> edit)
    {
        var w = new SafeTensorsWriter();
        using (var f = SafeTensorFile.Open(file))
        {
            foreach (var (k, v) in f.Metadata) w.Metadata[k] = v;
            foreach (var name in f.Tensors.Keys.Order(StringComparer.Ordinal))
            {
                var t = f.Tensor(name);
                if (edit(name, t.DType, t.Shape, t.Bytes.ToArray()) is { } e) w.AddRaw(name, e.Item1, e.Item2, e.Item3);
            }
        }
        w.Save(file);
    }
}
