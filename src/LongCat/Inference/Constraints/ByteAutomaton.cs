namespace LongCat.Inference.Constraints;

/// <summary>
/// A nondeterministic pushdown automaton over UTF-8 bytes that accepts exactly the texts of a <see cref="GrammarNode"/>.
/// A configuration is an immutable stack of frames (one per open value); anyOf forks it, so a state is a set of
/// stacks (usually one). Frames are records, so equal configurations compare and hash equal and can be interned by
/// <see cref="JsonGrammar"/>. Whitespace is allowed only between the tokens of objects and arrays, at most
/// <see cref="MaxWhitespace"/> characters (space, \n, \t) in a row, and never before or after the whole value, so
/// a model cannot pad forever.
/// </summary>
static class ByteAutomaton
{
    /// <summary>Longest run of whitespace between two JSON tokens.</summary>
    public const int MaxWhitespace = 8;
    /// <summary>Digits in an integer part, a fraction and an exponent.</summary>
    public const int MaxIntDigits = 16, MaxFracDigits = 16, MaxExpDigits = 3;

    public static Stack Start(GrammarNode root) => new(new RootFrame(root, false), null);

    /// <summary>Appends to <paramref name="output"/> every configuration reachable from <paramref name="s"/> by reading <paramref name="b"/>.</summary>
    public static void Step(Stack s, byte b, List<Stack> output, bool concrete)
    {
        var parent = s.Parent;
        switch (s.Top)
        {
            case RootFrame r:
                if (!r.Done) PushValue(new Stack(r with { Done = true }, null), r.Node, b, output, concrete);
                break;

            case StrFrame f:
            {
                int st = StrStep(f.Lex, b, escapes: true);
                if (st == Close) output.Add(parent!);
                else if (st != Dead) output.Add(new Stack(new StrFrame(st), parent));
                break;
            }

            case NumFrame f:
            {
                int st = NumStep(f.St, b, f.IntegerOnly);
                if (st != Dead) output.Add(new Stack(f with { St = st }, parent));
                if (NumCanEnd(f.St)) Step(parent!, b, output, concrete);
                break;
            }

            case LitFrame f:
            {
                var lits = f.Node.Literals;
                int lo = f.Lo, hi = f.Hi;
                bool full = lits[lo].Length == f.Pos;   // the shortest candidate sorts first
                int a = lo;
                while (a < hi && (lits[a].Length <= f.Pos || lits[a][f.Pos] < b)) a++;
                int z = a;
                while (z < hi && lits[z].Length > f.Pos && lits[z][f.Pos] == b) z++;
                if (z > a)
                {
                    if (z - a == 1 && lits[a].Length == f.Pos + 1) output.Add(parent!);   // matched, nothing longer: done
                    else output.Add(new Stack(new LitFrame(f.Node, f.Pos + 1, a, z), parent));
                }
                if (full) Step(parent!, b, output, concrete);
                break;
            }

            case SeqFrame f:
                if (f.Index < f.Node.Parts.Length) PushValue(new Stack(f with { Index = f.Index + 1 }, parent), f.Node.Parts[f.Index], b, output, concrete);
                else Step(parent!, b, output, concrete);
                break;

            case RepeatFrame f:
                if (f.Count == 0) PushValue(new Stack(f with { Count = 1 }, parent), f.Node.Item, b, output, concrete);
                else
                {
                    if (f.Count < f.Node.Max) PushValue(new Stack(f with { Count = f.Count + 1 }, parent), f.Node.SeparatorThenItem, b, output, concrete);
                    if (f.Count >= f.Node.Min) Step(parent!, b, output, concrete);
                }
                break;

            case ArrFrame f:
                StepArray(f, parent, b, output, concrete);
                break;

            case ObjFrame f:
                StepObject(f, parent, b, output, concrete);
                break;

            case KeyFrame f:
                StepKey(f, parent!, b, output, concrete);
                break;
        }
    }

