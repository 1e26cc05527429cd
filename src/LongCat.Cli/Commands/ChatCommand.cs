using System.CommandLine;
using LongCat.IO;
using LongCat.Inference;
using LongCat.Model;
using LongCat.Tokenization;

namespace LongCat.Cli.Commands;

/// <summary><c>longcat chat</c>: an interactive REPL in the LongCat chat format.</summary>
public static class ChatCommand
{
    public static Command Create()
    {
        var model = CliSupport.ModelOption("Checkpoint folder with tokenizer.json.", DemoModelKind.Chat);
        var tokenizer = new Option<string?>("--tokenizer") { Description = "tokenizer.json (or its folder) when the model folder has none." };
        var system = new Option<string?>("--system") { Description = "System prompt, placed before round 0." };
        var ctx = new Option<int?>("--context") { Description = "Context length; default: max_position_embeddings." };
        var mcp = new Option<string[]>("--mcp") { Description = "Start an MCP server over stdio (\"COMMAND ARGS\", repeatable) and offer its tools to the model." };
        var thinkOn = new Option<bool>("--think-on") { Description = "Append \" /think_on\" to your message (LongCat-Flash-Thinking's switch for a reasoning trace)." };
        var sampling = new GenerateCommand.SamplingOptions();
        var cmd = new Command("chat", "Chat with a model in the LongCat format ([Round N] USER:... ASSISTANT:...</longcat_s>). Commands: /reset, /system TEXT, /exit.")
        {
            model, tokenizer, system, ctx, mcp, thinkOn,
        };
        sampling.AddTo(cmd);
        cmd.SetAction(p => CliSupport.Run(p, () =>
        {
            var dir = CliSupport.ResolveModel(p.GetValue(model), DemoModelKind.Chat);
            var tok = GenerateCommand.LoadTokenizer(dir, p.GetValue(tokenizer), required: true)!;
            using var m = LongCatModel.Load(dir);
            var options = sampling.Read(p, m, tok);
            if (p.GetValue(mcp) is { Length: > 0 } servers)
                return McpChat.RunAsync(m, tok, options, p.GetValue(system), servers, p.GetValue(ctx), p.GetValue(thinkOn), ToolCallFormat.StyleOfModel(dir))
                    .GetAwaiter().GetResult();
            var render = new ChatRenderOptions { ThinkOn = p.GetValue(thinkOn) };
            var turns = new List<ChatTurn>();
            string? sys = p.GetValue(system);
            void Reset() { turns.Clear(); if (sys is not null) turns.Add(new ChatTurn(ChatTurn.System, sys)); }
            Reset();
            ulong turn = 0;
            foreach (var line in ReadMessages("LongCat chat: type a message; /reset clears the conversation, /exit quits."))
            {
                if (line.Trim() == "/reset") { Reset(); continue; }
                if (line.StartsWith("/system ", StringComparison.Ordinal)) { sys = line[8..]; Reset(); continue; }
                turns.Add(new ChatTurn(ChatTurn.User, line));
                var ids = ChatFormat.EncodePrompt(tok, turns, render);   // as trained, served and evaluated: no <s> (ChatFormat)
                // A different seed per turn, derived from the given one: reproducible conversations.
                var session = new GenerationSession(m, ids, options with { Seed = options.Seed + turn++ }, p.GetValue(ctx));
                var decoder = new TokenStreamDecoder(tok, skipSpecialTokens: true);
                var reply = new List<int>();
                foreach (var t in session.Generate())
                {
                    if (options.StopTokenIds.Contains(t.Id)) continue;
                    reply.Add(t.Id);
                    Console.Write(decoder.Append(t.Id));
                    Console.Out.Flush();
                }
                Console.WriteLine(decoder.Flush());
                GenerateCommand.PrintStats(session.Result!);
                turns.Add(new ChatTurn(ChatTurn.Assistant, tok.Decode([.. reply], skipSpecialTokens: true)));
            }
            return 0;
        }));
        return cmd;
    }

    /// <summary>
    /// The chat prompt loop (plain and MCP chat): each non-blank input line until "/exit" or the end of input, with
    /// <paramref name="banner"/> and a "> " prompt when a person is typing.
    /// </summary>
    internal static IEnumerable<string> ReadMessages(string banner)
    {
        bool interactive = !Console.IsInputRedirected;
        if (interactive) Console.Error.WriteLine(banner);
        while (true)
        {
            if (interactive) Console.Write("> ");
            var line = Console.ReadLine();
            if (line is null || line.Trim() == "/exit") yield break;
            if (line.Trim().Length > 0) yield return line;
        }
    }
}
