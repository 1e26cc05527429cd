using System.Diagnostics;
using System.Runtime.CompilerServices;
using LongCat.Model;

namespace LongCat.Inference;

/// <summary>Why generation ended.</summary>
public enum StopReason { None, Length, StopToken, StopString, ContextFull, Cancelled }

/// <summary>One generated token, with the dynamic compute it took.</summary>
/// <param name="Id">Token id.</param>
/// <param name="Index">0-based index in the completion.</param>
/// <param name="FromDraft">True when the MTP draft proposed it and the main model accepted it.</param>
/// <param name="RealExpertsPerLayer">Real (non-zero) experts the token activated in each layer.</param>
/// <param name="Logprob">Its log-probability and alternatives, when the options asked for them (the batch scheduler).</param>
public sealed record GeneratedToken(int Id, int Index, bool FromDraft, int[] RealExpertsPerLayer, TokenLogprob? Logprob = null);

/// <summary>Counts and timings of a finished generation.</summary>
public sealed record GenerationResult
{
    public StopReason StopReason { get; init; }
    public string? MatchedStop { get; init; }
    public int PromptTokens { get; init; }
    public int CompletionTokens { get; init; }
    public double PrefillSeconds { get; init; }
    public double DecodeSeconds { get; init; }
    public int DraftedTokens { get; init; }
    public int AcceptedDrafts { get; init; }
    /// <summary>Speculative decoding: the token ids [0, N) the draft scored at the end (<see cref="GenerationOptions.DraftVocabulary"/>); else 0.</summary>
    public int DraftVocabulary { get; init; }
    public double AcceptanceRate => DraftedTokens == 0 ? 0 : (double)AcceptedDrafts / DraftedTokens;
    /// <summary>Histogram over generated tokens and layers: [n] = how many (token, layer) pairs used n real experts.</summary>
    public long[] RealExpertHistogram { get; init; } = [];
    public double MeanRealExperts { get; init; }
    public double PrefillTokensPerSecond => PrefillSeconds > 0 ? PromptTokens / PrefillSeconds : 0;
    public double DecodeTokensPerSecond => DecodeSeconds > 0 ? CompletionTokens / DecodeSeconds : 0;
}

/// <summary>
/// One generation over one prompt: prefill into a fresh KV cache, then decode token by token (or, with
/// <see cref="GenerationOptions.Speculative"/>, draft one token with the MTP head and verify it with one main
/// forward over [pending, draft], keeping both caches consistent after rejections). Stream with
/// <see cref="StreamAsync"/> or run to the end with <see cref="Run"/>; <see cref="Result"/> holds the stop reason.
/// </summary>
public sealed class GenerationSession
{
    readonly LongCatModel _model;
    readonly int[] _prompt;
    readonly GenerationOptions _o;
    readonly List<int> _output = [];
    readonly long[] _hist;
    int _drafted, _accepted;
    DraftVocabularyState? _draftVocab;

    public GenerationResult? Result { get; private set; }
    public IReadOnlyList<int> Output => _output;

    public GenerationSession(LongCatModel model, IReadOnlyList<int> prompt, GenerationOptions options, int? contextLength = null)
    {
        _model = model;
        _o = options;
        var c = model.Config;
        options.Validate(c.VocabSize);
        if (prompt.Count == 0) throw new ArgumentException("the prompt is empty: give at least one token (e.g. bos)");
        for (int i = 0; i < prompt.Count; i++)
            if (prompt[i] < 0 || prompt[i] >= c.VocabSize)
                throw new ArgumentException($"prompt token {i} = {prompt[i]} is outside the vocabulary 0..{c.VocabSize - 1}");
        int ctx = contextLength ?? c.MaxPositionEmbeddings;
        if (ctx < 1 || ctx > c.MaxPositionEmbeddings) throw new ArgumentException($"context length {ctx} must be in 1..max_position_embeddings = {c.MaxPositionEmbeddings}");
        if (prompt.Count >= ctx)
            throw new ContextLengthExceededException(prompt.Count, ctx);
        if (options.Speculative && model.Mtp is null)
            throw new ArgumentException("speculative decoding needs an MTP head, and this checkpoint has no model.mtp.* weights");
        _prompt = [.. prompt];
        Capacity = Math.Min(ctx, prompt.Count + options.MaxTokens + 1);
        _hist = new long[c.MoeTopK + 1];
    }

    /// <summary>Prompt tokens per prefill forward (long prompts run in chunks).</summary>
    public int PrefillChunk { get; init; } = 512;

