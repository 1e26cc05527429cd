using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using LongCat.Inference;
using LongCat.Inference.Constraints;

namespace LongCat.Tests;

/// <summary>
/// Seeded random JSON schemas over every supported keyword, a validator for that subset (independent of the
/// grammar code), a byte-level vocabulary whose tokens split JSON syntax and UTF-8 characters, and a driver that
/// decodes under a constraint with random logits through the real <see cref="Sampler"/>.
/// </summary>
static class ConstraintTestSupport
{
    // ------------------------------------------------------------------ random schemas

    static readonly string[] Names = ["a", "b", "id", "name", "tags", "x y", "ünï", "ab", "abc", "k1"];

    public static JsonObject RandomSchema(Random r, int depth = 0)
    {
        int kind = depth >= 3 ? r.Next(6) : r.Next(12);
        JsonObject s = kind switch
        {
            0 => new() { ["type"] = "string" },
            1 => new() { ["type"] = "number" },
            2 => new() { ["type"] = "integer" },
            3 => new() { ["type"] = "boolean" },
            4 => new() { ["type"] = "null" },
            5 => r.Next(2) == 0 ? new() { ["enum"] = RandomValues(r, 1 + r.Next(4)) } : new() { ["const"] = RandomValue(r, 1) },
            6 or 7 or 8 => RandomObject(r, depth),
            9 => RandomArray(r, depth),
            10 => new() { ["anyOf"] = new JsonArray([.. Enumerable.Range(0, 2 + r.Next(2)).Select(_ => (JsonNode)RandomSchema(r, depth + 1))]) },
            _ => new() { ["type"] = new JsonArray("string", "null"), ["description"] = "nullable" },
        };
        if (r.Next(5) == 0) s["description"] = "a field";
        return s;
    }

    static JsonObject RandomObject(Random r, int depth)
    {
        var props = new JsonObject();
        var names = Names.OrderBy(_ => r.Next()).Take(r.Next(5)).ToList();
        foreach (var n in names) props[n] = RandomSchema(r, depth + 1);
        var s = new JsonObject { ["type"] = "object", ["properties"] = props };
        var req = names.Where(_ => r.Next(2) == 0).Select(n => (JsonNode)n).ToArray();
        if (req.Length > 0 || r.Next(2) == 0) s["required"] = new JsonArray(req);
        switch (r.Next(4))
        {
            case 0: s["additionalProperties"] = false; break;
            case 1: s["additionalProperties"] = true; break;
            case 2: s["additionalProperties"] = RandomSchema(r, 3); break;
        }
        return s;
    }

    static JsonObject RandomArray(Random r, int depth)
    {
        var s = new JsonObject { ["type"] = "array", ["items"] = RandomSchema(r, depth + 1) };
        int min = r.Next(3);
        if (r.Next(2) == 0) s["minItems"] = min;
        if (r.Next(2) == 0) s["maxItems"] = min + r.Next(3);
        return s;
    }

    static JsonArray RandomValues(Random r, int n) => new([.. Enumerable.Range(0, n).Select(_ => RandomValue(r, 0))]);

    static JsonNode? RandomValue(Random r, int depth) => r.Next(depth > 1 ? 5 : 7) switch
    {
        0 => JsonValue.Create(new[] { "red", "green", "x\"y", "é✓", "" }[r.Next(5)]),
        1 => JsonValue.Create(r.Next(-20, 200)),
        2 => JsonValue.Create(new[] { 1.5, -0.25, 1e10 }[r.Next(3)]),
        3 => JsonValue.Create(r.Next(2) == 0),
        4 => null,
        5 => new JsonObject { ["k"] = RandomValue(r, depth + 1) },
        _ => new JsonArray(RandomValue(r, depth + 1), RandomValue(r, depth + 1)),
    };

    // ------------------------------------------------------------------ validator (the supported subset)

