using LongCat.Config;
using LongCat.IO;
using LongCat.Kernels;

namespace LongCat.Model;

/// <summary>What a forward pass should keep besides the logits.</summary>
public sealed record ForwardOptions
{
    public bool KeepHiddenStates { get; init; }
    public bool KeepRouting { get; init; }
    /// <summary>Compute logits for every position (true) or only the last one of each sequence.</summary>
    public bool AllLogits { get; init; } = true;
}

/// <summary>Outputs of <see cref="LongCatModel.Forward"/>. Row index = b·S + s.</summary>
public sealed class ForwardResult
{
    /// <summary>[B·S, V] (or [B, V] when only last positions were asked for).</summary>
    public required float[] Logits { get; init; }
    /// <summary>[B·S, H] after the final norm.</summary>
    public required float[] FinalHidden { get; init; }
    /// <summary>Per layer: residual stream [B·S, H] after the layer (when kept).</summary>
    public List<float[]> HiddenAfterLayer { get; } = [];
    /// <summary>Per layer: routing decisions (when kept).</summary>
    public List<Routing> Routing { get; } = [];
}

/// <summary>Result of <see cref="LongCatModel.ForwardCached(ReadOnlySpan{int}, KvCache, bool, bool?)"/>.</summary>
/// <param name="Logits">[rows, V]: every new token's logits, or the last one's.</param>
/// <param name="FinalHidden">[n, H]: hidden states after the final norm (the MTP head's input).</param>
/// <param name="Routing">Per layer: the routing of the new tokens.</param>
public sealed record StepResult(float[] Logits, float[] FinalHidden, Routing[] Routing);

/// <summary>Result of <see cref="LongCatModel.ForwardBatch"/>: per sequence, the last token's logits [S, V] and final hidden [S, H].</summary>
public sealed record BatchStepResult(float[] Logits, float[] LastHidden, Routing[] Routing);

/// <summary>Result of <see cref="LongCatModel.ForwardBatchRows"/>.</summary>
/// <param name="Logits">[R, V]: the rows asked for, sequences back to back; sequence i starts at row LogitOffset[i].</param>
/// <param name="LogitOffset">Per sequence: its first row in <paramref name="Logits"/>.</param>
/// <param name="FinalHidden">[T, H]: every new token's hidden state after the final norm; sequence i starts at TokenOffset[i].</param>
/// <param name="TokenOffset">Per sequence: its first token in <paramref name="FinalHidden"/> and in each routing.</param>
/// <param name="Routing">Per layer: the routing of all T new tokens.</param>
public sealed record BatchRowsResult(float[] Logits, int[] LogitOffset, float[] FinalHidden, int[] TokenOffset, Routing[] Routing);

/// <summary>
/// The LongCat-Flash causal LM: embedding, num_layers ScMoE layers, final RMSNorm, lm_head (not tied unless the
/// config says so), and the MTP head when present. Built once from a <see cref="IParameterSource"/>: a checkpoint for
/// inference (weights stay in the checkpoint's dtype and memory mapping) or training's flat fp32 store, whose
/// <c>TrainableModel</c> runs these same modules with states that keep what each module's backward (beside its
/// forward) needs. Inference forwards rent a workspace, so steady decoding allocates no activations.
/// </summary>
public sealed class LongCatModel : IDisposable
{
    readonly Checkpoint? _checkpoint;
    readonly Param _embed, _finalNorm, _lmHead;
    readonly WorkspacePool<Workspace> _workspaces;
    public LongCatConfig Config { get; }
    public Weight EmbedTokens => _embed.Weight;   // [V, H]
    public DecoderLayer[] Layers { get; }
    public Weight LmHead => _lmHead.Weight;       // [V, H]
    public Rope Rope { get; }
    /// <summary>The MTP draft head when the parameters include one (model.mtp.*), else null.</summary>
    public MtpHead? Mtp { get; }

    public LongCatModel(LongCatConfig config, Checkpoint checkpoint) : this(new WeightLoader(checkpoint, config), checkpoint) { }

    /// <summary>The network over <paramref name="parameters"/> (a checkpoint's <see cref="WeightLoader"/> or a training store).</summary>
    public LongCatModel(IParameterSource parameters) : this(parameters, null) { }

