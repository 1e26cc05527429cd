using System.ClientModel;
using System.ClientModel.Primitives;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using LongCat.Server;
using Microsoft.Extensions.AI;
using OpenAI;
using OpenAI.Chat;
using AIChatMessage = Microsoft.Extensions.AI.ChatMessage;
using AIChatRole = Microsoft.Extensions.AI.ChatRole;

namespace LongCat.Tests;

/// <summary>The tool-trained model (<see cref="ToolModel"/>) behind a running server, for one test class.</summary>
public sealed class ToolServerFixture() : RunningServerFixture(ToolModel.Serve());

/// <summary>
/// Tool loops on real generations: in-process through <see cref="LongCat.Inference.LongCatChatClient"/> and
/// <see cref="FunctionInvokingChatClient"/>, and over HTTP through the official OpenAI .NET client (streaming and
/// not) and Microsoft.Extensions.AI.OpenAI's IChatClient.
/// </summary>
public class ToolLoopTests(ToolServerFixture f) : IClassFixture<ToolServerFixture>
{
    static readonly Microsoft.Extensions.AI.ChatOptions Greedy = new() { Temperature = 0, MaxOutputTokens = 64 };

    [Fact]
    public async Task TheChatClientReturnsTheCallAsFunctionCallContent()
    {
        var o = Greedy.Clone();
        o.Tools = [ToolModel.AddFunction()];
        var r = await f.Served.Client.GetResponseAsync([new AIChatMessage(AIChatRole.User, ToolModel.Question)], o);
        Assert.Equal(Microsoft.Extensions.AI.ChatFinishReason.ToolCalls, r.FinishReason);
        var call = Assert.Single(r.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
        Assert.Equal(ToolModel.ToolName, call.Name);
        Assert.Equal(2, ((JsonElement)call.Arguments!["a"]!).GetInt32());
        Assert.Equal(3, ((JsonElement)call.Arguments!["b"]!).GetInt32());
        Assert.StartsWith("call_", call.CallId);
        Assert.Equal("", r.Text);

        // tool_choice none: the tools are not described, so the prompt is shorter and no call is parsed.
        o.ToolMode = ChatToolMode.None;
        var none = await f.Served.Client.GetResponseAsync([new AIChatMessage(AIChatRole.User, ToolModel.Question)], o);
        Assert.Empty(none.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
        Assert.True(none.Usage!.InputTokenCount < r.Usage!.InputTokenCount - 100);
    }

    [Fact]
    public async Task FunctionInvokingChatClientCompletesAToolLoopInProcess()
    {
        int calls = 0;
        using var client = new FunctionInvokingChatClient(f.Served.Client);
        var o = Greedy.Clone();
        o.Tools = [ToolModel.AddFunction(() => calls++)];
        var r = await client.GetResponseAsync([new AIChatMessage(AIChatRole.User, ToolModel.Question)], o);
        Assert.Equal(1, calls);
        Assert.Equal(ToolModel.Answer, r.Text);
        // The conversation holds the call, its result and the answer.
        Assert.Single(r.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
        Assert.Equal("5", LongCat.Inference.ToolCalls.ResultText(Assert.Single(r.Messages.SelectMany(m => m.Contents).OfType<FunctionResultContent>())));
    }

    static ChatTool AddTool => ChatTool.CreateFunctionTool(ToolModel.ToolName, ToolModel.ToolDescription, BinaryData.FromString(ToolModel.Schema));

    [Fact]
    public async Task OpenAIClientRoundTripNonStreaming()
    {
        var chat = f.Chat();
        var o = new ChatCompletionOptions { Temperature = 0, Tools = { AddTool } };
        List<OpenAI.Chat.ChatMessage> messages = [new UserChatMessage(ToolModel.Question)];
        ChatCompletion c = await chat.CompleteChatAsync(messages, o);
        Assert.Equal(OpenAI.Chat.ChatFinishReason.ToolCalls, c.FinishReason);
        var call = Assert.Single(c.ToolCalls);
        Assert.Equal(ToolModel.ToolName, call.FunctionName);
        Assert.Equal("""{"a":2,"b":3}""", call.FunctionArguments.ToString());
        messages.Add(new AssistantChatMessage(c));
        messages.Add(new ToolChatMessage(call.Id, ToolModel.Result));
        ChatCompletion answer = await chat.CompleteChatAsync(messages, o);
        Assert.Equal(OpenAI.Chat.ChatFinishReason.Stop, answer.FinishReason);
        Assert.Equal(ToolModel.Answer, answer.Content[0].Text);
    }

    [Fact]
    public async Task OpenAIClientRoundTripStreaming()
    {
        var chat = f.Chat();
        var o = new ChatCompletionOptions { Temperature = 0, Tools = { AddTool } };
        var ids = new Dictionary<int, string>();
        var names = new Dictionary<int, string>();
        var args = new Dictionary<int, StringBuilder>();
        var content = new StringBuilder();
        OpenAI.Chat.ChatFinishReason? finish = null;
        await foreach (var u in chat.CompleteChatStreamingAsync([new UserChatMessage(ToolModel.Question)], o))
        {
            foreach (var p in u.ContentUpdate) content.Append(p.Text);
            foreach (var t in u.ToolCallUpdates)
            {
                if (t.ToolCallId is { } id) ids[t.Index] = id;
                if (t.FunctionName is { } n) names[t.Index] = n;
                if (t.FunctionArgumentsUpdate is { } a && !a.ToMemory().IsEmpty) (args.TryGetValue(t.Index, out var sb) ? sb : args[t.Index] = new()).Append(a.ToString());
            }
            finish ??= u.FinishReason;
        }
        Assert.Equal(OpenAI.Chat.ChatFinishReason.ToolCalls, finish);
        Assert.Equal("", content.ToString());
        Assert.Equal([0], ids.Keys);
        Assert.Equal(ToolModel.ToolName, names[0]);
        Assert.Equal("""{"a":2,"b":3}""", args[0].ToString());

        // The answer streams as content.
        var answer = new StringBuilder();
        await foreach (var u in chat.CompleteChatStreamingAsync(
            [new UserChatMessage(ToolModel.Question), new AssistantChatMessage([ChatToolCall.CreateFunctionToolCall(ids[0], names[0], BinaryData.FromString(args[0].ToString()))]), new ToolChatMessage(ids[0], ToolModel.Result)], o))
            foreach (var p in u.ContentUpdate) answer.Append(p.Text);
        Assert.Equal(ToolModel.Answer, answer.ToString());
    }

    [Fact]
    public async Task FunctionInvokingChatClientCompletesAToolLoopOverHttp()
    {
        int calls = 0;
        using var client = new FunctionInvokingChatClient(f.Chat().AsIChatClient());
        var o = new Microsoft.Extensions.AI.ChatOptions { Temperature = 0, Tools = [ToolModel.AddFunction(() => calls++)] };
        var r = await client.GetResponseAsync([new AIChatMessage(AIChatRole.User, ToolModel.Question)], o);
        Assert.Equal(1, calls);
        Assert.Equal(ToolModel.Answer, r.Text);
        // And streamed.
        var text = new StringBuilder();
        await foreach (var u in client.GetStreamingResponseAsync([new AIChatMessage(AIChatRole.User, ToolModel.Question)], o)) text.Append(u.Text);
        Assert.Equal(2, calls);
        Assert.Equal(ToolModel.Answer, text.ToString());
    }

    async Task<(HttpStatusCode, JsonNode)> Post(object body)
    {
        using var r = await f.Http.PostAsync("/v1/chat/completions", new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json"));
        return (r.StatusCode, JsonNode.Parse(await r.Content.ReadAsStringAsync())!);
    }

    static object Tool(string name = ToolModel.ToolName) => new { type = "function", function = new { name, description = ToolModel.ToolDescription, parameters = JsonNode.Parse(ToolModel.Schema) } };

    [Fact]
    public async Task RawResponseHasToolCallsAndNullContent()
    {
        var (status, j) = await Post(new { messages = new[] { new { role = "user", content = ToolModel.Question } }, tools = new[] { Tool() }, temperature = 0, tool_choice = "auto", parallel_tool_calls = false });
        Assert.Equal(HttpStatusCode.OK, status);
        var m = j["choices"]![0]!["message"]!;
        Assert.Null(m["content"]);
        Assert.Equal("tool_calls", (string?)j["choices"]![0]!["finish_reason"]);
        var call = m["tool_calls"]![0]!;
        Assert.Equal("function", (string?)call["type"]);
        Assert.Equal("add", (string?)call["function"]!["name"]);
        Assert.Equal("""{"a":2,"b":3}""", (string?)call["function"]!["arguments"]);
    }

    [Fact]
    public async Task ThinkOnAppendsTheSwitchToThePrompt()
    {
        var (s1, off) = await Post(new { messages = new[] { new { role = "user", content = "Hi" } }, max_tokens = 1 });
        var (s2, on) = await Post(new { messages = new[] { new { role = "user", content = "Hi" } }, max_tokens = 1, think_on = true });
        Assert.Equal(HttpStatusCode.OK, s1);
        Assert.Equal(HttpStatusCode.OK, s2);
        int suffix = ServerTestSupport.Tokenizer.Value.EncodeToIds(" /think_on ASSISTANT:").Length - ServerTestSupport.Tokenizer.Value.EncodeToIds(" ASSISTANT:").Length;
        Assert.Equal((int)off["usage"]!["prompt_tokens"]! + suffix, (int)on["usage"]!["prompt_tokens"]!);
    }

    [Theory]
    [InlineData("""{"messages": [{"role": "user", "content": "x"}], "tools": {"a": 1}}""", "tools")]
    [InlineData("""{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "retrieval"}]}""", "tools[0].type")]
    [InlineData("""{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "bad name"}}]}""", "tools[0].function.name")]
    [InlineData("""{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": 3}}]}""", "tools[0].function.parameters")]
    [InlineData("""{"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}""", "tool_choice")]
    [InlineData("""{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}}""", "tool_choice")]
    [InlineData("""{"messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes"}""", "tool_choice")]
    [InlineData("""{"messages": [{"role": "user", "content": "x"}], "parallel_tool_calls": 1}""", "parallel_tool_calls")]
    [InlineData("""{"messages": [{"role": "user", "content": "x"}], "think_on": "yes"}""", "think_on")]
    [InlineData("""{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}, {"role": "tool", "tool_call_id": "c", "content": "r"}]}""", "messages[1].tool_calls[0].function.arguments")]
    [InlineData("""{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}, {"role": "tool", "content": "r"}]}""", "messages[2].tool_call_id")]
    public async Task BadToolRequestsAre400NamingTheParameter(string body, string param)
    {
        using var r = await f.Http.PostAsync("/v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        var j = JsonNode.Parse(await r.Content.ReadAsStringAsync())!;
        Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
        Assert.Equal(param, (string?)j["error"]!["param"]);
    }

    [Fact]
    public async Task ToolResultWithoutACallIs400()
    {
        var (status, j) = await Post(new { messages = new object[] { new { role = "user", content = "x" }, new { role = "tool", tool_call_id = "c", content = "r" } } });
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("tool result", (string?)j["error"]!["message"]);
    }
}

/// <summary>The wire shape of replies with reasoning and calls (message fields and streaming deltas).</summary>
public class OpenAIToolsWireTests
{
    static ChatResponseUpdate U(params AIContent[] c) => new(AIChatRole.Assistant, [.. c]);

    static readonly JsonSerializerOptions Relaxed = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    static readonly FunctionCallContent Call = LongCat.Inference.ToolCalls.ToContent(new LongCat.Tokenization.ToolCall("call_x", "add", """{"a":2,"b":3}"""));

    [Fact]
    public void MessageHasReasoningContentAndToolCalls()
    {
        var reply = new OpenAITools.Reply();
        reply.Add(U(new TextReasoningContent("think ")));
        reply.Add(U(new TextReasoningContent("more")));
        reply.Add(U(Call));
        var m = reply.Message();
        Assert.Null(m["content"]);
        Assert.Equal("think more", (string?)m["reasoning_content"]);
        Assert.Equal("""[{"id":"call_x","type":"function","function":{"name":"add","arguments":"{\"a\":2,\"b\":3}"}}]""", m["tool_calls"]!.ToJsonString(Relaxed));
        var plain = new OpenAITools.Reply();
        plain.Add(U(new Microsoft.Extensions.AI.TextContent("hi")));
        Assert.Equal("""{"role":"assistant","content":"hi","refusal":null}""", plain.Message().ToJsonString(Relaxed));
    }

    [Fact]
    public void DeltasNumberCallsAndSendArgumentsAfterTheName()
    {
        var state = new OpenAITools.StreamState();
        var d = OpenAITools.Deltas(U(new TextReasoningContent("r"), new Microsoft.Extensions.AI.TextContent("t"), Call), state).Select(x => x.ToJsonString(Relaxed)).ToList();
        d.AddRange(OpenAITools.Deltas(U(Call), state).Select(x => x.ToJsonString(Relaxed)));
        Assert.Equal(
        [
            """{"reasoning_content":"r"}""",
            """{"content":"t"}""",
            """{"tool_calls":[{"index":0,"id":"call_x","type":"function","function":{"name":"add","arguments":""}}]}""",
            """{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":2,\"b\":3}"}}]}""",
            """{"tool_calls":[{"index":1,"id":"call_x","type":"function","function":{"name":"add","arguments":""}}]}""",
            """{"tool_calls":[{"index":1,"function":{"arguments":"{\"a\":2,\"b\":3}"}}]}""",
        ], d);
    }
}
