using System.CommandLine;

namespace LongCat.Cli.Commands;

/// <summary><c>longcat bench</c>: kernel and end-to-end benchmarks (gemm, forward).</summary>
public static class BenchCommand
{
    public static Command Create()
    {
        var cmd = new Command("bench", "Benchmarks that print ratios against references measured in the same run.");
        cmd.Subcommands.Add(TokenizeBench.Create());
        cmd.Subcommands.Add(TrainBench.Create());
        return cmd;
    }
}
