using System.Runtime.CompilerServices;
using LongCat.Tokenization;

namespace LongCat.Inference.Constraints;

/// <summary>
/// The vocabulary as constrained decoding sees it: each token's bytes (byte-level BPE: a token may hold part of a
/// UTF-8 character or of a JSON token), arranged in a trie so that tokens sharing a prefix are walked once, plus
/// the end tokens (eos, end of turn) allowed only when the grammar is complete. Special tokens other than the end
/// tokens, tokens without bytes and ids past the tokenizer (padding rows of the model) are never allowed.
/// Immutable and shared by every grammar over the same tokenizer.
/// </summary>
public sealed class TokenVocabulary
{
    static readonly ConditionalWeakTable<Tokenizer, TokenVocabulary> Cache = new();

    /// <summary>Trie in first-child / next-sibling form; node 0 is the root (the empty prefix).</summary>
    internal readonly int[] FirstChild, NextSibling;
    internal readonly byte[] Label;
    /// <summary>Tokens ending at node n: TokenIds[TokenStart[n] .. TokenStart[n + 1]).</summary>
    internal readonly int[] TokenStart, TokenIds;
    readonly byte[][] _bytes;

    public TokenVocabulary(IReadOnlyList<byte[]?> tokenBytes, int size, IReadOnlyList<int> endTokens)
    {
        if (endTokens.Count == 0) throw new ArgumentException("constrained decoding needs at least one end token (eos or end of turn)");
        foreach (var e in endTokens)
            if (e < 0 || e >= size) throw new ArgumentException($"end token {e} is outside the vocabulary 0..{size - 1}");
        Size = size;
        EndTokens = [.. endTokens.Distinct().Order()];
        _bytes = new byte[size][];
        var ids = new List<int>();
        for (int i = 0; i < size; i++)
        {
            _bytes[i] = i < tokenBytes.Count && tokenBytes[i] is { Length: > 0 } b && !EndTokens.Contains(i) ? b : [];
            if (_bytes[i].Length > 0) ids.Add(i);
        }
        ids.Sort((a, b) => _bytes[a].AsSpan().SequenceCompareTo(_bytes[b]) is var c and not 0 ? c : a.CompareTo(b));

        // Build the trie from the sorted tokens: each token shares its longest common prefix with the previous one.
        var first = new List<int> { -1 };
        var next = new List<int> { -1 };
        var label = new List<byte> { 0 };
        var lastChild = new List<int> { -1 };
        var owner = new List<int>();   // node of each token in `ids` order
        var path = new List<int> { 0 };
        byte[] prev = [];
        foreach (int id in ids)
        {
            var b = _bytes[id];
            int lcp = 0;
            while (lcp < prev.Length && lcp < b.Length && prev[lcp] == b[lcp]) lcp++;
            path.RemoveRange(lcp + 1, path.Count - lcp - 1);
            for (int k = lcp; k < b.Length; k++)
            {
                int parent = path[^1], node = first.Count;
                first.Add(-1); next.Add(-1); label.Add(b[k]); lastChild.Add(-1);
                if (lastChild[parent] < 0) first[parent] = node; else next[lastChild[parent]] = node;
                lastChild[parent] = node;
                path.Add(node);
            }
            owner.Add(path[b.Length]);
            prev = b;
        }
        FirstChild = [.. first];
        NextSibling = [.. next];
        Label = [.. label];
        TokenStart = new int[first.Count + 1];
        foreach (int n in owner) TokenStart[n + 1]++;
        for (int n = 0; n < first.Count; n++) TokenStart[n + 1] += TokenStart[n];
        TokenIds = new int[ids.Count];
        var fill = (int[])TokenStart.Clone();
        for (int i = 0; i < ids.Count; i++) TokenIds[fill[owner[i]]++] = ids[i];
        MaxTokenBytes = ids.Count == 0 ? 0 : ids.Max(i => _bytes[i].Length);
    }

    /// <summary>
    /// The vocabulary of a tokenizer for a model of <paramref name="modelVocabSize"/> rows (at least the tokenizer's),
    /// with the given end tokens; cached per tokenizer.
    /// </summary>
    public static TokenVocabulary For(Tokenizer tokenizer, int modelVocabSize, IReadOnlyList<int> endTokens)
    {
        if (Cache.TryGetValue(tokenizer, out var v) && v.Size == modelVocabSize && v.EndTokens.SequenceEqual(endTokens.Distinct().Order()))
            return v;
        var bytes = new byte[]?[tokenizer.VocabSize];
        for (int i = 0; i < bytes.Length; i++) bytes[i] = tokenizer.IsSpecial(i) ? null : tokenizer.TokenBytes(i).ToArray();
        v = new TokenVocabulary(bytes, modelVocabSize, endTokens);
        Cache.AddOrUpdate(tokenizer, v);
        return v;
    }

    /// <summary>Logit rows (the model's vocabulary size).</summary>
    public int Size { get; }
    /// <summary>Tokens that end the text: allowed only when the grammar is complete.</summary>
    public int[] EndTokens { get; }
    /// <summary>Trie nodes, the root included.</summary>
    public int TrieNodes => FirstChild.Length;
    public int MaxTokenBytes { get; }

    /// <summary>The bytes of a token (empty for end tokens, special tokens and padding ids).</summary>
    public ReadOnlySpan<byte> Bytes(int token) => _bytes[token];
    public bool IsEnd(int token) => Array.BinarySearch(EndTokens, token) >= 0;
}
