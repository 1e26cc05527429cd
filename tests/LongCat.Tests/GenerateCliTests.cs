namespace LongCat.Tests;

/// <summary>`longcat generate` end to end through the real CLI.</summary>
public class GenerateCliTests
{
    [Fact]
    public void GreedyIdsMatchTheFixtureAndStatsArePrinted()
    {
        using var e = LongCat.IO.SafeTensorFile.Open(Path.Combine(Fixtures.Reference("tiny"), "expected.safetensors"));
        var prompt = string.Join(",", e.Tensor("greedy_prompt").ToInt64());
        var want = string.Join(",", e.Tensor("greedy_continuation").ToInt64());
        var (exit, output, err) = CliProcess.Run("generate", "--model", Fixtures.Reference("tiny"), "--prompt-ids", prompt,
            "--temperature", "0", "--max-tokens", "16", "--print-ids", "--threads", "1");
        Assert.True(exit == 0, err);
        Assert.Equal(want, output.Trim());
        Assert.Contains("decode 16 tok", err);
        Assert.Contains("real experts/token/layer", err);
    }

    [Fact]
    public void SpeculativeOnACheckpointWithoutMtpIsAClearError()
    {
        var (exit, _, err) = CliProcess.Run("generate", "--model", Fixtures.Reference("tiny"), "--prompt-ids", "1,2", "--speculative", "mtp");
        Assert.Equal(1, exit);
        Assert.StartsWith("longcat: error:", err);
        Assert.Contains("MTP", err);
        Assert.DoesNotContain("   at ", err);
    }

    [Theory]
    [InlineData("--prompt-ids", "1,x")]
    [InlineData("--prompt-ids", "1,100000")]
    [InlineData("--top-p", "0")]
    [InlineData("--temperature", "-1")]
    [InlineData("--max-tokens", "0")]
    [InlineData("--draft-vocab", "16")]   // without --speculative mtp
    public void BadOptionsAreOneLineErrors(string option, string value)
    {
        var args = new List<string> { "generate", "--model", Fixtures.Reference("tiny"), "--prompt-ids", "1,2" };
        int at = args.IndexOf(option);
        if (at >= 0) args[at + 1] = value; else { args.Add(option); args.Add(value); }
        var (exit, _, err) = CliProcess.Run([.. args]);
        Assert.Equal(1, exit);
        Assert.StartsWith("longcat: error:", err);
        Assert.Single(err.Trim().Split('\n'));
    }

    [Theory]
    [InlineData("forward", "--bogus")]
    [InlineData("forward", "--model", "x")]
    [InlineData("nosuchcommand")]
    [InlineData("info", "--threads")]
    public void ParseErrorsAreOneLine(params string[] args)
    {
        var (exit, output, err) = CliProcess.Run(args);
        Assert.Equal(1, exit);
        Assert.StartsWith("longcat: error:", err);
        Assert.Single(err.Trim().Split('\n'));
        Assert.DoesNotContain("Usage:", output + err);
    }
}
