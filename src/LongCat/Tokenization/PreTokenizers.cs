namespace LongCat.Tokenization;

/// <summary>How a Split pre-tokenizer treats the matched delimiters (tokenizer.json <c>behavior</c>).</summary>
public enum SplitBehavior
{
    /// <summary>Drop the matches.</summary>
    Removed,
    /// <summary>Each match is its own piece.</summary>
    Isolated,
    /// <summary>A match joins the piece before it.</summary>
    MergedWithPrevious,
    /// <summary>A match joins the piece after it.</summary>
    MergedWithNext,
    /// <summary>Runs of matches and runs of non-matches each form one piece.</summary>
    Contiguous,
}

/// <summary>One pre-tokenizer step: refines <see cref="PieceList.Current"/> into <see cref="PieceList.Next"/>.</summary>
abstract class PreTokenizerStep
{
    public abstract void Apply(PieceList pieces);

    [ThreadStatic] static List<(int Start, int End, bool IsMatch)>? t_events;
    [ThreadStatic] static List<(int Start, int End)>? t_matches;

    protected static List<(int Start, int End)> Matches => t_matches ??= [];

    /// <summary>
    /// Turns the (gap/match) events of one piece into pieces, as NormalizedString::split does for each behavior;
    /// empty pieces are dropped (PreTokenizedString::split filters them).
    /// </summary>
    protected static void EmitSplits(PieceList pl, Piece p, List<(int Start, int End, bool IsMatch)> events, SplitBehavior behavior)
    {
        void Add(int s, int e)
        {
            if (e > s) pl.Next.Add(new Piece { B = p.B, Start = p.Start + s, End = p.Start + e });
        }
        switch (behavior)
        {
            case SplitBehavior.Isolated:
                foreach (var (s, e, _) in events) Add(s, e);
                break;
            case SplitBehavior.Removed:
                foreach (var (s, e, m) in events) if (!m) Add(s, e);
                break;
            case SplitBehavior.Contiguous:
            {
                int curS = -1, curE = -1;
                bool prevMatch = false;
                foreach (var (s, e, m) in events)
                {
                    if (m == prevMatch && curS >= 0) curE = e;
                    else
                    {
                        if (curS >= 0) Add(curS, curE);
                        curS = s;
                        curE = e;
                    }
                    prevMatch = m;
                }
                if (curS >= 0) Add(curS, curE);
                break;
            }
            case SplitBehavior.MergedWithPrevious:
            {
                int curS = -1, curE = -1;
                bool prevMatch = false;
                foreach (var (s, e, m) in events)
                {
                    if (m && !prevMatch && curS >= 0) curE = e;
                    else
                    {
                        if (curS >= 0) Add(curS, curE);
                        curS = s;
                        curE = e;
                    }
                    prevMatch = m;
                }
                if (curS >= 0) Add(curS, curE);
                break;
            }
            case SplitBehavior.MergedWithNext:
            {
                // Folded from the right: a match absorbs the piece that follows it.
                var outRev = new List<(int S, int E)>();
                bool prevMatch = false;
                for (int k = events.Count - 1; k >= 0; k--)
                {
                    var (s, e, m) = events[k];
                    if (m && !prevMatch && outRev.Count > 0) outRev[^1] = (s, outRev[^1].E);
                    else outRev.Add((s, e));
                    prevMatch = m;
                }
                for (int k = outRev.Count - 1; k >= 0; k--) Add(outRev[k].S, outRev[k].E);
                break;
            }
        }
    }

    protected static List<(int Start, int End, bool IsMatch)> Events()
    {
        var ev = t_events ??= [];
        ev.Clear();
        return ev;
    }
}

