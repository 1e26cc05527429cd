namespace LongCat.Inference;

/// <summary>Limits of a <see cref="BatchScheduler"/>: how many sequences run, how much KV cache exists, how many wait.</summary>
public sealed record SchedulerOptions
{
    /// <summary>Sequences decoded together in one batched forward, at most.</summary>
    public int MaxRunningSequences { get; init; } = 64;
    /// <summary>Bytes of KV cache (main and MTP, rented and idle) the pool may hold; allocated as requests arrive.</summary>
    public long KvCacheBytes { get; init; } = 1L << 30;
    /// <summary>Requests waiting for a slot or for KV-cache room, at most; beyond that, submits are refused.</summary>
    public int MaxQueuedRequests { get; init; } = 256;
    /// <summary>Prompt tokens prefilled per step over all admitted sequences, so a long prompt does not stall decoding.</summary>
    public int PrefillChunkTokens { get; init; } = 256;
    /// <summary>Context length (prompt + completion) of any sequence; null = max_position_embeddings.</summary>
    public int? ContextLength { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the limit that is out of range.</summary>
    public void Validate()
    {
        if (MaxRunningSequences < 1 || MaxRunningSequences > 4096) throw new ArgumentException($"max running sequences = {MaxRunningSequences} is invalid: must be in 1..4096");
        if (KvCacheBytes < 1) throw new ArgumentException($"KV-cache size = {KvCacheBytes} bytes is invalid: must be positive");
        if (MaxQueuedRequests < 0 || MaxQueuedRequests > 1_000_000) throw new ArgumentException($"max queued requests = {MaxQueuedRequests} is invalid: must be in 0..1000000");
        if (PrefillChunkTokens < 1) throw new ArgumentException($"prefill chunk = {PrefillChunkTokens} is invalid: must be at least 1");
        if (ContextLength is < 2) throw new ArgumentException($"context length = {ContextLength} is invalid: must be at least 2");
    }
}
