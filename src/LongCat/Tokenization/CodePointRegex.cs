using System.Globalization;
using System.Text;

namespace LongCat.Tokenization;

/// <summary>
/// A backtracking regex engine with Oniguruma's semantics, one code point at a time, for the pre-tokenizer
/// patterns of tokenizer.json files.
/// </summary>
/// <remarks>
/// Why our own: Hugging Face <c>tokenizers</c> runs these patterns with Oniguruma over UTF-8, so a letter
/// outside the BMP is one <c>\p{L}</c> character and <c>(?i)</c> uses Unicode case folding
/// (<c>'ſ</c> matches <c>'s</c>). .NET <see cref="System.Text.RegularExpressions.Regex"/> works on UTF-16
/// code units (an astral letter is two <c>Cs</c> surrogates) and does not fold <c>ſ</c>; both change
/// pre-token boundaries and so token ids. Matching code points directly is exact by construction.
/// Supported syntax: literals and escapes (<c>\t \n \r \f \v \a \e \xHH \x{H..} \uHHHH</c>), <c>.</c>,
/// classes with ranges, nesting, <c>&amp;&amp;</c> and <c>\p{..}</c>/<c>\P{..}</c>/<c>\p{^..}</c> general
/// categories, <c>\s \S \d \D \w \W \h \H</c>, groups <c>(..) (?:..) (?&lt;name&gt;..) (?i:..) (?-i:..) (?i)</c>,
/// lookahead <c>(?=..) (?!..)</c>, fixed-length lookbehind, atomic groups <c>(?&gt;..)</c>, greedy, lazy
/// and possessive quantifiers <c>* + ? {n} {n,} {,m} {n,m}</c>, anchors <c>^ $ \A \z \Z \b \B</c>.
/// Backreferences, scripts (<c>\p{Han}</c>) and POSIX brackets are rejected with an error naming them.
/// Semantics are leftmost-first (Perl/Oniguruma), not leftmost-longest.
/// </remarks>
sealed partial class CodePointRegex
{
    enum Op : byte { Char, CharAny, Set, Split, Jmp, RepeatSet, Look, Assert, Match }

    // RepeatSet mode in Inst.Flags; Look kind in Inst.A; Assert kind in Inst.A.
    const int Greedy = 0, Lazy = 1, Possessive = 2;
    const int LookAhead = 0, NegLookAhead = 1, Atomic = 2, LookBehind = 3, NegLookBehind = 4;
    const int AssertLineStart = 0, AssertLineEnd = 1, AssertTextStart = 2, AssertTextEnd = 3,
        AssertTextEndNewline = 4, AssertWordBoundary = 5, AssertNotWordBoundary = 6;

    struct Inst
    {
        public Op Op;
        public byte Flags;
        public int A, B, C;
    }

    readonly Inst[] _prog;
    readonly CharClass[] _sets;
    readonly int[][] _charLists;
    readonly CharClass? _first; // code points that can start a match; null = any position may match

    /// <summary>The pattern text as given.</summary>
    public string Pattern { get; }

    CodePointRegex(string pattern, Inst[] prog, CharClass[] sets, int[][] charLists, CharClass? first)
    {
        Pattern = pattern;
        _prog = prog;
        _sets = sets;
        _charLists = charLists;
        _first = first;
    }

    /// <summary>Compiles <paramref name="pattern"/>; throws <see cref="ArgumentException"/> naming the
    /// unsupported construct and its position.</summary>
    public static CodePointRegex Compile(string pattern)
    {
        var parser = new Parser(pattern);
        var ast = parser.ParseAll();
        var c = new Compiler();
        c.Emit(ast);
        c.Add(new Inst { Op = Op.Match });
        var first = Compiler.FirstSet(ast);
        return new CodePointRegex(pattern, [.. c.Prog], [.. c.Sets], [.. c.CharLists], first?.Build());
    }