/// <summary>tokenizer.json <c>Split</c>: a regex (or literal string) with a behavior and optional invert.</summary>
sealed class SplitStep(CodePointRegex regex, SplitBehavior behavior, bool invert) : PreTokenizerStep
{
    public CodePointRegex Regex { get; } = regex;
    public SplitBehavior Behavior { get; } = behavior;
    public bool Invert { get; } = invert;

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public override void Apply(PieceList pl)
    {
        var matches = Matches;
        foreach (var p in pl.Current)
        {
            var span = pl.Span(p);
            matches.Clear();
            Regex.FindAll(span, matches);
            if (Behavior == SplitBehavior.Isolated)
            {
                // Hot path: gaps and matches alike become pieces; invert does not matter.
                int prev = 0;
                foreach (var (s, e) in matches)
                {
                    if (s > prev) pl.Next.Add(new Piece { B = p.B, Start = p.Start + prev, End = p.Start + s });
                    if (e > s) pl.Next.Add(new Piece { B = p.B, Start = p.Start + s, End = p.Start + e });
                    prev = e;
                }
                if (prev < span.Length) pl.Next.Add(new Piece { B = p.B, Start = p.Start + prev, End = p.End });
                continue;
            }
            var ev = Events();
            int last = 0;
            foreach (var (s, e) in matches)
            {
                if (s != last) ev.Add((last, s, Invert));
                ev.Add((s, e, !Invert));
                last = e;
            }
            if (last != span.Length) ev.Add((last, span.Length, Invert));
            EmitSplits(pl, p, ev, Behavior);
        }
        pl.Swap();
    }
}

/// <summary>tokenizer.json <c>Digits</c>: every numeric code point (Rust <c>char::is_numeric</c>: N*) is a
/// delimiter, isolated one by one or grouped in runs.</summary>
sealed class DigitsStep(bool individualDigits) : PreTokenizerStep
{
    public bool IndividualDigits { get; } = individualDigits;

    static bool IsNumeric(int cp) => UnicodeTables.Category(cp) is System.Globalization.UnicodeCategory.DecimalDigitNumber
        or System.Globalization.UnicodeCategory.LetterNumber or System.Globalization.UnicodeCategory.OtherNumber;

    public override void Apply(PieceList pl)
    {
        foreach (var p in pl.Current)
        {
            var span = pl.Span(p);
            var ev = Events();
            int last = 0;
            for (int i = 0; i < span.Length; i++)
            {
                if (!IsNumeric(span[i])) continue;
                if (last < i) ev.Add((last, i, false));
                ev.Add((i, i + 1, true));
                last = i + 1;
            }
            if (span.Length > last) ev.Add((last, span.Length, false));
            EmitSplits(pl, p, ev, IndividualDigits ? SplitBehavior.Isolated : SplitBehavior.Contiguous);
        }
        pl.Swap();
    }
}

/// <summary>
/// tokenizer.json <c>ByteLevel</c> as a pre-tokenizer: optionally prefixes each piece with a space and splits
/// with GPT-2's regex. The byte-to-character mapping itself happens in the BPE stage (bytes in, ids out).
/// </summary>
sealed class ByteLevelStep(bool addPrefixSpace, bool useRegex) : PreTokenizerStep
{
    /// <summary>GPT-2's pre-tokenizer regex, as Hugging Face's ByteLevel uses it.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    static readonly Lazy<CodePointRegex> s_gpt2 = new(() => CodePointRegex.Compile(Gpt2Pattern));

    public bool AddPrefixSpace { get; } = addPrefixSpace;
    public bool UseRegex { get; } = useRegex;

    public override void Apply(PieceList pl)
    {
        if (AddPrefixSpace)
        {
            foreach (var p in pl.Current)
            {
                var span = pl.Span(p);
                if (span.Length > 0 && span[0] == ' ') { pl.Next.Add(p); continue; }
                // Prepend ' ' with the span of the piece's first character (NormalizedString::prepend).
                var src = pl.Backings[p.B];
                int b = pl.NewBacking();
                var nb = pl.Backings[b];
                int n = span.Length + 1;
                nb.Cps = new int[n];
                nb.Start = new int[n];
                nb.End = new int[n];
                nb.Cps[0] = ' ';
                (nb.Start[0], nb.End[0]) = src.Align(p.Start);
                for (int i = 0; i < span.Length; i++)
                {
                    nb.Cps[i + 1] = span[i];
                    (nb.Start[i + 1], nb.End[i + 1]) = src.Align(p.Start + i);
                }
                pl.Next.Add(new Piece { B = b, Start = 0, End = n });
            }
            pl.Swap();
        }
        if (UseRegex) new SplitStep(s_gpt2.Value, SplitBehavior.Isolated, false).Apply(pl);
    }
}
