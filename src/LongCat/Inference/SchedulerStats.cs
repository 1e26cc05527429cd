namespace LongCat.Inference;

/// <summary>A snapshot of a <see cref="BatchScheduler"/>'s counters and gauges (the server's /metrics).</summary>
public sealed record SchedulerStats
{
    /// <summary>Requests waiting for a slot or KV-cache room.</summary>
    public int Queued { get; init; }
    /// <summary>Sequences admitted and not finished (prefilling or decoding).</summary>
    public int Running { get; init; }
    public long KvCacheBytesRented { get; init; }
    public long KvCacheBytesIdle { get; init; }
    public long KvCacheBytesCapacity { get; init; }
    /// <summary>Token capacity of the main caches of running sequences.</summary>
    public long KvCacheTokensRented { get; init; }
    public long Submitted { get; init; }
    public long Rejected { get; init; }
    public long Finished { get; init; }
    public long Cancelled { get; init; }
    public long Failed { get; init; }
    public long PromptTokens { get; init; }
    /// <summary>Prompt tokens run through the model: a prompt shared by n choices counts once.</summary>
    public long PrefillTokens { get; init; }
    public long CompletionTokens { get; init; }
    /// <summary>Batched forward steps run.</summary>
    public long Steps { get; init; }
    public long DraftedTokens { get; init; }
    public long AcceptedDrafts { get; init; }
    /// <summary>Sum over generated tokens and layers of the real experts used, and the number of such pairs.</summary>
    public long RealExpertSum { get; init; }
    public long RealExpertPairs { get; init; }
    /// <summary>Generated tokens per second over the last few seconds (all sequences together).</summary>
    public double RecentTokensPerSecond { get; init; }

    public double MtpAcceptanceRate => DraftedTokens == 0 ? 0 : (double)AcceptedDrafts / DraftedTokens;
    /// <summary>Mean real experts per token per layer.</summary>
    public double MeanRealExperts => RealExpertPairs == 0 ? 0 : (double)RealExpertSum / RealExpertPairs;
}