    /// <summary>
    /// All matches in <paramref name="text"/>, as Oniguruma's find-iterator in the <c>onig</c> crate yields them:
    /// search from the end of the last match; an empty match right at the end of the previous match is
    /// skipped by advancing one code point. Appends (start, end) pairs.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public void FindAll(ReadOnlySpan<int> text, List<(int Start, int End)> matches)
    {
        int lastEnd = 0, lastMatchEnd = -1;
        while (lastEnd <= text.Length)
        {
            if (!Search(text, lastEnd, out int s, out int e)) return;
            if (e == s && lastMatchEnd == e)
            {
                lastEnd++;
                continue;
            }
            lastEnd = e;
            lastMatchEnd = e;
            matches.Add((s, e));
        }
    }

    /// <summary>Leftmost match starting at or after <paramref name="from"/>.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public bool Search(ReadOnlySpan<int> text, int from, out int start, out int end)
    {
        var first = _first;
        for (int s = from; s <= text.Length; s++)
        {
            if (first is not null)
            {
                // Skip positions whose code point cannot start a match (the pattern cannot match empty here).
                while (s < text.Length && !first.Contains(text[s])) s++;
                if (s >= text.Length) break;
            }
            if (Run(text, 0, s, out end))
            {
                start = s;
                return true;
            }
        }
        start = end = -1;
        return false;
    }

    /// <summary>Anchored match at <paramref name="pos"/>.</summary>
    public bool MatchAt(ReadOnlySpan<int> text, int pos, out int end) => Run(text, 0, pos, out end);

    struct Frame
    {
        public int Pc, Pos, Extra;
        public byte Kind; // 0 = alternative, 1 = greedy give-back, 2 = lazy take-more
    }

    [ThreadStatic] static Frame[]? t_stack;

    /// <summary>Runs the program from <paramref name="pc"/> at <paramref name="pos"/> until its Match.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    bool Run(ReadOnlySpan<int> text, int pc, int pos, out int end, int baseSp = 0)
    {
        // Choice points live on one per-thread stack; a lookaround body runs above its caller's frames.
        var stack = t_stack ??= new Frame[256];
        int sp = baseSp;
        var prog = _prog;
        while (true)
        {
            ref var ins = ref prog[pc];
            bool ok;
            switch (ins.Op)
            {
                case Op.Char:
                    ok = pos < text.Length && text[pos] == ins.A;
                    if (ok) { pos++; pc++; continue; }
                    break;
                case Op.CharAny:
                    ok = pos < text.Length && Array.IndexOf(_charLists[ins.A], text[pos]) >= 0;
                    if (ok) { pos++; pc++; continue; }
                    break;
                case Op.Set:
                    ok = pos < text.Length && _sets[ins.A].Contains(text[pos]);
                    if (ok) { pos++; pc++; continue; }
                    break;
                case Op.Jmp:
                    pc = ins.A;
                    continue;
                case Op.Split:
                    Push(ref stack, ref sp, new Frame { Pc = ins.B, Pos = pos, Kind = 0 });
                    pc = ins.A;
                    continue;
                case Op.RepeatSet:
                {
                    var set = _sets[ins.A];
                    int min = ins.B, max = ins.C, start = pos;
                    if (ins.Flags == Lazy)
                    {
                        int p = pos;
                        while (p - start < min && p < text.Length && set.Contains(text[p])) p++;
                        if (p - start < min) break;
                        if (max < 0 || p - start < max) Push(ref stack, ref sp, new Frame { Pc = pc, Pos = p, Extra = p - start, Kind = 2 });
                        pos = p;
                        pc++;
                        continue;
                    }
                    int limit = max < 0 ? text.Length : (int)Math.Min((long)text.Length, (long)pos + max);
                    int q = pos;
                    while (q < limit && set.Contains(text[q])) q++;
                    if (q - start < min) break;
                    if (ins.Flags == Greedy && q > start + min)
                        Push(ref stack, ref sp, new Frame { Pc = pc + 1, Pos = q, Extra = start + min, Kind = 1 });
                    pos = q;
                    pc++;
                    continue;
                }
                case Op.Look:
                {
                    int kind = ins.A;
                    bool matched;
                    int subEnd = pos;
                    if (kind is LookBehind or NegLookBehind)
                    {
                        int from = pos - ins.C;
                        matched = from >= 0 && Run(text, pc + 1, from, out subEnd, sp) && subEnd == pos;
                    }
                    else
                    {
                        matched = Run(text, pc + 1, pos, out subEnd, sp);
                    }
                    stack = t_stack!; // the body may have grown it
                    if (kind is NegLookAhead or NegLookBehind) matched = !matched;
                    if (!matched) break;
                    if (kind == Atomic) pos = subEnd;
                    pc = ins.B;
                    continue;
                }
                case Op.Assert:
                    if (!CheckAssert(text, pos, ins.A)) break;
                    pc++;
                    continue;
                case Op.Match:
                    end = pos;
                    return true;
            }

            // Failure: resume the most recent choice point.
            while (true)
            {
                if (sp == baseSp)
                {
                    end = -1;
                    return false;
                }
                ref var f = ref stack[sp - 1];
                if (f.Kind == 0)
                {
                    pc = f.Pc;
                    pos = f.Pos;
                    sp--;
                    break;
                }
                if (f.Kind == 1)
                {
                    // Greedy single-set loop: give back one code point.
                    int p = f.Pos - 1;
                    pc = f.Pc;
                    if (p > f.Extra) f.Pos = p;
                    else sp--;
                    pos = p;
                    break;
                }
                else
                {
                    // Lazy single-set loop: take one more code point if the set allows.
                    ref var rins = ref prog[f.Pc];
                    int p = f.Pos;
                    if (p < text.Length && _sets[rins.A].Contains(text[p]))
                    {
                        int count = f.Extra + 1;
                        int rpc = f.Pc;
                        if (rins.C < 0 || count < rins.C)
                        {
                            f.Pos = p + 1;
                            f.Extra = count;
                        }
                        else sp--;
                        pc = rpc + 1;
                        pos = p + 1;
                        break;
                    }
                    sp--;
                }
            }
        }
    }

