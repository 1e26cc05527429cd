using System.Runtime.CompilerServices;
using LongCat.Tokenization;

namespace LongCat.Inference;

/// <summary>A piece of streamed text: what became visible with the tokens decided since the last piece.</summary>
/// <param name="Text">New text (may be empty: a token that completes no character, or a special token).</param>
/// <param name="Tokens">Tokens these pieces cover.</param>
/// <param name="RealExperts">Mean real experts per layer over those tokens (the dynamic compute).</param>
/// <param name="Result">Set on the last piece: stop reason and counts.</param>
public sealed record TextDelta(string Text, int Tokens, double RealExperts, GenerationResult? Result = null)
{
    /// <summary>The log-probabilities of this piece's tokens (stop tokens left out), when the options asked for them.</summary>
    public IReadOnlyList<TokenLogprob>? Logprobs { get; init; }
}

/// <summary>
/// Text in, text out over a <see cref="BatchScheduler"/>: stop tokens of the model and tokenizer (eos, end of turn)
/// are always on, stop strings are matched on the decoded text, and streamed text never shows a partial character
/// or a stop string. Thread-safe: any number of callers share the one scheduler.
/// </summary>
public sealed class TextGenerator
{
    public TextGenerator(BatchScheduler scheduler, Tokenizer tokenizer)
    {
        if (tokenizer.VocabSize > scheduler.Model.Config.VocabSize)
            throw new ArgumentException($"the tokenizer has {tokenizer.VocabSize} tokens but the model's vocabulary is {scheduler.Model.Config.VocabSize}: they do not belong together");
        Scheduler = scheduler;
        Tokenizer = tokenizer;
        var stops = new SortedSet<int> { scheduler.Model.Config.EosTokenId };
        if (tokenizer.EosTokenId is { } eos) stops.Add(eos);
        if (tokenizer.TokenToId(ChatFormat.EndOfTurn) is { } eot) stops.Add(eot);
        StopTokenIds = [.. stops.Where(id => id >= 0 && id < scheduler.Model.Config.VocabSize)];
    }

    public BatchScheduler Scheduler { get; }
    public Tokenizer Tokenizer { get; }

    /// <summary>Token ids that always end a completion (eos, end of turn).</summary>
    public IReadOnlyList<int> StopTokenIds { get; }

    /// <summary>Adds the default stop tokens and the decoder stop strings need.</summary>
    public GenerationOptions Complete(GenerationOptions o) => o with
    {
        StopTokenIds = [.. o.StopTokenIds.Union(StopTokenIds)],
        Decode = o.StopStrings.Count > 0 ? ids => Tokenizer.Decode([.. ids], skipSpecialTokens: true) : o.Decode,
    };

    /// <summary>
    /// Streams the completion of <paramref name="prompt"/>. The request is queued at the first MoveNextAsync
    /// (which throws <see cref="SchedulerBusyException"/> or <see cref="ArgumentException"/> then); the first piece
    /// is an empty one that says it was accepted. Cancelling, or leaving the enumeration early, ends the sequence
    /// and frees its KV cache.
    /// </summary>
    public async IAsyncEnumerable<TextDelta> StreamAsync(IReadOnlyList<int> prompt, GenerationOptions options,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var o = Complete(options);
        var seq = Scheduler.Submit(prompt, o, cancellationToken);
        await foreach (var d in Follow(seq, o, cancellationToken).ConfigureAwait(false)) yield return d;
    }

    /// <summary>
    /// n completions of one prompt that share its prefill (<see cref="BatchScheduler.SubmitGroup"/>), queued now
    /// (throws as <see cref="StreamAsync"/> does at its first MoveNextAsync); choice i is sampled with the seed
    /// <see cref="ChoiceSeed"/>(seed, i). Each stream behaves as <see cref="StreamAsync"/>'s.
    /// </summary>
    public IReadOnlyList<IAsyncEnumerable<TextDelta>> StreamChoices(IReadOnlyList<int> prompt, GenerationOptions options, int n, CancellationToken cancellationToken = default)
    {
        var o = Complete(options);
        var group = Enumerable.Range(0, n).Select(i => o with { Seed = ChoiceSeed(o.Seed, i) }).ToList();
        var seqs = Scheduler.SubmitGroup(prompt, group, cancellationToken);
        return seqs.Select((q, i) => Follow(q, group[i], cancellationToken)).ToList();
    }

    /// <summary>The seed of choice <paramref name="i"/>: the request's seed for the first (n = 1 is unchanged), a SplitMix64 mix after.</summary>
    public static ulong ChoiceSeed(ulong seed, int i)
    {
        if (i == 0) return seed;
        ulong z = seed + 0x9E3779B97F4A7C15UL * (ulong)i;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    async IAsyncEnumerable<TextDelta> Follow(ScheduledSequence seq, GenerationOptions o, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var detok = new StreamingDetokenizer(Tokenizer, o.StopStrings);
        bool done = false;
        try
        {
            yield return new TextDelta("", 0, 0);
            var reader = seq.Tokens;
            while (await reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                // Everything decided since the last wake-up goes out as one piece (fewer, larger SSE events under load).
                var text = new System.Text.StringBuilder();
                int n = 0;
                long experts = 0, layers = 0;
                List<TokenLogprob>? logprobs = o.Logprobs is null ? null : [];
                while (reader.TryRead(out var t))
                {
                    if (t.Logprob is { } lp && !o.StopTokenIds.Contains(t.Id)) logprobs!.Add(lp);
                    text.Append(detok.Push(t.Id));
                    n++;
                    foreach (var e in t.RealExpertsPerLayer) experts += e;
                    layers += t.RealExpertsPerLayer.Length;
                }
                if (n > 0) yield return new TextDelta(text.ToString(), n, layers == 0 ? 0 : (double)experts / layers) { Logprobs = logprobs };
            }
            var result = await seq.Completion.ConfigureAwait(false);
            if (result.StopReason == StopReason.Cancelled) cancellationToken.ThrowIfCancellationRequested();
            done = true;
            yield return new TextDelta(detok.Flush(), 0, 0, result);
        }
        finally
        {
            if (!done) seq.Cancel();
        }
    }
}
