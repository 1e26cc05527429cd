using System.Diagnostics;
using System.Threading.Channels;
using LongCat.Kernels;
using LongCat.Model;

namespace LongCat.Inference;

/// <summary>
/// Continuous batching over one model. One thread runs steps; each step:
/// <list type="number">
/// <item>drops cancelled sequences (client gone) and frees their KV caches;</item>
/// <item>admits waiting requests, first come first served, while a slot and KV-cache room (<see cref="KvCachePool"/>) exist;</item>
/// <item>drafts one token with the MTP head for every speculative sequence, in one batched head forward;</item>
/// <item>runs one batched main forward (<see cref="LongCatModel.ForwardBatchRows"/>) over every decoding sequence's
/// pending token (or pending token and draft, to verify), plus prompt chunks of admitted sequences, at most
/// <see cref="SchedulerOptions.PrefillChunkTokens"/> prompt tokens per step so a long prompt does not stall the others;</item>
/// <item>samples each sequence with its own <see cref="Sampler"/> (own seed and penalty state), applies the
/// speculative accept/resample rule, streams the tokens, and ends sequences that hit a stop condition.</item>
/// </list>
/// Per sequence the calls to the sampler are the ones <see cref="GenerationSession"/> makes, so a sequence's output
/// does not depend on what else runs in its batch (up to the float rounding of batched kernels).
/// </summary>
public sealed class BatchScheduler : IDisposable
{
    readonly LongCatModel _model;
    readonly SchedulerOptions _o;
    readonly object _lock = new();
    readonly LinkedList<Seq> _queue = new();
    readonly List<Seq> _running = [];
    readonly Thread _thread;
    readonly Queue<(long Ticks, int Tokens)> _recent = new();
    /// <summary>The last main forward's result, overwritten by the next step of the same layout (no allocation per decode step).</summary>
    BatchRowsResult? _lastRows;
    bool _disposed;
    volatile int _runningCount;
    int _liveRegistrations;
    long _prefillTokens;
    Weight? _draftHead;   // the lm_head's first rows the last batched draft used
    long _submitted, _rejected, _finished, _cancelled, _failed, _promptTokens, _completionTokens, _steps, _drafted, _accepted, _expertSum, _expertPairs;

    public BatchScheduler(LongCatModel model, SchedulerOptions? options = null)
    {
        _model = model;
        _o = options ?? new SchedulerOptions();
        _o.Validate();
        int ctx = _o.ContextLength ?? model.Config.MaxPositionEmbeddings;
        if (ctx > model.Config.MaxPositionEmbeddings)
            throw new ArgumentException($"context length = {ctx} is invalid: must be at most max_position_embeddings = {model.Config.MaxPositionEmbeddings}");
        ContextLength = ctx;
        Pool = new KvCachePool(model, _o.KvCacheBytes, ctx);
        _thread = new Thread(Loop) { IsBackground = true, Name = "longcat-scheduler" };
        _thread.Start();
    }

    public LongCatModel Model => _model;
    public SchedulerOptions Options => _o;
    /// <summary>The KV caches of running sequences come from here.</summary>
    public KvCachePool Pool { get; }
    /// <summary>Prompt + completion tokens any sequence may hold.</summary>
    public int ContextLength { get; }

    /// <summary>
    /// Queues a generation. Throws <see cref="ArgumentException"/> for bad options or prompts (as
    /// <see cref="GenerationSession"/>) and <see cref="SchedulerBusyException"/> when the wait queue is full.
    /// </summary>
    public ScheduledSequence Submit(IReadOnlyList<int> prompt, GenerationOptions options, CancellationToken cancellationToken = default) =>
        SubmitGroup(prompt, [options], cancellationToken)[0];