    /// <summary>True when the configuration is a complete text: every open frame may end here.</summary>
    public static bool CanFinish(Stack s)
    {
        for (var x = s; x is not null; x = x.Parent)
        {
            bool ok = x.Top switch
            {
                RootFrame r => r.Done,
                NumFrame n => NumCanEnd(n.St),
                LitFrame l => l.Node.Literals[l.Lo].Length == l.Pos,
                SeqFrame q => q.Index == q.Node.Parts.Length,
                RepeatFrame p => p.Count >= p.Node.Min && p.Count > 0,
                _ => false,
            };
            if (!ok) return false;
        }
        return true;
    }

    static bool IsWs(byte b) => b is (byte)' ' or (byte)'\n' or (byte)'\t';

    /// <summary>Starts a value of <paramref name="node"/> with byte <paramref name="b"/> on top of <paramref name="under"/>.</summary>
    static void PushValue(Stack under, GrammarNode node, byte b, List<Stack> output, bool concrete)
    {
        switch (node)
        {
            case AnyOfNode a:
                foreach (var o in a.Options) PushValue(under, o, b, output, concrete);
                break;
            case ObjectNode o:
                if (b == '{') output.Add(new Stack(new ObjFrame(o, 0, 0, -1, 0, "", false), under));
                break;
            case ArrayNode a:
                if (b == '[') output.Add(new Stack(new ArrFrame(a, 0, 0, 0), under));
                break;
            case StringNode:
                if (b == '"') output.Add(new Stack(new StrFrame(0), under));
                break;
            case NumberNode n:
            {
                int st = NumStep(0, b, n.IntegerOnly);
                if (st != Dead) output.Add(new Stack(new NumFrame(n.IntegerOnly, st), under));
                break;
            }
            case LiteralNode l:
                Step(new Stack(new LitFrame(l, 0, 0, l.Literals.Length), under), b, output, concrete);
                break;
            case SeqNode q:
                Step(new Stack(new SeqFrame(q, 0), under), b, output, concrete);
                break;
            case RepeatNode p:
                Step(new Stack(new RepeatFrame(p, 0), under), b, output, concrete);
                break;
            default:
                throw new InvalidOperationException($"unknown grammar node {node.GetType().Name}");
        }
    }

    // Arrays. Phase 0: after '['; 1: after an item; 2: after ','. Count is capped at max(Min, Max if finite) so
    // long unbounded arrays do not make new states.
    static void StepArray(ArrFrame f, Stack? parent, byte b, List<Stack> output, bool concrete)
    {
        var n = f.Node;
        if (IsWs(b))
        {
            if (f.Ws < MaxWhitespace) output.Add(new Stack(f with { Ws = (byte)(f.Ws + 1) }, parent));
            return;
        }
        int cap = n.Max == int.MaxValue ? n.Min : n.Max;
        int next = Math.Min(f.Count + 1, cap);
        switch (f.Phase)
        {
            case 0:
                if (b == ']') { if (n.Min == 0) output.Add(parent!); }
                else if (n.Max > 0) PushValue(new Stack(new ArrFrame(n, 1, next, 0), parent), n.Items, b, output, concrete);
                break;
            case 1:
                if (b == ',' && (n.Max == int.MaxValue || f.Count < n.Max)) output.Add(new Stack(new ArrFrame(n, 2, f.Count, 0), parent));
                else if (b == ']' && f.Count >= n.Min) output.Add(parent!);
                break;
            case 2:
                PushValue(new Stack(new ArrFrame(n, 1, next, 0), parent), n.Items, b, output, concrete);
                break;
        }
    }

