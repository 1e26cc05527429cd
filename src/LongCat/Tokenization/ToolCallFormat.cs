using System.Globalization;
using System.Text;
using System.Text.Json;

namespace LongCat.Tokenization;

/// <summary>How a model writes a tool call inside <c>&lt;longcat_tool_call&gt;</c> tags.</summary>
public enum ToolCallStyle
{
    /// <summary>LongCat-Flash-Chat: <c>&lt;longcat_tool_call&gt;\n{"name": ..., "arguments": {...}}\n&lt;/longcat_tool_call&gt;</c>.</summary>
    Json,
    /// <summary>
    /// The newer releases (LongCat-Flash-Thinking-2601, Flash-Lite): the name, then one
    /// <c>&lt;longcat_arg_key&gt;k&lt;/longcat_arg_key&gt;\n&lt;longcat_arg_value&gt;v&lt;/longcat_arg_value&gt;</c> pair per argument.
    /// </summary>
    Xml,
}

/// <summary>A function the model may call: its name, description and JSON schema of the arguments.</summary>
/// <param name="Name">Function name.</param>
/// <param name="Description">What it does (may be empty).</param>
/// <param name="Parameters">JSON schema of the arguments object, as JSON text ("{}" when the tool takes none).</param>
public sealed record ToolDefinition(string Name, string? Description, string Parameters)
{
    /// <summary>The parameters schema, parsed (null when it is not a JSON object).</summary>
    public JsonElement? Schema { get; } = ParseSchema(Parameters);

    static JsonElement? ParseSchema(string json)
    {
        try
        {
            using var d = JsonDocument.Parse(json);
            return d.RootElement.ValueKind == JsonValueKind.Object ? d.RootElement.Clone() : null;
        }
        catch (JsonException) { return null; }
    }
}

/// <summary>A call the assistant made: the id the tool's result refers to, the function, the arguments as a JSON object.</summary>
public sealed record ToolCall(string Id, string Name, string Arguments);

/// <summary>
/// The LongCat tool-call text: the tool description block of the prompt, assistant tool calls and tool results.
/// Every tool-related string of the chat format is written here, once, for serving and training alike.
/// <para>
/// The description block and the JSON call syntax are those of the LongCat-Flash-Chat model card. How the official
/// template renders a tool result is not published with the model card; we render each result as
/// <c>&lt;longcat_tool_response&gt;\n{content}\n&lt;/longcat_tool_response&gt;</c> as the user part of the round that
/// follows the assistant's calls (several results back to back). Source: the serving projects that ship LongCat
/// templates (SGLang-based gateways and the mlx-openai-server LongCat template) send tool results as role "tool" and
/// the model's own template turns them into <c>&lt;longcat_tool_response&gt;</c> blocks; client code written against
/// the hosted model does the same by hand. This is the one place to change if the official rendering differs.
/// </para>
/// </summary>
public static class ToolCallFormat
{
    public const string CallOpen = "<longcat_tool_call>", CallClose = "</longcat_tool_call>";
    public const string ResponseOpen = "<longcat_tool_response>", ResponseClose = "</longcat_tool_response>";
    public const string ArgKeyOpen = "<longcat_arg_key>", ArgKeyClose = "</longcat_arg_key>";
    public const string ArgValueOpen = "<longcat_arg_value>", ArgValueClose = "</longcat_arg_value>";
    public const string ThinkOpen = "<longcat_think>", ThinkClose = "</longcat_think>";
    /// <summary>The Thinking model card's switch, appended to the user's last message to ask for a reasoning trace.</summary>
    public const string ThinkOnSuffix = " /think_on";

    /// <summary>The markers a tokenizer may define as special tokens whose text must still reach the parser.</summary>
    public static readonly IReadOnlyList<string> Markers =
        [CallOpen, CallClose, ResponseOpen, ResponseClose, ArgKeyOpen, ArgKeyClose, ArgValueOpen, ArgValueClose, ThinkOpen, ThinkClose];

    /// <summary>The key of tokenizer_config.json (in the model folder) that selects the style: "json" (default) or "xml".</summary>
    public const string ConfigKey = "tool_call_format";

