using System.CommandLine;
using LongCat.Evaluation;

namespace LongCat.Cli.Commands;

/// <summary><c>longcat eval --model M TASK:FILE...</c>: perplexity, multiple-choice and chat/tool-call evaluation (docs/post-training.md).</summary>
public static class EvalCommand
{
    public static Command Create()
    {
        var model = CliSupport.ModelOption("Model folder to evaluate.");
        var tokenizer = new Option<string?>("--tokenizer") { Description = "tokenizer.json (default: the model folder's)." };
        var tasks = new Argument<string[]>("tasks")
        {
            Description = "TASK:FILE pairs. perplexity:FILE (text, or .jsonl with a \"text\" field per line): tokens, mean nats, perplexity, " +
                          "bits per byte. choice:FILE (.jsonl of {\"context\", \"choices\", \"gold\"}): acc and acc_norm. chat:FILE (.jsonl " +
                          "conversations with \"expected_tool_call\" or \"reference\"): valid tool-call rate, exact call match, ROUGE-L F1.",
            Arity = ArgumentArity.OneOrMore,
        };
        var json = new Option<bool>("--json") { Description = "Print the results as JSON instead of a table." };
        var limit = new Option<int>("--limit") { Description = "Evaluate only the first N items of each file (0 = all).", DefaultValueFactory = _ => 0 };
        var context = new Option<int?>("--context") { Description = "Tokens per scoring window (default: the model's max_position_embeddings, at most 2048)." };
        var maxTokens = new Option<int>("--max-tokens") { Description = "chat: most tokens per generated reply.", DefaultValueFactory = _ => 256 };
        var constrained = new Option<bool>("--constrained") { Description = "chat: decode the items that expect a tool call under the tool-call grammar." };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the bootstrap intervals.", DefaultValueFactory = _ => 1234UL };
        var noProgress = new Option<bool>("--no-progress") { Description = "No progress bar on stderr." };
        var details = new Option<string?>("--details") { Description = "chat: write one JSON line per item (reply, parsed calls, scores) to this file." };
        var cmd = new Command("eval",
            "Evaluate a model: perplexity, multiple-choice log-likelihood (lm-evaluation-harness style) and chat/tool calling " +
            "(greedy decoding). Deterministic for any thread count. Prints a table (or --json) with 95% intervals.")
        {
            model, tokenizer, tasks, json, limit, context, maxTokens, constrained, seed, noProgress, details,
        };
        cmd.SetAction(p => CliSupport.Run(p, () =>
        {
            var pairs = p.GetValue(tasks)!.Select(t =>
            {
                int i = t.IndexOf(':');
                if (i <= 0 || i == t.Length - 1) throw new CliException($"'{t}': give each task as TASK:FILE (tasks: {string.Join(", ", Evaluator.Tasks)})");
                string task = t[..i];
                if (!Evaluator.Tasks.Contains(task)) throw new CliException($"'{t}': unknown task '{task}' (tasks: {string.Join(", ", Evaluator.Tasks)})");
                string file = t[(i + 1)..];
                if (!File.Exists(file)) throw new CliException($"{file}: eval file not found");
                return (task, file);
            }).ToList();
            var dir = CliSupport.ResolveModel(p.GetValue(model));
            var tok = GenerateCommand.LoadTokenizer(dir, p.GetValue(tokenizer), required: true)!;
            using var ev = new Evaluator(dir, tok, new EvalOptions
            {
                Context = p.GetValue(context), Limit = p.GetValue(limit), MaxTokens = p.GetValue(maxTokens),
                Constrained = p.GetValue(constrained), Seed = p.GetValue(seed),
            });
            bool bar = !p.GetValue(noProgress) && !Console.IsErrorRedirected;
            if (!p.GetValue(noProgress))
                ev.Progress += (task, done, total) =>
                {
                    if (!bar && done != total) return;
                    int w = 30, filled = w * done / Math.Max(1, total);
                    Console.Error.Write($"\r{task} [{new string('#', filled)}{new string('-', w - filled)}] {done}/{total}");
                    if (done == total) Console.Error.WriteLine();
                };
            using var detailsOut = p.GetValue(details) is { } d ? new StreamWriter(d, append: false, new System.Text.UTF8Encoding(false)) : null;
            if (detailsOut is not null) ev.ItemScored += rec => detailsOut.WriteLine(rec.ToJsonString());
            var results = pairs.Select(x => ev.Run(x.task, x.file)).ToList();
            Console.Write(p.GetValue(json) ? Evaluator.ToJson(results, dir) + "\n" : Evaluator.ToTable(results));
            return 0;
        }));
        return cmd;
    }
}
