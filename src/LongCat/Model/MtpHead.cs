using System.Numerics.Tensors;
using LongCat.Config;
using LongCat.Kernels;

namespace LongCat.Model;

/// <summary>
/// The multi-token-prediction head (one dense layer): the speculative-decoding draft model, and in training an extra
/// objective, forward and backward:
/// <code>
/// e = enorm(embed(token_{t+1})); g = hnorm(h_t)      // h_t: main hidden after the final norm
/// x0 = eh_proj([e; g])                                // [H, 2H], embedding half first
/// x1 = x0 + MLA(input_layernorm(x0)); x2 = x1 + FFN(post_attention_layernorm(x1))
/// logits_{t+2} = lm_head(mtp.norm(x2))                // the main lm_head
/// </code>
/// The pair (h_t, token_{t+1}) sits at position t for RoPE and in the head's own one-sublayer KV cache (inference), or
/// at position t of the head's own causal sequence t = 0..S-2 (training). Gradients reach the main model through h_t
/// (hnorm) and the shared embedding and lm_head.
/// </summary>
public sealed class MtpHead
{
    readonly LongCatConfig _c;
    readonly Param _embed, _enorm, _hnorm, _eh, _inNorm, _postNorm, _norm;
    readonly WorkspacePool<MtpState> _workspaces = new(() => new MtpState(forBackward: false));
    public const string Prefix = "model.mtp.";
    public Weight Embed => _embed.Weight;   // own or the main embedding
    public bool OwnEmbedding { get; }
    public Weight EhProj => _eh.Weight;     // [H, 2H]
    public Mla Attention { get; }
    public Ffn Mlp { get; }

    /// <summary>True when the parameters include MTP weights.</summary>
    public static bool Present(IParameterSource p) => p.Contains(Prefix + "layers.0.eh_proj.weight");

    public MtpHead(IParameterSource p, Param mainEmbedding)
    {
        var c = _c = p.Config;
        int h = c.HiddenSize;
        var pre = Prefix + "layers.0.";
        OwnEmbedding = p.Contains(Prefix + "embed_tokens.weight");
        _embed = OwnEmbedding ? p.Linear(Prefix + "embed_tokens.weight", c.VocabSize, h) : mainEmbedding;
        _enorm = p.Vector(pre + "enorm.m.weight", h);
        _hnorm = p.Vector(pre + "hnorm.m.weight", h);
        _eh = p.Linear(pre + "eh_proj.weight", h, 2 * h);
        _inNorm = p.Vector(pre + "input_layernorm.weight", h);
        _postNorm = p.Vector(pre + "post_attention_layernorm.weight", h);
        Attention = new Mla(p, pre + "self_attn.");
        Mlp = Ffn.Load(p, pre + "transformer_layer.mlp.", h, c.FfnHiddenSize);
        _norm = p.Vector(Prefix + "norm.weight", h);
    }

    public IEnumerable<Weight> Linears => (OwnEmbedding ? new[] { Embed } : []).Concat([EhProj]).Concat(Attention.Linears).Concat(Mlp.Linears);

    public KvCache NewCache(int capacity) => new(_c, capacity, 1);

    /// <summary>
    /// The default draft vocabulary for a vocabulary of <paramref name="vocab"/> tokens: the first max(1024, V/4)
    /// token ids (all of a vocabulary of at most 1024). See <see cref="Inference.GenerationOptions.DraftVocabulary"/>.
    /// </summary>
    public static int DefaultDraftVocabulary(int vocab) => Math.Min(vocab, Math.Max(1024, vocab / 4));

    /// <summary>
    /// n pairs: mainHidden [n, H] (h_t after the final norm) and nextTokens [n] (token_{t+1}) at positions
    /// cache.Length.. -> draft logits [n or 1, lmHead.Rows] for token_{t+2}. Appends to the head's cache.
    /// <paramref name="lmHead"/> is the main lm_head, or a view of its first rows (<see cref="Weight.FirstRows"/>):
    /// a draft over the first token ids only.
    /// </summary>
    public float[] Forward(ReadOnlySpan<float> mainHidden, ReadOnlySpan<int> nextTokens, KvCache cache, Weight lmHead, Rope rope, bool allLogits = false) =>
        Forward(mainHidden, nextTokens, cache, lmHead, rope, allLogits, reuse: null);

