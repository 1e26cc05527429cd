using System.Net;
using System.Text;
using System.Text.Json;
using LongCat.Server;

namespace LongCat.Tests;

/// <summary>
/// The request guards of issue 12: Host filtering (DNS rebinding), JSON-only bodies, CORS, invalid Unicode in any
/// string field, and the error codes clients look for (404 model_not_found, context_length_exceeded, the 401 challenge).
/// </summary>
public class ServerGuardTests(ServerFixture f) : IClassFixture<ServerFixture>
{
    const string Chat = """{"messages":[{"role":"user","content":"hi"}],"max_tokens":1}""";

    static ByteArrayContent Body(byte[] bytes, string? type = "application/json")
    {
        var c = new ByteArrayContent(bytes);
        if (type is not null) c.Headers.TryAddWithoutValidation("Content-Type", type);
        return c;
    }

    static async Task<JsonElement> Error(HttpResponseMessage r, HttpStatusCode status)
    {
        var body = await r.Content.ReadAsStringAsync();
        Assert.True(status == r.StatusCode, $"{(int)r.StatusCode} {body}");
        Assert.DoesNotContain("   at ", body);
        return JsonDocument.Parse(body).RootElement.GetProperty("error");
    }

    static async Task<HttpResponseMessage> WithHost(HttpClient http, string host, string path = "v1/models")
    {
        var req = new HttpRequestMessage(HttpMethod.Get, path);
        req.Headers.Host = host;
        return await http.SendAsync(req);
    }

    [Theory]
    [InlineData("localhost")]
    [InlineData("localhost:8000")]
    [InlineData("LOCALHOST:1")]
    [InlineData("127.0.0.1")]
    [InlineData("127.0.0.1:9")]
    [InlineData("[::1]")]
    [InlineData("[::1]:8000")]
    public async Task LoopbackHostsAreAccepted(string host)
    {
        Assert.Equal(HttpStatusCode.OK, (await WithHost(f.Http, host)).StatusCode);
    }