    LongCatModel(IParameterSource p, Checkpoint? checkpoint)
    {
        var config = Config = p.Config;
        _checkpoint = checkpoint;
        if (checkpoint is not null)
        {
            CheckpointLayout.CheckTopology(config, checkpoint);
            CheckpointLayout.CheckMtp(config, checkpoint);
        }
        _embed = p.Linear("model.embed_tokens.weight", config.VocabSize, config.HiddenSize);
        Layers = new DecoderLayer[config.NumLayers];
        for (int i = 0; i < config.NumLayers; i++) Layers[i] = new DecoderLayer(p, i);
        _finalNorm = p.Vector("model.norm.weight", config.HiddenSize);
        _lmHead = config.TieWordEmbeddings && !p.Contains("lm_head.weight")
            ? _embed
            : p.Linear("lm_head.weight", config.VocabSize, config.HiddenSize);
        Rope = new Rope(config.QkRopeHeadDim, config.RopeTheta);
        if (MtpHead.Present(p)) Mtp = new MtpHead(p, _embed);
        _workspaces = new(() => new Workspace());
    }

    /// <summary>
    /// An inference forward's scratch: one layer state reused by every layer, the final norm's inverse RMS, the batch's
    /// token bookkeeping, and the attention steps bound once to the fields they read (set before each layer), so a
    /// cached forward creates no delegate.
    /// </summary>
    sealed class Workspace
    {
        public readonly LayerState Layer = new(forBackward: false);
        public float[]? Rstd;
        public int[]? Counts, Ids;
        public float[]? Selected;
        public KvCache? Cache;
        public IReadOnlyList<KvCache>? Caches;
        public Rope Rope = null!;
        public int N, LayerIndex;
        public bool? Absorbed;
        public readonly AttentionStep Cached, Batched;

        public Workspace()
        {
            Cached = (mla, s, x, y, st) => mla.ForwardCached(x, y, N, Cache!, 2 * LayerIndex + s, Rope, st, Absorbed);
            Batched = (mla, s, x, y, st) => mla.ForwardCachedBatch(x, y, Caches!, Counts!, 2 * LayerIndex + s, Rope, st);
        }

        /// <summary>Drops the references to the caller's caches before the workspace goes back to the pool.</summary>
        public void Clear() { Cache = null; Caches = null; }
    }

    /// <summary>Opens a Hugging Face checkpoint folder (config.json + safetensors).</summary>
    public static LongCatModel Load(string folder)
    {
        if (File.Exists(folder))
            throw new ModelFormatException($"{folder}: is a file; give the checkpoint folder (config.json + safetensors)");
        if (!Directory.Exists(folder))
            throw new ModelFormatException($"{folder}: model folder not found");
        var config = LongCatConfig.Load(Path.Combine(folder, "config.json"));
        var ck = Checkpoint.Open(folder);
        try { return new LongCatModel(config, ck); }
        catch { ck.Dispose(); throw; }
    }

    /// <summary>Every linear weight of the model (embedding and lm_head included once).</summary>
    public IEnumerable<Weight> Linears
    {
        get
        {
            yield return EmbedTokens;
            foreach (var l in Layers) foreach (var w in l.Linears) yield return w;
            if (!ReferenceEquals(LmHead, EmbedTokens)) yield return LmHead;
            if (Mtp is not null) foreach (var w in Mtp.Linears) yield return w;
        }
    }

