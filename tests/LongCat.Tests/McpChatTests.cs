using System.Diagnostics;
using LongCat.Cli.Commands;

namespace LongCat.Tests;

/// <summary>`longcat chat --mcp`: an MCP server over stdio (tests/McpTestServer) whose tool the tool-trained model calls.</summary>
public class McpChatTests
{
    /// <summary>The test MCP server's dll, built next to the tests (same configuration).</summary>
    static string ServerDll()
    {
        var bin = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));  // .../LongCat.Tests/bin/CONFIG/net10.0
        string tfm = bin.Name, config = bin.Parent!.Name;
        var dll = Path.Combine(bin.Parent!.Parent!.Parent!.Parent!.FullName, "McpTestServer", "bin", config, tfm, "McpTestServer.dll");
        Assert.True(File.Exists(dll), dll);
        return dll;
    }

    static async Task<(int Exit, string Out, string Err)> Chat(string[] args, params string[] input)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "exec", Path.Combine(AppContext.BaseDirectory, "longcat.dll"), "chat" }.Concat(args)) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        foreach (var line in input) p.StandardInput.WriteLine(line);
        p.StandardInput.Close();
        var errTask = p.StandardError.ReadToEndAsync();
        var output = await p.StandardOutput.ReadToEndAsync();
        if (!p.WaitForExit(120_000)) { p.Kill(true); throw new TimeoutException("longcat chat did not finish"); }
        return (p.ExitCode, output, await errTask);
    }

    [Fact]
    public async Task TheModelCallsTheMcpServersToolAndAnswers()
    {
        var (exit, output, err) = await Chat(["--model", ToolModel.ModelDir, "--temperature", "0", "--max-tokens", "64", "--mcp", $"dotnet \"{ServerDll()}\""],
            ToolModel.Question, "/exit");
        Assert.True(exit == 0, err);
        Assert.Contains("MCP: 1 tool(s) offered: add", err);
        Assert.Contains("[tool call] add({\"a\":2,\"b\":3})", err);
        Assert.Contains("[tool result] 5", err);
        Assert.Equal(ToolModel.Answer, output.Trim());
    }

    [Fact]
    public async Task AServerThatDoesNotStartIsAClearError()
    {
        var (exit, _, err) = await Chat(["--model", ToolModel.ModelDir, "--mcp", "/nonexistent/mcp-server --flag"], "hi");
        Assert.Equal(1, exit);
        Assert.Contains("--mcp \"/nonexistent/mcp-server --flag\": could not start the MCP server", err);
    }

    [Fact]
    public void CommandLinesSplitLikeAShell()
    {
        Assert.Equal(["npx", "-y", "@scope/server", "a b", ""], McpChat.SplitCommandLine("npx -y @scope/server \"a b\" ''"));
        Assert.Throws<CliException>(() => McpChat.SplitCommandLine("x \"open"));
        Assert.Throws<CliException>(() => McpChat.SplitCommandLine("   "));
    }
}
