namespace LongCat.Tests;

/// <summary>The README's tokenizer example prints what the README says it prints.</summary>
public class TokenizerReadmeTests
{
    [Fact]
    public void TokenizeExampleOutputIsCurrent()
    {
        var root = Fixtures.RepoRoot;
        var lines = File.ReadAllLines(Path.Combine(root, "README.md"));
        int section = Array.FindIndex(lines, l => l.StartsWith("## Tokenizer", StringComparison.Ordinal));
        Assert.True(section >= 0, "README.md has no '## Tokenizer' section");
        int cmd = Array.FindIndex(lines, section, l => l.StartsWith("longcat tokenize --tokenizer tests/fixtures/tokenizers/qwen3 --text ", StringComparison.Ordinal));
        Assert.True(cmd > 0, "README.md tokenizer section lost its tokenize example");
        string text = lines[cmd].Split("--text ", 2)[1].Trim().Trim('"');
        string expected = lines[cmd + 1].TrimStart('#').Trim();
        var (code, stdout, stderr) = CliProcess.Run("tokenize", "--tokenizer", Path.Combine(root, "tests", "fixtures", "tokenizers", "qwen3"), "--text", text);
        Assert.True(code == 0, stderr);
        Assert.Equal(expected, stdout.Trim());
    }
}
