using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace LongCat.Inference.Constraints;

/// <summary>A JSON schema uses a keyword (or a combination) that constrained decoding cannot honour.</summary>
public sealed class UnsupportedSchemaException(string keyword, string path, string message) : ArgumentException(message)
{
    /// <summary>The keyword at fault, e.g. "pattern".</summary>
    public string Keyword { get; } = keyword;
    /// <summary>Where in the schema, e.g. "$.properties.name".</summary>
    public string Path { get; } = path;
}

/// <summary>
/// Compiles a JSON schema into a <see cref="GrammarNode"/>. Supported: <c>type</c> (a name or a list), <c>properties</c>,
/// <c>required</c>, <c>additionalProperties</c> (bool or schema), <c>items</c>, <c>minItems</c>, <c>maxItems</c>,
/// <c>enum</c>, <c>const</c>, <c>anyOf</c>, boolean schemas (true; false is refused as unsatisfiable) and the
/// annotations <see cref="Annotations"/>. Anything else is refused by name, never ignored: a keyword that constrains
/// what we would not check would make "valid by construction" untrue. Without <c>type</c> a schema allows every
/// type (its object and array keywords apply to objects and arrays). With <c>strict</c> (OpenAI's structured
/// outputs), a missing <c>additionalProperties</c> means false, as OpenAI requires it to be; otherwise true, as JSON
/// Schema says. enum and const values must be written exactly as compact JSON (no spaces).
/// </summary>
public static class JsonSchemaCompiler
{
    /// <summary>Keywords that only describe (they constrain nothing).</summary>
    public static readonly IReadOnlySet<string> Annotations = new HashSet<string>
        { "title", "description", "$schema", "$comment", "$id", "default", "examples", "deprecated", "readOnly", "writeOnly" };

