using System.Net;
using System.Net.Sockets;

namespace LongCat.Tests;

/// <summary>`longcat serve` through the real CLI: bad options and a busy port are one error line.</summary>
public class ServerCliTests
{
    static void OneErrorLine((int Exit, string Out, string Err) r, string contains)
    {
        Assert.Equal(1, r.Exit);
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, r.Err);
        Assert.StartsWith("longcat: error: ", lines[0]);
        Assert.Contains(contains, lines[0]);
    }

    [Fact]
    public void BadServeOptionsAreOneErrorLine()
    {
        var dir = ServerTestSupport.ModelDir;
        OneErrorLine(CliProcess.Run("serve", "--model", Path.Combine(dir, "missing")), "not found");
        OneErrorLine(CliProcess.Run("serve", "--model", dir, "--host", "example.com"), "--host");
        OneErrorLine(CliProcess.Run("serve", "--model", dir, "--port", "70000"), "--port");
        OneErrorLine(CliProcess.Run("serve", "--model", dir, "--speculative", "ngram"), "--speculative");
        OneErrorLine(CliProcess.Run("serve", "--model", Fixtures.Reference("tiny")), "tokenizer");
        // A port that is taken.
        using var busy = new TcpListener(IPAddress.Loopback, 0);
        busy.Start();
        OneErrorLine(CliProcess.Run("serve", "--model", dir, "--port", ((IPEndPoint)busy.LocalEndpoint).Port.ToString(System.Globalization.CultureInfo.InvariantCulture)), "address already in use");
    }
}
