namespace LongCat.Tokenization;

/// <summary>
/// The result of encoding one text: token ids, their vocabulary strings, and for each token the span of
/// the original text it came from, in Unicode code points (Hugging Face's char offsets, not UTF-16 indices).
/// </summary>
/// <param name="Ids">Token ids.</param>
/// <param name="Tokens">Token strings (byte-level characters for BPE tokens; the matched text for added tokens).</param>
/// <param name="Offsets">Per token [Start, End) in code points of the input. Tokens that split one character all
/// carry the whole character's span.</param>
public sealed record TokenizedText(int[] Ids, string[] Tokens, (int Start, int End)[] Offsets)
{
    /// <summary>Number of tokens.</summary>
    public int Count => Ids.Length;
}
