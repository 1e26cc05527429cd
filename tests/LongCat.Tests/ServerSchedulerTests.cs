using LongCat.Inference;
using LongCat.Model;

namespace LongCat.Tests;

/// <summary>Continuous batching: the batch scheduler, its KV-cache pool and the streaming detokenizer.</summary>
public class ServerSchedulerTests
{
    static async Task<List<int>> Collect(ScheduledSequence s)
    {
        var ids = new List<int>();
        await foreach (var t in s.Tokens.ReadAllAsync()) ids.Add(t.Id);
        return ids;
    }

    static int[] Prompt(int seed, int length, int vocab)
    {
        var rng = new Random(seed);
        return [1, .. Enumerable.Range(0, length - 1).Select(_ => rng.Next(5, vocab))];
    }

    /// <summary>
    /// Sequences that share batches (admitted at different steps, one with a prompt long enough for several prefill
    /// chunks) produce what each produces alone with GenerationSession: greedy and seeded sampling, with and
    /// without MTP drafting inside the batch.
    /// </summary>
    [Theory]
    [InlineData(false, 0f)]
    [InlineData(false, 0.9f)]
    [InlineData(true, 0f)]
    [InlineData(true, 0.9f)]
    public async Task BatchedSequencesMatchSingleSequenceGeneration(bool speculative, float temperature)
    {
        using var model = LongCatModel.Load(ServerTestSupport.ModelDir);
        int v = model.Config.VocabSize;
        int[][] prompts = [Prompt(1, 5, v), Prompt(2, 140, v), Prompt(3, 2, v), Prompt(4, 33, v), Prompt(5, 9, v)];
        GenerationOptions Options(int i) => new()
        {
            MaxTokens = 12 + 3 * i,
            Temperature = temperature,
            TopK = temperature > 0 ? 50 : 0,
            Seed = (ulong)(100 + i),
            FrequencyPenalty = 0.3f,
            Speculative = speculative,
            // Draft vocabularies of different widths in one batch (odd sequences; the others the automatic default).
            DraftVocabulary = speculative && i % 2 == 1 ? 64 + 100 * i : null,
        };
        var want = prompts.Select((p, i) => new GenerationSession(model, p, Options(i)).Run().ToList()).ToArray();

        using var scheduler = new BatchScheduler(model, new SchedulerOptions { PrefillChunkTokens = 48, ContextLength = 512, KvCacheBytes = 32L << 20 });
        var first = prompts.Take(3).Select((p, i) => scheduler.Submit(p, Options(i))).ToList();
        await Task.Delay(5);   // the rest join a batch that is already decoding
        var rest = prompts.Skip(3).Select((p, i) => scheduler.Submit(p, Options(i + 3))).ToList();
        var got = await Task.WhenAll(first.Concat(rest).Select(Collect));
        for (int i = 0; i < prompts.Length; i++) Assert.Equal(want[i], got[i]);
        var results = await Task.WhenAll(first.Concat(rest).Select(s => s.Completion));
        Assert.All(results, r => Assert.Equal(StopReason.Length, r.StopReason));
        if (speculative) Assert.True(results.Sum(r => r.DraftedTokens) > 0);
        Assert.True(await ServerTestSupport.WaitUntil(() => scheduler.Stats().Running == 0));
        Assert.Equal(0, scheduler.Pool.RentedBytes);
        var st = scheduler.Stats();
        Assert.Equal(prompts.Sum(p => p.Length), st.PromptTokens);
        Assert.Equal(want.Sum(w => w.Count), st.CompletionTokens);
        // Fewer steps than tokens: sequences really shared forwards.
        Assert.True(st.Steps < st.CompletionTokens, $"{st.Steps} steps for {st.CompletionTokens} tokens");
    }

    /// <summary>
    /// A long prompt is prefilled a chunk per step while a running sequence keeps decoding beside it: the running one
    /// needs 12 more steps to finish, the long prompt 15 steps (960 tokens at 64 a step) to its first token, so the
    /// first must be done before the second starts; if prefill stalled decoding it would finish after.
    /// </summary>
    [Fact]
    public async Task LongPromptPrefillDoesNotStallDecoding()
    {
        using var model = LongCatModel.Load(ServerTestSupport.ModelDir);
        using var scheduler = new BatchScheduler(model, new SchedulerOptions { PrefillChunkTokens = 64, ContextLength = 1200 });
        var a = scheduler.Submit(Prompt(1, 4, 4096), new GenerationOptions { Temperature = 0, MaxTokens = 13 });
        Assert.True(await a.Tokens.WaitToReadAsync());
        long stepsBefore = scheduler.Stats().Steps;
        var b = scheduler.Submit(Prompt(2, 960, 4096), new GenerationOptions { Temperature = 0, MaxTokens = 2 });
        Assert.True(await b.Tokens.WaitToReadAsync());
        // Completion is set on the scheduler thread when a ends, before the step that gives b its first token.
        Assert.True(a.Completion.IsCompleted, "the running sequence did not decode while the long prompt was prefilled");
        Assert.Equal(13, (await a.Completion).CompletionTokens);
        var rb = await b.Completion;
        Assert.True(scheduler.Stats().Steps - stepsBefore >= 15);
        Assert.Equal(960, rb.PromptTokens);
        Assert.Equal(2, rb.CompletionTokens);
    }