    /// <summary>Runs B sequences of S tokens each (positions 0..S-1). ids: [B·S].</summary>
    public ForwardResult Forward(ReadOnlySpan<int> ids, int batch, int seq, ForwardOptions? options = null)
    {
        options ??= new ForwardOptions();
        var c = Config;
        if (batch <= 0 || seq <= 0) throw new ArgumentException($"batch ({batch}) and sequence length ({seq}) must be positive");
        if (ids.Length != batch * seq) throw new ArgumentException($"{ids.Length} token ids for a [{batch}, {seq}] batch");
        if (seq > c.MaxPositionEmbeddings)
            throw new ArgumentException($"sequence length {seq} exceeds max_position_embeddings {c.MaxPositionEmbeddings}");
        int t = batch * seq, hd = c.HiddenSize;
        var h = Embed(ids);
        var routing = new List<Routing>();
        var hiddens = new List<float[]>();
        var ws = _workspaces.Rent();
        AttentionStep attend = (mla, _, x, y, st) => mla.Forward(x, y, batch, seq, Rope, st);
        for (int li = 0; li < Layers.Length; li++)
        {
            Layers[li].Forward(h, t, attend, ws.Layer);
            if (options.KeepRouting) routing.Add(ws.Layer.Moe.ToRouting());
            if (options.KeepHiddenStates) hiddens.Add((float[])h.Clone());
        }
        FinalNorm(h, h, t, ws);
        _workspaces.Return(ws);
        float[] logits;
        if (options.AllLogits)
        {
            logits = new float[(long)t * c.VocabSize <= int.MaxValue ? t * c.VocabSize : throw new ArgumentException("batch too large for full logits")];
            Gemm.MatMul(h, LmHead, logits, t);
        }
        else
        {
            var last = new float[batch * hd];
            for (int b = 0; b < batch; b++) Array.Copy(h, ((b + 1) * seq - 1) * hd, last, b * hd, hd);
            logits = new float[batch * c.VocabSize];
            Gemm.MatMul(last, LmHead, logits, batch);
        }
        var res = new ForwardResult { Logits = logits, FinalHidden = h };
        res.Routing.AddRange(routing);
        res.HiddenAfterLayer.AddRange(hiddens);
        return res;
    }

    /// <summary>ids [T] -> h [T, H] (embedding rows widened to F32; no scaling).</summary>
    public float[] Embed(ReadOnlySpan<int> ids)
    {
        var h = new float[ids.Length * Config.HiddenSize];
        Embed(ids, h);
        return h;
    }

    /// <summary>ids [T] -> h [T, H], into <paramref name="h"/>.</summary>
    public void Embed(ReadOnlySpan<int> ids, Span<float> h)
    {
        int hd = Config.HiddenSize;
        for (int i = 0; i < ids.Length; i++)
        {
            int id = ids[i];
            if ((uint)id >= (uint)Config.VocabSize)
                throw new ArgumentOutOfRangeException(nameof(ids), $"token id {id} at position {i} is outside the vocabulary 0..{Config.VocabSize - 1}");
            EmbedTokens.DequantizeRow(id, h.Slice(i * hd, hd));
        }
    }

    /// <summary>Backward of <see cref="Embed(ReadOnlySpan{int}, Span{float})"/>: the rows of dh [T, H] scatter-add into the embedding gradient, in token order.</summary>
    public void EmbedBackward(ReadOnlySpan<int> ids, ReadOnlySpan<float> dh)
    {
        int hd = Config.HiddenSize;
        var de = _embed.Grad;
        for (int i = 0; i < ids.Length; i++)
        {
            var row = de.Slice(ids[i] * hd, hd);
            System.Numerics.Tensors.TensorPrimitives.Add(row, dh.Slice(i * hd, hd), row);
        }
    }

    /// <summary>The final RMSNorm: h [T, H] -> hf [T, H] (may be the same buffer); <paramref name="rstd"/> [T] keeps each row's inverse RMS for the backward.</summary>
    public void FinalNorm(ReadOnlySpan<float> h, Span<float> hf, Span<float> rstd, int t) =>
        OpsGrad.RmsNormForward(h, _finalNorm.Values, hf, rstd, t, Config.HiddenSize, (float)Config.RmsNormEps);

    void FinalNorm(ReadOnlySpan<float> h, Span<float> hf, int t, Workspace ws) => FinalNorm(h, hf, Buffers.Ensure(ref ws.Rstd, t), t);

    /// <summary>Backward of <see cref="FinalNorm(ReadOnlySpan{float}, Span{float}, Span{float}, int)"/>: dhf -> dh (written); the norm weight's gradient accumulates.</summary>
    public void FinalNormBackward(ReadOnlySpan<float> dhf, ReadOnlySpan<float> h, ReadOnlySpan<float> rstd, Span<float> dh, int t) =>
        OpsGrad.RmsNormBackward(dhf, h, _finalNorm.Values, rstd, dh, _finalNorm.Grad, t, Config.HiddenSize, 1f, accumulate: false);

    /// <summary>lm_head: hf [rows, H] -> logits [rows, V].</summary>
    public void LmHeadForward(ReadOnlySpan<float> hf, Span<float> logits, int rows) => Gemm.MatMul(hf, LmHead, logits, rows);

