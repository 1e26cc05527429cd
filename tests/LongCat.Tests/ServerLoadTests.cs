using System.Net;
using System.Text;
using System.Text.Json;
using LongCat.Inference;

namespace LongCat.Tests;

/// <summary>Load tests measure memory and need the machine to themselves: no other test runs beside them.</summary>
[CollectionDefinition("ServerLoad", DisableParallelization = true)]
public sealed class ServerLoadCollection;

/// <summary>Load on loopback: many concurrent streams, clients that vanish, and many sequential requests.</summary>
[Collection("ServerLoad")]
public class ServerLoadTests
{
    static StringContent Chat(string content, int maxTokens, bool stream) =>
        new(JsonSerializer.Serialize(new
        {
            model = "longcat-test",
            messages = new[] { new { role = "user", content } },
            max_tokens = maxTokens,
            temperature = 0,
            stream,
            stream_options = stream ? new { include_usage = true } : null,
        }), Encoding.UTF8, "application/json");

    /// <summary>Reads an SSE stream to the end: the text, the finish reason, the usage, and whether [DONE] came.</summary>
    static async Task<(string Text, string? Finish, int Completion, bool Done)> ReadStream(HttpResponseMessage r, CancellationToken ct)
    {
        using var reader = new StreamReader(await r.Content.ReadAsStreamAsync(ct));
        var text = new StringBuilder();
        string? finish = null;
        int completion = -1;
        bool done = false;
        while (await reader.ReadLineAsync(ct) is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
            var data = line[6..];
            if (data == "[DONE]") { done = true; continue; }
            var j = JsonDocument.Parse(data).RootElement;
            Assert.False(j.TryGetProperty("error", out _), data);
            if (j.TryGetProperty("usage", out var u) && u.ValueKind == JsonValueKind.Object) completion = u.GetProperty("completion_tokens").GetInt32();
            foreach (var c in j.GetProperty("choices").EnumerateArray())
            {
                if (c.GetProperty("delta").TryGetProperty("content", out var t)) text.Append(t.GetString());
                if (c.GetProperty("finish_reason").ValueKind == JsonValueKind.String) finish = c.GetProperty("finish_reason").GetString();
            }
        }
        return (text.ToString(), finish, completion, done);
    }

