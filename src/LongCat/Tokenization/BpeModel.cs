namespace LongCat.Tokenization;

/// <summary>
/// The byte-level BPE model of a tokenizer.json: vocabulary, merges ranked by position, and the merge loop.
/// Words arrive as UTF-8 bytes (the byte-level characters are implied), so no strings are built per word.
/// </summary>
/// <remarks>
/// Merge order follows Hugging Face's <c>Word::merge_all</c>: repeatedly apply the pair of lowest rank,
/// leftmost first. Short words use a rank array scanned for its minimum (fast for the usual 2-20 bytes);
/// long words use a priority queue over a linked list, O(n log n), so a megabyte without a break cannot stall.
/// </remarks>
sealed class BpeModel
{
    /// <summary>Words longer than this many bytes use the priority-queue merge loop.</summary>
    internal const int LongWord = 48;

    readonly int[] _byteIds = new int[256];       // id of each byte's byte-level character, or -1
    readonly int[] _byteFallbackIds = new int[256]; // id of "<0xXX>", or -1
    readonly MergeTable _merges;
    readonly Dictionary<string, int> _vocab;
    readonly string?[] _idToToken;
    readonly Dictionary<ByteKey, int>? _vocabByBytes; // for ignore_merges

    public string? UnkToken { get; }
    public bool FuseUnk { get; }
    public bool ByteFallback { get; }
    public bool IgnoreMerges { get; }
    public IReadOnlyDictionary<string, int> Vocab => _vocab;
    public int MergeCount => _merges.Count;
    /// <summary>One more than the largest vocabulary id.</summary>
    public int IdLimit => _idToToken.Length;

    readonly record struct ByteKey(string Bytes); // bytes as Latin-1 chars: cheap equality and hashing

    public BpeModel(Dictionary<string, int> vocab, IReadOnlyList<(int Left, int Right, int Merged)> merges,
        string? unkToken, bool fuseUnk, bool byteFallback, bool ignoreMerges)
    {
        _vocab = vocab;
        int max = -1;
        foreach (var id in vocab.Values) max = Math.Max(max, id);
        _idToToken = new string?[max + 1];
        foreach (var (tok, id) in vocab) _idToToken[id] = tok;
        _merges = new MergeTable(merges);
        UnkToken = unkToken;
        FuseUnk = fuseUnk;
        ByteFallback = byteFallback;
        IgnoreMerges = ignoreMerges;
        for (int b = 0; b < 256; b++)
        {
            _byteIds[b] = vocab.TryGetValue(ByteLevel.ByteToChar((byte)b).ToString(), out int id) ? id : -1;
            _byteFallbackIds[b] = vocab.TryGetValue($"<0x{b:X2}>", out int fid) ? fid : -1;
        }
        if (ignoreMerges)
        {
            _vocabByBytes = [];
            foreach (var (tok, id) in vocab)
            {
                var bytes = ByteLevel.TryDecode(tok);
                if (bytes is not null) _vocabByBytes[new ByteKey(Latin1(bytes))] = id;
            }
        }
    }

    static string Latin1(ReadOnlySpan<byte> b) => System.Text.Encoding.Latin1.GetString(b);

    public string? IdToToken(int id) => (uint)id < (uint)_idToToken.Length ? _idToToken[id] : null;

    public bool TryGetId(string token, out int id) => _vocab.TryGetValue(token, out id);

    /// <summary>Id of the byte-level symbol of byte <paramref name="b"/>, or -1 (for tests).</summary>
    internal int TokenToIdOfByte(byte b) => _byteIds[b];

    /// <summary>Merge rank of a pair of ids, or int.MaxValue (used by tests and the trainer's checks).</summary>
    internal int Rank(int left, int right) => _merges.Rank(left, right);

