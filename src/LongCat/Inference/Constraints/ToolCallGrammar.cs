using System.Text.Json;

namespace LongCat.Inference.Constraints;

/// <summary>A tool the model may call: its name and the JSON schema of its arguments (null = any object).</summary>
public sealed record ToolGrammarSpec(string Name, JsonElement? Parameters);

/// <summary>
/// The grammar of LongCat-Flash tool calls, for <c>tool_choice</c> "required" or a named function: exactly
/// <code>
/// &lt;longcat_tool_call&gt;
/// {"name": "NAME", "arguments": ARGS}
/// &lt;/longcat_tool_call&gt;
/// </code>
/// where NAME is one of the offered tools and ARGS an object valid for that tool's parameters schema (compiled by
/// <see cref="JsonSchemaCompiler"/>, strict: a missing additionalProperties means false). With
/// <c>parallel</c>, up to <see cref="MaxParallelCalls"/> calls follow one another separated by <c>separator</c>
/// ("\n" by default: it must match how ChatFormat renders back-to-back calls); then the end token. The fixed text is byte-exact (the spacing of the model card's example).
/// </summary>
public static class ToolCallGrammar
{
    public const string OpenTag = "<longcat_tool_call>", CloseTag = "</longcat_tool_call>";
    /// <summary>Calls in a row when parallel tool calls are allowed.</summary>
    public const int MaxParallelCalls = 8;

    /// <summary>
    /// The grammar over <paramref name="vocabulary"/>: one call of one of <paramref name="tools"/> (only
    /// <paramref name="requiredName"/> when given), or 1..<see cref="MaxParallelCalls"/> calls when
    /// <paramref name="parallel"/>. Throws <see cref="ArgumentException"/> for an empty tool list, an unknown or
    /// duplicate name, and <see cref="UnsupportedSchemaException"/> (Path starts with "tools[i]") for a parameters
    /// schema it cannot honour.
    /// </summary>
    public static JsonGrammar For(TokenVocabulary vocabulary, IReadOnlyList<ToolGrammarSpec> tools, string? requiredName = null, bool parallel = false,
        string separator = "\n") =>
        new(vocabulary, Node(tools, requiredName, parallel, separator));

    /// <summary>The grammar node alone (to combine with others).</summary>
    public static GrammarNode Node(IReadOnlyList<ToolGrammarSpec> tools, string? requiredName = null, bool parallel = false, string separator = "\n")
    {
        if (tools.Count == 0) throw new ArgumentException("tool calls need at least one tool");
        var dup = tools.GroupBy(t => t.Name).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new ArgumentException($"tool '{dup.Key}' is offered twice");
        if (requiredName is not null && tools.All(t => t.Name != requiredName))
            throw new ArgumentException($"tool_choice names '{requiredName}', which is not among the tools ({string.Join(", ", tools.Select(t => t.Name))})");
        var calls = new List<GrammarNode>();
        for (int i = 0; i < tools.Count; i++)
        {
            var t = tools[i];
            if (requiredName is not null && t.Name != requiredName) continue;
            if (string.IsNullOrEmpty(t.Name)) throw new ArgumentException($"tools[{i}] has no name");
            GrammarNode args;
            try
            {
                args = t.Parameters is { } p ? JsonSchemaCompiler.Compile(p, strict: true) : JsonSchemaCompiler.AnyObject;
                // Arguments are always an object: of a schema that allows several types, keep the objects.
                var objects = new List<ObjectNode>();
                Objects(args, objects);
                if (objects.Count == 0) throw new UnsupportedSchemaException("type", "$", "the parameters must allow an object");
                args = objects.Count == 1 ? objects[0] : new AnyOfNode([.. objects]);
            }
            catch (UnsupportedSchemaException e)
            {
                throw new UnsupportedSchemaException(e.Keyword, $"tools[{i}].function.parameters{e.Path[1..]}", $"tools[{i}] ({t.Name}): {e.Message}");
            }
            string head = $"{OpenTag}\n{{\"name\": {JsonSerializer.Serialize(t.Name, NameJson)}, \"arguments\": ";
            calls.Add(new SeqNode([LiteralNode.Of(head), args, LiteralNode.Of($"}}\n{CloseTag}")]));
        }
        GrammarNode call = calls.Count == 1 ? calls[0] : new AnyOfNode([.. calls]);
        return parallel ? new RepeatNode(call, separator, 1, MaxParallelCalls) : call;
    }

    static void Objects(GrammarNode n, List<ObjectNode> into)
    {
        if (n is ObjectNode o) into.Add(o);
        else if (n is AnyOfNode a) foreach (var x in a.Options) Objects(x, into);
    }

    static readonly JsonSerializerOptions NameJson = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
}
