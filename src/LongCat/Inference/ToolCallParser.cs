using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using LongCat.Tokenization;

namespace LongCat.Inference;

/// <summary>What a piece of a reply is: answer text, reasoning (inside <c>&lt;longcat_think&gt;</c>), or a tool call.</summary>
public enum ReplyPieceKind { Text, Reasoning, ToolCall }

/// <summary>A piece of parsed reply: text or reasoning (<see cref="Text"/>), or a validated call (<see cref="Call"/>).</summary>
public sealed record ReplyPiece(ReplyPieceKind Kind, string Text, ToolCall? Call = null);

/// <summary>
/// Splits a model's streamed reply into answer text, reasoning and tool calls, incrementally. Feed decoded text with
/// <see cref="Push"/> as it arrives and call <see cref="Flush"/> at the end; the pieces returned are final.
/// <list type="bullet">
/// <item>Text that could be the start of a tag is held back until it is known not to be one, so no part of a tag of a
/// parsed call or of a reasoning block ever reaches the text.</item>
/// <item><c>&lt;longcat_tool_call&gt;…&lt;/longcat_tool_call&gt;</c> blocks (only when tools were offered) become
/// calls once closed, if the body parses (<see cref="ToolCallStyle"/>), names an offered tool, and its arguments are
/// a JSON object valid against the tool's schema (required properties, types, enum, const, nested objects and
/// arrays). Anything else — an unknown tool, bad JSON, a block left open at the end — is returned as text, tags
/// included: malformed model output is shown, never an error.</item>
/// <item>White space between calls placed back to back, and after the last call, is dropped.</item>
/// <item><c>&lt;longcat_think&gt;…&lt;/longcat_think&gt;</c> becomes reasoning, streamed as it comes.</item>
/// </list>
/// The result does not depend on how the text is split between calls to <see cref="Push"/>.
/// </summary>
public sealed class ToolCallParser
{
    enum Mode { Text, Call, Think }

    readonly ToolCallStyle _style;
    readonly Dictionary<string, ToolDefinition> _tools;
    readonly StringBuilder _buf = new();
    readonly Func<string> _newId;
    Mode _mode;
    bool _afterCall;         // the last piece was a call: white space is held (dropped if more calls or the end follow)

    /// <param name="tools">The offered tools; none: tool-call tags are plain text.</param>
    /// <param name="style">The call syntax of the model.</param>
    /// <param name="newId">Makes call ids (default: "call_" and 24 random hex digits).</param>
    public ToolCallParser(IReadOnlyList<ToolDefinition>? tools, ToolCallStyle style = ToolCallStyle.Json, Func<string>? newId = null)
    {
        _style = style;
        _tools = (tools ?? []).GroupBy(t => t.Name, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);
        _newId = newId ?? (() => "call_" + Guid.NewGuid().ToString("N")[..24]);
    }

    /// <summary>Calls parsed so far.</summary>
    public int CallCount { get; private set; }

    /// <summary>Adds decoded text; returns the pieces it completed.</summary>
    public List<ReplyPiece> Push(string text)
    {
        var output = new List<ReplyPiece>();
        _buf.Append(text);
        Drain(output, final: false);
        return output;
    }

    /// <summary>The end of the reply: whatever is held is released (an unclosed call as text).</summary>
    public List<ReplyPiece> Flush()
    {
        var output = new List<ReplyPiece>();
        Drain(output, final: true);
        if (_buf.Length > 0)
        {
            var rest = _buf.ToString();
            _buf.Clear();
            if (_mode == Mode.Think) Add(output, ReplyPieceKind.Reasoning, rest);
            else if (!(_afterCall && string.IsNullOrWhiteSpace(rest))) Add(output, ReplyPieceKind.Text, rest);
        }
        _mode = Mode.Text;
        return output;
    }

