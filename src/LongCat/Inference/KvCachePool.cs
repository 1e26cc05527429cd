using LongCat.Model;

namespace LongCat.Inference;

/// <summary>
/// A bounded pool of KV caches for a server: at most <see cref="CapacityBytes"/> of cache memory exists at any
/// time, whether rented or kept for reuse. Caches are sized in buckets (powers of two tokens, at least 64, at most
/// the context length) so that a released cache serves the next request of a similar size without a new
/// large-object allocation; idle caches are dropped when a new bucket needs their room. Thread-safe.
/// </summary>
public sealed class KvCachePool
{
    readonly LongCatModel _model;
    readonly object _lock = new();
    readonly Dictionary<(int Capacity, bool Mtp), Stack<KvCache>> _idle = [];
    long _rentedBytes, _idleBytes, _rentedTokens;
    int _rented;

    /// <param name="model">The model whose caches this pool makes.</param>
    /// <param name="capacityBytes">Upper bound on the bytes of all caches, rented and idle.</param>
    /// <param name="contextLength">Largest cache, in tokens.</param>
    public KvCachePool(LongCatModel model, long capacityBytes, int contextLength)
    {
        if (capacityBytes <= 0) throw new ArgumentOutOfRangeException(nameof(capacityBytes), capacityBytes, "the KV-cache pool needs a positive size");
        if (contextLength < 1 || contextLength > model.Config.MaxPositionEmbeddings)
            throw new ArgumentOutOfRangeException(nameof(contextLength), contextLength, $"context length must be in 1..{model.Config.MaxPositionEmbeddings}");
        _model = model;
        CapacityBytes = capacityBytes;
        ContextLength = contextLength;
    }

    /// <summary>Bytes one token takes in the main cache (every attention sublayer).</summary>
    public long BytesPerToken => 4L * 2 * _model.Config.NumLayers * (_model.Config.KvLoraRank + _model.Config.QkRopeHeadDim);

    /// <summary>Bytes one token takes in the MTP head's cache (one sublayer).</summary>
    public long MtpBytesPerToken => 4L * (_model.Config.KvLoraRank + _model.Config.QkRopeHeadDim);

    public long CapacityBytes { get; }
    public int ContextLength { get; }

    /// <summary>Bytes of caches handed out and not yet returned.</summary>
    public long RentedBytes { get { lock (_lock) return _rentedBytes; } }
    /// <summary>Bytes of returned caches kept for reuse (count against the capacity too).</summary>
    public long IdleBytes { get { lock (_lock) return _idleBytes; } }
    /// <summary>Bytes of all caches the pool holds, rented and idle (never above <see cref="CapacityBytes"/>).</summary>
    public long HeldBytes { get { lock (_lock) return _rentedBytes + _idleBytes; } }
    /// <summary>Token capacity (main caches) handed out.</summary>
    public long RentedTokens { get { lock (_lock) return _rentedTokens; } }
    /// <summary>Leases outstanding.</summary>
    public int Rented { get { lock (_lock) return _rented; } }

    /// <summary>The bucket a request for <paramref name="tokens"/> tokens gets.</summary>
    public int BucketFor(int tokens)
    {
        if (tokens < 1) throw new ArgumentOutOfRangeException(nameof(tokens), tokens, "a cache holds at least one token");
        long b = 64;
        while (b < tokens) b *= 2;
        return (int)Math.Min(b, ContextLength);
    }

    /// <summary>Bytes a lease of <paramref name="tokens"/> tokens takes (bucketed; with the MTP cache when asked).</summary>
    public long LeaseBytes(int tokens, bool mtp)
    {
        int cap = BucketFor(tokens);
        return cap * (BytesPerToken + (mtp ? MtpBytesPerToken : 0));
    }

    /// <summary>True when a lease of this size could ever be granted (it fits in an empty pool).</summary>
    public bool CanEverFit(int tokens, bool mtp) => tokens <= ContextLength && LeaseBytes(tokens, mtp) <= CapacityBytes;