    static void Push(ref Frame[] stack, ref int sp, Frame f)
    {
        if (sp == stack.Length)
        {
            Array.Resize(ref stack, stack.Length * 2);
            t_stack = stack;
        }
        stack[sp++] = f;
    }

    static bool CheckAssert(ReadOnlySpan<int> text, int pos, int kind) => kind switch
    {
        AssertLineStart => pos == 0 || text[pos - 1] == '\n',
        AssertLineEnd => pos == text.Length || text[pos] == '\n',
        AssertTextStart => pos == 0,
        AssertTextEnd => pos == text.Length,
        AssertTextEndNewline => pos == text.Length || (pos == text.Length - 1 && text[pos] == '\n'),
        AssertWordBoundary => IsBoundary(text, pos),
        AssertNotWordBoundary => !IsBoundary(text, pos),
        _ => false,
    };

    static bool IsBoundary(ReadOnlySpan<int> text, int pos)
    {
        bool before = pos > 0 && CharClass.IsWordChar(text[pos - 1]);
        bool after = pos < text.Length && CharClass.IsWordChar(text[pos]);
        return before != after;
    }

    // ---------------------------------------------------------------- AST

    abstract class Node;
    sealed class CharNode(int[] chars) : Node { public readonly int[] Chars = chars; } // any of (case variants)
    sealed class SetNode(CharClass set) : Node { public readonly CharClass Set = set; }
    sealed class SeqNode(List<Node> items) : Node { public readonly List<Node> Items = items; }
    sealed class AltNode(List<Node> items) : Node { public readonly List<Node> Items = items; }
    sealed class RepeatNode(Node body, int min, int max, int mode) : Node
    {
        public readonly Node Body = body;
        public readonly int Min = min, Max = max, Mode = mode; // Max < 0: unbounded
    }
    sealed class LookNode(int kind, Node body) : Node { public readonly int Kind = kind; public readonly Node Body = body; }
    sealed class AssertNode(int kind) : Node { public readonly int Kind = kind; }

    // ---------------------------------------------------------------- parser

    sealed class Parser(string pattern)
    {
        readonly int[] _p = ToCodePoints(pattern);
        int _i;
        readonly string _pattern = pattern;

        static int[] ToCodePoints(string s)
        {
            var list = new List<int>(s.Length);
            foreach (var r in s.EnumerateRunes()) list.Add(r.Value);
            return [.. list];
        }

        Exception Error(string what) =>
            new ArgumentException($"regex /{_pattern}/: {what} at position {_i}");

        bool More => _i < _p.Length;
        int Peek => _p[_i];

