using System.Net;
using System.Text;
using System.Text.Json;
using LongCat.Tokenization;

namespace LongCat.Tests;

/// <summary>
/// Issue 12 item 4 and 5 over HTTP: logprobs (chat and legacy) equal to the model's log-softmax, logit_bias, echo,
/// completions' usage chunk, unsupported OpenAI parameters refused by name, and the message orders the LongCat format
/// can express (a greeting first, a late system message, a final assistant prefix).
/// </summary>
public class ServerOptionsTests(ServerFixture f) : IClassFixture<ServerFixture>
{
    static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    async Task<JsonElement> Post(string path, string body, HttpStatusCode want = HttpStatusCode.OK)
    {
        var r = await f.Http.PostAsync(path, Json(body));
        var text = await r.Content.ReadAsStringAsync();
        Assert.True(want == r.StatusCode, $"{(int)r.StatusCode} {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    async Task<List<JsonElement>> Stream(string path, string body)
    {
        var r = await f.Http.PostAsync(path, Json(body));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var events = (await r.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => e["data: ".Length..]).ToList();
        Assert.Equal("[DONE]", events[^1]);
        return events.SkipLast(1).Select(e => JsonDocument.Parse(e).RootElement.Clone()).ToList();
    }

    /// <summary>The model's log-softmax at each generated position, from one independent cached forward.</summary>
    float[][] ModelLogSoftmax(int[] prompt, int[] generated)
    {
        var m = f.Served.Model;
        int v = m.Config.VocabSize;
        int[] all = [.. prompt, .. generated[..^1]];
        var step = m.ForwardCached(all, m.NewCache(all.Length + 1), allLogits: true);
        return generated.Select((_, i) =>
        {
            var row = step.Logits.AsSpan((prompt.Length - 1 + i) * v, v).ToArray();
            float max = row.Max();
            double z = row.Sum(x => Math.Exp(x - max));
            return row.Select(x => (float)(x - max - Math.Log(z))).ToArray();
        }).ToArray();
    }

    [Fact]
    public async Task CompletionLogprobsAreTheModelsLogSoftmax()
    {
        var tok = ServerTestSupport.Tokenizer.Value;
        var j = await Post("v1/completions", """{"prompt":"The cat sat on","max_tokens":6,"temperature":0.9,"seed":3,"logprobs":3}""");
        var choice = j.GetProperty("choices")[0];
        var lp = choice.GetProperty("logprobs");
        var tokens = lp.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()!).ToArray();
        int n = j.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
        if (choice.GetProperty("finish_reason").GetString() == "length") Assert.Equal(n, tokens.Length);
        var logprobs = lp.GetProperty("token_logprobs").EnumerateArray().Select(x => x.GetSingle()).ToArray();
        var offsets = lp.GetProperty("text_offset").EnumerateArray().Select(x => x.GetInt32()).ToArray();
        var tops = lp.GetProperty("top_logprobs").EnumerateArray().ToArray();
        Assert.Equal(0, offsets[0]);
        for (int i = 1; i < tokens.Length; i++) Assert.Equal(offsets[i - 1] + tokens[i - 1].Length, offsets[i]);
        Assert.All(tops, t => Assert.InRange(t.EnumerateObject().Count(), 1, 3));

        // The same numbers from the model itself (ids recovered by re-running greedy-free: the sampled ids are the
        // ones whose decoded text the server reported, so compare through the logprob of each reported token).
        var prompt = tok.EncodeToIds("The cat sat on");
        var ids = RecoverIds(tok, tokens, logprobs, prompt);
        var want = ModelLogSoftmax(prompt, ids);
        for (int i = 0; i < ids.Length; i++)
        {
            Assert.Equal(want[i][ids[i]], logprobs[i], 2e-3f);
            var best = want[i].Select((x, id) => (x, id)).OrderByDescending(t => t.x).ThenBy(t => t.id).Take(3).ToArray();
            var top = tops[i].EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetSingle());
            Assert.Equal(best[0].x, top[tok.Decode([best[0].id])], 2e-3f);
        }
    }

