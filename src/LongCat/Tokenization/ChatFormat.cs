using System.Globalization;
using System.Text;

namespace LongCat.Tokenization;

/// <summary>
/// One message of a conversation: role "system", "user", "assistant" or "tool" (OpenAI's names) and its text.
/// An assistant turn may carry <see cref="ToolCalls"/> (rendered after its text); a tool turn is a tool's result,
/// <see cref="ToolCallId"/> naming the call it answers.
/// </summary>
public sealed record ChatTurn(string Role, string Content)
{
    public const string System = "system", User = "user", Assistant = "assistant", Tool = "tool";

    /// <summary>The calls an assistant turn made, in order (empty for other roles).</summary>
    public IReadOnlyList<ToolCall> ToolCalls { get; init; } = [];

    /// <summary>For a tool turn: the id of the call whose result this is (informational: the format does not show it).</summary>
    public string? ToolCallId { get; init; }
}

/// <summary>What a rendering adds to the conversation: the tools offered, their call syntax, the thinking switch.</summary>
public sealed record ChatRenderOptions
{
    /// <summary>Tools offered to the model; none renders the plain format (also for tool_choice "none").</summary>
    public IReadOnlyList<ToolDefinition> Tools { get; init; } = [];
    /// <summary>How tool calls are written (per model: <see cref="ToolCallFormat.StyleOfModel"/>).</summary>
    public ToolCallStyle ToolCallStyle { get; init; }
    /// <summary>Append the Thinking model card's " /think_on" to the last user message of a generation prompt.</summary>
    public bool ThinkOn { get; init; }

    public static readonly ChatRenderOptions Default = new();
}

/// <summary>Ids of an encoded conversation and, per id, whether training computes a loss on it.</summary>
/// <param name="Ids">Token ids.</param>
/// <param name="Trainable">True for assistant reply tokens (text and tool calls) and their end-of-turn token.</param>
public sealed record EncodedChat(int[] Ids, bool[] Trainable);

/// <summary>
/// LongCat-Flash's chat format (spec section 3; LongCat-Flash-Chat model card):
/// <c>SYSTEM:{system} [Round 0] USER:{q0} ASSISTANT:{a0}&lt;/longcat_s&gt; [Round 1] USER:{q1} ASSISTANT:</c>.
/// The system prompt is optional and goes before round 0; parts are joined by one space; an assistant turn
/// ends with <c>&lt;/longcat_s&gt;</c>. Used by chat, the server and the instruction-data pipeline, so that
/// training and inference see the same ids.
/// </summary>
public static class ChatFormat
{
    /// <summary>The end-of-turn token.</summary>
    public const string EndOfTurn = LongCatTokenizerSpec.EndOfTurn;

    /// <summary>The same format as a Jinja chat template (written into tokenizer_config.json by the trainer).</summary>
    public const string JinjaTemplate =
        "{%- set ns = namespace(sys='', round=0, started=false) -%}" +
        "{%- for m in messages -%}{%- if m['role'] == 'system' -%}{%- set ns.sys = ns.sys + ('\\n' if ns.sys else '') + m['content'] -%}{%- endif -%}{%- endfor -%}" +
        "{%- if ns.sys -%}{{- 'SYSTEM:' + ns.sys -}}{%- set ns.started = true -%}{%- endif -%}" +
        "{%- for m in messages -%}" +
        "{%- if m['role'] == 'user' -%}{{- (' ' if ns.started else '') + '[Round ' + ns.round|string + '] USER:' + m['content'] -}}{%- set ns.started = true -%}" +
        "{%- if not loop.last or add_generation_prompt -%}{{- ' ASSISTANT:' -}}{%- endif -%}" +
        "{%- elif m['role'] == 'assistant' -%}{{- m['content'] + '</longcat_s>' -}}{%- set ns.round = ns.round + 1 -%}" +
        "{%- endif -%}{%- endfor -%}";

    /// <summary>A rendered piece: text, and whether it is assistant output (trainable).</summary>
    readonly record struct Segment(string Text, bool Assistant);

