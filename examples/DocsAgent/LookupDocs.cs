using System.Globalization;
using System.Text.Json;
using LongCat.Inference;
using LongCat.Tokenization;
using Microsoft.Extensions.AI;

namespace LongCat.Examples.DocsAgent;

/// <summary>
/// The agent: one question to an <see cref="IChatClient"/> wrapped in <see cref="FunctionInvokingChatClient"/>, with one
/// tool, <c>lookup_docs(name)</c>, answered from a <see cref="PydocIndex"/>. The client calls the tool when the model asks
/// for it, sends the result back and returns when the model answers.
/// </summary>
public static class LookupDocs
{
    /// <summary>The tool as the chat model was trained with it (scripts/pydoc_chat.py: <c>TOOL</c>): name, description and
    /// parameter schema, text for text, since the tool description is part of the prompt's tokens.</summary>
    public const string Name = "lookup_docs";
    public const string Description = "Returns the documentation of a Python module, function, class or method.";
    public const string Schema = """{"type": "object", "properties": {"name": {"type": "string", "description": "dotted Python name, e.g. json.dumps"}}, "required": ["name"]}""";

    /// <summary>How many times the model may call the tool for one question before it must answer.</summary>
    public const int MaxToolRounds = 3;

    /// <summary>The <c>lookup_docs</c> function over <paramref name="index"/>.</summary>
    public static AIFunction Tool(PydocIndex index) =>
        new WithSchema(AIFunctionFactory.Create((string name) => index.Lookup(name), Name, Description), Schema);

    /// <summary>A function whose JSON schema is the given text (the generated one would word the prompt differently).</summary>
    sealed class WithSchema(AIFunction inner, string schema) : DelegatingAIFunction(inner)
    {
        readonly JsonElement _schema = JsonDocument.Parse(schema).RootElement.Clone();
        public override JsonElement JsonSchema => _schema;
    }

    /// <summary>Asks <paramref name="question"/> (greedy decoding, at most <paramref name="maxTokens"/> per reply); the
    /// response holds the tool calls, their results and the answer, in order.</summary>
    public static Task<ChatResponse> AskAsync(IChatClient model, PydocIndex index, string question, int maxTokens, CancellationToken ct = default)
    {
        var agent = new FunctionInvokingChatClient(model) { MaximumIterationsPerRequest = MaxToolRounds };
        var options = new ChatOptions { Tools = [Tool(index)], Temperature = 0, MaxOutputTokens = maxTokens };
        return agent.GetResponseAsync([new ChatMessage(ChatRole.User, question)], options, ct);
    }

    /// <summary>Writes the tool calls, their results (shortened) and the final answer, one line each.</summary>
    public static void Print(ChatResponse response, TextWriter o)
    {
        bool called = false;
        foreach (var c in response.Messages.SelectMany(m => m.Contents))
        {
            switch (c)
            {
                case FunctionCallContent f:
                    called = true;
                    o.WriteLine($"tool call:   {f.Name}({PythonJson.Dumps(ToolCalls.FromContent(f).Arguments, indent: null)})");
                    break;
                case FunctionResultContent r:
                    o.WriteLine($"tool result: {Shorten(ToolCalls.ResultText(r), 160)}");
                    break;
            }
        }
        if (!called) o.WriteLine("tool call:   (none: the model answered without looking anything up)");
        var last = response.Messages.LastOrDefault();
        string answer = last is not null && last.Role == ChatRole.Assistant && !last.Contents.OfType<FunctionCallContent>().Any() ? last.Text.Trim() : "";
        o.WriteLine($"answer:      {(answer.Length > 0 ? answer : $"(none: no answer after {MaxToolRounds} tool rounds or an empty reply)")}");
    }

    /// <summary>The first <paramref name="max"/> characters of <paramref name="s"/>, then "…" and its full length.</summary>
    public static string Shorten(string s, int max)
    {
        if (s.Length <= max) return s;
        if (char.IsHighSurrogate(s[max - 1])) max--;   // never half a character
        return $"{s[..max].TrimEnd()}… ({s.Length.ToString("N0", CultureInfo.InvariantCulture)} characters)";
    }
}