        public Node ParseAll()
        {
            var n = ParseAlt(ignoreCase: false, dotAll: false);
            if (More) throw Error($"unmatched ')'");
            return n;
        }

        Node ParseAlt(bool ignoreCase, bool dotAll)
        {
            var alts = new List<Node>();
            var seq = new List<Node>();
            while (More && Peek != ')')
            {
                if (Peek == '|')
                {
                    _i++;
                    alts.Add(new SeqNode(seq));
                    seq = [];
                    continue;
                }
                // Inline option (?i) / (?-i): applies to the rest of the enclosing group.
                if (TryInlineOptions(ref ignoreCase, ref dotAll)) continue;
                var atom = ParseAtom(ignoreCase, dotAll);
                seq.Add(ParseQuantifiers(atom));
            }
            alts.Add(new SeqNode(seq));
            return alts.Count == 1 ? alts[0] : new AltNode(alts);
        }

        bool TryInlineOptions(ref bool ignoreCase, ref bool dotAll)
        {
            if (!(Peek == '(' && _i + 2 < _p.Length && _p[_i + 1] == '?')) return false;
            int j = _i + 2;
            bool on = true, ic = ignoreCase, da = dotAll;
            while (j < _p.Length && _p[j] is 'i' or 'm' or '-' or 'x')
            {
                switch (_p[j])
                {
                    case '-': on = false; break;
                    case 'i': ic = on; break;
                    case 'm': da = on; break;
                    case 'x': _i = j; throw Error("extended mode (?x) is not supported");
                }
                j++;
            }
            if (j < _p.Length && _p[j] == ')' && j > _i + 2)
            {
                _i = j + 1;
                ignoreCase = ic;
                dotAll = da;
                return true;
            }
            return false;
        }

        Node ParseQuantifiers(Node atom)
        {
            while (More)
            {
                int c = Peek;
                int min, max;
                int save = _i;
                bool interval = false;
                if (c == '*') { min = 0; max = -1; _i++; }
                else if (c == '+') { min = 1; max = -1; _i++; }
                else if (c == '?') { min = 0; max = 1; _i++; }
                else if (c == '{' && TryInterval(out min, out max)) interval = true;
                else break;
                int mode = Greedy;
                if (More && Peek == '?') { mode = Lazy; _i++; }
                else if (More && Peek == '+' && !interval) { mode = Possessive; _i++; }
                if (atom is AssertNode or LookNode { Kind: not Atomic })
                {
                    _i = save;
                    throw Error("quantifier after an assertion");
                }
                atom = new RepeatNode(atom, min, max, mode);
            }
            return atom;
        }

        bool TryInterval(out int min, out int max)
        {
            // {n} {n,} {,m} {n,m}; anything else is a literal '{' (Oniguruma allows invalid intervals).
            int j = _i + 1;
            int ReadInt(ref int k)
            {
                int start = k;
                long v = 0;
                while (k < _p.Length && _p[k] is >= '0' and <= '9') { v = v * 10 + (_p[k] - '0'); k++; if (v > 100000) v = 100001; }
                return k == start ? -1 : (int)v;
            }
            min = ReadInt(ref j);
            max = min;
            if (j < _p.Length && _p[j] == ',')
            {
                j++;
                max = ReadInt(ref j);
                if (min < 0 && max < 0) return false;
                if (min < 0) min = 0;
            }
            else if (min < 0) return false;
            if (j >= _p.Length || _p[j] != '}') return false;
            if (min > 100000 || max > 100000) throw Error("repeat count too large");
            if (max >= 0 && max < min) throw Error("invalid repeat range");
            _i = j + 1;
            return true;
        }

        Node ParseAtom(bool ignoreCase, bool dotAll)
        {
            int c = _p[_i++];
            switch (c)
            {
                case '(':
                    return ParseGroup(ignoreCase, dotAll);
                case '[':
                    return new SetNode(Finish(ParseClass(ignoreCase)));
                case '.':
                {
                    var cc = new CharClass();
                    if (dotAll) cc.AddAny(); else cc.AddAnyButNewline();
                    return new SetNode(cc.Build());
                }
                case '^': return new AssertNode(AssertLineStart);
                case '$': return new AssertNode(AssertLineEnd);
                case '\\':
                    return ParseEscape(ignoreCase, inClass: false) switch
                    {
                        Node n => n,
                        _ => throw Error("bad escape"),
                    };
                case '*' or '+' or '?':
                    _i--;
                    throw Error("nothing to repeat");
                default:
                    return Literal(c, ignoreCase);
            }
        }

