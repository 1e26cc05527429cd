using System.Diagnostics;
using System.Text.Json.Nodes;

namespace LongCat.Cli.Bench;

/// <summary>
/// The OpenBLAS sgemm reference: bench/openblas_gemm.py run by Debian's /usr/bin/python3 (numpy linked to OpenBLAS)
/// as a long-lived child process, so its repeats interleave with ours in the same run.
/// </summary>
public sealed class BlasReference : IDisposable
{
    readonly Process _p;

    /// <summary>The script's first line: numpy / OpenBLAS version, kernel, threads.</summary>
    public JsonObject Info { get; }

    /// <summary>"OpenBLAS 0.3.21 (Zen kernel, 2 threads)" or the like.</summary>
    public string Description { get; }

    BlasReference(Process p, JsonObject info)
    {
        _p = p;
        Info = info;
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
        script ??= FindScript();
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
        var psi = new ProcessStartInfo(python)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(script);
        psi.ArgumentList.Add("--serve");
        psi.ArgumentList.Add("--threads");
        psi.ArgumentList.Add(threads.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Process p;
        try { p = Process.Start(psi) ?? throw new IOException("no process"); }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or IOException)
        {
            note = $"could not start {python}: {e.Message}: no OpenBLAS reference";
            return null;
        }
        var stderr = new System.Text.StringBuilder();
        p.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (stderr) stderr.AppendLine(e.Data); };
        p.BeginErrorReadLine();
        string? line = p.StandardOutput.ReadLine();
        if (line == null || JsonNode.Parse(line) is not JsonObject info)
        {
            p.WaitForExit(5000);
            string err;
            lock (stderr) err = stderr.ToString().Trim();
            string last = err.Split('\n').LastOrDefault()?.Trim() ?? "";
            note = last.Contains("numpy", StringComparison.Ordinal)
                ? $"numpy is not installed for {python} ({last}): no OpenBLAS reference (apt-get install -y python3-numpy libopenblas0-pthread)"
                : $"the OpenBLAS reference did not start ({(last.Length > 0 ? last : "no output")})";
            try { p.Kill(); } catch (InvalidOperationException) { }
            p.Dispose();
            return null;
        }
        var r = new BlasReference(p, info);
        if (info["blas"]?.ToString() != "openblas")
            note = $"numpy's BLAS is {info["blas"]?.ToString() ?? "unknown"}, not OpenBLAS (apt-get install -y libopenblas0-pthread python3-threadpoolctl); ratios are against it";
        return r;
    }

    static string? FindScript()
    {
        foreach (var start in new[] { AppContext.BaseDirectory, Environment.CurrentDirectory })
        {
            for (var d = new DirectoryInfo(start); d != null; d = d.Parent)
            {
                var f = Path.Combine(d.FullName, "bench", "openblas_gemm.py");
                if (File.Exists(f)) return f;
            }
        }
        return null;
    }

    JsonObject Call(JsonObject req)
    {
        _p.StandardInput.WriteLine(req.ToJsonString());
        _p.StandardInput.Flush();
        return Read();
    }

    JsonObject Read()
    {
        var line = _p.StandardOutput.ReadLine() ?? throw new IOException("the OpenBLAS reference process exited");
        var o = JsonNode.Parse(line) as JsonObject ?? throw new IOException($"bad reply from the OpenBLAS reference: {line}");
        if (o["error"] is { } e) throw new IOException($"OpenBLAS reference: {e}");
        return o;
    }

    /// <summary>Asks the reference to allocate x [m, k] and W [n, k]; <see cref="EndPrepare"/> waits for it.</summary>
    public void BeginPrepare(int m, int n, int k)
    {
        _p.StandardInput.WriteLine(new JsonObject { ["op"] = "prepare", ["m"] = m, ["n"] = n, ["k"] = k }.ToJsonString());
        _p.StandardInput.Flush();
    }

    public void EndPrepare() => Read();

    /// <summary>Runs np.matmul(x, W.T) for at least <paramref name="seconds"/>; returns GFLOP/s.</summary>
    public double Run(double seconds) => Call(new JsonObject { ["op"] = "run", ["seconds"] = seconds })["gflops"]!.GetValue<double>();

    /// <summary>The same layer's backward GEMMs: "dx" (dy @ W) or "dw" (dy.T @ x); GFLOP/s.</summary>
    public double RunGrad(string variant, double seconds) =>
        Call(new JsonObject { ["op"] = "run", ["seconds"] = seconds, ["variant"] = variant })["gflops"]!.GetValue<double>();

    /// <summary>numpy's single-threaded sum over a large array (a memory read bandwidth probe), GB/s.</summary>
    public double Bandwidth(int mib, double seconds) =>
        Call(new JsonObject { ["op"] = "bandwidth", ["mib"] = mib, ["seconds"] = seconds })["gbps"]!.GetValue<double>();

    public void Dispose()
    {
        try
        {
            _p.StandardInput.WriteLine("{\"op\": \"quit\"}");
            _p.StandardInput.Flush();
            if (!_p.WaitForExit(3000)) _p.Kill();
        }
        catch (Exception e) when (e is IOException or InvalidOperationException) { }
        _p.Dispose();
    }
}
