using System.Diagnostics;

namespace LongCat.Tests;

/// <summary>Runs the real `longcat` CLI (longcat.dll next to the tests) in a child process.</summary>
public static class CliProcess
{
    public static (int Exit, string Out, string Err) Run(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add("exec");
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "longcat.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var so = p.StandardOutput.ReadToEndAsync();
        var se = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(300_000)) { p.Kill(true); throw new TimeoutException("longcat did not finish in 5 minutes"); }
        return (p.ExitCode, so.Result, se.Result);
    }
}
