using System.Text.Json;
using LongCat.Inference.Constraints;
using Microsoft.Extensions.AI;

namespace LongCat.Server;

/// <summary>
/// OpenAI's <c>response_format</c> on chat completions: <c>{"type": "text"}</c>, <c>{"type": "json_object"}</c> or
/// <c>{"type": "json_schema", "json_schema": {"name", "description"?, "schema", "strict"?}}</c>, enforced by
/// constrained decoding (<see cref="StructuredOutput"/>). The schema is compiled here so that a keyword the grammar
/// cannot honour is a 400 naming <c>response_format.json_schema.schema</c> and the keyword, before anything runs.
/// </summary>
static class ResponseFormat
{
    const string Param = "response_format";

    /// <summary>Sets <see cref="ChatOptions.ResponseFormat"/> (and the strict flag) from the request body.</summary>
    public static void Parse(JsonElement root, ChatOptions options)
    {
        if (!root.TryGetProperty(Param, out var rf) || rf.ValueKind == JsonValueKind.Null) return;
        if (rf.ValueKind != JsonValueKind.Object || !rf.TryGetProperty("type", out var t) || t.ValueKind != JsonValueKind.String)
            throw ApiException.BadParam(Param, "'response_format' must be an object with a string 'type': text, json_object or json_schema");
        switch (t.GetString())
        {
            case "text":
                options.ResponseFormat = ChatResponseFormat.Text;
                return;
            case "json_object":
                options.ResponseFormat = ChatResponseFormat.Json;
                return;
            case "json_schema":
                break;
            default:
                throw ApiException.BadParam(Param + ".type", $"response_format.type '{t.GetString()}' is not supported: text, json_object or json_schema");
        }
        const string p = Param + ".json_schema";
        if (!rf.TryGetProperty("json_schema", out var js) || js.ValueKind != JsonValueKind.Object)
            throw ApiException.BadParam(p, "'response_format.json_schema' must be an object with 'name' and 'schema'");
        string name = js.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString()! : throw ApiException.BadParam(p + ".name", "'response_format.json_schema.name' must be a string");
        if (name.Length is 0 or > 64 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-'))
            throw ApiException.BadParam(p + ".name", "'response_format.json_schema.name' must be 1..64 characters a-z, A-Z, 0-9, _ or -");
        string? description = js.TryGetProperty("description", out var d) && d.ValueKind != JsonValueKind.Null
            ? d.ValueKind == JsonValueKind.String ? d.GetString() : throw ApiException.BadParam(p + ".description", "'response_format.json_schema.description' must be a string")
            : null;
        bool strict = false;
        if (js.TryGetProperty("strict", out var st) && st.ValueKind != JsonValueKind.Null)
            strict = st.ValueKind is JsonValueKind.True or JsonValueKind.False ? st.GetBoolean() : throw ApiException.BadParam(p + ".strict", "'response_format.json_schema.strict' must be true or false");
        if (!js.TryGetProperty("schema", out var schema) || schema.ValueKind != JsonValueKind.Object)
            throw ApiException.BadParam(p + ".schema", "'response_format.json_schema.schema' must be a JSON schema object");
        try
        {
            JsonSchemaCompiler.Compile(schema, strict);
        }
        catch (UnsupportedSchemaException e)
        {
            throw ApiException.BadParam(p + ".schema", $"response_format.json_schema.schema: {e.Message}");
        }
        options.ResponseFormat = ChatResponseFormat.ForJsonSchema(schema.Clone(), name, description);
        (options.AdditionalProperties ??= [])[StructuredOutput.StrictKey] = strict;
    }

    /// <summary>Legacy completions have no response_format: refused by name rather than ignored.</summary>
    public static void Refuse(JsonElement root)
    {
        if (root.TryGetProperty(Param, out var rf) && rf.ValueKind != JsonValueKind.Null)
            throw ApiException.BadParam(Param, "'response_format' is only supported on /v1/chat/completions");
    }
}
