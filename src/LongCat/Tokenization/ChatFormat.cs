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
/// <remarks>
/// <para><b>No begin-of-sequence token.</b> A rendered conversation starts with its first text token ("SYSTEM:",
/// "[Round 0] USER:" or the tool description), never with <c>&lt;s&gt;</c>: LongCat-Flash-Chat's chat template does not
/// emit <c>bos_token</c>, and transformers' <c>apply_chat_template</c> tokenizes the rendered text without adding special
/// tokens (its LongCat-Flash integration test decodes such a prompt, special tokens kept, as
/// "[Round 0] USER:Paris is... ASSISTANT:"). This class owns that rule: <see cref="EncodeForTraining"/> (data prepare
/// --format chat) and <see cref="EncodePrompt"/> (longcat chat, longcat eval chat, <c>LongCatChatClient</c>, the
/// server, MCP chat) return the ids the model sees, and no caller adds or strips tokens around them.</para>
/// </remarks>
public static class ChatFormat
{
    /// <summary>The end-of-turn token.</summary>
    public const string EndOfTurn = LongCatTokenizerSpec.EndOfTurn;

    /// <summary>The same format as a Jinja chat template (written into tokenizer_config.json by the trainer).</summary>
    public const string JinjaTemplate =
        "{%- set ns = namespace(sys='', round=0, started=false, open=false) -%}" +
        "{%- for m in messages -%}{%- if m['role'] == 'system' -%}{%- set ns.sys = ns.sys + ('\\n' if ns.sys else '') + m['content'] -%}{%- endif -%}{%- endfor -%}" +
        "{%- if ns.sys -%}{{- 'SYSTEM:' + ns.sys -}}{%- set ns.started = true -%}{%- endif -%}" +
        "{%- for m in messages -%}" +
        "{%- if m['role'] == 'user' -%}{{- (' ' if ns.started else '') + '[Round ' + ns.round|string + '] USER:' + m['content'] -}}{%- set ns.started = true -%}{%- set ns.open = true -%}" +
        "{%- if not loop.last or add_generation_prompt -%}{{- ' ASSISTANT:' -}}{%- endif -%}" +
        "{%- elif m['role'] == 'assistant' -%}" +
        "{%- if not ns.open -%}{{- (' ' if ns.started else '') + '[Round ' + ns.round|string + '] USER: ASSISTANT:' -}}{%- set ns.started = true -%}{%- endif -%}" +
        "{{- m['content'] + '</longcat_s>' -}}{%- set ns.round = ns.round + 1 -%}{%- set ns.open = false -%}" +
        "{%- endif -%}{%- endfor -%}";

    /// <summary>
    /// A rendered piece: text, whether it is assistant output (trainable), and whether it is control markup (the
    /// end-of-turn token), the only text encoded with special-token matching: message contents are encoded as plain
    /// text, so a user who types "&lt;/longcat_s&gt;" gets the characters, never the control token.
    /// </summary>
    readonly record struct Segment(string Text, bool Assistant, bool Control = false);

    static void Encode(Tokenizer tokenizer, Segment s, List<int> ids)
    {
        if (s.Control) tokenizer.EncodeToIds(s.Text, ids);
        else tokenizer.EncodeTextToIds(s.Text, ids);
    }

    /// <summary>
    /// Renders <paramref name="turns"/> as text. With <paramref name="addGenerationPrompt"/>, a final user turn
    /// ends with " ASSISTANT:" so the model continues with the reply. With <paramref name="continueFinalAssistant"/>,
    /// a final assistant turn is left open (no end-of-turn), as <see cref="EncodePrompt"/> renders it.
    /// </summary>
    public static string Render(IReadOnlyList<ChatTurn> turns, bool addGenerationPrompt = true, ChatRenderOptions? options = null,
        bool continueFinalAssistant = false) =>
        string.Concat(Segments(turns, addGenerationPrompt, continueFinalAssistant, options ?? ChatRenderOptions.Default).Select(s => s.Text));

    /// <summary>
    /// Ids of the prompt for generation: the conversation so far plus " ASSISTANT:", or, when the last turn is an
    /// assistant's, that turn left open so the model continues it. Encoded segment by segment exactly as
    /// <see cref="EncodeForTraining"/> does, so a model sees the same ids in training and inference.
    /// </summary>
    public static int[] EncodePrompt(Tokenizer tokenizer, IReadOnlyList<ChatTurn> turns, ChatRenderOptions? options = null)
    {
        var ids = new List<int>();
        foreach (var s in Segments(turns, addGenerationPrompt: true, continueFinal: true, options ?? ChatRenderOptions.Default)) Encode(tokenizer, s, ids);
        return [.. ids];
    }