    /// <summary>
    /// The style a model folder asks for: <c>"tool_call_format": "json" | "xml"</c> in its tokenizer_config.json;
    /// JSON (LongCat-Flash-Chat's) when the file or key is absent. Throws <see cref="ArgumentException"/> for another value.
    /// </summary>
    public static ToolCallStyle StyleOfModel(string modelFolder)
    {
        var path = Path.Combine(modelFolder, "tokenizer_config.json");
        if (!File.Exists(path)) return ToolCallStyle.Json;
        try
        {
            using var d = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { AllowTrailingCommas = true });
            if (d.RootElement.ValueKind != JsonValueKind.Object || !d.RootElement.TryGetProperty(ConfigKey, out var v) || v.ValueKind == JsonValueKind.Null)
                return ToolCallStyle.Json;
            return ParseStyle(v.ValueKind == JsonValueKind.String ? v.GetString()! : v.GetRawText(), $"{path}: {ConfigKey}");
        }
        catch (JsonException) { return ToolCallStyle.Json; } // the tokenizer loader reports a broken file
    }

    /// <summary>"json" or "xml" (case-insensitive); <paramref name="what"/> names the setting in the error.</summary>
    public static ToolCallStyle ParseStyle(string value, string what) => value.ToLowerInvariant() switch
    {
        "json" => ToolCallStyle.Json,
        "xml" => ToolCallStyle.Xml,
        _ => throw new ArgumentException($"{what} = '{value}' is invalid: json or xml"),
    };

    /// <summary>
    /// The tool description block that opens the prompt (the model card's text, trailing spaces included), followed
    /// by "\n\n## Messages\n" by <see cref="ChatFormat"/>.
    /// </summary>
    public static string Description(IReadOnlyList<ToolDefinition> tools, ToolCallStyle style) =>
        string.Concat(DescriptionPieces(tools, style).Select(p => p.Text));

    /// <summary>
    /// <see cref="Description"/> as pieces: the tools' names, descriptions and schemas are text (<c>Marker</c> false,
    /// encoded without special-token matching); the tags in the fixed note are markers (control tokens where the
    /// tokenizer has them).
    /// </summary>
    public static IEnumerable<(string Text, bool Marker)> DescriptionPieces(IReadOnlyList<ToolDefinition> tools, ToolCallStyle style)
    {
        var sb = new StringBuilder();
        sb.Append("## Tools\nYou have access to the following tools: \n\n### Tool namespace: function\n\n");
        foreach (var t in tools)
        {
            sb.Append("#### Tool name: ").Append(t.Name).Append("\n\n");
            sb.Append("Description: ").Append(t.Description ?? "").Append("\n\n");
            sb.Append("InputSchema: \n").Append(PythonJson.Dumps(t.Parameters, indent: 2)).Append("\n\n");
        }
        yield return (sb.ToString(), false);
        string note = style == ToolCallStyle.Json
            ? "**Note**: For each function call, return a json object with function name and arguments within <longcat_tool_call></longcat_tool_call> XML tags as follows:\n" +
              "<longcat_tool_call>\n{\"name\": <function-name>, \"arguments\": <args-dict>}\n</longcat_tool_call>\n"
            : "**Note**: For each function call, return the function name and its arguments within <longcat_tool_call></longcat_tool_call> XML tags as follows:\n" +
              "<longcat_tool_call><function-name>\n<longcat_arg_key><arg-key></longcat_arg_key>\n<longcat_arg_value><arg-value></longcat_arg_value>\n</longcat_tool_call>\n";
        note += "When multiple functions need to be called simultaneously, each function call should be wrapped in its own <longcat_tool_call> tag and placed consecutively.";
        foreach (var p in SplitMarkers(note)) yield return p;
    }

    /// <summary>Our own fixed text cut at the tool-call tags (never applied to content).</summary>
    static IEnumerable<(string Text, bool Marker)> SplitMarkers(string s)
    {
        int pos = 0;
        while (pos < s.Length)
        {
            int best = -1; string? m = null;
            foreach (var k in Markers) // the longest first where two start at the same place
            {
                int at = s.IndexOf(k, pos, StringComparison.Ordinal);
                if (at >= 0 && (best < 0 || at < best || (at == best && k.Length > m!.Length))) { best = at; m = k; }
            }
            if (best < 0) { yield return (s[pos..], false); yield break; }
            if (best > pos) yield return (s[pos..best], false);
            yield return (m!, true);
            pos = best + m!.Length;
        }
    }

    /// <summary>One assistant tool call as the model writes it (no separator: calls are placed back to back).</summary>
    public static string Call(ToolCall call, ToolCallStyle style) => string.Concat(CallPieces(call, style).Select(p => p.Text));

    /// <summary><see cref="Call"/> as pieces: the tags are markers, the name and arguments text.</summary>
    public static IEnumerable<(string Text, bool Marker)> CallPieces(ToolCall call, ToolCallStyle style)
    {
        yield return (CallOpen, true);
        if (style == ToolCallStyle.Json)
        {
            string args = PythonJson.Dumps(call.Arguments, indent: null);
            yield return ($"\n{{\"name\": {PythonJson.Quote(call.Name)}, \"arguments\": {args}}}\n", false);
            yield return (CallClose, true);
            yield break;
        }
        yield return (call.Name + "\n", false);
        var props = new List<(string Key, string Value)>();
        using (var d = JsonDocument.Parse(call.Arguments))
            foreach (var p in d.RootElement.EnumerateObject())
                // Strings are written raw, everything else as JSON (the parser reads a value back by the schema's type).
                props.Add((p.Name, p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString()! : PythonJson.Dumps(p.Value.GetRawText(), indent: null)));
        foreach (var (key, value) in props)
        {
            yield return (ArgKeyOpen, true); yield return (key, false); yield return (ArgKeyClose, true); yield return ("\n", false);
            yield return (ArgValueOpen, true); yield return (value, false); yield return (ArgValueClose, true); yield return ("\n", false);
        }
        yield return (CallClose, true);
    }

    /// <summary>A tool's result as the model reads it.</summary>
    public static string Response(string content) => string.Concat(ResponsePieces(content).Select(p => p.Text));

    /// <summary><see cref="Response"/> as pieces: the tags are markers, the result (and the newlines around it) text.</summary>
    public static IEnumerable<(string Text, bool Marker)> ResponsePieces(string content) =>
        [(ResponseOpen, true), ("\n" + content + "\n", false), (ResponseClose, true)];
}

