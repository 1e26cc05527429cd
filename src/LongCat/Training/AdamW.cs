using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using LongCat.Kernels;

namespace LongCat.Training;

/// <summary>
/// AdamW over a <see cref="ParameterStore"/>'s flat buffers: first and second moments are two more native buffers in
/// the same layout, and one update is one loop over the trainable tensors, cut into fixed chunks of at most
/// <see cref="ChunkFloats"/>. The update is PyTorch's AdamW, per element in fp32:
/// <code>
/// g = grad · grad_scale                      # 1/micro-batches · clipping factor
/// p = p · (1 − lr·wd)                        # decoupled decay; wd = 0 for norms
/// m = m + (1 − β1)·(g − m)                   # lerp, as torch
/// v = v·β2 + (1 − β2)·g·g
/// p = p − lr/(1 − β1^t) · m / (sqrt(v)/sqrt(1 − β2^t) + eps)
/// </code>
/// Elementwise, so it is bitwise identical for any thread count; the gradient norm is a fixed-order reduction
/// (each chunk sums in double, chunks are added in layout order).
/// <para>ZeRO-1: an optimizer built for a <see cref="Range"/> of the flat buffer (whole chunks, from
/// <see cref="ShardStarts"/>) holds moments for that range only and updates only its chunks; data-parallel ranks
/// each own one range and exchange the updated parameters (<see cref="DataParallel"/>).</para>
/// </summary>
public sealed unsafe class AdamW : IDisposable
{
    /// <summary>Floats per chunk of the update and the norm: fixed, so the norm's summation order is too.</summary>
    public const int ChunkFloats = 1 << 15;

    readonly ParameterStore _p;
    float* _m, _v;
    readonly (long Offset, int Count, int Group)[] _chunks;   // this optimizer's chunks (all, or its range's)
    readonly long _lo, _hi;
    readonly double[] _partials;
    readonly double[] _groupLr = new double[ParameterGroups.All.Length];
    readonly float[] _groupDecay = new float[ParameterGroups.All.Length];
    readonly Action<int> _updateChunk, _normChunk;
    // Per-update values read by the chunk bodies (set before each parallel loop, so no closure is allocated per step).
    float _gradScale, _b1, _b2, _eps, _bc2Sqrt;
    readonly float[] _stepSize = new float[ParameterGroups.All.Length], _decayFactor = new float[ParameterGroups.All.Length];

    public AdamWOptions Options { get; }

    /// <summary>Updates applied so far (t of the bias corrections; skipped steps do not count).</summary>
    public long Step { get; set; }

    /// <summary>Trainable values (the router bias is not one).</summary>
    public long TrainableCount { get; }

    /// <summary>The floats [Start, End) of the flat buffers this optimizer owns (everything unless sharded).</summary>
    public (long Start, long End) Range => (_lo, _hi);

    /// <summary>Whether it owns every chunk (moments in the full layout).</summary>
    public bool IsWhole => _lo == 0 && _hi == _p.Length;

    /// <summary>Chunks in layout order (the norm's summation order) and, for a range, the index of its first one.</summary>
    public int ChunkCount => _chunks.Length;
    public int FirstChunk { get; }

    public AdamW(ParameterStore parameters, AdamWOptions options) : this(parameters, options, 0, parameters.Length) { }

