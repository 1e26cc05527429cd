using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using LongCat.Inference;
using LongCat.Model;

namespace LongCat.Cli.Commands;

/// <summary>
/// <c>longcat bench serve</c>: continuous-batching throughput. For each concurrency N, N streams of the same length
/// run through one <see cref="BatchScheduler"/>; the table gives aggregate decode tokens/s (all streams together),
/// per-stream tokens/s, and the aggregate as a multiple of the single-stream rate measured in the same run.
/// </summary>
public static class ServeBench
{
    public static Command Create()
    {
        var model = CliSupport.RequiredPath("--model", "Checkpoint folder (e.g. one made by 'longcat init --config bench/configs/bench-350m.json').");
        var streams = new Option<string>("--streams") { Description = "Concurrencies to measure, comma-separated.", DefaultValueFactory = _ => "1,4,16,64" };
        var tokens = new Option<int>("--tokens") { Description = "Tokens each stream generates.", DefaultValueFactory = _ => 64 };
        var promptTokens = new Option<int>("--prompt-tokens") { Description = "Prompt length of each stream (random ids).", DefaultValueFactory = _ => 32 };
        var speculative = new Option<bool>("--speculative") { Description = "Draft with the MTP head inside the batch (needs model.mtp.* weights)." };
        var cmd = new Command("serve", "Continuous batching: aggregate and per-stream decode tokens/s at several numbers of concurrent streams.")
        {
            model, streams, tokens, promptTokens, speculative,
        };
        cmd.SetAction(p => CliSupport.Run(p, () =>
        {
            var ns = p.GetValue(streams)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(s => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n is >= 1 and <= 1024 ? n : throw new CliException($"--streams: '{s}' is not a count in 1..1024")).ToArray();
            int t = p.GetValue(tokens), pt = p.GetValue(promptTokens);
            if (t < 2) throw new CliException($"--tokens must be at least 2, got {t}");
            if (pt < 1) throw new CliException($"--prompt-tokens must be at least 1, got {pt}");
            using var m = LongCatModel.Load(p.GetValue(model)!);
            Run(m, ns, t, pt, p.GetValue(speculative));
            return 0;
        }));
        return cmd;
    }

    static void Run(LongCatModel m, int[] streams, int tokens, int promptTokens, bool speculative)
    {
        var inv = CultureInfo.InvariantCulture;
        int ctx = Math.Min(m.Config.MaxPositionEmbeddings, promptTokens + tokens + 8);
        using var scheduler = new BatchScheduler(m, new SchedulerOptions
        {
            MaxRunningSequences = streams.Max(),
            MaxQueuedRequests = streams.Max(),
            ContextLength = ctx,
            KvCacheBytes = (long)streams.Max() * new KvCachePool(m, 1, ctx).LeaseBytes(ctx, speculative) + (1 << 20),
            PrefillChunkTokens = Math.Max(256, promptTokens),
        });
        Console.WriteLine($"continuous batching: {m.Config.NumLayers} layers, hidden {m.Config.HiddenSize}, {m.Config.NRoutedExperts} experts (+{m.Config.ZeroExpertNum} zero), " +
            $"prompt {promptTokens} tokens, {tokens} generated per stream, {Kernels.Parallelism.Threads} threads{(speculative ? ", MTP drafting" : "")}");
        Measure(scheduler, 2, Math.Min(8, tokens), promptTokens, speculative);   // warm-up: JIT, pool, thread pool
        Console.WriteLine("| streams | aggregate decode tok/s | per-stream tok/s | vs 1 stream | mean real experts/token/layer |");
        Console.WriteLine("|---:|---:|---:|---:|---:|");
        double? single = null;
        foreach (var n in streams)
        {
            var (aggregate, perStream, experts) = Measure(scheduler, n, tokens, promptTokens, speculative);
            if (n == 1 || single is null) single ??= aggregate / n;
            Console.WriteLine($"| {n} | {aggregate.ToString("F1", inv)} | {perStream.ToString("F1", inv)} | {(aggregate / single.Value).ToString("F2", inv)}x | {experts.ToString("F2", inv)} |");
        }
    }

    /// <summary>
    /// Runs n streams at once and returns the aggregate decode rate (tokens after each stream's first, over the span
    /// from the first stream's first token to the last stream's end), the mean per-stream decode rate and the mean
    /// real experts per token per layer.
    /// </summary>
    static (double Aggregate, double PerStream, double Experts) Measure(BatchScheduler s, int n, int tokens, int promptTokens, bool speculative)
    {
        var rng = new Random(n);
        int v = s.Model.Config.VocabSize;
        var seqs = Enumerable.Range(0, n).Select(i => s.Submit(
            [.. Enumerable.Range(0, promptTokens).Select(_ => rng.Next(v))],
            new GenerationOptions { MaxTokens = tokens, Temperature = 0, Speculative = speculative })).ToList();
        var firstToken = new long[n];
        var tasks = seqs.Select(async (q, i) =>
        {
            await foreach (var t in q.Tokens.ReadAllAsync())
                if (t.Index == 0) firstToken[i] = Stopwatch.GetTimestamp();
            return Stopwatch.GetTimestamp();
        }).ToArray();
        var ends = Task.WhenAll(tasks).GetAwaiter().GetResult();
        var results = seqs.Select(q => q.Completion.GetAwaiter().GetResult()).ToList();
        double span = (ends.Max() - firstToken.Min()) / (double)Stopwatch.Frequency;
        long decoded = results.Sum(r => (long)r.CompletionTokens - 1);
        return (decoded / span, results.Average(r => r.DecodeTokensPerSecond), results.Average(r => r.MeanRealExperts));
    }
}
