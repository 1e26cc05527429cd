using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using LongCat.Inference;
using LongCat.Model;

namespace LongCat.Cli.Commands;

/// <summary>
/// <c>longcat bench serve</c>: continuous-batching throughput. For each concurrency N, N streams of the same length
/// run through one <see cref="BatchScheduler"/>; the table gives aggregate decode tokens/s (all streams together),
/// per-stream tokens/s, and the aggregate as a multiple of the single-stream rate measured in the same run (one stream
/// is always measured). Repeats go round the concurrencies (1, 4, 16, ..., 1, 4, 16, ...) and medians are reported;
/// the closing line gives 16 streams' aggregate over one stream's (the issue's batching target).
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
        var repeats = new Option<int>("--repeats") { Description = "Rounds over the concurrencies after the warm-up (medians are reported).", DefaultValueFactory = _ => 2 };
        var cmd = new Command("serve", "Continuous batching: aggregate and per-stream decode tokens/s at several numbers of concurrent streams, and 16 streams vs 1, measured in the same run.")
        {
            model, streams, tokens, promptTokens, speculative, repeats,
        };
        cmd.SetAction(p => CliSupport.Run(p, () =>
        {
            var ns = p.GetValue(streams)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(s => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n is >= 1 and <= 1024 ? n : throw new CliException($"--streams: '{s}' is not a count in 1..1024")).ToArray();
            int t = p.GetValue(tokens), pt = p.GetValue(promptTokens);
            if (t < 2) throw new CliException($"--tokens must be at least 2, got {t}");
            if (pt < 1) throw new CliException($"--prompt-tokens must be at least 1, got {pt}");
            int r = p.GetValue(repeats);
            if (r < 1 || r > 100) throw new CliException($"--repeats must be in 1..100, got {r}");
            using var m = LongCatModel.Load(p.GetValue(model)!);
            Run(m, [.. ns.Prepend(1).Distinct().Order()], t, pt, p.GetValue(speculative), r);
            return 0;
        }));
        return cmd;
    }

    static void Run(LongCatModel m, int[] streams, int tokens, int promptTokens, bool speculative, int repeats)
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
            $"prompt {promptTokens} tokens, {tokens} generated per stream, {Kernels.Parallelism.Threads} threads{(speculative ? ", MTP drafting" : "")}, medians of {repeats}");
        Measure(scheduler, 2, Math.Min(8, tokens), promptTokens, speculative);   // warm-up: JIT, pool, thread pool
        var samples = streams.ToDictionary(n => n, _ => new List<(double Aggregate, double PerStream, double Experts)>());
        for (int r = 0; r < repeats; r++)
            foreach (var n in streams) samples[n].Add(Measure(scheduler, n, tokens, promptTokens, speculative));
        double Agg(int n) => Bench.BenchUtil.Median(samples[n].Select(x => x.Aggregate));
        double single = Agg(1);
        Console.WriteLine("| streams | aggregate decode tok/s | per-stream tok/s | vs 1 stream | mean real experts/token/layer |");
        Console.WriteLine("|---:|---:|---:|---:|---:|");
        foreach (var n in streams)
            Console.WriteLine($"| {n} | {Agg(n).ToString("F1", inv)} | {Bench.BenchUtil.Median(samples[n].Select(x => x.PerStream)).ToString("F1", inv)} | {(Agg(n) / single).ToString("F2", inv)}x | {Bench.BenchUtil.Median(samples[n].Select(x => x.Experts)).ToString("F2", inv)} |");
        if (samples.ContainsKey(16))
            Console.WriteLine($"16 streams vs 1: {(Agg(16) / single).ToString("F2", inv)}x the aggregate decode tokens/s of one stream ({Agg(16).ToString("F1", inv)} / {single.ToString("F1", inv)}; issue target >= 6x)");
        else
            Console.WriteLine("16 streams vs 1: not measured (add 16 to --streams)");
        foreach (var n in new[] { 1, streams.Max() }.Distinct()) ProfileStep(m, n, promptTokens, ctx);
    }

    /// <summary>
    /// Where a batched decode step's time goes, outside the scheduler: n sequences prefilled with random prompts, then
    /// one-token steps of all n through <see cref="LongCatModel.ForwardBatch"/>: the median of 5 timed steps, and one
    /// profiled step split by phase (<see cref="Bench.PhaseProfile"/>).
    /// </summary>
    static void ProfileStep(LongCatModel m, int n, int promptTokens, int ctx)
    {
        var inv = CultureInfo.InvariantCulture;
        var rng = new Random(1000 + n);
        int v = m.Config.VocabSize;
        var caches = Enumerable.Range(0, n).Select(_ => m.NewCache(ctx)).ToList();
        foreach (var c in caches) m.Prefill([.. Enumerable.Range(0, promptTokens).Select(_ => rng.Next(v))], c);
        int[][] Step() => [.. Enumerable.Range(0, n).Select(_ => new[] { rng.Next(v) })];
        for (int i = 0; i < 2; i++) m.ForwardBatch(Step(), caches);   // warm-up
        var times = new List<double>();
        for (int i = 0; i < 5; i++)
        {
            var tokens = Step();
            long t0 = Stopwatch.GetTimestamp();
            m.ForwardBatch(tokens, caches);
            times.Add((Stopwatch.GetTimestamp() - t0) / (double)Stopwatch.Frequency);
        }
        double med = Bench.BenchUtil.Median(times);
        var step = Step();
        var prof = Bench.PhaseProfile.Measure(m, () => m.ForwardBatch(step, caches));
        Console.WriteLine($"one decode step of {n} stream(s) outside the scheduler: median {(med * 1e3).ToString("F2", inv)} ms of 5 " +
            $"=> {(n / med).ToString("F1", inv)} tokens/s; profiled step {(prof.Seconds * 1e3).ToString("F2", inv)} ms:");
        prof.Print(Console.Out);
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