    /// <summary>
    /// Queues n generations of one prompt (OpenAI's n choices) that share its prefill: they are admitted together,
    /// the first runs the prompt through the model, and when its prefill ends the others copy its KV cache and
    /// sample their first token from the same logits, each with its own options (seed). Options must agree on
    /// speculative decoding. Throws as <see cref="Submit"/>.
    /// </summary>
    public IReadOnlyList<ScheduledSequence> SubmitGroup(IReadOnlyList<int> prompt, IReadOnlyList<GenerationOptions> group, CancellationToken cancellationToken = default)
    {
        if (group.Count == 0) throw new ArgumentException("a group needs at least one sequence");
        if (group.Any(g => g.Speculative != group[0].Speculative)) throw new ArgumentException("speculative must be the same for every choice");
        var c = _model.Config;
        foreach (var g in group) CheckSubmission(prompt, g);
        var seqs = group.Select(g => new Seq([.. prompt], g, new Sampler(g, c.VocabSize, prompt), (int)Math.Min(ContextLength, (long)prompt.Count + g.MaxTokens + 1), c.MoeTopK)).ToList();
        if (seqs.Count > _o.MaxRunningSequences)
            throw new ArgumentException($"n = {seqs.Count} is invalid: at most {_o.MaxRunningSequences} sequences run together on this server");
        if (seqs.Count > 1 && seqs.Sum(x => Pool.LeaseBytes(x.Capacity, x.O.Speculative)) > Pool.CapacityBytes)
            throw new ArgumentException($"these {seqs.Count} choices need {seqs.Sum(x => Pool.LeaseBytes(x.Capacity, x.O.Speculative)) >> 20} MiB of KV cache together, more than the whole pool of {Pool.CapacityBytes >> 20} MiB: ask for fewer choices or tokens");
        var s = seqs[0];
        for (int i = 1; i < seqs.Count; i++) { seqs[i].Leader = s; s.Followers.Add(seqs[i]); }
        // Register before the loop can see the sequences: once queued they may finish (and unregister) at any moment.
        if (cancellationToken.CanBeCanceled)
            foreach (var q in seqs)
            {
                Interlocked.Increment(ref _liveRegistrations);
                q.Registered = 1;
                q.Registration = cancellationToken.Register(() => RequestCancel(q));
            }
        try
        {
            lock (_lock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                int freeSlots = Math.Max(0, _o.MaxRunningSequences - _runningCount);
                if (_queue.Count - freeSlots >= _o.MaxQueuedRequests)
                {
                    _rejected++;
                    throw new SchedulerBusyException($"the server is busy: {_runningCount} sequences running and {_queue.Count} waiting (limit {_o.MaxQueuedRequests}); retry later", TimeSpan.FromSeconds(1));
                }
                s.Node = _queue.AddLast(s);
                _submitted += seqs.Count;
                Monitor.PulseAll(_lock);
            }
        }
        catch
        {
            foreach (var q in seqs) Unregister(q);
            throw;
        }
        return seqs.Select(q => new ScheduledSequence(q.Channel.Reader, q.Done.Task, prompt.Count, () => RequestCancel(q))).ToList();
    }

    void CheckSubmission(IReadOnlyList<int> prompt, GenerationOptions options)
    {
        var c = _model.Config;
        options.Validate(c.VocabSize);
        if (prompt.Count == 0) throw new ArgumentException("the prompt is empty: give at least one token");
        for (int i = 0; i < prompt.Count; i++)
            if (prompt[i] < 0 || prompt[i] >= c.VocabSize)
                throw new ArgumentException($"prompt token {i} = {prompt[i]} is outside the vocabulary 0..{c.VocabSize - 1}");
        if (prompt.Count >= ContextLength)
            throw new ContextLengthExceededException(prompt.Count, ContextLength);
        if (options.Speculative && _model.Mtp is null)
            throw new ArgumentException("speculative decoding needs an MTP head, and this checkpoint has no model.mtp.* weights");
        int capacity = (int)Math.Min(ContextLength, (long)prompt.Count + options.MaxTokens + 1);
        if (!Pool.CanEverFit(capacity, options.Speculative))
            throw new ArgumentException($"this request needs {Pool.LeaseBytes(capacity, options.Speculative) >> 20} MiB of KV cache ({capacity} tokens), more than the whole pool of {Pool.CapacityBytes >> 20} MiB: ask for fewer tokens");
    }

