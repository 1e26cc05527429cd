using LongCat.IO;

namespace LongCat.Tests;

/// <summary>Paths to the golden fixtures copied next to the test binaries (tests/fixtures, see its README).</summary>
public static class Fixtures
{
    public static string Root => Path.Combine(AppContext.BaseDirectory, "fixtures");
    public static string Reference(string name) => Path.Combine(Root, "reference", name);
    public static string Tokenizer(string name) => Path.Combine(Root, "tokenizers", name);
    public static readonly string[] ReferenceModels = ["tiny", "tiny-nozero", "tiny-bf16", "small-fp8"];

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
