using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using LongCat.Inference;
using LongCat.Inference.Constraints;
using LongCat.Model;
using LongCat.Tokenization;
using Microsoft.Extensions.AI;
using static LongCat.Tests.ConstraintTestSupport;

namespace LongCat.Tests;

/// <summary>
/// Constrained decoding with a random model (the server tests' 4096-token chat model with an MTP head): the
/// session, the batch scheduler and MTP speculative decoding (greedy and sampled) all give valid JSON; a draft the
/// grammar forbids is never accepted; response_format over HTTP.
/// </summary>
public class ConstrainedGenerationTests(ServerFixture f) : IClassFixture<ServerFixture>
{
    /// <summary>A schema whose every value is bounded (literals, enums, booleans), so decoding must end.</summary>
    const string Bounded = """
        {"type":"object","properties":{"ok":{"type":"boolean"},"level":{"enum":["low","mid","high",3]},
         "items":{"type":"array","items":{"type":["boolean","null"]},"minItems":1,"maxItems":3}},
         "required":["ok","level","items"],"additionalProperties":false}
        """;

    static (JsonGrammar Grammar, Tokenizer Tok, int[] Prompt, IReadOnlyList<int> Stops) Setup(LongCatModel model, string schema)
    {
        var tok = ServerTestSupport.Tokenizer.Value;
        var stops = new[] { tok.TokenToId(ChatFormat.EndOfTurn)!.Value, model.Config.EosTokenId };
        var v = TokenVocabulary.For(tok, model.Config.VocabSize, stops);
        using var doc = JsonDocument.Parse(schema);
        var g = JsonGrammar.ForSchema(v, doc.RootElement.Clone(), strict: true);
        var prompt = ChatFormat.EncodePrompt(tok, [new ChatTurn(ChatTurn.User, "Give me the status as JSON.")]);
        return (g, tok, prompt, stops);
    }

    static void AssertValid(Tokenizer tok, IReadOnlyList<int> output, IReadOnlyList<int> stops, string schema)
    {
        Assert.Contains(output[^1], stops);
        string text = tok.Decode([.. output.Take(output.Count - 1)]);
        using var doc = JsonDocument.Parse(text);
        using var s = JsonDocument.Parse(schema);
        Assert.Null(Validate(doc.RootElement, s.RootElement, strict: true));
    }

    [Theory]
    [InlineData(false, 0f)]
    [InlineData(false, 1f)]
    [InlineData(true, 0f)]
    [InlineData(true, 1f)]
    public async Task SessionSchedulerAndSpeculativeGiveValidJson(bool speculative, float temperature)
    {
        var model = f.Served.Model;
        var (g, tok, prompt, stops) = Setup(model, Bounded);
        var results = new List<List<int>>();
        for (int seed = 0; seed < 4; seed++)
        {
            var o = new GenerationOptions { MaxTokens = 200, Temperature = temperature, Seed = (ulong)seed, StopTokenIds = stops, Constraint = g.Start, Speculative = speculative };
            var session = new GenerationSession(model, prompt, o);
            var a = session.Run().ToList();
            Assert.Equal(StopReason.StopToken, session.Result!.StopReason);
            AssertValid(tok, a, stops, Bounded);
            // The batch scheduler makes the same calls to the sampler: the same tokens.
            var seq = f.Served.Scheduler.Submit(prompt, o);
            var b = new List<int>();
            await foreach (var t in seq.Tokens.ReadAllAsync()) b.Add(t.Id);
            Assert.Equal(StopReason.StopToken, (await seq.Completion).StopReason);
            Assert.Equal(a, b);
            results.Add(a);
        }
        if (temperature > 0) Assert.True(results.Distinct(new SeqEq()).Count() > 1, "sampling with different seeds gave one output");
    }

    sealed class SeqEq : IEqualityComparer<List<int>>
    {
        public bool Equals(List<int>? x, List<int>? y) => x!.SequenceEqual(y!);
        public int GetHashCode(List<int> x) => x.Count;
    }

    [Theory]
    [InlineData(0f)]
    [InlineData(1f)]
    public void DraftsTheGrammarForbidsAreRejected(float temperature)
    {
        var model = f.Served.Model;
        var (g, tok, prompt, stops) = Setup(model, Bounded);
        int bad = tok.EncodeToIds("x")[0];   // never valid anywhere in this schema's JSON
        var o = new GenerationOptions { MaxTokens = 200, Temperature = temperature, Seed = 3, StopTokenIds = stops, Constraint = g.Start, Speculative = true };
        var session = new GenerationSession(model, prompt, o) { OracleDraft = _ => bad };
        var output = session.Run().ToList();
        Assert.True(session.Result!.DraftedTokens > 0);
        Assert.Equal(0, session.Result.AcceptedDrafts);
        AssertValid(tok, output, stops, Bounded);
    }