    /// <summary>KV-cache capacity (tokens) this session allocates.</summary>
    public int Capacity { get; }

    /// <summary>Runs to completion and returns the generated tokens.</summary>
    public IReadOnlyList<int> Run(CancellationToken ct = default)
    {
        foreach (var _ in Generate(ct)) { }
        return _output;
    }

    /// <summary>Streams tokens as they are decided.</summary>
    public async IAsyncEnumerable<GeneratedToken> StreamAsync([EnumeratorCancellation] CancellationToken ct = default)
    {
        foreach (var t in Generate(ct))
        {
            yield return t;
            await Task.Yield();
        }
    }

    /// <summary>The generation loop, as a synchronous sequence.</summary>
    public IEnumerable<GeneratedToken> Generate(CancellationToken ct = default)
    {
        if (Result is not null) throw new InvalidOperationException("this session already ran");
        var m = _model;
        var c = m.Config;
        var sampler = new Sampler(_o, c.VocabSize, _prompt);
        var cache = m.NewCache(Capacity);
        var mtpCache = _o.Speculative ? m.Mtp!.NewCache(Capacity) : null;
        // The draft's vocabulary: token ids [0, N), the lm_head's first N rows (GenerationOptions.DraftVocabulary).
        var draftVocab = _draftVocab = mtpCache is null ? null : new DraftVocabularyState(_o, c.VocabSize, AutoDraftVocabulary);
        var sw = Stopwatch.StartNew();
        var stop = StopReason.None;
        string? matched = null;
        double prefill;

        // Prefill the prompt; hidden states are kept for the MTP head's pending pairs.
        var r = m.Prefill(_prompt, cache, PrefillChunk);
        prefill = sw.Elapsed.TotalSeconds;
        sw.Restart();
        var lastLogits = r.Logits;
        // MTP inputs not yet fed to the head: (h_t, token_{t+1}) for t = mtpCache.Length .. cache.Length-1; the h_t rows
        // back to back in one buffer reused every step (at most 2 rows after the prompt's).
        int hd = c.HiddenSize, pending = 0;
        float[]? pendingHidden = null;
        int[]? pendingTokens = null;
        void Pend(ReadOnlySpan<float> rows)
        {
            int n = rows.Length / hd;
            var buf = pendingHidden;
            if (buf is null || buf.Length < (pending + n) * hd)
            {
                Array.Resize(ref buf, Math.Max((pending + n) * hd, 2 * hd));
                pendingHidden = buf;
            }
            rows.CopyTo(buf.AsSpan(pending * hd));
            pending += n;
        }
        if (mtpCache is not null) Pend(r.FinalHidden.AsSpan(0, _prompt.Length * hd));
        int[] lastExperts = RealExperts(r.Routing, r.Routing[0].Tokens - 1);

        int y = sampler.Sample(lastLogits);   // pending token: decided, not yet run through the main model
        // Reused every step (the model overwrites a result of the same shape), so steady decoding allocates no buffers.
        StepResult? step = null, verify = null;
        float[]? draftLogits = null, q = null, p = null;
        while (true)
        {
            if (ct.IsCancellationRequested) { stop = StopReason.Cancelled; break; }
            // Emit the pending token.
            var (st, ms) = Emit(y, lastExperts, sampler);
            yield return new GeneratedToken(y, _output.Count - 1, false, lastExperts);
            if (st != StopReason.None) { stop = st; matched = ms; break; }
            if (cache.Length + 1 > Capacity) { stop = StopReason.ContextFull; break; }

            if (mtpCache is null || cache.Length + 2 > Capacity)
            {
                step = m.ForwardCached([y], cache, allLogits: false, absorbed: null, reuse: step);
                if (mtpCache is not null) Pend(step.FinalHidden);
                lastExperts = RealExperts(step.Routing, 0);
                y = sampler.Sample(step.Logits);
                continue;
            }

            // Speculative step. Draft from the MTP head: feed every pending (h_t, token_{t+1}) pair.
            var mtp = m.Mtp!;
            int start = mtpCache.Length, np = cache.Length - start;
            Debug.Assert(np == pending);
            var toks = Model.Buffers.Ensure(ref pendingTokens, np);
            for (int i = 0; i < np; i++)
            {
                int pos = start + i + 1;
                toks[i] = pos < _prompt.Length ? _prompt[pos] : (pos - _prompt.Length < _output.Count ? _output[pos - _prompt.Length] : y);
            }
            pending = 0;
            draftVocab!.Update();
            draftLogits = mtp.Forward(pendingHidden!.AsSpan(0, np * hd), toks.AsSpan(0, np), mtpCache, draftVocab.Head(m.LmHead), m.Rope, allLogits: false, reuse: draftLogits);
            q ??= new float[c.VocabSize];
            if (OracleDraft is not null)
            {
                Array.Clear(q);
                q[OracleDraft([.. _prompt, .. _output])] = 1f;
            }
            else sampler.Distribution(draftVocab.Row(draftLogits), q);
            int d = sampler.Greedy ? Sampler.ArgMax(q) : sampler.Draw(q);
            _drafted++;

            // Verify [y, d] with one main forward.
            var v = verify = m.ForwardCached([y, d], cache, allLogits: true, absorbed: null, reuse: verify);
            int vs = c.VocabSize;
            sampler.Distribution(v.Logits.AsSpan(0, vs), p ??= new float[vs]);
            int verified = AcceptOrResample(p, q, d, sampler);
            if (verified == d)
            {
                _accepted++;
                var ex = RealExperts(v.Routing, 0);
                var (st2, ms2) = Emit(d, ex, sampler);
                yield return new GeneratedToken(d, _output.Count - 1, true, ex);
                if (st2 != StopReason.None) { stop = st2; matched = ms2; break; }
                Pend(v.FinalHidden.AsSpan(0, 2 * hd));
                lastExperts = RealExperts(v.Routing, 1);
                y = sampler.Sample(v.Logits.AsSpan(vs, vs));
            }
            else
            {
                // Drop the draft from the main cache; resample from norm(max(0, p - q)).
                cache.Truncate(cache.Length - 1);
                Pend(v.FinalHidden.AsSpan(0, hd));
                lastExperts = RealExperts(v.Routing, 0);
                y = verified;
            }
        }

        double decode = sw.Elapsed.TotalSeconds;
        long pairs = _hist.Sum();
        double mean = pairs == 0 ? 0 : _hist.Select((n, k) => (double)n * k).Sum() / pairs;
        Result = new GenerationResult
        {
            StopReason = stop,
            MatchedStop = matched,
            PromptTokens = _prompt.Length,
            CompletionTokens = _output.Count,
            PrefillSeconds = prefill,
            DecodeSeconds = decode,
            DraftedTokens = _drafted,
            AcceptedDrafts = _accepted,
            DraftVocabulary = _draftVocab?.Size ?? 0,
            RealExpertHistogram = (long[])_hist.Clone(),
            MeanRealExperts = mean,
        };
    }

