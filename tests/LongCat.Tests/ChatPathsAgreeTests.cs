using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using LongCat.Evaluation;
using LongCat.Inference;
using LongCat.Server;
using LongCat.Tokenization;
using LongCat.Training;
using Microsoft.Extensions.AI;

namespace LongCat.Tests;

/// <summary>
/// One conversation, every path that turns it into ids: <c>data prepare --format chat</c> (training), <c>longcat eval
/// chat</c>, the server's request parsing + <see cref="LongCatChatClient"/>, the IChatClient messages that MCP chat and
/// examples/DocsAgent send, and <c>longcat chat</c>. All give the same prompt ids (no &lt;s&gt; in any of them: the rule
/// lives in <see cref="ChatFormat"/>), in the model folder's tool-call syntax (here XML, set in its tokenizer_config.json,
/// so a path that ignored it would differ).
/// </summary>
public class ChatPathsAgreeTests
{
    const string Tool = """{"type": "function", "function": {"name": "lookup_docs", "description": "Returns the documentation of a Python name.", "parameters": {"type": "object", "properties": {"name": {"type": "string", "description": "dotted Python name"}}, "required": ["name"]}}}""";
    const string System = "Answer from the docs.", Question = "What does json.dumps do?", Result = "Serialize obj to a JSON formatted str.", Answer = "It serializes obj to a JSON string.";

    /// <summary>The conversation so far (the model answers next), as OpenAI JSON messages.</summary>
    static readonly string Prompt = """
        [{"role": "system", "content": "SYSTEM"}, {"role": "user", "content": "QUESTION"},
         {"role": "assistant", "content": null, "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": "lookup_docs", "arguments": "{\"name\": \"json.dumps\"}"}}]},
         {"role": "tool", "tool_call_id": "call_0", "content": "RESULT"}]
        """.Replace("SYSTEM", System).Replace("QUESTION", Question).Replace("RESULT", Result);

