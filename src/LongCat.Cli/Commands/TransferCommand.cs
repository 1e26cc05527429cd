using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using LongCat.Training;

namespace LongCat.Cli.Commands;

/// <summary><c>longcat transfer</c>: a tuned proxy's train.json -> the wider target's (spec section 4, Table 1).</summary>
public static class TransferCommand
{
    public static Command Create()
    {
        var proxy = CliSupport.RequiredPath("--proxy", "The proxy's training config (train.json, as for 'longcat train').");
        var width = new Option<int>("--width") { Description = "Target width (hidden_size); every width dimension must scale to a whole number.", Required = true };
        var output = CliSupport.RequiredPath("--out", "Where to write the target's train.json.");
        var runOut = new Option<string?>("--run-out") { Description = "The target run folder ('out' in the written config; default: the proxy's with -width{N} appended)." };
        var cmd = new Command("transfer",
            "Hyperparameter transfer by width (the paper's Table 1, Adam LR full align, standard parameterization): with s = width / " +
            "proxy width, hidden_size, ffn sizes, LoRA ranks and heads scale by s; embedding init variance and LR are kept; hidden, " +
            "router and unembedding init variance and LR are divided by s; depth, sparsity, batch and schedule are kept.")
        {
            proxy, width, output, runOut,
        };
        cmd.SetAction(p => CliSupport.Run(p, () =>
        {
            var r = HyperparameterTransfer.TransferFile(p.GetValue(proxy)!, p.GetValue(width), p.GetValue(runOut));
            var path = p.GetValue(output)!;
            var dir = Path.GetDirectoryName(Path.GetFullPath(path));
            if (dir is not null) Directory.CreateDirectory(dir);
            var tmp = path + ".tmp";
            File.WriteAllText(tmp, r.Config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
            File.Move(tmp, path, overwrite: true);
            var inv = CultureInfo.InvariantCulture;
            Console.WriteLine(string.Create(inv, $"width {r.ProxyWidth} -> {r.TargetWidth} (s = {r.Scale:G6}); wrote {path}"));
            foreach (var (k, (from, to)) in r.Dimensions) Console.WriteLine(string.Create(inv, $"  {k,-24} {from,8} -> {to}"));
            foreach (var (g, (v, l)) in r.Multipliers)
                Console.WriteLine(string.Create(inv, $"  {ParameterGroups.Key(g),-12} init variance x{v:G6}, lr x{l:G6}"));
            return 0;
        }));
        return cmd;
    }
}
