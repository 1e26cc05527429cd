namespace LongCat.Inference;

/// <summary>A prompt that leaves no room for a reply in the context (the server's <c>context_length_exceeded</c>).</summary>
public sealed class ContextLengthExceededException(int promptTokens, int contextLength)
    : ArgumentException($"the prompt has {promptTokens} tokens, which leaves no room in the context of {contextLength} tokens")
{
    public int PromptTokens { get; } = promptTokens;
    public int ContextLength { get; } = contextLength;
}