    // Objects. Phase 0: after '{'; 1: after a value; 2: after ','; 3: after a key; 4: after ':'.
    static void StepObject(ObjFrame f, Stack? parent, byte b, List<Stack> output, bool concrete)
    {
        var n = f.Node;
        if (IsWs(b))
        {
            if (f.Ws < MaxWhitespace) output.Add(new Stack(f with { Ws = (byte)(f.Ws + 1) }, parent));
            return;
        }
        bool keyPossible = FreeKeys(n, f.Used) || (n.All & ~f.Used) != 0;
        bool closable = (n.Required & ~f.Used) == 0;
        switch (f.Phase)
        {
            case 0 or 2:
                if (b == '"' && keyPossible)
                    output.Add(new Stack(new KeyFrame(n, f.Used, n.Names.Length > 0 || f.FreeKeys.Length > 0 ? "" : null, 0, concrete ? "" : null),
                        new Stack(f with { Phase = 3, Ws = 0 }, parent)));
                else if (b == '}' && f.Phase == 0 && closable) output.Add(parent!);
                break;
            case 1:
                if (b == ',' && keyPossible) output.Add(new Stack(f with { Phase = 2, Ws = 0, Prop = -1 }, parent));
                else if (b == '}' && closable) output.Add(parent!);
                break;
            case 3:
                if (b == ':') output.Add(new Stack(f with { Phase = 4, Ws = 0 }, parent));
                break;
            case 4:
                PushValue(new Stack(f with { Phase = 1, Ws = 0, Prop = -1 }, parent), f.Prop >= 0 ? n.Schemas[f.Prop] : n.Additional!, b, output, concrete);
                break;
        }
    }

    /// <summary>
    /// Undeclared keys are allowed once every required property is present: a model cannot wander among extra keys
    /// and never write a required one (the output stays valid: extra keys may come in any order).
    /// </summary>
    static bool FreeKeys(ObjectNode n, ulong used) => n.Additional is not null && (n.Required & ~used) == 0;

    // A key: a string without escapes. Prefix holds its bytes while they may still spell a declared name or an
    // undeclared key already used in this object (null once they cannot); unless undeclared keys are allowed the key
    // must stay on the way to a declared name not used yet. A key that spells a used one cannot close.
    // Text: the key's bytes, kept only by the concrete automaton (a sequence's own state), so that it can record an
    // undeclared key; the abstract one (token masks) drops it, so that masks do not depend on the text of a key
    // that matches nothing, and records such a key as Unknown: in the rest of that token no other undeclared key may
    // close in that object (it might repeat the unknown one). That only forbids a token that closes two keys, which
    // single-byte tokens can always spell out; the masks stay a subset of what the concrete automaton accepts.
    static void StepKey(KeyFrame f, Stack parent, byte b, List<Stack> output, bool concrete)
    {
        var n = f.Node;
        bool free = FreeKeys(n, f.Used);
        int st = StrStep(f.Lex, b, escapes: false);
        if (st == Dead) return;
        var obj = (ObjFrame)parent.Top;
        if (st == Close)
        {
            if (f.Prefix is not null && n.Exact.TryGetValue(f.Prefix, out int i))
            {
                if ((f.Used & 1UL << i) == 0) output.Add(new Stack(obj with { Prop = i, Used = obj.Used | 1UL << i }, parent.Parent));
                return;
            }
            if (!free || obj.Unknown) return;
            string? key = f.Text ?? f.Prefix;
            if (key is null) output.Add(new Stack(obj with { Prop = -1, Unknown = true }, parent.Parent));
            else if (!HasKey(obj.FreeKeys, key)) output.Add(new Stack(obj with { Prop = -1, FreeKeys = AddKey(obj.FreeKeys, key) }, parent.Parent));
            return;
        }
        string? prefix = null;
        if (f.Prefix is not null)
        {
            string p = f.Prefix + (char)b;
            if (n.PrefixOf.TryGetValue(p, out ulong names) && (free || (names & ~f.Used) != 0) || free && HasKeyPrefix(obj.FreeKeys, p)) prefix = p;
        }
        if (prefix is null && !free) return;
        output.Add(new Stack(f with { Prefix = prefix, Lex = st, Text = f.Text is null ? null : f.Text + (char)b }, parent));
    }