    /// <summary>Null when <paramref name="v"/> is valid for <paramref name="s"/>, else why not.</summary>
    public static string? Validate(JsonElement v, JsonElement s, bool strict, string path = "$")
    {
        if (s.ValueKind == JsonValueKind.True) return null;
        if (s.TryGetProperty("anyOf", out var any))
            return any.EnumerateArray().Any(o => Validate(v, o, strict, path) is null) ? null : $"{path}: no anyOf alternative matches";
        if (s.TryGetProperty("type", out var type))
        {
            var types = type.ValueKind == JsonValueKind.String ? [type.GetString()!] : type.EnumerateArray().Select(t => t.GetString()!).ToList();
            if (!types.Any(t => HasType(v, t))) return $"{path}: {v.ValueKind} is not {string.Join("|", types)}";
        }
        if (s.TryGetProperty("const", out var c) && !JsonElement.DeepEquals(v, c)) return $"{path}: not the const";
        if (s.TryGetProperty("enum", out var e) && !e.EnumerateArray().Any(x => JsonElement.DeepEquals(v, x))) return $"{path}: not in the enum";
        if (s.TryGetProperty("enum", out _) || s.TryGetProperty("const", out _)) return null;
        if (v.ValueKind == JsonValueKind.Object)
        {
            var seen = new HashSet<string>();
            JsonElement props = s.TryGetProperty("properties", out var p) ? p : default;
            foreach (var kv in v.EnumerateObject())
            {
                JsonElement ps = default;
                bool declared = props.ValueKind == JsonValueKind.Object && props.TryGetProperty(kv.Name, out ps);
                if (!seen.Add(kv.Name)) return $"{path}: duplicate key {kv.Name}";
                if (declared)
                {
                    if (Validate(kv.Value, ps, strict, path + "." + kv.Name) is { } why) return why;
                }
                else if (s.TryGetProperty("additionalProperties", out var ap))
                {
                    if (ap.ValueKind == JsonValueKind.False) return $"{path}: key {kv.Name} is not allowed";
                    if (Validate(kv.Value, ap, strict, path + "." + kv.Name) is { } why) return why;
                }
                else if (strict) return $"{path}: key {kv.Name} is not allowed (strict)";
            }
            if (s.TryGetProperty("required", out var req))
                foreach (var q in req.EnumerateArray())
                    if (!seen.Contains(q.GetString()!)) return $"{path}: required {q.GetString()} is missing";
        }
        if (v.ValueKind == JsonValueKind.Array)
        {
            int n = v.GetArrayLength();
            if (s.TryGetProperty("minItems", out var mi) && n < mi.GetInt32()) return $"{path}: {n} < minItems";
            if (s.TryGetProperty("maxItems", out var ma) && n > ma.GetInt32()) return $"{path}: {n} > maxItems";
            if (s.TryGetProperty("items", out var it))
            {
                int i = 0;
                foreach (var x in v.EnumerateArray())
                    if (Validate(x, it, strict, $"{path}[{i++}]") is { } why) return why;
            }
        }
        return null;
    }

    static bool HasType(JsonElement v, string t) => t switch
    {
        "object" => v.ValueKind == JsonValueKind.Object,
        "array" => v.ValueKind == JsonValueKind.Array,
        "string" => v.ValueKind == JsonValueKind.String,
        "number" => v.ValueKind == JsonValueKind.Number,
        "integer" => v.ValueKind == JsonValueKind.Number && v.GetRawText().All(ch => ch == '-' || char.IsAsciiDigit(ch)),
        "boolean" => v.ValueKind is JsonValueKind.True or JsonValueKind.False,
        "null" => v.ValueKind == JsonValueKind.Null,
        _ => throw new ArgumentException(t),
    };

    // ------------------------------------------------------------------ a vocabulary that splits JSON