    /// <remarks>
    /// Runs in the token's callback. It takes the lock to wake the loop, so <see cref="Finish"/> (which may hold the
    /// lock) only unregisters the callback and never waits for it, as CancellationTokenRegistration.Dispose would.
    /// </remarks>
    void RequestCancel(Seq s)
    {
        s.CancelRequested = true;
        lock (_lock) Monitor.PulseAll(_lock);
    }

    /// <summary>Cancellation registrations of sequences not yet ended (0 once everything ended: none leaks).</summary>
    internal int LiveRegistrations => Volatile.Read(ref _liveRegistrations);

    void Unregister(Seq s)
    {
        if (Interlocked.Exchange(ref s.Registered, 0) == 1)
        {
            s.Registration.Unregister();
            Interlocked.Decrement(ref _liveRegistrations);
        }
    }

    /// <summary>Counters and gauges now.</summary>
    public SchedulerStats Stats()
    {
        lock (_lock)
        {
            long now = Stopwatch.GetTimestamp();
            TrimRecent(now);
            double window = Math.Min(RecentWindowSeconds, Math.Max(1e-3, _recent.Count > 0 ? (now - _recent.Peek().Ticks) / (double)Stopwatch.Frequency : 0));
            long recentTokens = _recent.Sum(r => (long)r.Tokens);
            return new SchedulerStats
            {
                Queued = _queue.Count,
                Running = _runningCount,
                KvCacheBytesRented = Pool.RentedBytes,
                KvCacheBytesIdle = Pool.IdleBytes,
                KvCacheBytesCapacity = Pool.CapacityBytes,
                KvCacheTokensRented = Pool.RentedTokens,
                Submitted = _submitted,
                Rejected = _rejected,
                Finished = _finished,
                Cancelled = _cancelled,
                Failed = _failed,
                PromptTokens = _promptTokens,
                PrefillTokens = _prefillTokens,
                CompletionTokens = _completionTokens,
                Steps = _steps,
                DraftedTokens = _drafted,
                AcceptedDrafts = _accepted,
                RealExpertSum = _expertSum,
                RealExpertPairs = _expertPairs,
                RecentTokensPerSecond = recentTokens == 0 ? 0 : recentTokens / Math.Max(window, 1.0),
            };
        }
    }

    const double RecentWindowSeconds = 5;

    void TrimRecent(long now)
    {
        long horizon = now - (long)(RecentWindowSeconds * Stopwatch.Frequency);
        while (_recent.Count > 0 && _recent.Peek().Ticks < horizon) _recent.Dequeue();
    }

    // ------------------------------------------------------------------ the loop

    void Loop()
    {
        while (true)
        {
            lock (_lock)
            {
                while (!_disposed && _queue.Count == 0 && _running.Count == 0) Monitor.Wait(_lock);
                if (_disposed) break;
            }
            try
            {
                Step();
            }
            catch (Exception e)
            {
                // Last resort (the step's own handlers fail only the sequences a failure touched): fail the running
                // sequences that have not ended, keep serving the queue.
                Fail(_running.ToArray(), e);
            }
        }
        foreach (var s in _running) Finish(s, StopReason.Cancelled, null);
        _running.Clear();
        lock (_lock)
        {
            foreach (var s in _queue)
                foreach (var q in (List<Seq>)[s, .. s.Followers]) Finish(q, StopReason.Cancelled, null);
            _queue.Clear();
        }
    }

