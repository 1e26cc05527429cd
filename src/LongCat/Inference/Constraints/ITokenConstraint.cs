namespace LongCat.Inference.Constraints;

/// <summary>
/// The per-sequence state of a constraint on generated tokens (structured output, tool calls). The
/// <see cref="Sampler"/> masks the logits with <see cref="Mask"/> before every draw (greedy, sampled, MTP draft and
/// verification alike), so a masked token can never be chosen, and reports every emitted token to
/// <see cref="Advance"/>. Not thread-safe: one instance per sequence.
/// </summary>
public interface ITokenConstraint
{
    /// <summary>Sets the logit of every token that cannot come next to negative infinity.</summary>
    void Mask(Span<float> logits);

    /// <summary>Moves past an emitted token; throws <see cref="InvalidOperationException"/> if it was masked.</summary>
    void Advance(int token);

    /// <summary>True when the text so far is complete (an end token is allowed now).</summary>
    bool IsComplete { get; }
}
