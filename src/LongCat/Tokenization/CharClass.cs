using System.Globalization;

namespace LongCat.Tokenization;

/// <summary>
/// A set of code points for <see cref="CodePointRegex"/>: a union of ranges, general categories and class
/// escapes, optionally intersected (Oniguruma's <c>&amp;&amp;</c>), case-folded and negated, in that order
/// (Oniguruma folds a class before negating it, so <c>(?i:[^s])</c> rejects both 's' and 'S').
/// Membership for the BMP is precomputed into a 64 Kbit bitmap; astral code points evaluate the definition.
/// </summary>
sealed class CharClass
{
    readonly List<(int Lo, int Hi)> _ranges = [];
    readonly List<CharClass> _subclasses = [];
    readonly List<CharClass> _intersections = [];
    uint _categories; // bit per UnicodeCategory
    bool _whiteSpace, _word, _hex, _anyButNewline, _any;
    ulong[]? _bmp;

    public bool Negated { get; set; }
    public bool IgnoreCase { get; set; }

    public void AddRange(int lo, int hi) => _ranges.Add((lo, hi));
    public void AddChar(int cp) => _ranges.Add((cp, cp));
    public void AddCategories(uint mask) => _categories |= mask;
    public void AddClass(CharClass c) => _subclasses.Add(c);
    public void Intersect(CharClass c) => _intersections.Add(c);
    public void AddWhiteSpace() => _whiteSpace = true;
    public void AddWord() => _word = true;
    public void AddHexDigit() => _hex = true;
    public void AddAnyButNewline() => _anyButNewline = true;
    public void AddAny() => _any = true;

    public static uint Mask(params UnicodeCategory[] cats)
    {
        uint m = 0;
        foreach (var c in cats) m |= 1u << (int)c;
        return m;
    }

    /// <summary>Single escape classes: \s \d \w \h and their negations.</summary>
    public static CharClass Escape(char e)
    {
        var c = new CharClass();
        switch (char.ToLowerInvariant(e))
        {
            case 's': c.AddWhiteSpace(); break;
            case 'd': c.AddCategories(Mask(UnicodeCategory.DecimalDigitNumber)); break;
            case 'w': c.AddWord(); break;
            case 'h': c.AddHexDigit(); break;
            default: throw new ArgumentException($"unknown class escape \\{e}");
        }
        c.Negated = char.IsUpper(e);
        return c;
    }

    /// <summary>Freezes the definition into the BMP bitmap. Call once, after the last Add.</summary>
    public CharClass Build()
    {
        if (_bmp is not null) return this;
        foreach (var s in _subclasses) s.Build();
        foreach (var s in _intersections) s.Build();
        var bmp = new ulong[1024];
        for (int cp = 0; cp < 65536; cp++)
            if (Evaluate(cp)) bmp[cp >> 6] |= 1UL << (cp & 63);
        _bmp = bmp;
        return this;
    }

    /// <summary>Membership test: one bit for the BMP, the definition for astral code points.</summary>
    public bool Contains(int cp) => cp < 65536 ? (_bmp![cp >> 6] & (1UL << (cp & 63))) != 0 : Evaluate(cp);

    bool Evaluate(int cp)
    {
        bool r = IgnoreCase ? MatchesAnyCase(cp) : MatchesPositive(cp);
        return r != Negated;
    }

    bool MatchesAnyCase(int cp)
    {
        foreach (var v in UnicodeTables.CaseVariants(cp))
            if (MatchesPositive(v)) return true;
        return false;
    }

    bool MatchesPositive(int cp)
    {
        if (!MatchesUnion(cp)) return false;
        foreach (var i in _intersections)
            if (!i.Contains(cp)) return false;
        return true;
    }

    bool MatchesUnion(int cp)
    {
        if (_any) return true;
        if (_anyButNewline && cp != '\n') return true;
        foreach (var (lo, hi) in _ranges)
            if (cp >= lo && cp <= hi) return true;
        if (_categories != 0 && (_categories & (1u << (int)UnicodeTables.Category(cp))) != 0) return true;
        if (_whiteSpace && UnicodeTables.IsWhiteSpace(cp)) return true;
        if (_hex && (cp is >= '0' and <= '9' or >= 'a' and <= 'f' or >= 'A' and <= 'F')) return true;
        if (_word && IsWord(cp)) return true;
        foreach (var s in _subclasses)
            if (s.Contains(cp)) return true;
        return false;
    }

    /// <summary>Oniguruma's Unicode \w: letters, marks, decimal digits, connector punctuation (and Nl).</summary>
    static bool IsWord(int cp) => UnicodeTables.Category(cp) switch
    {
        UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
            or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter or UnicodeCategory.NonSpacingMark
            or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark
            or UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber
            or UnicodeCategory.ConnectorPunctuation => true,
        _ => false,
    };