    [Theory]
    [InlineData("evil.example")]
    [InlineData("evil.example:8000")]
    [InlineData("localhost.evil.example")]
    [InlineData("127.0.0.2")]
    [InlineData("10.0.0.1:80")]
    public async Task HostileHostsAre421OnEveryRoute(string host)
    {
        foreach (var path in new[] { "v1/models", "/", "health", "metrics" })
        {
            var e = await Error(await WithHost(f.Http, host, path), HttpStatusCode.MisdirectedRequest);
            Assert.Equal("host_not_allowed", e.GetProperty("code").GetString());
            Assert.Contains("--allowed-host", e.GetProperty("message").GetString());
        }
        var req = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = Body(Encoding.UTF8.GetBytes(Chat)) };
        req.Headers.Host = host;
        await Error(await f.Http.SendAsync(req), HttpStatusCode.MisdirectedRequest);
    }

    [Fact]
    public async Task AllowedHostsExtendTheLoopbackSet()
    {
        using var served = ServerTestSupport.Serve();
        await using var server = await ServerTestSupport.StartAsync(served, new ServerOptions { AllowedHosts = ["my.box", "::2"] });
        using var http = ServerTestSupport.Http(server.BaseAddress);
        Assert.Equal(HttpStatusCode.OK, (await WithHost(http, "my.box:8000")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await WithHost(http, "[::2]")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await WithHost(http, "localhost")).StatusCode);
        await Error(await WithHost(http, "other.box"), HttpStatusCode.MisdirectedRequest);
        Assert.Null(HostFiltering.AcceptedHosts(new ServerOptions { Host = "0.0.0.0" }));
        Assert.Equal(["a.b"], HostFiltering.AcceptedHosts(new ServerOptions { Host = "0.0.0.0", AllowedHosts = ["a.b"] })!);
        Assert.Throws<ArgumentException>(() => new ServerOptions { AllowedHosts = ["a b"] }.Validate());
        Assert.Throws<ArgumentException>(() => new ServerOptions { CorsOrigins = ["https://a.example/path"] }.Validate());
    }

    [Theory]
    [InlineData("text/plain")]
    [InlineData("text/plain; charset=utf-8")]
    [InlineData("application/x-www-form-urlencoded")]
    [InlineData("multipart/form-data; boundary=x")]
    [InlineData("application/json; charset=latin1")]
    [InlineData(null)]
    public async Task NonJsonBodiesAre415(string? type)
    {
        foreach (var (path, body) in new[] { ("v1/chat/completions", Chat), ("v1/completions", """{"prompt":"hi","max_tokens":1}""") })
        {
            var e = await Error(await f.Http.PostAsync(path, Body(Encoding.UTF8.GetBytes(body), type)), HttpStatusCode.UnsupportedMediaType);
            Assert.Contains("application/json", e.GetProperty("message").GetString());
        }
        Assert.Equal(HttpStatusCode.OK, (await f.Http.PostAsync("v1/chat/completions", Body(Encoding.UTF8.GetBytes(Chat), "application/json; charset=UTF-8"))).StatusCode);
    }

    /// <summary>Each string field of a request, with BAD where the broken text goes.</summary>
    public static TheoryData<string, string, string> StringFields() => new()
    {
        { "v1/chat/completions", """{"messages":[{"role":"user","content":"aBADb"}]}""", "messages[0].content" },
        { "v1/chat/completions", """{"messages":[{"role":"system","content":"s"},{"role":"user","content":"hi BAD"}]}""", "messages[1].content" },
        { "v1/chat/completions", """{"messages":[{"role":"user","content":[{"type":"text","text":"BAD"}]}]}""", "messages[0].content[0].text" },
        { "v1/chat/completions", """{"messages":[{"role":"BAD","content":"hi"}]}""", "messages[0].role" },
        { "v1/chat/completions", """{"messages":[{"role":"user","content":"hi","name":"BAD"}]}""", "messages[0].name" },
        { "v1/chat/completions", """{"model":"BAD","messages":[{"role":"user","content":"hi"}]}""", "model" },
        { "v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"stop":["x","BAD"]}""", "stop[1]" },
        { "v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"user":"BAD"}""", "user" },
        { "v1/completions", """{"prompt":"BAD"}""", "prompt" },
        { "v1/completions", """{"prompt":["BAD"]}""", "prompt[0]" },
        { "v1/completions", """{"prompt":"hi","stop":"BAD"}""", "stop" },
    };

    [Theory]
    [MemberData(nameof(StringFields))]
    public async Task LoneSurrogatesAre400NamingTheField(string path, string template, string field)
    {
        foreach (var bad in new[] { "\\ud800", "x\\udc00y", "\\ud83d\\u0041" })
        {
            var e = await Error(await f.Http.PostAsync(path, Body(Encoding.UTF8.GetBytes(template.Replace("BAD", bad)))), HttpStatusCode.BadRequest);
            Assert.Equal(field, e.GetProperty("param").GetString());
        }
        // A proper pair is fine (an emoji); the request fails only for its own reasons, never on the text.
        var ok = await f.Http.PostAsync(path, Body(Encoding.UTF8.GetBytes(template.Replace("BAD", "\\ud83d\\ude00"))));
        if (ok.StatusCode != HttpStatusCode.OK) Assert.DoesNotContain("Unicode", (await Error(ok, ok.StatusCode)).GetProperty("message").GetString());
    }

    [Theory]
    [MemberData(nameof(StringFields))]
    public async Task InvalidUtf8Is400NamingTheField(string path, string template, string field)
    {
        foreach (var bad in new byte[][] { [0xFF], [0xC3], [0xED, 0xA0, 0x80], [0xC0, 0xAF], [0xE2, 0x82] })
        {
            var parts = template.Split("BAD");
            var bytes = Encoding.UTF8.GetBytes(parts[0]).Concat(bad).Concat(Encoding.UTF8.GetBytes(parts[1])).ToArray();
            var r = await f.Http.PostAsync(path, Body(bytes));
            var e = await Error(r, HttpStatusCode.BadRequest);
            Assert.Equal(field, e.GetProperty("param").GetString());
        }
    }

    [Fact]
    public async Task InvalidTextInAPropertyNameIs400()
    {
        var e = await Error(await f.Http.PostAsync("v1/chat/completions", Body(Encoding.UTF8.GetBytes("""{"messages":[{"role":"user","content":"hi","\ud800":1}]}"""))), HttpStatusCode.BadRequest);
        Assert.StartsWith("messages[0]", e.GetProperty("param").GetString());
    }

    [Fact]
    public async Task CrossOriginIsRefusedByDefault()
    {
        var pre = new HttpRequestMessage(HttpMethod.Options, "v1/chat/completions");
        pre.Headers.Add("Origin", "https://evil.example");
        pre.Headers.Add("Access-Control-Request-Method", "POST");
        var r = await f.Http.SendAsync(pre);
        await Error(r, HttpStatusCode.Forbidden);
        Assert.False(r.Headers.Contains("Access-Control-Allow-Origin"));
        var get = new HttpRequestMessage(HttpMethod.Get, "v1/models");
        get.Headers.Add("Origin", "https://evil.example");
        var g = await f.Http.SendAsync(get);
        Assert.Equal(HttpStatusCode.OK, g.StatusCode);
        Assert.False(g.Headers.Contains("Access-Control-Allow-Origin"));
    }

    [Fact]
    public async Task CorsOriginGetsACorrectPreflightAndHeaders()
    {
        using var served = ServerTestSupport.Serve();
        await using var server = await ServerTestSupport.StartAsync(served, new ServerOptions { CorsOrigins = ["https://app.example"], ApiKey = "k" });
        using var http = ServerTestSupport.Http(server.BaseAddress);
        var pre = new HttpRequestMessage(HttpMethod.Options, "v1/chat/completions");
        pre.Headers.Add("Origin", "https://app.example");
        pre.Headers.Add("Access-Control-Request-Method", "POST");
        pre.Headers.Add("Access-Control-Request-Headers", "authorization, content-type, x-stainless-os");
        var r = await http.SendAsync(pre);   // no key: a preflight never carries one
        Assert.Equal(HttpStatusCode.NoContent, r.StatusCode);
        Assert.Equal("https://app.example", r.Headers.GetValues("Access-Control-Allow-Origin").Single());
        Assert.Contains("POST", r.Headers.GetValues("Access-Control-Allow-Methods").Single());
        Assert.Equal("authorization, content-type, x-stainless-os", r.Headers.GetValues("Access-Control-Allow-Headers").Single());
        Assert.Contains("Origin", r.Headers.Vary);

        var other = new HttpRequestMessage(HttpMethod.Options, "v1/chat/completions");
        other.Headers.Add("Origin", "https://evil.example");
        other.Headers.Add("Access-Control-Request-Method", "POST");
        await Error(await http.SendAsync(other), HttpStatusCode.Forbidden);

        var post = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = Body(Encoding.UTF8.GetBytes(Chat)) };
        post.Headers.Add("Origin", "https://app.example");
        post.Headers.Add("Authorization", "Bearer k");
        var ok = await http.SendAsync(post);
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        Assert.Equal("https://app.example", ok.Headers.GetValues("Access-Control-Allow-Origin").Single());
        // An error answer keeps the CORS header, so the page can read why.
        var denied = new HttpRequestMessage(HttpMethod.Get, "v1/models");
        denied.Headers.Add("Origin", "https://app.example");
        var d = await http.SendAsync(denied);
        await Error(d, HttpStatusCode.Unauthorized);
        Assert.Equal("https://app.example", d.Headers.GetValues("Access-Control-Allow-Origin").Single());
        Assert.Equal("Bearer", d.Headers.WwwAuthenticate.Single().Scheme);
    }

    [Fact]
    public async Task ErrorCodesClientsLookFor()
    {
        var e = await Error(await f.Http.PostAsync("v1/chat/completions", Body(Encoding.UTF8.GetBytes("""{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"""))), HttpStatusCode.NotFound);
        Assert.Equal("model_not_found", e.GetProperty("code").GetString());
        Assert.Equal("model", e.GetProperty("param").GetString());
        e = await Error(await f.Http.PostAsync("v1/completions", Body(Encoding.UTF8.GetBytes("""{"model":"gpt-4o","prompt":"hi"}"""))), HttpStatusCode.NotFound);
        Assert.Equal("model_not_found", e.GetProperty("code").GetString());

        var words = string.Join(' ', Enumerable.Range(0, 3000).Select(i => "w" + i));
        e = await Error(await f.Http.PostAsync("v1/chat/completions", Body(JsonSerializer.SerializeToUtf8Bytes(new { messages = new[] { new { role = "user", content = words } } }))), HttpStatusCode.BadRequest);
        Assert.Equal("context_length_exceeded", e.GetProperty("code").GetString());
        Assert.Equal("messages", e.GetProperty("param").GetString());
        e = await Error(await f.Http.PostAsync("v1/completions", Body(JsonSerializer.SerializeToUtf8Bytes(new { prompt = words }))), HttpStatusCode.BadRequest);
        Assert.Equal("context_length_exceeded", e.GetProperty("code").GetString());
        Assert.Equal("prompt", e.GetProperty("param").GetString());
    }

    [Fact]
    public async Task UnauthorizedCarriesTheBearerChallenge()
    {
        using var served = ServerTestSupport.Serve();
        await using var server = await ServerTestSupport.StartAsync(served, new ServerOptions { ApiKey = "k" });
        using var http = ServerTestSupport.Http(server.BaseAddress);
        var r = await http.GetAsync("v1/models");
        await Error(r, HttpStatusCode.Unauthorized);
        Assert.Equal("Bearer", r.Headers.WwwAuthenticate.Single().Scheme);
    }
}
