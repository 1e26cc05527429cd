using System.CommandLine;
using LongCat.Cli.Commands;

namespace LongCat.Cli;

/// <summary>The <c>longcat</c> command: one subcommand per job, a global <c>--threads</c> option.</summary>
public static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand("LongCat.NET: the LongCat-Flash model, its inference engine and training framework in pure C#.");
        root.Options.Add(CliSupport.Threads);
        root.Subcommands.Add(ForwardCommand.Create());
        root.Subcommands.Add(InfoCommand.Create());
        root.Subcommands.Add(InitCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(TokenizeCommand.Create());
        root.Subcommands.Add(DetokenizeCommand.Create());
        root.Subcommands.Add(TokenizerTrainCommand.CreateGroup());
        var parse = root.Parse(args);
        return parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
    }
}
