using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.Extensions.AI;

namespace LongCat.Inference.Constraints;

/// <summary>
/// <see cref="ChatOptions.ResponseFormat"/> as constrained decoding: <see cref="ChatResponseFormat.Text"/> (or none)
/// leaves decoding free, <see cref="ChatResponseFormat.Json"/> allows any JSON object, a
/// <see cref="ChatResponseFormatJson"/> with a schema allows the values of that schema (strict when
/// AdditionalProperties["strictJsonSchema"] is true, Microsoft.Extensions.AI.OpenAI's key). Compiled grammars are
/// kept per vocabulary and schema, so the masks a request computed serve the next request with the same schema.
/// </summary>
public static class StructuredOutput
{
    /// <summary>The ChatOptions.AdditionalProperties key of OpenAI's json_schema.strict.</summary>
    public const string StrictKey = "strictJsonSchema";
    const int MaxCachedGrammars = 64;
    static readonly ConcurrentDictionary<(TokenVocabulary, string, bool), JsonGrammar> Grammars = new();

    /// <summary>
    /// The constraint factory for a request's response format, or null for free text. Throws
    /// <see cref="UnsupportedSchemaException"/> naming a keyword the grammar cannot honour.
    /// </summary>
    public static Func<ITokenConstraint>? For(ChatOptions? options, TextGenerator generator)
    {
        if (options?.ResponseFormat is not ChatResponseFormatJson json) return null;
        bool strict = options.AdditionalProperties?.TryGetValue(StrictKey, out var s) == true && s is true or JsonElement { ValueKind: JsonValueKind.True };
        return Grammar(Vocabulary(generator), json.Schema, strict).Start;
    }

    /// <summary>The vocabulary of a generator's tokenizer, with its stop tokens as the end tokens.</summary>
    public static TokenVocabulary Vocabulary(TextGenerator generator) =>
        TokenVocabulary.For(generator.Tokenizer, generator.Scheduler.Model.Config.VocabSize, generator.StopTokenIds);

    /// <summary>The (cached) grammar of a schema; null schema = any JSON object.</summary>
    public static JsonGrammar Grammar(TokenVocabulary vocabulary, JsonElement? schema, bool strict)
    {
        string key = schema?.GetRawText() ?? "";
        if (Grammars.TryGetValue((vocabulary, key, strict), out var g)) return g;
        g = schema is { } s ? JsonGrammar.ForSchema(vocabulary, s, strict) : JsonGrammar.ForJsonObject(vocabulary);
        if (Grammars.Count >= MaxCachedGrammars) Grammars.Clear();
        return Grammars.GetOrAdd((vocabulary, key, strict), g);
    }
}
