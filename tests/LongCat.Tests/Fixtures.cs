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

    /// <summary>A new empty folder under this test process's own scratch folder (<see cref="RunTempRoot"/>).</summary>
    public static string NewTempDir()
    {
        var d = Path.Combine(RunTempRoot, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(d);
        return d;
    }

    /// <summary>
    /// The scratch folder of this test process, <c>$TMPDIR/longcat-tests/run-PID-…</c>: deleted when the process exits
    /// normally (a filtered run does; after a whole-suite run the test host is not always given the chance); whatever is
    /// left, the next run deletes (its PID is gone), and <c>.ci/run</c> deletes the lot when it ends. Checkpoints, prepared data and
    /// server logs of one run add up to hundreds of MB, so a machine that runs the tests often would otherwise fill up.
    /// </summary>
    public static string RunTempRoot => s_runTempRoot.Value;

    static readonly Lazy<string> s_runTempRoot = new(() =>
    {
        var parent = Path.Combine(Path.GetTempPath(), "longcat-tests");
        Directory.CreateDirectory(parent);
        if (Directory.Exists("/proc/self"))   // where a process's liveness can be read off /proc
        {
            foreach (var old in Directory.EnumerateDirectories(parent, "run-*"))
            {
                var parts = Path.GetFileName(old).Split('-');
                if (parts.Length >= 2 && int.TryParse(parts[1], out var pid) && pid != Environment.ProcessId && !Directory.Exists($"/proc/{pid}"))
                    TryDelete(old);
            }
        }
        var root = Path.Combine(parent, $"run-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(root);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => TryDelete(root);
        return root;
    });

    static void TryDelete(string dir)
    {
        // A child process still writing into it (a server or a training run on its way out) can make a recursive delete
        // fail half-way: try again a few times; what is left, the next run removes (its PID is gone by then).
        for (int attempt = 0; attempt < 5 && Directory.Exists(dir); attempt++)
        {
            try { Directory.Delete(dir, recursive: true); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { Thread.Sleep(200); }
        }
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