    /// <summary>Oniguruma's word test for \b.</summary>
    public static bool IsWordChar(int cp) => IsWord(cp);

    /// <summary>General-category masks for \p{..} names (Oniguruma matches names loosely: case, space, '_', '-').</summary>
    public static bool TryPropertyMask(string name, out uint mask)
    {
        var key = new string(name.Where(ch => ch is not (' ' or '_' or '-')).ToArray()).ToLowerInvariant();
        const UnicodeCategory Lu = UnicodeCategory.UppercaseLetter, Ll = UnicodeCategory.LowercaseLetter,
            Lt = UnicodeCategory.TitlecaseLetter, Lm = UnicodeCategory.ModifierLetter, Lo = UnicodeCategory.OtherLetter,
            Mn = UnicodeCategory.NonSpacingMark, Mc = UnicodeCategory.SpacingCombiningMark, Me = UnicodeCategory.EnclosingMark,
            Nd = UnicodeCategory.DecimalDigitNumber, Nl = UnicodeCategory.LetterNumber, No = UnicodeCategory.OtherNumber,
            Zs = UnicodeCategory.SpaceSeparator, Zl = UnicodeCategory.LineSeparator, Zp = UnicodeCategory.ParagraphSeparator,
            Cc = UnicodeCategory.Control, Cf = UnicodeCategory.Format, Cs = UnicodeCategory.Surrogate,
            Co = UnicodeCategory.PrivateUse, Cn = UnicodeCategory.OtherNotAssigned,
            Pc = UnicodeCategory.ConnectorPunctuation, Pd = UnicodeCategory.DashPunctuation,
            Ps = UnicodeCategory.OpenPunctuation, Pe = UnicodeCategory.ClosePunctuation,
            Pi = UnicodeCategory.InitialQuotePunctuation, Pf = UnicodeCategory.FinalQuotePunctuation,
            Po = UnicodeCategory.OtherPunctuation, Sm = UnicodeCategory.MathSymbol, Sc = UnicodeCategory.CurrencySymbol,
            Sk = UnicodeCategory.ModifierSymbol, So = UnicodeCategory.OtherSymbol;
        mask = key switch
        {
            "l" or "letter" => Mask(Lu, Ll, Lt, Lm, Lo),
            "lc" or "l&" or "casedletter" => Mask(Lu, Ll, Lt),
            "lu" or "uppercaseletter" => Mask(Lu),
            "ll" or "lowercaseletter" => Mask(Ll),
            "lt" or "titlecaseletter" => Mask(Lt),
            "lm" or "modifierletter" => Mask(Lm),
            "lo" or "otherletter" => Mask(Lo),
            "m" or "mark" or "combiningmark" => Mask(Mn, Mc, Me),
            "mn" or "nonspacingmark" => Mask(Mn),
            "mc" or "spacingmark" => Mask(Mc),
            "me" or "enclosingmark" => Mask(Me),
            "n" or "number" => Mask(Nd, Nl, No),
            "nd" or "decimalnumber" or "digit" => Mask(Nd),
            "nl" or "letternumber" => Mask(Nl),
            "no" or "othernumber" => Mask(No),
            "p" or "punctuation" or "punct" => Mask(Pc, Pd, Ps, Pe, Pi, Pf, Po),
            "pc" or "connectorpunctuation" => Mask(Pc),
            "pd" or "dashpunctuation" => Mask(Pd),
            "ps" or "openpunctuation" => Mask(Ps),
            "pe" or "closepunctuation" => Mask(Pe),
            "pi" or "initialpunctuation" => Mask(Pi),
            "pf" or "finalpunctuation" => Mask(Pf),
            "po" or "otherpunctuation" => Mask(Po),
            "s" or "symbol" => Mask(Sm, Sc, Sk, So),
            "sm" or "mathsymbol" => Mask(Sm),
            "sc" or "currencysymbol" => Mask(Sc),
            "sk" or "modifiersymbol" => Mask(Sk),
            "so" or "othersymbol" => Mask(So),
            "z" or "separator" => Mask(Zs, Zl, Zp),
            "zs" or "spaceseparator" => Mask(Zs),
            "zl" or "lineseparator" => Mask(Zl),
            "zp" or "paragraphseparator" => Mask(Zp),
            "c" or "other" => Mask(Cc, Cf, Cs, Co, Cn),
            "cc" or "control" or "cntrl" => Mask(Cc),
            "cf" or "format" => Mask(Cf),
            "cs" or "surrogate" => Mask(Cs),
            "co" or "privateuse" => Mask(Co),
            "cn" or "unassigned" => Mask(Cn),
            "any" => uint.MaxValue,
            "assigned" => ~Mask(Cn),
            _ => 0,
        };
        return mask != 0;
    }
}
