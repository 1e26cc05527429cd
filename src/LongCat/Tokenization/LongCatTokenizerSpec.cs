namespace LongCat.Tokenization;

/// <summary>
/// LongCat-Flash's tokenizer conventions (spec section 3): the three pre-tokenizer Split regexes of the release
/// (GPT-4 style with single digits, full-width punctuation, CJK segmentation) and its special tokens.
/// </summary>
public static class LongCatTokenizerSpec
{
    /// <summary>(a) GPT-4 style words, contractions (case-folded), single digits, punctuation, white space.</summary>
    public const string WordPattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>(b) Full-width punctuation and letters (U+FF01-FF0F, U+FF1A-FF5E), quotes U+2018-201F, U+3000-3002, 《》「」【】.</summary>
    public const string FullWidthPattern = " ?[\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002\u300A\u300B\u300C\u300D\u3010\u3011]+";

    /// <summary>(c) CJK runs: U+4E00-9FA5, U+0800-4E00 (a wide range: kana, CJK symbols, Ext-A, punctuation ...), Hangul U+AC00-D7FF.</summary>
    public const string CjkPattern = "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+";

    /// <summary>The three Split patterns in order; each re-splits the pieces of the one before.</summary>
    public static readonly IReadOnlyList<string> SplitPatterns = [WordPattern, FullWidthPattern, CjkPattern];

    /// <summary>Unknown token (id 0).</summary>
    public const string Unk = "<unk>";
    /// <summary>Beginning of sequence (id 1).</summary>
    public const string Bos = "<s>";
    /// <summary>End of sequence (id 2).</summary>
    public const string Eos = "</s>";
    /// <summary>Padding (id 3).</summary>
    public const string Pad = "<pad>";
    /// <summary>End of an assistant turn in the chat format.</summary>
    public const string EndOfTurn = "</longcat_s>";

    /// <summary>Special tokens with their ids 0..4, as the trainer lays them out.</summary>
    public static readonly IReadOnlyList<string> SpecialTokens = [Unk, Bos, Eos, Pad, EndOfTurn];

    /// <summary>The pre-tokenizer steps (three Splits, then ByteLevel without prefix space or regex).</summary>
    internal static List<PreTokenizerStep> PreTokenizerSteps() =>
    [
        .. SplitPatterns.Select(p => (PreTokenizerStep)new SplitStep(CodePointRegex.Compile(p), SplitBehavior.Isolated, false)),
        new ByteLevelStep(addPrefixSpace: false, useRegex: false),
    ];
}