    /// <summary>
    /// Every single byte, plus fragments that cross JSON token boundaries and UTF-8 characters ("\"}", ",\"",
    /// "\":", "{\"a", "1.", "e+", "\\u", half of "é", ...), plus the end token (the last id).
    /// </summary>
    public static (TokenVocabulary Vocab, byte[][] Bytes) SplittingVocabulary(int seed = 1)
    {
        var list = new List<byte[]>();
        for (int b = 0; b < 256; b++) list.Add([(byte)b]);
        string[] frags = ["\"}", "\"ab\"", ",\"", "\":", "\": ", "{\"", "{\"a", "\"a\"", "1.", "e+", "\\u", "\\", "true", "tr", "ue,",
            "null", "nu", "ll}", "false", "]}", "}]", "[{", "\",\"", "  ", "\n  ", ", ", "12", "0.5", "-1", "ab", "name", "\"name\": \"",
            "red", "\"red\"", "green\"", "x\\\"y", "id\":", "\"tags\": [", "k1", "ünï", "é", "✓", "\"x y\"", "\"é✓\"", "1e10", "-0.25"];
        foreach (var f in frags) list.Add(Encoding.UTF8.GetBytes(f));
        list.Add([0xC3]); list.Add([0xA9, (byte)'"']); list.Add([0xE2, 0x9C]); list.Add([0x93, (byte)'}']);
        var r = new Random(seed);
        string alphabet = "{}[]\":, \nabcdeilnrstu0123456789.-+eE\\";
        for (int i = 0; i < 200; i++)
            list.Add(Encoding.UTF8.GetBytes(new string([.. Enumerable.Range(0, 2 + r.Next(4)).Select(_ => alphabet[r.Next(alphabet.Length)])])));
        int end = list.Count;
        var bytes = list.Append(null!).ToArray();
        return (new TokenVocabulary(bytes, end + 1, [end]), bytes);
    }

    /// <summary>
    /// Decodes under <paramref name="grammar"/> with seeded random logits through the real sampler (greedy when
    /// <paramref name="greedy"/>) until the end token; returns the text and whether it ended. The random "model"
    /// leans towards closing characters (quote, brace, bracket) and away from opening ones, more and more as the
    /// text grows, as a trained model's
    /// outputs end; without the lean a uniform model over a big vocabulary rarely closes a string.
    /// </summary>
    public static (string Text, bool Ended, int Tokens) Decode(JsonGrammar grammar, bool greedy, int seed, int maxTokens = 4000)
    {
        var v = grammar.Vocabulary;
        var o = new GenerationOptions { Temperature = greedy ? 0 : 1, Seed = (ulong)seed, Constraint = grammar.Start, TopK = greedy ? 0 : 50 };
        var sampler = new Sampler(o, v.Size, []);
        var r = new Random(seed);
        var logits = new float[v.Size];
        var lean = new float[v.Size];
        for (int i = 0; i < v.Size; i++)
        {
            var b = v.Bytes(i);
            bool opens = b.IndexOfAny("{[,"u8) >= 0;
            lean[i] = (!opens && b.IndexOfAny("}]"u8) >= 0 ? 4f : 0f) + (b.IndexOf((byte)'"') >= 0 ? 6f : 0f) - (opens ? 4f : 0f)
                - (b.IndexOfAny(" \n\t"u8) >= 0 ? 2f : 0f);
        }
        var text = new List<byte>();
        for (int n = 0; n < maxTokens; n++)
        {
            for (int i = 0; i < logits.Length; i++) logits[i] = (float)(r.NextDouble() * 6) + lean[i] * (1 + n / 40f);
            int t = sampler.Sample(logits);
            sampler.Accept(t);
            if (v.IsEnd(t)) return (Strict.GetString([.. text]), true, n + 1);
            text.AddRange(v.Bytes(t).ToArray());
        }
        return (Strict.GetString([.. text]), false, maxTokens);
    }

    /// <summary>UTF-8 that throws on invalid bytes (the grammar must never produce them).</summary>
    public static readonly UTF8Encoding Strict = new(false, throwOnInvalidBytes: true);
}
