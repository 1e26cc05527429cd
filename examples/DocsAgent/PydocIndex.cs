using System.IO.Compression;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace LongCat.Examples.DocsAgent;

/// <summary>
/// Every documented name of the Python docs corpus (data/python-docs/corpus.jsonl.gz) with its documentation text: what
/// the <c>lookup_docs</c> tool returns. A port of <c>docs_index</c> in scripts/pydoc_chat.py, the script that builds the
/// chat model's training conversations, so the tool returns exactly the text the model saw as tool results in training.
/// The two rule sets must stay the same (DocsAgentTests.PydocIndexMatchesScriptsPydocChat compares them on the whole
/// corpus): reST directives <c>.. function:: json.dumps(...)</c> (function, class, method, exception, attribute, data,
/// decorator, classmethod, staticmethod) under the module of the last <c>.. module::</c> / <c>.. currentmodule::</c>;
/// a method or attribute without a dot gets the last class's name; the body is the indented lines after the directive
/// (field lists and leading directives skipped, a later directive ends it), reST roles, literals and emphasis
/// simplified, whitespace collapsed; bodies under 20 characters are dropped; the first entry of a name wins; the text is
/// cut to 1,500 code points.
/// </summary>
public sealed class PydocIndex
{
    /// <summary>The longest text a lookup returns, in code points (scripts/pydoc_chat.py: <c>text[:1500]</c>).</summary>
    public const int MaxTextLength = 1500;

    static readonly Regex Directive = new(@"^\.\. (function|class|method|exception|attribute|data|decorator|classmethod|staticmethod)::\s+([\w.]+)", RegexOptions.CultureInvariant);
    static readonly Regex Module = new(@"^\.\. (?:module|currentmodule)::\s+([\w.]+)", RegexOptions.CultureInvariant);
    static readonly Regex Role = new(@":\w+:`~?([^`<]*?)(?:\s*<[^>]*>)?`", RegexOptions.CultureInvariant);
    static readonly Regex Literal = new(@"``([^`]*)``", RegexOptions.CultureInvariant);
    static readonly Regex Emphasis = new(@"\*\*?([^*]+)\*\*?", RegexOptions.CultureInvariant);
    static readonly Regex Spaces = new(@"\s+", RegexOptions.CultureInvariant);

    readonly Dictionary<string, string> _text;

    /// <summary>The documented names, in corpus order.</summary>
    public IReadOnlyList<string> Names { get; }

    PydocIndex(List<(string Name, string Text)> entries)
    {
        Names = entries.Select(e => e.Name).ToList();
        _text = entries.ToDictionary(e => e.Name, e => e.Text, StringComparer.Ordinal);
    }

    /// <summary>Reads the corpus (JSON lines with a "text" field; .gz or plain).</summary>
    public static PydocIndex Load(string corpusPath)
    {
        if (!File.Exists(corpusPath)) throw new FileNotFoundException($"{corpusPath}: the Python docs corpus was not found (pass --corpus FILE)");
        using var file = File.OpenRead(corpusPath);
        using Stream data = corpusPath.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? new GZipStream(file, CompressionMode.Decompress) : file;
        using var reader = new StreamReader(data, Encoding.UTF8);
        var entries = new List<(string, string)>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        int lineNo = 0;
        for (string? line; (line = reader.ReadLine()) is not null;)
        {
            lineNo++;
            string text;
            try
            {
                using var doc = JsonDocument.Parse(line);
                text = doc.RootElement.GetProperty("text").GetString() ?? throw new InvalidDataException($"{corpusPath}:{lineNo}: text: must be a string");
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                throw new InvalidDataException($"{corpusPath}:{lineNo}: not a JSON object with a string \"text\" ({e.Message})");
            }
            foreach (var (name, body) in Entries(text))
                if (seen.Add(name)) entries.Add((name, Truncate(body, MaxTextLength)));
        }
        return new PydocIndex(entries);
    }

    /// <summary>The entry's text, or null when the name is not documented.</summary>
    public string? Find(string name) => _text.GetValueOrDefault(name);

    /// <summary>The most a <c>lookup_docs</c> result holds of an entry, in code points (scripts/pydoc_chat.py: <c>RESULT_CHARS</c>).</summary>
    public const int MaxResultLength = 400;