    /// <summary>
    /// Renders <paramref name="turns"/> as text. With <paramref name="addGenerationPrompt"/>, a final user turn
    /// ends with " ASSISTANT:" so the model continues with the reply.
    /// </summary>
    public static string Render(IReadOnlyList<ChatTurn> turns, bool addGenerationPrompt = true, ChatRenderOptions? options = null) =>
        string.Concat(Segments(turns, addGenerationPrompt, options ?? ChatRenderOptions.Default).Select(s => s.Text));

    /// <summary>
    /// Ids of the prompt for generation: the conversation so far plus " ASSISTANT:". Encoded segment by segment
    /// exactly as <see cref="EncodeForTraining"/> does, so a model sees the same ids in training and inference.
    /// </summary>
    public static int[] EncodePrompt(Tokenizer tokenizer, IReadOnlyList<ChatTurn> turns, ChatRenderOptions? options = null)
    {
        var ids = new List<int>();
        foreach (var s in Segments(turns, addGenerationPrompt: true, options ?? ChatRenderOptions.Default)) tokenizer.EncodeToIds(s.Text, ids);
        return [.. ids];
    }

    /// <summary>
    /// Ids of a whole conversation for supervised fine-tuning, with the assistant replies (text, tool calls and
    /// end-of-turn tokens) marked trainable; system, user, tool results and the tool description are not. Prompt
    /// and reply are encoded separately, as at inference.
    /// </summary>
    public static EncodedChat EncodeForTraining(Tokenizer tokenizer, IReadOnlyList<ChatTurn> turns, ChatRenderOptions? options = null)
    {
        var ids = new List<int>();
        var mask = new List<bool>();
        foreach (var s in Segments(turns, addGenerationPrompt: false, options ?? ChatRenderOptions.Default))
        {
            int before = ids.Count;
            tokenizer.EncodeToIds(s.Text, ids);
            for (int i = before; i < ids.Count; i++) mask.Add(s.Assistant);
        }
        return new EncodedChat([.. ids], [.. mask]);
    }

