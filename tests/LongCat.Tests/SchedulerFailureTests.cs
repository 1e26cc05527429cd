using LongCat.Inference;
using LongCat.Model;

namespace LongCat.Tests;

/// <summary>
/// Issue 12's scheduler findings: a cancellation registration never outlives its sequence (it is made before the
/// loop can see the sequence), and a failure in one sequence's step fails that sequence only, counted once.
/// </summary>
public class SchedulerFailureTests
{
    static int[] Prompt(int seed, int length, int vocab)
    {
        var rng = new Random(seed);
        return [1, .. Enumerable.Range(0, length - 1).Select(_ => rng.Next(5, vocab))];
    }

    [Fact]
    public async Task NoCancellationRegistrationOutlivesItsSequence()
    {
        using var model = LongCatModel.Load(ServerTestSupport.ModelDir);
        using var scheduler = new BatchScheduler(model, new SchedulerOptions { ContextLength = 64, KvCacheBytes = 16L << 20 });
        using var cts = new CancellationTokenSource();
        var seqs = new List<ScheduledSequence>();
        for (int i = 0; i < 60; i++)
        {
            // Sequences that end at their first token: the loop often finishes one before Submit returns.
            seqs.Add(scheduler.Submit(Prompt(i, 3, model.Config.VocabSize), new GenerationOptions { MaxTokens = 1, Temperature = 0 }, cts.Token));
            if (i % 7 == 0) await Task.Yield();
        }
        await Task.WhenAll(seqs.Select(s => s.Completion));
        Assert.Equal(0, scheduler.LiveRegistrations);
        // An already-cancelled token: the sequence ends as cancelled, and its registration is released too.
        using var gone = new CancellationTokenSource();
        gone.Cancel();
        var c = scheduler.Submit(Prompt(99, 3, model.Config.VocabSize), new GenerationOptions { MaxTokens = 50 }, gone.Token);
        Assert.Equal(StopReason.Cancelled, (await c.Completion).StopReason);
        Assert.Equal(0, scheduler.LiveRegistrations);
        // Every sequence is counted once.
        Assert.Equal(61, scheduler.Stats().Finished + scheduler.Stats().Cancelled);
    }

    [Fact]
    public async Task AThrowingSequenceFailsAloneAndIsCountedOnce()
    {
        using var model = LongCatModel.Load(ServerTestSupport.ModelDir);
        using var scheduler = new BatchScheduler(model, new SchedulerOptions { ContextLength = 128, KvCacheBytes = 16L << 20 });
        int v = model.Config.VocabSize;
        var boom = new InvalidOperationException("decode failed");
        // The bad sequence's stop check throws at its 3rd token; the good ones share its batches, one of them
        // ending in the very step that throws (max 3 tokens), the others running on.
        var bad = new GenerationOptions { MaxTokens = 20, Temperature = 0, StopStrings = ["zz"], Decode = ids => ids.Count >= 3 ? throw boom : "x" };
        var good = Enumerable.Range(0, 3).Select(i => new GenerationOptions { MaxTokens = i == 0 ? 3 : 10, Temperature = 0 }).ToArray();
        var want = good.Select((o, i) => new GenerationSession(model, Prompt(i, 4, v), o).Run().ToList()).ToArray();

        var g0 = scheduler.Submit(Prompt(0, 4, v), good[0]);
        var b = scheduler.Submit(Prompt(50, 4, v), bad);
        var rest = Enumerable.Range(1, 2).Select(i => scheduler.Submit(Prompt(i, 4, v), good[i])).ToList();
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => b.Completion);
        Assert.Same(boom, e);
        var goodSeqs = new[] { g0 }.Concat(rest).ToArray();
        for (int i = 0; i < goodSeqs.Length; i++)
        {
            var ids = new List<int>();
            await foreach (var t in goodSeqs[i].Tokens.ReadAllAsync()) ids.Add(t.Id);
            Assert.Equal(want[i], ids);
            Assert.Equal(StopReason.Length, (await goodSeqs[i].Completion).StopReason);
        }
        Assert.True(await ServerTestSupport.WaitUntil(() => scheduler.Stats().Running == 0));
        var st = scheduler.Stats();
        Assert.Equal(1, st.Failed);
        Assert.Equal(3, st.Finished);
        Assert.Equal(0, scheduler.Pool.RentedBytes);
        Assert.Equal(0, scheduler.LiveRegistrations);
        // The scheduler keeps serving.
        var after = scheduler.Submit(Prompt(7, 4, v), new GenerationOptions { MaxTokens = 2, Temperature = 0 });
        Assert.Equal(StopReason.Length, (await after.Completion).StopReason);
    }
}

