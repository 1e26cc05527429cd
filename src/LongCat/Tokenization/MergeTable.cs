using System.Runtime.CompilerServices;

namespace LongCat.Tokenization;

/// <summary>
/// BPE merges: (left id, right id) -> (rank, merged id), in an open-addressing table keyed by the id pair.
/// A lookup is one multiply and usually one probe; this is the inner loop of encoding a new word.
/// </summary>
sealed class MergeTable
{
    readonly ulong[] _keys;   // (left << 32 | right) + 1; 0 = empty
    readonly long[] _values;  // rank << 32 | merged id
    readonly int _shift;
    readonly int _mask;

    public int Count { get; }

    public MergeTable(IReadOnlyList<(int Left, int Right, int Merged)> merges)
    {
        int cap = 16;
        while (cap < merges.Count * 2) cap <<= 1;
        _keys = new ulong[cap];
        _values = new long[cap];
        _mask = cap - 1;
        _shift = 64 - System.Numerics.BitOperations.Log2((uint)cap);
        for (int rank = 0; rank < merges.Count; rank++)
        {
            var (l, r, m) = merges[rank];
            ulong key = Key(l, r);
            int i = Slot(key);
            while (_keys[i] != 0 && _keys[i] != key) i = (i + 1) & _mask;
            if (_keys[i] == 0) Count++;
            // A repeated pair keeps the later rank, as Hugging Face's HashMap collect does.
            _keys[i] = key;
            _values[i] = ((long)rank << 32) | (uint)m;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static ulong Key(int l, int r) => (((ulong)(uint)l << 32) | (uint)r) + 1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    int Slot(ulong key) => (int)((key * 0x9E3779B97F4A7C15UL) >> _shift);

    /// <summary>Rank and merged id of the pair, or false.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryGet(int left, int right, out int rank, out int merged)
    {
        ulong key = Key(left, right);
        int i = Slot(key);
        while (true)
        {
            ulong k = _keys[i];
            if (k == key)
            {
                long v = _values[i];
                rank = (int)(v >> 32);
                merged = (int)v;
                return true;
            }
            if (k == 0)
            {
                rank = merged = 0;
                return false;
            }
            i = (i + 1) & _mask;
        }
    }

    /// <summary>Rank of the pair, or int.MaxValue.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Rank(int left, int right) => TryGet(left, right, out int rank, out _) ? rank : int.MaxValue;
}
