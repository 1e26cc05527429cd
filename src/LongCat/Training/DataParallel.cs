using System.Runtime.InteropServices;
using LongCat.Distributed;
using LongCat.Kernels;

namespace LongCat.Training;

/// <summary>
/// Data parallelism with a reduction whose order depends on the global micro-batch index only, so a step gives the
/// same bits on 1, 2, 3 ... processes (and the single-process trainer runs this same code with
/// <see cref="Communicator.Single"/>).
/// <para>Micro-batch i of a step is computed by rank i mod N, in rounds of N (round j holds micro-batches jN .. jN+N−1).
/// Each micro-batch's gradient is computed from zero. The flat gradient buffer is cut into N contiguous shards; after
/// each round an all-to-all sends every shard of every fresh gradient to the shard's owner, which folds them into its
/// running sum in index order: sum = g₀, then sum = sum + g₁, sum + g₂, ... (fp32, elementwise). So every element of
/// the summed gradient is the same left fold over micro-batches 0 .. M−1 whatever N is, and memory stays at one
/// gradient, one shard sum and one round's shards.</para>
/// <para>ZeRO-1: the shards are the ranges of <see cref="AdamW.ShardStarts"/>, and each rank's optimizer owns its
/// shard's moments. A rank updates its own range with its own summed gradient shard; the gradient norm is the sum of
/// the per-chunk partials of every rank, added in chunk order (as one process adds them); then the updated
/// parameters are all-gathered, so every rank holds the same full model for the next forward.</para>
/// <para>Each micro-batch also yields a record of doubles (losses, routing counts, monitors); the records are
/// all-gathered and every rank folds them in index order too.</para>
/// </summary>
internal sealed unsafe class DataParallel : IDisposable
{
    const int ChunkFloats = 1 << 15;

    readonly ParameterStore _p;
    readonly int _length, _micro, _rounds, _recordLength;
    readonly int[] _shardStart;                 // [N + 1]
    readonly int[] _shardLengths;               // [N]
    readonly int[] _chunkCount;                 // per rank: its optimizer's chunks (rank order is layout order)
    readonly double[] _partials, _allPartials;
    readonly double[] _records, _allRecords;    // [rounds · R], [N · rounds · R]
    float* _sum, _receive;                      // this rank's shard sum; one round's shards from every rank
    float* _foldDst, _foldSrc;                  // the current Fold's operands (set before its parallel loop)
    int _foldCount;
    bool _foldCopy;
    readonly Action<int> _foldChunk;
    // Overlap: the gradient buffer in buckets (flat ranges), started in a fixed order: layer L−1's range once its
    // backward is done, ..., layer 0's, then the rest after the backward. One bucket [0, P) without overlap.
    readonly Bucket[] _buckets;
    readonly int[] _layerBucket;                // layer → bucket (empty without overlap)
    int _roundActive;                           // ranks with a micro-batch in the current round

    sealed class Bucket(int start, int end, int ranks)
    {
        public readonly int Start = start, End = end;
        public readonly int[] SendCounts = GC.AllocateArray<int>(ranks, pinned: true), SendOffsets = GC.AllocateArray<int>(ranks, pinned: true);
        public readonly int[] ReceiveCounts = GC.AllocateArray<int>(ranks, pinned: true), ReceiveOffsets = GC.AllocateArray<int>(ranks, pinned: true);
        public Communicator.Request? Request;
    }

    /// <summary>Environment variable: 0 turns the overlap of gradient exchange and backward off (one exchange per round after it).</summary>
    public const string OverlapVariable = "LONGCAT_MPI_OVERLAP";

    public Communicator Comm { get; }
    public int Rank => Comm.Rank;
    public int Size => Comm.Size;

