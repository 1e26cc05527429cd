namespace LongCat.Inference;

/// <summary>The scheduler's wait queue is full: try again later (an HTTP server answers 429 with Retry-After).</summary>
public sealed class SchedulerBusyException(string message, TimeSpan retryAfter) : Exception(message)
{
    /// <summary>A hint for when a slot may be free.</summary>
    public TimeSpan RetryAfter { get; } = retryAfter;
}
