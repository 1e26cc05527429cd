namespace LongCat.Tokenization;

/// <summary>
/// Unicode NFC with Hugging Face's alignment bookkeeping. <c>tokenizers</c> normalizes with the
/// <c>unicode-normalization-alignments</c> crate, which tags every output character with a change count
/// (0: replaces one input character, +1: inserted, -n: replaces 1+n input characters), and then assigns
/// original offsets positionally: a character with change &lt;= 0 takes the span of the next unconsumed
/// input character and consumes 1+n of them; an inserted one repeats the span of the input character before.
/// So a composed "é" from "e\u0301" gets the span of "e" only, and the accent belongs to no token.
/// </summary>
static class Nfc
{
    /// <summary>True when NFC might change <paramref name="cps"/>; false proves it is already NFC.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static bool MayChange(ReadOnlySpan<int> cps)
    {
        foreach (int cp in cps)
            if (cp >= 0x300 && UnicodeTables.IsNfcSensitive(cp)) return true;
        return false;
    }

    [ThreadStatic] static List<int>? t_decomp;
    [ThreadStatic] static List<(int Ch, int Change, int Ccc)>? t_chars;

    /// <summary>
    /// Normalizes <paramref name="cps"/>, whose code point i spans <paramref name="align"/>(i) of the original;
    /// appends the NFC code points and their original spans.
    /// </summary>
    public static void Normalize(ReadOnlySpan<int> cps, Func<int, (int Start, int End)> align,
        List<int> outCps, List<int> outStart, List<int> outEnd)
    {
        var d = t_decomp ??= [];
        var chars = t_chars ??= [];
        chars.Clear();

        // 1. Canonical decomposition: first code point replaces its source (0), the rest are inserted (+1).
        foreach (int cp in cps)
        {
            d.Clear();
            UnicodeTables.Decompose(cp, d);
            for (int k = 0; k < d.Count; k++) chars.Add((d[k], k == 0 ? 0 : 1, UnicodeTables.Ccc(d[k])));
        }

        // 2. Canonical ordering: stable sort of each run of non-starters by combining class; changes travel along.
        for (int i = 0; i < chars.Count;)
        {
            if (chars[i].Ccc == 0) { i++; continue; }
            int j = i;
            while (j < chars.Count && chars[j].Ccc != 0) j++;
            if (j - i > 1)
            {
                // Insertion sort is stable and the runs are short.
                for (int a = i + 1; a < j; a++)
                {
                    var x = chars[a];
                    int b = a - 1;
                    while (b >= i && chars[b].Ccc > x.Ccc) { chars[b + 1] = chars[b]; b--; }
                    chars[b + 1] = x;
                }
            }
            i = j;
        }

        // 3. Canonical composition. A composed character absorbs the change of what it swallowed, minus one.
        var result = new List<(int Ch, int Change)>(chars.Count);
        int starterIdx = -1;   // index in result of the current starter, or -1
        int lastCcc = -1;      // ccc of the last character after the starter; -1 when none
        foreach (var (ch, change, ccc) in chars)
        {
            if (starterIdx >= 0)
            {
                bool blocked = lastCcc >= 0 && (lastCcc == 0 || lastCcc >= ccc);
                if (!blocked)
                {
                    var (s, sc) = result[starterIdx];
                    int composed = UnicodeTables.Compose(s, ch);
                    if (composed >= 0)
                    {
                        result[starterIdx] = (composed, sc + change - 1);
                        continue;
                    }
                }
            }
            if (ccc == 0)
            {
                starterIdx = result.Count;
                lastCcc = -1;
            }
            else if (starterIdx >= 0) lastCcc = ccc;
            result.Add((ch, change));
        }

        // 4. Positional alignment, as NormalizedString::transform does it.
        int pos = 0;
        foreach (var (ch, change) in result)
        {
            (int s, int e) a;
            if (change > 0)
            {
                a = pos > 0 ? align(pos - 1) : (align(0).Start, align(0).Start);
            }
            else
            {
                a = pos < cps.Length ? align(pos) : align(cps.Length - 1);
                pos += 1 - change;
            }
            outCps.Add(ch);
            outStart.Add(a.s);
            outEnd.Add(a.e);
        }
    }
}
