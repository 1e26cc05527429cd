using LongCat.Tokenization;

namespace LongCat.Tests;

/// <summary>Oniguruma semantics of the pre-tokenizer regex engine (code points, Unicode folding, \s).</summary>
public class TokenizerRegexTests
{
    static string Split(string pattern, string text)
    {
        var re = CodePointRegex.Compile(pattern);
        var cps = text.EnumerateRunes().Select(r => r.Value).ToArray();
        var matches = new List<(int, int)>();
        re.FindAll(cps, matches);
        return string.Join("|", matches.Select(m => string.Concat(cps[m.Item1..m.Item2].Select(char.ConvertFromUtf32))));
    }

    const string Qwen = LongCatTokenizerSpec.WordPattern;

    [Fact]
    public void AstralLettersAndDigitsAreSingleCodePoints()
    {
        Assert.Equal(" |𝟏|𝟐", Split(Qwen, " 𝟏𝟐"));          // .NET Regex gives one piece here
        Assert.Equal("𝐇𝐞𝐥𝐥𝐨| 𐌰", Split(Qwen, "𝐇𝐞𝐥𝐥𝐨 𐌰"));
        Assert.Equal("𠀀𠀁", Split(@"\p{L}+", "𠀀𠀁"));
        Assert.Equal("😀|a", Split(@"[^a]|a", "😀a"));
    }

    [Fact]
    public void CaseInsensitiveGroupsFoldLongS()
    {
        Assert.Equal("x|'ſ|mall", Split(Qwen, "x'ſmall"));
        Assert.Equal("we|'LL", Split(Qwen, "we'LL"));
        Assert.Equal("K", Split("(?i:k)", "K"));                  // KELVIN SIGN folds to k
        Assert.Equal("", Split("(?i:[^s])", "sSſ"));              // folding happens before negation
        Assert.Equal("İ", Split("(?i:İ)", "İi") );                 // no Turkic folding
    }

    [Fact]
    public void WhiteSpaceIsUnicodeWhiteSpace()
    {
        foreach (var ws in new[] { "\u0085", "\u00A0", "\u2028", "\u3000", "\u000B", "\u000C", "\t" })
            Assert.Equal(ws, Split(@"\s", ws));
        foreach (var notWs in new[] { "\u001C", "\u001F", "\u200B", "\u180E" })
            Assert.Equal("", Split(@"\s", notWs));
    }

    [Fact]
    public void QuantifiersLookaroundAndClasses()
    {
        Assert.Equal("  | |x", Split(@"\s+(?!\S)|\s+|x", "   x"));
        Assert.Equal("xxy", Split("x+?y", "xxy"));
        Assert.Equal("aaa", Split("a*+", "aaa"));
        Assert.Equal("", Split("a*+a", "aaa"));                 // possessive gives nothing back
        Assert.Equal("dee", Split("(?>de|d)e", "dee"));
        Assert.Equal("", Split("(?>de|d)e", "de"));             // an atomic group is not re-entered
        Assert.Equal("b", Split("(?<=a)b", "abcb"));
        Assert.Equal("123|45", Split(@"\p{N}{1,3}", "12345"));
        Assert.Equal("b|d", Split("[a-e&&[^ace]]", "abcde"));
        Assert.Equal("-|]|\\", Split(@"[\-\]\\]", "-]\\"));
        Assert.Equal("q", Split(@"\bq", "aq q"));
        Assert.Equal("{2", Split("{2", "{2"));                    // an invalid interval is a literal
        Assert.Equal("中文|日本", Split("[一-龥぀-ゟ゠-ヿ]+", "中文 日本"));
    }

    [Fact]
    public void EmptyMatchesFollowOnigurumaIteration()
    {
        // Empty matches are returned once per position, never twice at the end of the previous match.
        var re = CodePointRegex.Compile("x*");
        var m = new List<(int, int)>();
        re.FindAll(new[] { 'a', 'x', 'x', 'b' }.Select(c => (int)c).ToArray(), m);
        Assert.Equal([(0, 0), (1, 3), (4, 4)], m);
    }

    [Theory]
    [InlineData("(a)\\1", "backreferences")]
    [InlineData("\\p{Han}", "unsupported Unicode property")]
    [InlineData("[[:alpha:]]", "POSIX bracket")]
    [InlineData("(?<=a+)b", "lookbehind must have a fixed length")]
    [InlineData("(a", "missing ')'")]
    [InlineData("a)", "unmatched ')'")]
    [InlineData("*a", "nothing to repeat")]
    [InlineData("[a", "unterminated character class")]
    [InlineData("(?:)*", "can match empty")]
    public void UnsupportedSyntaxIsNamed(string pattern, string message)
    {
        var e = Assert.Throws<ArgumentException>(() => CodePointRegex.Compile(pattern));
        Assert.Contains(message, e.Message);
    }
}
