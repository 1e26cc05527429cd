using System.Text.Json;
using LongCat.Tokenization;

namespace LongCat.Tests;

/// <summary>
/// Issue 15: NFC must be HF tokenizers' NFC, which follows Unicode 9.0 (marks added later are starters).
/// Golden data: tests/fixtures/tokenizers/hf_nfc/sweep.jsonl, made by HF tokenizers 0.23.2 (tools/hf-golden):
/// the issue's minimal inputs and every combining mark (ccc != 0 in Unicode 14.0, and every mark of Unicode
/// 10.0-14.0) in ten contexts, encoded by the three fixture tokenizers.
/// </summary>
public class TokenizerNfcSweepTests
{
    sealed record Expected(int[] Ids, (int, int)[] Offsets, string Decoded);

    sealed record SweepCase(string Text, string Category, Dictionary<string, Expected> ByTokenizer);

    static readonly Lazy<List<SweepCase>> s_cases = new(() =>
    {
        var list = new List<SweepCase>();
        foreach (var line in File.ReadLines(Path.Combine(Fixtures.Root, "tokenizers", "hf_nfc", "sweep.jsonl")))
        {
            if (line.Length == 0) continue;
            using var doc = JsonDocument.Parse(line);
            var r = doc.RootElement;
            var by = new Dictionary<string, Expected>();
            foreach (var p in r.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.Object) continue;
                by[p.Name] = new Expected(
                    [.. p.Value.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32())],
                    [.. p.Value.GetProperty("offsets").EnumerateArray().Select(o => (o[0].GetInt32(), o[1].GetInt32()))],
                    p.Value.GetProperty("decoded").GetString()!);
            }
            list.Add(new SweepCase(r.GetProperty("text").GetString()!, r.GetProperty("category").GetString()!, by));
        }
        return list;
    });

    /// <summary>The cases of one category, or all; the counts pin the file so a truncated one fails.</summary>
    static List<SweepCase> Cases(string? category = null)
    {
        var all = s_cases.Value;
        Assert.Equal(11270, all.Count);
        return category is null ? all : all.Where(c => c.Category == category).ToList();
    }

    static List<string> Mismatches(string tokenizer, IEnumerable<SweepCase> cases)
    {
        var tok = TokenizerParityTests.Load(tokenizer);
        var failures = new List<string>();
        foreach (var c in cases)
        {
            var want = c.ByTokenizer[tokenizer];
            var e = tok.Encode(c.Text);
            string? what = null;
            if (!e.Ids.SequenceEqual(want.Ids)) what = $"ids [{string.Join(",", e.Ids)}] != [{string.Join(",", want.Ids)}]";
            else if (!e.Offsets.SequenceEqual(want.Offsets))
                what = $"offsets {string.Join(" ", e.Offsets)} != {string.Join(" ", want.Offsets)}";
            else if (tok.Decode(want.Ids) != want.Decoded) what = $"decoded {Escape(tok.Decode(want.Ids))} != {Escape(want.Decoded)}";
            if (what is not null) failures.Add($"[{c.Category}] {Escape(c.Text)}: {what}");
        }
        return failures;
    }

    static string Escape(string s) =>
        string.Concat(s.EnumerateRunes().Select(r => r.Value is >= 0x20 and < 0x7F ? r.ToString() : $"\\u{{{r.Value:X4}}}"));

    [Fact]
    public void Issue15MinimalInputsMatchHuggingFace()
    {
        // Reordering across a Unicode 10.0+ mark, a composition it blocks, and one that Unicode 9.0 does not know.
        var cases = Cases("issue15");
        Assert.Equal(7, cases.Count);
        var failures = Mismatches("qwen3", cases);
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Theory]
    [MemberData(nameof(TokenizerParityTests.Names), MemberType = typeof(TokenizerParityTests))]
    public void CombiningMarkSweepMatchesHuggingFace(string tokenizer)
    {
        var cases = Cases();
        var failures = Mismatches(tokenizer, cases);
        Assert.True(failures.Count == 0,
            $"{tokenizer}: {failures.Count}/{cases.Count} sweep inputs differ from HF:\n" + string.Join("\n", failures.Take(15)));
    }

    [Fact]
    public void NfcTablesAreUnicode9()
    {
        Assert.Equal("9.0.0", UnicodeTables.NfcUnicodeVersion);
        Assert.Equal(230, UnicodeTables.Ccc(0x0301));
        Assert.Equal(230, UnicodeTables.Ccc(0x1DFB));         // COMBINING DELETION MARK, Unicode 9.0
        Assert.Equal(7, UnicodeTables.Ccc(0x1E94A));          // ADLAM NUKTA, Unicode 9.0
        Assert.Equal(0, UnicodeTables.Ccc(0x1DF9));           // COMBINING WIDE INVERTED BRIDGE BELOW, 10.0 (ccc 220 there)
        Assert.Equal(0, UnicodeTables.Ccc(0x0C3C));           // TELUGU SIGN NUKTA, 14.0 (ccc 7 there)
        Assert.Equal(-1, UnicodeTables.Compose(0x11935, 0x11930)); // DIVES AKURU VOWEL SIGN O, 13.0
        var d = new List<int>();
        UnicodeTables.Decompose(0x11938, d);
        Assert.Equal([0x11938], d);
        Assert.False(UnicodeTables.IsNfcSensitive(0x1DF9));
        Assert.Equal(0x1E08, UnicodeTables.Compose(0x00C7, 0x0301)); // older compositions stay
    }
}