    /// <summary>
    /// Encodes one pre-token given as UTF-8 bytes; appends token ids and the number of bytes each covers.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public void EncodeWord(ReadOnlySpan<byte> word, List<int> ids, List<int> lengths, ref BpeScratch scratch)
    {
        if (word.Length == 0) return;
        if (IgnoreMerges && _vocabByBytes!.TryGetValue(new ByteKey(Latin1(word)), out int whole))
        {
            ids.Add(whole);
            lengths.Add(word.Length);
            return;
        }
        scratch.Ensure(word.Length);
        var sym = scratch.Ids;
        var len = scratch.Lengths;
        int n = 0;
        // Initial symbols, with Hugging Face's handling of bytes missing from the vocabulary:
        // byte fallback "<0xXX>" first, else the unknown token (fused if fuse_unk), else dropped.
        int pendingUnkLen = 0;
        bool pendingUnk = false;
        for (int i = 0; i < word.Length; i++)
        {
            int id = _byteIds[word[i]];
            if (id >= 0)
            {
                if (pendingUnk) { sym[n] = UnkId(); len[n++] = pendingUnkLen; pendingUnk = false; }
                sym[n] = id;
                len[n++] = 1;
                continue;
            }
            if (ByteFallback && _byteFallbackIds[word[i]] >= 0)
            {
                if (pendingUnk) { sym[n] = UnkId(); len[n++] = pendingUnkLen; pendingUnk = false; }
                sym[n] = _byteFallbackIds[word[i]];
                len[n++] = 1;
                continue;
            }
            if (UnkToken is null) continue;
            if (pendingUnk && FuseUnk) pendingUnkLen += 1;
            else
            {
                if (pendingUnk) { sym[n] = UnkId(); len[n++] = pendingUnkLen; }
                pendingUnk = true;
                pendingUnkLen = 1;
            }
        }
        if (pendingUnk) { sym[n] = UnkId(); len[n++] = pendingUnkLen; }

        if (n > LongWord) n = MergeLong(sym, len, n, ref scratch);
        else n = MergeShort(sym, len, n, scratch.Ranks);
        for (int i = 0; i < n; i++)
        {
            ids.Add(sym[i]);
            lengths.Add(len[i]);
        }
    }

    int UnkId() => _vocab.TryGetValue(UnkToken!, out int id)
        ? id
        : throw new InvalidOperationException($"the unknown token '{UnkToken}' is not in the vocabulary");

    /// <summary>Lowest rank first, leftmost among equals; the ranks of adjacent pairs live in an array.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    internal int MergeShort(int[] sym, int[] len, int n, int[] ranks)
    {
        for (int i = 0; i + 1 < n; i++) ranks[i] = _merges.Rank(sym[i], sym[i + 1]);
        while (n > 1)
        {
            int best = -1, bestRank = int.MaxValue;
            for (int i = 0; i + 1 < n; i++)
                if (ranks[i] < bestRank) { bestRank = ranks[i]; best = i; }
            if (best < 0) break;
            _merges.TryGet(sym[best], sym[best + 1], out _, out int merged);
            sym[best] = merged;
            len[best] += len[best + 1];
            int tail = n - best - 2;
            Array.Copy(sym, best + 2, sym, best + 1, tail);
            Array.Copy(len, best + 2, len, best + 1, tail);
            Array.Copy(ranks, best + 2, ranks, best + 1, Math.Max(0, tail - 1));
            n--;
            if (best > 0) ranks[best - 1] = _merges.Rank(sym[best - 1], sym[best]);
            if (best + 1 < n) ranks[best] = _merges.Rank(sym[best], sym[best + 1]);
        }
        return n;
    }

