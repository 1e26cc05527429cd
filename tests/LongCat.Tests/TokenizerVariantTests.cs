using System.Text.Json.Nodes;
using LongCat.Tokenization;

namespace LongCat.Tests;

/// <summary>
/// Parity on variants of the longcat_style tokenizer that exercise the components the release tokenizers do not
/// use (GPT-2 ByteLevel regex and prefix space, trim_offsets, ignore_merges, Split behaviors, invert, lookaround,
/// Digits, added-token flags, NFC in a Sequence); golden data from HF tokenizers (tests/fixtures/tokenizers/variants).
/// </summary>
public class TokenizerVariantTests
{
    public static readonly TheoryData<string> Variants = new()
    {
        "gpt2", "gpt2_no_prefix", "llama3_style", "o200k_style", "behaviors", "invert_lookaround", "digits_prefix", "added_flags",
    };

    internal static Tokenizer Build(string variant)
    {
        var dir = Path.Combine(Fixtures.Root, "tokenizers");
        var tok = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "longcat_style", "tokenizer.json")))!.AsObject();
        var all = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "variants", "variants.json")))!.AsObject();
        foreach (var (key, value) in all[variant]!.AsObject())
        {
            if (key == "model")
                foreach (var (mk, mv) in value!.AsObject()) tok["model"]![mk] = mv!.DeepClone();
            else if (key == "extra_added_tokens")
                foreach (var t in value!.AsArray()) tok["added_tokens"]!.AsArray().Add(t!.DeepClone());
            else tok[key] = value!.DeepClone();
        }
        return Tokenizer.FromJson(tok.ToJsonString(), $"variant {variant}");
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void VariantMatchesHuggingFace(string variant)
    {
        var tok = Build(variant);
        var cases = TokenizerParityTests.ReadCases(Path.Combine(Fixtures.Root, "tokenizers", "variants", $"cases_{variant}.jsonl"));
        Assert.True(cases.Count >= 200);
        var failures = new List<string>();
        foreach (var c in cases)
        {
            var e = tok.Encode(c.Text);
            bool ok = e.Ids.SequenceEqual(c.Ids) && e.Tokens.SequenceEqual(c.Tokens)
                && e.Offsets.Select(o => (o.Start, o.End)).SequenceEqual(c.Offsets.Select(o => (o[0], o[1])))
                && tok.Decode(c.Ids) == c.Decoded && tok.Decode(c.Ids, skipSpecialTokens: true) == c.DecodedSkipSpecial;
            if (!ok) failures.Add($"{System.Text.Json.JsonSerializer.Serialize(c.Text)}: got {string.Join("|", e.Tokens)} {string.Join(" ", e.Offsets)}, want {string.Join("|", c.Tokens)}");
        }
        Assert.True(failures.Count == 0, $"{variant}: {failures.Count} differ:\n" + string.Join("\n", failures.Take(10)));
    }
}