    void Drain(List<ReplyPiece> output, bool final)
    {
        while (_buf.Length > 0)
        {
            var s = _buf.ToString();
            if (_mode == Mode.Call)
            {
                int close = s.IndexOf(ToolCallFormat.CallClose, StringComparison.Ordinal);
                if (close < 0) return; // the call is not complete yet (at the end Flush returns it as text)
                int end = close + ToolCallFormat.CallClose.Length;
                string body = s[ToolCallFormat.CallOpen.Length..close];
                _buf.Remove(0, end);
                _mode = Mode.Text;
                if (TryParseCall(body) is { } call)
                {
                    CallCount++;
                    output.Add(new ReplyPiece(ReplyPieceKind.ToolCall, "", call));
                    _afterCall = true;
                }
                else
                {
                    Add(output, ReplyPieceKind.Text, s[..end]);
                    _afterCall = false;
                }
                continue;
            }
            if (_mode == Mode.Think)
            {
                int close = s.IndexOf(ToolCallFormat.ThinkClose, StringComparison.Ordinal);
                if (close >= 0)
                {
                    Add(output, ReplyPieceKind.Reasoning, s[..close]);
                    _buf.Remove(0, close + ToolCallFormat.ThinkClose.Length);
                    _mode = Mode.Text;
                    continue;
                }
                int safe = final ? s.Length : s.Length - PartialSuffix(s, ToolCallFormat.ThinkClose);
                Add(output, ReplyPieceKind.Reasoning, s[..safe]);
                _buf.Remove(0, safe);
                return;
            }
            // Text: find the first opening tag.
            int callAt = _tools.Count > 0 ? s.IndexOf(ToolCallFormat.CallOpen, StringComparison.Ordinal) : -1;
            int think = s.IndexOf(ToolCallFormat.ThinkOpen, StringComparison.Ordinal);
            int at = callAt < 0 ? think : think < 0 ? callAt : Math.Min(callAt, think);
            if (at >= 0)
            {
                EmitText(output, s[..at], beforeCall: at == callAt);
                if (at == callAt)
                {
                    _buf.Remove(0, at);      // keep the opening tag: a malformed call is returned whole
                    _mode = Mode.Call;
                }
                else
                {
                    _buf.Remove(0, at + ToolCallFormat.ThinkOpen.Length);
                    _mode = Mode.Think;
                }
                continue;
            }
            int hold = final ? 0 : Math.Max(_tools.Count > 0 ? PartialSuffix(s, ToolCallFormat.CallOpen) : 0, PartialSuffix(s, ToolCallFormat.ThinkOpen));
            string ready = s[..(s.Length - hold)];
            if (_afterCall && string.IsNullOrWhiteSpace(ready))
            {
                // White space after a call: dropped at the end or before another call, kept before more text.
                if (final) _buf.Remove(0, ready.Length);
                return;
            }
            EmitText(output, ready, beforeCall: false);
            _buf.Remove(0, ready.Length);
            return;
        }
    }

    void EmitText(List<ReplyPiece> output, string text, bool beforeCall)
    {
        if (text.Length == 0) return;
        if (_afterCall && string.IsNullOrWhiteSpace(text) && beforeCall) return; // white space between calls
        Add(output, ReplyPieceKind.Text, text);
        _afterCall = false;
    }

    static void Add(List<ReplyPiece> output, ReplyPieceKind kind, string text)
    {
        if (text.Length == 0) return;
        // Consecutive pieces of one kind are merged, so callers see the same pieces however the input was split.
        if (output.Count > 0 && output[^1].Kind == kind && kind != ReplyPieceKind.ToolCall)
            output[^1] = output[^1] with { Text = output[^1].Text + text };
        else output.Add(new ReplyPiece(kind, text));
    }

    /// <summary>Length of the longest suffix of <paramref name="s"/> that is a proper prefix of <paramref name="tag"/>.</summary>
    static int PartialSuffix(string s, string tag)
    {
        for (int n = Math.Min(tag.Length - 1, s.Length); n > 0; n--)
            if (string.CompareOrdinal(s, s.Length - n, tag, 0, n) == 0) return n;
        return 0;
    }

