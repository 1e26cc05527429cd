using System.ClientModel;
using System.ClientModel.Primitives;
using System.Net;
using System.Text;
using System.Text.Json;
using LongCat.Inference;
using LongCat.Server;
using OpenAI;
using OpenAI.Chat;

namespace LongCat.Tests;

/// <summary>Safety under bad input: binding, API keys, body limits, malformed and out-of-range requests, a full queue.</summary>
public class ServerSecurityTests(ServerFixture f) : IClassFixture<ServerFixture>
{
    static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    /// <summary>Asserts an OpenAI error object with this status, and nothing of the server's insides.</summary>
    static async Task<JsonElement> AssertError(HttpResponseMessage r, HttpStatusCode status, string? param = null)
    {
        var body = await r.Content.ReadAsStringAsync();
        Assert.True(status == r.StatusCode, $"{(int)r.StatusCode} {body}");
        Assert.Equal("application/json", r.Content.Headers.ContentType?.MediaType);
        var e = JsonDocument.Parse(body).RootElement.GetProperty("error");
        Assert.False(string.IsNullOrWhiteSpace(e.GetProperty("message").GetString()));
        Assert.Equal(JsonValueKind.String, e.GetProperty("type").ValueKind);
        Assert.True(e.TryGetProperty("param", out _) && e.TryGetProperty("code", out _));
        if (param is not null) Assert.Equal(param, e.GetProperty("param").GetString());
        Assert.DoesNotContain("   at ", body);
        Assert.DoesNotContain("Exception", body);
        Assert.DoesNotContain(".cs:line", body);
        return e;
    }

    [Fact]
    public void BindsLoopbackUnlessToldOtherwise()
    {
        Assert.Equal("127.0.0.1", new ServerOptions().Host);
        Assert.Equal("127.0.0.1", f.Server.BaseAddress.Host);
        Assert.Throws<ArgumentException>(() => new ServerOptions { Host = "example.com" }.Validate());
        Assert.Throws<ArgumentException>(() => new ServerOptions { Port = 70000 }.Validate());
    }

