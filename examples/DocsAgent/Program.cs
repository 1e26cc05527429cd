using System.Globalization;
using LongCat.Inference;
using LongCat.IO;
using LongCat.Model;
using LongCat.Tokenization;

namespace LongCat.Examples.DocsAgent;

/// <summary>
/// <c>dotnet run --project examples/DocsAgent -c Release -- "What does json.dumps do?" [--model DIR] [--corpus FILE]
/// [--max-tokens N]</c>: loads the model (default: the shipped chat model, <see cref="DemoModels"/>), serves it in process
/// as an <see cref="Microsoft.Extensions.AI.IChatClient"/> (<see cref="LongCatChatClient"/>), asks the question with the
/// <c>lookup_docs</c> tool (<see cref="LookupDocs"/>) and prints the tool call, its result and the answer.
/// </summary>
public static class Program
{
    const string Usage = "usage: DocsAgent QUESTION [--model DIR] [--corpus FILE] [--max-tokens N]";

    public static async Task<int> Main(string[] args)
    {
        try
        {
            string? question = null, modelArg = null, corpusArg = null;
            int maxTokens = 256;
            for (int i = 0; i < args.Length; i++)
            {
                string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value ({Usage})");
                switch (args[i])
                {
                    case "--model": modelArg = Value(); break;
                    case "--corpus": corpusArg = Value(); break;
                    case "--max-tokens":
                        var v = Value();
                        if (!int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out maxTokens) || maxTokens < 1)
                            throw new ArgumentException($"--max-tokens must be a positive integer, got '{v}'");
                        break;
                    case "-h" or "--help": Console.WriteLine(Usage); return 0;
                    default:
                        if (args[i].StartsWith("--", StringComparison.Ordinal)) throw new ArgumentException($"unknown option '{args[i]}' ({Usage})");
                        if (question is not null) throw new ArgumentException($"one question only; put it in quotes ({Usage})");
                        question = args[i];
                        break;
                }
            }
            if (string.IsNullOrWhiteSpace(question)) throw new ArgumentException($"no question given ({Usage})");

            var dir = DemoModels.Resolve(modelArg, DemoModelKind.Chat);
            var corpus = PydocIndex.ResolveCorpus(corpusArg);
            var index = PydocIndex.Load(corpus);
            var tokPath = Path.Combine(dir, "tokenizer.json");
            if (!File.Exists(tokPath)) throw new FileNotFoundException($"{dir}: no tokenizer.json in the model folder");
            var tok = Tokenizer.Load(tokPath);
            using var model = LongCatModel.Load(dir);
            Console.Error.WriteLine($"DocsAgent: model {dir}; {index.Names.Count.ToString("N0", CultureInfo.InvariantCulture)} documented names from {corpus}");

            int ctx = Math.Min(model.Config.MaxPositionEmbeddings, 2048);
            using var scheduler = new BatchScheduler(model, new SchedulerOptions { ContextLength = ctx, MaxRunningSequences = 1, KvCacheBytes = 64L << 20 });
            using var chat = new LongCatChatClient(new TextGenerator(scheduler, tok), new ChatClientOptions
            {
                ModelId = Path.GetFileName(Path.TrimEndingDirectorySeparator(dir)),
                DefaultMaxTokens = maxTokens,
                MaxTokensLimit = Math.Max(maxTokens, ctx - 1),
                ToolCallStyle = ToolCallFormat.StyleOfModel(dir),
            });
            Console.WriteLine($"question:    {question}");
            var response = await LookupDocs.AskAsync(chat, index, question, maxTokens);
            LookupDocs.Print(response, Console.Out);
            return 0;
        }
        catch (Exception e) when (e is ArgumentException or IOException or InvalidDataException or ModelFormatException)
        {
            Console.Error.WriteLine($"DocsAgent: error: {e.Message}");
            return 1;
        }
    }
}
