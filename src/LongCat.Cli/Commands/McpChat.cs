using System.Text;
using System.Text.Json;
using LongCat.Inference;
using LongCat.Model;
using LongCat.Tokenization;
using Microsoft.Extensions.AI;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;

namespace LongCat.Cli.Commands;

/// <summary>
/// <c>longcat chat --mcp "COMMAND ARGS"</c>: starts each MCP server over stdio, offers the tools of all of them to
/// the model (LongCat's tool format) and runs the conversation through <see cref="FunctionInvokingChatClient"/>
/// over <see cref="LongCatChatClient"/>: a call the model makes is sent to its server, the result goes back to
/// the model, until it answers. Calls and results are shown on stderr, the answer on stdout.
/// </summary>
public static class McpChat
{
    /// <summary>Splits "COMMAND ARGS" as a shell would for plain words and double or single quotes.</summary>
    public static List<string> SplitCommandLine(string s)
    {
        var parts = new List<string>();
        var cur = new StringBuilder();
        bool any = false;
        char quote = '\0';
        foreach (char c in s)
        {
            if (quote != '\0')
            {
                if (c == quote) quote = '\0';
                else cur.Append(c);
            }
            else if (c is '"' or '\'') { quote = c; any = true; }
            else if (char.IsWhiteSpace(c))
            {
                if (any || cur.Length > 0) parts.Add(cur.ToString());
                cur.Clear();
                any = false;
            }
            else cur.Append(c);
        }
        if (quote != '\0') throw new CliException($"--mcp \"{s}\": unclosed quote");
        if (any || cur.Length > 0) parts.Add(cur.ToString());
        if (parts.Count == 0) throw new CliException("--mcp needs a command, e.g. --mcp \"npx -y @modelcontextprotocol/server-everything\"");
        return parts;
    }

    /// <summary>An MCP tool whose result reaches the model as the text the server returned (not the protocol's JSON).</summary>
    sealed class TextResultTool(McpClientTool tool) : DelegatingAIFunction(tool)
    {
        protected override async ValueTask<object?> InvokeCoreAsync(AIFunctionArguments arguments, CancellationToken cancellationToken)
        {
            var r = await tool.CallAsync(arguments, cancellationToken: cancellationToken).ConfigureAwait(false);
            var text = string.Join("\n", r.Content.Select(c => c is TextContentBlock t ? t.Text : JsonSerializer.Serialize(c, ModelContextProtocol.McpJsonUtilities.DefaultOptions)));
            return r.IsError == true ? "Error: " + text : text;
        }
    }

    public static async Task<int> RunAsync(LongCatModel model, Tokenizer tok, GenerationOptions sampling, string? system, IReadOnlyList<string> servers,
        int? context, bool thinkOn, ToolCallStyle style)
    {
        var clients = new List<McpClient>();
        try
        {
            var tools = new List<AITool>();
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var spec in servers)
            {
                var parts = SplitCommandLine(spec);
                McpClient client;
                try
                {
                    client = await McpClient.CreateAsync(new StdioClientTransport(new StdioClientTransportOptions
                    {
                        Command = parts[0],
                        Arguments = parts[1..],
                        Name = Path.GetFileName(parts[0]),
                    }));
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    throw new CliException($"--mcp \"{spec}\": could not start the MCP server: {e.Message}");
                }
                clients.Add(client);
                foreach (var t in await client.ListToolsAsync())
                {
                    if (!names.Add(t.Name)) throw new CliException($"--mcp \"{spec}\": a tool named '{t.Name}' is already offered by another server");
                    tools.Add(new TextResultTool(t));
                }
            }
            Console.Error.WriteLine($"MCP: {tools.Count} tool(s) offered: {string.Join(", ", tools.Select(t => t.Name))}");

            int ctx = context ?? model.Config.MaxPositionEmbeddings;
            using var scheduler = new BatchScheduler(model, new SchedulerOptions { ContextLength = ctx, MaxRunningSequences = 1, KvCacheBytes = 256L << 20 });
            var chat = new LongCatChatClient(new TextGenerator(scheduler, tok), new ChatClientOptions
            {
                DefaultMaxTokens = sampling.MaxTokens,
                MaxTokensLimit = Math.Max(sampling.MaxTokens, ctx - 1),
                ToolCallStyle = style,
                ThinkOn = thinkOn,
                Speculative = sampling.Speculative,
            });
            using var client2 = new FunctionInvokingChatClient(chat);
            var history = new List<ChatMessage>();
            if (system is not null) history.Add(new ChatMessage(ChatRole.System, system));
            ulong turn = 0;
            foreach (var line in ChatCommand.ReadMessages("LongCat chat with tools: type a message; /exit quits."))
            {
                history.Add(new ChatMessage(ChatRole.User, line));
                var options = new ChatOptions
                {
                    Tools = tools,
                    MaxOutputTokens = sampling.MaxTokens,
                    Temperature = sampling.Temperature,
                    TopP = sampling.TopP,
                    TopK = sampling.TopK,
                    FrequencyPenalty = sampling.FrequencyPenalty,
                    PresencePenalty = sampling.PresencePenalty,
                    Seed = (long)(sampling.Seed + turn++),
                    AdditionalProperties = new() { ["min_p"] = sampling.MinP, ["repetition_penalty"] = sampling.RepetitionPenalty },
                };
                var updates = new List<ChatResponseUpdate>();
                await foreach (var u in client2.GetStreamingResponseAsync(history, options))
                {
                    updates.Add(u);
                    foreach (var c in u.Contents)
                    {
                        switch (c)
                        {
                            case TextContent t: Console.Write(t.Text); break;
                            case TextReasoningContent r: Console.Error.Write(r.Text); break;
                            case FunctionCallContent f:
                                Console.Error.WriteLine($"[tool call] {f.Name}({LongCat.Inference.ToolCalls.FromContent(f).Arguments})");
                                break;
                            case FunctionResultContent r:
                                Console.Error.WriteLine($"[tool result] {LongCat.Inference.ToolCalls.ResultText(r)}");
                                break;
                        }
                    }
                    Console.Out.Flush();
                }
                Console.WriteLine();
                history.AddMessages(updates);
            }
            return 0;
        }
        finally
        {
            foreach (var c in clients) await c.DisposeAsync();
        }
    }
}
