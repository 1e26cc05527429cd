namespace LongCat.Tokenization;

/// <summary>
/// A token of tokenizer.json's <c>added_tokens</c>: matched in the input text before pre-tokenization
/// (even when special tokens are not added), never split by BPE.
/// </summary>
/// <param name="Id">Its id (the model vocabulary's id when the content is also a vocabulary entry).</param>
/// <param name="Content">The exact text it matches (case-sensitive).</param>
/// <param name="Special">Special tokens are dropped by <c>Decode(skipSpecialTokens: true)</c>.</param>
/// <param name="SingleWord">Matches only when not inside a word.</param>
/// <param name="LStrip">The match swallows white space on its left.</param>
/// <param name="RStrip">The match swallows white space on its right.</param>
/// <param name="Normalized">Matched in the normalized text rather than the raw input.</param>
public sealed record AddedToken(int Id, string Content, bool Special, bool SingleWord = false, bool LStrip = false,
    bool RStrip = false, bool Normalized = false);
