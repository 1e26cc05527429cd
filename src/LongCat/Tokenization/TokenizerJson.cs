using System.Text.Json;
using LongCat.IO;

namespace LongCat.Tokenization;

/// <summary>
/// Reads Hugging Face tokenizer.json (byte-level BPE) into a <see cref="Tokenizer"/>. Every error names the
/// file and the JSON path of the component, e.g. <c>tokenizer.json: pre_tokenizer.pretokenizers[1]:
/// unsupported pre-tokenizer type 'Metaspace'</c>.
/// </summary>
static class TokenizerJson
{
    public static Tokenizer Load(string path)
    {
        string file = path, dir;
        if (Directory.Exists(path))
        {
            dir = path;
            file = Path.Combine(path, "tokenizer.json");
            if (!File.Exists(file)) throw new ModelFormatException($"{path}: no tokenizer.json in this folder");
        }
        else
        {
            if (!File.Exists(path)) throw new ModelFormatException($"{path}: tokenizer file not found");
            dir = Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".";
        }
        var cfgPath = Path.Combine(dir, "tokenizer_config.json");
        var config = File.Exists(cfgPath) ? TokenizerConfig.Load(cfgPath) : null;
        byte[] bytes;
        try { bytes = File.ReadAllBytes(file); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException($"{file}: cannot read: {e.Message}", e);
        }
        return Parse(bytes, file, config);
    }

    sealed class Ctx(string source)
    {
        public readonly string Source = source;
        public readonly List<string> Warnings = [];
        public ModelFormatException Error(string path, string message) => new($"{Source}: {path}: {message}");
    }