    /// <summary>The server test model in a folder whose tokenizer_config.json asks for the XML tool-call syntax.</summary>
    static readonly Lazy<string> XmlModel = new(() =>
    {
        var dir = Fixtures.NewTempDir();
        foreach (var f in Directory.GetFiles(ServerTestSupport.ModelDir)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{"bos_token": "<s>", "eos_token": "</s>", "tool_call_format": "xml"}""");
        return dir;
    });

    static JsonElement Json(string s) => JsonDocument.Parse(s).RootElement;

    /// <summary>The ids of the trained conversation (prompt + answer) as <c>data prepare --format chat</c> stores them.</summary>
    static (int[] Ids, byte[] Mask) Training()
    {
        var file = Path.Combine(Fixtures.NewTempDir(), "chat.jsonl");
        var messages = JsonNode.Parse(Prompt)!.AsArray();
        messages.Add(new JsonObject { ["role"] = "assistant", ["content"] = Answer });
        File.WriteAllText(file, new JsonObject { ["messages"] = messages, ["tools"] = new JsonArray(JsonNode.Parse(Tool)) }.ToJsonString() + "\n");
        var outDir = Fixtures.NewTempDir();
        TokenDataWriter.PrepareChat(XmlModel.Value, [file], outDir, new DataPrepareOptions { ValidationFraction = 0 });
        using var train = TokenDataset.Open(outDir, "train");
        Assert.Equal(1, train.DocumentCount);
        int len = (int)train.DocumentStarts[1];
        var ids = new int[len]; var mask = new byte[len];
        train.CopyTokens(0, ids); train.CopyMask(0, mask);
        return (ids, mask);
    }

    [Fact]
    public void TrainingEvalServerAndChatClientGiveTheSamePromptIds()
    {
        var tok = Tokenizer.Load(Path.Combine(XmlModel.Value, "tokenizer.json"));
        int bos = tok.BosTokenId!.Value;

        // Eval: the item's prompt as `longcat eval chat` renders it.
        var item = Json($$"""{"messages": {{Prompt}}, "tools": [{{Tool}}], "reference": "{{Answer}}"}""");
        using var eval = new Evaluator(XmlModel.Value, tok, new EvalOptions());
        var (evalIds, render) = eval.ChatPrompt(ChatData.Parse(item, "eval.jsonl", 1, requireAssistant: false));
        Assert.Equal(ToolCallStyle.Xml, render.ToolCallStyle);

        // Server: the request parsed as /v1/chat/completions parses it, encoded by the served model's client.
        using var served = ServedModel.Load(XmlModel.Value, null, new SchedulerOptions { ContextLength = 1024, KvCacheBytes = 16L << 20 },
            new ChatClientOptions { ModelId = "m", DefaultMaxTokens = 4, MaxTokensLimit = 64 });
        var req = OpenAIRequest.ParseChat(Json($$"""{"messages": {{Prompt}}, "tools": [{{Tool}}]}"""));
        var serverIds = served.Client.EncodePrompt(req.Messages, req.Options);

        // IChatClient (MCP chat, examples/DocsAgent): Microsoft.Extensions.AI messages as FunctionInvokingChatClient builds them.
        var schema = JsonNode.Parse(Tool)!["function"]!["parameters"]!.ToJsonString();
        var fn = new ToolModel.WithSchema(AIFunctionFactory.Create((string name) => Result, "lookup_docs", "Returns the documentation of a Python name."), schema);
        List<ChatMessage> history =
        [
            new(ChatRole.System, System), new(ChatRole.User, Question),
            new(ChatRole.Assistant, [new FunctionCallContent("call_0", "lookup_docs", new Dictionary<string, object?> { ["name"] = "json.dumps" })]),
            new(ChatRole.Tool, [new FunctionResultContent("call_0", Result)]),
        ];
        var clientIds = served.Client.EncodePrompt(history, new ChatOptions { Tools = [fn] });

        // Training: the stored conversation starts with the same ids, and the answer is trained from there on.
        var (trainIds, mask) = Training();

        Assert.Equal(evalIds, serverIds);
        Assert.Equal(evalIds, clientIds);
        Assert.Equal(evalIds, trainIds[..evalIds.Length]);
        Assert.Equal(0, mask[evalIds.Length - 1]);
        Assert.Equal(1, mask[evalIds.Length]);
        Assert.NotEqual(bos, evalIds[0]);
        Assert.DoesNotContain(bos, trainIds);
        Assert.Contains("<longcat_arg_key>", tok.Decode(trainIds));   // the XML syntax of the folder, in training too
    }

    [Fact]
    public async Task LongcatChatPromptsWithTheChatFormatIdsAndNoBos()
    {
        // `longcat chat` prints "prompt N tok" per reply: N is the length of ChatFormat.EncodePrompt of the conversation.
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "exec", Path.Combine(AppContext.BaseDirectory, "longcat.dll"), "chat", "--model", XmlModel.Value, "--system", System, "--max-tokens", "2", "--temperature", "0" })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        p.StandardInput.WriteLine(Question);
        p.StandardInput.Close();
        var errTask = p.StandardError.ReadToEndAsync();
        var reply = (await p.StandardOutput.ReadToEndAsync()).TrimEnd('\n');
        Assert.True(p.WaitForExit(120_000));
        var err = await errTask;
        Assert.True(p.ExitCode == 0, err);
        var tok = Tokenizer.Load(Path.Combine(XmlModel.Value, "tokenizer.json"));
        var ids = ChatFormat.EncodePrompt(tok, [new ChatTurn(ChatTurn.System, System), new ChatTurn(ChatTurn.User, Question)]);
        Assert.Contains($"prompt {ids.Length} tok", err);
        Assert.NotEqual(tok.BosTokenId, ids[0]);

        // And the reply is the greedy continuation of exactly those ids.
        using var model = LongCat.Model.LongCatModel.Load(XmlModel.Value);
        var stops = new[] { model.Config.EosTokenId, tok.TokenToId(ChatFormat.EndOfTurn)!.Value };
        var greedy = new GenerationSession(model, ids, new GenerationOptions { Temperature = 0, MaxTokens = 2, StopTokenIds = stops }).Run().Where(t => !stops.Contains(t)).ToArray();
        Assert.Equal(tok.Decode(greedy, skipSpecialTokens: true), reply);
    }
}