    /// <summary>
    /// Collective. <paramref name="shardStarts"/> [N + 1] are the ranges of <see cref="AdamW.ShardStarts"/>, and
    /// <paramref name="optimizer"/> this rank's optimizer over its range.
    /// </summary>
    public DataParallel(Communicator comm, ParameterStore p, int microBatches, int recordLength, long[] shardStarts, AdamW optimizer)
    {
        if (p.Length > int.MaxValue)
            throw new NotSupportedException($"data parallelism handles up to {int.MaxValue} parameter floats per process, this model has {p.Length}");
        Comm = comm;
        _p = p;
        _length = (int)p.Length;
        _micro = microBatches;
        int n = comm.Size;
        _rounds = (microBatches + n - 1) / n;
        _recordLength = recordLength;
        if (shardStarts.Length != n + 1 || optimizer.Range != (shardStarts[Rank], shardStarts[Rank + 1]))
            throw new ArgumentException("the optimizer's range is not this rank's shard");
        _shardStart = shardStarts.Select(x => (int)x).ToArray();
        _shardLengths = new int[n];
        for (int k = 0; k < n; k++) _shardLengths[k] = ShardLength(k);
        // Each rank's chunks, to add the norm's partials in layout order.
        Span<int> own = [optimizer.FirstChunk, optimizer.ChunkCount];
        var all = new int[2 * n];
        comm.Allgather<int>(own, all);
        _chunkCount = new int[n];
        for (int k = 0, next = 0; k < n; k++)
        {
            _chunkCount[k] = all[2 * k + 1];
            if (_chunkCount[k] > 0 && all[2 * k] != next) throw new InvalidOperationException($"rank {k}'s optimizer chunks start at {all[2 * k]}, expected {next}");
            next += _chunkCount[k];
        }
        int maxChunks = Math.Max(1, _chunkCount.Max());
        _partials = new double[maxChunks];
        _allPartials = new double[n * maxChunks];
        int mine = ShardLength(Rank);
        if (!SingleAndWhole) _sum = (float*)NativeMemory.AlignedAlloc((nuint)Math.Max(1, mine) * sizeof(float), 64);
        if (n > 1) _receive = (float*)NativeMemory.AlignedAlloc((nuint)Math.Max(1, (long)mine * n) * sizeof(float), 64);
        _records = new double[_rounds * recordLength];
        _allRecords = n > 1 ? new double[n * _rounds * recordLength] : _records;
        _foldChunk = FoldChunk;
        bool overlap = n > 1 && Environment.GetEnvironmentVariable(OverlapVariable) != "0";
        (_buckets, _layerBucket) = overlap && LayerRanges(p.Table, p.Config.NumLayers) is { } layers ? Buckets(layers, _length, n) : ([new Bucket(0, _length, n)], []);
    }

    /// <summary>Number of gradient exchanges per round (1 without overlap).</summary>
    public int BucketCount => _buckets.Length;

    /// <summary>Each layer's flat range of parameters, or null when a layer's entries are not one run of the layout.</summary>
    static (int Start, int End)[]? LayerRanges(ParameterTable table, int layers)
    {
        var ranges = new (int Start, int End)[layers];
        for (int l = 0; l < layers; l++)
        {
            string prefix = $"model.layers.{l}.";
            var mine = table.Entries.Where(e => e.Name.StartsWith(prefix, StringComparison.Ordinal)).ToList();
            if (mine.Count == 0) return null;
            long lo = mine.Min(e => e.Offset), hi = mine.Max(e => e.Offset + e.Count);
            // No other tensor inside the range: its gradient may still change after this layer's backward.
            if (table.Entries.Any(e => !e.Name.StartsWith(prefix, StringComparison.Ordinal) && e.Offset < hi && e.Offset + e.Count > lo)) return null;
            ranges[l] = ((int)lo, (int)hi);
        }
        return ranges;
    }

    /// <summary>Buckets: layer L−1 .. 0 (the backward's order), then the gaps between them (embeddings, norms, heads), in layout order.</summary>
    static (Bucket[], int[]) Buckets((int Start, int End)[] layers, int length, int n)
    {
        var list = new List<Bucket>();
        var layerBucket = new int[layers.Length];
        for (int l = layers.Length - 1; l >= 0; l--)
        {
            layerBucket[l] = list.Count;
            list.Add(new Bucket(layers[l].Start, layers[l].End, n));
        }
        int at = 0;
        foreach (var (start, end) in layers.OrderBy(r => r.Start))
        {
            if (start > at) list.Add(new Bucket(at, start, n));
            at = Math.Max(at, end);
        }
        if (at < length) list.Add(new Bucket(at, length, n));
        return ([.. list], layerBucket);
    }

