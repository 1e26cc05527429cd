using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using LongCat.Tokenization;
using Microsoft.Extensions.AI;

namespace LongCat.Server;

/// <summary>
/// OpenAI's tool calling on the wire: <c>tools</c>, <c>tool_choice</c>, <c>parallel_tool_calls</c>, assistant
/// messages with <c>tool_calls</c> and <c>role: "tool"</c> messages in requests; <c>message.tool_calls</c>,
/// <c>reasoning_content</c> and their streaming deltas in responses. The model side (format, parsing) is
/// <see cref="LongCat.Inference.LongCatChatClient"/>'s.
/// </summary>
public static partial class OpenAITools
{
    [GeneratedRegex("^[a-zA-Z0-9_-]{1,64}$")]
    private static partial Regex FunctionName();

    /// <summary>Reads tools, tool_choice, parallel_tool_calls and think_on of a chat request into <paramref name="o"/>.</summary>
    public static void Parse(JsonElement root, ChatOptions o)
    {
        if (root.TryGetProperty("tools", out var tools) && tools.ValueKind != JsonValueKind.Null)
        {
            if (tools.ValueKind != JsonValueKind.Array) throw ApiException.BadParam("tools", "'tools' must be an array");
            if (tools.GetArrayLength() > 128) throw ApiException.BadParam("tools", "'tools' has more than 128 entries");
            var list = new List<AITool>();
            var names = new HashSet<string>(StringComparer.Ordinal);
            int i = 0;
            foreach (var t in tools.EnumerateArray())
            {
                string p = $"tools[{i++}]";
                if (t.ValueKind != JsonValueKind.Object) throw ApiException.BadParam(p, $"'{p}' must be an object");
                string type = t.TryGetProperty("type", out var ty) && ty.ValueKind == JsonValueKind.String ? ty.GetString()! : "";
                if (type != "function") throw ApiException.BadParam(p + ".type", $"'{p}.type' = '{type}' is not supported: only \"function\"");
                if (!t.TryGetProperty("function", out var f) || f.ValueKind != JsonValueKind.Object) throw ApiException.BadParam(p + ".function", $"'{p}.function' must be an object");
                string name = f.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString()! : "";
                if (!FunctionName().IsMatch(name)) throw ApiException.BadParam(p + ".function.name", $"'{p}.function.name' must be 1 to 64 letters, digits, '_' or '-'");
                if (!names.Add(name)) throw ApiException.BadParam(p + ".function.name", $"the function name '{name}' is given twice");
                string? description = null;
                if (f.TryGetProperty("description", out var d) && d.ValueKind != JsonValueKind.Null)
                    description = d.ValueKind == JsonValueKind.String ? d.GetString() : throw ApiException.BadParam(p + ".function.description", $"'{p}.function.description' must be a string");
                JsonElement schema = EmptySchema;
                if (f.TryGetProperty("parameters", out var ps) && ps.ValueKind != JsonValueKind.Null)
                    schema = ps.ValueKind == JsonValueKind.Object ? ps.Clone() : throw ApiException.BadParam(p + ".function.parameters", $"'{p}.function.parameters' must be a JSON schema object");
                if (f.TryGetProperty("strict", out var st) && st.ValueKind is not (JsonValueKind.True or JsonValueKind.False or JsonValueKind.Null))
                    throw ApiException.BadParam(p + ".function.strict", $"'{p}.function.strict' must be true or false");
                list.Add(AIFunctionFactory.CreateDeclaration(name, description, schema));
            }
            if (list.Count > 0) o.Tools = list;
        }
        if (root.TryGetProperty("tool_choice", out var tc) && tc.ValueKind != JsonValueKind.Null)
        {
            o.ToolMode = tc.ValueKind switch
            {
                JsonValueKind.String => tc.GetString() switch
                {
                    "none" => ChatToolMode.None,
                    "auto" => ChatToolMode.Auto,
                    "required" => ChatToolMode.RequireAny,
                    var s => throw ApiException.BadParam("tool_choice", $"tool_choice = '{s}' is invalid: none, auto, required or {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}"),
                },
                JsonValueKind.Object when tc.TryGetProperty("function", out var fn) && fn.ValueKind == JsonValueKind.Object
                    && fn.TryGetProperty("name", out var fnn) && fnn.ValueKind == JsonValueKind.String
                    => ChatToolMode.RequireSpecific(fnn.GetString()!),
                _ => throw ApiException.BadParam("tool_choice", "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}"),
            };
            if (o.ToolMode is RequiredChatToolMode r)
            {
                if (o.Tools is not { Count: > 0 }) throw ApiException.BadParam("tool_choice", "tool_choice requires a call but no 'tools' were given");
                if (r.RequiredFunctionName is { } want && o.Tools.All(t => t.Name != want))
                    throw ApiException.BadParam("tool_choice", $"tool_choice names the function '{want}', which is not among the tools");
            }
        }
        if (root.TryGetProperty("parallel_tool_calls", out var ptc) && ptc.ValueKind != JsonValueKind.Null)
            o.AllowMultipleToolCalls = ptc.ValueKind is JsonValueKind.True or JsonValueKind.False ? ptc.GetBoolean()
                : throw ApiException.BadParam("parallel_tool_calls", "'parallel_tool_calls' must be true or false");
        if (root.TryGetProperty("think_on", out var th) && th.ValueKind != JsonValueKind.Null)
            (o.AdditionalProperties ??= [])["think_on"] = th.ValueKind is JsonValueKind.True or JsonValueKind.False ? th.GetBoolean()
                : throw ApiException.BadParam("think_on", "'think_on' must be true or false");
    }