    /// <summary>
    /// The conversation as prompt and reply segments. With tools the tool description comes first, then
    /// "\n\n## Messages\n" and the usual rounds. A round's user part is a user message, or the results of the
    /// previous assistant turn's tool calls back to back (<see cref="ToolCallFormat.Response"/>), optionally
    /// followed by a user message on a new line. An assistant reply is its text, then its calls back to back, then
    /// the end-of-turn token.
    /// </summary>
    static List<Segment> Segments(IReadOnlyList<ChatTurn> turns, bool addGenerationPrompt, ChatRenderOptions options)
    {
        var segs = new List<Segment>();
        var prompt = new StringBuilder();
        bool started = false;
        if (options.Tools.Count > 0) prompt.Append(ToolCallFormat.Description(options.Tools, options.ToolCallStyle)).Append("\n\n## Messages\n");
        int i = 0;
        var system = new List<string>();
        while (i < turns.Count && turns[i].Role == ChatTurn.System) system.Add(turns[i++].Content);
        string sys = string.Join("\n", system);
        if (sys.Length > 0) { prompt.Append("SYSTEM:").Append(sys); started = true; }
        int round = 0;
        for (; i < turns.Count; i++)
        {
            var t = turns[i];
            string? previous = i > 0 ? turns[i - 1].Role : null;
            switch (t.Role)
            {
                case ChatTurn.User:
                case ChatTurn.Tool:
                    if (t.Role == ChatTurn.User && previous == ChatTurn.User)
                        throw new ArgumentException($"turn {i}: two user turns in a row; user and assistant must alternate");
                    if (t.Role == ChatTurn.Tool && !(previous == ChatTurn.Tool || (previous == ChatTurn.Assistant && turns[i - 1].ToolCalls.Count > 0)))
                        throw new ArgumentException($"turn {i}: a tool result must follow an assistant turn with tool calls");
                    if (previous is ChatTurn.User or ChatTurn.Tool)
                    {
                        if (t.Role == ChatTurn.User) prompt.Append('\n');    // the user's words after the tool results
                    }
                    else
                    {
                        if (started) prompt.Append(' ');
                        prompt.Append("[Round ").Append(round.ToString(CultureInfo.InvariantCulture)).Append("] USER:");
                        started = true;
                    }
                    prompt.Append(t.Role == ChatTurn.Tool ? ToolCallFormat.Response(t.Content) : t.Content);
                    if (options.ThinkOn && addGenerationPrompt && i + 1 == turns.Count) prompt.Append(ToolCallFormat.ThinkOnSuffix);
                    bool roundEnds = i + 1 == turns.Count ? addGenerationPrompt : turns[i + 1].Role == ChatTurn.Assistant;
                    if (roundEnds) prompt.Append(" ASSISTANT:");
                    break;
                case ChatTurn.Assistant:
                    if (previous is not (ChatTurn.User or ChatTurn.Tool))
                        throw new ArgumentException($"turn {i}: an assistant turn must follow a user turn");
                    segs.Add(new Segment(prompt.ToString(), false));
                    prompt.Clear();
                    var reply = new StringBuilder(t.Content);
                    foreach (var call in t.ToolCalls) reply.Append(ToolCallFormat.Call(call, options.ToolCallStyle));
                    segs.Add(new Segment(reply.Append(EndOfTurn).ToString(), true));
                    round++;
                    break;
                case ChatTurn.System:
                    throw new ArgumentException($"turn {i}: a system turn must come before the first user turn");
                default:
                    throw new ArgumentException($"turn {i}: unknown role '{t.Role}' (system, user, assistant, tool)");
            }
        }
        if (prompt.Length > 0) segs.Add(new Segment(prompt.ToString(), false));
        return segs;
    }

    /// <summary>
    /// Parses text in this format back into turns (the inverse of <see cref="Render"/> for contents that do not
    /// themselves contain the format's markers). Throws <see cref="FormatException"/> where the text deviates.
    /// </summary>
    public static List<ChatTurn> Parse(string text)
    {
        var turns = new List<ChatTurn>();
        int pos = 0;
        string RoundMarker(int r) => $"[Round {r.ToString(CultureInfo.InvariantCulture)}] USER:";
        if (text.StartsWith("SYSTEM:", StringComparison.Ordinal))
        {
            int r0 = text.IndexOf(" " + RoundMarker(0), StringComparison.Ordinal);
            if (r0 < 0) throw new FormatException("SYSTEM: prompt without a following [Round 0]");
            turns.Add(new ChatTurn(ChatTurn.System, text[7..r0]));
            pos = r0 + 1;
        }
        for (int round = 0; pos < text.Length; round++)
        {
            if (round > 0)
            {
                if (text[pos] != ' ') throw new FormatException($"expected ' ' before round {round} at {pos}");
                pos++;
            }
            var marker = RoundMarker(round);
            if (string.CompareOrdinal(text, pos, marker, 0, marker.Length) != 0)
                throw new FormatException($"expected '{marker}' at {pos}");
            pos += marker.Length;
            int a = text.IndexOf(" ASSISTANT:", pos, StringComparison.Ordinal);
            if (a < 0)
            {
                turns.Add(new ChatTurn(ChatTurn.User, text[pos..]));
                break;
            }
            turns.Add(new ChatTurn(ChatTurn.User, text[pos..a]));
            pos = a + " ASSISTANT:".Length;
            int e = text.IndexOf(EndOfTurn, pos, StringComparison.Ordinal);
            if (e < 0)
            {
                if (pos < text.Length) throw new FormatException($"assistant reply without {EndOfTurn} at {pos}");
                break; // generation prompt
            }
            turns.Add(new ChatTurn(ChatTurn.Assistant, text[pos..e]));
            pos = e + EndOfTurn.Length;
        }
        return turns;
    }
}