    /// <summary>
    /// The <c>lookup_docs</c> result for a name, as the chat model was trained with it (scripts/pydoc_chat.py:
    /// <c>tool_result</c> and <c>not_found</c>): the entry's text, cut to <see cref="MaxResultLength"/> code points at
    /// the last space followed by " ..." when longer, or a sentence saying there is none.
    /// </summary>
    public string Lookup(string name)
    {
        if (Find(name) is not { } text) return $"No documentation found for {name}.";
        string cut = Truncate(text, MaxResultLength);
        if (cut.Length == text.Length) return text;
        int space = cut.LastIndexOf(' ');
        return (space >= 0 ? cut[..space] : cut) + " ...";
    }

    /// <summary>The entries of one document (scripts/pydoc_chat.py: <c>entries</c>), duplicates included.</summary>
    static IEnumerable<(string Name, string Text)> Entries(string document)
    {
        var lines = document.Split('\n');
        string? module = null, cls = null;
        for (int i = 0; i < lines.Length; i++)
        {
            var m = Module.Match(lines[i]);
            if (m.Success)
            {
                module = m.Groups[1].Value;
                cls = null;
                continue;
            }
            var d = Directive.Match(lines[i]);
            if (!d.Success || module is null) continue;
            string kind = d.Groups[1].Value, name = d.Groups[2].Value;
            if (kind is "class" or "exception") cls = name.Split('.')[^1];
            if (kind is "method" or "attribute" or "classmethod" or "staticmethod" && !name.Contains('.') && !string.IsNullOrEmpty(cls)) name = cls + "." + name;
            string full = name.StartsWith(module + ".", StringComparison.Ordinal) ? name : module + "." + name;
            var body = new List<string>();
            for (int j = i + 1; j < lines.Length && (PyStrip(lines[j]).Length == 0 || lines[j].StartsWith("   ", StringComparison.Ordinal)); j++)
            {
                string s = PyStrip(lines[j]);
                if (s.StartsWith(':') || (s.StartsWith(".. ", StringComparison.Ordinal) && body.Count == 0)) continue;
                if (s.StartsWith(".. ", StringComparison.Ordinal)) break;
                body.Add(s);
            }
            string text = Clean(string.Join(" ", body));
            if (CodePoints(text) >= 20) yield return (full, text);
        }
    }

    /// <summary>scripts/pydoc_chat.py: <c>clean</c>.</summary>
    static string Clean(string text)
    {
        text = Role.Replace(text, "$1");
        text = Literal.Replace(text, "$1");
        text = Emphasis.Replace(text, "$1");
        return PyStrip(Spaces.Replace(text, " "));
    }

    /// <summary>Python's <c>str.strip()</c>: removes leading and trailing characters for which <c>str.isspace()</c> is true.</summary>
    static string PyStrip(string s)
    {
        int a = 0, b = s.Length;
        while (a < b && IsPySpace(s[a])) a++;
        while (b > a && IsPySpace(s[b - 1])) b--;
        return s[a..b];
    }

    /// <summary>Python's <c>str.isspace()</c> for one character: the whitespace of .NET plus the separators U+001C..U+001F.</summary>
    static bool IsPySpace(char c) => char.IsWhiteSpace(c) || c is >= '\u001c' and <= '\u001f';

    static int CodePoints(string s) => s.EnumerateRunes().Count();

    /// <summary>The first <paramref name="max"/> code points of <paramref name="s"/> (Python slices code points, not UTF-16 units).</summary>
    static string Truncate(string s, int max)
    {
        int units = 0, n = 0;
        foreach (var r in s.EnumerateRunes())
        {
            if (n++ == max) return s[..units];
            units += r.Utf16SequenceLength;
        }
        return s;
    }

    /// <summary>A corpus path: <paramref name="given"/>, else data/python-docs/corpus.jsonl.gz under the current folder or a folder above the executable.</summary>
    public static string ResolveCorpus(string? given)
    {
        if (given is not null) return given;
        const string rel = "data/python-docs/corpus.jsonl.gz";
        foreach (var root in LongCat.IO.DemoModels.SearchRoots())
        {
            var p = Path.Combine(root, rel);
            if (File.Exists(p)) return Path.GetFullPath(p);
        }
        throw new FileNotFoundException($"the Python docs corpus ({rel}) was not found under {Directory.GetCurrentDirectory()} or above the executable: run from the repository root or pass --corpus FILE");
    }
}
