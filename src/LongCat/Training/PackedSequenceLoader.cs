using LongCat.Model;

namespace LongCat.Training;

/// <summary>
/// Packs a <see cref="TokenDataset"/> into fixed-length sequences and hands them out in a seeded order. The token
/// stream (documents joined by their end-of-text ids) is cut into N = ⌊tokens / S⌋ windows of S tokens; epoch e
/// visits them in a Fisher-Yates permutation drawn from (seed, e). <see cref="Position"/> (windows handed out so far)
/// is the whole state: setting it resumes exactly, since each epoch's permutation is a function of the seed.
/// </summary>
public sealed class PackedSequenceLoader
{
    readonly TokenDataset _data;
    readonly ulong _seed;
    readonly bool _shuffle;
    int[] _order = [];
    long _orderEpoch = -1;

    public int SequenceLength { get; }
    public long SequencesPerEpoch { get; }

    /// <summary>Windows handed out since the start of training (across epochs).</summary>
    public long Position { get; set; }

    public long Epoch => Position / SequencesPerEpoch;

    public PackedSequenceLoader(TokenDataset data, int sequenceLength, ulong seed, bool shuffle = true)
    {
        if (sequenceLength < 2) throw new ArgumentException($"sequence length must be >= 2, got {sequenceLength}");
        _data = data;
        _seed = seed;
        _shuffle = shuffle;
        SequenceLength = sequenceLength;
        SequencesPerEpoch = data.TokenCount / sequenceLength;
        if (SequencesPerEpoch < 1)
            throw new ArgumentException($"{data.Folder}: the '{data.Split}' split has {data.TokenCount} tokens, fewer than one sequence of {sequenceLength}");
        if (SequencesPerEpoch > int.MaxValue) throw new ArgumentException($"{data.Folder}: more than {int.MaxValue} sequences per epoch");
    }

    /// <summary>Fills <paramref name="ids"/> with the next <c>ids.Length / S</c> sequences, back to back.</summary>
    public void Next(Span<int> ids)
    {
        int s = SequenceLength;
        if (ids.Length % s != 0) throw new ArgumentException($"{ids.Length} ids is not a whole number of sequences of {s}");
        for (int i = 0; i < ids.Length; i += s)
        {
            long window = WindowAt(Position++);
            _data.CopyTokens(window * s, ids.Slice(i, s));
        }
    }

    long WindowAt(long position)
    {
        long epoch = position / SequencesPerEpoch, index = position % SequencesPerEpoch;
        if (!_shuffle) return index;
        if (epoch != _orderEpoch)
        {
            int n = (int)SequencesPerEpoch;
            if (_order.Length != n) _order = new int[n];
            for (int i = 0; i < n; i++) _order[i] = i;
            var rng = new NormalRng(_seed, $"data-order-epoch-{epoch}");
            for (int i = n - 1; i > 0; i--)
            {
                int j = (int)(rng.NextUInt64() % (ulong)(i + 1));
                (_order[i], _order[j]) = (_order[j], _order[i]);
            }
            _orderEpoch = epoch;
        }
        return _order[index];
    }
}
