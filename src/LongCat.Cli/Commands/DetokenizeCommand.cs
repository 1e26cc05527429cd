using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using LongCat.Tokenization;

namespace LongCat.Cli.Commands;

/// <summary><c>longcat detokenize</c>: ids in, text out (HF <c>decode</c>).</summary>
public static class DetokenizeCommand
{
    public static Command Create()
    {
        var tokenizer = TokenizeCommand.TokenizerOption();
        var ids = new Option<string?>("--ids") { Description = "Comma- or space-separated ids, e.g. \"9707,1879\"; prints the text." };
        var input = new Option<string?>("--input-jsonl") { Description = "JSONL file: one object with an \"ids\" array per line (e.g. tokenize's output); prints {\"text\": ...} per line." };
        var skip = new Option<bool>("--skip-special-tokens") { Description = "Drop special added tokens (as HF skip_special_tokens=True)." };
        var cmd = new Command("detokenize", "Decode token ids to text with a Hugging Face tokenizer.json (invalid UTF-8 becomes U+FFFD, as in HF).")
        {
            tokenizer, ids, input, skip,
        };
        cmd.SetAction(p => CliSupport.Run(p, () => Run(p.GetValue(tokenizer)!, p.GetValue(ids), p.GetValue(input), p.GetValue(skip))));
        return cmd;
    }

    static int Run(string tokenizerPath, string? ids, string? inputJsonl, bool skip)
    {
        if ((ids is null) == (inputJsonl is null)) throw new CliException("give exactly one of --ids LIST or --input-jsonl FILE");
        var tok = TokenizeCommand.LoadTokenizer(tokenizerPath);
        if (ids is not null)
        {
            Console.Out.WriteLine(tok.Decode(ParseIds(ids, "--ids", tok), skip));
            return 0;
        }
        using var stdout = Console.OpenStandardOutput();
        using var w = new Utf8JsonWriter(stdout, TokenizeCommand.JsonOut);
        foreach (var (line, raw) in TokenizeCommand.JsonlField(inputJsonl!, "ids"))
        {
            int[] list;
            try
            {
                using var doc = JsonDocument.Parse(raw);
                if (doc.RootElement.ValueKind != JsonValueKind.Array) throw new FormatException();
                list = [.. doc.RootElement.EnumerateArray().Select(e => e.GetInt32())];
            }
            catch (Exception e) when (e is FormatException or InvalidOperationException or JsonException)
            {
                throw new CliException($"{inputJsonl}:{line}: \"ids\" must be an array of integers");
            }
            Check(list, $"{inputJsonl}:{line}", tok);
            w.Reset(stdout);
            w.WriteStartObject();
            w.WriteString("text", tok.Decode(list, skip));
            w.WriteEndObject();
            w.Flush();
            stdout.Write("\n"u8);
        }
        return 0;
    }

    static int[] ParseIds(string s, string where, Tokenizer tok)
    {
        var parts = s.Split([',', ' ', '\t', '[', ']'], StringSplitOptions.RemoveEmptyEntries);
        var r = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out r[i]))
                throw new CliException($"{where}: '{parts[i]}' is not an integer id");
        Check(r, where, tok);
        return r;
    }

    static void Check(int[] ids, string where, Tokenizer tok)
    {
        // HF silently skips unknown ids; a command line user is better served by an error.
        foreach (var id in ids)
            if (tok.IdToToken(id) is null) throw new CliException($"{where}: id {id} is not in the vocabulary (0..{tok.VocabSize - 1})");
    }
}
