using System.Text.Json.Nodes;

namespace LongCat.Cli.Bench;

/// <summary>
/// The OpenBLAS sgemm reference: bench/openblas_gemm.py run by Debian's /usr/bin/python3 (numpy linked to OpenBLAS)
/// as a long-lived child process, so its repeats interleave with ours in the same run.
/// </summary>
public sealed class BlasReference : IDisposable
{
    const string Who = "OpenBLAS reference";
    readonly JsonLinesProcess _p;

    /// <summary>The script's first line: numpy / OpenBLAS version, kernel, threads.</summary>
    public JsonObject Info => _p.Info;

    /// <summary>"OpenBLAS 0.3.21 (Zen kernel, 2 threads)" or the like.</summary>
    public string Description { get; }

    BlasReference(JsonLinesProcess p)
    {
        _p = p;
        var info = p.Info;
        string blas = info["blas"]?.ToString() ?? "numpy BLAS";
        if (blas == "openblas") blas = "OpenBLAS";
        string ver = info["version"]?.ToString() ?? "";
        string kernel = info["kernel"] is { } kn ? $"{kn} kernel, " : "";
        Description = $"{blas} {ver} ({kernel}{info["blas_threads"] ?? info["threads"]} threads, numpy {info["numpy"]})".Replace("  ", " ");
    }

    /// <summary>Starts the reference, or returns null with a note saying why it is not available.</summary>
    public static BlasReference? TryStart(string python, string? script, int threads, out string? note)
    {
        note = null;
        script ??= JsonLinesProcess.FindBenchFile("openblas_gemm.py");
        if (script == null)
        {
            note = "bench/openblas_gemm.py not found (run from the repository, or pass --blas-script): no OpenBLAS reference";
            return null;
        }
        if (!File.Exists(python))
        {
            note = $"{python} not found: no OpenBLAS reference (apt-get install -y python3-numpy libopenblas0-pthread python3-threadpoolctl)";
            return null;
        }
        var p = JsonLinesProcess.TryStart(python, [script, "--serve", "--threads", threads.ToString(System.Globalization.CultureInfo.InvariantCulture)],
            new Dictionary<string, string>(), out var error);
        if (p == null)
        {
            note = error != null && error.Contains("numpy", StringComparison.Ordinal)
                ? $"numpy is not installed for {python} ({error}): no OpenBLAS reference (apt-get install -y python3-numpy libopenblas0-pthread)"
                : $"the OpenBLAS reference did not start ({error})";
            return null;
        }
        var r = new BlasReference(p);
        if (p.Info["blas"]?.ToString() != "openblas")
            note = $"numpy's BLAS is {p.Info["blas"]?.ToString() ?? "unknown"}, not OpenBLAS (apt-get install -y libopenblas0-pthread python3-threadpoolctl); ratios are against it";
        return r;
    }

    /// <summary>Asks the reference to allocate x [m, k] and W [n, k]; <see cref="EndPrepare"/> waits for it.</summary>
    public void BeginPrepare(int m, int n, int k) => _p.Send(new JsonObject { ["op"] = "prepare", ["m"] = m, ["n"] = n, ["k"] = k });

    public void EndPrepare() => _p.Read(Who);

    /// <summary>Runs np.matmul(x, W.T) for at least <paramref name="seconds"/>; returns GFLOP/s.</summary>
    public double Run(double seconds) => _p.Call(new JsonObject { ["op"] = "run", ["seconds"] = seconds }, Who)["gflops"]!.GetValue<double>();

    /// <summary>The same layer's backward GEMMs: "dx" (dy @ W) or "dw" (dy.T @ x); GFLOP/s.</summary>
    public double RunGrad(string variant, double seconds) =>
        _p.Call(new JsonObject { ["op"] = "run", ["seconds"] = seconds, ["variant"] = variant }, Who)["gflops"]!.GetValue<double>();

    /// <summary>numpy's single-threaded sum over a large array (a memory read bandwidth probe), GB/s.</summary>
    public double Bandwidth(int mib, double seconds) =>
        _p.Call(new JsonObject { ["op"] = "bandwidth", ["mib"] = mib, ["seconds"] = seconds }, Who)["gbps"]!.GetValue<double>();

    public void Dispose() => _p.Dispose();

    /// <summary>
    /// The machine's F32 peak for MFU: OpenBLAS sgemm 2048³ on <paramref name="threads"/> threads, measured now (1 s
    /// of warm-up, then the best of 3 runs of 0.5 s). NaN with <paramref name="note"/> saying why when the reference
    /// cannot run (then no MFU is printed).
    /// </summary>
    public static double MeasurePeak(int threads, out string description, out string? note)
    {
        description = "";
        using var blas = TryStart("/usr/bin/python3", null, threads, out note);
        if (blas == null) return double.NaN;
        blas.BeginPrepare(2048, 2048, 2048);
        blas.EndPrepare();
        blas.Run(1.0);
        double best = 0;
        for (int i = 0; i < 3; i++) best = Math.Max(best, blas.Run(0.5));
        description = blas.Description;
        return best;
    }
}
