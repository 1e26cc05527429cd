using System.CommandLine;

namespace LongCat.Cli.Ablations;

/// <summary><c>longcat ablate NAME</c>: the paper's ablations on this machine (docs/ablations.md).</summary>
public static class AblateCommand
{
    public static Command Create()
    {
        var names = string.Join(", ", Experiments.All.Select(e => $"{e.Name} ({e.Id})"));
        var name = new Argument<string>("name") { Description = $"Which ablation: {names}, or all." };
        var output = new Option<string>("--out") { Description = "Lab folder: prepared data, the run cache (runs/HASH) and one results folder per ablation.", DefaultValueFactory = _ => "out/ablate" };
        var corpus = new Option<string>("--corpus") { Description = "Training text (.jsonl(.gz) or .txt(.gz)).", DefaultValueFactory = _ => "data/python-docs/corpus.jsonl.gz" };
        var steps = new Option<long>("--steps") { Description = "Training steps per run (2,048 tokens each; docs/ablations.md used 120).", DefaultValueFactory = _ => 120 };
        var model = Commands.CliSupport.ModelOption("mtp: the trained model with an MTP head to measure.");
        var prompts = new Option<int>("--prompts") { Description = "mtp: number of prompts.", DefaultValueFactory = _ => 24 };
        var cmd = new Command("ablate",
            "Run one of the paper's ablations at lab scale (a 2-layer, width-128 LongCat-Flash on the shipped Python-docs corpus): trains " +
            "its variants (cached by config hash under OUT/runs, so shared variants train once and an interrupted ablation resumes), " +
            "then writes OUT/NAME/results.md, results.json and SVG plots. Deterministic.")
        {
            name, output, corpus, steps, model, prompts,
        };
        cmd.SetAction(p => Commands.CliSupport.Run(p, () =>
        {
            var n = p.GetValue(name)!;
            var chosen = n == "all" ? Experiments.All
                : Experiments.All.Where(e => e.Name == n || string.Equals(e.Id, n, StringComparison.OrdinalIgnoreCase)).ToArray();
            if (chosen.Length == 0) throw new Commands.CliException($"unknown ablation '{n}': use one of {names}, or all");
            if (p.GetValue(prompts) < 1) throw new Commands.CliException($"--prompts must be at least 1, got {p.GetValue(prompts)}");
            var lab = new Lab(p.GetValue(output)!, p.GetValue(corpus)!, p.GetValue(steps), Console.Error);
            var args = new Experiments.AblateArgs(p.GetValue(output)!, p.GetValue(model), p.GetValue(prompts));
            foreach (var e in chosen)
            {
                var md = e.Run(lab, args);
                Console.WriteLine(md);
            }
            return 0;
        }));
        return cmd;
    }
}