    /// <summary>
    /// <see cref="Forward(ReadOnlySpan{float}, ReadOnlySpan{int}, KvCache, Weight, Rope, bool)"/> writing the logits into
    /// <paramref name="reuse"/> when it holds exactly rows·lmHead.Rows floats (a draft loop passes its previous logits
    /// and allocates nothing), else into a new array.
    /// </summary>
    public float[] Forward(ReadOnlySpan<float> mainHidden, ReadOnlySpan<int> nextTokens, KvCache cache, Weight lmHead, Rope rope, bool allLogits, float[]? reuse)
    {
        int n = nextTokens.Length;
        CheckLmHead(lmHead);
        var s = _workspaces.Rent();
        Inputs(mainHidden, nextTokens, s);
        s.Cache = cache; s.Rope = rope; s.Steps = n;
        var x = Body(n, s.CachedStep ??= CachedStep(s), s);
        s.Cache = null;
        cache.Advance(n);
        int rows = allLogits ? n : 1;
        int v = lmHead.Rows;
        var logits = reuse is not null && reuse.Length == rows * v ? reuse : new float[rows * v];
        Logits(x, n - rows, rows, lmHead, s, logits);
        _workspaces.Return(s);
        return logits;
    }

    void CheckLmHead(Weight lmHead)
    {
        if (lmHead.Cols != _c.HiddenSize || lmHead.Rows > _c.VocabSize)
            throw new ArgumentException($"{lmHead.Name}: [{lmHead.Rows}, {lmHead.Cols}] is not (the first rows of) an lm_head [{_c.VocabSize}, {_c.HiddenSize}]", nameof(lmHead));
    }

    /// <summary>The cached attention step of a workspace, bound once to the fields it reads.</summary>
    static AttentionStep CachedStep(MtpState s) => (mla, _, a, y, st) => mla.ForwardCached(a, y, s.Steps, s.Cache!, 0, s.Rope!, st);

    /// <summary>
    /// The draft step of several sequences in one forward (continuous batching): sequence i feeds
    /// nextTokens[i].Length pairs, its rows of mainHidden [T, H] back to back, at positions caches[i].Length..
    /// -> draft logits [S, lmHead.Rows], one row per sequence (its last pair). Appends to every head cache.
    /// </summary>
    public float[] ForwardBatch(ReadOnlySpan<float> mainHidden, IReadOnlyList<int[]> nextTokens, IReadOnlyList<KvCache> caches, Weight lmHead, Rope rope)
    {
        if (nextTokens.Count != caches.Count || nextTokens.Count == 0) throw new ArgumentException("one head cache per sequence, at least one sequence");
        CheckLmHead(lmHead);
        var counts = new int[nextTokens.Count];
        int t = 0;
        for (int i = 0; i < counts.Length; i++)
        {
            if (nextTokens[i].Length == 0) throw new ArgumentException($"sequence {i} has no draft inputs");
            if (caches[i].Sublayers != 1) throw new ArgumentException($"cache {i} is not an MTP head cache");
            counts[i] = nextTokens[i].Length;
            t += counts[i];
        }
        var flat = new int[t];
        for (int i = 0, o = 0; i < counts.Length; o += counts[i], i++) nextTokens[i].CopyTo(flat, o);
        var s = _workspaces.Rent();
        Inputs(mainHidden, flat, s);
        var x = Body(t, (mla, _, a, y, st) => mla.ForwardCachedBatch(a, y, caches, counts, 0, rope, st), s);
        for (int i = 0; i < caches.Count; i++) caches[i].Advance(counts[i]);
        var c = _c;
        int hd = c.HiddenSize;
        var last = new float[counts.Length * hd];
        for (int i = 0, o = 0; i < counts.Length; i++) { o += counts[i]; x.AsSpan((o - 1) * hd, hd).CopyTo(last.AsSpan(i * hd)); }
        var logits = new float[counts.Length * lmHead.Rows];
        Logits(last, 0, counts.Length, lmHead, s, logits);
        _workspaces.Return(s);
        return logits;
    }

    /// <summary>Copies n pairs into the state: token_{t+1} ids (checked) and h_t rows.</summary>
    void Inputs(ReadOnlySpan<float> mainHidden, ReadOnlySpan<int> nextTokens, MtpState s)
    {
        int n = nextTokens.Length, hd = _c.HiddenSize;
        if (mainHidden.Length != n * hd) throw new ArgumentException($"{mainHidden.Length} hidden values for {n} tokens");
        for (int i = 0; i < n; i++)
            if ((uint)nextTokens[i] >= (uint)_c.VocabSize) throw new ArgumentOutOfRangeException(nameof(nextTokens), $"token id {nextTokens[i]} is outside the vocabulary");
        nextTokens.CopyTo(Buffers.Ensure(ref s.NextIds, n));
        mainHidden.CopyTo(Buffers.Ensure(ref s.GIn, (long)n * hd));
    }