    // Undeclared keys of an object, sorted, each followed by '\0' (keys have no control characters).
    static bool HasKey(string keys, string key) => keys.StartsWith(key + "\0", StringComparison.Ordinal) || keys.Contains("\0" + key + "\0", StringComparison.Ordinal);
    static bool HasKeyPrefix(string keys, string p) => keys.StartsWith(p, StringComparison.Ordinal) || keys.Contains("\0" + p, StringComparison.Ordinal);
    static string AddKey(string keys, string key) =>
        string.Concat(keys.Split('\0', StringSplitOptions.RemoveEmptyEntries).Append(key).Order(StringComparer.Ordinal).Select(k => k + "\0"));

    /// <summary>
    /// The abstract twin of a concrete configuration, on which masks are computed and cached: the open key's text
    /// dropped (see StepKey), and the undeclared keys of the enclosing objects replaced by Unknown, except in the
    /// object where a key may start or is open in this token (the top frame, or the key's parent), where they are
    /// needed to refuse a repeat. So the states of a value do not depend on the keys written before it, and masks
    /// repeat; the price is that a token that leaves a value and closes a whole new key of an enclosing object
    /// (<c>", "b":</c>) is not offered there (the same text stays writable with shorter tokens).
    /// </summary>
    public static Stack Abstract(Stack s)
    {
        var frames = new List<Frame>();
        for (var x = s; x is not null; x = x.Parent) frames.Add(x.Top);
        int keep = frames[0] is KeyFrame ? 1 : 0;   // the object that must stay exact
        bool changed = false;
        for (int i = 0; i < frames.Count; i++)
        {
            if (frames[i] is KeyFrame { Text: not null } k) { frames[i] = k with { Text = null }; changed = true; }
            else if (i != keep && frames[i] is ObjFrame { FreeKeys.Length: > 0 } o) { frames[i] = o with { FreeKeys = "", Unknown = true }; changed = true; }
        }
        if (!changed) return s;
        Stack? r = null;
        for (int i = frames.Count - 1; i >= 0; i--) r = new Stack(frames[i], r);
        return r!;
    }

    // ---------------------------------------------------------------- lexers (states as small ints)

    public const int Dead = -1, Close = -2;

    /// <summary>
    /// String contents: 0 normal; 1 after '\'; 11..14 hex digits left after \u (30: the second digit after a 'd',
    /// which must be 0-7 so no lone surrogate is written); 100 + 16·left + range: inside a UTF-8 sequence.
    /// </summary>
    static int StrStep(int st, byte b, bool escapes)
    {
        if (st == 0)
        {
            if (b == '"') return Close;
            if (b == '\\') return escapes ? 1 : Dead;
            if (b < 0x20) return Dead;
            if (b < 0x80) return 0;
            if (b is >= 0xC2 and <= 0xDF) return Utf8(1, 0);
            if (b == 0xE0) return Utf8(2, 1);
            if (b == 0xED) return Utf8(2, 2);
            if (b is >= 0xE1 and <= 0xEF) return Utf8(2, 0);
            if (b == 0xF0) return Utf8(3, 3);
            if (b is >= 0xF1 and <= 0xF3) return Utf8(3, 0);
            if (b == 0xF4) return Utf8(3, 4);
            return Dead;
        }
        if (st == 1) return b is (byte)'"' or (byte)'\\' or (byte)'/' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t' ? 0 : b == 'u' ? 14 : Dead;
        if (st == 14) return b is (byte)'d' or (byte)'D' ? 30 : IsHex(b) ? 13 : Dead;
        if (st == 30) return b is >= (byte)'0' and <= (byte)'7' ? 12 : Dead;
        if (st is >= 11 and <= 13) return IsHex(b) ? (st == 11 ? 0 : st - 1) : Dead;
        if (st >= 100)
        {
            int left = (st - 100) / 16, range = (st - 100) % 16;
            var (lo, hi) = range switch { 1 => (0xA0, 0xBF), 2 => (0x80, 0x9F), 3 => (0x90, 0xBF), 4 => (0x80, 0x8F), _ => (0x80, 0xBF) };
            if (b < lo || b > hi) return Dead;
            return left == 1 ? 0 : Utf8(left - 1, 0);
        }
        return Dead;
    }