    // ------------------------------------------------------------------ one call

    /// <summary>The call in a block's body, or null when it is malformed or does not fit an offered tool.</summary>
    ToolCall? TryParseCall(string body)
    {
        JsonObject? args;
        string? name;
        if (_style == ToolCallStyle.Json) (name, args) = ParseJsonBody(body);
        else (name, args) = ParseXmlBody(body);
        if (name is null || args is null || !_tools.TryGetValue(name, out var tool)) return null;
        if (tool.Schema is { } schema && !SchemaCheck.Valid(args, schema)) return null;
        return new ToolCall(_newId(), name, args.ToJsonString(Compact));
    }

    /// <summary>Arguments as compact JSON with non-ASCII text left readable.</summary>
    static readonly JsonSerializerOptions Compact = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    static (string?, JsonObject?) ParseJsonBody(string body)
    {
        try
        {
            if (JsonNode.Parse(body) is not JsonObject o || o.Count > 2 || !o.ContainsKey("name") || (o.Count == 2 && !o.ContainsKey("arguments")))
                return (null, null);
            if (o["name"] is not JsonValue nv || !nv.TryGetValue<string>(out var name)) return (null, null);
            var a = o["arguments"];
            if (a is null && !o.ContainsKey("arguments")) return (name, []);
            if (a is JsonValue sv && sv.TryGetValue<string>(out var text)) a = JsonNode.Parse(text); // arguments sent as a JSON string
            return a is JsonObject args ? (name, (JsonObject)args.DeepClone()) : (null, null);
        }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException) { return (null, null); }
    }

    (string?, JsonObject?) ParseXmlBody(string body)
    {
        int first = body.IndexOf(ToolCallFormat.ArgKeyOpen, StringComparison.Ordinal);
        string name = (first < 0 ? body : body[..first]).Trim();
        if (name.Length == 0 || name.Contains('<') || name.Contains('\n')) return (null, null);
        _tools.TryGetValue(name, out var tool);
        var args = new JsonObject();
        int pos = first < 0 ? body.Length : first;
        while (pos < body.Length)
        {
            if (!string.IsNullOrWhiteSpace(body[pos..]) && !body.AsSpan(pos).TrimStart().StartsWith(ToolCallFormat.ArgKeyOpen, StringComparison.Ordinal)) return (null, null);
            int k = body.IndexOf(ToolCallFormat.ArgKeyOpen, pos, StringComparison.Ordinal);
            if (k < 0) break;
            int kEnd = body.IndexOf(ToolCallFormat.ArgKeyClose, k, StringComparison.Ordinal);
            if (kEnd < 0) return (null, null);
            string key = body[(k + ToolCallFormat.ArgKeyOpen.Length)..kEnd].Trim();
            int v = body.IndexOf(ToolCallFormat.ArgValueOpen, kEnd, StringComparison.Ordinal);
            if (v < 0 || !string.IsNullOrWhiteSpace(body[(kEnd + ToolCallFormat.ArgKeyClose.Length)..v])) return (null, null);
            int vEnd = body.IndexOf(ToolCallFormat.ArgValueClose, v, StringComparison.Ordinal);
            if (vEnd < 0 || key.Length == 0 || args.ContainsKey(key)) return (null, null);
            string raw = body[(v + ToolCallFormat.ArgValueOpen.Length)..vEnd];
            args[key] = XmlValue(raw, tool?.Schema is { } s && s.TryGetProperty("properties", out var props) && props.ValueKind == JsonValueKind.Object
                && props.TryGetProperty(key, out var ps) ? ps : null);
            pos = vEnd + ToolCallFormat.ArgValueClose.Length;
        }
        return (name, args);
    }

    /// <summary>An XML argument value: raw text for a string property (or one the schema does not type), else JSON.</summary>
    static JsonNode? XmlValue(string raw, JsonElement? schema)
    {
        bool isString = schema is not { } s || !s.TryGetProperty("type", out var t)
            || (t.ValueKind == JsonValueKind.String && t.GetString() == "string");
        if (isString) return JsonValue.Create(raw);
        try { return JsonNode.Parse(raw); }
        catch (Exception e) when (e is JsonException or ArgumentException) { return JsonValue.Create(raw); }   // the schema check then rejects it
    }
}