    [Fact]
    public async Task ChatClientHonoursResponseFormat()
    {
        using var schema = JsonDocument.Parse(Bounded);
        var options = new ChatOptions { MaxOutputTokens = 200, Temperature = 0, ResponseFormat = ChatResponseFormat.ForJsonSchema(schema.RootElement.Clone(), "status") };
        options.AdditionalProperties = new() { [StructuredOutput.StrictKey] = true };
        var r = await f.Served.Client.GetResponseAsync([new(ChatRole.User, "Status?")], options);
        Assert.Equal(Microsoft.Extensions.AI.ChatFinishReason.Stop, r.FinishReason);
        using var doc = JsonDocument.Parse(r.Text);
        Assert.Null(Validate(doc.RootElement, schema.RootElement, strict: true));
    }

    public sealed record Reading(bool Ok, int Level, string[] Notes, Kind Kind);
    public enum Kind { Low, High }

    [Fact]
    public async Task SchemasOfDotNetTypesFromMicrosoftExtensionsAIAreHonoured()
    {
        // ChatResponseFormat.ForJsonSchema<T> is what IChatClient.GetResponseAsync<T> sends.
        var format = ChatResponseFormat.ForJsonSchema<Reading>(AIJsonUtilities.DefaultOptions);
        var options = new ChatOptions { MaxOutputTokens = 300, Temperature = 0, ResponseFormat = format };
        var r = await f.Served.Client.GetResponseAsync([new(ChatRole.User, "Reading?")], options);
        // A random model may not close the notes array in 300 tokens: then finish "length" and an unfinished object.
        if (r.FinishReason == Microsoft.Extensions.AI.ChatFinishReason.Stop)
        {
            var reading = JsonSerializer.Deserialize<Reading>(r.Text, AIJsonUtilities.DefaultOptions);
            Assert.NotNull(reading!.Notes);
        }
        else
        {
            Assert.Equal(Microsoft.Extensions.AI.ChatFinishReason.Length, r.FinishReason);
            Assert.StartsWith("{", r.Text);
        }
    }

    static JsonObject Body(JsonNode? responseFormat, int maxTokens = 200) => new()
    {
        ["model"] = "longcat-test",
        ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Answer in JSON." }),
        ["max_tokens"] = maxTokens,
        ["temperature"] = 0,
        ["response_format"] = responseFormat,
    };

    const string ToolParameters = """{"type":"object","properties":{"city":{"type":"string","enum":["Paris","Oslo","Lima"]},"days":{"type":"integer"},"metric":{"type":"boolean"}},"required":["city","days"],"additionalProperties":false}""";

    /// <summary>
    /// tool_choice "required" and a named function on a random model: every reply is a tool call whose arguments
    /// validate against the tool's schema (the grammar of <see cref="ToolCallGrammar"/>, attached by the chat client),
    /// sampled with several seeds, streaming and not.
    /// </summary>
    [Theory]
    [InlineData("required", false)]
    [InlineData("named", false)]
    [InlineData("required", true)]
    public async Task ToolChoiceRequiredAlwaysGivesASchemaValidCall(string choice, bool stream)
    {
        JsonObject Tool(string name) => new()
        {
            ["type"] = "function",
            ["function"] = new JsonObject { ["name"] = name, ["description"] = "weather", ["parameters"] = JsonNode.Parse(ToolParameters) },
        };
        using var schema = JsonDocument.Parse(ToolParameters);
        for (int seed = 1; seed <= 4; seed++)
        {
            var body = new JsonObject
            {
                ["model"] = "longcat-test",
                ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Weather?" }),
                ["max_tokens"] = 300,
                ["temperature"] = 1.0,
                ["seed"] = seed,
                ["tools"] = new JsonArray(Tool("get_weather"), Tool("get_forecast")),
                ["tool_choice"] = choice == "named"
                    ? new JsonObject { ["type"] = "function", ["function"] = new JsonObject { ["name"] = "get_forecast" } }
                    : JsonValue.Create("required"),
                ["stream"] = stream,
            };
            using var resp = await f.Http.PostAsJsonAsync("/v1/chat/completions", body);
            string raw = await resp.Content.ReadAsStringAsync();
            Assert.True(resp.StatusCode == HttpStatusCode.OK, raw);
            string? finish = null;
            var calls = new SortedDictionary<int, (string? Name, System.Text.StringBuilder Args)>();
            if (!stream)
            {
                var c = JsonNode.Parse(raw)!["choices"]![0]!;
                finish = (string?)c["finish_reason"];
                int k = 0;
                foreach (var call in c["message"]!["tool_calls"]!.AsArray())
                    calls[k++] = ((string?)call!["function"]!["name"], new((string?)call["function"]!["arguments"]));
            }
            else
                foreach (var line in raw.Split('\n'))
                    if (line.StartsWith("data: {") && JsonNode.Parse(line[6..])!["choices"]!.AsArray() is [{ } c])
                    {
                        finish = (string?)c["finish_reason"] ?? finish;
                        if (c["delta"]?["tool_calls"] is JsonArray tc)
                            foreach (var d in tc)
                            {
                                int k = (int)d!["index"]!;
                                if (!calls.TryGetValue(k, out var e)) e = (null, new());
                                calls[k] = ((string?)d["function"]?["name"] ?? e.Name, e.Args.Append((string?)d["function"]?["arguments"]));
                            }
                    }
            Assert.Equal("tool_calls", finish);
            Assert.NotEmpty(calls); // parallel_tool_calls defaults to true: one call or several back to back
            foreach (var (name, args) in calls.Values)
            {
                if (choice == "named") Assert.Equal("get_forecast", name);
                else Assert.Contains(name, new[] { "get_weather", "get_forecast" });
                using var a = JsonDocument.Parse(args.ToString());
                Assert.Null(Validate(a.RootElement, schema.RootElement, strict: true));
            }
        }
    }