    /// <summary>A stop token ends a sequence early without disturbing the others in its batch.</summary>
    [Fact]
    public async Task StopTokensEndOneSequenceOnly()
    {
        using var model = LongCatModel.Load(Fixtures.Reference("tiny"));
        int[] p = [1, 5, 9, 14, 20];
        var alone = new GenerationSession(model, p, new GenerationOptions { Temperature = 0, MaxTokens = 10 }).Run().ToList();
        using var scheduler = new BatchScheduler(model, new SchedulerOptions { ContextLength = 64 });
        var a = scheduler.Submit(p, new GenerationOptions { Temperature = 0, MaxTokens = 10, StopTokenIds = [alone[3]] });
        var b = scheduler.Submit(p, new GenerationOptions { Temperature = 0, MaxTokens = 10 });
        Assert.Equal(alone.Take(alone.IndexOf(alone[3]) + 1), await Collect(a));
        Assert.Equal(alone, await Collect(b));
        Assert.Equal(StopReason.StopToken, (await a.Completion).StopReason);
    }

    /// <summary>The pool bounds memory: with room for two sequences, six requests run at most two at a time and all finish.</summary>
    [Fact]
    public async Task KvPoolBoundsConcurrencyAndEmptiesAfterwards()
    {
        using var model = LongCatModel.Load(Fixtures.Reference("tiny"));
        var probe = new KvCachePool(model, 1L << 30, 64);
        long lease = probe.LeaseBytes(40, false);
        using var scheduler = new BatchScheduler(model, new SchedulerOptions { ContextLength = 64, KvCacheBytes = 2 * lease + lease / 2 });
        var seqs = Enumerable.Range(0, 6).Select(i => scheduler.Submit([1, 5 + i, 9], new GenerationOptions { Temperature = 0, MaxTokens = 30 })).ToList();
        int maxRunning = 0;
        var all = Task.WhenAll(seqs.Select(Collect));
        while (!all.IsCompleted)
        {
            var st = scheduler.Stats();
            maxRunning = Math.Max(maxRunning, st.Running);
            Assert.True(scheduler.Pool.HeldBytes <= scheduler.Pool.CapacityBytes);
            await Task.Delay(1);
        }
        Assert.All(await all, ids => Assert.Equal(30, ids.Count));
        Assert.InRange(maxRunning, 1, 2);
        Assert.True(await ServerTestSupport.WaitUntil(() => scheduler.Stats().Running == 0));
        Assert.Equal(0, scheduler.Pool.RentedBytes);
        // A request bigger than the whole pool is refused at once instead of waiting forever.
        using var small = new BatchScheduler(model, new SchedulerOptions { ContextLength = 64, KvCacheBytes = lease / 2 });
        Assert.Throws<ArgumentException>(() => small.Submit([1, 2], new GenerationOptions { MaxTokens = 60 }));
    }

    /// <summary>A full queue refuses with SchedulerBusyException; cancelling frees the slot and the cache.</summary>
    [Fact]
    public async Task FullQueueRefusesAndCancelFreesResources()
    {
        using var model = LongCatModel.Load(Fixtures.Reference("tiny"));
        using var scheduler = new BatchScheduler(model, new SchedulerOptions { ContextLength = 4096, MaxRunningSequences = 1, MaxQueuedRequests = 1 });
        var opts = new GenerationOptions { Temperature = 0, MaxTokens = 4000 };
        var running = scheduler.Submit([1, 2, 3], opts);
        Assert.True(await ServerTestSupport.WaitUntil(() => scheduler.Stats().Running == 1));
        using var cts = new CancellationTokenSource();
        var waiting = scheduler.Submit([1, 2, 3], opts, cts.Token);
        var busy = Assert.Throws<SchedulerBusyException>(() => scheduler.Submit([1, 2, 3], opts));
        Assert.True(busy.RetryAfter > TimeSpan.Zero);
        Assert.Equal(1, scheduler.Stats().Rejected);
        cts.Cancel();
        Assert.Equal(StopReason.Cancelled, (await waiting.Completion).StopReason);
        running.Cancel();
        var r = await running.Completion;
        Assert.Equal(StopReason.Cancelled, r.StopReason);
        Assert.True(r.CompletionTokens < 4000);
        Assert.True(await ServerTestSupport.WaitUntil(() => scheduler.Stats().Running == 0 && scheduler.Stats().Queued == 0));
        Assert.Equal(0, scheduler.Pool.RentedBytes);
        Assert.Equal(2, scheduler.Stats().Cancelled);
    }

