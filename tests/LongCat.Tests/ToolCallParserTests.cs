using System.Text.Json.Nodes;
using LongCat.Inference;
using LongCat.Tokenization;

namespace LongCat.Tests;

/// <summary>The incremental reply parser: calls, validation, thinking, and split-invariance (a fuzz over split points).</summary>
public class ToolCallParserTests
{
    static readonly ToolDefinition Weather = new("get_weather", "",
        """{"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "unit": {"enum": ["C", "F"]}}, "required": ["city"], "additionalProperties": false}""");
    static readonly ToolDefinition Now = new("now", "", "{}");
    static readonly ToolDefinition[] Tools = [Weather, Now];

    /// <summary>Runs the parser over <paramref name="parts"/>; merges pieces of one kind as a client would.</summary>
    static List<ReplyPiece> Run(IEnumerable<string> parts, ToolCallStyle style = ToolCallStyle.Json, IReadOnlyList<ToolDefinition>? tools = null)
    {
        int n = 0;
        var p = new ToolCallParser(tools ?? Tools, style, () => $"id{n++}");
        var all = new List<ReplyPiece>();
        foreach (var s in parts) all.AddRange(p.Push(s));
        all.AddRange(p.Flush());
        var merged = new List<ReplyPiece>();
        foreach (var x in all)
            if (merged.Count > 0 && merged[^1].Kind == x.Kind && x.Kind != ReplyPieceKind.ToolCall) merged[^1] = merged[^1] with { Text = merged[^1].Text + x.Text };
            else merged.Add(x);
        return merged;
    }

    static string Call(string json) => $"<longcat_tool_call>\n{json}\n</longcat_tool_call>";

    [Fact]
    public void CallsBackToBackAreParsedWithTextBefore()
    {
        var r = Run(["Sure.\n" + Call("""{"name": "get_weather", "arguments": {"city": "Paris"}}""") + "\n" + Call("""{"name": "now", "arguments": {}}""") + "\n"]);
        Assert.Equal(3, r.Count);
        Assert.Equal(new ReplyPiece(ReplyPieceKind.Text, "Sure.\n"), r[0]);
        Assert.Equal(new ToolCall("id0", "get_weather", """{"city":"Paris"}"""), r[1].Call);
        Assert.Equal(new ToolCall("id1", "now", "{}"), r[2].Call);
    }

    [Theory]
    [InlineData("""{"name": "get_weather", "arguments": {"days": 2}}""")]                  // required city missing
    [InlineData("""{"name": "get_weather", "arguments": {"city": 5}}""")]                   // wrong type
    [InlineData("""{"name": "get_weather", "arguments": {"city": "x", "days": 1.5}}""")]    // not an integer
    [InlineData("""{"name": "get_weather", "arguments": {"city": "x", "unit": "K"}}""")]    // not in the enum
    [InlineData("""{"name": "get_weather", "arguments": {"city": "x", "extra": 1}}""")]     // additionalProperties false
    [InlineData("""{"name": "nope", "arguments": {}}""")]                                    // unknown tool
    [InlineData("""{"name": "now", "arguments": [1]}""")]                                    // arguments not an object
    [InlineData("""{"name": "now", "arguments": {}""")]                                      // bad JSON
    [InlineData("""{"name": "now", "arguments": {}, "x": 1}""")]                             // extra key
    [InlineData("not json at all")]
    public void MalformedCallsBecomeText(string body)
    {
        string text = "a " + Call(body) + " b";
        var r = Run([text]);
        Assert.Equal([new ReplyPiece(ReplyPieceKind.Text, text)], r);
    }

    [Fact]
    public void ArgumentsAsAJsonStringAndValidSchemaCasesAreAccepted()
    {
        var r = Run([Call("""{"name": "get_weather", "arguments": "{\"city\": \"Rome\", \"days\": 3, \"unit\": \"C\"}"}""")]);
        Assert.Equal("""{"city":"Rome","days":3,"unit":"C"}""", Assert.Single(r).Call!.Arguments);
        Assert.Equal("""{"city":"北京"}""", Assert.Single(Run([Call("""{"name": "get_weather", "arguments": {"city": "北京"}}""")])).Call!.Arguments);
    }

    [Fact]
    public void UnclosedCallAtTheEndIsText()
    {
        string text = "x <longcat_tool_call>\n{\"name\": \"now\", \"argu";
        Assert.Equal([new ReplyPiece(ReplyPieceKind.Text, text)], Run([text]));
        // Without tools the tags are ordinary text.
        string call = Call("""{"name": "now", "arguments": {}}""");
        Assert.Equal([new ReplyPiece(ReplyPieceKind.Text, call)], Run([call], tools: []));
    }

    [Fact]
    public void XmlCallsUseTheSchemaForValueTypes()
    {
        string text = "<longcat_tool_call>get_weather\n<longcat_arg_key>city</longcat_arg_key>\n<longcat_arg_value>San José</longcat_arg_value>\n" +
            "<longcat_arg_key>days</longcat_arg_key>\n<longcat_arg_value>3</longcat_arg_value>\n</longcat_tool_call>" +
            "<longcat_tool_call>now\n</longcat_tool_call>";
        var r = Run([text], ToolCallStyle.Xml);
        Assert.Equal(2, r.Count);
        Assert.Equal(new ToolCall("id0", "get_weather", """{"city":"San José","days":3}"""), r[0].Call);
        Assert.Equal(new ToolCall("id1", "now", "{}"), r[1].Call);
        string bad = "<longcat_tool_call>get_weather\n<longcat_arg_key>days</longcat_arg_key>\n<longcat_arg_value>three</longcat_arg_value>\n</longcat_tool_call>";
        Assert.Equal([new ReplyPiece(ReplyPieceKind.Text, bad)], Run([bad], ToolCallStyle.Xml));
        // Rendered calls parse back to themselves.
        var call = new ToolCall("id0", "get_weather", """{"city":"a\"b","days":1}""");
        Assert.Equal(call, Assert.Single(Run([ToolCallFormat.Call(call, ToolCallStyle.Xml)], ToolCallStyle.Xml)).Call);
        Assert.Equal(call, Assert.Single(Run([ToolCallFormat.Call(call, ToolCallStyle.Json)])).Call);
    }