    /// <summary>
    /// The head's layer over the n pairs in <paramref name="s"/> (NextIds, GIn): embedding + hidden fusion, attention
    /// (via <paramref name="attend"/>) and FFN -> x2 [n, H] before mtp.norm (a buffer of the state).
    /// </summary>
    float[] Body(int n, AttentionStep attend, MtpState s)
    {
        var c = _c;
        int hd = c.HiddenSize, nh = n * hd;
        float eps = (float)c.RmsNormEps;
        var nextIds = s.NextIds!;
        var eIn = Buffers.Ensure(ref s.EIn, nh);
        var rE = Buffers.Ensure(ref s.RE, n); var rG = Buffers.Ensure(ref s.RG, n);
        var cat = Buffers.Ensure(ref s.Cat, 2L * nh);
        var x0 = Buffers.Ensure(ref s.X0, nh); var a = Buffers.Ensure(ref s.A, nh);
        var x1 = Buffers.Ensure(ref s.X1, nh); var b = Buffers.Ensure(ref s.B, nh);
        var x2 = Buffers.Ensure(ref s.X2, nh);
        var r0 = Buffers.Ensure(ref s.R0, n); var r1 = Buffers.Ensure(ref s.R1, n);
        var y = Buffers.Ensure(ref s.Y, nh);

        for (int r = 0; r < n; r++) Embed.DequantizeRow(nextIds[r], eIn.AsSpan(r * hd, hd));
        var en = a; // scratch: [n, H] normalized half, then copied into cat
        OpsGrad.RmsNormForward(eIn, _enorm.Values, en, rE, n, hd, eps);
        for (int r = 0; r < n; r++) Array.Copy(en, (long)r * hd, cat, (long)r * 2 * hd, hd);
        OpsGrad.RmsNormForward(s.GIn, _hnorm.Values, en, rG, n, hd, eps);
        for (int r = 0; r < n; r++) Array.Copy(en, (long)r * hd, cat, (long)r * 2 * hd + hd, hd);
        Gemm.MatMul(cat, EhProj, x0, n);

        OpsGrad.RmsNormForward(x0, _inNorm.Values, a, r0, n, hd, eps);
        attend(Attention, 0, a, y, s.Attention);
        TensorPrimitives.Add(x0.AsSpan(0, nh), y.AsSpan(0, nh), x1.AsSpan(0, nh));
        OpsGrad.RmsNormForward(x1, _postNorm.Values, b, r1, n, hd, eps);
        Mlp.Forward(b, y, n, s.Mlp);
        TensorPrimitives.Add(x1.AsSpan(0, nh), y.AsSpan(0, nh), x2.AsSpan(0, nh));
        return x2;
    }

    /// <summary>mtp.norm then the main lm_head over rows [first, first+rows) of x [*, H] -> logits [rows, V].</summary>
    void Logits(float[] x, int first, int rows, Weight lmHead, MtpState s, float[] logits)
    {
        var c = _c;
        int hd = c.HiddenSize;
        var xf = Buffers.Ensure(ref s.Xf, (long)rows * hd);
        OpsGrad.RmsNormForward(x.AsSpan(first * hd, rows * hd), _norm.Values, xf, Buffers.Ensure(ref s.Rf, rows), rows, hd, (float)c.RmsNormEps);
        Gemm.MatMul(xf, lmHead, logits, rows);
    }

    /// <summary>
    /// Training: hf [B·S, H] (main hidden after the final norm), ids [B·S] -> the unweighted mean cross-entropy of
    /// token_{t+2} over B·(S-2) positions (0 when S &lt; 3). The state keeps the logits replaced by their gradient,
    /// scaled by <paramref name="weight"/>, for <see cref="Backward"/>.
    /// </summary>
    public double Forward(LongCatModel main, float[] hf, ReadOnlySpan<int> ids, int batch, int seq, double weight, MtpState s)
    {
        var c = _c;
        int hd = c.HiddenSize, v = c.VocabSize, pairs = seq - 1, n = batch * pairs;
        s.Batch = batch; s.Pairs = pairs; s.N = n;
        int positions = batch * (seq - 2);
        if (positions <= 0) { s.N = 0; return 0; }
        var nextIds = Buffers.Ensure(ref s.NextIds, n);
        var targets = Buffers.Ensure(ref s.Targets, n);
        var gIn = Buffers.Ensure(ref s.GIn, (long)n * hd);
        for (int bi = 0; bi < batch; bi++)
            for (int i = 0; i < pairs; i++)
            {
                int r = bi * pairs + i, src = bi * seq + i;
                nextIds[r] = ids[src + 1];
                targets[r] = i + 2 < seq ? ids[src + 2] : -1;
                Array.Copy(hf, (long)src * hd, gIn, (long)r * hd, hd);
            }
        s.Rope = main.Rope;
        var x2 = Body(n, s.TrainingStep ??= (mla, _, a, y, st) => mla.Forward(a, y, s.Batch, s.Pairs, s.Rope!, st), s);
        var xf = Buffers.Ensure(ref s.Xf, (long)n * hd);
        OpsGrad.RmsNormForward(x2, _norm.Values, xf, Buffers.Ensure(ref s.Rf, n), n, hd, (float)c.RmsNormEps);
        var logits = Buffers.Ensure(ref s.Logits, (long)n * v);
        var rowLoss = Buffers.Ensure(ref s.RowLoss, n);
        main.LmHeadForward(xf, logits, n);
        OpsGrad.CrossEntropy(logits, targets, rowLoss, n, v, (float)(weight / positions));
        double sum = 0;
        for (int r = 0; r < n; r++) sum += rowLoss[r];
        return sum / positions;
    }