    /// <summary>The generated ids: per position, the id whose text matches and whose model log-probability matches.</summary>
    int[] RecoverIds(Tokenizer tok, string[] tokens, float[] logprobs, int[] prompt)
    {
        var ids = new List<int>();
        for (int i = 0; i < tokens.Length; i++)
        {
            var lsm = ModelLogSoftmax(prompt, [.. ids, 0])[i];
            var candidates = Enumerable.Range(0, tok.VocabSize).Where(id => id < lsm.Length && tok.Decode([id]) == tokens[i]).ToList();
            Assert.NotEmpty(candidates);
            ids.Add(candidates.OrderBy(id => Math.Abs(lsm[id] - logprobs[i])).First());
        }
        return [.. ids];
    }

    [Fact]
    public async Task ChatLogprobsStreamedAndNot()
    {
        const string body = """{"messages":[{"role":"user","content":"Hi"}],"max_tokens":5,"temperature":0,"logprobs":true,"top_logprobs":2}""";
        var j = await Post("v1/chat/completions", body);
        var content = j.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("content").EnumerateArray().ToArray();
        Assert.NotEmpty(content);
        foreach (var e in content)
        {
            var top = e.GetProperty("top_logprobs").EnumerateArray().ToArray();
            Assert.Equal(2, top.Length);
            // Greedy: the chosen token is the most likely one.
            Assert.Equal(top[0].GetProperty("logprob").GetSingle(), e.GetProperty("logprob").GetSingle());
            Assert.True(top[0].GetProperty("logprob").GetSingle() >= top[1].GetProperty("logprob").GetSingle());
            Assert.True(e.GetProperty("logprob").GetSingle() <= 0);
            Assert.NotEmpty(e.GetProperty("bytes").EnumerateArray());
        }
        var chunks = await Stream("v1/chat/completions", body.Replace("}", ""","stream":true}""")[..^0]);
        var streamed = chunks.Where(c => c.GetProperty("choices").GetArrayLength() > 0 && c.GetProperty("choices")[0].GetProperty("logprobs").ValueKind == JsonValueKind.Object)
            .SelectMany(c => c.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("content").EnumerateArray()).ToArray();
        Assert.Equal(content.Select(e => e.GetProperty("logprob").GetSingle()), streamed.Select(e => e.GetProperty("logprob").GetSingle()));
        // Without the option: null, as before.
        var plain = await Post("v1/chat/completions", """{"messages":[{"role":"user","content":"Hi"}],"max_tokens":2}""");
        Assert.Equal(JsonValueKind.Null, plain.GetProperty("choices")[0].GetProperty("logprobs").ValueKind);
    }