        static CharClass Finish(CharClass c) => c.Build();

        static Node Literal(int c, bool ignoreCase) =>
            new CharNode(ignoreCase ? UnicodeTables.CaseVariants(c) : [c]);

        Node ParseGroup(bool ignoreCase, bool dotAll)
        {
            int kind = -1;
            if (More && Peek == '?')
            {
                _i++;
                if (!More) throw Error("unterminated group");
                int c = _p[_i++];
                switch (c)
                {
                    case ':': break;
                    case '=': kind = LookAhead; break;
                    case '!': kind = NegLookAhead; break;
                    case '>': kind = Atomic; break;
                    case '<':
                        if (More && Peek == '=') { _i++; kind = LookBehind; }
                        else if (More && Peek == '!') { _i++; kind = NegLookBehind; }
                        else
                        {
                            // Named group: capture is irrelevant for splitting.
                            while (More && Peek != '>') _i++;
                            if (!More) throw Error("unterminated group name");
                            _i++;
                        }
                        break;
                    case 'i' or 'm' or '-':
                    {
                        _i--;
                        bool on = true;
                        while (More && Peek is 'i' or 'm' or '-')
                        {
                            int o = _p[_i++];
                            if (o == '-') on = false;
                            else if (o == 'i') ignoreCase = on;
                            else dotAll = on;
                        }
                        if (!More || Peek != ':') throw Error("unsupported group option");
                        _i++;
                        break;
                    }
                    case '#':
                        while (More && Peek != ')') _i++;
                        if (!More) throw Error("unterminated comment");
                        _i++;
                        return new SeqNode([]);
                    default:
                        _i--;
                        throw Error($"unsupported group syntax (?{char.ConvertFromUtf32(c)}");
                }
            }
            var body = ParseAlt(ignoreCase, dotAll);
            if (!More || Peek != ')') throw Error("missing ')'");
            _i++;
            if (kind < 0) return body;
            if (kind is LookBehind or NegLookBehind && Compiler.FixedLength(body) < 0)
                throw Error("lookbehind must have a fixed length");
            return new LookNode(kind, body);
        }

        /// <summary>Parses after '\'. Returns a Node (outside classes) or a CharClass / int code point (inside).</summary>
        object ParseEscape(bool ignoreCase, bool inClass)
        {
            if (!More) throw Error("trailing backslash");
            int c = _p[_i++];
            switch (c)
            {
                case 's' or 'S' or 'd' or 'D' or 'w' or 'W' or 'h' or 'H':
                {
                    var cc = CharClass.Escape((char)c);
                    return inClass ? cc : new SetNode(cc.Build());
                }
                case 'p' or 'P':
                {
                    var cc = ParseProperty(c == 'P');
                    return inClass ? cc : new SetNode(cc.Build());
                }
                case 't': return Lit('\t');
                case 'n': return Lit('\n');
                case 'r': return Lit('\r');
                case 'f': return Lit('\f');
                case 'v': return Lit('\v');
                case 'a': return Lit('\a');
                case 'e': return Lit(0x1B);
                case 'x':
                {
                    int v;
                    if (More && Peek == '{')
                    {
                        _i++;
                        v = ReadHex(8, untilBrace: true);
                    }
                    else v = ReadHex(2, untilBrace: false);
                    return Lit(v);
                }
                case 'u': return Lit(ReadHex(4, untilBrace: false, exact: true));
                case '0':
                {
                    int v = 0, n = 0;
                    while (More && n < 2 && Peek is >= '0' and <= '7') { v = v * 8 + (_p[_i++] - '0'); n++; }
                    return Lit(v);
                }
                case 'A' when !inClass: return new AssertNode(AssertTextStart);
                case 'z' when !inClass: return new AssertNode(AssertTextEnd);
                case 'Z' when !inClass: return new AssertNode(AssertTextEndNewline);
                case 'b' when !inClass: return new AssertNode(AssertWordBoundary);
                case 'B' when !inClass: return new AssertNode(AssertNotWordBoundary);
                case 'b' when inClass: return 8;
                default:
                    if (c is >= '1' and <= '9' || c == 'k' || c == 'g') { _i--; throw Error("backreferences and subexpression calls are not supported"); }
                    if (c < 128 && char.IsAsciiLetterOrDigit((char)c)) { _i--; throw Error($"unsupported escape \\{(char)c}"); }
                    return Lit(c); // escaped punctuation or any non-ASCII character is itself
            }

