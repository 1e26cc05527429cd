using System.CommandLine;
using LongCat.Config;
using LongCat.IO;
using LongCat.Kernels;

namespace LongCat.Cli.Commands;

/// <summary>Options and error handling shared by every command.</summary>
public static class CliSupport
{
    /// <summary>Global: kernel threads. Results never depend on it.</summary>
    public static readonly Option<int?> Threads = new("--threads")
    {
        Description = "Worker threads for the kernels (default: all cores). Results are bitwise identical for any value.",
        Recursive = true,
        // A value that is not an int becomes 0 here, which Run rejects in the one-line error format; left to
        // System.CommandLine it would print its own message and the whole help text instead.
        CustomParser = r => r.Tokens.Count == 1 && int.TryParse(r.Tokens[0].Value, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var v) ? v : 0,
    };

    /// <summary>
    /// Runs a command body: applies --threads, turns expected failures (bad files, bad options) into one line on
    /// stderr and exit code 1, and never prints a stack trace for them.
    /// </summary>
    public static int Run(ParseResult parse, Func<int> body)
    {
        try
        {
            if (parse.GetValue(Threads) is { } t)
            {
                if (t < 1 || t > 1024)
                {
                    var given = parse.GetResult(Threads)?.Tokens.FirstOrDefault()?.Value ?? t.ToString(System.Globalization.CultureInfo.InvariantCulture);
                    return Fail($"--threads must be an integer in 1..1024, got '{given}'");
                }
                Parallelism.Threads = t;
            }
            return body();
        }
        catch (Exception e) when (e is ModelFormatException or ConfigException or CliException or ArgumentException or IOException or UnauthorizedAccessException or InvalidDataException or LongCat.Distributed.MpiException)
        {
            return Fail(e.Message);
        }
        catch (OutOfMemoryException e)
        {
            return Fail($"out of memory: {e.Message} (try a smaller batch, context or model)");
        }
        catch (Exception e) when (Environment.GetEnvironmentVariable("LONGCAT_DEBUG") is null or "" or "0")
        {
            // A bug, not a user error: still one line (set LONGCAT_DEBUG=1 for the stack trace), exit code 2.
            Console.Error.WriteLine($"longcat: internal error: {e.GetType().Name}: {e.Message} (set LONGCAT_DEBUG=1 for details)");
            return 2;
        }
    }

    public static int Fail(string message)
    {
        Console.Error.WriteLine($"longcat: error: {message}");
        return 1;
    }

    public static Option<string> RequiredPath(string name, string description) => new(name) { Description = description, Required = true };

    /// <summary>The shipped demo model (models/longcat-flash-pydoc/README.md): the default of generate, chat and serve.</summary>
    public const string DemoModel = "models/longcat-flash-pydoc";

    /// <summary>A --model option that defaults to the shipped demo model.</summary>
    public static Option<string?> ModelOption(string description) => new("--model") { Description = $"{description} Default: the shipped demo model ({DemoModel})." };

    /// <summary>
    /// <paramref name="given"/>, or the demo model: looked up under the current folder, then under each folder above the
    /// executable (so `dotnet run --project src/LongCat.Cli` and a build inside the clone find it from anywhere).
    /// </summary>
    public static string ResolveModel(string? given)
    {
        if (given is not null) return given;
        var candidates = new List<string> { Path.GetFullPath(DemoModel) };
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent) candidates.Add(Path.Combine(d.FullName, DemoModel));
        foreach (var c in candidates)
            if (File.Exists(Path.Combine(c, "config.json"))) return c;
        throw new CliException($"no --model given and the shipped demo model ({DemoModel}) was not found under {Directory.GetCurrentDirectory()} or above the executable: run from the repository root or pass --model DIR");
    }
}

/// <summary>A user error in the command line (bad value, missing input): printed as one line.</summary>
public sealed class CliException(string message) : Exception(message);
