using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using LongCat.Examples.DocsAgent;
using LongCat.Tokenization;

namespace LongCat.Tests;

/// <summary>
/// examples/DocsAgent: its docs index is scripts/pydoc_chat.py's (the tool returns what the chat model was trained on),
/// and the program runs its IChatClient + FunctionInvokingChatClient loop end to end on a tiny model trained to call
/// lookup_docs.
/// </summary>
public class DocsAgentTests
{
    static string Corpus => Path.Combine(Fixtures.RepoRoot, "data", "python-docs", "corpus.jsonl.gz");

    /// <summary>A gzip JSONL corpus of the given documents.</summary>
    static string WriteCorpus(params string[] documents)
    {
        var path = Path.Combine(Fixtures.NewTempDir(), "corpus.jsonl.gz");
        using var gz = new GZipStream(File.Create(path), CompressionLevel.Fastest);
        using var w = new StreamWriter(gz, new UTF8Encoding(false));
        foreach (var d in documents) w.Write(new JsonObject { ["text"] = d }.ToJsonString() + "\n");
        return path;
    }

    static (int Exit, string Out, string Err) Run(string exe, params string[] args)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        Assert.True(p.WaitForExit(300_000));
        return (p.ExitCode, output, err.GetAwaiter().GetResult());
    }

    static (int Exit, string Out, string Err) Agent(params string[] args) =>
        Run("dotnet", ["exec", Path.Combine(AppContext.BaseDirectory, "DocsAgent.dll"), .. args]);

    [Fact]
    public void PydocIndexMatchesScriptsPydocChat()
    {
        // The whole corpus, both extractors: same names in the same order, same texts.
        var json = Path.Combine(Fixtures.NewTempDir(), "index.json");
        var (exit, _, err) = Run("python3", Path.Combine(Fixtures.RepoRoot, "scripts", "pydoc_chat.py"), "--corpus", Corpus, "--index", json);
        Assert.True(exit == 0, $"python3 scripts/pydoc_chat.py --index failed: {err}");
        var expected = JsonNode.Parse(File.ReadAllText(json))!.AsArray().Select(e => ((string)e![0]!, (string)e[1]!)).ToList();
        var index = PydocIndex.Load(Corpus);
        Assert.True(expected.Count > 5000, $"{expected.Count} entries");
        Assert.Equal(expected.Select(e => e.Item1), index.Names);
        foreach (var (name, text) in expected) Assert.True(text == index.Find(name), $"{name}: texts differ");
        Assert.Contains("to a JSON formatted str", index.Find("json.dumps"));
    }

    [Fact]
    public void PydocChatTrainingFilesNeverNameAHeldOutName()
    {
        // The demo model's targets are measured on held-out names: no training file may ask about one or call the tool
        // with one (every stage's file, the made-up names of the mixtures and the copying stage's look-alikes included),
        // and the eval files ask only about held-out names, the unseen-phrasing file only in the held-out phrasings.
        var dir = Fixtures.NewTempDir();
        var (exit, output, err) = Run("python3", Path.Combine(Fixtures.RepoRoot, "scripts", "pydoc_chat.py"), "--corpus", Corpus, "--out", dir);
        Assert.True(exit == 0, $"python3 scripts/pydoc_chat.py failed: {err}");
        var held = File.ReadAllLines(Path.Combine(dir, "heldout-names.txt")).Where(l => l.Length > 0).ToHashSet(StringComparer.Ordinal);
        Assert.True(held.Count > 400, $"{held.Count} held-out names ({output})");
        var documented = PydocIndex.Load(Corpus).Names.ToHashSet(StringComparer.Ordinal);
        Assert.Subset(documented, held);
        // A dotted name in a user's question: starts at a letter or underscore not preceded by a name character.
        var dotted = new System.Text.RegularExpressions.Regex(@"(?<![\w.])[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+");
        var heldWords = new System.Text.RegularExpressions.Regex(@"\b(summary|sentence)\b", System.Text.RegularExpressions.RegexOptions.IgnoreCase);
        static IEnumerable<JsonNode> Messages(string file) =>
            File.ReadLines(file).SelectMany(l => JsonNode.Parse(l)!["messages"]!.AsArray().Select(m => m!));
        static IEnumerable<string> CallNames(JsonNode m) =>
            m["tool_calls"]?.AsArray().Select(c => (string)JsonNode.Parse((string)c!["function"]!["arguments"]!)!["name"]!) ?? [];
        foreach (var file in new[] { "sft.jsonl", "sft-calls.jsonl", "sft-roundtrips.jsonl", "sft-mix.jsonl", "sft-copy.jsonl", "sft-copy2.jsonl", "sft-copy3.jsonl" })
        {
            int conversations = File.ReadLines(Path.Combine(dir, file)).Count(), calls = 0, undocumented = 0;
            Assert.True(conversations > 1000, $"{file}: {conversations} conversations");
            foreach (var m in Messages(Path.Combine(dir, file)))
            {
                if ((string?)m["role"] == "user")
                {
                    var question = (string)m["content"]!;
                    foreach (System.Text.RegularExpressions.Match x in dotted.Matches(question))
                        Assert.False(held.Contains(x.Value.TrimEnd('.')), $"{file}: a question names held-out {x.Value}");
                    // Nor is it asked in the held-out phrasings' words (a name may contain them: "collections.abc.Summary").
                    Assert.False(heldWords.IsMatch(dotted.Replace(question, "")), $"{file}: a question in a held-out phrasing's words: {question}");
                }
                foreach (var name in CallNames(m))
                {
                    calls++;
                    Assert.False(held.Contains(name), $"{file}: a call names held-out {name}");
                    if (!documented.Contains(name)) undocumented++;
                }
            }
            Assert.True(calls > 1000, $"{file}: {calls} calls");
            // The copying stages are mostly calls on look-alike names that are documented nowhere.
            if (file.StartsWith("sft-copy")) Assert.True(undocumented > calls / 2, $"{file}: {undocumented} of {calls} calls on undocumented names");
        }
        foreach (var file in new[] { "eval-heldout.jsonl", "eval-heldout-newphrasing.jsonl" })
        {
            int items = 0;
            foreach (var line in File.ReadLines(Path.Combine(dir, file)))
            {
                var row = JsonNode.Parse(line)!;
                var question = (string)row["messages"]![0]!["content"]!;
                Assert.Contains(dotted.Matches(question).Select(x => x.Value.TrimEnd('.')), held.Contains);
                if (file.Contains("newphrasing"))
                    Assert.True(question.StartsWith("Give me a short summary of ") || question.StartsWith("In one sentence, what is "), question);
                items++;
            }
            Assert.Equal(2 * held.Count, items);
        }
    }

    [Fact]
    public void PydocIndexRulesOnAHandMadeDocument()
    {
        string emoji = "\U0001F600";
        var corpus = WriteCorpus(
            """
            .. module:: spam
            .. function:: eggs(x)

               :param x: skipped (a field list)
               Return :func:`spam.ham` of *x*, as ``int``.

            .. class:: Can(size)

               A can of spam, with a size.

            .. method:: open()

               Open the can and return its contents.

            .. function:: tiny()

               Too short.

            .. currentmodule:: spam.sub
            .. data:: LONG

            """ + "   " + string.Concat(Enumerable.Repeat("a" + emoji, 800)) + "\n",
            ".. module:: spam\n.. function:: eggs(y)\n\n   A second entry of the same name, ignored.\n");
        var index = PydocIndex.Load(corpus);
        Assert.Equal(["spam.eggs", "spam.Can", "spam.Can.open", "spam.sub.LONG"], index.Names);
        Assert.Equal("Return spam.ham of x, as int.", index.Find("spam.eggs"));
        Assert.Equal("Open the can and return its contents.", index.Find("spam.Can.open"));
        Assert.Null(index.Find("spam.tiny"));
        // Cut at 1,500 code points (not UTF-16 units): 750 "a" + 750 emoji.
        var longText = index.Find("spam.sub.LONG")!;
        Assert.Equal(PydocIndex.MaxTextLength, longText.EnumerateRunes().Count());
        Assert.EndsWith(emoji, longText);
        Assert.Equal("No documentation found for spam.nope.", index.Lookup("spam.nope"));
        // lookup_docs returns at most 400 code points, cut at the last space, then " ..." (scripts/pydoc_chat.py: tool_result)
        Assert.Equal("Return spam.ham of x, as int.", index.Lookup("spam.eggs"));
        Assert.Equal(string.Concat(Enumerable.Repeat("a" + emoji, 200)) + " ...", index.Lookup("spam.sub.LONG")); // 400 code points, no space to cut at
    }

    [Fact]
    public void LookupCutsLongEntriesAtAWordLikeTheTrainingData()
    {
        var words = string.Join(' ', Enumerable.Range(0, 200).Select(i => $"w{i}")); // "w0 w1 ... w199": 889 characters
        var index = PydocIndex.Load(WriteCorpus(".. module:: m\n.. function:: f()\n\n   " + words + "\n"));
        string cut = words[..400];
        Assert.Equal(cut[..cut.LastIndexOf(' ')] + " ...", index.Lookup("m.f"));
    }

    const string Question = "What does json.dumps do?", Answer = "It serializes obj to a JSON formatted str.";
    const string DumpsDoc = "Serialize obj to a JSON formatted str using this conversion table.";

    /// <summary>The server tests' random model trained on one lookup_docs round trip with the agent's exact tool.</summary>
    static readonly Lazy<string> AgentModel = new(() => ToolModel.Memorize(
        [
            new(ChatTurn.User, Question),
            new(ChatTurn.Assistant, "") { ToolCalls = [new ToolCall("call_0", LookupDocs.Name, """{"name": "json.dumps"}""")] },
            new(ChatTurn.Tool, DumpsDoc) { ToolCallId = "call_0" },
            new(ChatTurn.Assistant, Answer),
        ],
        new ChatRenderOptions { Tools = [new ToolDefinition(LookupDocs.Name, LookupDocs.Description, LookupDocs.Schema)] }));

    [Fact]
    public void TheAgentCallsLookupDocsAndAnswersFromItsResult()
    {
        var corpus = WriteCorpus($".. module:: json\n.. function:: dumps(obj)\n\n   {DumpsDoc}\n");
        var (exit, output, err) = Agent(Question, "--model", AgentModel.Value, "--corpus", corpus, "--max-tokens", "64");
        Assert.True(exit == 0, err);
        Assert.Equal(
            [
                $"question:    {Question}",
                """tool call:   lookup_docs({"name": "json.dumps"})""",
                $"tool result: {DumpsDoc}",
                $"answer:      {Answer}",
            ],
            output.TrimEnd('\n').Split('\n'));
        Assert.Contains("1 documented names", err);
    }

    [Theory]
    [InlineData("--bogus", "unknown option '--bogus'")]
    [InlineData("--max-tokens", "--max-tokens needs a value")]
    [InlineData("", "no question given")]
    public void BadArgumentsAreOneLineErrors(string arg, string message)
    {
        var (exit, _, err) = Agent(arg == "" ? [] : ["What?", arg]);
        Assert.Equal(1, exit);
        Assert.Contains(message, err);
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void AMissingModelOrCorpusIsNamed()
    {
        var (exit, _, err) = Agent("What?", "--model", "/nonexistent/model", "--corpus", WriteCorpus(".. module:: m\n"));
        Assert.Equal(1, exit);
        Assert.Contains("/nonexistent/model", err);
        (exit, _, err) = Agent("What?", "--corpus", "/nonexistent/corpus.jsonl.gz");
        Assert.Equal(1, exit);
        Assert.Contains("/nonexistent/corpus.jsonl.gz", err);
    }

    [Fact]
    public void ShortenKeepsShortTextsAndSaysHowLongALongOneWas()
    {
        Assert.Equal("abc", LookupDocs.Shorten("abc", 5));
        Assert.Equal("abcde… (1,000 characters)", LookupDocs.Shorten("abcde" + new string('x', 995), 5));
    }
}
