using System.Threading.Channels;

namespace LongCat.Inference;

/// <summary>
/// A request submitted to a <see cref="BatchScheduler"/>: its tokens arrive on <see cref="Tokens"/> as the batched
/// steps decide them; <see cref="Completion"/> gives the stop reason and counts when it ends. Cancel it (or the
/// token given at submit) and the scheduler drops it and frees its KV cache before its next step.
/// </summary>
public sealed class ScheduledSequence
{
    readonly Action _cancel;

    internal ScheduledSequence(ChannelReader<GeneratedToken> tokens, Task<GenerationResult> completion, int promptTokens, Action cancel)
    {
        Tokens = tokens;
        Completion = completion;
        PromptTokens = promptTokens;
        _cancel = cancel;
    }

    /// <summary>Generated tokens, in order; the channel completes when the sequence ends.</summary>
    public ChannelReader<GeneratedToken> Tokens { get; }

    /// <summary>The result when the sequence ended (StopReason.Cancelled after a cancel).</summary>
    public Task<GenerationResult> Completion { get; }

    /// <summary>Prompt length in tokens.</summary>
    public int PromptTokens { get; }

    /// <summary>Asks the scheduler to stop this sequence and free its cache (idempotent).</summary>
    public void Cancel() => _cancel();
}
