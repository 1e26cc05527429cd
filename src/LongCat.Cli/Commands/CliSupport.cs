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

    /// <summary>A --model option that defaults to <paramref name="kind"/>'s shipped demo model (<see cref="DemoModels"/>).</summary>
    public static Option<string?> ModelOption(string description, DemoModelKind kind = DemoModelKind.Base) => new("--model")
    {
        Description = kind == DemoModelKind.Chat
            ? $"{description} Default: the shipped chat model ({DemoModels.ChatPath}), else the base model ({DemoModels.BasePath})."
            : $"{description} Default: the shipped demo model ({DemoModels.BasePath}).",
    };

    /// <summary><paramref name="given"/>, or <paramref name="kind"/>'s demo model: the one rule is <see cref="DemoModels.Resolve"/>.</summary>
    public static string ResolveModel(string? given, DemoModelKind kind = DemoModelKind.Base)
    {
        try { return DemoModels.Resolve(given, kind); }
        catch (FileNotFoundException e) { throw new CliException(e.Message); }
    }
}

/// <summary>A user error in the command line (bad value, missing input): printed as one line.</summary>
public sealed class CliException(string message) : Exception(message);