    static int Utf8(int left, int range) => 100 + 16 * left + range;
    static bool IsHex(byte b) => b is >= (byte)'0' and <= (byte)'9' or >= (byte)'a' and <= (byte)'f' or >= (byte)'A' and <= (byte)'F';
    static bool IsDigit(byte b) => b is >= (byte)'0' and <= (byte)'9';

    /// <summary>
    /// Number: 0 start; 1 after '-'; 2 after a leading 0; 300+n: n integer digits; 4 after '.'; 400+n fraction
    /// digits; 5 after 'e'; 6 after the exponent sign; 600+n exponent digits.
    /// </summary>
    static int NumStep(int st, byte b, bool integer)
    {
        switch (st)
        {
            case 0: return b == '-' ? 1 : b == '0' ? 2 : IsDigit(b) ? 301 : Dead;
            case 1: return b == '0' ? 2 : IsDigit(b) ? 301 : Dead;
            case 4: return IsDigit(b) ? 401 : Dead;
            case 5: return b is (byte)'+' or (byte)'-' ? 6 : IsDigit(b) ? 601 : Dead;
            case 6: return IsDigit(b) ? 601 : Dead;
        }
        if (st == 2 || st / 100 == 3)
        {
            if (IsDigit(b)) return st != 2 && st - 300 < MaxIntDigits ? st + 1 : Dead;
            if (integer) return Dead;
            return b == '.' ? 4 : b is (byte)'e' or (byte)'E' ? 5 : Dead;
        }
        if (st / 100 == 4)
        {
            if (IsDigit(b)) return st - 400 < MaxFracDigits ? st + 1 : Dead;
            return b is (byte)'e' or (byte)'E' ? 5 : Dead;
        }
        if (st / 100 == 6) return IsDigit(b) && st - 600 < MaxExpDigits ? st + 1 : Dead;
        return Dead;
    }

    static bool NumCanEnd(int st) => st == 2 || st / 100 is 3 or 4 or 6;
}

/// <summary>An immutable stack of frames with its hash computed once (configurations are compared when interned).</summary>
sealed class Stack : IEquatable<Stack>
{
    public Stack(Frame top, Stack? parent)
    {
        Top = top;
        Parent = parent;
        Hash = HashCode.Combine(top, parent?.Hash ?? 17);
    }

    public Frame Top { get; }
    public Stack? Parent { get; }
    public int Hash { get; }

    public bool Equals(Stack? other)
    {
        var a = this;
        var b = other;
        while (true)
        {
            if (ReferenceEquals(a, b)) return true;
            if (a is null || b is null || a.Hash != b.Hash || !a.Top.Equals(b.Top)) return false;
            a = a.Parent;
            b = b.Parent;
        }
    }

    public override bool Equals(object? obj) => Equals(obj as Stack);
    public override int GetHashCode() => Hash;
}

abstract record Frame;
sealed record RootFrame(GrammarNode Node, bool Done) : Frame;
sealed record StrFrame(int Lex) : Frame;
sealed record NumFrame(bool IntegerOnly, int St) : Frame;
sealed record LitFrame(LiteralNode Node, int Pos, int Lo, int Hi) : Frame;
sealed record SeqFrame(SeqNode Node, int Index) : Frame;
sealed record RepeatFrame(RepeatNode Node, int Count) : Frame;
sealed record ArrFrame(ArrayNode Node, byte Phase, int Count, byte Ws) : Frame;
sealed record ObjFrame(ObjectNode Node, byte Phase, ulong Used, int Prop, byte Ws, string FreeKeys, bool Unknown) : Frame;
sealed record KeyFrame(ObjectNode Node, ulong Used, string? Prefix, int Lex, string? Text) : Frame;
