namespace LongCat.Tests;

/// <summary>
/// The CLI in-process (<see cref="LongCat.Cli.Program.Main"/>) with its console captured. Tests that use it belong to
/// the "Console" collection, so no two swap the console at once.
/// </summary>
public static class InProcessCli
{
    public static (int Rc, string Out, string Err) Run(params string[] args)
    {
        var oldOut = Console.Out;
        var oldErr = Console.Error;
        var o = new StringWriter();
        var e = new StringWriter();
        try
        {
            Console.SetOut(o);
            Console.SetError(e);
            int rc = LongCat.Cli.Program.Main(args);
            return (rc, o.ToString(), e.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
    }

    /// <summary>Runs the CLI and asserts a non-zero exit and exactly one "longcat: error:" line on stderr, with no
    /// stack trace, containing every fragment. Returns the line.</summary>
    public static string Fails(string[] args, params string[] fragments)
    {
        var (rc, _, err) = Run(args);
        Assert.NotEqual(0, rc);
        Assert.DoesNotContain("   at ", err);
        Assert.DoesNotContain("Exception", err);
        var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r')).Where(l => l.Length > 0).ToArray();
        Assert.True(lines.Length == 1, $"expected one stderr line, got {lines.Length}:\n{err}");
        Assert.StartsWith("longcat: error: ", lines[0]);
        foreach (var f in fragments) Assert.Contains(f, lines[0]);
        return lines[0];
    }
}