/// <summary>n choices of one prompt share its prefill (issue 12 item 4).</summary>
public class SchedulerGroupTests
{
    static async Task<List<int>> Collect(ScheduledSequence s)
    {
        var ids = new List<int>();
        await foreach (var t in s.Tokens.ReadAllAsync()) ids.Add(t.Id);
        return ids;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ChoicesSharePrefillAndMatchSingleRuns(bool speculative)
    {
        using var model = LongCatModel.Load(ServerTestSupport.ModelDir);
        int v = model.Config.VocabSize;
        var rng = new Random(4);
        int[] prompt = [1, .. Enumerable.Range(0, 70).Select(_ => rng.Next(5, v))];
        var options = Enumerable.Range(0, 3).Select(i => new GenerationOptions { MaxTokens = 8 + i, Temperature = 0.9f, TopK = 40, Seed = (ulong)(10 + i), Speculative = speculative }).ToArray();
        var want = options.Select(o => new GenerationSession(model, prompt, o).Run().ToList()).ToArray();

        using var scheduler = new BatchScheduler(model, new SchedulerOptions { PrefillChunkTokens = 32, ContextLength = 256, KvCacheBytes = 32L << 20 });
        var group = scheduler.SubmitGroup(prompt, options);
        var got = await Task.WhenAll(group.Select(Collect));
        for (int i = 0; i < 3; i++) Assert.Equal(want[i], got[i]);
        Assert.True(await ServerTestSupport.WaitUntil(() => scheduler.Stats().Running == 0));
        var st = scheduler.Stats();
        Assert.Equal(prompt.Length, st.PrefillTokens);      // once, not three times
        Assert.Equal(3 * prompt.Length, st.PromptTokens);   // served three times
        Assert.Equal(3, st.Finished);
        Assert.Equal(0, scheduler.Pool.RentedBytes);
    }

    [Fact]
    public async Task CancellingTheLeaderLetsTheOthersFinish()
    {
        using var model = LongCatModel.Load(ServerTestSupport.ModelDir);
        int v = model.Config.VocabSize;
        int[] prompt = [1, 7, 9, 11, 13];
        var options = Enumerable.Range(0, 3).Select(i => new GenerationOptions { MaxTokens = 5, Temperature = 0, Seed = (ulong)i }).ToArray();
        var want = new GenerationSession(model, prompt, options[0]).Run().ToList();
        // Fill the only slot so the group waits in the queue, cancel its leader there, then free the slot.
        using var scheduler = new BatchScheduler(model, new SchedulerOptions { MaxRunningSequences = 3, ContextLength = 64, KvCacheBytes = 16L << 20 });
        var blocker = scheduler.SubmitGroup([1, 2, 3], Enumerable.Range(0, 3).Select(_ => new GenerationOptions { MaxTokens = 40, Temperature = 0 }).ToArray());
        var group = scheduler.SubmitGroup(prompt, options);
        group[0].Cancel();
        Assert.Equal(StopReason.Cancelled, (await group[0].Completion).StopReason);
        Assert.Equal(want, await Collect(group[1]));
        Assert.Equal(want, await Collect(group[2]));
        await Task.WhenAll(blocker.Select(b => b.Completion));
        // Cancelling a follower leaves the leader alone.
        var g2 = scheduler.SubmitGroup(prompt, options);
        g2[2].Cancel();
        Assert.Equal(want, await Collect(g2[0]));
        Assert.Equal(want, await Collect(g2[1]));
        Assert.True(await ServerTestSupport.WaitUntil(() => scheduler.Stats().Running == 0));
        Assert.Equal(0, scheduler.Pool.RentedBytes);
        Assert.Throws<ArgumentException>(() => scheduler.SubmitGroup(prompt, Enumerable.Range(0, 4).Select(_ => new GenerationOptions()).ToArray()));
    }
}