    void Step()
    {
        // 1. Cancelled sequences leave first (running and waiting).
        foreach (var s in _running.Where(s => s.CancelRequested).ToArray()) { _running.Remove(s); Finish(s, StopReason.Cancelled, null); }
        lock (_lock)
        {
            for (var n = _queue.First; n is not null;)
            {
                var next = n.Next;
                if (n.Value.CancelRequested)
                {
                    var gone = n.Value;
                    // The next choice of the group leads it now (with the rest as its followers), in the same place.
                    if (Promote(gone) is { } heir) { n.Value = heir; heir.Node = n; }
                    else _queue.Remove(n);
                    Finish(gone, StopReason.Cancelled, null);
                }
                n = next;
            }
            // 2. Admission, in arrival order (a request that does not fit yet blocks the ones behind it: no starvation).
            // A group (n choices) is admitted whole, so that its followers are there when the leader's prefill ends.
            while (_queue.First is { } head && _running.Count + 1 + head.Value.Followers.Count <= _o.MaxRunningSequences)
            {
                var group = (List<Seq>)[head.Value, .. head.Value.Followers];
                var leases = new List<KvLease>();
                foreach (var g in group)
                {
                    if (Pool.TryRent(g.Capacity, g.O.Speculative) is not { } lease) break;
                    leases.Add(lease);
                }
                if (leases.Count < group.Count)
                {
                    foreach (var l in leases) l.Dispose();
                    break;
                }
                _queue.RemoveFirst();
                long now = Stopwatch.GetTimestamp();
                for (int i = 0; i < group.Count; i++)
                {
                    group[i].Lease = leases[i];
                    group[i].AdmittedTicks = now;
                    _running.Add(group[i]);
                }
            }
            _runningCount = _running.Count;
        }
        if (_running.Count == 0) return;

        var m = _model;
        var c = m.Config;
        int v = c.VocabSize, hd = c.HiddenSize;

        // 3. MTP drafts for every decoding speculative sequence with room for [pending, draft].
        var spec = _running.Where(s => s.Pending >= 0 && s.Lease!.Mtp is not null && s.Lease.Main.Length + 2 <= s.Capacity).ToList();
        if (spec.Count > 0)
        {
            var hid = new List<float>();
            var toks = new List<int[]>();
            foreach (var s in spec)
            {
                var main = s.Lease!.Main;
                int start = s.Lease.Mtp!.Length, np = main.Length - start, p = s.Prompt.Length;
                var t = new int[np];
                for (int i = 0; i < np; i++)
                {
                    hid.AddRange(s.PendingHidden[i]);
                    int pos = start + i + 1;
                    t[i] = pos < p ? s.Prompt[pos] : (pos - p < s.Output.Count ? s.Output[pos - p] : s.Pending);
                }
                s.PendingHidden.Clear();
                toks.Add(t);
            }
            float[] draftLogits;
            // One draft lm_head for the batch: the widest draft vocabulary among its sequences; each masks past its own.
            int dw = 0;
            foreach (var s in spec) { s.DraftVocab!.Update(); dw = Math.Max(dw, s.DraftVocab.Size); }
            try
            {
                if (_draftHead?.Rows != dw) _draftHead = m.LmHead.FirstRows(dw);
                draftLogits = m.Mtp!.ForwardBatch(hid.ToArray(), toks, spec.Select(s => s.Lease!.Mtp!).ToList(), _draftHead, m.Rope);
            }
            catch (Exception e)
            {
                Fail(spec, e);  // their MTP caches are in an unknown state; the others go on
                return;
            }
            for (int i = 0; i < spec.Count; i++)
            {
                var s = spec[i];
                s.DraftQ = s.Sampler.Distribution(s.DraftVocab!.Row(draftLogits.AsSpan(i * dw, dw)));
                s.Draft = s.Sampler.Greedy ? Sampler.ArgMax(s.DraftQ) : s.Sampler.Draw(s.DraftQ);
                s.Drafted++;
            }
        }

        // 4. One main forward: decode rows, verify rows, prompt chunks.
        var batch = new List<Seq>();
        var tokens = new List<int[]>();
        var rows = new List<int>();
        int budget = _o.PrefillChunkTokens;
        foreach (var s in _running)
        {
            if (s.Pending >= 0)
            {
                int[] t = s.Draft >= 0 ? [s.Pending, s.Draft] : [s.Pending];
                batch.Add(s); tokens.Add(t); rows.Add(t.Length);
            }
            else if (budget > 0 && s.Leader is null)   // a follower waits for its leader's prefill
            {
                int n = Math.Min(s.Prompt.Length - s.Prefilled, budget);
                budget -= n;
                batch.Add(s);
                tokens.Add(s.Prompt.AsSpan(s.Prefilled, n).ToArray());
                rows.Add(s.Prefilled + n == s.Prompt.Length ? 1 : 0);
            }
        }
        BatchRowsResult r;
        try
        {
            // The previous step's result is overwritten when the batch has the same layout (steady decoding): every use
            // of it below copies or consumes it within this step.
            r = _lastRows = m.ForwardBatchRows(tokens, batch.Select(s => s.Lease!.Main).ToList(), rows, _lastRows);
        }
        catch (Exception e)
        {
            Fail(batch, e);  // their KV caches are in an unknown state; sequences outside this batch go on
            return;
        }
        _steps++;
        int generated = 0;

        // 5. Sample, verify, stream, stop.
        var ended = new List<Seq>();
        for (int i = 0; i < batch.Count; i++)
        {
            var s = batch[i];
            try
            {
                int n = tokens[i].Length, tok = r.TokenOffset[i], row = r.LogitOffset[i];
                var main = s.Lease!.Main;
                bool keepHidden = s.Lease.Mtp is not null;
                int before = s.Output.Count;
                StopReason stop;
                string? matched;
                if (s.Pending < 0)
                {
                    s.Prefilled += n;
                    _prefillTokens += n;
                    if (keepHidden)
                        for (int j = 0; j < n; j++) s.PendingHidden.Add(r.FinalHidden.AsSpan((tok + j) * hd, hd).ToArray());
                    if (s.Prefilled < s.Prompt.Length) continue;
                    s.FirstTokenTicks = Stopwatch.GetTimestamp();
                    foreach (var f in s.Followers)
                    {
                        var fs = StartFollower(s, f, r.Logits.AsSpan(row * v, v), RealExperts(r.Routing, tok + n - 1));
                        if (fs is not null) generated++;
                        if (fs is { } stopped && stopped != StopReason.None) ended.Add(f);
                    }
                    int y = s.Sampler.Sample(r.Logits.AsSpan(row * v, v));
                    (stop, matched) = Emit(s, y, false, RealExperts(r.Routing, tok + n - 1), r.Logits.AsSpan(row * v, v));
                }
                else if (s.Draft < 0)
                {
                    if (keepHidden) s.PendingHidden.Add(r.FinalHidden.AsSpan(tok * hd, hd).ToArray());
                    int y = s.Sampler.Sample(r.Logits.AsSpan(row * v, v));
                    (stop, matched) = Emit(s, y, false, RealExperts(r.Routing, tok), r.Logits.AsSpan(row * v, v));
                }
                else
                {
                    int d = s.Draft;
                    var p = s.Sampler.Distribution(r.Logits.AsSpan(row * v, v));
                    int verified = GenerationSession.AcceptOrResample(p, s.DraftQ!, d, s.Sampler);
                    s.Draft = -1;
                    s.DraftQ = null;
                    if (verified == d)
                    {
                        s.Accepted++;
                        (stop, matched) = Emit(s, d, true, RealExperts(r.Routing, tok), r.Logits.AsSpan(row * v, v));
                        if (stop == StopReason.None)
                        {
                            s.PendingHidden.Add(r.FinalHidden.AsSpan(tok * hd, hd).ToArray());
                            s.PendingHidden.Add(r.FinalHidden.AsSpan((tok + 1) * hd, hd).ToArray());
                            int y = s.Sampler.Sample(r.Logits.AsSpan((row + 1) * v, v));
                            (stop, matched) = Emit(s, y, false, RealExperts(r.Routing, tok + 1), r.Logits.AsSpan((row + 1) * v, v));
                        }
                    }
                    else
                    {
                        // Drop the draft from the main cache; the resampled token is the next one.
                        main.Truncate(main.Length - 1);
                        s.PendingHidden.Add(r.FinalHidden.AsSpan(tok * hd, hd).ToArray());
                        (stop, matched) = Emit(s, verified, false, RealExperts(r.Routing, tok), r.Logits.AsSpan(row * v, v));
                    }
                }
                generated += s.Output.Count - before;
                if (stop != StopReason.None) { ended.Add(s); Finish(s, stop, matched); }
            }
            catch (Exception e)
            {
                // This sequence's sampling or stop check threw (a bug, a caller's Decode): it alone fails.
                ended.Add(s);
                FailOne(s, e);
            }
        }
        foreach (var s in ended) _running.Remove(s);
        lock (_lock)
        {
            _runningCount = _running.Count;
            _recent.Enqueue((Stopwatch.GetTimestamp(), generated));
            TrimRecent(Stopwatch.GetTimestamp());
        }
    }

