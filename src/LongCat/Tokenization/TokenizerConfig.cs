using System.Text.Json;
using LongCat.IO;

namespace LongCat.Tokenization;

/// <summary>
/// The parts of a Hugging Face <c>tokenizer_config.json</c> that encoding and chat need: special token
/// names and the chat template. Only <c>transformers</c> acts on <c>add_bos_token</c>; the <c>tokenizers</c>
/// library (and so <see cref="Tokenizer.Encode"/>) never adds a BOS because of it.
/// </summary>
public sealed record TokenizerConfig
{
    public string? BosToken { get; init; }
    public string? EosToken { get; init; }
    public string? PadToken { get; init; }
    public string? UnkToken { get; init; }
    public bool? AddBosToken { get; init; }
    public bool? AddEosToken { get; init; }
    /// <summary>The default chat template (Jinja source), when the file has one.</summary>
    public string? ChatTemplate { get; init; }
    public long? ModelMaxLength { get; init; }
    public string? TokenizerClass { get; init; }

    /// <summary>Reads <paramref name="path"/>; throws <see cref="ModelFormatException"/> naming the file and key.</summary>
    public static TokenizerConfig Load(string path)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException($"{path}: cannot read: {e.Message}", e);
        }
        return Parse(bytes, path);
    }

    /// <summary>Parses tokenizer_config.json text; <paramref name="source"/> names it in errors.</summary>
    public static TokenizerConfig Parse(ReadOnlySpan<byte> json, string source)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json.ToArray(), new JsonDocumentOptions { AllowTrailingCommas = true }); }
        catch (JsonException e) { throw new ModelFormatException($"{source}: not valid JSON: {e.Message}", e); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new ModelFormatException($"{source}: expected a JSON object");
            return new TokenizerConfig
            {
                BosToken = TokenName(root, "bos_token", source),
                EosToken = TokenName(root, "eos_token", source),
                PadToken = TokenName(root, "pad_token", source),
                UnkToken = TokenName(root, "unk_token", source),
                AddBosToken = Bool(root, "add_bos_token", source),
                AddEosToken = Bool(root, "add_eos_token", source),
                ChatTemplate = Template(root, source),
                ModelMaxLength = root.TryGetProperty("model_max_length", out var m) && m.ValueKind == JsonValueKind.Number
                    ? (m.TryGetInt64(out long l) ? l : long.MaxValue) : null,
                TokenizerClass = root.TryGetProperty("tokenizer_class", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString() : null,
            };
        }
    }

    static string? TokenName(JsonElement root, string key, string source)
    {
        if (!root.TryGetProperty(key, out var v)) return null;
        return v.ValueKind switch
        {
            JsonValueKind.Null => null,
            JsonValueKind.String => v.GetString(),
            JsonValueKind.Object when v.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String => c.GetString(),
            _ => throw new ModelFormatException($"{source}: '{key}' must be a string or an object with 'content'"),
        };
    }

    static bool? Bool(JsonElement root, string key, string source)
    {
        if (!root.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new ModelFormatException($"{source}: '{key}' must be true or false"),
        };
    }

    static string? Template(JsonElement root, string source)
    {
        if (!root.TryGetProperty("chat_template", out var v)) return null;
        switch (v.ValueKind)
        {
            case JsonValueKind.Null: return null;
            case JsonValueKind.String: return v.GetString();
            case JsonValueKind.Array:
                // [{"name": "default", "template": "..."}, ...]: take "default", else the first.
                string? first = null;
                foreach (var t in v.EnumerateArray())
                {
                    if (t.ValueKind != JsonValueKind.Object || !t.TryGetProperty("template", out var tt) || tt.ValueKind != JsonValueKind.String)
                        throw new ModelFormatException($"{source}: 'chat_template' entries must be objects with 'name' and 'template'");
                    first ??= tt.GetString();
                    if (t.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String && n.GetString() == "default") return tt.GetString();
                }
                return first;
            default:
                throw new ModelFormatException($"{source}: 'chat_template' must be a string or a list of named templates");
        }
    }
}
