using System.Text.Json;
using LongCat.Tokenization;
using Microsoft.Extensions.AI;

namespace LongCat.Inference;

/// <summary>
/// Microsoft.Extensions.AI's messages and tools to and from the chat format's turns and tool calls:
/// <see cref="AIFunctionDeclaration"/> → <see cref="ToolDefinition"/>, <see cref="FunctionCallContent"/> ↔
/// <see cref="ToolCall"/>, <see cref="FunctionResultContent"/> → a tool turn.
/// </summary>
public static class ToolCalls
{
    /// <summary>The function tools of a request; throws <see cref="ArgumentException"/> for other kinds of tool.</summary>
    public static List<ToolDefinition> Definitions(IList<AITool>? tools)
    {
        var list = new List<ToolDefinition>();
        if (tools is null) return list;
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in tools)
        {
            if (t is not AIFunctionDeclaration f)
                throw new ArgumentException($"tools: '{t.Name}' is a {t.GetType().Name}; only function tools are supported");
            if (string.IsNullOrEmpty(f.Name)) throw new ArgumentException("tools: a function needs a name");
            if (!names.Add(f.Name)) throw new ArgumentException($"tools: the function name '{f.Name}' is given twice");
            var schema = f.JsonSchema;
            string parameters = schema.ValueKind == JsonValueKind.Object ? schema.GetRawText() : "{}";
            list.Add(new ToolDefinition(f.Name, f.Description, parameters));
        }
        return list;
    }

    /// <summary>A parsed call as the content Microsoft.Extensions.AI expects (arguments as JSON elements).</summary>
    public static FunctionCallContent ToContent(ToolCall call)
    {
        var args = new Dictionary<string, object?>(StringComparer.Ordinal);
        using (var d = JsonDocument.Parse(call.Arguments))
            foreach (var p in d.RootElement.EnumerateObject()) args[p.Name] = p.Value.Clone();
        return new FunctionCallContent(call.Id, call.Name, args) { RawRepresentation = call };
    }

    /// <summary>A call the caller sends back in an assistant message, as the chat format renders it.</summary>
    public static ToolCall FromContent(FunctionCallContent f)
    {
        if (f.RawRepresentation is ToolCall t && t.Name == f.Name && t.Id == f.CallId) return t;
        var args = JsonSerializer.Serialize(f.Arguments ?? new Dictionary<string, object?>(), AIJsonUtilities.DefaultOptions);
        return new ToolCall(f.CallId, f.Name, args);
    }

    /// <summary>A tool's result as the text the model reads: strings as they are, anything else as JSON.</summary>
    public static string ResultText(FunctionResultContent r) => r.Result switch
    {
        null => r.Exception is { } e ? "Error: " + e.Message : "",
        string s => s,
        JsonElement { ValueKind: JsonValueKind.String } e => e.GetString()!,
        JsonElement e => e.GetRawText(),
        TextContent t => t.Text,
        var o => JsonSerializer.Serialize(o, AIJsonUtilities.DefaultOptions),
    };

    /// <summary>
    /// The turns of a conversation: consecutive system or user messages are one turn (OpenAI clients often send
    /// several parts), an assistant message's function calls follow its text, every function result is a tool turn.
    /// Throws <see cref="ArgumentException"/> naming the message that cannot be rendered.
    /// </summary>
    public static List<ChatTurn> Turns(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        var turns = new List<ChatTurn>();
        if (!string.IsNullOrEmpty(options?.Instructions)) turns.Add(new ChatTurn(ChatTurn.System, options.Instructions));
        int index = 0;
        foreach (var m in messages)
        {
            string role = m.Role == ChatRole.System ? ChatTurn.System
                : m.Role == ChatRole.User ? ChatTurn.User
                : m.Role == ChatRole.Assistant ? ChatTurn.Assistant
                : m.Role == ChatRole.Tool ? ChatTurn.Tool
                : throw new ArgumentException($"messages[{index}]: role '{m.Role}' is not supported (system, user, assistant, tool)");
            if (role == ChatTurn.Tool)
            {
                foreach (var c in m.Contents)
                {
                    if (c is FunctionResultContent r) turns.Add(new ChatTurn(ChatTurn.Tool, ResultText(r)) { ToolCallId = r.CallId });
                    else if (c is TextContent t) turns.Add(new ChatTurn(ChatTurn.Tool, t.Text));
                    else throw new ArgumentException($"messages[{index}]: a tool message holds function results or text, got {c.GetType().Name}");
                }
                index++;
                continue;
            }
            var text = new System.Text.StringBuilder();
            var calls = new List<ToolCall>();
            foreach (var c in m.Contents)
            {
                switch (c)
                {
                    case TextContent t: text.Append(t.Text); break;
                    case FunctionCallContent f when role == ChatTurn.Assistant: calls.Add(FromContent(f)); break;
                    case TextReasoningContent when role == ChatTurn.Assistant: break; // earlier reasoning is not shown again
                    case UsageContent: break;
                    default: throw new ArgumentException($"messages[{index}]: {c.GetType().Name} is not supported in a {role} message");
                }
            }
            // Consecutive messages of one role are one turn.
            if (turns.Count > 0 && turns[^1].Role == role && role != ChatTurn.Tool)
                turns[^1] = turns[^1] with
                {
                    Content = turns[^1].Content + "\n" + text,
                    ToolCalls = [.. turns[^1].ToolCalls, .. calls],
                };
            else turns.Add(new ChatTurn(role, text.ToString()) { ToolCalls = calls });
            index++;
        }
        if (turns.Count == 0 || turns.All(t => t.Role == ChatTurn.System)) throw new ArgumentException("messages must include at least one user or assistant message");
        // Order (ChatFormat): system messages anywhere join the system prompt, an assistant greeting first gets an
        // empty user turn, a final assistant message is a prefix the reply continues.
        return turns;
    }
}
