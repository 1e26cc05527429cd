using System.Collections.Frozen;
using System.Globalization;

namespace LongCat.Tokenization;

/// <summary>
/// Unicode facts the BCL does not expose: canonical combining classes, canonical decompositions and
/// compositions (for NFC with Hugging Face's alignment bookkeeping) and simple case folding (for Oniguruma's
/// <c>(?i)</c>). The data is generated into UnicodeTables.g.cs by tools/gen-unicode-tables.py. The NFC tables
/// follow Unicode 9.0, as HF tokenizers' normalizer does (<see cref="NfcUnicodeVersion"/>): characters assigned
/// later are starters with no decomposition or composition there.
/// General categories come from the BCL (<see cref="CharUnicodeInfo"/>), which works in invariant mode.
/// </summary>
static partial class UnicodeTables
{
    const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    static readonly FrozenDictionary<int, byte> s_ccc = Build(CccKeys, CccValues, v => (byte)v);
    static readonly FrozenDictionary<int, (int Start, int Length)> s_decomp = BuildDecomp();
    static readonly FrozenDictionary<long, int> s_compose = BuildCompose();
    static readonly FrozenDictionary<int, int> s_fold = Build(FoldKeys, FoldValues, v => v);
    static readonly FrozenDictionary<int, int[]> s_foldClasses = BuildFoldClasses();

    /// <summary>BMP bitmap of code points NFC may touch: a decomposition, a non-zero combining class, or a
    /// second half of a composition (including Hangul V and T jamo). Text without them is already NFC.</summary>
    static readonly ulong[] s_nfcSensitiveBmp = BuildNfcSensitive(out s_nfcSensitiveAstral);
    static readonly FrozenSet<int> s_nfcSensitiveAstral;

    static FrozenDictionary<int, T> Build<T>(ReadOnlySpan<int> keys, ReadOnlySpan<int> values, Func<int, T> conv)
    {
        var d = new Dictionary<int, T>(keys.Length);
        for (int i = 0; i < keys.Length; i++) d[keys[i]] = conv(values[i]);
        return d.ToFrozenDictionary();
    }

    static FrozenDictionary<int, (int, int)> BuildDecomp()
    {
        var keys = DecompKeys;
        var offs = DecompOffsets;
        var d = new Dictionary<int, (int, int)>(keys.Length);
        for (int i = 0; i < keys.Length; i++) d[keys[i]] = (offs[i], offs[i + 1] - offs[i]);
        return d.ToFrozenDictionary();
    }

    static FrozenDictionary<long, int> BuildCompose()
    {
        var a = ComposeFirst;
        var b = ComposeSecond;
        var r = ComposeResult;
        var d = new Dictionary<long, int>(a.Length);
        for (int i = 0; i < a.Length; i++) d[((long)a[i] << 21) | (uint)b[i]] = r[i];
        return d.ToFrozenDictionary();
    }

    static FrozenDictionary<int, int[]> BuildFoldClasses()
    {
        // Every code point that folds to the same target belongs to one class (target included).
        var groups = new Dictionary<int, List<int>>();
        var keys = FoldKeys;
        var vals = FoldValues;
        for (int i = 0; i < keys.Length; i++)
        {
            if (!groups.TryGetValue(vals[i], out var g)) groups[vals[i]] = g = [vals[i]];
            g.Add(keys[i]);
        }
        var d = new Dictionary<int, int[]>();
        foreach (var g in groups.Values)
        {
            var arr = g.Distinct().Order().ToArray();
            foreach (var cp in arr) d[cp] = arr;
        }
        return d.ToFrozenDictionary();
    }

    static ulong[] BuildNfcSensitive(out FrozenSet<int> astral)
    {
        var bmp = new ulong[65536 / 64];
        var ast = new HashSet<int>();
        void Mark(int cp)
        {
            if (cp < 65536) bmp[cp >> 6] |= 1UL << (cp & 63);
            else ast.Add(cp);
        }
        foreach (var cp in CccKeys) Mark(cp);
        foreach (var cp in DecompKeys) Mark(cp);
        foreach (var cp in ComposeSecond) Mark(cp);
        for (int cp = SBase; cp < SBase + SCount; cp++) Mark(cp); // decomposes algorithmically
        for (int cp = VBase; cp < VBase + VCount; cp++) Mark(cp);
        for (int cp = TBase + 1; cp < TBase + TCount; cp++) Mark(cp);
        astral = ast.ToFrozenSet();
        return bmp;
    }

