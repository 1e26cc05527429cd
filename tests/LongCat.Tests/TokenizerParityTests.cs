using System.Text.Json;
using LongCat.Tokenization;

namespace LongCat.Tests;

/// <summary>
/// Exact parity with the Hugging Face <c>tokenizers</c> golden cases (tests/fixtures/tokenizers, 206 inputs per
/// tokenizer): ids, token strings, code-point offsets, decoded text with and without special tokens.
/// </summary>
public class TokenizerParityTests
{
    public static readonly TheoryData<string> Names = new() { "deepseek_v3", "qwen3", "longcat_style" };

    internal sealed record GoldenCase(string Text, int[] Ids, string[] Tokens, int[][] Offsets, string Decoded, string DecodedSkipSpecial, string Category);

    internal static List<GoldenCase> ReadCases(string path)
    {
        var list = new List<GoldenCase>();
        foreach (var line in File.ReadLines(path))
        {
            if (line.Length == 0) continue;
            using var doc = JsonDocument.Parse(line);
            var r = doc.RootElement;
            list.Add(new GoldenCase(
                r.GetProperty("text").GetString()!,
                [.. r.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32())],
                [.. r.GetProperty("tokens").EnumerateArray().Select(x => x.GetString()!)],
                [.. r.GetProperty("offsets").EnumerateArray().Select(o => o.EnumerateArray().Select(x => x.GetInt32()).ToArray())],
                r.GetProperty("decoded").GetString()!,
                r.TryGetProperty("decoded_skip_special", out var ds) ? ds.GetString()! : r.GetProperty("decoded").GetString()!,
                r.TryGetProperty("category", out var c) ? c.GetString()! : ""));
        }
        return list;
    }

    static readonly Dictionary<string, Tokenizer> s_cache = [];

    internal static Tokenizer Load(string name)
    {
        lock (s_cache)
        {
            if (!s_cache.TryGetValue(name, out var t)) s_cache[name] = t = Tokenizer.Load(Fixtures.Tokenizer(name));
            return t;
        }
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void EveryGoldenCaseMatches(string name)
    {
        var tok = Load(name);
        var cases = ReadCases(Path.Combine(Fixtures.Tokenizer(name), "cases.jsonl"));
        Assert.Equal(206, cases.Count);
        var failures = new List<string>();
        foreach (var c in cases)
        {
            var e = tok.Encode(c.Text);
            var offsets = e.Offsets.Select(o => new[] { o.Start, o.End }).ToArray();
            string? what = null;
            if (!e.Ids.SequenceEqual(c.Ids)) what = $"ids {Show(e.Ids)} != {Show(c.Ids)}";
            else if (!e.Tokens.SequenceEqual(c.Tokens)) what = $"tokens {string.Join("|", e.Tokens)} != {string.Join("|", c.Tokens)}";
            else if (!offsets.Select(o => $"{o[0]},{o[1]}").SequenceEqual(c.Offsets.Select(o => $"{o[0]},{o[1]}")))
                what = $"offsets {string.Join(" ", offsets.Select(o => $"[{o[0]},{o[1]}]"))} != {string.Join(" ", c.Offsets.Select(o => $"[{o[0]},{o[1]}]"))}";
            else if (tok.Decode(c.Ids) != c.Decoded) what = $"decoded {JsonSerializer.Serialize(tok.Decode(c.Ids))} != {JsonSerializer.Serialize(c.Decoded)}";
            else if (tok.Decode(c.Ids, skipSpecialTokens: true) != c.DecodedSkipSpecial) what = "decoded_skip_special differs";
            else if (!tok.EncodeToIds(c.Text).SequenceEqual(c.Ids)) what = "EncodeToIds differs from Encode";
            if (what is not null) failures.Add($"[{c.Category}] {JsonSerializer.Serialize(c.Text)[..Math.Min(80, JsonSerializer.Serialize(c.Text).Length)]}: {what}");
        }
        Assert.True(failures.Count == 0, $"{name}: {failures.Count}/{cases.Count} cases differ:\n" + string.Join("\n", failures.Take(15)));
    }

    static string Show(int[] ids) => "[" + string.Join(",", ids.Take(40)) + (ids.Length > 40 ? ",..." : "") + "]";
}