            object Lit(int v) => inClass ? v : Literal(v, ignoreCase);
        }

        int ReadHex(int maxDigits, bool untilBrace, bool exact = false)
        {
            int v = 0, n = 0;
            while (More && n < maxDigits && Uri.IsHexDigit((char)Math.Min(Peek, 0xFFFF)) && Peek < 128)
            {
                v = v * 16 + Convert.ToInt32(((char)_p[_i++]).ToString(), 16);
                n++;
            }
            if (n == 0 || (exact && n != maxDigits)) throw Error("bad hex escape");
            if (untilBrace)
            {
                if (!More || Peek != '}') throw Error("missing '}' in \\x{...}");
                _i++;
            }
            if (v > 0x10FFFF) throw Error("code point out of range");
            return v;
        }

        CharClass ParseProperty(bool negated)
        {
            string name;
            if (More && Peek == '{')
            {
                int close = Array.IndexOf(_p, '}', _i);
                if (close < 0) throw Error("missing '}' in \\p{...}");
                name = string.Concat(_p[(_i + 1)..close].Select(char.ConvertFromUtf32));
                _i = close + 1;
            }
            else throw Error("\\p needs a {name}");
            if (name.StartsWith('^'))
            {
                negated = !negated;
                name = name[1..];
            }
            var cc = new CharClass();
            var key = name.Replace("_", "").Replace(" ", "").Replace("-", "").ToLowerInvariant();
            if (key is "space" or "whitespace") cc.AddWhiteSpace();
            else if (key == "word") cc.AddWord();
            else if (key == "ascii") cc.AddRange(0, 0x7F);
            else if (key == "xdigit") cc.AddHexDigit();
            else if (CharClass.TryPropertyMask(name, out var mask)) cc.AddCategories(mask);
            else throw Error($"unsupported Unicode property \\p{{{name}}}");
            cc.Negated = negated;
            return cc;
        }

        CharClass ParseClass(bool ignoreCase)
        {
            // Called after '['.
            var cc = new CharClass { IgnoreCase = ignoreCase };
            if (More && Peek == '^')
            {
                cc.Negated = true;
                _i++;
            }
            var current = new CharClass();
            bool first = true;
            var parts = new List<CharClass>(); // operands of && (intersection), all but the last
            while (true)
            {
                if (!More) throw Error("unterminated character class");
                int c = Peek;
                if (c == ']' && !first)
                {
                    _i++;
                    break;
                }
                first = false;
                if (c == '&' && _i + 1 < _p.Length && _p[_i + 1] == '&')
                {
                    // Intersection: everything so far && the rest.
                    _i += 2;
                    parts.Add(current);
                    current = new CharClass();
                    continue;
                }
                if (c == '[')
                {
                    if (_i + 1 < _p.Length && _p[_i + 1] == ':') throw Error("POSIX bracket classes are not supported");
                    _i++;
                    current.AddClass(ParseClass(false).Build());
                    continue;
                }
                int lo;
                _i++;
                if (c == '\\')
                {
                    var e = ParseEscape(false, inClass: true);
                    if (e is CharClass sub)
                    {
                        current.AddClass(sub.Build());
                        continue;
                    }
                    lo = (int)e;
                }
                else lo = c;
                // Range?
                if (More && Peek == '-' && _i + 1 < _p.Length && _p[_i + 1] != ']')
                {
                    _i++;
                    int hc = _p[_i++];
                    int hi;
                    if (hc == '\\')
                    {
                        var e = ParseEscape(false, inClass: true);
                        if (e is not int h) throw Error("bad range end in character class");
                        hi = h;
                    }
                    else if (hc == '[') throw Error("bad range end in character class");
                    else hi = hc;
                    if (hi < lo) throw Error("empty range in character class");
                    current.AddRange(lo, hi);
                }
                else current.AddChar(lo);
            }
            if (parts.Count == 0) cc.AddClass(current.Build());
            else
            {
                var inter = new CharClass();
                inter.AddClass(parts[0].Build());
                foreach (var p in parts.Skip(1).Append(current)) inter.Intersect(p.Build());
                cc.AddClass(inter.Build());
            }
            return cc;
        }
    }