/// <summary>
/// JSON written as Python's <c>json.dumps(x, ensure_ascii=False)</c> does (what Jinja's <c>tojson</c> gives in HF
/// chat templates): ", " and ": " separators on one line, "," and ": " with an indent; keys in their order;
/// numbers as written in the source.
/// </summary>
public static class PythonJson
{
    /// <summary>Re-writes the JSON text <paramref name="json"/>; throws <see cref="JsonException"/> if it is not JSON.</summary>
    public static string Dumps(string json, int? indent)
    {
        using var d = JsonDocument.Parse(json);
        var sb = new StringBuilder();
        Write(sb, d.RootElement, indent, 0);
        return sb.ToString();
    }

    static void Write(StringBuilder sb, JsonElement e, int? indent, int depth)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Object:
            case JsonValueKind.Array:
                bool obj = e.ValueKind == JsonValueKind.Object;
                int count = obj ? e.EnumerateObject().Count() : e.GetArrayLength();
                sb.Append(obj ? '{' : '[');
                if (count == 0) { sb.Append(obj ? '}' : ']'); return; }
                int i = 0;
                void Sep()
                {
                    if (indent is { } n) sb.Append(i == 0 ? "" : ",").Append('\n').Append(' ', n * (depth + 1));
                    else if (i > 0) sb.Append(", ");
                    i++;
                }
                if (obj)
                    foreach (var p in e.EnumerateObject()) { Sep(); sb.Append(Quote(p.Name)).Append(": "); Write(sb, p.Value, indent, depth + 1); }
                else
                    foreach (var v in e.EnumerateArray()) { Sep(); Write(sb, v, indent, depth + 1); }
                if (indent is { } m) sb.Append('\n').Append(' ', m * depth);
                sb.Append(obj ? '}' : ']');
                return;
            case JsonValueKind.String: sb.Append(Quote(e.GetString()!)); return;
            case JsonValueKind.True: sb.Append("true"); return;
            case JsonValueKind.False: sb.Append("false"); return;
            case JsonValueKind.Null: sb.Append("null"); return;
            default: sb.Append(e.GetRawText()); return; // a number, as written
        }
    }

    /// <summary>A JSON string literal as Python writes it with ensure_ascii=False.</summary>
    public static string Quote(string s)
    {
        var sb = new StringBuilder(s.Length + 2).Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        return sb.Append('"').ToString();
    }
}
