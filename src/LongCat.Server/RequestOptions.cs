using System.Globalization;
using System.Text.Json;
using LongCat.Inference;

namespace LongCat.Server;

/// <summary>
/// The OpenAI request parameters beyond sampling (issue 12 item 4): <c>logprobs</c> / <c>top_logprobs</c> (chat: a
/// bool and 0..20 alternatives; completions: 0..5 alternatives), <c>logit_bias</c> (token id strings to [-100, 100]),
/// <c>echo</c> (completions), and every OpenAI parameter this server does not honour, refused by name (400) rather
/// than ignored. <c>tools</c>, <c>tool_choice</c>, <c>parallel_tool_calls</c> and <c>response_format</c> are handled
/// elsewhere; <c>user</c>, <c>metadata</c>, <c>service_tier</c> and <c>store: false</c> change nothing in the output
/// and are accepted.
/// </summary>
static class RequestOptions
{
    /// <summary>OpenAI parameters with no support here, and why (chat and completions).</summary>
    static readonly (string Name, bool Chat, string Why)[] Unsupported =
    [
        ("audio", true, "audio output is not supported: this model writes text"),
        ("prediction", true, "predicted outputs are not supported"),
        ("web_search_options", true, "web search is not supported"),
        ("reasoning_effort", true, "reasoning_effort is not supported"),
        ("verbosity", true, "verbosity is not supported"),
        ("functions", true, "the deprecated 'functions' parameter is not supported: use 'tools'"),
        ("function_call", true, "the deprecated 'function_call' parameter is not supported: use 'tool_choice'"),
        ("suffix", false, "suffix (fill-in-the-middle) is not supported: LongCat has no FIM format"),
    ];

    public static void Parse(JsonElement root, bool chat, OpenAIRequest r, Microsoft.Extensions.AI.ChatOptions o)
    {
        foreach (var (name, forChat, why) in Unsupported)
            if (forChat == chat && root.TryGetProperty(name, out var e) && e.ValueKind != JsonValueKind.Null)
                throw ApiException.BadParam(name, why);
        if (root.TryGetProperty("store", out var store) && store.ValueKind == JsonValueKind.True)
            throw ApiException.BadParam("store", "store = true is not supported: this server keeps no completions");
        if (chat && root.TryGetProperty("modalities", out var mod) && mod.ValueKind != JsonValueKind.Null
            && !(mod.ValueKind == JsonValueKind.Array && mod.EnumerateArray().All(m => m.ValueKind == JsonValueKind.String && m.GetString() == "text")))
            throw ApiException.BadParam("modalities", "modalities must be [\"text\"]: this model writes text only");
        if (!chat && root.TryGetProperty("best_of", out var bo) && bo.ValueKind != JsonValueKind.Null
            && !(bo.ValueKind == JsonValueKind.Number && bo.TryGetInt32(out var b) && b == 1))
            throw ApiException.BadParam("best_of", "best_of other than 1 is not supported");

        if (chat)
        {
            bool on = root.TryGetProperty("logprobs", out var lp) && lp.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False or JsonValueKind.Null => false,
                _ => throw ApiException.BadParam("logprobs", "'logprobs' must be true or false"),
            };
            int? top = Int(root, "top_logprobs", TokenLogprobs.MaxTop);
            if (top is not null && !on) throw ApiException.BadParam("top_logprobs", "top_logprobs needs \"logprobs\": true");
            if (on) r.Logprobs = top ?? 0;
        }
        else
        {
            r.Logprobs = Int(root, "logprobs", 5);
            if (root.TryGetProperty("echo", out var echo) && echo.ValueKind != JsonValueKind.Null)
                r.Echo = echo.ValueKind is JsonValueKind.True or JsonValueKind.False ? echo.GetBoolean() : throw ApiException.BadParam("echo", "'echo' must be true or false");
            if (r.Echo && r.Logprobs is not null)
                throw ApiException.BadParam("echo", "echo with logprobs is not supported: the log-probabilities of prompt tokens are not computed");
        }
        if (r.Logprobs is { } n) (o.AdditionalProperties ??= [])[LongCatChatClient.LogprobsKey] = n;

        if (root.TryGetProperty("logit_bias", out var bias) && bias.ValueKind != JsonValueKind.Null)
        {
            if (bias.ValueKind != JsonValueKind.Object) throw ApiException.BadParam("logit_bias", "'logit_bias' must be an object mapping token ids to biases");
            var map = new Dictionary<int, float>();
            foreach (var p in bias.EnumerateObject())
            {
                if (map.Count >= 1024) throw ApiException.BadParam("logit_bias", "'logit_bias' has more than 1024 entries");
                if (!int.TryParse(p.Name, NumberStyles.None, CultureInfo.InvariantCulture, out int id))
                    throw ApiException.BadParam("logit_bias", $"logit_bias key '{p.Name}' is not a token id (a non-negative integer as a string)");
                if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetDouble(out var v) || !(v >= -100 && v <= 100))
                    throw ApiException.BadParam("logit_bias", $"logit_bias for token {id} must be a number in [-100, 100]");
                map[id] = (float)v;
            }
            if (map.Count > 0) (o.AdditionalProperties ??= [])[LongCatChatClient.LogitBiasKey] = (IReadOnlyDictionary<int, float>)map;
        }
    }

    static int? Int(JsonElement o, string name, int max)
    {
        if (!o.TryGetProperty(name, out var e) || e.ValueKind == JsonValueKind.Null) return null;
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt64(out var v)) throw ApiException.BadParam(name, $"'{name}' must be an integer");
        if (v < 0 || v > max) throw ApiException.BadParam(name, $"{name} = {v} is out of range: must be in 0..{max}");
        return (int)v;
    }
}
