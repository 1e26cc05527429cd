using LongCat.Inference;
using LongCat.Server;
using Microsoft.Extensions.AI;

namespace LongCat.Tests;

/// <summary>One served chat model for a test class (its own scheduler).</summary>
public sealed class ServedModelFixture : IDisposable
{
    public ServedModel Served { get; } = ServerTestSupport.Serve();
    public void Dispose() => Served.Dispose();
}

/// <summary>LongCatChatClient: Microsoft.Extensions.AI's IChatClient over the engine, without HTTP.</summary>
public class ServerChatClientTests(ServedModelFixture f) : IClassFixture<ServedModelFixture>
{
    IChatClient Client => f.Served.Client;

    [Fact]
    public async Task ResponseHasTextUsageFinishReasonAndStats()
    {
        var r = await Client.GetResponseAsync("Hello, who are you?", new ChatOptions { MaxOutputTokens = 12, Temperature = 0 });
        Assert.Equal(ChatRole.Assistant, r.Messages.Single().Role);
        Assert.Equal(ChatFinishReason.Length, r.FinishReason);
        Assert.Equal(12, r.Usage!.OutputTokenCount);
        var prompt = f.Served.Client.EncodePrompt([new ChatMessage(ChatRole.User, "Hello, who are you?")]);
        Assert.Equal(prompt.Length, r.Usage.InputTokenCount);
        Assert.Equal(prompt.Length + 12, r.Usage.TotalTokenCount);
        Assert.Equal("longcat-test", r.ModelId);
        Assert.StartsWith("chatcmpl-", r.ResponseId);
        Assert.True((double)r.AdditionalProperties![LongCatChatClient.RealExpertsPerTokenKey]! >= 0);
        Assert.True((double)r.AdditionalProperties[LongCatChatClient.DecodeTokensPerSecondKey]! > 0);
        Assert.Equal(r.Text, f.Served.Generator.Tokenizer.Decode(
            [.. new GenerationSession(f.Served.Model, prompt, new GenerationOptions { Temperature = 0, MaxTokens = 12, StopTokenIds = f.Served.Generator.StopTokenIds }).Run()],
            skipSpecialTokens: true));
        var meta = (ChatClientMetadata)Client.GetService(typeof(ChatClientMetadata))!;
        Assert.Equal("longcat-test", meta.DefaultModelId);
    }

