using System.CommandLine;
using LongCat.IO;
using LongCat.Model;

namespace LongCat.Cli.Commands;

/// <summary><c>longcat init</c>: a randomly initialised checkpoint in the official layout.</summary>
public static class InitCommand
{
    public static Command Create()
    {
        var config = CliSupport.RequiredPath("--config", "config.json file or preset name.");
        var output = CliSupport.RequiredPath("--out", "Folder to write (config.json, generation_config.json, model.safetensors).");
        var seed = new Option<ulong>("--seed") { Description = "Random seed (same seed, same bytes).", DefaultValueFactory = _ => 0 };
        var dtype = new Option<string>("--dtype") { Description = "Storage dtype of weights: f32 or bf16 (router stays f32).", DefaultValueFactory = _ => "f32" };
        var mtp = new Option<bool>("--mtp") { Description = "Also write a randomly initialised MTP head (model.mtp.*, the speculative-decoding draft layer)." };
        var std = new Option<double>("--std") { Description = "Standard deviation of the normal init of linears, embedding and lm_head.", DefaultValueFactory = _ => 0.02 };
        var cmd = new Command("init", "Write a randomly initialised LongCat-Flash checkpoint (normal(0, 0.02) linears, unit norms, zero router bias).")
        {
            config, output, seed, dtype, std, mtp,
        };
        cmd.SetAction(p => CliSupport.Run(p, () =>
        {
            var (c, _) = Presets.Resolve(p.GetValue(config)!);
            var dt = p.GetValue(dtype)!.ToLowerInvariant() switch
            {
                "f32" or "float32" => DType.F32,
                "bf16" or "bfloat16" => DType.BF16,
                var other => throw new CliException($"--dtype must be f32 or bf16, got '{other}'"),
            };
            double s = p.GetValue(std);
            if (!(s > 0) || double.IsInfinity(s)) throw new CliException($"--std must be a positive number, got {s}");
            var dir = p.GetValue(output)!;
            ModelInitializer.Write(c, dir, p.GetValue(seed), dt, s, p.GetValue(mtp));
            Console.WriteLine($"wrote {dir}: {new Planning.ParameterCount(c).Total:N0} parameters ({dt})");
            return 0;
        }));
        return cmd;
    }
}