    /// <summary>Before the backward of micro-batch <paramref name="micro"/> (one this rank owns): its layers' exchanges start as they finish.</summary>
    public void BeginMicroBatch(int micro)
    {
        int first = micro / Size * Size;
        _roundActive = Math.Min(Size, _micro - first);
    }

    /// <summary>After layer <paramref name="layer"/>'s backward (<see cref="TrainableModel.AfterLayerBackward"/>): starts its bucket's exchange.</summary>
    public void LayerBackwardDone(int layer)
    {
        if (_layerBucket.Length == 0) return;
        StartBucket(_buckets[_layerBucket[layer]], sends: true);
        // MPI moves started exchanges only inside MPI calls: give the earlier buckets a push.
        foreach (var b in _buckets) if (b.Request is { } r) Comm.Test(r);
    }

    /// <summary>
    /// Starts the exchange of one bucket: this rank's part of every shard in it to the shard's owner (when it computed a
    /// micro-batch this round), and every active rank's part of this rank's shard into its block of the receive buffer.
    /// </summary>
    void StartBucket(Bucket b, bool sends)
    {
        if (b.Request is not null) throw new InvalidOperationException($"the gradient bucket [{b.Start}, {b.End}) was started twice in one round");
        int n = Size, mine = ShardLength(Rank);
        for (int k = 0; k < n; k++)
        {
            int from = Math.Max(b.Start, _shardStart[k]), to = Math.Min(b.End, _shardStart[k + 1]);
            b.SendCounts[k] = sends ? Math.Max(0, to - from) : 0;
            b.SendOffsets[k] = to > from ? from : 0;
        }
        int mineFrom = Math.Max(b.Start, _shardStart[Rank]), mineTo = Math.Min(b.End, _shardStart[Rank + 1]);
        for (int k = 0; k < n; k++)
        {
            b.ReceiveCounts[k] = k < _roundActive ? Math.Max(0, mineTo - mineFrom) : 0;
            b.ReceiveOffsets[k] = k * mine + (mineTo > mineFrom ? mineFrom - _shardStart[Rank] : 0);
        }
        b.Request = Comm.StartAlltoallv(_p.GradsPointer, b.SendCounts, b.SendOffsets, _receive, b.ReceiveCounts, b.ReceiveOffsets);
    }

    /// <summary>One process and one micro-batch: the gradient buffer already is the sum.</summary>
    bool SingleAndWhole => Comm.Size == 1 && _micro == 1;

    int ShardLength(int k) => _shardStart[k + 1] - _shardStart[k];

    /// <summary>Whether this rank computes micro-batch <paramref name="micro"/> (global index within the step).</summary>
    public bool Owns(int micro) => micro % Size == Rank;

    /// <summary>This rank's record of micro-batch <paramref name="micro"/> (one it owns), to fill.</summary>
    public Span<double> Record(int micro) => _records.AsSpan(micro / Size * _recordLength, _recordLength);

    /// <summary>Whether micro-batch <paramref name="micro"/> closes a round: then every rank calls <see cref="ReduceRound"/>.</summary>
    public bool EndsRound(int micro) => micro % Size == Size - 1 || micro == _micro - 1;

    /// <summary>
    /// Collective, after round <paramref name="round"/>'s backward (each owner's micro-batch gradient is in the
    /// gradient buffer): folds the round's gradients into the shard sums in micro-batch order.
    /// </summary>
    public void ReduceRound(int round)
    {
        if (SingleAndWhole) return;
        int n = Size, first = round * n, active = Math.Min(n, _micro - first), mine = ShardLength(Rank);
        if (n > 1)
        {
            // The buckets not started during the backward (all of them on a rank without a micro-batch this round),
            // in the same order on every rank; then every exchange of the round must be complete before the fold.
            _roundActive = active;
            foreach (var b in _buckets) if (b.Request is null) StartBucket(b, sends: Rank < active);
            foreach (var b in _buckets)
            {
                Comm.Wait(b.Request!);
                b.Request = null;
            }
        }
        for (int k = 0; k < active; k++)
        {
            float* src = n > 1 ? _receive + (long)k * mine : _p.GradsPointer + _shardStart[Rank];
            Fold(_sum, src, mine, copy: first + k == 0);
        }
    }