    [Fact]
    public void SubmitRejectsBadRequests()
    {
        using var model = LongCatModel.Load(Fixtures.Reference("tiny"));
        using var scheduler = new BatchScheduler(model, new SchedulerOptions { ContextLength = 16 });
        Assert.Throws<ArgumentException>(() => scheduler.Submit([], new GenerationOptions()));
        Assert.Throws<ArgumentException>(() => scheduler.Submit([1, 999], new GenerationOptions()));
        Assert.Throws<ContextLengthExceededException>(() => scheduler.Submit(Enumerable.Repeat(1, 16).ToArray(), new GenerationOptions()));
        Assert.Throws<ArgumentException>(() => scheduler.Submit([1], new GenerationOptions { TopP = 0 }));
        Assert.Throws<ArgumentException>(() => scheduler.Submit([1], new GenerationOptions { Speculative = true }));
        Assert.Throws<ArgumentException>(() => new BatchScheduler(model, new SchedulerOptions { MaxRunningSequences = 0 }));
    }

    /// <summary>The pool reuses a returned cache of the same bucket and drops idle ones to make room for others.</summary>
    [Fact]
    public void KvPoolReusesAndEvicts()
    {
        using var model = LongCatModel.Load(Fixtures.Reference("tiny"));
        long perToken = new KvCachePool(model, 1, 4096).BytesPerToken;
        var pool = new KvCachePool(model, 3 * 4096 * perToken, 4096);   // room for three 4096-token caches
        Assert.Equal(64, pool.BucketFor(1));
        Assert.Equal(128, pool.BucketFor(65));
        Assert.Equal(4096, pool.BucketFor(4096));
        var a = pool.TryRent(100, false)!;
        var cache = a.Main;
        cache.Advance(3);
        a.Dispose();
        a.Dispose();   // idempotent
        var b = pool.TryRent(120, false)!;
        Assert.Same(cache, b.Main);
        Assert.Equal(0, b.Main.Length);
        b.Dispose();
        var big = Enumerable.Range(0, 3).Select(_ => pool.TryRent(4000, false)).ToList();
        Assert.All(big, Assert.NotNull);
        Assert.Null(pool.TryRent(10, false));
        Assert.True(pool.RentedBytes + pool.IdleBytes <= pool.CapacityBytes);
        foreach (var l in big) l!.Dispose();
        Assert.Equal(0, pool.RentedBytes);
        Assert.NotNull(pool.TryRent(10, false));
    }

    [Fact]
    public void DetokenizerHoldsPartialCharactersAndStopStrings()
    {
        var tok = ServerTestSupport.Tokenizer.Value;
        const string text = "Hello wörld, 你好 — stop here STOP and more";
        var ids = tok.EncodeToIds(text);
        var d = new StreamingDetokenizer(tok);
        var pieces = ids.Select(d.Push).ToList();
        pieces.Add(d.Flush());
        Assert.Equal(text, string.Concat(pieces));
        Assert.DoesNotContain(pieces, p => p.Contains('\uFFFD'));

        var s = new StreamingDetokenizer(tok, ["STOP", "xyz"]);
        var outText = string.Concat(ids.Select(s.Push)) + s.Flush();
        Assert.Equal("Hello wörld, 你好 — stop here ", outText);
        Assert.True(s.Stopped);
        Assert.Equal("STOP", s.MatchedStop);

        // A stop-string prefix at the end is held back until it is known not to be a stop, then released.
        var h = new StreamingDetokenizer(tok, ["ST!"]);
        var streamed = string.Concat(ids.Select(h.Push));
        Assert.Equal(text, streamed + h.Flush());
        Assert.False(h.Stopped);

        // Special tokens never reach the text.
        var sp = new StreamingDetokenizer(tok);
        Assert.Equal("", sp.Push(tok.TokenToId("</longcat_s>")!.Value));
    }
}
