using System.Diagnostics;

namespace LongCat.Tests;

/// <summary>
/// Debian packages a test needs (Chromium for the page test, Open MPI for the data-parallel tests), installed by the
/// test itself when missing, so the README's plain <c>dotnet test</c> passes on a fresh machine: only as root with
/// apt-get (a fresh container), once per process, one install at a time. $LONGCAT_NO_TEST_INSTALL=1 turns it off.
/// </summary>
internal static class DebianPackages
{
    static readonly object Gate = new();
    static readonly Dictionary<string, (bool Ok, string Log)> Done = [];

    /// <summary>True where <see cref="Install"/> can work: Linux, root, apt-get present, not turned off.</summary>
    public static bool CanInstall(string optOutVariable = "LONGCAT_NO_TEST_INSTALL") =>
        OperatingSystem.IsLinux() && Environment.GetEnvironmentVariable(optOutVariable) is not "1"
        && Environment.GetEnvironmentVariable("LONGCAT_NO_TEST_INSTALL") is not "1"
        && Environment.UserName == "root" && File.Exists("/usr/bin/apt-get");

    /// <summary>apt-get update and install <paramref name="packages"/> (space-separated); the exit status and the log.</summary>
    public static (bool Ok, string Log) Install(string packages)
    {
        lock (Gate)
        {
            if (Done.TryGetValue(packages, out var earlier)) return earlier;
            var psi = new ProcessStartInfo("/bin/sh", ["-c", $"apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {packages}"])
            {
                RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            };
            using var p = Process.Start(psi)!;
            var err = p.StandardError.ReadToEndAsync();
            var output = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            return Done[packages] = (p.ExitCode == 0, output + err.Result);
        }
    }

    /// <summary>The first of <paramref name="names"/> found on PATH, or null.</summary>
    public static string? OnPath(params string[] names)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
            foreach (var n in names)
                if (File.Exists(Path.Combine(dir, n))) return Path.Combine(dir, n);
        return null;
    }
}
