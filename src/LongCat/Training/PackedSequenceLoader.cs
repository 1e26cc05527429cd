using LongCat.Model;

namespace LongCat.Training;

/// <summary>
/// Packs a <see cref="TokenDataset"/> into fixed-length sequences and hands them out in a seeded order. The token
/// stream (documents joined by their end-of-text ids) is cut into N = ⌊tokens / S⌋ windows of S tokens; epoch e
/// visits them in a Fisher-Yates permutation drawn from (seed, e). <see cref="Position"/> (windows handed out so far)
/// is the whole state: setting it resumes exactly, since each epoch's permutation is a function of the seed.
/// <para>
/// Chat data (<see cref="TokenDataset.HasLossMask"/>) is not packed across documents: every row is one conversation,
/// its first S tokens (a longer one is truncated: <see cref="TruncatedDocuments"/>), then the pad id with mask 0, so no
/// conversation ever attends to another and the plain causal attention needs no document mask. The rows of an epoch
/// are the N = document count conversations in the same seeded order. The cost is the padding: it runs through the
/// network like any token (<see cref="PaddingFraction"/> of the row tokens; docs/post-training.md measures it).
/// </para>
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
        SequencesPerEpoch = data.HasLossMask ? data.DocumentCount : data.TokenCount / sequenceLength;
        if (data.HasLossMask)
        {
            long real = 0;
            for (int d = 0; d < data.DocumentCount; d++)
            {
                long len = data.DocumentStarts[d + 1] - data.DocumentStarts[d];
                if (len > sequenceLength) TruncatedDocuments++;
                real += Math.Min(len, sequenceLength);
            }
            PaddingFraction = SequencesPerEpoch == 0 ? 0 : 1 - (double)real / (SequencesPerEpoch * sequenceLength);
            if (SequencesPerEpoch < 1) throw new ArgumentException($"{data.Folder}: the '{data.Split}' split has no conversation");
        }
        if (SequencesPerEpoch < 1)
            throw new ArgumentException($"{data.Folder}: the '{data.Split}' split has {data.TokenCount} tokens, fewer than one sequence of {sequenceLength}");
        if (SequencesPerEpoch > int.MaxValue) throw new ArgumentException($"{data.Folder}: more than {int.MaxValue} sequences per epoch");
    }

    /// <summary>Chat data: conversations longer than a row (cut to their first S tokens).</summary>
    public int TruncatedDocuments { get; }
    /// <summary>Chat data: the share of an epoch's row tokens that are padding (0 for packed text).</summary>
    public double PaddingFraction { get; }
    /// <summary>True when rows carry a loss mask (chat data, one conversation per row).</summary>
    public bool Masked => _data.HasLossMask;

    /// <summary>Fills <paramref name="ids"/> with the next <c>ids.Length / S</c> sequences, back to back.</summary>
    public void Next(Span<int> ids) => Next(ids, default);

    /// <summary>
    /// Fills <paramref name="ids"/> with the next <c>ids.Length / S</c> sequences and, when not empty, <paramref name="mask"/>
    /// with their loss mask (1 = trained; all ones for text, 0 on padding).
    /// </summary>
    public void Next(Span<int> ids, Span<byte> mask)
    {
        int s = SequenceLength;
        if (ids.Length % s != 0) throw new ArgumentException($"{ids.Length} ids is not a whole number of sequences of {s}");
        if (!mask.IsEmpty && mask.Length != ids.Length) throw new ArgumentException($"{mask.Length} mask bytes for {ids.Length} ids");
        for (int i = 0; i < ids.Length; i += s)
        {
            long window = WindowAt(Position++);
            if (!_data.HasLossMask)
            {
                _data.CopyTokens(window * s, ids.Slice(i, s));
                if (!mask.IsEmpty) mask.Slice(i, s).Fill(1);
                continue;
            }
            long start = _data.DocumentStarts[window];
            int len = (int)Math.Min(s, _data.DocumentStarts[window + 1] - start);
            _data.CopyTokens(start, ids.Slice(i, len));
            ids.Slice(i + len, s - len).Fill(_data.PadId);
            if (mask.IsEmpty) continue;
            _data.CopyMask(start, mask.Slice(i, len));
            mask.Slice(i + len, s - len).Clear();
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