    /// <summary>
    /// A follower of a group starts where its leader's prefill ended: a copy of the leader's caches (and MTP inputs),
    /// then its first token from the same logits with its own sampler. Returns its stop reason (null when it was no
    /// longer waiting for this leader).
    /// </summary>
    StopReason? StartFollower(Seq leader, Seq f, ReadOnlySpan<float> logits, int[] experts)
    {
        if (f.Ended || f.Leader != leader) return null;
        try
        {
            f.Leader = null;
            f.Lease!.Main.CopyFrom(leader.Lease!.Main);
            if (f.Lease.Mtp is { } mtp) mtp.CopyFrom(leader.Lease.Mtp!);
            f.PendingHidden.AddRange(leader.PendingHidden);
            f.Prefilled = f.Prompt.Length;
            f.FirstTokenTicks = leader.FirstTokenTicks;
            var (stop, matched) = Emit(f, f.Sampler.Sample(logits), false, experts, logits);
            if (stop != StopReason.None) Finish(f, stop, matched);
            return stop;
        }
        catch (Exception e)
        {
            FailOne(f, e);
            return StopReason.Cancelled;
        }
    }

    /// <summary>
    /// A leader that leaves: its followers still waiting lead themselves (running: they prefill on their own) or,
    /// for a queued group, the first of them leads the rest. Returns the new leader of a queued group.
    /// </summary>
    Seq? Promote(Seq leader)
    {
        var waiting = leader.Followers.Where(f => f.Leader == leader && !f.Ended).ToList();
        leader.Followers.Clear();
        foreach (var f in waiting) f.Leader = null;
        if (waiting.Count == 0 || leader.Lease is not null || leader.Node is null) return null;
        var next = waiting[0];
        for (int i = 1; i < waiting.Count; i++) { waiting[i].Leader = next; next.Followers.Add(waiting[i]); }
        return next;
    }

