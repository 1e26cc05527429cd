using System.Diagnostics;
using System.Text.Json.Nodes;

namespace LongCat.Tests;

/// <summary>Text prompts and the chat REPL through the real CLI, on a random model with the LongCat-style tokenizer.</summary>
public class ChatCliTests
{
    static readonly Lazy<string> Model = new(() =>
    {
        var dir = Fixtures.NewTempDir();
        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixtures.Reference("tiny"), "config.json")))!.AsObject();
        cfg["vocab_size"] = 4096;
        var cfgPath = Path.Combine(dir, "src-config.json");
        File.WriteAllText(cfgPath, cfg.ToJsonString());
        var (exit, _, err) = CliProcess.Run("init", "--config", cfgPath, "--out", dir, "--seed", "3");
        Assert.True(exit == 0, err);
        foreach (var f in new[] { "tokenizer.json" })
            File.Copy(Path.Combine(Fixtures.Root, "tokenizers", "longcat_style", f), Path.Combine(dir, f));
        return dir;
    });

    [Fact]
    public void GenerateFromTextIsDeterministicAndMatchesIds()
    {
        var a = CliProcess.Run("generate", "--model", Model.Value, "--prompt", "Hello world", "--max-tokens", "8", "--seed", "4");
        var b = CliProcess.Run("generate", "--model", Model.Value, "--prompt", "Hello world", "--max-tokens", "8", "--seed", "4");
        Assert.True(a.Exit == 0, a.Err);
        Assert.Equal(a.Out, b.Out);
        Assert.Contains("decode", a.Err);
        var ids = CliProcess.Run("generate", "--model", Model.Value, "--prompt", "Hello world", "--max-tokens", "8", "--seed", "4", "--print-ids");
        Assert.True(ids.Exit == 0, ids.Err);
        Assert.Matches("^[0-9]+(,[0-9]+)*$", ids.Out.Trim());
    }

    [Fact]
    public void TextPromptWithoutTokenizerIsAClearError()
    {
        var (exit, _, err) = CliProcess.Run("generate", "--model", Fixtures.Reference("tiny"), "--prompt", "hi");
        Assert.Equal(1, exit);
        Assert.Contains("tokenizer.json", err);
    }

    /// <summary>Runs `longcat chat ARGS` with the given stdin lines; returns stderr after asserting exit code 0.</summary>
    static async Task<string> Chat(string[] args, params string[] input)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "exec", Path.Combine(AppContext.BaseDirectory, "longcat.dll"), "chat" }.Concat(args)) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        foreach (var line in input) p.StandardInput.WriteLine(line);
        p.StandardInput.Close();
        var errTask = p.StandardError.ReadToEndAsync();
        _ = await p.StandardOutput.ReadToEndAsync();
        Assert.True(p.WaitForExit(120_000));
        var err = await errTask;
        Assert.True(p.ExitCode == 0, err);
        return err;
    }

    [Fact]
    public async Task ChatReadsTurnsFromStdin()
    {
        var err = await Chat(["--model", Model.Value, "--max-tokens", "6", "--temperature", "0"], "Hello there", "And again", "/exit");
        // Two replies, each followed by a stats line on stderr.
        Assert.Equal(2, err.Split('\n').Count(l => l.Contains("decode")));
    }

    [Fact]
    public async Task ChatWithoutModelUsesTheShippedDemoModel()
    {
        var err = await Chat(["--max-tokens", "6", "--temperature", "0", "--threads", "1"], "What does the json module do?");
        Assert.Equal(1, err.Split('\n').Count(l => l.Contains("decode")));
        // The chat model when the clone has it, else the base model with a note saying so.
        bool chatModel = File.Exists(Path.Combine(Fixtures.RepoRoot, LongCat.IO.DemoModels.ChatPath, "config.json"));
        Assert.Equal(!chatModel, err.Contains($"the chat model ({LongCat.IO.DemoModels.ChatPath}) is not here"));
    }
}
