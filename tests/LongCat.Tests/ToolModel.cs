using LongCat.Config;
using LongCat.Inference;
using LongCat.Model;
using LongCat.Server;
using LongCat.Tokenization;
using LongCat.Training;
using Microsoft.Extensions.AI;

namespace LongCat.Tests;

/// <summary>
/// A tiny model that really emits a tool call: the server tests' random model (vocab 4096) trained, with the
/// project's own trainer, on one tool-use conversation until greedy decoding reproduces it. Nothing is scripted
/// behind the model: prompts are rendered, tokens generated and replies parsed by the same code as in production,
/// so a tool loop through <see cref="LongCatChatClient"/>, the HTTP server or <c>longcat chat --mcp</c> runs on real
/// generations. The conversation: the "add" tool (schema as Microsoft.Extensions.AI writes it for
/// <c>(int a, int b)</c>), "What is 2 + 3?" → a call of add {"a": 2, "b": 3} → result "5" → "2 + 3 = 5.".
/// Trained once per test run (a few seconds), deterministic.
/// </summary>
public static class ToolModel
{
    public const string Question = "What is 2 + 3?", Answer = "2 + 3 = 5.", ToolName = "add", ToolDescription = "Adds two integers.";
    public const string Arguments = """{"a": 2, "b": 3}""", Result = "5";

    /// <summary>
    /// The JSON schema of the tool's parameters, as Microsoft.Extensions.AI.OpenAI sends it for <c>(int a, int b)</c>
    /// (its strict-mode form); every path of the tests sends this text, so all see the trained prompt.
    /// </summary>
    public const string Schema = """{"type":"object","required":["a","b"],"properties":{"a":{"type":"integer"},"b":{"type":"integer"}},"additionalProperties":false}""";

    /// <summary>The "add" function (a + b) with the trained schema.</summary>
    public static AIFunction AddFunction(Action? called = null) =>
        new WithSchema(AIFunctionFactory.Create((int a, int b) => { called?.Invoke(); return a + b; }, ToolName, ToolDescription), Schema);

    /// <summary>A function with its schema written out (the JSON text decides the prompt's tokens).</summary>
    public sealed class WithSchema(AIFunction inner, string schema) : DelegatingAIFunction(inner)
    {
        readonly System.Text.Json.JsonElement _schema = System.Text.Json.JsonDocument.Parse(schema).RootElement.Clone();
        public override System.Text.Json.JsonElement JsonSchema => _schema;
    }

    /// <summary>The trained conversation.</summary>
    public static List<ChatTurn> Conversation =>
    [
        new(ChatTurn.User, Question),
        new(ChatTurn.Assistant, "") { ToolCalls = [new ToolCall("call_0", ToolName, Arguments)] },
        new(ChatTurn.Tool, Result) { ToolCallId = "call_0" },
        new(ChatTurn.Assistant, Answer),
    ];

    public static ChatRenderOptions RenderOptions => new() { Tools = [new ToolDefinition(ToolName, ToolDescription, Schema)] };

    static readonly Lazy<string> Dir = new(Train);

    /// <summary>The trained model's folder (config.json, model.safetensors, tokenizer.json).</summary>
    public static string ModelDir => Dir.Value;

    static string Train() => Memorize(Conversation, RenderOptions);

    /// <summary>
    /// A folder with the server tests' random model trained on one conversation until greedy decoding reproduces it
    /// (config.json, model.safetensors, tokenizer.json).
    /// </summary>
    internal static string Memorize(IReadOnlyList<ChatTurn> conversation, ChatRenderOptions render)
    {
        var dir = Fixtures.NewTempDir();
        var config = LongCatConfig.Load(Path.Combine(ServerTestSupport.ModelDir, "config.json"));
        var tok = ServerTestSupport.Tokenizer.Value;
        var ids = ChatFormat.EncodeForTraining(tok, conversation, render).Ids;
        using var model = TrainableModel.Random(config, seed: 3, std: 0.02);
        using var opt = new AdamW(model.Parameters, new AdamWOptions { WeightDecay = 0 });
        // About 80 steps reach it (the loss is checked every 10); a few seconds on an idle 2-core machine.
        for (int step = 0; step < 400; step++)
        {
            model.Parameters.ZeroGrads();
            model.ForwardBackward(ids, 1, ids.Length);
            opt.Update(step < 200 ? 1e-2 : 3e-3, 1.0);
            if (step % 10 == 9 && Memorized(model, ids)) break;
        }
        model.Parameters.Save(dir);
        File.Copy(Path.Combine(ServerTestSupport.ModelDir, "tokenizer.json"), Path.Combine(dir, "tokenizer.json"));
        return dir;
    }

    /// <summary>Mean next-token cross-entropy below 0.02: greedy decoding reproduces the replies (the tests check it).</summary>
    static bool Memorized(TrainableModel model, int[] ids)
    {
        var r = model.Loss(ids, 1, ids.Length);
        return r.CrossEntropy < 0.02;
    }

    /// <summary>A served model over the trained weights (greedy by default in the tests' requests).</summary>
    public static ServedModel Serve() =>
        new(LongCatModel.Load(ModelDir), ServerTestSupport.Tokenizer.Value,
            new SchedulerOptions { ContextLength = 2048, KvCacheBytes = 64L << 20 },
            new ChatClientOptions { ModelId = "longcat-tools", DefaultMaxTokens = 64, MaxTokensLimit = 512 });
}
