using System.Globalization;
using System.Runtime.CompilerServices;
using LongCat.Tokenization;
using Microsoft.Extensions.AI;

namespace LongCat.Inference;

/// <summary>Defaults and limits of a <see cref="LongCatChatClient"/>.</summary>
public sealed record ChatClientOptions
{
    /// <summary>The model name reported in responses (the server's /v1/models id).</summary>
    public string ModelId { get; init; } = "longcat";
    /// <summary>Completion tokens when the caller sets no MaxOutputTokens.</summary>
    public int DefaultMaxTokens { get; init; } = 512;
    /// <summary>Largest MaxOutputTokens accepted.</summary>
    public int MaxTokensLimit { get; init; } = 4096;
    /// <summary>Draft with the MTP head by default (when the checkpoint has one).</summary>
    public bool Speculative { get; init; }
}

/// <summary>
/// <see cref="IChatClient"/> (Microsoft.Extensions.AI) over the engine: .NET apps, Semantic Kernel and the HTTP
/// server call the model through it. Messages are rendered in LongCat's chat format; Temperature, TopP, TopK,
/// MaxOutputTokens, StopSequences, Seed, FrequencyPenalty and PresencePenalty map to <see cref="GenerationOptions"/>,
/// and AdditionalProperties "min_p", "repetition_penalty" and "speculative" reach the options of the same name.
/// Out-of-range values throw <see cref="ArgumentException"/> naming the OpenAI parameter. Responses carry usage,
/// the finish reason and, in AdditionalProperties, the decode speed, real experts per token and MTP acceptance.
/// </summary>
public sealed class LongCatChatClient : IChatClient
{
    /// <summary>AdditionalProperties keys of the stats on the final update and on responses.</summary>
    public const string DecodeTokensPerSecondKey = "decode_tokens_per_second", PrefillTokensPerSecondKey = "prefill_tokens_per_second",
        RealExpertsPerTokenKey = "real_experts_per_token", MtpAcceptanceKey = "mtp_acceptance", StopReasonKey = "stop_reason";

    readonly ChatClientMetadata _metadata;

    public LongCatChatClient(TextGenerator generator, ChatClientOptions? options = null)
    {
        Generator = generator;
        Options = options ?? new ChatClientOptions();
        _metadata = new ChatClientMetadata("longcat", null, Options.ModelId);
    }

    public TextGenerator Generator { get; }
    public ChatClientOptions Options { get; }

    /// <summary>
    /// The generation options a request asks for; throws <see cref="ArgumentException"/> with the OpenAI name of a
    /// parameter that is out of range. A missing seed draws a fresh one (OpenAI: sampling is not reproducible then).
    /// </summary>
    public GenerationOptions ToGenerationOptions(ChatOptions? options)
    {
        var o = options ?? new ChatOptions();
        int max = o.MaxOutputTokens ?? Options.DefaultMaxTokens;
        if (max < 1 || max > Options.MaxTokensLimit)
            throw new ArgumentException($"max_tokens = {max} is invalid: must be in 1..{Options.MaxTokensLimit}");
        if (o.TopK is < 0) throw new ArgumentException($"top_k = {o.TopK} is invalid: must be >= 0 (0 = off)");
        if (o.StopSequences is { Count: > 4 }) throw new ArgumentException($"stop has {o.StopSequences.Count} strings: at most 4 are allowed");
        bool spec = Options.Speculative && Generator.Scheduler.Model.Mtp is not null;
        if (Extra(o, "speculative") is { } sv) spec = sv switch
        {
            bool b => b,
            System.Text.Json.JsonElement { ValueKind: System.Text.Json.JsonValueKind.True } => true,
            System.Text.Json.JsonElement { ValueKind: System.Text.Json.JsonValueKind.False } => false,
            _ => throw new ArgumentException($"speculative = {sv} is invalid: must be true or false"),
        };
        var g = new GenerationOptions
        {
            MaxTokens = max,
            Temperature = o.Temperature ?? 1f,
            TopP = o.TopP ?? 1f,
            TopK = o.TopK ?? 0,
            MinP = ExtraFloat(o, "min_p") ?? 0f,
            RepetitionPenalty = ExtraFloat(o, "repetition_penalty") ?? 1f,
            FrequencyPenalty = o.FrequencyPenalty ?? 0f,
            PresencePenalty = o.PresencePenalty ?? 0f,
            StopStrings = o.StopSequences is { } s ? [.. s] : [],
            Seed = o.Seed is { } seed ? unchecked((ulong)seed) : (ulong)Random.Shared.NextInt64(),
            Speculative = spec,
            LogitBias = Extra(o, LogitBiasKey) as IReadOnlyDictionary<int, float>,
            Logprobs = Extra(o, LogprobsKey) is int top ? top : null,
        };
        g = Generator.Complete(g);
        g.Validate(Generator.Scheduler.Model.Config.VocabSize);
        return g;
    }

