using System.IO.Compression;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace LongCat.Training;

/// <summary>
/// Reads training text the way <c>longcat data prepare</c> and <c>longcat tokenizer train</c> both do: a <c>.jsonl</c>
/// file is one document per line in a string field <c>"text"</c>; any other file is UTF-8 text cut into documents by
/// <see cref="DocumentMode"/>. A trailing <c>.gz</c> (e.g. <c>corpus.jsonl.gz</c>) is decompressed on the fly.
/// </summary>
public static class TextCorpus
{
    /// <summary>Opens <paramref name="file"/> as UTF-8 text, through gzip when the name ends in <c>.gz</c>.</summary>
    public static StreamReader OpenText(string file)
    {
        if (!File.Exists(file)) throw new FileNotFoundException($"{file}: input file not found", file);
        Stream s = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        if (IsGzip(file)) s = new GZipStream(s, CompressionMode.Decompress);
        return new StreamReader(s, new UTF8Encoding(false, true), detectEncodingFromByteOrderMarks: true, bufferSize: 1 << 16);
    }

    /// <summary>True for a JSON-lines file (<c>.jsonl</c> or <c>.jsonl.gz</c>).</summary>
    public static bool IsJsonLines(string file) => BaseName(file).EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase);

    static bool IsGzip(string file) => file.EndsWith(".gz", StringComparison.OrdinalIgnoreCase);
    static string BaseName(string file) => IsGzip(file) ? file[..^3] : file;

    /// <summary>The documents of <paramref name="file"/>, in file order. Malformed JSON lines and invalid UTF-8 or
    /// gzip data raise <see cref="InvalidDataException"/> naming the file (and line).</summary>
    public static IEnumerable<string> Documents(string file, DocumentMode mode)
    {
        using var reader = OpenText(file);
        if (IsJsonLines(file))
        {
            int line = 0;
            while (ReadLine(reader, file) is { } l)
            {
                line++;
                if (string.IsNullOrWhiteSpace(l)) continue;
                string? text;
                try { text = (JsonNode.Parse(l) as JsonObject)?["text"]?.GetValue<string>(); }
                catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
                {
                    throw new InvalidDataException($"{file}:{line}: not a JSON object with a string 'text' ({e.Message})");
                }
                if (text is null) throw new InvalidDataException($"{file}:{line}: no string field 'text'");
                if (text.Length > 0) yield return text;
            }
            yield break;
        }
        string all;
        try { all = reader.ReadToEnd(); }
        catch (Exception e) when (e is DecoderFallbackException or InvalidDataException) { throw Bad(file, e); }
        switch (mode)
        {
            case DocumentMode.File:
                if (all.Length > 0) yield return all;
                break;
            case DocumentMode.Line:
                foreach (var l in all.Split('\n'))
                    if (l.TrimEnd('\r').Length > 0) yield return l.TrimEnd('\r');
                break;
            case DocumentMode.Paragraph:
                var sb = new StringBuilder();
                foreach (var raw in all.Split('\n'))
                {
                    var l = raw.TrimEnd('\r');
                    if (l.Trim().Length == 0)
                    {
                        if (sb.Length > 0) { yield return sb.ToString(); sb.Clear(); }
                        continue;
                    }
                    if (sb.Length > 0) sb.Append('\n');
                    sb.Append(l);
                }
                if (sb.Length > 0) yield return sb.ToString();
                break;
        }
    }

    static string? ReadLine(StreamReader r, string file)
    {
        try { return r.ReadLine(); }
        catch (Exception e) when (e is DecoderFallbackException or InvalidDataException) { throw Bad(file, e); }
    }

    static InvalidDataException Bad(string file, Exception e) =>
        new($"{file}: not valid {(IsGzip(file) ? "gzip-compressed " : "")}UTF-8 text ({e.Message})", e);
}