    [Fact]
    public async Task SixtyFourConcurrentStreamsAllCompleteCorrectly()
    {
        using var served = ServerTestSupport.Serve(new SchedulerOptions { ContextLength = 256, MaxRunningSequences = 64, KvCacheBytes = 64L << 20 });
        await using var server = await ServerTestSupport.StartAsync(served);
        using var http = ServerTestSupport.Http(server.BaseAddress);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        string Prompt(int i) => $"Question number {i % 8}: tell me about cats.";
        // What each prompt gives alone (greedy), through the same server.
        var want = new string[8];
        for (int i = 0; i < 8; i++)
        {
            var r = await http.PostAsync("v1/chat/completions", Chat(Prompt(i), 20, false), cts.Token);
            want[i] = JsonDocument.Parse(await r.Content.ReadAsStringAsync(cts.Token)).RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        }
        int maxRunning = 0;
        var monitor = Task.Run(async () =>
        {
            while (!cts.IsCancellationRequested) { maxRunning = Math.Max(maxRunning, served.Scheduler.Stats().Running); await Task.Delay(5); }
        });
        var clients = Enumerable.Range(0, 64).Select(async i =>
        {
            using var req = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = Chat(Prompt(i), 20, true) };
            using var r = await http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, cts.Token);
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            return await ReadStream(r, cts.Token);
        }).ToArray();
        var results = await Task.WhenAll(clients);
        await cts.CancelAsync();
        try { await monitor; } catch (OperationCanceledException) { }
        for (int i = 0; i < 64; i++)
        {
            Assert.True(results[i].Done, $"client {i}: no [DONE]");
            Assert.Equal("length", results[i].Finish);
            Assert.Equal(20, results[i].Completion);
            Assert.Equal(want[i % 8], results[i].Text);
        }
        Assert.True(maxRunning >= 8, $"at most {maxRunning} sequences ran together");
        var st = served.Scheduler.Stats();
        Assert.Equal(0, st.Failed);
        Assert.Equal(0, st.Rejected);
        Assert.True(await ServerTestSupport.WaitUntil(() => served.Scheduler.Pool.RentedBytes == 0));
    }

    [Fact]
    public async Task ClientsThatDisconnectMidStreamFreeTheirResources()
    {
        using var served = ServerTestSupport.Serve(new SchedulerOptions { ContextLength = 2048, KvCacheBytes = 64L << 20 });
        await using var server = await ServerTestSupport.StartAsync(served);
        using var http = ServerTestSupport.Http(server.BaseAddress);
        var clients = Enumerable.Range(0, 16).Select(async i =>
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            using var req = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = Chat($"story {i}", 500, true) };
            using var r = await http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, cts.Token);
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            using var reader = new StreamReader(await r.Content.ReadAsStreamAsync(cts.Token));
            int events = 0;
            while (events < 4 && await reader.ReadLineAsync(cts.Token) is { } line)
                if (line.StartsWith("data: ", StringComparison.Ordinal)) events++;
            // Leaving the using blocks closes the connection mid-stream.
        }).ToArray();
        await Task.WhenAll(clients);
        Assert.True(await ServerTestSupport.WaitUntil(() => served.Scheduler.Stats().Running == 0 && served.Scheduler.Pool.RentedBytes == 0, 30),
            $"still running {served.Scheduler.Stats().Running}, rented {served.Scheduler.Pool.RentedBytes}");
        var st = served.Scheduler.Stats();
        Assert.Equal(16, st.Cancelled);
        Assert.True(st.CompletionTokens < 16 * 500 / 2, $"{st.CompletionTokens} tokens generated for clients that left");
        Assert.Equal(0, st.Failed);
    }

    [Fact]
    public async Task ThousandSequentialRequestsDoNotGrowMemory()
    {
        using var served = ServerTestSupport.Serve(new SchedulerOptions { ContextLength = 256, KvCacheBytes = 16L << 20 });
        await using var server = await ServerTestSupport.StartAsync(served);
        using var http = ServerTestSupport.Http(server.BaseAddress);
        async Task Run(int from, int to)
        {
            for (int i = from; i < to; i++)
            {
                using var r = await http.PostAsync(i % 2 == 0 ? "v1/chat/completions" : "v1/completions",
                    i % 2 == 0 ? Chat($"request {i}", 1, i % 4 == 0)
                    : new StringContent($$"""{"prompt":"request {{i}}","max_tokens":1}""", Encoding.UTF8, "application/json"));
                Assert.Equal(HttpStatusCode.OK, r.StatusCode);
                await r.Content.ReadAsStringAsync();
            }
        }
        static long Managed()
        {
            GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
            GC.WaitForPendingFinalizers();
            return GC.GetTotalMemory(forceFullCollection: true);
        }
        // Warm-up fills caches that are bounded but slow to settle (measured: +8-20 MiB over the first 1000
        // requests, then one-off steps of ~4 MiB as new pool threads get their kernel scratch, else flat within
        // ±40 KiB per 900 requests). After it, 1000 more requests must stay under 8 MiB: a leak of 8 KiB per
        // request would fail.
        await Run(0, 1000);
        long before = Managed();
        await Run(1000, 2000);
        long after = Managed();
        Assert.True(after - before < 8L << 20, $"managed heap grew by {(after - before) >> 10} KiB over 1000 requests after warm-up");
        Assert.Equal(0, served.Scheduler.Pool.RentedBytes);
        Assert.True(served.Scheduler.Pool.HeldBytes <= served.Scheduler.Pool.CapacityBytes);
        Assert.Equal(2000, served.Scheduler.Stats().Finished);
    }
}