    static readonly JsonElement EmptySchema = JsonDocument.Parse("{\"type\": \"object\", \"properties\": {}}").RootElement.Clone();

    /// <summary>
    /// One request message as Microsoft.Extensions.AI's: an assistant's <c>tool_calls</c> become
    /// <see cref="FunctionCallContent"/> (arguments must be a JSON object in a string), a tool message a
    /// <see cref="FunctionResultContent"/> of its <c>tool_call_id</c>.
    /// </summary>
    public static ChatMessage Message(JsonElement m, string p, ChatRole role, string content)
    {
        if (role == ChatRole.Tool)
        {
            string callId = m.TryGetProperty("tool_call_id", out var id) && id.ValueKind == JsonValueKind.String ? id.GetString()!
                : throw ApiException.BadParam(p + ".tool_call_id", $"'{p}.tool_call_id' is required for a tool message");
            return new ChatMessage(ChatRole.Tool, [new FunctionResultContent(callId, content)]);
        }
        if (role != ChatRole.Assistant || !m.TryGetProperty("tool_calls", out var calls) || calls.ValueKind == JsonValueKind.Null)
            return new ChatMessage(role, content);
        if (calls.ValueKind != JsonValueKind.Array) throw ApiException.BadParam(p + ".tool_calls", $"'{p}.tool_calls' must be an array");
        var contents = new List<AIContent>();
        if (content.Length > 0) contents.Add(new TextContent(content));
        int i = 0;
        foreach (var c in calls.EnumerateArray())
        {
            string q = $"{p}.tool_calls[{i++}]";
            if (c.ValueKind != JsonValueKind.Object) throw ApiException.BadParam(q, $"'{q}' must be an object");
            string callId = c.TryGetProperty("id", out var id) && id.ValueKind == JsonValueKind.String ? id.GetString()! : throw ApiException.BadParam(q + ".id", $"'{q}.id' must be a string");
            if (c.TryGetProperty("type", out var ty) && ty.ValueKind != JsonValueKind.Null && !(ty.ValueKind == JsonValueKind.String && ty.GetString() == "function"))
                throw ApiException.BadParam(q + ".type", $"'{q}.type' must be \"function\"");
            if (!c.TryGetProperty("function", out var f) || f.ValueKind != JsonValueKind.Object) throw ApiException.BadParam(q + ".function", $"'{q}.function' must be an object");
            string name = f.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String && n.GetString()!.Length > 0 ? n.GetString()!
                : throw ApiException.BadParam(q + ".function.name", $"'{q}.function.name' must be a string");
            string args = f.TryGetProperty("arguments", out var a) && a.ValueKind == JsonValueKind.String ? a.GetString()!
                : throw ApiException.BadParam(q + ".function.arguments", $"'{q}.function.arguments' must be a string holding a JSON object");
            JsonNode? parsed;
            try { parsed = JsonNode.Parse(args.Length == 0 ? "{}" : args); }
            catch (Exception e) when (e is JsonException or ArgumentException) { parsed = null; }
            if (parsed is not JsonObject) throw ApiException.BadParam(q + ".function.arguments", $"'{q}.function.arguments' is not a JSON object");
            var call = new ToolCall(callId, name, parsed.ToJsonString());
            contents.Add(LongCat.Inference.ToolCalls.ToContent(call));
        }
        return new ChatMessage(ChatRole.Assistant, contents);
    }