    /// <summary>Backward of <see cref="LmHeadForward"/>: dlogits [rows, V] -> dhf [rows, H] (written, or added with <paramref name="accumulate"/>); the weight's gradient accumulates.</summary>
    public void LmHeadBackward(ReadOnlySpan<float> dlogits, ReadOnlySpan<float> hf, Span<float> dhf, int rows, bool accumulate = false)
    {
        int v = Config.VocabSize, hd = Config.HiddenSize;
        GemmGrad.WeightGrad(dlogits, hf, _lmHead.Grad, rows, v, hd);
        GemmGrad.InputGrad(dlogits, _lmHead.Values, dhf, rows, v, hd, accumulate);
    }

    /// <summary>The lm_head as a parameter (the MTP head's training shares it).</summary>
    internal Param LmHeadParam => _lmHead;

    /// <summary>A KV cache for one sequence of up to <paramref name="capacity"/> tokens (main model: 2 sublayers per layer).</summary>
    public KvCache NewCache(int capacity) => new(Config, capacity, 2 * Config.NumLayers);

    /// <summary>
    /// Incremental forward of one sequence: runs <paramref name="tokens"/> at positions cache.Length.. and appends
    /// their latents to <paramref name="cache"/>. Returns logits for every new token (allLogits) or only the last,
    /// the final-norm hidden states of the new tokens, and each layer's routing.
    /// </summary>
    public StepResult ForwardCached(ReadOnlySpan<int> tokens, KvCache cache, bool allLogits = false, bool? absorbed = null) =>
        ForwardCached(tokens, cache, allLogits, absorbed, reuse: null);

    /// <summary>
    /// <see cref="ForwardCached(ReadOnlySpan{int}, KvCache, bool, bool?)"/> that overwrites <paramref name="reuse"/>, an
    /// earlier result of this call, when its shapes match (same token count and logit rows) and returns it: a decode loop
    /// that passes its previous step's result allocates nothing. Its arrays then hold the new step, so read the old one
    /// first. A null or mismatched <paramref name="reuse"/> gives a new result.
    /// </summary>
    public StepResult ForwardCached(ReadOnlySpan<int> tokens, KvCache cache, bool allLogits, bool? absorbed, StepResult? reuse)
    {
        var c = Config;
        int n = tokens.Length, hd = c.HiddenSize;
        if (n == 0) throw new ArgumentException("no tokens to run", nameof(tokens));
        if (cache.Sublayers != 2 * c.NumLayers) throw new ArgumentException("the cache does not belong to this model's main layers", nameof(cache));
        if (cache.Length + n > cache.Capacity)
            throw new InvalidOperationException($"context full: {cache.Length} cached + {n} new tokens exceed the KV cache capacity of {cache.Capacity}");
        int rows = allLogits ? n : 1;
        var res = Fits(reuse, n, rows) ? reuse! : new StepResult(new float[rows * c.VocabSize], new float[n * hd], NewRouting(n));
        var h = res.FinalHidden;
        Embed(tokens, h);
        var ws = _workspaces.Rent();
        ws.Cache = cache; ws.N = n; ws.Absorbed = absorbed; ws.Rope = Rope;
        for (int li = 0; li < Layers.Length; li++)
        {
            ws.LayerIndex = li;
            Layers[li].Forward(h, n, ws.Cached, ws.Layer);
            ws.Layer.Moe.CopyRouting(res.Routing[li]);
        }
        cache.Advance(n);
        FinalNorm(h, h, n, ws);
        ws.Clear();
        _workspaces.Return(ws);
        Gemm.MatMul(h.AsSpan((n - rows) * hd, rows * hd), LmHead, res.Logits, rows);
        return res;
    }

    /// <summary>Whether <paramref name="r"/> has the shapes of a step over <paramref name="n"/> tokens with <paramref name="rows"/> logit rows.</summary>
    bool Fits(StepResult? r, int n, int rows) =>
        r is not null && r.Logits.Length == rows * Config.VocabSize && r.FinalHidden.Length == n * Config.HiddenSize && RoutingFits(r.Routing, n);