    [Fact]
    public async Task SeedMakesSamplingReproducibleAndStreamingEqualsNonStreaming()
    {
        ChatMessage[] chat = [new(ChatRole.System, "Be brief."), new(ChatRole.User, "Tell me a story.")];
        var o = new ChatOptions { MaxOutputTokens = 20, Temperature = 1f, TopP = 0.95f, TopK = 40, Seed = 42 };
        var a = await Client.GetResponseAsync(chat, o);
        var b = await Client.GetResponseAsync(chat, o);
        Assert.Equal(a.Text, b.Text);
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in Client.GetStreamingResponseAsync(chat, o)) updates.Add(u);
        Assert.Equal(a.Text, string.Concat(updates.Select(u => u.Text)));
        Assert.True(updates.Count >= 3, $"{updates.Count} updates");
        Assert.Equal(ChatFinishReason.Length, updates[^1].FinishReason);
        Assert.Single(updates[^1].Contents.OfType<UsageContent>());
        var others = await Task.WhenAll(new long[] { 1, 2, 3 }.Select(s => Client.GetResponseAsync(chat, new ChatOptions { MaxOutputTokens = 20, Temperature = 1f, Seed = s })));
        Assert.Contains(others, r => r.Text != a.Text);
    }

    [Fact]
    public async Task SamplingOptionsAreHonoured()
    {
        var greedy = await Client.GetResponseAsync("Count with me", new ChatOptions { MaxOutputTokens = 16, Temperature = 0 });
        // top_k = 1 is greedy whatever the temperature.
        var topK1 = await Client.GetResponseAsync("Count with me", new ChatOptions { MaxOutputTokens = 16, Temperature = 1.5f, TopK = 1, Seed = 9 });
        Assert.Equal(greedy.Text, topK1.Text);
        // Every option reaches the engine's GenerationOptions.
        var g = f.Served.Client.ToGenerationOptions(new ChatOptions
        {
            MaxOutputTokens = 7, Temperature = 0.7f, TopP = 0.9f, TopK = 5, Seed = 123, FrequencyPenalty = 0.5f, PresencePenalty = -0.25f,
            StopSequences = ["END"], AdditionalProperties = new() { ["min_p"] = 0.05, ["repetition_penalty"] = 1.3, ["speculative"] = true },
        });
        Assert.Equal((7, 0.7f, 0.9f, 5, 123UL, 0.5f, -0.25f, 0.05f, 1.3f, true), (g.MaxTokens, g.Temperature, g.TopP, g.TopK, g.Seed, g.FrequencyPenalty, g.PresencePenalty, g.MinP, g.RepetitionPenalty, g.Speculative));
        Assert.Equal(["END"], g.StopStrings);
        Assert.Contains(f.Served.Model.Config.EosTokenId, g.StopTokenIds);
        // Penalties change a greedy continuation that repeats a token.
        var tok = f.Served.Generator.Tokenizer;
        var longGreedy = await Client.GetResponseAsync("Count with me", new ChatOptions { MaxOutputTokens = 64, Temperature = 0 });
        var ids = tok.EncodeToIds(longGreedy.Text);
        var penalised = await Client.GetResponseAsync("Count with me", new ChatOptions { MaxOutputTokens = 64, Temperature = 0, PresencePenalty = 2, FrequencyPenalty = 2 });
        if (ids.Distinct().Count() < ids.Length) Assert.NotEqual(longGreedy.Text, penalised.Text);
        // MaxOutputTokens caps the reply.
        var one = await Client.GetResponseAsync("Count with me", new ChatOptions { MaxOutputTokens = 1, Temperature = 0 });
        Assert.Equal(1, one.Usage!.OutputTokenCount);
    }

    [Fact]
    public async Task StopSequencesEndTheReplyBeforeTheStop()
    {
        var full = await Client.GetResponseAsync("Say something long", new ChatOptions { MaxOutputTokens = 24, Temperature = 0 });
        var text = full.Text;
        Assert.True(text.Length >= 6, text);
        var stop = text.Substring(text.Length / 2, 3);
        int at = text.IndexOf(stop, StringComparison.Ordinal);
        var cut = await Client.GetResponseAsync("Say something long", new ChatOptions { MaxOutputTokens = 24, Temperature = 0, StopSequences = [stop] });
        Assert.Equal(text[..at], cut.Text);
        Assert.Equal(ChatFinishReason.Stop, cut.FinishReason);
        Assert.Equal("stopstring", cut.AdditionalProperties![LongCatChatClient.StopReasonKey]);
    }

    [Fact]
    public async Task BadOptionsAndMessagesThrowArgumentExceptions()
    {
        async Task Bad(IEnumerable<ChatMessage> m, ChatOptions? o, string contains)
        {
            var e = await Assert.ThrowsAsync<ArgumentException>(() => Client.GetResponseAsync(m, o));
            Assert.Contains(contains, e.Message);
        }
        ChatMessage[] hi = [new(ChatRole.User, "hi")];
        await Bad(hi, new ChatOptions { TopP = 0 }, "top_p");
        await Bad(hi, new ChatOptions { Temperature = -1 }, "temperature");
        await Bad(hi, new ChatOptions { MaxOutputTokens = 100_000 }, "max_tokens");
        await Bad(hi, new ChatOptions { FrequencyPenalty = 3 }, "frequency_penalty");
        await Bad(hi, new ChatOptions { ModelId = "gpt-4" }, "gpt-4");
        await Bad([], null, "at least one user or assistant message");
        await Bad([new(ChatRole.System, "s")], null, "at least one user or assistant message");
        await Bad([new(new ChatRole("critic"), "x")], null, "role");
        await Bad([new(ChatRole.Tool, "x")], null, "tool result");  // a tool result needs a call before it
    }

    [Fact]
    public async Task CancellingAStreamFreesItsCache()
    {
        using var cts = new CancellationTokenSource();
        int n = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var u in Client.GetStreamingResponseAsync("Go on forever", new ChatOptions { MaxOutputTokens = 500, Temperature = 1 }, cts.Token))
                if (u.Text.Length > 0 && ++n == 3) cts.Cancel();
        });
        // Leaving a stream early (break) frees it too.
        await foreach (var u in Client.GetStreamingResponseAsync("Go on forever", new ChatOptions { MaxOutputTokens = 500, Temperature = 1 }))
            if (u.Text.Length > 0) break;
        Assert.True(await ServerTestSupport.WaitUntil(() => f.Served.Scheduler.Pool.RentedBytes == 0 && f.Served.Scheduler.Stats().Running == 0));
    }
}
