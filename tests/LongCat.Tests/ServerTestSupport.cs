using System.Text.Json;
using LongCat.Config;
using LongCat.Inference;
using LongCat.Model;
using LongCat.Server;
using LongCat.Tokenization;

namespace LongCat.Tests;

/// <summary>
/// A random chat model whose vocabulary matches the longcat_style tokenizer fixture (the tiny fixture's shapes
/// with vocab 4096 and an MTP head), written once per test run, and servers over it.
/// </summary>
public static class ServerTestSupport
{
    static readonly Lazy<string> Dir = new(() =>
    {
        var dir = Fixtures.NewTempDir();
        var cfg = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(File.ReadAllText(Path.Combine(Fixtures.Reference("tiny"), "config.json")))!;
        var obj = cfg.ToDictionary(k => k.Key, k => (object)k.Value);
        obj["vocab_size"] = 4096;
        obj["max_position_embeddings"] = 4096;
        File.WriteAllText(Path.Combine(dir, "config.json"), JsonSerializer.Serialize(obj));
        var config = LongCatConfig.Load(Path.Combine(dir, "config.json"));
        ModelInitializer.Write(config, dir, seed: 5, mtp: true);
        File.Copy(Path.Combine(Fixtures.Tokenizer("longcat_style"), "tokenizer.json"), Path.Combine(dir, "tokenizer.json"));
        return dir;
    });

    /// <summary>The chat model's folder (config.json, model.safetensors with an MTP head, tokenizer.json).</summary>
    public static string ModelDir => Dir.Value;

    public static readonly Lazy<Tokenizer> Tokenizer = new(() => LongCat.Tokenization.Tokenizer.Load(Path.Combine(ModelDir, "tokenizer.json")));

    /// <summary>A served chat model (own scheduler) with the given limits.</summary>
    public static ServedModel Serve(SchedulerOptions? scheduler = null, ChatClientOptions? chat = null) =>
        new(LongCatModel.Load(ModelDir), Tokenizer.Value,
            scheduler ?? new SchedulerOptions { ContextLength = 1024, KvCacheBytes = 64L << 20 },
            chat ?? new ChatClientOptions { ModelId = "longcat-test", DefaultMaxTokens = 16, MaxTokensLimit = 512 });

    /// <summary>A server on 127.0.0.1 and a free port.</summary>
    public static Task<RunningServer> StartAsync(ServedModel served, ServerOptions? options = null) =>
        LongCatServer.StartAsync(served, (options ?? new ServerOptions()) with { Port = 0 });

    /// <summary>
    /// An HttpClient for a test server. Disposing a response mid-stream closes the connection at once, as a browser
    /// tab that goes away does (by default .NET first drains up to 1 MiB to reuse the connection).
    /// </summary>
    public static HttpClient Http(Uri baseAddress, int timeoutSeconds = 120) =>
        new(new SocketsHttpHandler { MaxResponseDrainSize = 0, ResponseDrainTimeout = TimeSpan.Zero })
        {
            BaseAddress = baseAddress,
            Timeout = TimeSpan.FromSeconds(timeoutSeconds),
        };

    /// <summary>Polls until <paramref name="condition"/> holds, at most <paramref name="seconds"/>.</summary>
    public static async Task<bool> WaitUntil(Func<bool> condition, double seconds = 20)
    {
        var end = DateTime.UtcNow.AddSeconds(seconds);
        while (DateTime.UtcNow < end)
        {
            if (condition()) return true;
            await Task.Delay(20);
        }
        return condition();
    }
}