    /// <summary>An optimizer for the floats [<paramref name="start"/>, <paramref name="end"/>): bounds from <see cref="ShardStarts"/>.</summary>
    public AdamW(ParameterStore parameters, AdamWOptions options, long start, long end)
    {
        options.Validate();
        _p = parameters;
        Options = options;
        if (start < 0 || end > parameters.Length || start > end) throw new ArgumentOutOfRangeException(nameof(start), $"range [{start}, {end}) is not inside [0, {parameters.Length})");
        _lo = start; _hi = end;
        nuint bytes = checked((nuint)(Math.Max(1, end - start) * sizeof(float)));
        _m = (float*)NativeMemory.AlignedAlloc(bytes, 64);
        _v = (float*)NativeMemory.AlignedAlloc(bytes, 64);
        NativeMemory.Clear(_m, bytes);
        NativeMemory.Clear(_v, bytes);
        var all = AllChunks(parameters.Table);
        foreach (var e in parameters.Table.Entries) if (e.Trainable) TrainableCount += e.Count;
        var chunks = new List<(long, int, int)>();
        for (int c = 0; c < all.Count; c++)
        {
            if (all[c].Offset < start || all[c].Offset >= end) continue;
            if (all[c].Offset + all[c].Count > end) throw new ArgumentException($"range [{start}, {end}) cuts chunk {c}: use AdamW.ShardStarts");
            if (chunks.Count == 0) FirstChunk = c;
            chunks.Add(all[c]);
        }
        _chunks = [.. chunks];
        _partials = new double[_chunks.Length];
        foreach (var g in ParameterGroups.All)
        {
            _groupLr[(int)g] = options.LrMultipliers?[(int)g] ?? 1.0;
            _groupDecay[(int)g] = ParameterGroups.Decays(g) ? (float)options.WeightDecay : 0f;
        }
        _updateChunk = UpdateChunk;
        _normChunk = NormChunk;
    }

    /// <summary>First moments, same layout as the parameters (an optimizer that owns every chunk).</summary>
    public Span<float> FirstMoment => IsWhole ? new(Alive(_m), checked((int)_p.Length)) : throw new InvalidOperationException("a sharded optimizer holds a range of the moments: use OwnedFirstMoment");

    /// <summary>Second moments, same layout as the parameters (an optimizer that owns every chunk).</summary>
    public Span<float> SecondMoment => IsWhole ? new(Alive(_v), checked((int)_p.Length)) : throw new InvalidOperationException("a sharded optimizer holds a range of the moments: use OwnedSecondMoment");

    /// <summary>The moments of <see cref="Range"/>: element i is parameter float Range.Start + i.</summary>
    public Span<float> OwnedFirstMoment => new(Alive(_m), checked((int)(_hi - _lo)));
    public Span<float> OwnedSecondMoment => new(Alive(_v), checked((int)(_hi - _lo)));

    /// <summary>Bytes of moments this optimizer holds.</summary>
    public long MomentBytes => 2 * (_hi - _lo) * sizeof(float);

    /// <summary>Every trainable tensor cut into chunks of at most <see cref="ChunkFloats"/>, in layout order.</summary>
    static List<(long Offset, int Count, int Group)> AllChunks(ParameterTable table)
    {
        var chunks = new List<(long, int, int)>();
        foreach (var e in table.Entries)
        {
            if (!e.Trainable) continue;
            int g = (int)ParameterGroups.Of(e);
            for (long o = 0; o < e.Count; o += ChunkFloats) chunks.Add((e.Offset + o, (int)Math.Min(ChunkFloats, e.Count - o), g));
        }
        return chunks;
    }

    /// <summary>
    /// Bounds of <paramref name="shards"/> contiguous ranges covering [0, Length), each a run of whole chunks with about
    /// the same number of trainable floats: range k is [starts[k], starts[k+1]).
    /// </summary>
    public static long[] ShardStarts(ParameterTable table, int shards)
    {
        var chunks = AllChunks(table);
        long total = chunks.Sum(c => (long)c.Count), seen = 0;
        var starts = new long[shards + 1];
        starts[shards] = table.Length;
        int k = 1;
        foreach (var c in chunks)
        {
            while (k < shards && seen >= total * k / shards) starts[k++] = c.Offset;
            seen += c.Count;
        }
        while (k < shards) starts[k++] = table.Length;
        return starts;
    }

    float* Alive(float* p) => p != null ? p : throw new ObjectDisposedException(nameof(AdamW));

    /// <summary>The learning rate of <paramref name="group"/> for a base learning rate.</summary>
    public double GroupLearningRate(ParameterGroup group, double lr) => lr * _groupLr[(int)group];

    /// <summary>Σ grad² over every trainable value, in double, in a fixed order (NaN or ∞ if any gradient is).</summary>
    public double GradSquaredSum()
    {
        double s = 0;
        foreach (var x in GradSquaredPartials()) s += x;
        return s;
    }