    /// <summary>Hugging Face's heap algorithm: (rank, position) priority, stale entries skipped.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    internal int MergeLong(int[] sym, int[] len, int n, ref BpeScratch scratch)
    {
        var prev = scratch.Prev;
        var next = scratch.Next;
        var heap = scratch.Heap;
        heap.Clear();
        for (int i = 0; i < n; i++)
        {
            prev[i] = i - 1;
            next[i] = i + 1 < n ? i + 1 : -1;
        }
        for (int i = 0; i + 1 < n; i++)
            if (_merges.TryGet(sym[i], sym[i + 1], out int r, out int m)) heap.Push(((long)r << 32) | (uint)i, m);
        while (heap.TryPop(out long key, out int topMerged))
        {
            int p = (int)(uint)key;
            if (len[p] == 0 || next[p] < 0) continue;
            int q = next[p];
            if (!_merges.TryGet(sym[p], sym[q], out _, out int merged) || merged != topMerged) continue;
            sym[p] = merged;
            len[p] += len[q];
            len[q] = 0;
            next[p] = next[q];
            if (next[q] >= 0) prev[next[q]] = p;
            if (prev[p] >= 0 && _merges.TryGet(sym[prev[p]], sym[p], out int r1, out int m1))
                heap.Push(((long)r1 << 32) | (uint)prev[p], m1);
            if (next[p] >= 0 && _merges.TryGet(sym[p], sym[next[p]], out int r2, out int m2))
                heap.Push(((long)r2 << 32) | (uint)p, m2);
        }
        int w = 0;
        for (int i = 0; i >= 0 && i < n; i = next[i])
        {
            sym[w] = sym[i];
            len[w++] = len[i];
        }
        return w;
    }
}

/// <summary>Reusable buffers for <see cref="BpeModel.EncodeWord"/>.</summary>
struct BpeScratch
{
    public int[] Ids, Lengths, Ranks, Prev, Next;
    public MergeHeap Heap;

    public void Ensure(int n)
    {
        Heap ??= new MergeHeap();
        if (Ids is not null && Ids.Length >= n) return;
        int cap = Math.Max(64, (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)n));
        Ids = new int[cap];
        Lengths = new int[cap];
        Ranks = new int[cap];
        Prev = new int[cap];
        Next = new int[cap];
    }
}

/// <summary>
/// Binary min-heap of (key, merged id) for <see cref="BpeModel.MergeLong"/>; the key is rank &lt;&lt; 32 | position,
/// so the lowest rank pops first and the leftmost among equal ranks (equal keys are the same merge at the same
/// place). Not <see cref="PriorityQueue{TElement, TPriority}"/>: its instantiation over our tuple starts in tier-0
/// code, which made the first long word of a process (e.g. one `longcat tokenize` of a 50 KB word) several times
/// slower; these methods are compiled optimized on first use.
/// </summary>
sealed class MergeHeap
{
    long[] _keys = new long[64];
    int[] _merged = new int[64];
    int _count;

    public void Clear() => _count = 0;

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public void Push(long key, int merged)
    {
        if (_count == _keys.Length)
        {
            Array.Resize(ref _keys, _count * 2);
            Array.Resize(ref _merged, _count * 2);
        }
        int i = _count++;
        while (i > 0)
        {
            int parent = (i - 1) >> 1;
            if (_keys[parent] <= key) break;
            _keys[i] = _keys[parent];
            _merged[i] = _merged[parent];
            i = parent;
        }
        _keys[i] = key;
        _merged[i] = merged;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public bool TryPop(out long key, out int merged)
    {
        if (_count == 0) { key = 0; merged = 0; return false; }
        key = _keys[0];
        merged = _merged[0];
        int n = --_count;
        if (n == 0) return true;
        long lastKey = _keys[n];
        int lastMerged = _merged[n];
        int i = 0;
        while (true)
        {
            int child = 2 * i + 1;
            if (child >= n) break;
            if (child + 1 < n && _keys[child + 1] < _keys[child]) child++;
            if (_keys[child] >= lastKey) break;
            _keys[i] = _keys[child];
            _merged[i] = _merged[child];
            i = child;
        }
        _keys[i] = lastKey;
        _merged[i] = lastMerged;
        return true;
    }
}
