using System.Text.Json;
using Microsoft.Extensions.AI;

namespace LongCat.Server;

/// <summary>
/// A parsed /v1/chat/completions or /v1/completions body: every field is type- and range-checked here, so a bad
/// request is a 400 naming the field (OpenAI's ranges: temperature [0, 2], top_p (0, 1], penalties [-2, 2], at most
/// 4 stop strings, n = 1). Unknown fields are ignored, as OpenAI-compatible servers do.
/// </summary>
public sealed class OpenAIRequest
{
    public string? Model { get; private init; }
    public bool Stream { get; private init; }
    public bool IncludeUsage { get; private init; }
    public List<ChatMessage> Messages { get; } = [];
    public string? Prompt { get; private init; }
    public ChatOptions Options { get; } = new();
    /// <summary>Log-probabilities asked for: the alternatives per token (null = none). See <see cref="RequestOptions"/>.</summary>
    public int? Logprobs { get; internal set; }
    /// <summary>Completions: the prompt is echoed before the completion.</summary>
    public bool Echo { get; internal set; }
    /// <summary>Choices to generate (OpenAI's n, 1..<see cref="MaxChoices"/>); they share the prompt's prefill.</summary>
    public int N { get; private set; } = 1;
    public const int MaxChoices = 16;

    /// <summary>
    /// Reads the body as JSON: 415 unless it is sent as application/json, 400 for anything else or for a string that
    /// is not valid Unicode (see <see cref="RequestValidation"/>); past the size limit the read throws the 413 (<see cref="RequestBodyLimit"/>).
    /// </summary>
    public static async Task<JsonDocument> ReadJsonAsync(Microsoft.AspNetCore.Http.HttpRequest request, CancellationToken ct)
    {
        RequestValidation.RequireJson(request);
        try
        {
            var doc = await JsonDocument.ParseAsync(request.Body, new JsonDocumentOptions { MaxDepth = 32 }, ct);
            try { RequestValidation.CheckStrings(doc.RootElement); }
            catch { doc.Dispose(); throw; }
            return doc;
        }
        catch (JsonException e)
        {
            throw new ApiException(400, $"the request body is not valid JSON: {e.Message}");
        }
    }

    /// <summary>A chat completion request: messages plus sampling options.</summary>
    public static OpenAIRequest ParseChat(JsonElement root)
    {
        var r = Parse(root, chat: true);
        if (!root.TryGetProperty("messages", out var msgs)) throw ApiException.BadParam("messages", "'messages' is required");
        if (msgs.ValueKind != JsonValueKind.Array) throw ApiException.BadParam("messages", "'messages' must be an array");
        if (msgs.GetArrayLength() == 0) throw ApiException.BadParam("messages", "'messages' must not be empty");
        if (msgs.GetArrayLength() > 1024) throw ApiException.BadParam("messages", "'messages' has more than 1024 entries");
        int i = 0;
        foreach (var m in msgs.EnumerateArray())
        {
            string p = $"messages[{i}]";
            if (m.ValueKind != JsonValueKind.Object) throw ApiException.BadParam(p, $"'{p}' must be an object");
            var role = m.TryGetProperty("role", out var re) && re.ValueKind == JsonValueKind.String ? re.GetString()! : throw ApiException.BadParam(p + ".role", $"'{p}.role' must be a string");
            var chatRole = role switch
            {
                "system" or "developer" => ChatRole.System,
                "user" => ChatRole.User,
                "assistant" => ChatRole.Assistant,
                "tool" => ChatRole.Tool,
                _ => throw ApiException.BadParam(p + ".role", $"'{p}.role' = '{role}' is not supported: system, developer, user, assistant or tool"),
            };
            r.Messages.Add(OpenAITools.Message(m, p, chatRole, Content(m, p)));  // tool calls and results: OpenAITools
            i++;
        }
        return r;
    }

