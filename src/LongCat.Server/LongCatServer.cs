using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using LongCat.Inference;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace LongCat.Server;

/// <summary>A started server: its address, and how to stop it.</summary>
public sealed class RunningServer(WebApplication app, Uri baseAddress) : IAsyncDisposable
{
    public WebApplication App { get; } = app;
    /// <summary>http://host:port/ as bound (the real port when 0 was asked for).</summary>
    public Uri BaseAddress { get; } = baseAddress;

    /// <summary>Completes when the host shuts down (Ctrl+C, SIGTERM).</summary>
    public Task WaitForShutdownAsync() => Microsoft.Extensions.Hosting.HostingAbstractionsHostExtensions.WaitForShutdownAsync(App);

    public async ValueTask DisposeAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        try { await App.StopAsync(cts.Token); } catch (OperationCanceledException) { }
        await App.DisposeAsync();
    }
}

/// <summary>
/// The OpenAI-compatible HTTP server (Kestrel, minimal APIs) over a <see cref="ServedModel"/>:
/// <c>POST /v1/chat/completions</c>, <c>POST /v1/completions</c> (both streamed as SSE or not), <c>GET /v1/models</c>,
/// <c>GET /health</c>, <c>GET /metrics</c> (Prometheus) and the chat page at <c>/</c>. Every error is OpenAI's error
/// object with the right status (400 bad request, 401 missing key, 404, 413 body too large, 429 queue full with
/// Retry-After, 500 without details); no stack trace ever reaches a client.
/// </summary>
public static class LongCatServer
{
    /// <summary>Builds the app (not started).</summary>
    public static WebApplication Build(ServedModel served, ServerOptions options)
    {
        options.Validate();
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
        if (options.ConsoleLogging)
            builder.Logging.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning)
                // A failed start (port in use) reaches the user as the CLI's one error line, not as a logged stack trace.
                .AddFilter("Microsoft.Extensions.Hosting", LogLevel.None);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = RequestBodyLimit.DrainBytes(options);   // the hard stop; the limit itself: RequestBodyLimit
            k.Limits.MaxRequestHeadersTotalSize = 32 * 1024;
            k.Limits.RequestHeadersTimeout = TimeSpan.FromSeconds(30);
            k.AddServerHeader = false;
            k.Listen(ServerOptions.ParseHost(options.Host), options.Port);
        });
        builder.Services.AddSingleton(served);
        var app = builder.Build();
        var metrics = new ServerMetrics();
        var logger = app.Logger;

        app.UseRouting();
        app.Use(async (ctx, next) =>
        {
            try
            {
                await next(ctx);
            }
            catch (Exception e) when (!ctx.Response.HasStarted)
            {
                if (ctx.RequestAborted.IsCancellationRequested && e is OperationCanceledException or IOException)
                    ctx.Response.StatusCode = 499;  // client closed the request (nginx's code; nobody reads the answer)
                else
                {
                    var api = ToApiError(e, options);
                    if (api.Status == 500) logger.LogError(e, "internal error on {Path}", ctx.Request.Path);
                    if (api.Status == 413) await RequestBodyLimit.DrainAsync(ctx);
                    await WriteError(ctx, api);
                }
            }
            catch (Exception e) when (e is OperationCanceledException or IOException)
            {
                // The client went away mid-stream; its sequence was cancelled by RequestAborted.
            }
            finally
            {
                var route = (ctx.GetEndpoint() as RouteEndpoint)?.RoutePattern.RawText ?? "unmatched";
                metrics.Count(route, ctx.Response.StatusCode);
            }
        });
        RequestBodyLimit.Use(app, options);
        // Security guards (HostFiltering.cs, Cors.cs): before the key check, so a preflight needs no key.
        HostFiltering.Use(app, options);
        Cors.Use(app, options);
        if (options.ApiKey is { } key)
        {
            var want = SHA256.HashData(Encoding.UTF8.GetBytes(key));
            app.Use(async (ctx, next) =>
            {
                if (ctx.Request.Path.StartsWithSegments("/v1") && !Authorized(ctx.Request, want))
                {
                    ctx.Response.Headers.WWWAuthenticate = "Bearer";
                    throw new ApiException(401, "missing or wrong API key: send 'Authorization: Bearer KEY'", code: "invalid_api_key");
                }
                await next(ctx);
            });
        }

        MapStaticPage(app);
        app.MapGet("/health", () => Results.Json(new JsonObject
        {
            ["status"] = "ok",
            ["model"] = served.ModelId,
            ["running"] = served.Scheduler.Stats().Running,
            ["queued"] = served.Scheduler.Stats().Queued,
        }));
        app.MapGet("/metrics", () => Results.Text(metrics.Render(served.Scheduler.Stats(), served.ModelId), "text/plain; version=0.0.4; charset=utf-8"));
        app.MapGet("/v1/models", () => Results.Json(new JsonObject
        {
            ["object"] = "list",
            ["data"] = new JsonArray(ModelObject(served)),
        }));
        app.MapGet("/v1/models/{id}", (string id) => id == served.ModelId
            ? Results.Json(ModelObject(served))
            : throw new ApiException(404, $"model '{id}' does not exist: this server has '{served.ModelId}'", param: "model", code: "model_not_found"));
        app.MapPost("/v1/chat/completions", (HttpContext ctx) => ChatCompletions(ctx, served));
        app.MapPost("/v1/completions", (HttpContext ctx) => Completions(ctx, served));
        app.Map("/v1/{**rest}", (HttpContext ctx) =>
        {
            if (Routes.TryGetValue(ctx.Request.Path.Value!.TrimEnd('/'), out var method))
            {
                ctx.Response.Headers.Allow = method;
                throw new ApiException(405, $"{ctx.Request.Method} is not allowed on {ctx.Request.Path}: use {method}", code: "method_not_allowed");
            }
            throw new ApiException(404, $"no route {ctx.Request.Method} {ctx.Request.Path}: see /v1/models, /v1/chat/completions, /v1/completions", code: "not_found");
        });
        return app;
    }

    static readonly Dictionary<string, string> Routes = new(StringComparer.Ordinal)
    {
        ["/v1/chat/completions"] = "POST",
        ["/v1/completions"] = "POST",
        ["/v1/models"] = "GET",
    };

    /// <summary>Builds and starts the server; returns when it listens.</summary>
    public static async Task<RunningServer> StartAsync(ServedModel served, ServerOptions options, CancellationToken ct = default)
    {
        var app = Build(served, options);
        await app.StartAsync(ct);
        var address = app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>()
            .Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new RunningServer(app, new Uri(address.Replace("[::]", "[::1]", StringComparison.Ordinal).Replace("0.0.0.0", "127.0.0.1", StringComparison.Ordinal) + "/"));
    }

    static bool Authorized(HttpRequest request, byte[] want)
    {
        var h = request.Headers.Authorization.ToString();
        if (!h.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) return false;
        // Hash first so the comparison takes the same time whatever the length or content of the guess.
        var got = SHA256.HashData(Encoding.UTF8.GetBytes(h[7..].Trim()));
        return CryptographicOperations.FixedTimeEquals(got, want);
    }

    static JsonObject ModelObject(ServedModel s) => new()
    {
        ["id"] = s.ModelId,
        ["object"] = "model",
        ["created"] = StartTime,
        ["owned_by"] = "longcat",
        ["context_length"] = s.Scheduler.ContextLength,
        ["speculative"] = s.Model.Mtp is not null,
    };

    static readonly long StartTime = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    /// <summary>Maps an exception to the error a client sees. Only <see cref="ApiException"/>, argument errors and a full queue say why.</summary>
    static ApiException ToApiError(Exception e, ServerOptions? options = null) => e switch
    {
        ApiException a => a,
        ContextLengthExceededException c => new ApiException(400, c.Message + ": shorten the conversation", param: "messages", code: "context_length_exceeded"),
        SchedulerBusyException b => new ApiException(429, b.Message, "rate_limit_error", code: "rate_limit_exceeded") { Data = { ["retry"] = b.RetryAfter } },
        ArgumentException a => new ApiException(400, a.Message.Split(" (Parameter '")[0], param: ParamOf(a.Message)),
        BadHttpRequestException { StatusCode: 413 } => RequestBodyLimit.TooLarge(options?.MaxRequestBodyBytes),
        BadHttpRequestException b => new ApiException(b.StatusCode, "bad request: " + b.Message),
        _ => new ApiException(500, "internal server error", "server_error"),
    };

    /// <summary>The engine's messages start with the parameter's OpenAI name: "temperature = 5 is invalid: ...".</summary>
    static string? ParamOf(string message)
    {
        int eq = message.IndexOf(" = ", StringComparison.Ordinal);
        if (eq <= 0) return message.StartsWith("messages", StringComparison.Ordinal) ? "messages" : null;
        var name = message[..eq];
        return name.All(c => char.IsAsciiLetterLower(c) || c == '_') ? name : null;
    }

    static async Task WriteError(HttpContext ctx, ApiException e)
    {
        // Clear drops every header: keep the ones that belong to the answer (401's challenge, 405's Allow, CORS).
        var keep = KeptHeaders.Select(h => (h, ctx.Response.Headers[h])).Where(h => h.Item2.Count > 0).ToList();
        ctx.Response.Clear();
        foreach (var (h, v) in keep) ctx.Response.Headers[h] = v;
        ctx.Response.StatusCode = e.Status;
        if (e.Data["retry"] is TimeSpan retry) ctx.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(retry.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(e.ToJson().ToJsonString());
    }

    static readonly string[] KeptHeaders = ["WWW-Authenticate", "Allow", "Access-Control-Allow-Origin", "Access-Control-Expose-Headers", "Vary"];

    static void CheckModel(string? model, ServedModel s)
    {
        if (model is not null && model != s.ModelId)
            throw new ApiException(404, $"model '{model}' does not exist: this server has '{s.ModelId}'", param: "model", code: "model_not_found");
    }

    // ------------------------------------------------------------------ chat completions

    static async Task ChatCompletions(HttpContext ctx, ServedModel s)
    {
        var ct = ctx.RequestAborted;
        using var doc = await OpenAIRequest.ReadJsonAsync(ctx.Request, ct);
        var req = OpenAIRequest.ParseChat(doc.RootElement);
        CheckModel(req.Model, s);
        if (req.N > 1) { await MultipleChoices.RunAsync(ctx, s, req, chat: true); return; }
        req.Options.ModelId = null;
        await using var updates = s.Client.GetStreamingResponseAsync(req.Messages, req.Options, ct).GetAsyncEnumerator(ct);
        // The first update arrives once the request is queued: validation, prompt and queue errors are thrown here,
        // before anything is written, and become 400 / 429.
        if (!await updates.MoveNextAsync()) throw new InvalidOperationException("the chat client ended without a reply");
        var first = updates.Current;
        string id = first.ResponseId!;
        long created = first.CreatedAt!.Value.ToUnixTimeSeconds();

        if (!req.Stream)
        {
            var reply = new OpenAITools.Reply();   // text, reasoning_content and tool_calls
            reply.Add(first);
            ChatResponseUpdate last = first;
            var lps = new List<TokenLogprob>();
            if (LogprobsOf(first) is { } lp0) lps.AddRange(lp0);
            while (await updates.MoveNextAsync())
            {
                reply.Add(updates.Current);
                last = updates.Current;
                if (LogprobsOf(last) is { } lp) lps.AddRange(lp);
            }
            await Results.Json(new JsonObject
            {
                ["id"] = id,
                ["object"] = "chat.completion",
                ["created"] = created,
                ["model"] = s.ModelId,
                ["choices"] = new JsonArray(new JsonObject
                {
                    ["index"] = 0,
                    ["message"] = reply.Message(),
                    ["logprobs"] = req.Logprobs is null ? null : Logprobs.Chat(s.Generator.Tokenizer, lps),
                    ["finish_reason"] = FinishReason(last.FinishReason),
                }),
                ["usage"] = Usage(last),
                ["longcat"] = StatsJson(last.AdditionalProperties),
            }).ExecuteAsync(ctx);
            return;
        }

        StartSse(ctx.Response);
        JsonObject Chunk(JsonObject delta, string? finish) => new()
        {
            ["id"] = id,
            ["object"] = "chat.completion.chunk",
            ["created"] = created,
            ["model"] = s.ModelId,
            ["choices"] = new JsonArray(new JsonObject { ["index"] = 0, ["delta"] = delta, ["logprobs"] = null, ["finish_reason"] = finish }),
        };
        var toolState = new OpenAITools.StreamState();
        await StreamUpdates(ctx, updates, Chunk(new JsonObject { ["role"] = "assistant", ["content"] = "" }, null),
            u =>
            {
                var chunks = OpenAITools.Deltas(u, toolState).Select(d => Chunk(d, null)).ToList();
                if (req.Logprobs is not null)
                {
                    // The update's token logprobs go on its first chunk (an empty-content chunk when the text is held
                    // back, e.g. inside a tool-call tag); its other chunks carry an empty list.
                    var lp = LogprobsOf(u);
                    if (chunks.Count == 0 && lp is { Count: > 0 }) chunks.Add(Chunk(new JsonObject { ["content"] = "" }, null));
                    for (int i = 0; i < chunks.Count; i++) chunks[i]["choices"]![0]!["logprobs"] = Logprobs.Chat(s.Generator.Tokenizer, i == 0 ? lp ?? [] : []);
                }
                return chunks;
            },
            last =>
            {
                var done = Chunk(new JsonObject(), FinishReason(last.FinishReason));
                done["longcat"] = StatsJson(last.AdditionalProperties);
                if (req.IncludeUsage) done["usage"] = null;
                return done;
            },
            req.IncludeUsage ? last => new JsonObject
            {
                ["id"] = id,
                ["object"] = "chat.completion.chunk",
                ["created"] = created,
                ["model"] = s.ModelId,
                ["choices"] = new JsonArray(),
                ["usage"] = Usage(last),
            } : null);
    }

    // ------------------------------------------------------------------ legacy completions

    static async Task Completions(HttpContext ctx, ServedModel s)
    {
        var ct = ctx.RequestAborted;
        using var doc = await OpenAIRequest.ReadJsonAsync(ctx.Request, ct);
        var req = OpenAIRequest.ParseCompletion(doc.RootElement);
        CheckModel(req.Model, s);
        if (req.N > 1) { await MultipleChoices.RunAsync(ctx, s, req, chat: false); return; }
        var g = s.Client.ToGenerationOptions(req.Options);
        var prompt = s.Generator.Tokenizer.EncodeToIds(req.Prompt!);
        if (prompt.Length == 0) throw ApiException.BadParam("prompt", "'prompt' encodes to no tokens");
        string id = "cmpl-" + Guid.NewGuid().ToString("N")[..24];
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        await using var deltas = s.Generator.StreamAsync(prompt, g, ct).GetAsyncEnumerator(ct);
        try
        {
            if (!await deltas.MoveNextAsync()) throw new InvalidOperationException("the generator ended without a reply");
        }
        catch (ContextLengthExceededException e)
        {
            throw new ApiException(400, e.Message + ": shorten the prompt", param: "prompt", code: "context_length_exceeded");
        }

        if (!req.Stream)
        {
            var text = new StringBuilder(req.Echo ? req.Prompt : "");
            GenerationResult? result = null;
            var lps = new List<TokenLogprob>();
            while (await deltas.MoveNextAsync())
            {
                text.Append(deltas.Current.Text);
                result ??= deltas.Current.Result;
                if (deltas.Current.Logprobs is { } lp) lps.AddRange(lp);
            }
            await Results.Json(new JsonObject
            {
                ["id"] = id,
                ["object"] = "text_completion",
                ["created"] = created,
                ["model"] = s.ModelId,
                ["choices"] = new JsonArray(new JsonObject
                {
                    ["text"] = text.ToString(),
                    ["index"] = 0,
                    ["logprobs"] = req.Logprobs is null ? null : Logprobs.Legacy(s.Generator.Tokenizer, lps, 0),
                    ["finish_reason"] = FinishReason(result!),
                }),
                ["usage"] = Usage(result!),
                ["longcat"] = StatsJson(LongCatChatClient.Stats(result!)),
            }).ExecuteAsync(ctx);
            return;
        }

        StartSse(ctx.Response);
        int offset = 0;   // text offset of the next token, for legacy logprobs
        JsonObject Chunk(string text, string? finish, IReadOnlyList<TokenLogprob>? lps = null)
        {
            var c = new JsonObject
            {
                ["id"] = id,
                ["object"] = "text_completion",
                ["created"] = created,
                ["model"] = s.ModelId,
                ["choices"] = new JsonArray(new JsonObject
                {
                    ["text"] = text,
                    ["index"] = 0,
                    ["logprobs"] = req.Logprobs is null ? null : Logprobs.Legacy(s.Generator.Tokenizer, lps ?? [], offset),
                    ["finish_reason"] = finish,
                }),
            };
            offset += text.Length;
            return c;
        }
        try
        {
            if (req.Echo) await Sse(ctx.Response, Chunk(req.Prompt!, null).ToJsonString(), ct);
            while (await deltas.MoveNextAsync())
            {
                var d = deltas.Current;
                if (d.Result is { } r)
                {
                    var done = Chunk(d.Text, FinishReason(r));
                    done["longcat"] = StatsJson(LongCatChatClient.Stats(r));
                    if (req.IncludeUsage) done["usage"] = null;
                    await Sse(ctx.Response, done.ToJsonString(), ct);
                    // As in chat: usage comes in a last chunk of its own, with no choices.
                    if (req.IncludeUsage)
                        await Sse(ctx.Response, new JsonObject
                        {
                            ["id"] = id,
                            ["object"] = "text_completion",
                            ["created"] = created,
                            ["model"] = s.ModelId,
                            ["choices"] = new JsonArray(),
                            ["usage"] = Usage(r),
                        }.ToJsonString(), ct);
                }
                else if (d.Text.Length > 0 || d.Logprobs is { Count: > 0 }) await Sse(ctx.Response, Chunk(d.Text, null, d.Logprobs).ToJsonString(), ct);
            }
            await Sse(ctx.Response, "[DONE]", ct);
        }
        catch (Exception e) when (e is not OperationCanceledException and not IOException)
        {
            await SseError(ctx, e);
        }
    }

    // ------------------------------------------------------------------ SSE

    static void StartSse(HttpResponse r)
    {
        r.StatusCode = 200;
        r.ContentType = "text/event-stream; charset=utf-8";
        r.Headers.CacheControl = "no-cache";
        r.Headers["X-Accel-Buffering"] = "no";
    }

    static async Task Sse(HttpResponse r, string data, CancellationToken ct)
    {
        await r.WriteAsync("data: " + data + "\n\n", ct);
        await r.Body.FlushAsync(ct);
    }

    static async Task StreamUpdates(HttpContext ctx, IAsyncEnumerator<ChatResponseUpdate> updates, JsonObject firstChunk,
        Func<ChatResponseUpdate, IEnumerable<JsonObject>> content, Func<ChatResponseUpdate, JsonObject> finish, Func<ChatResponseUpdate, JsonObject>? usage)
    {
        var ct = ctx.RequestAborted;
        try
        {
            await Sse(ctx.Response, firstChunk.ToJsonString(), ct);
            while (await updates.MoveNextAsync())
            {
                var u = updates.Current;
                foreach (var chunk in content(u)) await Sse(ctx.Response, chunk.ToJsonString(), ct);
                if (u.FinishReason is not null)
                {
                    await Sse(ctx.Response, finish(u).ToJsonString(), ct);
                    if (usage is not null) await Sse(ctx.Response, usage(u).ToJsonString(), ct);
                }
            }
            await Sse(ctx.Response, "[DONE]", ct);
        }
        catch (Exception e) when (e is not OperationCanceledException and not IOException)
        {
            await SseError(ctx, e);
        }
    }

    /// <summary>After the stream started the status is sent: the error goes in the stream, as OpenAI does.</summary>
    static async Task SseError(HttpContext ctx, Exception e)
    {
        var api = ToApiError(e);
        if (api.Status == 500) ctx.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("LongCat.Server").LogError(e, "internal error while streaming");
        try
        {
            await Sse(ctx.Response, api.ToJson().ToJsonString(), ctx.RequestAborted);
            await Sse(ctx.Response, "[DONE]", ctx.RequestAborted);
        }
        catch (Exception w) when (w is OperationCanceledException or IOException) { }
    }

    // ------------------------------------------------------------------ pieces of responses

    static IReadOnlyList<TokenLogprob>? LogprobsOf(ChatResponseUpdate u) =>
        u.AdditionalProperties?.TryGetValue(LongCatChatClient.LogprobsKey, out var v) == true ? v as IReadOnlyList<TokenLogprob> : null;

    static string FinishReason(ChatFinishReason? r) => r == ChatFinishReason.Length ? "length" : r == ChatFinishReason.ToolCalls ? "tool_calls" : "stop";

    static string FinishReason(GenerationResult r) => r.StopReason is StopReason.Length or StopReason.ContextFull ? "length" : "stop";

    static JsonObject Usage(ChatResponseUpdate last)
    {
        var u = last.Contents.OfType<UsageContent>().First().Details;
        return new JsonObject { ["prompt_tokens"] = u.InputTokenCount, ["completion_tokens"] = u.OutputTokenCount, ["total_tokens"] = u.TotalTokenCount };
    }

    static JsonObject Usage(GenerationResult r) => new()
    {
        ["prompt_tokens"] = r.PromptTokens,
        ["completion_tokens"] = r.CompletionTokens,
        ["total_tokens"] = r.PromptTokens + r.CompletionTokens,
    };

    static JsonObject StatsJson(AdditionalPropertiesDictionary? stats)
    {
        var o = new JsonObject();
        if (stats is null) return o;
        foreach (var (k, v) in stats)
            o[k] = v switch
            {
                null => null,
                double d => d,
                float f => f,
                int i => i,
                long l => l,
                string s => s,
                bool b => b,
                _ => v.ToString(),
            };
        return o;
    }

    // ------------------------------------------------------------------ the chat page

    static void MapStaticPage(WebApplication app)
    {
        var asm = typeof(LongCatServer).Assembly;
        foreach (var name in asm.GetManifestResourceNames().Where(n => n.StartsWith("wwwroot/", StringComparison.Ordinal)))
        {
            var bytes = Read(asm, name);
            var file = name["wwwroot/".Length..];
            var type = Path.GetExtension(file) switch
            {
                ".html" => "text/html; charset=utf-8",
                ".js" => "text/javascript; charset=utf-8",
                ".css" => "text/css; charset=utf-8",
                ".svg" => "image/svg+xml",
                _ => "application/octet-stream",
            };
            IResult Serve(HttpContext ctx)
            {
                ctx.Response.Headers.XContentTypeOptions = "nosniff";
                // Everything the page needs comes from this server: no CDN, works offline.
                ctx.Response.Headers.ContentSecurityPolicy = "default-src 'self'; connect-src 'self'; img-src 'self' data:";
                ctx.Response.Headers.CacheControl = "no-cache";
                return Results.Bytes(bytes, type);
            }
            app.MapGet("/" + file, Serve);
            if (file == "index.html") app.MapGet("/", Serve);
        }
    }

    static byte[] Read(Assembly asm, string name)
    {
        using var s = asm.GetManifestResourceStream(name)!;
        using var m = new MemoryStream();
        s.CopyTo(m);
        return m.ToArray();
    }
}