    bool RoutingFits(Routing[] r, int tokens)
    {
        if (r.Length != Layers.Length) return false;
        foreach (var x in r) if (x.Tokens != tokens || x.K != Config.MoeTopK) return false;
        return true;
    }

    Routing[] NewRouting(int tokens)
    {
        var r = new Routing[Layers.Length];
        for (int i = 0; i < r.Length; i++) r[i] = new Routing(tokens, Config.MoeTopK);
        return r;
    }

    /// <summary>
    /// One forward over new tokens of several sequences at once (continuous batching): sequence i contributes
    /// tokens[i] at positions caches[i].Length.., and its cache is advanced. Dense projections, FFNs and the
    /// MoE run over all tokens together; attention runs per sequence. Returns, per sequence, the last new token's
    /// logits [V] and final hidden state [H], plus each layer's routing over all tokens (sequences back to back).
    /// </summary>
    public BatchStepResult ForwardBatch(IReadOnlyList<int[]> tokens, IReadOnlyList<KvCache> caches)
    {
        var c = Config;
        int hd = c.HiddenSize;
        var ws = _workspaces.Rent();
        var routing = NewRouting(Total(tokens));
        var h = RunBatch(tokens, caches, ws, null, routing);
        // Final norm and lm_head only for each sequence's last token.
        var last = new float[tokens.Count * hd];
        for (int i = 0, o = 0; i < tokens.Count; i++)
        {
            o += tokens[i].Length;
            FinalNorm(h.AsSpan((o - 1) * hd, hd), last.AsSpan(i * hd, hd), 1, ws);
        }
        _workspaces.Return(ws);
        var logits = new float[tokens.Count * c.VocabSize];
        Gemm.MatMul(last, LmHead, logits, tokens.Count);
        return new BatchStepResult(logits, last, routing);
    }

    /// <summary>
    /// <see cref="ForwardBatch"/> for a scheduler that mixes decode, speculative verification and prefill chunks in
    /// one step: sequence i gets logits for its last <paramref name="logitRows"/>[i] new tokens (0 for a prefill
    /// chunk that does not end its prompt, 1 for a decode step, 2 to verify an MTP draft), and the final-norm hidden
    /// state of every new token (the MTP head's input). The lm_head runs only over the rows asked for.
    /// <paramref name="reuse"/>, an earlier result of this call, is overwritten and returned when its shapes match
    /// (the same tokens per sequence and logit rows): a steady batched decode then allocates no results.
    /// </summary>
    public BatchRowsResult ForwardBatchRows(IReadOnlyList<int[]> tokens, IReadOnlyList<KvCache> caches, IReadOnlyList<int> logitRows, BatchRowsResult? reuse = null)
    {
        var c = Config;
        int hd = c.HiddenSize, seqs = tokens.Count;
        if (logitRows.Count != seqs) throw new ArgumentException("one logit-row count per sequence", nameof(logitRows));
        for (int i = 0; i < seqs; i++)
            if (logitRows[i] < 0 || logitRows[i] > tokens[i].Length)
                throw new ArgumentOutOfRangeException(nameof(logitRows), $"sequence {i}: {logitRows[i]} logit rows for {tokens[i].Length} new tokens");
        int t = Total(tokens), rows = 0;
        for (int i = 0; i < seqs; i++) rows += logitRows[i];
        var res = reuse is not null && reuse.TokenOffset.Length == seqs && reuse.FinalHidden.Length == t * hd
            && reuse.Logits.Length == rows * c.VocabSize && RoutingFits(reuse.Routing, t) && SameLayout(reuse, tokens, logitRows)
            ? reuse
            : new BatchRowsResult(new float[rows * c.VocabSize], new int[seqs], new float[t * hd], new int[seqs], NewRouting(t));
        var ws = _workspaces.Rent();
        var h = RunBatch(tokens, caches, ws, res.FinalHidden, res.Routing);
        FinalNorm(h, h, t, ws);
        var sel = Buffers.Ensure(ref ws.Selected, (long)rows * hd);
        for (int i = 0, o = 0, r = 0; i < seqs; o += tokens[i].Length, r += logitRows[i], i++)
        {
            res.TokenOffset[i] = o;
            res.LogitOffset[i] = r;
            h.AsSpan((o + tokens[i].Length - logitRows[i]) * hd, logitRows[i] * hd).CopyTo(sel.AsSpan(r * hd));
        }
        if (rows > 0) Gemm.MatMul(sel.AsSpan(0, rows * hd), LmHead, res.Logits, rows);
        _workspaces.Return(ws);
        return res;
    }

