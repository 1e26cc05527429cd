using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace LongCat.Tokenization;

/// <summary>
/// Per-thread cache from a pre-token's bytes to its BPE result (token ids and their byte lengths). Words
/// repeat heavily in natural text and code, so most pieces skip BPE. Open addressing over flat arenas, so a
/// lookup allocates nothing; when full it starts over (results never depend on the cache).
/// </summary>
sealed class WordCache
{
    const int MaxKeyLength = 64;
    const int Capacity = 1 << 15;           // entries (slots = 2x)
    const int KeyArenaSize = Capacity * 16;
    const int ValueArenaSize = Capacity * 8;

    struct Entry
    {
        public ulong Hash;
        public int KeyOffset, KeyLength, ValueOffset, ValueCount;
    }

    readonly Entry[] _slots = new Entry[Capacity * 2];
    readonly byte[] _keys = new byte[KeyArenaSize];
    readonly int[] _values = new int[ValueArenaSize * 2]; // (id, byte length) pairs
    int _count, _keyUsed, _valueUsed;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static ulong Hash(ReadOnlySpan<byte> key)
    {
        ulong h = 0x9E3779B97F4A7C15UL ^ (ulong)key.Length;
        int i = 0;
        for (; i + 8 <= key.Length; i += 8)
        {
            h ^= MemoryMarshal.Read<ulong>(key[i..]);
            h *= 0xFF51AFD7ED558CCDUL;
            h ^= h >> 32;
        }
        ulong tail = 0;
        for (int k = 0; i < key.Length; i++, k += 8) tail |= (ulong)key[i] << k;
        h ^= tail;
        h *= 0xC4CEB9FE1A85EC53UL;
        h ^= h >> 29;
        return h | 1; // 0 marks an empty slot
    }

    /// <summary>Looks up <paramref name="key"/>; on a hit returns its (id, length) pairs.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public bool TryGet(ReadOnlySpan<byte> key, out ReadOnlySpan<int> pairs)
    {
        pairs = default;
        if (key.Length > MaxKeyLength) return false;
        ulong h = Hash(key);
        int mask = _slots.Length - 1;
        int i = (int)(h >> 40) & mask;
        while (true)
        {
            ref var e = ref _slots[i];
            if (e.Hash == 0) return false;
            if (e.Hash == h && e.KeyLength == key.Length && key.SequenceEqual(_keys.AsSpan(e.KeyOffset, e.KeyLength)))
            {
                pairs = _values.AsSpan(e.ValueOffset, e.ValueCount * 2);
                return true;
            }
            i = (i + 1) & mask;
        }
    }

    /// <summary>Stores the result for <paramref name="key"/> (ids and byte lengths of its tokens).</summary>
    public void Add(ReadOnlySpan<byte> key, ReadOnlySpan<int> ids, ReadOnlySpan<int> lengths)
    {
        if (key.Length > MaxKeyLength) return;
        if (_count >= Capacity || _keyUsed + key.Length > _keys.Length || _valueUsed + ids.Length * 2 > _values.Length)
        {
            Array.Clear(_slots);
            _count = _keyUsed = _valueUsed = 0;
        }
        ulong h = Hash(key);
        int mask = _slots.Length - 1;
        int i = (int)(h >> 40) & mask;
        while (_slots[i].Hash != 0) i = (i + 1) & mask;
        key.CopyTo(_keys.AsSpan(_keyUsed));
        for (int k = 0; k < ids.Length; k++)
        {
            _values[_valueUsed + 2 * k] = ids[k];
            _values[_valueUsed + 2 * k + 1] = lengths[k];
        }
        _slots[i] = new Entry { Hash = h, KeyOffset = _keyUsed, KeyLength = key.Length, ValueOffset = _valueUsed, ValueCount = ids.Length };
        _keyUsed += key.Length;
        _valueUsed += ids.Length * 2;
        _count++;
    }
}
