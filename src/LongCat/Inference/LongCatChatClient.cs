using LongCat.Inference.Constraints;
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
    /// <summary>How the model writes tool calls (per model folder: <see cref="ToolCallFormat.StyleOfModel"/>).</summary>
    public ToolCallStyle ToolCallStyle { get; init; }
    /// <summary>Append " /think_on" (the Thinking model card's switch) to the last user message by default.</summary>
    public bool ThinkOn { get; init; }
}

/// <summary>
/// <see cref="IChatClient"/> (Microsoft.Extensions.AI) over the engine: .NET apps, Semantic Kernel and the HTTP
/// server call the model through it. Messages are rendered in LongCat's chat format; Temperature, TopP, TopK,
/// MaxOutputTokens, StopSequences, Seed, FrequencyPenalty and PresencePenalty map to <see cref="GenerationOptions"/>,
/// and AdditionalProperties "min_p", "repetition_penalty" and "speculative" reach the options of the same name;
/// ResponseFormat Json (with or without a schema) is enforced by constrained decoding (<see cref="Constraints.StructuredOutput"/>).
/// Out-of-range values throw <see cref="ArgumentException"/> naming the OpenAI parameter. Responses carry usage,
/// the finish reason and, in AdditionalProperties, the decode speed, real experts per token and MTP acceptance.
/// <para>
/// Tools: <see cref="ChatOptions.Tools"/> (function declarations) are described to the model in LongCat's tool
/// format unless <see cref="ChatOptions.ToolMode"/> is <see cref="ChatToolMode.None"/>; the reply's
/// <c>&lt;longcat_tool_call&gt;</c> blocks come back as <see cref="FunctionCallContent"/> (validated against the
/// tool's schema; malformed ones stay text) with finish reason ToolCalls, and <see cref="FunctionResultContent"/>
/// in the messages is rendered as tool results, so <c>FunctionInvokingChatClient</c> runs a tool loop over this
/// client. <c>&lt;longcat_think&gt;</c> blocks come back as <see cref="TextReasoningContent"/>; AdditionalProperties
/// "think_on" (bool) appends the Thinking model's " /think_on" to the last user message.
/// </para>
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
            Constraint = Constraints.StructuredOutput.For(o, Generator),
            LogitBias = Extra(o, LogitBiasKey) as IReadOnlyDictionary<int, float>,
            Logprobs = Extra(o, LogprobsKey) is int top ? top : null,
        };
        g = Generator.Complete(g);
        g.Validate(Generator.Scheduler.Model.Config.VocabSize);
        return g;
    }

    /// <summary>The prompt ids of a conversation (LongCat chat format, generation prompt added).</summary>
    public int[] EncodePrompt(IEnumerable<ChatMessage> messages, ChatOptions? options = null) =>
        ChatFormat.EncodePrompt(Generator.Tokenizer, ToolCalls.Turns(messages, options), RenderOptions(options));

    /// <summary>The tools offered (none for ToolMode None), the call style and the thinking switch of a request.</summary>
    public ChatRenderOptions RenderOptions(ChatOptions? options) => new()
    {
        Tools = options?.ToolMode is NoneChatToolMode ? [] : ToolCalls.Definitions(options?.Tools),
        ToolCallStyle = Options.ToolCallStyle,
        ThinkOn = Extra(options ?? new(), "think_on") switch
        {
            null => Options.ThinkOn,
            bool b => b,
            System.Text.Json.JsonElement { ValueKind: System.Text.Json.JsonValueKind.True } => true,
            System.Text.Json.JsonElement { ValueKind: System.Text.Json.JsonValueKind.False } => false,
            var v => throw new ArgumentException($"think_on = {v} is invalid: must be true or false"),
        },
    };

    /// <summary>
    /// tool_choice "required" or a named function (issue 12, item 3): the options with a token constraint
    /// (<see cref="ToolCallGrammar"/>) that makes the reply one valid call (or several back to back, when
    /// <paramref name="parallel"/>) of <paramref name="tools"/>, of <paramref name="requiredName"/> only when it is set,
    /// with arguments valid for the tool's schema (an unsupported schema keyword is refused by name). JSON style only.
    /// </summary>
    internal GenerationOptions ConstrainToToolCall(GenerationOptions g, IReadOnlyList<ToolDefinition> tools, string? requiredName,
        ToolCallStyle style, bool parallel)
    {
        if (style != ToolCallStyle.Json)
            throw new ArgumentException($"tool_choice = required (or a named function) is not supported with the {style} tool-call format: only the JSON format has a grammar");
        var specs = tools.Select(t => new ToolGrammarSpec(t.Name, t.Schema)).ToList();
        // Calls are placed back to back (ToolCallFormat.Call writes no separator), so the grammar joins them with "".
        var grammar = ToolCallGrammar.For(StructuredOutput.Vocabulary(Generator), specs, requiredName, parallel, separator: "");
        return g with { Constraint = grammar.Start };
    }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var text = new System.Text.StringBuilder();
        var reasoning = new System.Text.StringBuilder();
        var calls = new List<AIContent>();
        ChatResponseUpdate? last = null;
        await foreach (var u in GetStreamingResponseAsync(messages, options, cancellationToken).ConfigureAwait(false))
        {
            foreach (var c in u.Contents)
                switch (c)
                {
                    case TextContent t: text.Append(t.Text); break;
                    case TextReasoningContent r: reasoning.Append(r.Text); break;
                    case FunctionCallContent f: calls.Add(f); break;
                }
            last = u;
        }
        var usage = last!.Contents.OfType<UsageContent>().Single().Details;
        var contents = new List<AIContent>();
        if (reasoning.Length > 0) contents.Add(new TextReasoningContent(reasoning.ToString()));
        if (text.Length > 0 || calls.Count == 0) contents.Add(new TextContent(text.ToString()));
        contents.AddRange(calls);
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, contents) { MessageId = last.MessageId })
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
    /// last one has the finish reason, a <see cref="UsageContent"/> and the stats. Text, reasoning and tool calls
    /// come as <see cref="TextContent"/>, <see cref="TextReasoningContent"/> and <see cref="FunctionCallContent"/>
    /// (a call once it is complete and valid; its <see cref="AIContent.RawRepresentation"/> is the
    /// <see cref="ToolCall"/> with the arguments' JSON text). Throws <see cref="SchedulerBusyException"/> at the
    /// first MoveNextAsync when the server's queue is full.
    /// </summary>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        if (options?.ModelId is { } mid && mid != Options.ModelId)
            throw new ArgumentException($"model '{mid}' does not exist: this server has '{Options.ModelId}'");
        var g = ToGenerationOptions(options);
        var render = RenderOptions(options);
        var prompt = ChatFormat.EncodePrompt(Generator.Tokenizer, ToolCalls.Turns(messages, options), render);
        bool parallel = options?.AllowMultipleToolCalls ?? true;
        if (options?.ToolMode is RequiredChatToolMode required)
        {
            if (render.Tools.Count == 0) throw new ArgumentException("tool_choice = required is invalid: no tools were given");
            if (required.RequiredFunctionName is { } name && render.Tools.All(t => t.Name != name))
                throw new ArgumentException($"tool_choice = {name} is invalid: no tool of that name was given");
            g = ConstrainToToolCall(g, render.Tools, required.RequiredFunctionName, render.ToolCallStyle, parallel);
        }
        var parser = new ToolCallParser(render.Tools, render.ToolCallStyle);
        string id = "chatcmpl-" + Guid.NewGuid().ToString("N")[..24];
        var created = DateTimeOffset.UtcNow;
        ChatResponseUpdate Update(string? text) => new(ChatRole.Assistant, text) { ResponseId = id, MessageId = id, ModelId = Options.ModelId, CreatedAt = created };
        int callsSent = 0;
        IEnumerable<ChatResponseUpdate> Pieces(List<ReplyPiece> pieces)
        {
            foreach (var p in pieces)
            {
                if (p.Kind == ReplyPieceKind.Text) yield return Update(p.Text);
                else if (p.Kind == ReplyPieceKind.Reasoning)
                {
                    var u = Update(null);
                    u.Contents.Add(new TextReasoningContent(p.Text));
                    yield return u;
                }
                else if (parallel || callsSent == 0) // parallel_tool_calls = false: the first call only
                {
                    callsSent++;
                    var u = Update(null);
                    u.Contents.Add(ToolCalls.ToContent(p.Call!));
                    yield return u;
                }
            }
        }

        await foreach (var d in Generator.StreamAsync(prompt, g, cancellationToken).ConfigureAwait(false))
        {
            if (d.Result is { } r)
            {
                foreach (var u in Pieces([.. parser.Push(d.Text), .. parser.Flush()])) yield return u;
                var final = Update(null);
                final.FinishReason = callsSent > 0 ? ChatFinishReason.ToolCalls
                    : r.StopReason is StopReason.Length or StopReason.ContextFull ? ChatFinishReason.Length : ChatFinishReason.Stop;
                final.Contents.Add(new UsageContent(new UsageDetails
                {
                    InputTokenCount = r.PromptTokens,
                    OutputTokenCount = r.CompletionTokens,
                    TotalTokenCount = r.PromptTokens + r.CompletionTokens,
                }));
                final.AdditionalProperties = Stats(r);
                yield return final;
            }
            else if (d.Tokens == 0) yield return Update(d.Text);
            else
            {
                // The token logprobs ride on the first update of this delta (or an empty one when the parser holds
                // the text back, e.g. inside a tool-call tag).
                var lp = d.Logprobs is { Count: > 0 } l ? l : null;
                foreach (var u in Pieces(parser.Push(d.Text)))
                {
                    if (lp != null) { u.AdditionalProperties = new() { [LogprobsKey] = lp }; lp = null; }
                    yield return u;
                }
                if (lp != null)
                {
                    var u = Update("");
                    u.AdditionalProperties = new() { [LogprobsKey] = lp };
                    yield return u;
                }
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
