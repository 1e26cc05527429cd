using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using LongCat.Inference;
using LongCat.Inference.Constraints;
using static LongCat.Tests.ConstraintTestSupport;

namespace LongCat.Tests;

/// <summary>
/// Constrained decoding: with random logits through the real sampler, every output parses and validates against
/// its (random) schema, greedy and sampled, over a vocabulary whose tokens split JSON syntax and UTF-8; tool calls
/// always parse with valid arguments; unsupported keywords are refused by name.
/// </summary>
public class ConstrainedDecodingTests
{
    static readonly (TokenVocabulary Vocab, byte[][] Bytes) Split = SplittingVocabulary();

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void RandomSchemasAlwaysGiveValidJson(bool greedy)
    {
        int ended = 0;
        for (int seed = 0; seed < 60; seed++)
        {
            var r = new Random(seed);
            var schemaNode = RandomSchema(r);
            bool strict = r.Next(2) == 0;
            using var schema = JsonDocument.Parse(schemaNode.ToJsonString());
            var g = JsonGrammar.ForSchema(Split.Vocab, schema.RootElement, strict);
            var (text, end, _) = Decode(g, greedy, seed);
            Assert.True(end, $"seed {seed}: no end after 4000 tokens: {text[..Math.Min(200, text.Length)]}");
            ended++;
            using var doc = JsonDocument.Parse(text);
            var why = Validate(doc.RootElement, schema.RootElement, strict);
            Assert.True(why is null, $"seed {seed} schema {schemaNode.ToJsonString()} strict={strict}\noutput {text}\n{why}");
        }
        Assert.Equal(60, ended);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void JsonObjectModeGivesAnObject(bool greedy)
    {
        var g = JsonGrammar.ForJsonObject(Split.Vocab);
        for (int seed = 0; seed < 20; seed++)
        {
            var (text, end, _) = Decode(g, greedy, 100 + seed);
            Assert.True(end, text);
            using var doc = JsonDocument.Parse(text);
            Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
            Assert.DoesNotMatch(@"\s{9}", text);   // whitespace runs are bounded
        }
    }

    [Fact]
    public void RealTokenizersGiveValidJson()
    {
        foreach (var name in new[] { "longcat_style", "qwen3" })
        {
            var tok = LongCat.Tokenization.Tokenizer.Load(Path.Combine(Fixtures.Tokenizer(name), "tokenizer.json"));
            int end = tok.EosTokenId ?? tok.TokenToId("</longcat_s>") ?? tok.TokenToId("<|im_end|>") ?? tok.TokenToId("<|endoftext|>")!.Value;
            var v = TokenVocabulary.For(tok, tok.VocabSize, [end]);
            for (int seed = 0; seed < (name == "qwen3" ? 3 : 10); seed++)
            {
                var r = new Random(500 + seed);
                var schemaNode = RandomSchema(r);
                using var schema = JsonDocument.Parse(schemaNode.ToJsonString());
                var g = JsonGrammar.ForSchema(v, schema.RootElement);
                var (text, ended, _) = Decode(g, seed % 2 == 0, seed);
                Assert.True(ended, $"{name} seed {seed}: {text[..Math.Min(200, text.Length)]}");
                using var doc = JsonDocument.Parse(text);
                Assert.Null(Validate(doc.RootElement, schema.RootElement, false));
            }
        }
    }

    [Fact]
    public void MaskIsExactOnSmallCases()
    {
        // After {"a": the grammar of {"a": integer} allows digits and '-' (and whitespace), not '}' or '"'.
        using var schema = JsonDocument.Parse("""{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"],"additionalProperties":false}""");
        var g = JsonGrammar.ForSchema(Split.Vocab, schema.RootElement);
        var c = g.Start();
        foreach (byte b in "{\"a\":"u8) c.Advance(b);
        var logits = new float[Split.Vocab.Size];
        c.Mask(logits);
        bool Allowed(string s) => Split.Bytes.Select((x, i) => (x, i)).Where(p => p.x is not null && p.x.AsSpan().SequenceEqual(Encoding.UTF8.GetBytes(s))).All(p => !float.IsNegativeInfinity(logits[p.i]));
        Assert.True(Allowed("1") && Allowed("-1") && Allowed("12") && Allowed(" ") && Allowed("0"));
        Assert.False(Allowed("}") || Allowed("\"") || Allowed("1.") || Allowed("0.5") || Allowed("true"));
        Assert.True(float.IsNegativeInfinity(logits[^1]));   // the end token: not complete
        Assert.False(c.IsComplete);
        foreach (byte b in "7}"u8) c.Advance(b);
        Assert.True(c.IsComplete);
        c.Mask(logits.AsSpan().ToArray());
        Assert.Throws<InvalidOperationException>(() => c.Advance((byte)' '));   // nothing after the value
        c.Advance(Split.Vocab.EndTokens[0]);
        Assert.True(c.IsComplete);
    }

    [Fact]
    public void EnumPrefixesAndRequiredKeysAreHonoured()
    {
        using var schema = JsonDocument.Parse("""{"type":"array","items":{"enum":[1,12,"a","ab"]},"minItems":3,"maxItems":3}""");
        var g = JsonGrammar.ForSchema(Split.Vocab, schema.RootElement);
        var c = g.Start();
        foreach (byte b in "[1,12,\"a\""u8) c.Advance(b);
        Assert.Throws<InvalidOperationException>(() => g.Start().Advance((byte)']'));
        var c2 = g.Start();
        foreach (byte b in "[1,1"u8) c2.Advance(b);
        Assert.Throws<InvalidOperationException>(() => c2.Advance((byte)'3'));
    }

    [Fact]
    public void UndeclaredKeysNeverRepeat()
    {
        var g = JsonGrammar.ForJsonObject(Split.Vocab);
        var c = g.Start();
        foreach (byte b in "{\"ab\":1,\"a\":2,\"ab"u8) c.Advance(b);
        var logits = new float[Split.Vocab.Size];
        c.Mask(logits);
        Assert.True(float.IsNegativeInfinity(logits['"']));          // "ab" again: the quote cannot close it
        Assert.False(float.IsNegativeInfinity(logits['c']));         // "abc" is new
        Assert.Throws<InvalidOperationException>(() => c.Advance('"'));
        // Keys closed inside one token are checked too: after {"ab":1 the token ,"  then a , "ab" ... is refused.
        var d = g.Start();
        foreach (byte b in "{\"ab\":1,"u8) d.Advance(b);
        int abQuote = Array.FindIndex(Split.Bytes, x => x is not null && x.AsSpan().SequenceEqual("\"ab\""u8));
        if (abQuote >= 0)
        {
            d.Mask(logits);
            Assert.True(float.IsNegativeInfinity(logits[abQuote]));
        }
        foreach (byte b in "\"abc\":3,\"b\":{\"ab\":1}}"u8) d.Advance(b);   // the same key in a nested object is fine
        Assert.True(d.IsComplete);
    }

    [Theory]
    [InlineData("""{"type":"string","pattern":"a+"}""", "pattern")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"string","minLength":3}}}""", "minLength")]
    [InlineData("""{"oneOf":[{"type":"string"}]}""", "oneOf")]
    [InlineData("""{"$ref":"#/$defs/a"}""", "$ref")]
    [InlineData("""{"type":"number","minimum":0}""", "minimum")]
    [InlineData("""{"type":"string","format":"date-time"}""", "format")]
    [InlineData("""{"type":"array","items":[{"type":"string"}]}""", "items")]
    [InlineData("""{"type":"array","minItems":3,"maxItems":2}""", "maxItems")]
    [InlineData("""{"type":"objet"}""", "type")]
    [InlineData("""false""", "false")]
    [InlineData("""{"enum":[]}""", "enum")]
    [InlineData("""{"type":"string","enum":[1,2]}""", "enum")]
    [InlineData("""{"type":"object","required":["x"],"additionalProperties":false}""", "required")]
    [InlineData("""{"anyOf":[{"type":"string"}],"type":"string"}""", "type")]
    public void UnsupportedKeywordsAreRefusedByName(string schema, string keyword)
    {
        using var doc = JsonDocument.Parse(schema);
        var e = Assert.Throws<UnsupportedSchemaException>(() => JsonSchemaCompiler.Compile(doc.RootElement));
        Assert.Equal(keyword, e.Keyword);
        Assert.Contains(keyword, e.Message);
    }

    static readonly Regex ToolCall = new(@"<longcat_tool_call>\n(.*?)\n</longcat_tool_call>", RegexOptions.Singleline);

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public void ToolCallsAlwaysParseWithValidArguments(bool greedy, bool parallel)
    {
        for (int seed = 0; seed < 25; seed++)
        {
            var r = new Random(1000 + seed);
            var tools = new List<(string Name, JsonObject Schema)>();
            int n = 1 + r.Next(3);
            for (int i = 0; i < n; i++)
            {
                var s = new JsonObject { ["type"] = "object", ["properties"] = new JsonObject { ["q"] = RandomSchema(r, 1), ["n"] = new JsonObject { ["type"] = "integer" } } };
                if (r.Next(2) == 0) s["required"] = new JsonArray("q");
                tools.Add(($"tool_{i}" + (i == 1 ? "_x" : ""), s));
            }
            string? named = r.Next(3) == 0 ? tools[^1].Name : null;
            var specs = tools.Select(t => new ToolGrammarSpec(t.Name, JsonDocument.Parse(t.Schema.ToJsonString()).RootElement)).ToList();
            var g = ToolCallGrammar.For(Split.Vocab, specs, named, parallel);
            var (text, end, _) = Decode(g, greedy, seed);
            Assert.True(end, text);
            var calls = ToolCall.Matches(text);
            Assert.NotEmpty(calls);
            Assert.True(parallel || calls.Count == 1);
            Assert.Equal(text, string.Join("\n", calls.Select(m => m.Value)));
            foreach (Match m in calls)
            {
                using var doc = JsonDocument.Parse(m.Groups[1].Value);
                Assert.StartsWith("{\"name\": \"", m.Groups[1].Value);
                string name = doc.RootElement.GetProperty("name").GetString()!;
                var tool = tools.Single(t => t.Name == name);
                if (named is not null) Assert.Equal(named, name);
                using var schema = JsonDocument.Parse(tool.Schema.ToJsonString());
                Assert.Null(Validate(doc.RootElement.GetProperty("arguments"), schema.RootElement, strict: true));
            }
        }
    }

    [Fact]
    public void ToolCallGrammarRefusesBadInput()
    {
        using var p = JsonDocument.Parse("""{"type":"object","properties":{"a":{"type":"string","pattern":"x"}}}""");
        var e = Assert.Throws<UnsupportedSchemaException>(() => ToolCallGrammar.Node([new("f", p.RootElement)]));
        Assert.Equal("pattern", e.Keyword);
        Assert.StartsWith("tools[0]", e.Path);
        Assert.Throws<ArgumentException>(() => ToolCallGrammar.Node([new("f", null)], requiredName: "g"));
        Assert.Throws<ArgumentException>(() => ToolCallGrammar.Node([new("f", null), new("f", null)]));
        Assert.Throws<ArgumentException>(() => ToolCallGrammar.Node([]));
        using var s = JsonDocument.Parse("""{"type":"string"}""");
        Assert.Equal("type", Assert.Throws<UnsupportedSchemaException>(() => ToolCallGrammar.Node([new("f", s.RootElement)])).Keyword);
    }

    [Fact]
    public void ToolArgumentsOfAnAnyOfSchemaMayFollowEitherObject()
    {
        using var p = JsonDocument.Parse("""{"anyOf":[{"type":"object","properties":{"a":{"const":1}},"required":["a"]},{"type":"string"},{"type":"object","properties":{"b":{"const":2}},"required":["b"]}]}""");
        var g = ToolCallGrammar.For(Split.Vocab, [new("f", p.RootElement)]);
        foreach (var args in new[] { "{\"a\":1}", "{\"b\":2}" })
        {
            var c = g.Start();
            foreach (byte b in Encoding.UTF8.GetBytes($"<longcat_tool_call>\n{{\"name\": \"f\", \"arguments\": {args}}}\n</longcat_tool_call>")) c.Advance(b);
            Assert.True(c.IsComplete);
        }
        Assert.Throws<InvalidOperationException>(() =>
        {
            var c = g.Start();
            foreach (byte b in Encoding.UTF8.GetBytes("<longcat_tool_call>\n{\"name\": \"f\", \"arguments\": \"")) c.Advance(b);
        });
    }
}