    /// <summary>
    /// Ids of a whole conversation for supervised fine-tuning, with the assistant replies (text, tool calls and their
    /// end-of-turn tokens) marked trainable; system, user, tool results and the tool description are not. Prompt and
    /// reply are encoded separately, as at inference.
    /// </summary>
    public static EncodedChat EncodeForTraining(Tokenizer tokenizer, IReadOnlyList<ChatTurn> turns, ChatRenderOptions? options = null)
    {
        var ids = new List<int>();
        var mask = new List<bool>();
        foreach (var s in Segments(turns, addGenerationPrompt: false, continueFinal: false, options ?? ChatRenderOptions.Default))
        {
            int before = ids.Count;
            Encode(tokenizer, s, ids);
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
    /// <remarks>
    /// Message order: every system message goes into the one system prompt before round 0, joined by newlines in
    /// order (as <see cref="JinjaTemplate"/> does; the format has no place for a system turn inside a round). An
    /// assistant turn without a user turn before it (a greeting) gets an empty user turn, since a round always starts
    /// with "USER:". With <paramref name="continueFinal"/>, a final assistant turn is a prefix the model continues:
    /// it is left open (no end-of-turn token). The format's markers (end of turn, tool-call and tool-response tags)
    /// are control segments; every content (messages, tool descriptions, arguments, results) is plain text.
    /// </remarks>
    static List<Segment> Segments(IReadOnlyList<ChatTurn> turns, bool addGenerationPrompt, bool continueFinal, ChatRenderOptions options)
    {
        var b = new SegmentBuilder();
        bool started = false;
        if (options.Tools.Count > 0)
        {
            foreach (var (text, marker) in ToolCallFormat.DescriptionPieces(options.Tools, options.ToolCallStyle)) b.Add(text, false, marker);
            b.Add("\n\n## Messages\n", false);
        }
        string sys = string.Join("\n", turns.Where(t => t.Role == ChatTurn.System).Select(t => t.Content));
        if (sys.Length > 0) { b.Add("SYSTEM:" + sys, false); started = true; }
        int round = 0, previous = -1;  // index of the previous non-system turn
        for (int i = 0; i < turns.Count; i++)
        {
            var t = turns[i];
            if (t.Role == ChatTurn.System) continue;
            int prevIndex = previous;
            string? prevRole = prevIndex >= 0 ? turns[prevIndex].Role : null;
            previous = i;
            int next = NextNonSystem(turns, i);
            switch (t.Role)
            {
                case ChatTurn.User:
                case ChatTurn.Tool:
                    if (t.Role == ChatTurn.User && prevRole == ChatTurn.User)
                        throw new ArgumentException($"turn {i}: two user turns in a row; user and assistant must alternate");
                    if (t.Role == ChatTurn.Tool && !(prevRole == ChatTurn.Tool || (prevRole == ChatTurn.Assistant && turns[prevIndex].ToolCalls.Count > 0)))
                        throw new ArgumentException($"turn {i}: a tool result must follow an assistant turn with tool calls");
                    if (prevRole is ChatTurn.User or ChatTurn.Tool)
                    {
                        if (t.Role == ChatTurn.User) b.Add("\n", false);    // the user's words after the tool results
                    }
                    else StartRound();
                    if (t.Role == ChatTurn.Tool)
                        foreach (var (text, marker) in ToolCallFormat.ResponsePieces(t.Content)) b.Add(text, false, marker);
                    else b.Add(t.Content, false);
                    if (options.ThinkOn && addGenerationPrompt && next == turns.Count) b.Add(ToolCallFormat.ThinkOnSuffix, false);
                    if (next == turns.Count ? addGenerationPrompt : turns[next].Role == ChatTurn.Assistant) b.Add(" ASSISTANT:", false);
                    break;
                case ChatTurn.Assistant:
                    if (prevRole == ChatTurn.Assistant)
                        throw new ArgumentException($"turn {i}: two assistant turns in a row; user and assistant must alternate");
                    if (prevRole is null) { StartRound(); b.Add(" ASSISTANT:", false); }   // a greeting: round 0 with an empty user turn
                    b.Add(t.Content, true);
                    foreach (var call in t.ToolCalls)
                        foreach (var (text, marker) in ToolCallFormat.CallPieces(call, options.ToolCallStyle)) b.Add(text, true, marker);
                    bool open = continueFinal && next == turns.Count;   // a prefix to continue
                    if (!open) b.Add(EndOfTurn, true, control: true);
                    round++;
                    break;
                default:
                    throw new ArgumentException($"turn {i}: unknown role '{t.Role}' (system, user, assistant, tool)");
            }
        }
        return b.Done();

        void StartRound()
        {
            b.Add((started ? " " : "") + "[Round " + round.ToString(CultureInfo.InvariantCulture) + "] USER:", false);
            started = true;
        }
    }

    /// <summary>Collects segments: runs of plain text with the same trainability are joined, control pieces stand alone.</summary>
    sealed class SegmentBuilder
    {
        readonly List<Segment> _segs = [];
        readonly StringBuilder _text = new();
        bool _assistant;

        public void Add(string text, bool assistant, bool control = false)
        {
            if (text.Length == 0) return;
            if (control || assistant != _assistant) Flush();
            if (control) { _segs.Add(new Segment(text, assistant, Control: true)); return; }
            _assistant = assistant;
            _text.Append(text);
        }

        void Flush()
        {
            if (_text.Length > 0) _segs.Add(new Segment(_text.ToString(), _assistant));
            _text.Clear();
        }

        public List<Segment> Done() { Flush(); return _segs; }
    }

    static int NextNonSystem(IReadOnlyList<ChatTurn> turns, int i)
    {
        int j = i + 1;
        while (j < turns.Count && turns[j].Role == ChatTurn.System) j++;
        return j;
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
