using System.Text;
using System.Text.Json.Nodes;
using LongCat.Inference;
using Microsoft.AspNetCore.Http;

namespace LongCat.Server;

/// <summary>
/// <c>n</c> &gt; 1 for both routes: the n choices share the prompt's prefill (<see cref="TextGenerator.StreamChoices"/>:
/// one prefill, the KV cache copied), choice i sampled with its own seed derived from the request's. Non-streamed,
/// one response with n choices (usage: the prompt once, the completions summed); streamed, each choice's chunks in
/// turn (every chunk names its <c>index</c>, as OpenAI's interleaved chunks do), then the usage chunk when asked.
/// </summary>
static class MultipleChoices
{
    sealed record Choice(string Text, List<TokenLogprob> Logprobs, GenerationResult Result);

    public static async Task RunAsync(HttpContext ctx, ServedModel s, OpenAIRequest req, bool chat)
    {
        var ct = ctx.RequestAborted;
        var g = s.Client.ToGenerationOptions(req.Options);
        int[] prompt = chat ? s.Client.EncodePrompt(req.Messages, req.Options) : s.Generator.Tokenizer.EncodeToIds(req.Prompt!);
        if (prompt.Length == 0) throw ApiException.BadParam("prompt", "'prompt' encodes to no tokens");
        IReadOnlyList<IAsyncEnumerable<TextDelta>> streams;
        try
        {
            streams = s.Generator.StreamChoices(prompt, g, req.N, ct);
        }
        catch (ContextLengthExceededException e)
        {
            throw new ApiException(400, e.Message + (chat ? ": shorten the conversation" : ": shorten the prompt"), param: chat ? "messages" : "prompt", code: "context_length_exceeded");
        }
        string id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N")[..24];
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var tok = s.Generator.Tokenizer;
        JsonObject Envelope(string obj) => new() { ["id"] = id, ["object"] = obj, ["created"] = created, ["model"] = s.ModelId };
        JsonNode? LogprobsJson(IReadOnlyList<TokenLogprob> lps, int offset) =>
            req.Logprobs is null ? null : chat ? Logprobs.Chat(tok, lps) : Logprobs.Legacy(tok, lps, offset);
        static string Finish(GenerationResult r) => r.StopReason is StopReason.Length or StopReason.ContextFull ? "length" : "stop";
        static JsonObject Usage(int prompt, IEnumerable<GenerationResult> rs)
        {
            long completion = rs.Sum(r => (long)r.CompletionTokens);
            return new JsonObject { ["prompt_tokens"] = prompt, ["completion_tokens"] = completion, ["total_tokens"] = prompt + completion };
        }

        if (!req.Stream)
        {
            var choices = await Task.WhenAll(streams.Select(async stream =>
            {
                var text = new StringBuilder(!chat && req.Echo ? req.Prompt : "");
                var lps = new List<TokenLogprob>();
                GenerationResult? result = null;
                await foreach (var d in stream.WithCancellation(ct))
                {
                    text.Append(d.Text);
                    if (d.Logprobs is { } lp) lps.AddRange(lp);
                    result ??= d.Result;
                }
                return new Choice(text.ToString(), lps, result!);
            }));
            var array = new JsonArray();
            for (int i = 0; i < choices.Length; i++)
            {
                var c = choices[i];
                array.Add(chat
                    ? new JsonObject
                    {
                        ["index"] = i,
                        ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = c.Text, ["refusal"] = null },
                        ["logprobs"] = LogprobsJson(c.Logprobs, 0),
                        ["finish_reason"] = Finish(c.Result),
                    }
                    : new JsonObject { ["text"] = c.Text, ["index"] = i, ["logprobs"] = LogprobsJson(c.Logprobs, 0), ["finish_reason"] = Finish(c.Result) });
            }
            var body = Envelope(chat ? "chat.completion" : "text_completion");
            body["choices"] = array;
            body["usage"] = Usage(prompt.Length, choices.Select(c => c.Result));
            await Results.Json(body).ExecuteAsync(ctx);
            return;
        }

        ctx.Response.StatusCode = 200;
        ctx.Response.ContentType = "text/event-stream; charset=utf-8";
        ctx.Response.Headers.CacheControl = "no-cache";
        ctx.Response.Headers["X-Accel-Buffering"] = "no";
        async Task Send(JsonNode data)
        {
            await ctx.Response.WriteAsync("data: " + data.ToJsonString() + "\n\n", ct);
            await ctx.Response.Body.FlushAsync(ct);
        }
        JsonObject Chunk(int index, string text, string? finish, IReadOnlyList<TokenLogprob>? lps, int offset, bool first = false)
        {
            var c = Envelope(chat ? "chat.completion.chunk" : "text_completion");
            c["choices"] = new JsonArray(chat
                ? new JsonObject
                {
                    ["index"] = index,
                    ["delta"] = finish is not null && text.Length == 0 ? new JsonObject() : first ? new JsonObject { ["role"] = "assistant", ["content"] = text } : new JsonObject { ["content"] = text },
                    ["logprobs"] = lps is null ? null : LogprobsJson(lps, offset),
                    ["finish_reason"] = finish,
                }
                : new JsonObject { ["text"] = text, ["index"] = index, ["logprobs"] = LogprobsJson(lps ?? [], offset), ["finish_reason"] = finish });
            return c;
        }
        var results = new List<GenerationResult>();
        try
        {
            for (int i = 0; i < streams.Count; i++)
            {
                int offset = 0;
                if (chat) await Send(Chunk(i, "", null, null, 0, first: true));
                else if (req.Echo) { await Send(Chunk(i, req.Prompt!, null, null, 0)); offset = req.Prompt!.Length; }
                await foreach (var d in streams[i].WithCancellation(ct))
                {
                    if (d.Result is { } r)
                    {
                        if (d.Text.Length > 0) { await Send(Chunk(i, d.Text, null, null, offset)); offset += d.Text.Length; }
                        await Send(Chunk(i, "", Finish(r), null, offset));
                        results.Add(r);
                    }
                    else if (d.Text.Length > 0 || d.Logprobs is { Count: > 0 })
                    {
                        await Send(Chunk(i, d.Text, null, d.Logprobs ?? [], offset));
                        offset += d.Text.Length;
                    }
                }
            }
            if (req.IncludeUsage)
            {
                var u = Envelope(chat ? "chat.completion.chunk" : "text_completion");
                u["choices"] = new JsonArray();
                u["usage"] = Usage(prompt.Length, results);
                await Send(u);
            }
            await ctx.Response.WriteAsync("data: [DONE]\n\n", ct);
        }
        catch (Exception e) when (e is not OperationCanceledException and not IOException)
        {
            var api = e as ApiException ?? new ApiException(500, "internal server error", "server_error");
            try
            {
                await ctx.Response.WriteAsync("data: " + api.ToJson().ToJsonString() + "\n\ndata: [DONE]\n\n", ct);
            }
            catch (Exception w) when (w is OperationCanceledException or IOException) { }
        }
    }
}