/// <summary>
/// The JSON-schema checks a tool call's arguments must pass: type (one or a list), enum, const, object properties,
/// required and additionalProperties false, array items, minItems and maxItems, anyOf. Other keywords are not checked.
/// </summary>
public static class SchemaCheck
{
    public static bool Valid(JsonNode? value, JsonElement schema)
    {
        if (schema.ValueKind == JsonValueKind.True) return true;
        if (schema.ValueKind == JsonValueKind.False) return false;
        if (schema.ValueKind != JsonValueKind.Object) return true;
        if (schema.TryGetProperty("type", out var type))
        {
            bool ok = type.ValueKind switch
            {
                JsonValueKind.String => IsType(value, type.GetString()!),
                JsonValueKind.Array => type.EnumerateArray().Any(t => t.ValueKind == JsonValueKind.String && IsType(value, t.GetString()!)),
                _ => true,
            };
            if (!ok) return false;
        }
        if (schema.TryGetProperty("enum", out var en) && en.ValueKind == JsonValueKind.Array
            && !en.EnumerateArray().Any(e => JsonNode.DeepEquals(JsonNode.Parse(e.GetRawText()), value)))
            return false;
        if (schema.TryGetProperty("const", out var c) && !JsonNode.DeepEquals(JsonNode.Parse(c.GetRawText()), value)) return false;
        if (schema.TryGetProperty("anyOf", out var any) && any.ValueKind == JsonValueKind.Array && !any.EnumerateArray().Any(s => Valid(value, s)))
            return false;
        if (value is JsonObject o)
        {
            bool hasProps = schema.TryGetProperty("properties", out var props) && props.ValueKind == JsonValueKind.Object;
            if (schema.TryGetProperty("required", out var req) && req.ValueKind == JsonValueKind.Array)
                foreach (var r in req.EnumerateArray())
                    if (r.ValueKind == JsonValueKind.String && !o.ContainsKey(r.GetString()!)) return false;
            bool closed = schema.TryGetProperty("additionalProperties", out var ap) && ap.ValueKind == JsonValueKind.False;
            foreach (var (k, v) in o)
            {
                if (hasProps && props.TryGetProperty(k, out var ps)) { if (!Valid(v, ps)) return false; }
                else if (closed) return false;
                else if (ap.ValueKind == JsonValueKind.Object && !Valid(v, ap)) return false;
            }
        }
        if (value is JsonArray a)
        {
            if (schema.TryGetProperty("minItems", out var mi) && mi.TryGetInt32(out int min) && a.Count < min) return false;
            if (schema.TryGetProperty("maxItems", out var ma) && ma.TryGetInt32(out int max) && a.Count > max) return false;
            if (schema.TryGetProperty("items", out var items) && a.Any(x => !Valid(x, items))) return false;
        }
        return true;
    }

    static bool IsType(JsonNode? v, string type) => type switch
    {
        "null" => v is null,
        "object" => v is JsonObject,
        "array" => v is JsonArray,
        "string" => v is JsonValue s && s.GetValueKind() == JsonValueKind.String,
        "boolean" => v is JsonValue b && b.GetValueKind() is JsonValueKind.True or JsonValueKind.False,
        "number" => v is JsonValue n && n.GetValueKind() == JsonValueKind.Number,
        "integer" => v is JsonValue i && i.GetValueKind() == JsonValueKind.Number && IsInteger(i),
        _ => true,
    };

    static bool IsInteger(JsonValue v)
    {
        var text = v.ToJsonString();
        return double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var d)
            && double.IsFinite(d) && Math.Floor(d) == d;
    }
}