    [Fact]
    public async Task LogitBiasSteersAndIsValidated()
    {
        var tok = ServerTestSupport.Tokenizer.Value;
        int x = tok.EncodeToIds(" dog")[0];
        var j = await Post("v1/completions", $$$"""{"prompt":"The cat sat on","max_tokens":4,"temperature":0,"logit_bias":{"{{{x}}}":100}}""");
        Assert.Equal(string.Concat(Enumerable.Repeat(tok.Decode([x]), 4)), j.GetProperty("choices")[0].GetProperty("text").GetString());
        var free = await Post("v1/completions", """{"prompt":"The cat sat on","max_tokens":1,"temperature":0,"logprobs":0}""");
        var first = free.GetProperty("choices")[0].GetProperty("text").GetString()!;
        int greedy = tok.EncodeToIds(first).Single();
        var banned = await Post("v1/completions", $$$"""{"prompt":"The cat sat on","max_tokens":1,"temperature":0,"logit_bias":{"{{{greedy}}}":-100}}""");
        Assert.NotEqual(first, banned.GetProperty("choices")[0].GetProperty("text").GetString());
        // Chat takes it too.
        var chat = await Post("v1/chat/completions", $$$"""{"messages":[{"role":"user","content":"Hi"}],"max_tokens":3,"temperature":0,"logit_bias":{"{{{x}}}":100}}""");
        Assert.Equal(string.Concat(Enumerable.Repeat(tok.Decode([x]), 3)), chat.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
        foreach (var bad in new[] { """{"abc":1}""", """{"-1":1}""", """{"4096":1}""", """{"5":101}""", """{"5":"x"}""", "[1]" })
        {
            var e = await Post("v1/completions", $$"""{"prompt":"hi","logit_bias":{{bad}}}""", HttpStatusCode.BadRequest);
            Assert.Equal("logit_bias", e.GetProperty("error").GetProperty("param").GetString());
        }
    }

    [Fact]
    public async Task EchoAndTheUsageChunk()
    {
        var j = await Post("v1/completions", """{"prompt":"The cat","max_tokens":3,"temperature":0,"echo":true}""");
        var plain = await Post("v1/completions", """{"prompt":"The cat","max_tokens":3,"temperature":0}""");
        Assert.Equal("The cat" + plain.GetProperty("choices")[0].GetProperty("text").GetString(), j.GetProperty("choices")[0].GetProperty("text").GetString());

        var chunks = await Stream("v1/completions", """{"prompt":"The cat","max_tokens":3,"temperature":0,"echo":true,"stream":true,"stream_options":{"include_usage":true}}""");
        Assert.Equal("The cat", chunks[0].GetProperty("choices")[0].GetProperty("text").GetString());
        var last = chunks[^1];
        Assert.Equal(0, last.GetProperty("choices").GetArrayLength());
        Assert.Equal(3, last.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.All(chunks.SkipLast(1), c => Assert.True(!c.TryGetProperty("usage", out var u) || u.ValueKind == JsonValueKind.Null));
        Assert.Equal(j.GetProperty("choices")[0].GetProperty("text").GetString(),
            string.Concat(chunks.SkipLast(1).Select(c => c.GetProperty("choices")[0].GetProperty("text").GetString())));
    }

    [Theory]
    [InlineData("v1/chat/completions", "\"audio\":{\"voice\":\"alloy\",\"format\":\"mp3\"}", "audio")]
    [InlineData("v1/chat/completions", "\"modalities\":[\"text\",\"audio\"]", "modalities")]
    [InlineData("v1/chat/completions", "\"prediction\":{\"type\":\"content\",\"content\":\"x\"}", "prediction")]
    [InlineData("v1/chat/completions", "\"store\":true", "store")]
    [InlineData("v1/chat/completions", "\"web_search_options\":{}", "web_search_options")]
    [InlineData("v1/chat/completions", "\"functions\":[{\"name\":\"f\"}]", "functions")]
    [InlineData("v1/chat/completions", "\"n\":17", "n")]
    [InlineData("v1/completions", "\"n\":0", "n")]
    [InlineData("v1/chat/completions", "\"top_logprobs\":2", "top_logprobs")]
    [InlineData("v1/chat/completions", "\"logprobs\":true,\"top_logprobs\":21", "top_logprobs")]
    [InlineData("v1/chat/completions", "\"logprobs\":3", "logprobs")]
    [InlineData("v1/completions", "\"suffix\":\"end\"", "suffix")]
    [InlineData("v1/completions", "\"best_of\":2", "best_of")]
    [InlineData("v1/completions", "\"logprobs\":6", "logprobs")]
    [InlineData("v1/completions", "\"echo\":true,\"logprobs\":1", "echo")]
    [InlineData("v1/completions", "\"echo\":\"yes\"", "echo")]
    public async Task UnsupportedParametersAreRefusedByName(string path, string extra, string param)
    {
        string body = path.Contains("chat") ? $$"""{"messages":[{"role":"user","content":"hi"}],{{extra}}}""" : $$"""{"prompt":"hi",{{extra}}}""";
        var e = await Post(path, body, HttpStatusCode.BadRequest);
        Assert.Equal(param, e.GetProperty("error").GetProperty("param").GetString());
    }

    [Theory]
    [InlineData("\"user\":\"u1\"")]
    [InlineData("\"metadata\":{\"a\":\"b\"}")]
    [InlineData("\"store\":false")]
    [InlineData("\"service_tier\":\"auto\"")]
    [InlineData("\"modalities\":[\"text\"]")]
    [InlineData("\"logprobs\":false")]
    public async Task HarmlessParametersAreAccepted(string extra)
    {
        await Post("v1/chat/completions", $$"""{"messages":[{"role":"user","content":"hi"}],"max_tokens":1,{{extra}}}""");
    }

    [Fact]
    public async Task NChoicesSharePrefill()
    {
        const string body = """{"messages":[{"role":"user","content":"Tell me about cats and dogs"}],"max_tokens":6,"temperature":1,"seed":11,"logprobs":true}""";
        var one = await Post("v1/chat/completions", body);
        long before = f.Served.Scheduler.Stats().PrefillTokens;
        var three = await Post("v1/chat/completions", body.Replace("\"seed\"", "\"n\":3,\"seed\""));
        long prefilled = f.Served.Scheduler.Stats().PrefillTokens - before;
        int promptTokens = three.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
        Assert.Equal(promptTokens, prefilled);   // one prefill for three choices
        Assert.Equal(one.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(), promptTokens);
        var choices = three.GetProperty("choices").EnumerateArray().ToArray();
        Assert.Equal([0, 1, 2], choices.Select(c => c.GetProperty("index").GetInt32()));
        string Text(JsonElement c) => c.GetProperty("message").GetProperty("content").GetString()!;
        // Choice 0 has the request's seed: it is the n = 1 answer; the others have their own seeds.
        Assert.Equal(Text(one.GetProperty("choices")[0]), Text(choices[0]));
        Assert.True(choices.Select(Text).Distinct().Count() > 1, "three sampled choices came out identical");
        Assert.All(choices, c => Assert.Equal(JsonValueKind.Object, c.GetProperty("logprobs").ValueKind));
        var sum = three.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
        Assert.True(sum >= 3 && sum <= 18);

        // Completions, streamed: every chunk names its choice; per choice, the text equals the non-streamed one.
        const string comp = """{"prompt":"The cat sat on","max_tokens":5,"temperature":1,"seed":2,"n":2}""";
        var whole = await Post("v1/completions", comp);
        var chunks = await Stream("v1/completions", comp.Replace("}", ""","stream":true,"stream_options":{"include_usage":true}}"""));
        for (int i = 0; i < 2; i++)
        {
            var streamed = string.Concat(chunks.Where(c => c.GetProperty("choices").GetArrayLength() > 0 && c.GetProperty("choices")[0].GetProperty("index").GetInt32() == i)
                .Select(c => c.GetProperty("choices")[0].GetProperty("text").GetString()));
            Assert.Equal(whole.GetProperty("choices")[i].GetProperty("text").GetString(), streamed);
        }
        Assert.Equal(whole.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), chunks[^1].GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task MessageOrdersTheFormatCanExpress()
    {
        static string Chat(string messages) => $$"""{"messages":{{messages}},"max_tokens":4,"temperature":0}""";
        string Text(JsonElement j) => j.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        string Completion(JsonElement j) => j.GetProperty("choices")[0].GetProperty("text").GetString()!;
        // A greeting first, and a system message late: each renders as ChatFormat says, so chat equals the raw prompt.
        var greet = await Post("v1/chat/completions", Chat("""[{"role":"assistant","content":"Hello!"},{"role":"user","content":"Hi"}]"""));
        var raw = await Post("v1/completions", """{"prompt":"[Round 0] USER: ASSISTANT:Hello!</longcat_s> [Round 1] USER:Hi ASSISTANT:","max_tokens":4,"temperature":0}""");
        Assert.Equal(Completion(raw), Text(greet));
        var late = await Post("v1/chat/completions", Chat("""[{"role":"user","content":"q"},{"role":"assistant","content":"a"},{"role":"system","content":"be brief"},{"role":"user","content":"r"}]"""));
        raw = await Post("v1/completions", """{"prompt":"SYSTEM:be brief [Round 0] USER:q ASSISTANT:a</longcat_s> [Round 1] USER:r ASSISTANT:","max_tokens":4,"temperature":0}""");
        Assert.Equal(Completion(raw), Text(late));
        // A final assistant message is continued.
        var prefix = await Post("v1/chat/completions", Chat("""[{"role":"user","content":"Tell me"},{"role":"assistant","content":"Once upon"}]"""));
        raw = await Post("v1/completions", """{"prompt":"[Round 0] USER:Tell me ASSISTANT:Once upon","max_tokens":4,"temperature":0}""");
        Assert.Equal(Completion(raw), Text(prefix));
        // Still impossible: only system messages.
        var e = await Post("v1/chat/completions", Chat("""[{"role":"system","content":"s"}]"""), HttpStatusCode.BadRequest);
        Assert.Equal("messages", e.GetProperty("error").GetProperty("param").GetString());
    }
}
