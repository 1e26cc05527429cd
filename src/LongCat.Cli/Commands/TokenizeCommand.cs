using System.CommandLine;
using System.Text.Encodings.Web;
using System.Text.Json;
using LongCat.Tokenization;

namespace LongCat.Cli.Commands;

/// <summary><c>longcat tokenize</c>: text in, one JSON object of ids, token strings and offsets per input out.</summary>
public static class TokenizeCommand
{
    internal static readonly JsonWriterOptions JsonOut = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    internal static Option<string> TokenizerOption() =>
        CliSupport.RequiredPath("--tokenizer", "tokenizer.json, or a folder holding it (tokenizer_config.json beside it is read too).");

    public static Command Create()
    {
        var tokenizer = TokenizerOption();
        var text = new Option<string?>("--text") { Description = "Text to encode (one result line)." };
        var input = new Option<string?>("--input-jsonl") { Description = "JSONL file: one object with a \"text\" field per line (the fixtures' format); one result line each." };
        var special = new Option<bool>("--add-special-tokens") { Description = "Run the post-processor template (e.g. a BOS) as HF add_special_tokens=True. Added tokens in the text are matched either way." };
        var cmd = new Command("tokenize", "Encode text with a Hugging Face tokenizer.json; prints {\"ids\": [...], \"tokens\": [...], \"offsets\": [[start, end], ...]} per input, offsets in code points.")
        {
            tokenizer, text, input, special,
        };
        cmd.SetAction(p => CliSupport.Run(p, () => Run(p.GetValue(tokenizer)!, p.GetValue(text), p.GetValue(input), p.GetValue(special))));
        return cmd;
    }

    internal static Tokenizer LoadTokenizer(string path)
    {
        var tok = Tokenizer.Load(path);
        foreach (var w in tok.Warnings) Console.Error.WriteLine($"longcat: warning: {w}");
        return tok;
    }

    static int Run(string tokenizerPath, string? text, string? inputJsonl, bool addSpecial)
    {
        if ((text is null) == (inputJsonl is null)) throw new CliException("give exactly one of --text T or --input-jsonl FILE");
        var tok = LoadTokenizer(tokenizerPath);
        using var stdout = Console.OpenStandardOutput();
        using var w = new Utf8JsonWriter(stdout, JsonOut);
        if (text is not null)
        {
            Write(w, stdout, tok.Encode(text, addSpecial));
            return 0;
        }
        foreach (var batch in JsonlField(inputJsonl!, "text").Chunk(1024))
        {
            var results = tok.EncodeBatch(batch.Select(b => b.Value).ToArray(), addSpecial);
            foreach (var r in results) Write(w, stdout, r);
        }
        return 0;
    }

    static void Write(Utf8JsonWriter w, Stream stdout, TokenizedText r)
    {
        w.Reset(stdout);
        w.WriteStartObject();
        w.WriteStartArray("ids");
        foreach (var id in r.Ids) w.WriteNumberValue(id);
        w.WriteEndArray();
        w.WriteStartArray("tokens");
        foreach (var t in r.Tokens) w.WriteStringValue(t);
        w.WriteEndArray();
        w.WriteStartArray("offsets");
        foreach (var (s, e) in r.Offsets)
        {
            w.WriteStartArray();
            w.WriteNumberValue(s);
            w.WriteNumberValue(e);
            w.WriteEndArray();
        }
        w.WriteEndArray();
        w.WriteEndObject();
        w.Flush();
        stdout.Write("\n"u8);
    }

    /// <summary>Reads field <paramref name="field"/> of every non-blank JSONL line; errors name file and line.</summary>
    internal static IEnumerable<(int Line, string Value)> JsonlField(string path, string field)
    {
        if (!File.Exists(path)) throw new CliException($"{path}: input file not found");
        int n = 0;
        foreach (var line in File.ReadLines(path))
        {
            n++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            string value;
            try
            {
                using var doc = JsonDocument.Parse(line);
                if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty(field, out var v))
                    throw new CliException($"{path}:{n}: expected an object with a \"{field}\" field");
                value = field == "text"
                    ? v.ValueKind == JsonValueKind.String ? v.GetString()! : throw new CliException($"{path}:{n}: \"text\" must be a string")
                    : v.GetRawText();
            }
            catch (JsonException e) { throw new CliException($"{path}:{n}: not valid JSON: {e.Message}"); }
            yield return (n, value);
        }
    }
}
