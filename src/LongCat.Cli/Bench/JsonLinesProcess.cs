using System.Diagnostics;
using System.Text.Json.Nodes;

namespace LongCat.Cli.Bench;

/// <summary>
/// A reference implementation run as a long-lived child process speaking one JSON object per line (request on stdin,
/// reply on stdout; the first line it prints is an "info" object), so that its repeats interleave with ours in the
/// same run. Used for the OpenBLAS sgemm reference and the PyTorch peer.
/// </summary>
public sealed class JsonLinesProcess : IDisposable
{
    readonly Process _p;

    /// <summary>The process's first line.</summary>
    public JsonObject Info { get; }

    JsonLinesProcess(Process p, JsonObject info)
    {
        _p = p;
        Info = info;
    }

    /// <summary>
    /// Starts <paramref name="program"/> with <paramref name="args"/> and extra environment; returns null and the
    /// last line of its stderr in <paramref name="error"/> when it does not start or prints no info line.
    /// </summary>
    public static JsonLinesProcess? TryStart(string program, IEnumerable<string> args, IReadOnlyDictionary<string, string> env, out string? error)
    {
        error = null;
        var psi = new ProcessStartInfo(program)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in env) psi.Environment[k] = v;
        Process p;
        try { p = Process.Start(psi) ?? throw new IOException("no process"); }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or IOException)
        {
            error = $"could not start {program}: {e.Message}";
            return null;
        }
        var stderr = new System.Text.StringBuilder();
        p.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (stderr) stderr.AppendLine(e.Data); };
        p.BeginErrorReadLine();
        string? line = p.StandardOutput.ReadLine();
        JsonObject? info = null;
        try { info = line == null ? null : JsonNode.Parse(line) as JsonObject; }
        catch (System.Text.Json.JsonException) { }
        if (info == null)
        {
            p.WaitForExit(5000);
            string err;
            lock (stderr) err = stderr.ToString().Trim();
            string last = err.Split('\n').LastOrDefault()?.Trim() ?? "";
            error = last.Length > 0 ? last : line ?? "no output";
            try { p.Kill(); } catch (InvalidOperationException) { }
            p.Dispose();
            return null;
        }
        return new JsonLinesProcess(p, info);
    }

    /// <summary>Sends one request without waiting for the reply (see <see cref="Read"/>).</summary>
    public void Send(JsonObject req)
    {
        _p.StandardInput.WriteLine(req.ToJsonString());
        _p.StandardInput.Flush();
    }

    /// <summary>Reads one reply; an "error" member becomes an <see cref="IOException"/> carrying it.</summary>
    public JsonObject Read(string who)
    {
        var line = _p.StandardOutput.ReadLine() ?? throw new IOException($"{who}: the process exited");
        var o = JsonNode.Parse(line) as JsonObject ?? throw new IOException($"{who}: bad reply {line}");
        if (o["error"] is { } e) throw new IOException($"{who}: {e}");
        return o;
    }

    public JsonObject Call(JsonObject req, string who)
    {
        Send(req);
        return Read(who);
    }

    public void Dispose()
    {
        try
        {
            _p.StandardInput.WriteLine("{\"op\": \"quit\"}");
            _p.StandardInput.Flush();
            if (!_p.WaitForExit(5000)) _p.Kill();
        }
        catch (Exception e) when (e is IOException or InvalidOperationException) { }
        _p.Dispose();
    }

    /// <summary>A file under bench/ of the repository, searched upward from the binaries and the working directory.</summary>
    public static string? FindBenchFile(params string[] relative)
    {
        foreach (var start in new[] { AppContext.BaseDirectory, Environment.CurrentDirectory })
        {
            for (var d = new DirectoryInfo(start); d != null; d = d.Parent)
            {
                var f = Path.Combine([d.FullName, "bench", .. relative]);
                if (File.Exists(f)) return f;
            }
        }
        return null;
    }
}
