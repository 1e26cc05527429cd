using System.Text.Json;
using LongCat.Tokenization;

namespace LongCat.Training;

/// <summary>One conversation of a chat JSONL file: its turns, the tools it offers, and where it came from.</summary>
/// <param name="Turns">The messages as <see cref="ChatTurn"/>s.</param>
/// <param name="Tools">The tools offered (OpenAI's <c>tools</c>); empty renders the plain format.</param>
/// <param name="Line">1-based line of the file.</param>
/// <param name="Root">The parsed line (for task-specific fields such as an eval's expected answer).</param>
public sealed record ChatExample(IReadOnlyList<ChatTurn> Turns, IReadOnlyList<ToolDefinition> Tools, int Line, JsonElement Root);

/// <summary>
/// Reads conversations in OpenAI's chat shape, one JSON object per line:
/// <c>{"messages": [{"role": "system"|"user"|"assistant"|"tool", "content": "..."}, ...], "tools": [...]}</c>.
/// An assistant message may carry <c>tool_calls</c> (<c>[{"id", "type": "function", "function": {"name",
/// "arguments"}}]</c>, arguments a JSON-object string or an object) and null content; a <c>tool</c> message is a
/// result, <c>tool_call_id</c> naming an earlier call. <c>tools</c> is <c>[{"type": "function", "function": {"name",
/// "description", "parameters"}}]</c>. Every malformed conversation is an <see cref="InvalidDataException"/> naming
/// the file, the line and the field (e.g. <c>chat.jsonl:7: messages[2].tool_calls[0].function.arguments: ...</c>).
/// </summary>
public static class ChatData
{
    public static IEnumerable<ChatExample> Read(string file)
    {
        using var reader = TextCorpus.OpenText(file);
        int line = 0;
        string? l;
        while ((l = reader.ReadLine()) is not null)
        {
            line++;
            if (string.IsNullOrWhiteSpace(l)) continue;
            JsonElement root;
            try
            {
                using var d = JsonDocument.Parse(l);
                root = d.RootElement.Clone();
            }
            catch (JsonException e) { throw new InvalidDataException($"{file}:{line}: invalid JSON ({e.Message})"); }
            yield return Parse(root, file, line);
        }
    }