    /// <summary>Σ grad² of each of this optimizer's chunks, in layout order (adding them in order gives <see cref="GradSquaredSum"/>).</summary>
    public ReadOnlySpan<double> GradSquaredPartials()
    {
        Parallelism.For(_chunks.Length, _normChunk);
        return _partials;
    }

    void NormChunk(int c)
    {
        var (off, n, _) = _chunks[c];
        float* g = _p.GradsPointer + off;
        var acc = Vector256<double>.Zero;
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            var v = Vector256.Load(g + i);
            var (lo, hi) = Vector256.Widen(v);
            acc = Vector256.FusedMultiplyAdd(lo, lo, acc);
            acc = Vector256.FusedMultiplyAdd(hi, hi, acc);
        }
        double s = (acc[0] + acc[2]) + (acc[1] + acc[3]);
        for (; i < n; i++) s = Math.FusedMultiplyAdd(g[i], (double)g[i], s);
        _partials[c] = s;
    }

    /// <summary>One AdamW update with base learning rate <paramref name="lr"/>, gradients multiplied by <paramref name="gradScale"/>.</summary>
    public void Update(double lr, double gradScale)
    {
        Step++;
        var o = Options;
        double bc1 = 1 - Math.Pow(o.Beta1, Step), bc2 = 1 - Math.Pow(o.Beta2, Step);
        _gradScale = (float)gradScale;
        _b1 = (float)o.Beta1; _b2 = (float)o.Beta2; _eps = (float)o.Epsilon;
        _bc2Sqrt = (float)Math.Sqrt(bc2);
        for (int g = 0; g < _stepSize.Length; g++)
        {
            double glr = lr * _groupLr[g];
            _stepSize[g] = (float)(glr / bc1);
            _decayFactor[g] = (float)(1 - glr * _groupDecay[g]);
        }
        Parallelism.For(_chunks.Length, _updateChunk);
    }

    void UpdateChunk(int c)
    {
        var (off, n, group) = _chunks[c];
        float* p = _p.ValuesPointer + off, g = _p.GradsPointer + off, m = _m + (off - _lo), v = _v + (off - _lo);
        float scale = _gradScale, b1 = _b1, b2 = _b2, omb1 = 1f - b1, omb2 = 1f - b2, eps = _eps, bc2s = _bc2Sqrt;
        float step = _stepSize[group], decay = _decayFactor[group];
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var vScale = Vector256.Create(scale); var vB2 = Vector256.Create(b2);
            var vOmb1 = Vector256.Create(omb1); var vOmb2 = Vector256.Create(omb2);
            var vEps = Vector256.Create(eps); var vBc2s = Vector256.Create(bc2s);
            var vStep = Vector256.Create(step); var vDecay = Vector256.Create(decay);
            for (; i + 8 <= n; i += 8)
            {
                var gi = Vector256.Load(g + i) * vScale;
                var pi = Vector256.Load(p + i) * vDecay;
                var mi = Vector256.Load(m + i);
                mi += vOmb1 * (gi - mi);
                var vi = Vector256.Load(v + i) * vB2 + vOmb2 * gi * gi;
                var denom = Vector256.Sqrt(vi) / vBc2s + vEps;
                pi -= vStep * (mi / denom);
                pi.Store(p + i); mi.Store(m + i); vi.Store(v + i);
            }
        }
        // The same operations one element at a time (no fused multiply-adds on either path), so the tail rounds alike.
        for (; i < n; i++)
        {
            float gi = g[i] * scale;
            float pi = p[i] * decay;
            float mi = m[i];
            mi += omb1 * (gi - mi);
            float vi = v[i] * b2 + omb2 * gi * gi;
            float denom = MathF.Sqrt(vi) / bc2s + eps;
            pi -= step * (mi / denom);
            p[i] = pi; m[i] = mi; v[i] = vi;
        }
    }

    void Free()
    {
        if (_m != null) NativeMemory.AlignedFree(_m);
        if (_v != null) NativeMemory.AlignedFree(_v);
        _m = _v = null;
    }

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    ~AdamW() => Free();
}