    public static Tokenizer Parse(byte[] json, string source, TokenizerConfig? config)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 256 }); }
        catch (JsonException e) { throw new ModelFormatException($"{source}: not valid JSON: {e.Message}", e); }
        using (doc)
        {
            var ctx = new Ctx(source);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new ModelFormatException($"{source}: expected a JSON object at the top");
            foreach (var key in new[] { "truncation", "padding" })
                if (root.TryGetProperty(key, out var v) && v.ValueKind != JsonValueKind.Null)
                    throw ctx.Error(key, "is set; truncation and padding inside tokenizer.json are not supported (set it to null)");

            if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
                throw ctx.Error("model", "missing (expected an object with type BPE)");
            var bpe = ReadModel(model, ctx);
            bool nfc = ReadNormalizer(root, ctx);
            var pre = ReadPreTokenizer(root, ctx);
            var added = ReadAddedTokens(root, bpe, nfc, ctx);
            var post = ReadPostProcessor(root, ctx);
            bool byteLevelDecoder = ReadDecoder(root, ctx);
            var tok = new Tokenizer(source, bpe, added, nfc, pre, post, byteLevelDecoder, config);
            tok.Warnings = ctx.Warnings;
            return tok;
        }
    }

    // ------------------------------------------------------------------ model

    static BpeModel ReadModel(JsonElement model, Ctx ctx)
    {
        string type = model.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String
            ? t.GetString()!
            : model.TryGetProperty("merges", out _) ? "BPE" : "?";
        if (type != "BPE")
            throw ctx.Error("model.type", $"unsupported model type '{type}'; only byte-level BPE is supported (not WordPiece, Unigram or WordLevel)");

        if (!model.TryGetProperty("vocab", out var vocabEl) || vocabEl.ValueKind != JsonValueKind.Object)
            throw ctx.Error("model.vocab", "missing or not an object of token -> id");
        var vocab = new Dictionary<string, int>(vocabEl.GetPropertyCount());
        foreach (var p in vocabEl.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out int id) || id < 0)
                throw ctx.Error($"model.vocab[\"{p.Name}\"]", "id must be a non-negative integer");
            vocab[p.Name] = id;
        }

        if (!model.TryGetProperty("merges", out var mergesEl) || mergesEl.ValueKind != JsonValueKind.Array)
            throw ctx.Error("model.merges", "missing (a BPE model needs its merges list)");
        var merges = new List<(int, int, int)>(mergesEl.GetArrayLength());
        int i = 0;
        foreach (var m in mergesEl.EnumerateArray())
        {
            string a, b;
            if (m.ValueKind == JsonValueKind.String)
            {
                // Legacy form "a b". Byte-level tokens never contain a space.
                var parts = m.GetString()!.Split(' ');
                if (parts.Length != 2) throw ctx.Error($"model.merges[{i}]", $"\"{m.GetString()}\" is not two tokens separated by one space");
                (a, b) = (parts[0], parts[1]);
            }
            else if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2
                && m[0].ValueKind == JsonValueKind.String && m[1].ValueKind == JsonValueKind.String)
            {
                (a, b) = (m[0].GetString()!, m[1].GetString()!);
            }
            else throw ctx.Error($"model.merges[{i}]", "expected \"a b\" or [\"a\", \"b\"]");
            if (!vocab.TryGetValue(a, out int ia)) throw ctx.Error($"model.merges[{i}]", $"token '{a}' is not in the vocabulary");
            if (!vocab.TryGetValue(b, out int ib)) throw ctx.Error($"model.merges[{i}]", $"token '{b}' is not in the vocabulary");
            if (!vocab.TryGetValue(a + b, out int im)) throw ctx.Error($"model.merges[{i}]", $"merged token '{a + b}' is not in the vocabulary");
            merges.Add((ia, ib, im));
            i++;
        }

        string? unk = OptString(model, "unk_token", "model", ctx);
        if (model.TryGetProperty("dropout", out var d) && d.ValueKind == JsonValueKind.Number && d.GetDouble() > 0)
            throw ctx.Error("model.dropout", "BPE dropout is random at encode time and is not supported (set it to null)");
        foreach (var key in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
            if (OptString(model, key, "model", ctx) is { Length: > 0 } s)
                throw ctx.Error($"model.{key}", $"'{s}' is not supported for byte-level BPE (null or \"\" only)");
        return new BpeModel(vocab, merges, unk,
            fuseUnk: OptBool(model, "fuse_unk", "model", ctx) ?? false,
            byteFallback: OptBool(model, "byte_fallback", "model", ctx) ?? false,
            ignoreMerges: OptBool(model, "ignore_merges", "model", ctx) ?? false);
    }

    // ------------------------------------------------------------------ normalizer

    /// <summary>Returns whether NFC runs. Null, empty sequences and NFC (possibly nested) are supported.</summary>
    static bool ReadNormalizer(JsonElement root, Ctx ctx)
    {
        if (!root.TryGetProperty("normalizer", out var n) || n.ValueKind == JsonValueKind.Null) return false;
        return Normalizer(n, "normalizer", ctx);
    }

    static bool Normalizer(JsonElement n, string path, Ctx ctx)
    {
        string type = Type(n, path, ctx);
        switch (type)
        {
            case "NFC": return true;
            case "Sequence":
            {
                if (!n.TryGetProperty("normalizers", out var list) || list.ValueKind != JsonValueKind.Array)
                    throw ctx.Error(path, "Sequence needs a 'normalizers' list");
                bool any = false;
                int i = 0;
                foreach (var item in list.EnumerateArray()) any |= Normalizer(item, $"{path}.normalizers[{i++}]", ctx);
                return any; // NFC is idempotent, so NFC twice is NFC once
            }
            default:
                throw ctx.Error(path, $"unsupported normalizer type '{type}' (supported: NFC, Sequence)");
        }
    }

    // ------------------------------------------------------------------ pre-tokenizer

    static List<PreTokenizerStep> ReadPreTokenizer(JsonElement root, Ctx ctx)
    {
        var steps = new List<PreTokenizerStep>();
        if (root.TryGetProperty("pre_tokenizer", out var p) && p.ValueKind != JsonValueKind.Null)
            PreTokenizer(p, "pre_tokenizer", steps, ctx);
        int bl = steps.FindIndex(s => s is ByteLevelStep);
        if (bl < 0)
            throw ctx.Error("pre_tokenizer", "has no ByteLevel step; only byte-level BPE is supported");
        if (bl != steps.Count - 1)
            throw ctx.Error("pre_tokenizer", "ByteLevel must be the last pre-tokenizer step (steps after it would see byte-level characters)");
        return steps;
    }

    static void PreTokenizer(JsonElement p, string path, List<PreTokenizerStep> steps, Ctx ctx)
    {
        string type = Type(p, path, ctx);
        switch (type)
        {
            case "Sequence":
            {
                if (!p.TryGetProperty("pretokenizers", out var list) || list.ValueKind != JsonValueKind.Array)
                    throw ctx.Error(path, "Sequence needs a 'pretokenizers' list");
                int i = 0;
                foreach (var item in list.EnumerateArray()) PreTokenizer(item, $"{path}.pretokenizers[{i++}]", steps, ctx);
                break;
            }
            case "Split":
            {
                if (!p.TryGetProperty("pattern", out var pat) || pat.ValueKind != JsonValueKind.Object)
                    throw ctx.Error($"{path}.pattern", "missing (expected {\"Regex\": ...} or {\"String\": ...})");
                string regex;
                if (pat.TryGetProperty("Regex", out var r) && r.ValueKind == JsonValueKind.String) regex = r.GetString()!;
                else if (pat.TryGetProperty("String", out var s) && s.ValueKind == JsonValueKind.String) regex = EscapeLiteral(s.GetString()!);
                else throw ctx.Error($"{path}.pattern", "expected {\"Regex\": \"...\"} or {\"String\": \"...\"}");
                CodePointRegex compiled;
                try { compiled = CodePointRegex.Compile(regex); }
                catch (ArgumentException e) { throw ctx.Error($"{path}.pattern", e.Message); }
                var behaviorName = OptString(p, "behavior", path, ctx) ?? "Isolated";
                if (!Enum.TryParse<SplitBehavior>(behaviorName, ignoreCase: false, out var behavior) || !Enum.IsDefined(behavior))
                    throw ctx.Error($"{path}.behavior", $"unknown behavior '{behaviorName}' (Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous)");
                steps.Add(new SplitStep(compiled, behavior, OptBool(p, "invert", path, ctx) ?? false));
                break;
            }
            case "ByteLevel":
                steps.Add(new ByteLevelStep(OptBool(p, "add_prefix_space", path, ctx) ?? true, OptBool(p, "use_regex", path, ctx) ?? true));
                break;
            case "Digits":
                steps.Add(new DigitsStep(OptBool(p, "individual_digits", path, ctx) ?? false));
                break;
            default:
                throw ctx.Error(path, $"unsupported pre-tokenizer type '{type}' (supported: Sequence, Split, ByteLevel, Digits)");
        }
    }

    static string EscapeLiteral(string s)
    {
        var sb = new System.Text.StringBuilder();
        foreach (var r in s.EnumerateRunes())
        {
            if (r.Value < 128 && "\\^$.|?*+()[]{}-&#~ ".Contains((char)r.Value)) sb.Append('\\');
            sb.Append(r.ToString());
        }
        return sb.ToString();
    }

    // ------------------------------------------------------------------ added tokens

    /// <summary>
    /// Registers added tokens as HF's AddedVocabulary::add_tokens does: a token already in the vocabulary keeps
    /// that id; a new one gets the next id after the vocabulary (or after the largest added id). The "id" in the
    /// file is not used; a mismatch is reported in <see cref="Tokenizer.Warnings"/>.
    /// </summary>
    static AddedVocabulary ReadAddedTokens(JsonElement root, BpeModel model, bool nfc, Ctx ctx)
    {
        var added = new AddedVocabulary();
        if (!root.TryGetProperty("added_tokens", out var list) || list.ValueKind == JsonValueKind.Null) return added;
        if (list.ValueKind != JsonValueKind.Array) throw ctx.Error("added_tokens", "expected a list");
        var tokens = new List<(AddedToken Token, int FileId)>();
        int i = 0;
        foreach (var t in list.EnumerateArray())
        {
            string path = $"added_tokens[{i++}]";
            if (t.ValueKind != JsonValueKind.Object) throw ctx.Error(path, "expected an object");
            var content = OptString(t, "content", path, ctx) ?? throw ctx.Error($"{path}.content", "missing");
            int fileId = t.TryGetProperty("id", out var idEl) && idEl.ValueKind == JsonValueKind.Number && idEl.TryGetInt32(out int v) ? v : -1;
            bool special = OptBool(t, "special", path, ctx) ?? false;
            tokens.Add((new AddedToken(-1, content, special,
                SingleWord: OptBool(t, "single_word", path, ctx) ?? false,
                LStrip: OptBool(t, "lstrip", path, ctx) ?? false,
                RStrip: OptBool(t, "rstrip", path, ctx) ?? false,
                Normalized: OptBool(t, "normalized", path, ctx) ?? !special), fileId));
        }

        var idByContent = new Dictionary<string, int>();
        var byId = new Dictionary<int, AddedToken>();
        int vocabSize = model.Vocab.Count;
        foreach (var (tok, fileId) in tokens)
        {
            // HF compares added tokens by content: a repeated content is ignored, the first definition stays.
            if (tok.Content.Length == 0 || idByContent.ContainsKey(tok.Content)) continue;
            int id;
            if (model.TryGetId(tok.Content, out int vid)) id = vid;
            else
            {
                int max = byId.Count == 0 ? -1 : byId.Keys.Max();
                id = max < 0 ? vocabSize : (max >= vocabSize || vocabSize == 0 ? max + 1 : vocabSize);
            }
            if (fileId >= 0 && fileId != id)
                ctx.Warnings.Add($"added token '{tok.Content}' has id {fileId} in the file but gets {id}, as in Hugging Face tokenizers");
            idByContent[tok.Content] = id;
            byId[id] = tok with { Id = id };
        }
        // Tries are built from special tokens first, then the others (the order HF's aho-corasick sees them).
        var ordered = byId.Values.Where(t => t.Special).Concat(byId.Values.Where(t => !t.Special));
        foreach (var t in ordered)
        {
            int[] norm = AddedVocabulary.ToCodePoints(t.Content);
            if (t.Normalized && nfc && Nfc.MayChange(norm))
            {
                var o = new List<int>();
                Nfc.Normalize(norm, k => (k, k + 1), o, [], []);
                norm = [.. o];
            }
            added.Add(t, norm);
        }
        return added;
    }

    // ------------------------------------------------------------------ post-processor and decoder

    static List<PostStep> ReadPostProcessor(JsonElement root, Ctx ctx)
    {
        var steps = new List<PostStep>();
        if (root.TryGetProperty("post_processor", out var p) && p.ValueKind != JsonValueKind.Null)
            PostProcessor(p, "post_processor", steps, ctx);
        return steps;
    }

    static void PostProcessor(JsonElement p, string path, List<PostStep> steps, Ctx ctx)
    {
        string type = Type(p, path, ctx);
        switch (type)
        {
            case "ByteLevel":
                steps.Add(new ByteLevelPost(OptBool(p, "trim_offsets", path, ctx) ?? true, OptBool(p, "add_prefix_space", path, ctx) ?? true));
                break;
            case "Sequence":
            {
                if (!p.TryGetProperty("processors", out var list) || list.ValueKind != JsonValueKind.Array)
                    throw ctx.Error(path, "Sequence needs a 'processors' list");
                int i = 0;
                foreach (var item in list.EnumerateArray()) PostProcessor(item, $"{path}.processors[{i++}]", steps, ctx);
                break;
            }
            case "TemplateProcessing":
            {
                if (!p.TryGetProperty("single", out var single) || single.ValueKind != JsonValueKind.Array)
                    throw ctx.Error($"{path}.single", "missing");
                p.TryGetProperty("special_tokens", out var specials);
                var items = new List<(bool, int[], string[])>();
                int i = 0;
                foreach (var item in single.EnumerateArray())
                {
                    string ipath = $"{path}.single[{i++}]";
                    if (item.TryGetProperty("Sequence", out _)) { items.Add((true, [], [])); continue; }
                    if (!item.TryGetProperty("SpecialToken", out var st) || !st.TryGetProperty("id", out var sid) || sid.ValueKind != JsonValueKind.String)
                        throw ctx.Error(ipath, "expected {\"Sequence\": ...} or {\"SpecialToken\": {\"id\": ...}}");
                    string name = sid.GetString()!;
                    if (specials.ValueKind != JsonValueKind.Object || !specials.TryGetProperty(name, out var spec)
                        || !spec.TryGetProperty("ids", out var idsEl) || !spec.TryGetProperty("tokens", out var toksEl))
                        throw ctx.Error($"{path}.special_tokens", $"no entry with ids and tokens for '{name}'");
                    items.Add((false, [.. idsEl.EnumerateArray().Select(x => x.GetInt32())], [.. toksEl.EnumerateArray().Select(x => x.GetString() ?? "")]));
                }
                steps.Add(new TemplatePost(items));
                break;
            }
            default:
                throw ctx.Error(path, $"unsupported post-processor type '{type}' (supported: ByteLevel, TemplateProcessing, Sequence)");
        }
    }

    static bool ReadDecoder(JsonElement root, Ctx ctx)
    {
        if (!root.TryGetProperty("decoder", out var d) || d.ValueKind == JsonValueKind.Null) return false;
        return Decoder(d, "decoder", ctx);
    }

    static bool Decoder(JsonElement d, string path, Ctx ctx)
    {
        string type = Type(d, path, ctx);
        switch (type)
        {
            case "ByteLevel": return true;
            case "Sequence":
            {
                if (!d.TryGetProperty("decoders", out var list) || list.ValueKind != JsonValueKind.Array || list.GetArrayLength() != 1)
                    throw ctx.Error(path, "only a Sequence holding a single ByteLevel decoder is supported");
                return Decoder(list[0], $"{path}.decoders[0]", ctx);
            }
            default:
                throw ctx.Error(path, $"unsupported decoder type '{type}' (supported: ByteLevel)");
        }
    }

    // ------------------------------------------------------------------ helpers

    static string Type(JsonElement e, string path, Ctx ctx)
    {
        if (e.ValueKind != JsonValueKind.Object) throw ctx.Error(path, "expected an object");
        if (!e.TryGetProperty("type", out var t) || t.ValueKind != JsonValueKind.String) throw ctx.Error($"{path}.type", "missing");
        return t.GetString()!;
    }

    static string? OptString(JsonElement e, string key, string path, Ctx ctx)
    {
        if (!e.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.String) throw ctx.Error($"{path}.{key}", "expected a string");
        return v.GetString();
    }

    static bool? OptBool(JsonElement e, string key, string path, Ctx ctx)
    {
        if (!e.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw ctx.Error($"{path}.{key}", "expected true or false"),
        };
    }
}