    /// <summary>Streams a decided token and checks the stop conditions (as <see cref="GenerationSession"/>); sets it pending otherwise.</summary>
    (StopReason, string?) Emit(Seq s, int token, bool fromDraft, int[] experts, ReadOnlySpan<float> logits)
    {
        s.Output.Add(token);
        s.DraftVocab?.Observe(token);
        s.Sampler.Accept(token);
        foreach (var e in experts) s.Hist[e]++;
        var logprob = s.O.Logprobs is { } top ? TokenLogprobs.Compute(logits, token, top) : null;
        s.Channel.Writer.TryWrite(new GeneratedToken(token, s.Output.Count - 1, fromDraft, experts, logprob));
        s.Pending = -1;
        var stop = s.O.CheckStop(s.Output);
        if (stop.Reason != StopReason.None) return stop;
        if (s.Lease!.Main.Length + 1 > s.Capacity) return (StopReason.ContextFull, null);
        s.Pending = token;
        return (StopReason.None, null);
    }

    void Finish(Seq s, StopReason reason, string? matched)
    {
        if (s.Ended) return;
        s.Ended = true;
        if (s.Lease is not null) Promote(s);
        long now = Stopwatch.GetTimestamp();
        s.Lease?.Dispose();
        s.Lease = null;
        s.PendingHidden.Clear();
        long pairs = s.Hist.Sum();
        double f = Stopwatch.Frequency;
        var result = new GenerationResult
        {
            StopReason = reason,
            MatchedStop = matched,
            PromptTokens = s.Prompt.Length,
            CompletionTokens = s.Output.Count,
            PrefillSeconds = s.FirstTokenTicks > 0 ? (s.FirstTokenTicks - s.AdmittedTicks) / f : 0,
            DecodeSeconds = s.FirstTokenTicks > 0 ? (now - s.FirstTokenTicks) / f : 0,
            DraftedTokens = s.Drafted,
            AcceptedDrafts = s.Accepted,
            DraftVocabulary = s.DraftVocab?.Size ?? 0,
            RealExpertHistogram = (long[])s.Hist.Clone(),
            MeanRealExperts = pairs == 0 ? 0 : s.Hist.Select((n, k) => (double)n * k).Sum() / pairs,
        };
        lock (_lock)
        {
            if (reason == StopReason.Cancelled) _cancelled++; else _finished++;
            _promptTokens += s.FirstTokenTicks > 0 ? s.Prompt.Length : 0;
            _completionTokens += s.Output.Count;
            _drafted += s.Drafted;
            _accepted += s.Accepted;
            _expertSum += s.Hist.Select((n, k) => n * k).Sum();
            _expertPairs += pairs;
        }
        Unregister(s);
        s.Channel.Writer.TryComplete();
        s.Done.TrySetResult(result);
    }