    // ---------------------------------------------------------------- compiler

    sealed class Compiler
    {
        public readonly List<Inst> Prog = [];
        public readonly List<CharClass> Sets = [];
        public readonly List<int[]> CharLists = [];

        public int Add(Inst i)
        {
            Prog.Add(i);
            return Prog.Count - 1;
        }

        int Pc => Prog.Count;

        void Patch(int at, int a = int.MinValue, int b = int.MinValue)
        {
            var i = Prog[at];
            if (a != int.MinValue) i.A = a;
            if (b != int.MinValue) i.B = b;
            Prog[at] = i;
        }

        int SetIndex(CharClass c)
        {
            Sets.Add(c);
            return Sets.Count - 1;
        }

        public void Emit(Node n)
        {
            switch (n)
            {
                case CharNode ch:
                    if (ch.Chars.Length == 1) Add(new Inst { Op = Op.Char, A = ch.Chars[0] });
                    else
                    {
                        CharLists.Add(ch.Chars);
                        Add(new Inst { Op = Op.CharAny, A = CharLists.Count - 1 });
                    }
                    break;
                case SetNode s:
                    Add(new Inst { Op = Op.Set, A = SetIndex(s.Set) });
                    break;
                case SeqNode seq:
                    foreach (var item in seq.Items) Emit(item);
                    break;
                case AltNode alt:
                {
                    var jumps = new List<int>();
                    for (int k = 0; k < alt.Items.Count; k++)
                    {
                        if (k < alt.Items.Count - 1)
                        {
                            int split = Add(new Inst { Op = Op.Split });
                            Patch(split, a: Pc);
                            Emit(alt.Items[k]);
                            jumps.Add(Add(new Inst { Op = Op.Jmp }));
                            Patch(split, b: Pc);
                        }
                        else Emit(alt.Items[k]);
                    }
                    foreach (var j in jumps) Patch(j, a: Pc);
                    break;
                }
                case RepeatNode r:
                    EmitRepeat(r);
                    break;
                case LookNode l:
                {
                    int look = Add(new Inst { Op = Op.Look, A = l.Kind, C = Math.Max(0, FixedLength(l.Body)) });
                    Emit(l.Body);
                    Add(new Inst { Op = Op.Match });
                    Patch(look, b: Pc);
                    break;
                }
                case AssertNode a:
                    Add(new Inst { Op = Op.Assert, A = a.Kind });
                    break;
            }
        }

        void EmitRepeat(RepeatNode r)
        {
            var single = r.Body switch
            {
                SetNode s => s.Set,
                CharNode c => FromChars(c.Chars),
                _ => null,
            };
            if (single is not null)
            {
                Add(new Inst { Op = Op.RepeatSet, A = SetIndex(single), B = r.Min, C = r.Max, Flags = (byte)r.Mode });
                return;
            }
            if (r.Mode == Possessive)
            {
                // x*+ is (?>x*).
                Emit(new LookNode(Atomic, new RepeatNode(r.Body, r.Min, r.Max, Greedy)));
                return;
            }
            if (CanMatchEmpty(r.Body) && (r.Max < 0 || r.Max > 1))
                throw new ArgumentException("repetition of a group that can match empty is not supported");
            if ((long)Math.Max(r.Min, r.Max) * CountNodes(r.Body) > 20000)
                throw new ArgumentException("repetition too large to expand");
            for (int k = 0; k < r.Min; k++) Emit(r.Body);
            bool lazy = r.Mode == Lazy;
            if (r.Max < 0)
            {
                // L: Split(body, exit); body; Jmp L
                int loop = Add(new Inst { Op = Op.Split });
                int bodyStart = Pc;
                Emit(r.Body);
                Add(new Inst { Op = Op.Jmp, A = loop });
                if (lazy) Patch(loop, a: Pc, b: bodyStart);
                else Patch(loop, a: bodyStart, b: Pc);
                return;
            }
            var splits = new List<int>();
            for (int k = r.Min; k < r.Max; k++)
            {
                int split = Add(new Inst { Op = Op.Split });
                splits.Add(split);
                Patch(split, a: Pc);
                Emit(r.Body);
            }
            foreach (var s in splits)
            {
                if (lazy)
                {
                    var i = Prog[s];
                    Patch(s, a: Pc, b: i.A);
                }
                else Patch(s, b: Pc);
            }
        }

