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
        root.Subcommands.Add(GenerateCommand.Create());
        root.Subcommands.Add(ChatCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(GradCommand.Create());
        root.Subcommands.Add(TokenizeCommand.Create());
        root.Subcommands.Add(DetokenizeCommand.Create());
        root.Subcommands.Add(TokenizerTrainCommand.CreateGroup());
        root.Subcommands.Add(QuantizeCommand.Create());
        root.Subcommands.Add(ServeCommand.Create());
        root.Subcommands.Add(TrainCommand.Create());
        root.Subcommands.Add(MpiCheckCommand.Create());
        root.Subcommands.Add(EvalCommand.Create());
        root.Subcommands.Add(GrowCommand.Create());
        root.Subcommands.Add(DataCommand.CreateGroup());
        root.Subcommands.Add(TransferCommand.Create());
        root.Subcommands.Add(Ablations.AblateCommand.Create());
        var parse = root.Parse(args);
        // Parse errors (unknown option, missing required option, bad value) get the same one-line format as
        // every other error, with a pointer to --help instead of the whole help text.
        if (parse.Errors.Count > 0 && !args.Contains("--help") && !args.Contains("-h") && !args.Contains("-?"))
            return CliSupport.Fail($"{parse.Errors[0].Message} (see 'longcat {string.Join(' ', CommandPath(parse))} --help')");
        return parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
    }

    static IEnumerable<string> CommandPath(ParseResult parse)
    {
        var names = new List<string>();
        for (var r = parse.CommandResult; r is not null && r.Command is not RootCommand; r = r.Parent as System.CommandLine.Parsing.CommandResult)
            names.Insert(0, r.Command.Name);
        return names;
    }
}