    [Theory]
    [InlineData("{bad json", null)]
    [InlineData("", null)]
    [InlineData("[]", null)]
    [InlineData("null", null)]
    [InlineData("""{"messages":"hi"}""", "messages")]
    [InlineData("""{"messages":[]}""", "messages")]
    [InlineData("""{"temperature":0.5}""", "messages")]
    [InlineData("""{"messages":[{"role":"wizard","content":"hi"}]}""", "messages[0].role")]
    [InlineData("""{"messages":[{"role":"user","content":5}]}""", "messages[0].content")]
    [InlineData("""{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}""", "messages[0].content")]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}],"temperature":"hot"}""", "temperature")]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}],"temperature":2.5}""", "temperature")]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}],"top_p":0}""", "top_p")]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}],"top_k":-1}""", "top_k")]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}],"max_tokens":0}""", "max_tokens")]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}],"max_tokens":100000}""", "max_tokens")]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}],"max_tokens":1e30}""", "max_tokens")]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}],"presence_penalty":-3}""", "presence_penalty")]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}],"n":17}""", "n")]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}],"stop":["a","b","c","d","e"]}""", "stop")]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}],"stop":[""]}""", "stop")]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}],"seed":"x"}""", "seed")]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}],"stream":"yes"}""", "stream")]
    [InlineData("""{"messages":[{"role":"system","content":"hi"}]}""", "messages")]
    public async Task BadChatRequestsAre400WithTheErrorObject(string body, string? param)
    {
        await AssertError(await f.Http.PostAsync("v1/chat/completions", Json(body)), HttpStatusCode.BadRequest, param);
    }

    [Theory]
    [InlineData("""{"prompt":""}""", "prompt")]
    [InlineData("""{"prompt":["a","b"]}""", "prompt")]
    [InlineData("""{"max_tokens":3}""", "prompt")]
    [InlineData("""{"prompt":"hi","temperature":-0.1}""", "temperature")]
    public async Task BadCompletionRequestsAre400(string body, string param)
    {
        await AssertError(await f.Http.PostAsync("v1/completions", Json(body)), HttpStatusCode.BadRequest, param);
    }

    [Fact]
    public async Task OversizedDeepOrTooLongRequestsAreRefused()
    {
        // Body over the 1 MiB limit: 413, which the client gets to read (the server reads and discards the rest of the
        // body first; closing while the client still sends gave it "broken pipe" instead). Several times, as that was a race.
        var huge = """{"messages":[{"role":"user","content":" """ + new string('a', 2 << 20) + "\"}]}";
        for (int i = 0; i < 4; i++)
        {
            var tooLarge = await AssertError(await f.Http.PostAsync("v1/chat/completions", Json(huge)), HttpStatusCode.RequestEntityTooLarge);
            Assert.Equal("the request body is too large: the limit is 1048576 bytes", tooLarge.GetProperty("message").GetString());
        }
        // The same without a Content-Length (chunked): counted as it is read.
        var chunked = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(huge)));
        chunked.Headers.ContentType = new("application/json");
        var req = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = chunked };
        req.Headers.TransferEncodingChunked = true;
        await AssertError(await f.Http.SendAsync(req), HttpStatusCode.RequestEntityTooLarge);
        // Past the drain cap (16 MiB here) the answer is still the 413 when the client reads it early (Expect: 100-continue).
        var enormous = new ByteArrayContent(new byte[20 << 20]);
        enormous.Headers.ContentType = new("application/json");
        var early = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = enormous };
        early.Headers.ExpectContinue = true;
        await AssertError(await f.Http.SendAsync(early), HttpStatusCode.RequestEntityTooLarge);
        // Nesting deeper than the parser allows: 400.
        var deep = """{"messages":""" + new string('[', 200) + new string(']', 200) + "}";
        await AssertError(await f.Http.PostAsync("v1/chat/completions", Json(deep)), HttpStatusCode.BadRequest);
        // A prompt longer than the context: 400, not a crash or a hang.
        var words = string.Join(' ', Enumerable.Range(0, 3000).Select(i => "w" + i));
        var e = await AssertError(await f.Http.PostAsync("v1/chat/completions", Json(JsonSerializer.Serialize(new { messages = new[] { new { role = "user", content = words } } }))), HttpStatusCode.BadRequest);
        Assert.Contains("context", e.GetProperty("message").GetString());
        // Unknown /v1 routes: 404 error object; wrong method: 405.
        await AssertError(await f.Http.GetAsync("v1/nothing/here"), HttpStatusCode.NotFound);
        Assert.Equal("POST", (await AssertError(await f.Http.GetAsync("v1/chat/completions"), HttpStatusCode.MethodNotAllowed)).GetProperty("message").GetString()!.Split(' ')[^1]);
        // The server still answers normally afterwards.
        var ok = await f.Http.PostAsync("v1/chat/completions", Json("""{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}"""));
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    [Fact]
    public async Task ApiKeyGuardsEveryV1Route()
    {
        using var served = ServerTestSupport.Serve();
        await using var server = await ServerTestSupport.StartAsync(served, new ServerOptions { ApiKey = "s3cret-key" });
        using var http = ServerTestSupport.Http(server.BaseAddress);
        async Task<HttpResponseMessage> Send(HttpMethod m, string path, string? auth, string? body = null)
        {
            var req = new HttpRequestMessage(m, path);
            if (auth is not null) req.Headers.TryAddWithoutValidation("Authorization", auth);
            if (body is not null) req.Content = Json(body);
            return await http.SendAsync(req);
        }
        const string chat = """{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}""";
        foreach (var auth in new string?[] { null, "Bearer wrong", "Bearer s3cret-ke", "Bearer s3cret-key2", "Basic s3cret-key", "s3cret-key", "Bearer " })
        {
            var r = await AssertError(await Send(HttpMethod.Get, "v1/models", auth), HttpStatusCode.Unauthorized);
            Assert.Equal("invalid_api_key", r.GetProperty("code").GetString());
            await AssertError(await Send(HttpMethod.Post, "v1/chat/completions", auth, chat), HttpStatusCode.Unauthorized);
            await AssertError(await Send(HttpMethod.Post, "v1/completions", auth, """{"prompt":"hi"}"""), HttpStatusCode.Unauthorized);
            await AssertError(await Send(HttpMethod.Get, "v1/unknown", auth), HttpStatusCode.Unauthorized);
        }
        Assert.Equal(HttpStatusCode.OK, (await Send(HttpMethod.Get, "v1/models", "Bearer s3cret-key")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await Send(HttpMethod.Post, "v1/chat/completions", "Bearer s3cret-key", chat)).StatusCode);
        // Health, metrics and the page stay open (the page asks for the key itself).
        Assert.Equal(HttpStatusCode.OK, (await Send(HttpMethod.Get, "health", null)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await Send(HttpMethod.Get, "/", null)).StatusCode);

        var options = new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "v1"), RetryPolicy = new ClientRetryPolicy(0) };
        ChatCompletion c = await new ChatClient("longcat-test", new ApiKeyCredential("s3cret-key"), options).CompleteChatAsync([new UserChatMessage("hi")], new ChatCompletionOptions { MaxOutputTokenCount = 2 });
        Assert.Equal(2, c.Usage.OutputTokenCount);
        var e = await Assert.ThrowsAsync<ClientResultException>(() => new ChatClient("longcat-test", new ApiKeyCredential("nope"), options).CompleteChatAsync([new UserChatMessage("hi")]));
        Assert.Equal(401, e.Status);
    }

    [Fact]
    public async Task FullQueueAnswers429WithRetryAfter()
    {
        using var served = ServerTestSupport.Serve(new SchedulerOptions { ContextLength = 1024, MaxRunningSequences = 1, MaxQueuedRequests = 0 });
        await using var server = await ServerTestSupport.StartAsync(served);
        using var http = ServerTestSupport.Http(server.BaseAddress);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var longReq = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = Json("""{"messages":[{"role":"user","content":"hi"}],"max_tokens":500,"stream":true}""") };
        using (var first = await http.SendAsync(longReq, HttpCompletionOption.ResponseHeadersRead, cts.Token))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
            var busy = await http.PostAsync("v1/chat/completions", Json("""{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}"""));
            var e = await AssertError(busy, HttpStatusCode.TooManyRequests);
            Assert.Equal("rate_limit_exceeded", e.GetProperty("code").GetString());
            Assert.True(busy.Headers.RetryAfter?.Delta >= TimeSpan.FromSeconds(1));
        }
        // The first stream was dropped: its sequence leaves and the next request is served.
        Assert.True(await ServerTestSupport.WaitUntil(() => served.Scheduler.Stats().Running == 0 && served.Scheduler.Pool.RentedBytes == 0));
        Assert.Equal(HttpStatusCode.OK, (await http.PostAsync("v1/chat/completions", Json("""{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}"""))).StatusCode);
    }
}
