using LongCat.IO;

namespace LongCat.Tests;

/// <summary>Paths to the golden fixtures copied next to the test binaries (tests/fixtures, see its README).</summary>
public static class Fixtures
{
    public static string Root => Path.Combine(AppContext.BaseDirectory, "fixtures");
    public static string Reference(string name) => Path.Combine(Root, "reference", name);
    public static string Tokenizer(string name) => Path.Combine(Root, "tokenizers", name);
    public static readonly string[] ReferenceModels = ["tiny", "tiny-nozero", "tiny-bf16", "small-fp8"];

    /// <summary>The clone's root folder (the one holding LongCat.slnx), above the test binaries.</summary>
    public static string RepoRoot
    {
        get
        {
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "LongCat.slnx"))) return d.FullName;
            throw new DirectoryNotFoundException("repository root (LongCat.slnx) not found above the test binaries");
        }
    }

    public static string NewTempDir()
    {
        var d = Path.Combine(Path.GetTempPath(), "longcat-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(d);
        return d;
    }

    public static float MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(a.Length, b.Length);
        float m = 0;
        for (int i = 0; i < a.Length; i++)
        {
            float d = MathF.Abs(a[i] - b[i]);
            if (float.IsNaN(d)) return float.NaN;
            m = MathF.Max(m, d);
        }
        return m;
    }
}
