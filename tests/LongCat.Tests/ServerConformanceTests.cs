using System.ClientModel;
using System.ClientModel.Primitives;
using System.Net;
using System.Text;
using System.Text.Json;
using LongCat.Server;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Models;

namespace LongCat.Tests;

/// <summary>The test chat model (<see cref="ServerTestSupport.Serve"/>) behind a running server, for one test class.</summary>
public sealed class ServerFixture() : RunningServerFixture(ServerTestSupport.Serve());

/// <summary>A served model behind a running HTTP server on 127.0.0.1 (free port), for one test class.</summary>
public abstract class RunningServerFixture(ServedModel served) : IAsyncLifetime
{
    public ServedModel Served { get; } = served;
    public RunningServer Server { get; private set; } = null!;
    public HttpClient Http { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Server = await ServerTestSupport.StartAsync(Served);
        Http = ServerTestSupport.Http(Server.BaseAddress);
    }

    public async Task DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
        Served.Dispose();
    }

    /// <summary>The official OpenAI client pointed at this server (no retries: a test wants to see the first answer).</summary>
    public OpenAIClientOptions ClientOptions => new() { Endpoint = new Uri(Server.BaseAddress, "v1"), RetryPolicy = new ClientRetryPolicy(0), NetworkTimeout = TimeSpan.FromSeconds(60) };

    public ChatClient Chat(string? model = null) => new(model ?? Served.ModelId, new ApiKeyCredential("unused"), ClientOptions);
}

/// <summary>Conformance: the official OpenAI .NET package against the server on loopback.</summary>
public class ServerConformanceTests(ServerFixture f) : IClassFixture<ServerFixture>
{
    static readonly ChatMessage[] Hello = [new SystemChatMessage("You are LongCat."), new UserChatMessage("Hello! What can you do?")];

    [Fact]
    public async Task ModelsListNamesTheServedModel()
    {
        var models = new OpenAIModelClient(new ApiKeyCredential("unused"), f.ClientOptions);
        OpenAIModelCollection list = await models.GetModelsAsync();
        var m = Assert.Single(list);
        Assert.Equal("longcat-test", m.Id);
        Assert.Equal("longcat", m.OwnedBy);
        OpenAIModel one = await models.GetModelAsync("longcat-test");
        Assert.Equal("longcat-test", one.Id);
        var e = await Assert.ThrowsAsync<ClientResultException>(() => models.GetModelAsync("gpt-4o"));
        Assert.Equal(404, e.Status);
    }

    [Fact]
    public async Task ChatCompletionMatchesTheChatClient()
    {
        ChatCompletion c = await f.Chat().CompleteChatAsync(Hello, new ChatCompletionOptions { MaxOutputTokenCount = 10, Temperature = 0 });
        Assert.Equal(ChatMessageRole.Assistant, c.Role);
        Assert.Equal(OpenAI.Chat.ChatFinishReason.Length, c.FinishReason);
        Assert.Equal(10, c.Usage.OutputTokenCount);
        Assert.Equal(c.Usage.InputTokenCount + 10, c.Usage.TotalTokenCount);
        Assert.Equal("longcat-test", c.Model);
        Assert.StartsWith("chatcmpl-", c.Id);
        // The same request through IChatClient directly gives the same text.
        var direct = await f.Served.Client.GetResponseAsync(
            [new(Microsoft.Extensions.AI.ChatRole.System, "You are LongCat."), new(Microsoft.Extensions.AI.ChatRole.User, "Hello! What can you do?")],
            new Microsoft.Extensions.AI.ChatOptions { MaxOutputTokens = 10, Temperature = 0 });
        Assert.Equal(direct.Text, c.Content.Single().Text);
        Assert.Equal(direct.Usage!.InputTokenCount, c.Usage.InputTokenCount);
    }

