namespace LongCat.Tokenization;

/// <summary>
/// Finds added tokens in text as Hugging Face's AddedVocabulary does: leftmost-longest matches
/// (aho-corasick <c>LeftmostLongest</c>), non-overlapping, with the single_word / lstrip / rstrip rules.
/// A trie over code points with a first-code-point filter does the same search without a separate automaton.
/// </summary>
sealed class AddedVocabulary
{
    sealed class Trie
    {
        readonly List<Dictionary<int, int>> _children = [new()];
        readonly List<int> _terminal = [-1]; // index into tokens, or -1
        readonly HashSet<int> _first = [];
        readonly ulong[] _firstBmp = new ulong[1024];

        public bool IsEmpty => _first.Count == 0;

        public void Add(ReadOnlySpan<int> key, int token)
        {
            if (key.Length == 0) return;
            int node = 0;
            foreach (int cp in key)
            {
                if (!_children[node].TryGetValue(cp, out int next))
                {
                    next = _children.Count;
                    _children.Add([]);
                    _terminal.Add(-1);
                    _children[node][cp] = next;
                }
                node = next;
            }
            if (_terminal[node] < 0) _terminal[node] = token; // first definition wins for duplicate contents
            _first.Add(key[0]);
            if (key[0] < 65536) _firstBmp[key[0] >> 6] |= 1UL << (key[0] & 63);
        }

        public bool MayStart(int cp) => cp < 65536 ? (_firstBmp[cp >> 6] & (1UL << (cp & 63))) != 0 : _first.Contains(cp);

        /// <summary>The longest token starting at <paramref name="pos"/>: (token index, end), or (-1, pos).</summary>
        public (int Token, int End) Longest(ReadOnlySpan<int> text, int pos)
        {
            int node = 0, best = -1, bestEnd = pos;
            for (int i = pos; i < text.Length; i++)
            {
                if (!_children[node].TryGetValue(text[i], out node)) break;
                if (_terminal[node] >= 0)
                {
                    best = _terminal[node];
                    bestEnd = i + 1;
                }
            }
            return (best, bestEnd);
        }
    }

    readonly List<AddedToken> _tokens = [];
    readonly Trie _raw = new();
    readonly Trie _normalized = new();

    public IReadOnlyList<AddedToken> Tokens => _tokens;
    public bool HasRaw => !_raw.IsEmpty;
    public bool HasNormalized => !_normalized.IsEmpty;

    /// <param name="token">The token.</param>
    /// <param name="normalizedContent">Its content after the tokenizer's normalizer (for normalized tokens).</param>
    public void Add(AddedToken token, int[] normalizedContent)
    {
        int index = _tokens.Count;
        _tokens.Add(token);
        if (token.Normalized) _normalized.Add(normalizedContent, index);
        else _raw.Add(ToCodePoints(token.Content), index);
    }

    internal static int[] ToCodePoints(string s)
    {
        var r = new List<int>(s.Length);
        foreach (var rune in s.EnumerateRunes()) r.Add(rune.Value);
        return [.. r];
    }

    /// <summary>
    /// Splits <paramref name="text"/> into added-token matches and the text between them. Appends
    /// (start, end, token index or -1) for every non-empty part, in order.
    /// </summary>
    public void Split(ReadOnlySpan<int> text, bool normalized, bool skipSpecial, List<(int Start, int End, int Token)> parts)
    {
        var trie = normalized ? _normalized : _raw;
        int startOffset = 0;
        int i = 0;
        while (i < text.Length)
        {
            if (!trie.MayStart(text[i])) { i++; continue; }
            var (tok, end) = trie.Longest(text, i);
            if (tok < 0) { i++; continue; }
            int start = i;
            i = end; // matches never overlap, even when this one is rejected below
            var t = _tokens[tok];
            if (skipSpecial && t.Special) continue;
            if (t.SingleWord)
            {
                bool startSpace = start == 0 || !UnicodeTables.IsAlphanumeric(text[start - 1]);
                bool stopSpace = end == text.Length || !UnicodeTables.IsAlphanumeric(text[end]);
                if (!startSpace || !stopSpace) continue;
            }
            if (t.LStrip)
            {
                int s = start;
                while (s > 0 && UnicodeTables.IsWhiteSpace(text[s - 1])) s--;
                start = Math.Max(s, startOffset);
            }
            if (t.RStrip)
            {
                while (end < text.Length && UnicodeTables.IsWhiteSpace(text[end])) end++;
                i = end;
            }
            if (startOffset < start) parts.Add((startOffset, start, -1));
            parts.Add((start, end, tok));
            startOffset = end;
        }
        if (startOffset < text.Length) parts.Add((startOffset, text.Length, -1));
    }
}
