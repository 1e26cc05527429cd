namespace LongCat.Tokenization;

/// <summary>Code points and, when they differ from the input's own positions, their original spans.</summary>
sealed class Backing
{
    public int[] Cps = [];
    public int[]? Start, End; // original span of Cps[i]; null: Cps[i] is original code point Base + i
    public int Base;

    public (int Start, int End) Align(int i) => Start is null ? (Base + i, Base + i + 1) : (Start[i], End![i]);
}

/// <summary>A pre-token: code points [Start, End) of backing B.</summary>
struct Piece
{
    public int B, Start, End;
    public readonly int Length => End - Start;
}

/// <summary>
/// The pieces of one text segment as the pre-tokenizer refines them. Pieces are index ranges into shared
/// backings, so splitting allocates nothing; a backing is added only when a step inserts characters.
/// </summary>
sealed class PieceList
{
    public readonly List<Backing> Backings = [];
    public List<Piece> Current = [];
    public List<Piece> Next = [];
    int _backingsInUse;

    public void Reset()
    {
        _backingsInUse = 0;
        Current.Clear();
        Next.Clear();
    }

    /// <summary>A backing from the pool, cleared.</summary>
    public int NewBacking()
    {
        if (_backingsInUse == Backings.Count) Backings.Add(new Backing());
        var b = Backings[_backingsInUse];
        b.Start = b.End = null;
        b.Base = 0;
        return _backingsInUse++;
    }

    public ReadOnlySpan<int> Span(Piece p) => Backings[p.B].Cps.AsSpan(p.Start, p.End - p.Start);

    /// <summary>Makes <see cref="Next"/> current.</summary>
    public void Swap()
    {
        (Current, Next) = (Next, Current);
        Next.Clear();
    }
}