    /// <summary>Canonical combining class (0 for starters).</summary>
    public static int Ccc(int cp) => cp < 0x300 ? 0 : s_ccc.TryGetValue(cp, out var c) ? c : 0;

    /// <summary>True when NFC could change a string containing <paramref name="cp"/> (see the bitmap above).</summary>
    public static bool IsNfcSensitive(int cp) =>
        cp < 65536 ? (s_nfcSensitiveBmp[cp >> 6] & (1UL << (cp & 63))) != 0 : s_nfcSensitiveAstral.Contains(cp);

    /// <summary>Appends the full canonical decomposition of <paramref name="cp"/> (itself when it has none).</summary>
    public static void Decompose(int cp, List<int> output)
    {
        int s = cp - SBase;
        if ((uint)s < SCount)
        {
            output.Add(LBase + s / NCount);
            output.Add(VBase + s % NCount / TCount);
            if (s % TCount != 0) output.Add(TBase + s % TCount);
            return;
        }
        if (cp >= 0xC0 && s_decomp.TryGetValue(cp, out var r))
        {
            var vals = DecompValues;
            for (int i = 0; i < r.Length; i++) output.Add(vals[r.Start + i]);
            return;
        }
        output.Add(cp);
    }

    /// <summary>The primary composite of <paramref name="a"/> followed by <paramref name="b"/>, or -1.</summary>
    public static int Compose(int a, int b)
    {
        int l = a - LBase, v = b - VBase;
        if ((uint)l < LCount && (uint)v < VCount) return SBase + (l * VCount + v) * TCount;
        int s = a - SBase, t = b - TBase;
        if ((uint)s < SCount && s % TCount == 0 && t > 0 && t < TCount) return a + t;
        return s_compose.TryGetValue(((long)a << 21) | (uint)b, out var c) ? c : -1;
    }

    /// <summary>Simple case fold of <paramref name="cp"/>.</summary>
    public static int Fold(int cp) => s_fold.TryGetValue(cp, out var f) ? f : cp;

    /// <summary>Every simple-case-fold class with more than one member.</summary>
    public static IEnumerable<int[]> FoldClasses() => s_foldClasses.Values.Distinct();

    /// <summary>All code points with the same simple case fold as <paramref name="cp"/> (itself included).</summary>
    public static int[] CaseVariants(int cp) => s_foldClasses.TryGetValue(cp, out var c) ? c : [cp];

    /// <summary>Unicode White_Space, which is Oniguruma's <c>\s</c> and Rust's <c>char::is_whitespace</c>.</summary>
    public static bool IsWhiteSpace(int cp) => cp switch
    {
        >= 0x09 and <= 0x0D or 0x20 or 0x85 or 0xA0 or 0x1680 or (>= 0x2000 and <= 0x200A) or 0x2028 or 0x2029
            or 0x202F or 0x205F or 0x3000 => true,
        _ => false,
    };

    /// <summary>General category of a code point (the BCL's table).</summary>
    public static UnicodeCategory Category(int cp) =>
        (uint)cp <= 0x10FFFF ? CharUnicodeInfo.GetUnicodeCategory(cp) : UnicodeCategory.OtherNotAssigned;

    /// <summary>Rust's <c>char::is_alphanumeric</c> (Alphabetic or Numeric), approximated by letters, numbers
    /// and spacing/non-spacing marks; used only by added tokens' <c>single_word</c> flag.</summary>
    public static bool IsAlphanumeric(int cp) => Category(cp) switch
    {
        UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
            or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter or UnicodeCategory.DecimalDigitNumber
            or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => true,
        _ => false,
    };
}