    /// <summary>Parses one conversation object; errors name <paramref name="file"/>:<paramref name="line"/> and the field.</summary>
    public static ChatExample Parse(JsonElement root, string file, int line, bool requireAssistant = true)
    {
        Exception Bad(string field, string what) => new InvalidDataException($"{file}:{line}: {field}: {what}");
        if (root.ValueKind != JsonValueKind.Object) throw Bad("(line)", "not a JSON object");
        var tools = new List<ToolDefinition>();
        if (root.TryGetProperty("tools", out var ts) && ts.ValueKind != JsonValueKind.Null)
        {
            if (ts.ValueKind != JsonValueKind.Array) throw Bad("tools", "must be an array");
            int i = 0;
            foreach (var t in ts.EnumerateArray())
            {
                string p = $"tools[{i++}]";
                if (t.ValueKind != JsonValueKind.Object) throw Bad(p, "must be an object");
                if (t.TryGetProperty("type", out var ty) && (ty.ValueKind != JsonValueKind.String || ty.GetString() != "function"))
                    throw Bad(p + ".type", "only \"function\" tools are supported");
                if (!t.TryGetProperty("function", out var f) || f.ValueKind != JsonValueKind.Object) throw Bad(p + ".function", "missing or not an object");
                string name = Str(f, "name", p + ".function.name", Bad) ?? throw Bad(p + ".function.name", "missing");
                if (name.Length == 0) throw Bad(p + ".function.name", "is empty");
                string? desc = Str(f, "description", p + ".function.description", Bad);
                string parameters = "{}";
                if (f.TryGetProperty("parameters", out var ps) && ps.ValueKind != JsonValueKind.Null)
                {
                    if (ps.ValueKind != JsonValueKind.Object) throw Bad(p + ".function.parameters", "must be a JSON schema object");
                    parameters = ps.GetRawText();
                }
                if (tools.Any(x => x.Name == name)) throw Bad(p + ".function.name", $"'{name}' is defined twice");
                tools.Add(new ToolDefinition(name, desc, parameters));
            }
        }
        if (!root.TryGetProperty("messages", out var ms)) throw Bad("messages", "missing");
        if (ms.ValueKind != JsonValueKind.Array) throw Bad("messages", "must be an array");
        var turns = new List<ChatTurn>();
        var callIds = new HashSet<string>();
        int k = 0;
        foreach (var m in ms.EnumerateArray())
        {
            string p = $"messages[{k++}]";
            if (m.ValueKind != JsonValueKind.Object) throw Bad(p, "must be an object");
            string role = Str(m, "role", p + ".role", Bad) ?? throw Bad(p + ".role", "missing");
            string? content = Str(m, "content", p + ".content", Bad);
            switch (role)
            {
                case ChatTurn.System or ChatTurn.User:
                    turns.Add(new ChatTurn(role, content ?? throw Bad(p + ".content", "missing")));
                    break;
                case ChatTurn.Tool:
                {
                    string? id = Str(m, "tool_call_id", p + ".tool_call_id", Bad);
                    if (id is not null && !callIds.Contains(id)) throw Bad(p + ".tool_call_id", $"'{id}' answers no earlier tool call");
                    if (turns.Count == 0 || (turns[^1].Role != ChatTurn.Tool && turns[^1].ToolCalls.Count == 0))
                        throw Bad(p + ".role", "a tool result must follow an assistant message with tool_calls");
                    turns.Add(new ChatTurn(role, content ?? throw Bad(p + ".content", "missing")) { ToolCallId = id });
                    break;
                }
                case ChatTurn.Assistant:
                {
                    var calls = new List<ToolCall>();
                    if (m.TryGetProperty("tool_calls", out var tc) && tc.ValueKind != JsonValueKind.Null)
                    {
                        if (tc.ValueKind != JsonValueKind.Array) throw Bad(p + ".tool_calls", "must be an array");
                        int j = 0;
                        foreach (var c in tc.EnumerateArray())
                        {
                            string q = $"{p}.tool_calls[{j++}]";
                            calls.Add(ParseCall(c, q, tools, Bad));
                            callIds.Add(calls[^1].Id);
                        }
                    }
                    if (content is null && calls.Count == 0) throw Bad(p + ".content", "missing (an assistant message needs content or tool_calls)");
                    turns.Add(new ChatTurn(role, content ?? "") { ToolCalls = calls });
                    break;
                }
                default:
                    throw Bad(p + ".role", $"'{role}' is not system, user, assistant or tool");
            }
        }
        if (requireAssistant && !turns.Any(t => t.Role == ChatTurn.Assistant))
            throw Bad("messages", "no assistant message: nothing to train on");
        return new ChatExample(turns, tools, line, root);
    }

    /// <summary>One OpenAI tool call object; <paramref name="tools"/> (when not empty) must define its function.</summary>
    public static ToolCall ParseCall(JsonElement c, string q, IReadOnlyList<ToolDefinition> tools, Func<string, string, Exception> bad)
    {
        if (c.ValueKind != JsonValueKind.Object) throw bad(q, "must be an object");
        if (c.TryGetProperty("type", out var ty) && (ty.ValueKind != JsonValueKind.String || ty.GetString() != "function"))
            throw bad(q + ".type", "only \"function\" calls are supported");
        string id = Str(c, "id", q + ".id", bad) ?? q;
        if (!c.TryGetProperty("function", out var f) || f.ValueKind != JsonValueKind.Object) throw bad(q + ".function", "missing or not an object");
        string name = Str(f, "name", q + ".function.name", bad) ?? throw bad(q + ".function.name", "missing");
        if (tools.Count > 0 && !tools.Any(t => t.Name == name)) throw bad(q + ".function.name", $"'{name}' is not one of the conversation's tools");
        string args;
        if (!f.TryGetProperty("arguments", out var a) || a.ValueKind == JsonValueKind.Null) args = "{}";
        else if (a.ValueKind == JsonValueKind.Object) args = a.GetRawText();
        else if (a.ValueKind == JsonValueKind.String)
        {
            args = a.GetString()!;
            try
            {
                using var d = JsonDocument.Parse(args);
                if (d.RootElement.ValueKind != JsonValueKind.Object) throw bad(q + ".function.arguments", "must be a JSON object");
            }
            catch (JsonException e) { throw bad(q + ".function.arguments", $"not valid JSON ({e.Message})"); }
        }
        else throw bad(q + ".function.arguments", "must be a JSON object or a string holding one");
        return new ToolCall(id, name, args);
    }

    static string? Str(JsonElement o, string name, string field, Func<string, string, Exception> bad)
    {
        if (!o.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind == JsonValueKind.String ? v.GetString() : throw bad(field, "must be a string");
    }
}