    /// <summary>Keywords that constrain and are honoured.</summary>
    public static readonly IReadOnlySet<string> Supported = new HashSet<string>
        { "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "enum", "const", "anyOf" };

    /// <summary>Deepest nesting of schemas accepted.</summary>
    public const int MaxDepth = 32;

    /// <summary>Any JSON value.</summary>
    public static readonly GrammarNode Any;
    /// <summary>Any JSON object.</summary>
    public static readonly GrammarNode AnyObject;

    static JsonSchemaCompiler()
    {
        var any = new AnyOfNode([]);
        var obj = new ObjectNode([], [], 0, any);
        any.Options = [obj, new ArrayNode(any, 0, int.MaxValue), StringNode.Instance, NumberNode.Number, LiteralNode.Of("true", "false", "null")];
        Any = any;
        AnyObject = obj;
    }

    static readonly string[] AllTypes = ["object", "array", "string", "number", "boolean", "null"];

    public static GrammarNode Compile(JsonElement schema, bool strict = false) => Node(schema, "$", strict, 0);

    static UnsupportedSchemaException Bad(string keyword, string path, string why) => new(keyword, path, $"schema {path}: {why}");

    static GrammarNode Node(JsonElement s, string path, bool strict, int depth)
    {
        if (depth > MaxDepth) throw Bad("$ref", path, $"schemas nested deeper than {MaxDepth} levels are not supported");
        if (s.ValueKind == JsonValueKind.True) return Any;
        if (s.ValueKind == JsonValueKind.False) throw Bad("false", path, "the schema false allows no value");
        if (s.ValueKind != JsonValueKind.Object) throw Bad("schema", path, "a schema must be an object or a boolean");
        var keys = new HashSet<string>();
        foreach (var p in s.EnumerateObject())
        {
            if (Annotations.Contains(p.Name)) continue;
            if (!Supported.Contains(p.Name))
                throw Bad(p.Name, path, $"keyword '{p.Name}' is not supported (supported: {string.Join(", ", Supported)}; annotations: {string.Join(", ", Annotations)})");
            keys.Add(p.Name);
        }

        if (keys.Contains("anyOf"))
        {
            if (keys.Count > 1) throw Bad(keys.First(k => k != "anyOf"), path, $"'anyOf' together with '{keys.First(k => k != "anyOf")}' is not supported: put the keywords inside each alternative");
            var a = s.GetProperty("anyOf");
            if (a.ValueKind != JsonValueKind.Array || a.GetArrayLength() == 0) throw Bad("anyOf", path, "'anyOf' must be a non-empty array of schemas");
            var options = a.EnumerateArray().Select((x, i) => Node(x, $"{path}.anyOf[{i}]", strict, depth + 1)).ToArray();
            return options.Length == 1 ? options[0] : new AnyOfNode(options);
        }

        var types = Types(s, path);
        if (keys.Contains("enum") || keys.Contains("const"))
        {
            string kw = keys.Contains("enum") ? "enum" : "const";
            var other = keys.FirstOrDefault(k => k is not ("enum" or "const" or "type"));
            if (other is not null) throw Bad(other, path, $"'{kw}' together with '{other}' is not supported");
            if (keys.Contains("enum") && keys.Contains("const")) throw Bad("const", path, "'enum' together with 'const' is not supported");
            var values = kw == "const" ? [s.GetProperty("const")]
                : s.GetProperty("enum") is { ValueKind: JsonValueKind.Array } e ? e.EnumerateArray().ToList()
                : throw Bad("enum", path, "'enum' must be an array");
            var allowed = values.Where(v => types.Any(t => HasType(v, t))).Select(Compact).ToList();
            if (allowed.Count == 0) throw Bad(kw, path, $"no '{kw}' value has an allowed type, so no value is valid");
            return new LiteralNode(allowed);
        }

        var nodes = new List<GrammarNode>();
        foreach (var t in types)
            nodes.Add(t switch
            {
                "object" => Object(s, path, strict, depth),
                "array" => Array(s, path, strict, depth),
                "string" => StringNode.Instance,
                "number" => NumberNode.Number,
                "integer" => NumberNode.Integer,
                "boolean" => LiteralNode.Of("true", "false"),
                _ => LiteralNode.Of("null"),
            });
        return nodes.Count == 1 ? nodes[0] : new AnyOfNode([.. nodes]);
    }

    static List<string> Types(JsonElement s, string path)
    {
        if (!s.TryGetProperty("type", out var t)) return [.. AllTypes];
        var list = t.ValueKind == JsonValueKind.String ? [t.GetString()!]
            : t.ValueKind == JsonValueKind.Array && t.GetArrayLength() > 0 && t.EnumerateArray().All(x => x.ValueKind == JsonValueKind.String)
                ? t.EnumerateArray().Select(x => x.GetString()!).ToList()
            : throw Bad("type", path, "'type' must be a type name or a non-empty array of them");
        foreach (var x in list)
            if (x is not ("object" or "array" or "string" or "number" or "integer" or "boolean" or "null"))
                throw Bad("type", path, $"type '{x}' is unknown (object, array, string, number, integer, boolean, null)");
        if (list.Contains("number")) list.Remove("integer");
        return [.. list.Distinct()];
    }

    static GrammarNode Object(JsonElement s, string path, bool strict, int depth)
    {
        var names = new List<string>();
        var schemas = new List<GrammarNode>();
        if (s.TryGetProperty("properties", out var props))
        {
            if (props.ValueKind != JsonValueKind.Object) throw Bad("properties", path, "'properties' must be an object");
            foreach (var p in props.EnumerateObject())
            {
                CheckName(p.Name, path);
                names.Add(p.Name);
                schemas.Add(Node(p.Value, $"{path}.properties.{p.Name}", strict, depth + 1));
            }
        }
        GrammarNode? additional = strict ? null : Any;
        if (s.TryGetProperty("additionalProperties", out var ap))
            additional = ap.ValueKind switch
            {
                JsonValueKind.False => null,
                JsonValueKind.True => Any,
                JsonValueKind.Object => Node(ap, path + ".additionalProperties", strict, depth + 1),
                _ => throw Bad("additionalProperties", path, "'additionalProperties' must be a boolean or a schema"),
            };
        ulong required = 0;
        if (s.TryGetProperty("required", out var req))
        {
            if (req.ValueKind != JsonValueKind.Array || req.EnumerateArray().Any(x => x.ValueKind != JsonValueKind.String))
                throw Bad("required", path, "'required' must be an array of property names");
            foreach (var r in req.EnumerateArray())
            {
                string name = r.GetString()!;
                int i = names.IndexOf(name);
                if (i < 0)
                {
                    // A required key that is not declared takes the additional schema; without one it cannot be written.
                    if (additional is null) throw Bad("required", path, $"'{name}' is required but not in 'properties' and additionalProperties is false");
                    CheckName(name, path);
                    names.Add(name);
                    schemas.Add(additional);
                    i = names.Count - 1;
                }
                if (i < 64) required |= 1UL << i;
            }
        }
        if (names.Count > 64) throw Bad("properties", path, $"{names.Count} properties: at most 64 per object are supported");
        return new ObjectNode([.. names], [.. schemas], required, additional);
    }

    static void CheckName(string name, string path)
    {
        if (name.Any(c => c is '"' or '\\' || c < ' '))
            throw Bad("properties", path, $"property name {JsonSerializer.Serialize(name)} needs escaping in JSON, which is not supported");
    }

    static GrammarNode Array(JsonElement s, string path, bool strict, int depth)
    {
        var items = Any;
        if (s.TryGetProperty("items", out var it))
        {
            if (it.ValueKind == JsonValueKind.Array) throw Bad("items", path, "'items' as an array (tuple validation) is not supported");
            items = Node(it, path + ".items", strict, depth + 1);
        }
        int min = Count(s, "minItems", path) ?? 0, max = Count(s, "maxItems", path) ?? int.MaxValue;
        if (max < min) throw Bad("maxItems", path, $"maxItems = {max} is below minItems = {min}");
        return new ArrayNode(items, min, max);
    }

    static int? Count(JsonElement s, string name, string path)
    {
        if (!s.TryGetProperty(name, out var e)) return null;
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt64(out long v) || v < 0) throw Bad(name, path, $"'{name}' must be a non-negative integer");
        return (int)Math.Min(v, int.MaxValue);
    }

    static bool HasType(JsonElement v, string type) => type switch
    {
        "object" => v.ValueKind == JsonValueKind.Object,
        "array" => v.ValueKind == JsonValueKind.Array,
        "string" => v.ValueKind == JsonValueKind.String,
        "number" => v.ValueKind == JsonValueKind.Number,
        "integer" => v.ValueKind == JsonValueKind.Number && IsIntegerText(v.GetRawText()),
        "boolean" => v.ValueKind is JsonValueKind.True or JsonValueKind.False,
        _ => v.ValueKind == JsonValueKind.Null,
    };

    static bool IsIntegerText(string t) => t.All(c => c is '-' || char.IsAsciiDigit(c));

    static readonly JsonWriterOptions CompactWriter = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, Indented = false };

    /// <summary>The value as compact JSON bytes (the exact text the model must write for an enum or const).</summary>
    static byte[] Compact(JsonElement v)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, CompactWriter)) v.WriteTo(w);
        return ms.ToArray();
    }
}