    /// <summary>The prompt ids of a conversation (LongCat chat format, generation prompt added).</summary>
    public int[] EncodePrompt(IEnumerable<ChatMessage> messages, ChatOptions? options = null)
    {
        var turns = new List<ChatTurn>();
        if (!string.IsNullOrEmpty(options?.Instructions)) turns.Add(new ChatTurn(ChatTurn.System, options.Instructions));
        foreach (var m in messages)
        {
            string role = m.Role == ChatRole.System ? ChatTurn.System
                : m.Role == ChatRole.User ? ChatTurn.User
                : m.Role == ChatRole.Assistant ? ChatTurn.Assistant
                : throw new ArgumentException($"messages: role '{m.Role}' is not supported (system, user, assistant)");
            if (m.Contents.Any(c => c is not TextContent))
                throw new ArgumentException($"messages: only text content is supported, got {m.Contents.First(c => c is not TextContent).GetType().Name}");
            // Consecutive messages of one role are one turn (OpenAI clients often send several system or user parts).
            if (turns.Count > 0 && turns[^1].Role == role) turns[^1] = turns[^1] with { Content = turns[^1].Content + "\n" + m.Text };
            else turns.Add(new ChatTurn(role, m.Text));
        }
        if (turns.Count == 0 || turns.All(t => t.Role == ChatTurn.System)) throw new ArgumentException("messages must include at least one user or assistant message");
        // Order (ChatFormat): system messages anywhere join the system prompt, an assistant greeting first gets an
        // empty user turn, a final assistant message is a prefix the reply continues.
        return ChatFormat.EncodePrompt(Generator.Tokenizer, turns);
    }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var text = new System.Text.StringBuilder();
        ChatResponseUpdate? last = null;
        await foreach (var u in GetStreamingResponseAsync(messages, options, cancellationToken).ConfigureAwait(false))
        {
            text.Append(u.Text);
            last = u;
        }
        var usage = last!.Contents.OfType<UsageContent>().Single().Details;
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, text.ToString()) { MessageId = last.MessageId })
        {
            ResponseId = last.ResponseId,
            ModelId = last.ModelId,
            CreatedAt = last.CreatedAt,
            FinishReason = last.FinishReason,
            Usage = usage,
            AdditionalProperties = last.AdditionalProperties,
        };
    }

    /// <summary>
    /// Streams the reply. The first update (role assistant, no text) comes as soon as the request is queued; the
    /// last one has the finish reason, a <see cref="UsageContent"/> and the stats. Throws
    /// <see cref="SchedulerBusyException"/> at the first MoveNextAsync when the server's queue is full.
    /// </summary>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        if (options?.ModelId is { } mid && mid != Options.ModelId)
            throw new ArgumentException($"model '{mid}' does not exist: this server has '{Options.ModelId}'");
        var g = ToGenerationOptions(options);
        var prompt = EncodePrompt(messages, options);
        string id = "chatcmpl-" + Guid.NewGuid().ToString("N")[..24];
        var created = DateTimeOffset.UtcNow;
        ChatResponseUpdate Update(string? text) => new(ChatRole.Assistant, text) { ResponseId = id, MessageId = id, ModelId = Options.ModelId, CreatedAt = created };

        await foreach (var d in Generator.StreamAsync(prompt, g, cancellationToken).ConfigureAwait(false))
        {
            if (d.Result is { } r)
            {
                if (d.Text.Length > 0) yield return Update(d.Text);
                var final = Update(null);
                final.FinishReason = r.StopReason is StopReason.Length or StopReason.ContextFull ? ChatFinishReason.Length : ChatFinishReason.Stop;
                final.Contents.Add(new UsageContent(new UsageDetails
                {
                    InputTokenCount = r.PromptTokens,
                    OutputTokenCount = r.CompletionTokens,
                    TotalTokenCount = r.PromptTokens + r.CompletionTokens,
                }));
                final.AdditionalProperties = Stats(r);
                yield return final;
            }
            else if (d.Tokens == 0 || d.Text.Length > 0 || d.Logprobs is { Count: > 0 })
            {
                var u = Update(d.Text);
                if (d.Logprobs is { Count: > 0 } lp) u.AdditionalProperties = new() { [LogprobsKey] = lp };
                yield return u;
            }
        }
    }

    /// <summary>
    /// ChatOptions.AdditionalProperties keys: "logit_bias" (an IReadOnlyDictionary&lt;int, float&gt;) and "logprobs"
    /// (an int, the alternatives per token) in requests; "logprobs" (IReadOnlyList&lt;TokenLogprob&gt;) on updates.
    /// </summary>
    public const string LogitBiasKey = "logit_bias", LogprobsKey = "logprobs";

    /// <summary>A finished generation's numbers, as AdditionalProperties.</summary>
    public static AdditionalPropertiesDictionary Stats(GenerationResult r) => new()
    {
        [DecodeTokensPerSecondKey] = Math.Round(r.DecodeTokensPerSecond, 2),
        [PrefillTokensPerSecondKey] = Math.Round(r.PrefillTokensPerSecond, 2),
        [RealExpertsPerTokenKey] = Math.Round(r.MeanRealExperts, 3),
        [MtpAcceptanceKey] = r.DraftedTokens == 0 ? null : Math.Round(r.AcceptanceRate, 3),
        [StopReasonKey] = r.StopReason.ToString().ToLowerInvariant(),
    };

    static object? Extra(ChatOptions o, string key) => o.AdditionalProperties?.TryGetValue(key, out var v) == true ? v : null;

    static float? ExtraFloat(ChatOptions o, string key) => Extra(o, key) switch
    {
        null => null,
        float f => f,
        double d => (float)d,
        int i => i,
        System.Text.Json.JsonElement { ValueKind: System.Text.Json.JsonValueKind.Number } e => e.GetSingle(),
        string s when float.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var f) => f,
        var v => throw new ArgumentException($"{key} = {v} is invalid: must be a number"),
    };

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is not null ? null
        : serviceType == typeof(ChatClientMetadata) ? _metadata
        : serviceType.IsInstanceOfType(this) ? this
        : serviceType.IsInstanceOfType(Generator) ? Generator
        : null;

    /// <summary>The scheduler and model belong to whoever made them; nothing to release here.</summary>
    public void Dispose() { }
}