    [Fact]
    public async Task HttpJsonSchemaAndJsonObject()
    {
        var rf = new JsonObject { ["type"] = "json_schema", ["json_schema"] = new JsonObject { ["name"] = "status", ["strict"] = true, ["schema"] = JsonNode.Parse(Bounded) } };
        using var resp = await f.Http.PostAsJsonAsync("/v1/chat/completions", Body(rf));
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        var j = JsonNode.Parse(await resp.Content.ReadAsStringAsync())!;
        Assert.Equal("stop", (string?)j["choices"]![0]!["finish_reason"]);
        using var doc = JsonDocument.Parse((string)j["choices"]![0]!["message"]!["content"]!);
        using var s = JsonDocument.Parse(Bounded);
        Assert.Null(Validate(doc.RootElement, s.RootElement, strict: true));

        // Streaming gives the same text.
        var body = Body(rf.DeepClone());
        body["stream"] = true;
        using var sresp = await f.Http.PostAsJsonAsync("/v1/chat/completions", body);
        var text = new System.Text.StringBuilder();
        foreach (var line in (await sresp.Content.ReadAsStringAsync()).Split('\n'))
            if (line.StartsWith("data: {") && JsonNode.Parse(line[6..])!["choices"]!.AsArray() is [{ } c] && c["delta"]?["content"] is { } t) text.Append((string?)t);
        Assert.Equal((string)j["choices"]![0]!["message"]!["content"]!, text.ToString());

        // json_object: an object when it ends, "length" when max_tokens comes first.
        using var o = await f.Http.PostAsJsonAsync("/v1/chat/completions", Body(new JsonObject { ["type"] = "json_object" }, 60));
        var oj = JsonNode.Parse(await o.Content.ReadAsStringAsync())!;
        string content = (string)oj["choices"]![0]!["message"]!["content"]!;
        Assert.StartsWith("{", content);
        if ((string?)oj["choices"]![0]!["finish_reason"] == "stop") Assert.Equal(JsonValueKind.Object, JsonDocument.Parse(content).RootElement.ValueKind);
        else Assert.Equal("length", (string?)oj["choices"]![0]!["finish_reason"]);

        using var t2 = await f.Http.PostAsJsonAsync("/v1/chat/completions", Body(new JsonObject { ["type"] = "text" }, 4));
        Assert.Equal(HttpStatusCode.OK, t2.StatusCode);
    }

    [Theory]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"string","pattern":"a"}}}""", "response_format.json_schema.schema", "pattern")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","properties":{"a":{"$ref":"#/x"}}}}}""", "response_format.json_schema.schema", "$ref")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"x"}}""", "response_format.json_schema.schema", "schema")]
    [InlineData("""{"type":"json_schema","json_schema":{"schema":{}}}""", "response_format.json_schema.name", "name")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"x","schema":{},"strict":"yes"}}""", "response_format.json_schema.strict", "strict")]
    [InlineData("""{"type":"xml"}""", "response_format.type", "xml")]
    [InlineData("""{"type":"json_schema"}""", "response_format.json_schema", "json_schema")]
    [InlineData("\"json\"", "response_format", "response_format")]
    public async Task BadResponseFormatsAre400(string rf, string param, string word)
    {
        using var resp = await f.Http.PostAsJsonAsync("/v1/chat/completions", Body(JsonNode.Parse(rf)));
        Assert.Equal(HttpStatusCode.BadRequest, resp.StatusCode);
        var e = JsonNode.Parse(await resp.Content.ReadAsStringAsync())!["error"]!;
        Assert.Equal(param, (string?)e["param"]);
        Assert.Contains(word, (string)e["message"]!);
    }

    [Fact]
    public async Task CompletionsRefuseResponseFormat()
    {
        var body = new JsonObject { ["prompt"] = "hi", ["response_format"] = new JsonObject { ["type"] = "json_object" } };
        using var resp = await f.Http.PostAsJsonAsync("/v1/completions", body);
        Assert.Equal(HttpStatusCode.BadRequest, resp.StatusCode);
        Assert.Equal("response_format", (string?)JsonNode.Parse(await resp.Content.ReadAsStringAsync())!["error"]!["param"]);
    }
}