    /// <summary>Backward of the training forward kept in <paramref name="s"/>: adds to dhf [B·S, H] and the parameter gradients.</summary>
    public void Backward(LongCatModel main, float[] dhf, int seq, MtpState s)
    {
        int n = s.N;
        if (n == 0) return;
        var c = _c;
        int hd = c.HiddenSize, batch = s.Batch, pairs = s.Pairs;
        var dxf = Buffers.Ensure(ref s.Dxf, (long)n * hd);
        var dx = Buffers.Ensure(ref s.Dx, (long)n * hd);
        var dn = Buffers.Ensure(ref s.Dn, (long)n * hd);
        var dcat = Buffers.Ensure(ref s.Dcat, (long)n * 2 * hd);
        var dsplit = Buffers.Ensure(ref s.Dsplit, (long)n * hd);
        var dIn = Buffers.Ensure(ref s.DIn, (long)n * hd);

        main.LmHeadBackward(s.Logits, s.Xf, dxf, n);
        OpsGrad.RmsNormBackward(dxf, s.X2, _norm.Values, s.Rf, dx, _norm.Grad, n, hd, 1f, accumulate: false);      // dx = d x2
        Mlp.Backward(dx, s.B, dn, n, accumulate: false, s.Mlp);
        OpsGrad.RmsNormBackward(dn, s.X1, _postNorm.Values, s.R1, dx, _postNorm.Grad, n, hd, 1f, accumulate: true); // dx = d x1
        Attention.Backward(dx, dn, accumulate: false, s.Attention);
        OpsGrad.RmsNormBackward(dn, s.X0, _inNorm.Values, s.R0, dx, _inNorm.Grad, n, hd, 1f, accumulate: true);    // dx = d x0
        GemmGrad.WeightGrad(dx, s.Cat, _eh.Grad, n, hd, 2 * hd);
        GemmGrad.InputGrad(dx, _eh.Values, dcat, n, hd, 2 * hd);

        // Embedding half: enorm backward, then scatter into the embedding rows of token_{t+1} (ascending rows).
        for (int r = 0; r < n; r++) Array.Copy(dcat, (long)r * 2 * hd, dsplit, (long)r * hd, hd);
        OpsGrad.RmsNormBackward(dsplit, s.EIn, _enorm.Values, s.RE, dIn, _enorm.Grad, n, hd, 1f, accumulate: false);
        var de = _embed.Grad;
        for (int r = 0; r < n; r++)
        {
            var row = de.Slice(s.NextIds![r] * hd, hd);
            TensorPrimitives.Add(row, dIn.AsSpan(r * hd, hd), row);
        }
        // Hidden half: hnorm backward, then into the main model's final-norm output h_t.
        for (int r = 0; r < n; r++) Array.Copy(dcat, (long)r * 2 * hd + hd, dsplit, (long)r * hd, hd);
        OpsGrad.RmsNormBackward(dsplit, s.GIn, _hnorm.Values, s.RG, dIn, _hnorm.Grad, n, hd, 1f, accumulate: false);
        for (int bi = 0; bi < batch; bi++)
            for (int i = 0; i < pairs; i++)
            {
                var dst = dhf.AsSpan((bi * seq + i) * hd, hd);
                TensorPrimitives.Add(dst, dIn.AsSpan((bi * pairs + i) * hd, hd), dst);
            }
    }
}

/// <summary>The MTP head's forward state (inputs, every intermediate its backward reads, the logits) and backward scratch.</summary>
public sealed class MtpState(bool forBackward)
{
    internal int N, Batch, Pairs, Steps;
    internal KvCache? Cache;
    internal Rope? Rope;
    /// <summary>The attention steps, bound once to this state's fields (no delegate per call).</summary>
    internal AttentionStep? CachedStep, TrainingStep;
    internal int[]? NextIds, Targets;
    internal float[]? GIn, EIn, RE, RG, Cat, X0, A, X1, B, X2, Xf, R0, R1, Rf, Y, Logits, RowLoss;
    internal float[]? Dxf, Dx, Dn, Dcat, Dsplit, DIn;
    public MlaState Attention { get; } = new(forBackward);
    public FfnActivations Mlp { get; } = new();
}