    /// <summary>A legacy completion request: a prompt string plus sampling options (max_tokens defaults to 16, as OpenAI's).</summary>
    public static OpenAIRequest ParseCompletion(JsonElement root)
    {
        if (!root.TryGetProperty("prompt", out var pe)) throw ApiException.BadParam("prompt", "'prompt' is required");
        string prompt = pe.ValueKind switch
        {
            JsonValueKind.String => pe.GetString()!,
            JsonValueKind.Array when pe.GetArrayLength() == 1 && pe[0].ValueKind == JsonValueKind.String => pe[0].GetString()!,
            JsonValueKind.Array => throw ApiException.BadParam("prompt", "'prompt' must be one string (batches of prompts are not supported)"),
            _ => throw ApiException.BadParam("prompt", "'prompt' must be a string"),
        };
        if (prompt.Length == 0) throw ApiException.BadParam("prompt", "'prompt' must not be empty");
        var r = Parse(root, chat: false, prompt);
        r.Options.MaxOutputTokens ??= 16;
        return r;
    }

    static string Content(JsonElement m, string p)
    {
        if (!m.TryGetProperty("content", out var c) || c.ValueKind == JsonValueKind.Null) return "";
        if (c.ValueKind == JsonValueKind.String) return c.GetString()!;
        if (c.ValueKind != JsonValueKind.Array) throw ApiException.BadParam(p + ".content", $"'{p}.content' must be a string or an array of text parts");
        var sb = new System.Text.StringBuilder();
        foreach (var part in c.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var t) || t.ValueKind != JsonValueKind.String)
                throw ApiException.BadParam(p + ".content", $"'{p}.content' parts must be objects with a 'type'");
            if (t.GetString() != "text") throw ApiException.BadParam(p + ".content", $"'{p}.content' part type '{t.GetString()}' is not supported: only text");
            if (!part.TryGetProperty("text", out var tx) || tx.ValueKind != JsonValueKind.String) throw ApiException.BadParam(p + ".content", $"'{p}.content' text parts need a string 'text'");
            sb.Append(tx.GetString());
        }
        return sb.ToString();
    }

    static OpenAIRequest Parse(JsonElement root, bool chat, string? prompt = null)
    {
        if (root.ValueKind != JsonValueKind.Object) throw new ApiException(400, "the request body must be a JSON object");
        bool stream = Bool(root, "stream") ?? false;
        bool includeUsage = false;
        if (root.TryGetProperty("stream_options", out var so) && so.ValueKind != JsonValueKind.Null)
        {
            if (so.ValueKind != JsonValueKind.Object) throw ApiException.BadParam("stream_options", "'stream_options' must be an object");
            includeUsage = Bool(so, "include_usage", "stream_options.include_usage") ?? false;
        }
        var r = new OpenAIRequest
        {
            Model = Str(root, "model"),
            Stream = stream,
            IncludeUsage = includeUsage,
            Prompt = prompt,
        };
        var o = r.Options;
        o.ModelId = r.Model;
        r.N = Int(root, "n", 1, MaxChoices) ?? 1;
        int? maxCompletion = chat ? Int(root, "max_completion_tokens", 1, int.MaxValue) : null;
        o.MaxOutputTokens = maxCompletion ?? Int(root, "max_tokens", 1, int.MaxValue);
        o.Temperature = Float(root, "temperature", 0, 2);
        o.TopP = Float(root, "top_p", 0, 1, minExclusive: true);
        o.TopK = Int(root, "top_k", 0, int.MaxValue);
        o.FrequencyPenalty = Float(root, "frequency_penalty", -2, 2);
        o.PresencePenalty = Float(root, "presence_penalty", -2, 2);
        if (root.TryGetProperty("seed", out var se) && se.ValueKind != JsonValueKind.Null)
            o.Seed = se.ValueKind == JsonValueKind.Number && se.TryGetInt64(out var seed) ? seed : throw ApiException.BadParam("seed", "'seed' must be an integer");
        if (Float(root, "min_p", 0, 1) is { } minP) (o.AdditionalProperties ??= [])["min_p"] = minP;
        if (Float(root, "repetition_penalty", 0, 10, minExclusive: true) is { } rp) (o.AdditionalProperties ??= [])["repetition_penalty"] = rp;
        if (Bool(root, "speculative") is { } spec) (o.AdditionalProperties ??= [])["speculative"] = spec;
        if (root.TryGetProperty("stop", out var stop) && stop.ValueKind != JsonValueKind.Null)
        {
            var list = new List<string>();
            if (stop.ValueKind == JsonValueKind.String) list.Add(stop.GetString()!);
            else if (stop.ValueKind == JsonValueKind.Array)
                foreach (var s in stop.EnumerateArray())
                    list.Add(s.ValueKind == JsonValueKind.String ? s.GetString()! : throw ApiException.BadParam("stop", "'stop' must be a string or an array of strings"));
            else throw ApiException.BadParam("stop", "'stop' must be a string or an array of strings");
            if (list.Count > 4) throw ApiException.BadParam("stop", $"'stop' has {list.Count} strings: at most 4 are allowed");
            if (list.Any(s => s.Length == 0 || s.Length > 256)) throw ApiException.BadParam("stop", "stop strings must have 1..256 characters");
            o.StopSequences = list;
        }
        RequestOptions.Parse(root, chat, r, o);   // logprobs, logit_bias, n, echo, the refused parameters
        if (chat) ResponseFormat.Parse(root, o); else ResponseFormat.Refuse(root);
        if (chat) OpenAITools.Parse(root, o);  // tools, tool_choice, parallel_tool_calls, think_on
        else if (root.TryGetProperty("tools", out var tools) && tools.ValueKind == JsonValueKind.Array && tools.GetArrayLength() > 0)
            throw ApiException.BadParam("tools", "tools are not supported by /v1/completions: use /v1/chat/completions");
        return r;
    }

    static string? Str(JsonElement o, string name) =>
        !o.TryGetProperty(name, out var e) || e.ValueKind == JsonValueKind.Null ? null
        : e.ValueKind == JsonValueKind.String ? e.GetString() : throw ApiException.BadParam(name, $"'{name}' must be a string");

    static bool? Bool(JsonElement o, string name, string? param = null) =>
        !o.TryGetProperty(name, out var e) || e.ValueKind == JsonValueKind.Null ? null
        : e.ValueKind is JsonValueKind.True or JsonValueKind.False ? e.GetBoolean()
        : throw ApiException.BadParam(param ?? name, $"'{param ?? name}' must be true or false");

    static int? Int(JsonElement o, string name, int min, int max)
    {
        if (!o.TryGetProperty(name, out var e) || e.ValueKind == JsonValueKind.Null) return null;
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt64(out var v)) throw ApiException.BadParam(name, $"'{name}' must be an integer");
        if (v < min || v > max) throw ApiException.BadParam(name, $"{name} = {v} is out of range: must be in {min}..{max}");
        return (int)v;
    }

    static float? Float(JsonElement o, string name, double min, double max, bool minExclusive = false)
    {
        if (!o.TryGetProperty(name, out var e) || e.ValueKind == JsonValueKind.Null) return null;
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetDouble(out var v) || !double.IsFinite(v)) throw ApiException.BadParam(name, $"'{name}' must be a number");
        if (v > max || (minExclusive ? v <= min : v < min))
            throw ApiException.BadParam(name, $"{name} = {v.ToString(System.Globalization.CultureInfo.InvariantCulture)} is out of range: must be in {(minExclusive ? "(" : "[")}{min.ToString(System.Globalization.CultureInfo.InvariantCulture)}, {max.ToString(System.Globalization.CultureInfo.InvariantCulture)}]");
        return (float)v;
    }
}