        static CharClass FromChars(int[] chars)
        {
            var c = new CharClass();
            foreach (var ch in chars) c.AddChar(ch);
            return c.Build();
        }

        static int CountNodes(Node n) => n switch
        {
            SeqNode s => 1 + s.Items.Sum(CountNodes),
            AltNode a => 1 + a.Items.Sum(CountNodes),
            RepeatNode r => 1 + CountNodes(r.Body) * Math.Max(1, Math.Max(r.Min, r.Max)),
            LookNode l => 1 + CountNodes(l.Body),
            _ => 1,
        };

        public static bool CanMatchEmpty(Node n) => n switch
        {
            CharNode or SetNode => false,
            SeqNode s => s.Items.All(CanMatchEmpty),
            AltNode a => a.Items.Any(CanMatchEmpty),
            RepeatNode r => r.Min == 0 || CanMatchEmpty(r.Body),
            LookNode l => l.Kind != Atomic || CanMatchEmpty(l.Body),
            _ => true,
        };

        /// <summary>Length in code points every match of <paramref name="n"/> has, or -1.</summary>
        public static int FixedLength(Node n)
        {
            switch (n)
            {
                case CharNode or SetNode: return 1;
                case AssertNode: return 0;
                case LookNode l: return l.Kind == Atomic ? FixedLength(l.Body) : 0;
                case SeqNode s:
                {
                    int t = 0;
                    foreach (var i in s.Items)
                    {
                        int k = FixedLength(i);
                        if (k < 0) return -1;
                        t += k;
                    }
                    return t;
                }
                case AltNode a:
                {
                    int k = FixedLength(a.Items[0]);
                    foreach (var i in a.Items) if (FixedLength(i) != k) return -1;
                    return k;
                }
                case RepeatNode r:
                {
                    if (r.Min != r.Max) return -1;
                    int k = FixedLength(r.Body);
                    return k < 0 ? -1 : k * r.Min;
                }
                default: return -1;
            }
        }

        /// <summary>The code points a match can start with, or null when a match may be empty or start anywhere.</summary>
        public static CharClass? FirstSet(Node n)
        {
            var acc = new CharClass();
            return AddFirst(n, acc) ? null : acc;
        }

        /// <summary>Adds the first code points of <paramref name="n"/> to <paramref name="acc"/>; returns true when
        /// <paramref name="n"/> can match empty (or has a zero-width part we do not look through).</summary>
        static bool AddFirst(Node n, CharClass acc)
        {
            switch (n)
            {
                case CharNode c:
                    foreach (var ch in c.Chars) acc.AddChar(ch);
                    return false;
                case SetNode s:
                    acc.AddClass(s.Set);
                    return false;
                case SeqNode s:
                    foreach (var i in s.Items)
                        if (!AddFirst(i, acc)) return false;
                    return true;
                case AltNode a:
                {
                    bool empty = false;
                    foreach (var i in a.Items) empty |= AddFirst(i, acc);
                    return empty;
                }
                case RepeatNode r:
                    return AddFirst(r.Body, acc) || r.Min == 0;
                case LookNode { Kind: Atomic } l:
                    return AddFirst(l.Body, acc);
                default:
                    // Lookarounds and anchors: give up on skipping (correct, only slower).
                    acc.AddAny();
                    return true;
            }
        }
    }

    /// <summary>For diagnostics: the pattern with non-ASCII characters escaped.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder();
        foreach (var r in Pattern.EnumerateRunes())
            sb.Append(r.Value < 128 ? ((char)r.Value).ToString() : $"\\x{{{r.Value.ToString("X", CultureInfo.InvariantCulture)}}}");
        return sb.ToString();
    }
}