    [Fact]
    public async Task StreamingDeliversChunksUsageAndTheSameText()
    {
        var o = new ChatCompletionOptions { MaxOutputTokenCount = 24, Temperature = 0 };
        ChatCompletion whole = await f.Chat().CompleteChatAsync(Hello, o);
        var text = new StringBuilder();
        int chunks = 0;
        OpenAI.Chat.ChatFinishReason? finish = null;
        ChatTokenUsage? usage = null;
        await foreach (StreamingChatCompletionUpdate u in f.Chat().CompleteChatStreamingAsync(Hello, o))
        {
            foreach (var part in u.ContentUpdate) text.Append(part.Text);
            chunks++;
            finish ??= u.FinishReason;
            usage ??= u.Usage;
        }
        Assert.Equal(whole.Content.Single().Text, text.ToString());
        Assert.True(chunks >= 3, $"{chunks} chunks");
        Assert.Equal(OpenAI.Chat.ChatFinishReason.Length, finish);
        Assert.NotNull(usage);
        Assert.Equal(24, usage.OutputTokenCount);
    }

    [Fact]
    public async Task RawStreamIsServerSentEventsEndingWithDone()
    {
        var body = """{"model":"longcat-test","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"temperature":0,"stream":true}""";
        using var req = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        using var resp = await f.Http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        Assert.Equal("text/event-stream", resp.Content.Headers.ContentType!.MediaType);
        var sse = await resp.Content.ReadAsStringAsync();
        var events = sse.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.All(events, e => Assert.StartsWith("data: ", e));
        Assert.Equal("data: [DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e[6..]).RootElement).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c.GetProperty("object").GetString()));
        Assert.Equal("assistant", chunks[0].GetProperty("choices")[0].GetProperty("delta").GetProperty("role").GetString());
        Assert.Equal("length", chunks[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.True(chunks[^1].GetProperty("longcat").GetProperty("real_experts_per_token").GetDouble() >= 0);
        Assert.Single(chunks.Select(c => c.GetProperty("id").GetString()).Distinct());
    }

    [Fact]
    public async Task LegacyCompletionsStreamAndNot()
    {
        var body = """{"model":"longcat-test","prompt":"Once upon a time","max_tokens":6,"temperature":0}""";
        var r = await f.Http.PostAsync("v1/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var j = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("text_completion", j.GetProperty("object").GetString());
        var text = j.GetProperty("choices")[0].GetProperty("text").GetString();
        Assert.Equal(6, j.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal("length", j.GetProperty("choices")[0].GetProperty("finish_reason").GetString());

        var s = await f.Http.PostAsync("v1/completions", new StringContent(body.Replace("}", ""","stream":true}"""), Encoding.UTF8, "application/json"));
        var events = (await s.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("data: [DONE]", events[^1]);
        var streamed = string.Concat(events[..^1].Select(e => JsonDocument.Parse(e[6..]).RootElement.GetProperty("choices")[0].GetProperty("text").GetString()));
        Assert.Equal(text, streamed);
    }

    /// <summary>MTP drafting inside the batch (the "speculative" extension) leaves greedy output unchanged and reports acceptance.</summary>
    [Fact]
    public async Task SpeculativeRequestsGiveTheSameGreedyText()
    {
        async Task<JsonElement> Complete(bool spec) => JsonDocument.Parse(await (await f.Http.PostAsync("v1/completions",
            new StringContent($$"""{"prompt":"The cat sat on","max_tokens":12,"temperature":0,"speculative":{{(spec ? "true" : "false")}}}""", Encoding.UTF8, "application/json")))
            .Content.ReadAsStringAsync()).RootElement;
        var plain = await Complete(false);
        var spec = await Complete(true);
        Assert.Equal(plain.GetProperty("choices")[0].GetProperty("text").GetString(), spec.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.Equal(JsonValueKind.Null, plain.GetProperty("longcat").GetProperty("mtp_acceptance").ValueKind);
        Assert.InRange(spec.GetProperty("longcat").GetProperty("mtp_acceptance").GetDouble(), 0, 1);
        var metrics = await f.Http.GetStringAsync("metrics");
        Assert.Matches(@"longcat_mtp_drafted_tokens_total\{model=""longcat-test""\} [1-9]", metrics);
    }

    [Fact]
    public async Task ErrorsAreOpenAIErrorObjects()
    {
        var chat = f.Chat();
        var e = await Assert.ThrowsAsync<ClientResultException>(() => f.Chat("gpt-4o").CompleteChatAsync([new UserChatMessage("hi")]));
        Assert.Equal(404, e.Status);   // model_not_found, as OpenAI and vLLM
        Assert.Contains("gpt-4o", e.Message);
        e = await Assert.ThrowsAsync<ClientResultException>(() => chat.CompleteChatAsync([new UserChatMessage("hi")], new ChatCompletionOptions { Temperature = 3 }));
        Assert.Equal(400, e.Status);
        Assert.Contains("temperature", e.Message);
        e = await Assert.ThrowsAsync<ClientResultException>(() => chat.CompleteChatAsync([new UserChatMessage("hi")], new ChatCompletionOptions { MaxOutputTokenCount = 100_000 }));
        Assert.Equal(400, e.Status);
        Assert.Contains("max_tokens", e.Message);
        // Streaming requests fail the same way, before any chunk.
        e = await Assert.ThrowsAsync<ClientResultException>(async () =>
        {
            await foreach (var _ in chat.CompleteChatStreamingAsync([new UserChatMessage("hi")], new ChatCompletionOptions { TopP = 0 })) { }
        });
        Assert.Equal(400, e.Status);
        Assert.Contains("top_p", e.Message);
    }

    [Fact]
    public async Task HealthMetricsAndPage()
    {
        var h = JsonDocument.Parse(await f.Http.GetStringAsync("health")).RootElement;
        Assert.Equal("ok", h.GetProperty("status").GetString());
        await f.Chat().CompleteChatAsync([new UserChatMessage("hi")], new ChatCompletionOptions { MaxOutputTokenCount = 3, Temperature = 0 });
        var m = await f.Http.GetAsync("metrics");
        Assert.StartsWith("text/plain", m.Content.Headers.ContentType!.ToString());
        var text = await m.Content.ReadAsStringAsync();
        foreach (var name in new[]
                 {
                     "longcat_http_requests_total", "longcat_prompt_tokens_total", "longcat_completion_tokens_total",
                     "longcat_generation_tokens_per_second", "longcat_queue_depth", "longcat_running_sequences", "longcat_kv_cache_bytes",
                     "longcat_kv_cache_usage_ratio", "longcat_mtp_acceptance_ratio", "longcat_real_experts_per_token",
                 })
            Assert.Contains("# TYPE " + name + " ", text);
        Assert.Matches(@"longcat_http_requests_total\{route=""/v1/chat/completions"",status=""200""\} [1-9]", text);
        Assert.Matches(@"longcat_completion_tokens_total\{model=""longcat-test""\} [1-9]", text);
        // Every sample line parses as "name{labels} number".
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => !l.StartsWith('#')))
            Assert.Matches(@"^[a-z_]+\{[^}]*\} -?[0-9.eE+-]+$", line);

        var page = await f.Http.GetAsync("/");
        Assert.Equal("text/html; charset=utf-8", page.Content.Headers.ContentType!.ToString());
        var html = await page.Content.ReadAsStringAsync();
        Assert.Contains("<script src=\"/app.js\">", html);
        Assert.DoesNotContain("http", html.Replace("http-equiv", "", StringComparison.Ordinal));   // nothing from elsewhere
        Assert.Contains("/v1/chat/completions", await f.Http.GetStringAsync("app.js"));
        Assert.Equal(HttpStatusCode.OK, (await f.Http.GetAsync("style.css")).StatusCode);
    }
}
