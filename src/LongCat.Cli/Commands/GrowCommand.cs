using System.CommandLine;
using System.Globalization;
using LongCat.Training;

namespace LongCat.Cli.Commands;

/// <summary>
/// <c>longcat grow</c>: model growth initialization (<see cref="ModelGrowth"/>): stacks a trained checkpoint's layers
/// into a deeper model with the whole training state, as a new run folder that <c>longcat train --resume</c> continues.
/// </summary>
public static class GrowCommand
{
    public static Command Create()
    {
        var from = CliSupport.RequiredPath("--from", "Training checkpoint to grow: a checkpoint folder (OUT/checkpoints/step-N) or a run folder (its latest checkpoint).");
        var output = CliSupport.RequiredPath("--out", "New run folder for the grown model (absent or empty): OUT/checkpoints/step-N is written, N the source step.");
        var factor = new Option<int>("--factor") { Description = "Stack the layers this many times (n layers become factor x n: 1..n, 1..n, ...).", DefaultValueFactory = _ => ModelGrowth.DefaultFactor };
        var config = new Option<string?>("--config") { Description = "The source run's train.json; with --config-out, a copy for the grown run is written." };
        var configOut = new Option<string?>("--config-out") { Description = "Where to write the grown run's train.json: model.num_layers grown, out set to --out, the rest kept." };
        var cmd = new Command("grow",
            "Model growth initialization: stack a trained checkpoint's layers (n -> 2n by default: layers 1..n then 1..n) with " +
            "their Adam moments and router biases, keep embedding, final norm, lm_head and MTP head, carry the training state " +
            "(step, schedule, data position), and write a run folder that 'longcat train --resume' continues.")
        {
            from, output, factor, config, configOut,
        };
        cmd.SetAction(p => CliSupport.Run(p, () =>
        {
            int k = p.GetValue(factor);
            if (k < 2) throw new CliException($"--factor must be >= 2, got {k}");
            string? train = p.GetValue(config), trainOut = p.GetValue(configOut);
            if ((train is null) != (trainOut is null)) throw new CliException("--config and --config-out go together (the source run's train.json and where to write the grown one)");
            var outDir = p.GetValue(output)!;
            var r = ModelGrowth.Grow(p.GetValue(from)!, outDir, k, train, trainOut);
            var s = r.State;
            var next = r.TrainConfig is null
                ? $"resume with 'longcat train --config GROWN.json --resume {r.Checkpoint}' (GROWN.json: model.num_layers {r.Config.NumLayers}, out {outDir}; --config-out writes it)"
                : $"continue with 'longcat train --config {r.TrainConfig} --resume'";
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"grew {r.Source}: {r.SourceConfig.NumLayers} -> {r.Config.NumLayers} layers, {r.SourceParameters:N0} -> {r.Parameters:N0} parameters, " +
                $"step {s.Step} carried (Adam step {s.AdamStep}, {s.Tokens:N0} tokens); wrote {r.Checkpoint}; {next}"));
            return 0;
        }));
        return cmd;
    }
}