    (StopReason, string?) Emit(int token, int[] experts, Sampler sampler)
    {
        _output.Add(token);
        _draftVocab?.Observe(token);
        sampler.Accept(token);
        foreach (var e in experts) _hist[e]++;
        return _o.CheckStop(_output);
    }

    /// <summary>Test hook: the automatic draft vocabulary (instead of <see cref="MtpHead.DefaultDraftVocabulary"/>).</summary>
    internal int? AutoDraftVocabulary { get; init; }

    /// <summary>Test hook: drafts this token (one-hot q) instead of the MTP head's choice, given prompt + output.</summary>
    internal Func<int[], int>? OracleDraft { get; set; }

    /// <summary>
    /// The speculative-sampling rule (Leviathan et al. / Chen et al.): accept draft d ~ q with probability
    /// min(1, p(d)/q(d)); otherwise return a token drawn from norm(max(0, p - q)). The result is distributed as p.
    /// Greedy: accept iff d is p's argmax, else return the argmax. Returns d when accepted.
    /// </summary>
    internal static int AcceptOrResample(float[] p, float[] q, int d, Sampler sampler)
    {
        if (sampler.Greedy) return Sampler.ArgMax(p);
        if (sampler.NextUniform() < Math.Min(1.0, p[d] / Math.Max(q[d], 1e-30))) return d;
        int r = sampler.Draw(Residual(p, q));
        return r;
    }

    /// <summary>norm(max(0, p - q)): the resampling distribution after a rejected draft.</summary>
    internal static float[] Residual(ReadOnlySpan<float> p, ReadOnlySpan<float> q)
    {
        var r = new float[p.Length];
        double sum = 0;
        for (int i = 0; i < p.Length; i++) { float d = p[i] - q[i]; if (d > 0) { r[i] = d; sum += d; } }
        if (sum <= 0) { p.CopyTo(r); return r; }
        for (int i = 0; i < r.Length; i++) r[i] = (float)(r[i] / sum);
        return r;
    }

    int[] RealExperts(Routing[] routing, int row) => Routing.RealExpertsPerLayer(routing, row, _model.Config.NRoutedExperts);
}