    /// <summary>
    /// A main cache (and an MTP head cache when <paramref name="mtp"/>) of at least <paramref name="tokens"/>
    /// tokens, reset to empty; null when the pool has no room now (the caller waits for a release).
    /// </summary>
    public KvLease? TryRent(int tokens, bool mtp)
    {
        if (tokens > ContextLength) throw new ArgumentOutOfRangeException(nameof(tokens), tokens, $"more than the context length {ContextLength}");
        if (mtp && _model.Mtp is null) throw new ArgumentException("this model has no MTP head", nameof(mtp));
        int cap = BucketFor(tokens);
        long bytes = LeaseBytes(tokens, mtp);
        lock (_lock)
        {
            KvCache? main = Take(cap, false), head = mtp ? Take(cap, true) : null;
            // Memory after this lease: what is rented, this lease, and what stays idle. Drop idle caches of other
            // sizes until it fits, or give up (the taken ones go back).
            while (_rentedBytes + bytes + _idleBytes > CapacityBytes && DropOneIdle()) { }
            if (_rentedBytes + bytes + _idleBytes > CapacityBytes)
            {
                if (main is not null) Return(main, false);
                if (head is not null) Return(head, true);
                return null;
            }
            main ??= _model.NewCache(cap);
            if (mtp) head ??= _model.Mtp!.NewCache(cap);
            main.Reset();
            head?.Reset();
            _rentedBytes += bytes;
            _rentedTokens += cap;
            _rented++;
            return new KvLease(this, main, head, bytes);
        }
    }

    /// <summary>Gives a lease's caches back for reuse. Called by <see cref="KvLease.Dispose"/>.</summary>
    internal void Release(KvLease lease)
    {
        lock (_lock)
        {
            _rentedBytes -= lease.Bytes;
            _rentedTokens -= lease.Main.Capacity;
            _rented--;
            Return(lease.Main, false);
            if (lease.Mtp is not null) Return(lease.Mtp, true);
        }
    }

    /// <summary>Drops every idle cache (memory goes back to the GC).</summary>
    public void Trim()
    {
        lock (_lock) while (DropOneIdle()) { }
    }

    KvCache? Take(int cap, bool mtp)
    {
        if (!_idle.TryGetValue((cap, mtp), out var s) || s.Count == 0) return null;
        var c = s.Pop();
        _idleBytes -= c.Bytes;
        return c;
    }

    void Return(KvCache c, bool mtp)
    {
        var key = (c.Capacity, mtp);
        if (!_idle.TryGetValue(key, out var s)) _idle[key] = s = new Stack<KvCache>();
        s.Push(c);
        _idleBytes += c.Bytes;
    }

    bool DropOneIdle()
    {
        // Largest first: frees the most room per dropped cache.
        foreach (var kv in _idle.OrderByDescending(k => k.Key.Capacity))
            if (kv.Value.Count > 0)
            {
                _idleBytes -= kv.Value.Pop().Bytes;
                return true;
            }
        return false;
    }
}

/// <summary>A sequence's caches from a <see cref="KvCachePool"/>; dispose to give them back (idempotent).</summary>
public sealed class KvLease : IDisposable
{
    readonly KvCachePool _pool;
    int _disposed;

    internal KvLease(KvCachePool pool, KvCache main, KvCache? mtp, long bytes)
    {
        _pool = pool;
        Main = main;
        Mtp = mtp;
        Bytes = bytes;
    }

    /// <summary>The main model's cache.</summary>
    public KvCache Main { get; }
    /// <summary>The MTP head's cache, when speculative decoding was asked for.</summary>
    public KvCache? Mtp { get; }
    /// <summary>Bytes this lease counts against the pool.</summary>
    public long Bytes { get; }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0) _pool.Release(this);
    }
}