    static int Total(IReadOnlyList<int[]> tokens)
    {
        int t = 0;
        for (int i = 0; i < tokens.Count; i++) t += tokens[i].Length;
        return t;
    }

    /// <summary>Whether <paramref name="r"/>'s offsets are those of this batch (sequence i: its tokens and logit rows).</summary>
    static bool SameLayout(BatchRowsResult r, IReadOnlyList<int[]> tokens, IReadOnlyList<int> logitRows)
    {
        for (int i = 0, o = 0, rows = 0; i < tokens.Count; o += tokens[i].Length, rows += logitRows[i], i++)
            if (r.TokenOffset[i] != o || r.LogitOffset[i] != rows) return false;
        return true;
    }

    /// <summary>
    /// Validates a batch, runs every layer over it (into <paramref name="h"/> [T, H], or a new array when null), fills
    /// <paramref name="routing"/> and advances the caches: h before the final norm.
    /// </summary>
    float[] RunBatch(IReadOnlyList<int[]> tokens, IReadOnlyList<KvCache> caches, Workspace ws, float[]? h, Routing[] routing)
    {
        var c = Config;
        if (tokens.Count != caches.Count) throw new ArgumentException("one cache per sequence");
        if (tokens.Count == 0) throw new ArgumentException("no sequences to run");
        int t = 0;
        var counts = Buffers.Ensure(ref ws.Counts, tokens.Count);
        for (int i = 0; i < tokens.Count; i++)
        {
            if (tokens[i].Length == 0) throw new ArgumentException($"sequence {i} has no new tokens");
            if (caches[i].Sublayers != 2 * c.NumLayers) throw new ArgumentException($"cache {i} does not belong to this model's main layers");
            if (caches[i].Length + tokens[i].Length > caches[i].Capacity)
                throw new InvalidOperationException($"context full for sequence {i}: {caches[i].Length} cached + {tokens[i].Length} new tokens exceed the KV cache capacity of {caches[i].Capacity}");
            for (int j = 0; j < i; j++)
                if (ReferenceEquals(caches[j], caches[i])) throw new ArgumentException($"sequence {i} shares its cache with another sequence");
            counts[i] = tokens[i].Length;
            t += counts[i];
        }
        var all = Buffers.Ensure(ref ws.Ids, t);
        for (int i = 0, o = 0; i < tokens.Count; o += counts[i], i++) tokens[i].CopyTo(all, o);
        h ??= new float[t * c.HiddenSize];
        Embed(all.AsSpan(0, t), h);
        ws.Caches = caches; ws.Rope = Rope;
        for (int li = 0; li < Layers.Length; li++)
        {
            ws.LayerIndex = li;
            Layers[li].Forward(h, t, ws.Batched, ws.Layer);
            ws.Layer.Moe.CopyRouting(routing[li]);
        }
        ws.Clear();
        for (int i = 0; i < caches.Count; i++) caches[i].Advance(counts[i]);
        return h;
    }

    /// <summary>
    /// Prefills a prompt in chunks of at most <paramref name="chunk"/> tokens (bounding activation memory), returning
    /// the last token's logits and the final-norm hidden states of every prompt token [n, H].
    /// </summary>
    public StepResult Prefill(ReadOnlySpan<int> tokens, KvCache cache, int chunk = 512)
    {
        if (chunk < 1) throw new ArgumentOutOfRangeException(nameof(chunk), chunk, "chunk must be >= 1");
        if (tokens.Length <= chunk) return ForwardCached(tokens, cache);
        var hidden = new float[tokens.Length * Config.HiddenSize];
        StepResult? last = null;
        for (int s = 0; s < tokens.Length; s += chunk)
        {
            int n = Math.Min(chunk, tokens.Length - s);
            last = ForwardCached(tokens.Slice(s, n), cache);
            last.FinalHidden.CopyTo(hidden, s * Config.HiddenSize);
        }
        return last! with { FinalHidden = hidden };
    }

    public void Dispose() => _checkpoint?.Dispose();
}