    /// <summary>After the last round: this rank's summed gradient shard into its range of the gradient buffer (the rest is stale).</summary>
    public void FinishGradients()
    {
        if (SingleAndWhole) return;
        Fold(_p.GradsPointer + _shardStart[Rank], _sum, ShardLength(Rank), copy: true);
    }

    /// <summary>Collective: Σ grad² over every trainable value, chunk partials added in layout order (as <see cref="AdamW.GradSquaredSum"/>).</summary>
    public double GradSquaredSum(AdamW optimizer)
    {
        var local = optimizer.GradSquaredPartials();
        if (Size == 1)
        {
            double one = 0;
            foreach (var x in local) one += x;
            return one;
        }
        local.CopyTo(_partials);
        Comm.Allgather<double>(_partials, _allPartials);
        double s = 0;
        for (int k = 0; k < Size; k++)
            for (int c = 0; c < _chunkCount[k]; c++) s += _allPartials[k * _partials.Length + c];
        return s;
    }

    /// <summary>Collective, after every rank updated its range: the updated parameters to every rank.</summary>
    public void GatherParameters()
    {
        if (Size == 1) return;
        int mine = ShardLength(Rank);
        Fold(_sum, _p.ValuesPointer + _shardStart[Rank], mine, copy: true);
        Comm.Allgatherv(new ReadOnlySpan<float>(_sum, mine), new Span<float>(_p.ValuesPointer, _length), _shardLengths);
    }

    /// <summary>Collective: every micro-batch's record, in micro-batch order (index i at i·R).</summary>
    public double[] GatherRecords()
    {
        if (Size == 1) return _records;
        Comm.Allgather<double>(_records, _allRecords);
        var ordered = new double[_micro * _recordLength];
        for (int i = 0; i < _micro; i++)
            _allRecords.AsSpan(((i % Size) * _rounds + i / Size) * _recordLength, _recordLength).CopyTo(ordered.AsSpan(i * _recordLength));
        return ordered;
    }

    /// <summary>Collective: whether <paramref name="mine"/> is true on any rank (e.g. a stop request that reached some ranks only).</summary>
    public bool AnyRank(bool mine)
    {
        if (Size == 1) return mine;
        Span<int> flag = [mine ? 1 : 0];
        var all = new int[Size];
        Comm.Allgather<int>(flag, all);
        return all.Contains(1);
    }

    /// <summary>
    /// Collective: <paramref name="count"/> values computed round robin (value i by rank i mod N through
    /// <paramref name="compute"/>), returned in index order on every rank.
    /// </summary>
    public double[] ComputeSpread(int count, Func<int, double> compute)
    {
        int n = Size, rounds = (count + n - 1) / n;
        var mine = new double[Math.Max(1, rounds)];
        for (int j = 0; j < rounds; j++)
            if (j * n + Rank < count) mine[j] = compute(j * n + Rank);
        var all = n == 1 ? mine : new double[n * mine.Length];
        if (n > 1) Comm.Allgather<double>(mine, all);
        var r = new double[count];
        for (int i = 0; i < count; i++) r[i] = all[(i % n) * mine.Length + i / n];
        return r;
    }

    void Fold(float* dst, float* src, int count, bool copy)
    {
        _foldDst = dst; _foldSrc = src; _foldCopy = copy;
        _foldCount = count;
        Parallelism.For((count + ChunkFloats - 1) / ChunkFloats, _foldChunk);
    }

    void FoldChunk(int c)
    {
        int start = c * ChunkFloats, n = Math.Min(ChunkFloats, _foldCount - start);
        var dst = new Span<float>(_foldDst + start, n);
        var src = new ReadOnlySpan<float>(_foldSrc + start, n);
        if (_foldCopy) src.CopyTo(dst);
        else System.Numerics.Tensors.TensorPrimitives.Add(dst, src, dst);
    }

    public void Dispose()
    {
        if (_sum != null) NativeMemory.AlignedFree(_sum);
        if (_receive != null) NativeMemory.AlignedFree(_receive);
        _sum = _receive = null;
    }
}