    /// <summary>Fails these sequences (those not already ended) and takes them out of the running set.</summary>
    void Fail(IReadOnlyList<Seq> seqs, Exception e)
    {
        foreach (var s in seqs) FailOne(s, e);
        var gone = seqs.ToHashSet();
        _running.RemoveAll(gone.Contains);
        lock (_lock) _runningCount = _running.Count;
    }

    /// <summary>Ends a sequence with an error, counted once as failed (a no-op for a sequence that already ended).</summary>
    void FailOne(Seq s, Exception e)
    {
        if (s.Ended) return;
        s.Ended = true;
        if (s.Lease is not null) Promote(s);
        s.Lease?.Dispose();
        s.Lease = null;
        s.PendingHidden.Clear();
        lock (_lock) _failed++;
        Unregister(s);
        s.Channel.Writer.TryComplete(e);
        s.Done.TrySetException(e);
    }

    int[] RealExperts(Routing[] routing, int row) => Routing.RealExpertsPerLayer(routing, row, _model.Config.NRoutedExperts);

    /// <summary>Stops the loop; running and waiting sequences end as cancelled.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            Monitor.PulseAll(_lock);
        }
        _thread.Join();
    }

    /// <summary>A sequence's state, owned by the loop thread once admitted.</summary>
    sealed class Seq(int[] prompt, GenerationOptions options, Sampler sampler, int capacity, int topK)
    {
        public readonly int[] Prompt = prompt;
        public readonly GenerationOptions O = options;
        public readonly Sampler Sampler = sampler;
        /// <summary>Logical capacity (prompt + max tokens + 1, at most the context): stop conditions use it, not the bucket.</summary>
        public readonly int Capacity = capacity;
        public readonly Channel<GeneratedToken> Channel = System.Threading.Channels.Channel.CreateUnbounded<GeneratedToken>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        public readonly TaskCompletionSource<GenerationResult> Done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public readonly List<int> Output = [];
        /// <summary>MTP inputs not yet fed to the head: h_t for t = head cache length .. main cache length - 1.</summary>
        public readonly List<float[]> PendingHidden = [];
        public readonly long[] Hist = new long[topK + 1];
        public LinkedListNode<Seq>? Node;
        /// <summary>n &gt; 1: the group's first sequence, whose prefill this one waits for (null once started or alone).</summary>
        public Seq? Leader;
        /// <summary>n &gt; 1, on the group's first sequence: the others.</summary>
        public readonly List<Seq> Followers = [];
        public CancellationTokenRegistration Registration;
        /// <summary>1 while a cancellation registration is held (released once, by whoever ends the sequence).</summary>
        public int Registered;
        /// <summary>Finished or failed: counted once, never touched again.</summary>
        public bool Ended;
        public volatile bool CancelRequested;
        public KvLease? Lease;
        public int Prefilled;
        /// <summary>The decided token not yet run through the main model; -1 while prefilling or after the end.</summary>
        public int Pending = -1;
        public int Draft = -1;
        public float[]? DraftQ;
        public int Drafted, Accepted;
        /// <summary>Speculative sequences: the draft's vocabulary (<see cref="GenerationOptions.DraftVocabulary"/>).</summary>
        public readonly DraftVocabularyState? DraftVocab = options.Speculative ? new(options, sampler.VocabSize) : null;
        public long AdmittedTicks, FirstTokenTicks;
    }
}