    [Fact]
    public void ThinkingIsSplitIntoReasoning()
    {
        var r = Run(["<longcat_think>\nstep 1 < 2\n</longcat_think>\nThe answer is 3."], tools: []);
        Assert.Equal([new ReplyPiece(ReplyPieceKind.Reasoning, "\nstep 1 < 2\n"), new ReplyPiece(ReplyPieceKind.Text, "\nThe answer is 3.")], r);
        // Reasoning streams before its block is closed; a block left open at the end is all reasoning.
        var p = new ToolCallParser([]);
        Assert.Equal([new ReplyPiece(ReplyPieceKind.Reasoning, "partial ")], p.Push("<longcat_think>partial </longcat_th"));
        Assert.Equal([new ReplyPiece(ReplyPieceKind.Reasoning, "</longcat_th")], p.Flush());
    }

    /// <summary>Replies with every feature, split at random points: same pieces as unsplit, and no tag in text.</summary>
    [Fact]
    public void RandomSplitsGiveTheSameResultAndNoTagLeaks()
    {
        string[] replies =
        [
            "Sure.\n" + Call("""{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}""") + "\n" + Call("""{"name": "now", "arguments": {}}"""),
            "<longcat_think>let me think <longcat_ about it</longcat_think>I will call." + Call("""{"name": "now", "arguments": {}}""") + "\n\n",
            "text with < and <longcat but no tag, then " + Call("""{"name": "get_weather", "arguments": {"city": "x < y"}}""") + " and more text <",
            "多轮 😀 " + Call("""{"name": "now", "arguments": {}}""") + Call("""{"name": "now", "arguments": {}}""") + "done",
        ];
        var rng = new Random(12);
        foreach (var reply in replies)
        {
            var whole = Run([reply]);
            Assert.All(whole.Where(p => p.Kind != ReplyPieceKind.ToolCall), p =>
            {
                foreach (var m in ToolCallFormat.Markers) Assert.DoesNotContain(m, p.Text);
            });
            for (int trial = 0; trial < 300; trial++)
            {
                var parts = new List<string>();
                int pos = 0;
                while (pos < reply.Length)
                {
                    int n = Math.Min(reply.Length - pos, rng.Next(0, 9));
                    parts.Add(reply.Substring(pos, n));
                    pos += n;
                }
                int k = 0;
                var p = new ToolCallParser(Tools, ToolCallStyle.Json, () => $"id{k++}");
                var streamed = new List<ReplyPiece>();
                foreach (var s in parts)
                {
                    var got = p.Push(s);
                    // A held-back partial tag never reaches the text (also proven by the concatenation check below).
                    foreach (var g in got.Where(g => g.Kind == ReplyPieceKind.Text))
                        Assert.DoesNotContain("<longcat_tool_call", g.Text);
                    streamed.AddRange(got);
                }
                streamed.AddRange(p.Flush());
                Assert.Equal(whole, Run(parts));
                string text = string.Concat(streamed.Where(x => x.Kind == ReplyPieceKind.Text).Select(x => x.Text));
                Assert.Equal(string.Concat(whole.Where(x => x.Kind == ReplyPieceKind.Text).Select(x => x.Text)), text);
                string reasoning = string.Concat(streamed.Where(x => x.Kind == ReplyPieceKind.Reasoning).Select(x => x.Text));
                Assert.Equal(string.Concat(whole.Where(x => x.Kind == ReplyPieceKind.Reasoning).Select(x => x.Text)), reasoning);
                Assert.Equal(whole.Where(x => x.Call is not null).Select(x => x.Call), streamed.Where(x => x.Call is not null).Select(x => x.Call));
            }
        }
    }

    [Fact]
    public void SchemaCheckCoversNestingArraysAndAnyOf()
    {
        var schema = System.Text.Json.JsonDocument.Parse("""
            {"type": "object", "properties": {
              "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2},
              "v": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
              "o": {"type": "object", "properties": {"k": {"const": 1}}, "required": ["k"]}}}
            """).RootElement;
        Assert.True(SchemaCheck.Valid(JsonNode.Parse("""{"tags": ["a"], "v": null, "o": {"k": 1}}"""), schema));
        Assert.False(SchemaCheck.Valid(JsonNode.Parse("""{"tags": []}"""), schema));
        Assert.False(SchemaCheck.Valid(JsonNode.Parse("""{"tags": ["a", "b", "c"]}"""), schema));
        Assert.False(SchemaCheck.Valid(JsonNode.Parse("""{"tags": [1]}"""), schema));
        Assert.False(SchemaCheck.Valid(JsonNode.Parse("""{"v": "x"}"""), schema));
        Assert.False(SchemaCheck.Valid(JsonNode.Parse("""{"o": {"k": 2}}"""), schema));
        Assert.False(SchemaCheck.Valid(JsonNode.Parse("""{"o": {}}"""), schema));
    }
}