    // ------------------------------------------------------------------ responses

    /// <summary>The pieces of a whole (non-streamed) reply, gathered from the client's updates.</summary>
    public sealed class Reply
    {
        readonly StringBuilder _text = new(), _reasoning = new();
        readonly List<FunctionCallContent> _calls = [];

        public void Add(ChatResponseUpdate u)
        {
            foreach (var c in u.Contents)
                switch (c)
                {
                    case TextContent t: _text.Append(t.Text); break;
                    case TextReasoningContent r: _reasoning.Append(r.Text); break;
                    case FunctionCallContent f: _calls.Add(f); break;
                }
        }

        /// <summary>The choice's message: content (null when the reply is only tool calls), reasoning_content, tool_calls.</summary>
        public JsonObject Message()
        {
            var m = new JsonObject
            {
                ["role"] = "assistant",
                ["content"] = _calls.Count > 0 && _text.Length == 0 ? null : _text.ToString(),
                ["refusal"] = null,
            };
            if (_reasoning.Length > 0) m["reasoning_content"] = _reasoning.ToString();
            if (_calls.Count > 0) m["tool_calls"] = new JsonArray([.. _calls.Select(Call)]);
            return m;
        }
    }

    static JsonObject Call(FunctionCallContent f) => new()
    {
        ["id"] = f.CallId,
        ["type"] = "function",
        ["function"] = new JsonObject { ["name"] = f.Name, ["arguments"] = Arguments(f) },
    };

    static string Arguments(FunctionCallContent f) => LongCat.Inference.ToolCalls.FromContent(f).Arguments;

    /// <summary>Numbers the tool calls of one streamed reply (OpenAI's <c>tool_calls[i].index</c>).</summary>
    public sealed class StreamState
    {
        public int Calls { get; set; }
    }

    /// <summary>
    /// The streaming deltas of one update: <c>content</c>, <c>reasoning_content</c>, and per tool call a delta with
    /// its index, id, type, name and empty arguments followed by one with the arguments' JSON (a call is sent once
    /// it is complete and valid, so its arguments come as one fragment).
    /// </summary>
    public static IEnumerable<JsonObject> Deltas(ChatResponseUpdate u, StreamState state)
    {
        foreach (var c in u.Contents)
        {
            switch (c)
            {
                case TextContent t when t.Text.Length > 0:
                    yield return new JsonObject { ["content"] = t.Text };
                    break;
                case TextReasoningContent r when r.Text.Length > 0:
                    yield return new JsonObject { ["reasoning_content"] = r.Text };
                    break;
                case FunctionCallContent f:
                    int index = state.Calls++;
                    yield return new JsonObject
                    {
                        ["tool_calls"] = new JsonArray(new JsonObject
                        {
                            ["index"] = index,
                            ["id"] = f.CallId,
                            ["type"] = "function",
                            ["function"] = new JsonObject { ["name"] = f.Name, ["arguments"] = "" },
                        }),
                    };
                    yield return new JsonObject
                    {
                        ["tool_calls"] = new JsonArray(new JsonObject { ["index"] = index, ["function"] = new JsonObject { ["arguments"] = Arguments(f) } }),
                    };
                    break;
            }
        }
    }
}
