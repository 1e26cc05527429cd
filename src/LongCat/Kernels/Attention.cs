using System.Diagnostics;
using static LongCat.Kernels.AttentionKernels;
using static LongCat.Kernels.Gemm;

namespace LongCat.Kernels;

/// <summary>
/// Causal multi-head latent attention: one flash-attention style forward serving inference prefill (full form: per-head
/// keys from kv_b_proj), the training forward (<see cref="AttentionGrad"/>, whose backward sits beside it) and decode
/// over the latent cache (absorbed form: the heads share 576-wide latent keys).
/// <para>The forward core takes a tile of up to <see cref="QueryTile"/> query rows, packs them transposed (a vector lane
/// is a query row), and sweeps key tiles of <see cref="KeyTile"/> keys anchored at absolute key 0: scores Sᵀ = K·Qᵀ and
/// the output accumulator Oᵀ += Vᵀ·P are strided matrix multiply-accumulates (<see cref="AttentionKernels.Mac"/>,
/// AVX-512 or AVX2 register tiles), the softmax is online (running max and sum per row, rescaling Oᵀ when the max moves)
/// with a vectorised exp2. Scratch is per thread and bounded by the tile sizes: no [T, T] scores, and the inference
/// entry points never expand more than a bounded block of keys at a time.</para>
/// <para>Determinism: a row's result is one fixed sequence of fp32 operations that depends only on its query, its keys
/// and its last visible key, never on the tile it shares, the instruction set, the thread count or the batch. So the
/// training forward and inference prefill give the same bits, a prompt prefilled in chunks gives the same bits as in
/// one call, and a decode step gives the same bits whether it verifies one token or several.</para>
/// </summary>
public static unsafe class Attention
{
    /// <summary>Query rows per task (columns of the packed Qᵀ).</summary>
    internal const int QueryTile = 64;

    /// <summary>Keys per online-softmax step. Tiles start at multiples of it from key 0, so changing it changes low bits.</summary>
    internal const int KeyTile = 64;

    /// <summary>The expanded keys of <see cref="CausalLatent"/> are made at most this many bytes at a time.</summary>
    const long MaxKeyBlockBytes = 32L << 20;

    /// <summary>Tests: expand at most this many keys per block in <see cref="CausalLatent"/> (a multiple of <see cref="KeyTile"/>).</summary>
    internal static int? KeyBlockOverride { get; set; }

    /// <summary>Absorbed-form projections below this many multiply-adds run on the calling thread.</summary>
    const long SerialMacs = 1L << 18;

    /// <summary>Optional profiling hook (benchmarks): called after every attention call (and every <see cref="AttentionGrad.Backward"/>) with the elapsed Stopwatch ticks.</summary>
    public static Action<long>? Observer { get; set; }

    const float Log2E = 1.4426950408889634f;

    // ---------------- the forward core ----------------

    /// <summary>Query rows of one task group: row r has its query at Q + r·QStride ([D1 + D2] floats), its output at
    /// O + r·OStride ([Dv]), optional softmax statistics at M/L + r·StatStride, and sees keys 0..Limit0 + r / PerLimit.</summary>
    internal struct RowSet
    {
        public float* Q; public nint QStride;
        public float* O; public nint OStride;
        public float* M, L; public nint StatStride;
        public int Limit0, PerLimit;
        public readonly int Limit(int r) => Limit0 + r / PerLimit;
    }

    /// <summary>Keys: key j is [K1 + j·S1 (D1 floats)] ++ [K2 + j·S2 (D2 floats)], its value V + j·SV (Dv floats); absolute
    /// indices, of which [Begin, End) are available in this pass (Begin a multiple of <see cref="KeyTile"/>).</summary>
    internal struct KeySet
    {
        public float* K1; public nint S1; public int D1;
        public float* K2; public nint S2; public int D2;
        public float* V; public nint SV; public int Dv;
        public int Begin, End;
    }

    [ThreadStatic] static float[]? t_tile;

    internal static float[] Scratch(ref float[]? a, long n) =>
        a is not null && a.Length >= n ? a : a = GC.AllocateUninitializedArray<float>((int)Math.Max(n, 1024), pinned: true);

    /// <summary>
    /// Rows [r0, r1) of <paramref name="rows"/> (every one with Limit ≥ keys.Begin) against keys [keys.Begin, keys.End).
    /// keys.Begin = 0 starts the softmax state; otherwise it is resumed from O (unnormalised), M and L. A row whose last
    /// key lies in this pass is finished (O normalised; M, L = its max score and sum, if kept); the others keep state.
    /// </summary>
    internal static void ForwardTile(KernelIsa isa, in RowSet rows, int r0, int r1, in KeySet keys, float c)
    {
        int nr = r1 - r0, cols = (nr + 15) & ~15, d1 = keys.D1, dq = keys.D1 + keys.D2, dv = keys.Dv;
        bool simd = isa != KernelIsa.Scalar, resume = keys.Begin > 0;
        var buf = Scratch(ref t_tile, (long)cols * (dq + KeyTile + dv + 4));
        fixed (float* pb = buf)
        {
            float* qt = pb, s = qt + dq * cols, ot = s + KeyTile * cols, m = ot + dv * cols, l = m + cols, alpha = l + cols, lim = alpha + cols;
            for (int i = 0; i < cols; i++)
            {
                bool valid = i < nr;
                int r = r0 + (valid ? i : nr - 1);
                lim[i] = rows.Limit(r);
                float* q = rows.Q + r * rows.QStride;
                for (int d = 0; d < dq; d++) qt[d * cols + i] = valid ? q[d] : 0f;
                if (resume && valid)
                {
                    m[i] = rows.M[r * rows.StatStride];
                    l[i] = rows.L[r * rows.StatStride];
                    float* o = rows.O + r * rows.OStride;
                    for (int d = 0; d < dv; d++) ot[d * cols + i] = o[d];
                }
                else
                {
                    m[i] = float.NegativeInfinity; l[i] = 0f;
                    for (int d = 0; d < dv; d++) ot[d * cols + i] = 0f;
                }
            }
            int end = Math.Min(keys.End, rows.Limit(r1 - 1) + 1);
            for (int j0 = keys.Begin; j0 < end; j0 += KeyTile)
            {
                int nk = Math.Min(KeyTile, end - j0);
                Mac(isa, keys.K1 + j0 * keys.S1, keys.S1, 1, qt, cols, s, cols, nk, d1, cols, acc: false);
                Mac(isa, keys.K2 + j0 * keys.S2, keys.S2, 1, qt + d1 * cols, cols, s, cols, nk, keys.D2, cols, acc: true);
                if (lim[0] < j0 + nk - 1) Mask(simd, s, nk, cols, cols, j0, lim);
                if (OnlineSoftmax(simd, s, nk, cols, cols, m, l, alpha, c)) Rescale(simd, ot, dv, cols, cols, alpha);
                Mac(isa, keys.V + j0 * keys.SV, 1, keys.SV, s, cols, ot, cols, dv, nk, cols, acc: true);
            }
            for (int i = 0; i < nr; i++)
            {
                int r = r0 + i;
                float* o = rows.O + r * rows.OStride;
                if (lim[i] < keys.End) { float li = l[i]; for (int d = 0; d < dv; d++) o[d] = ot[d * cols + i] / li; }
                else for (int d = 0; d < dv; d++) o[d] = ot[d * cols + i];
                if (rows.M != null) { rows.M[r * rows.StatStride] = m[i]; rows.L[r * rows.StatStride] = l[i]; }
            }
        }
    }

    // ---------------- full form (per-head keys) ----------------

    /// <summary>
    /// Full form. For each of B sequences: q [qLen, nh, dn+dr] (queries at positions qStart..qStart+qLen-1),
    /// kvb [kvLen, nh, dn+dv] (k_nope then v), krope [kvLen, dr] -> out [qLen, nh, dv]. Query i attends to keys
    /// 0..qStart+i: softmax((q_nope·k_nope + q_rope·k_rope)·scale)·v.
    /// </summary>
    public static void Causal(ReadOnlySpan<float> q, ReadOnlySpan<float> kvb, ReadOnlySpan<float> krope, Span<float> output, int batch, int qLen, int kvLen, int qStart,
        int nh, int dn, int dr, int dv, float scale) =>
        Causal(q, kvb, krope, output, default, batch, qLen, kvLen, qStart, nh, dn, dr, dv, scale);

    /// <summary><see cref="Causal(ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, Span{float}, int, int, int, int, int, int, int, int, float)"/>,
    /// also keeping each row's max score and softmax sum in <paramref name="stats"/> ([2, B·qLen, nh]) when it is not empty.</summary>
    internal static void Causal(ReadOnlySpan<float> q, ReadOnlySpan<float> kvb, ReadOnlySpan<float> krope, Span<float> output, Span<float> stats,
        int batch, int qLen, int kvLen, int qStart, int nh, int dn, int dr, int dv, float scale)
    {
        int qd = dn + dr, kvbw = dn + dv;
        if (batch < 0 || qLen < 0 || nh < 1 || dn < 0 || dr < 0 || dv < 1) throw new ArgumentException("attention: bad shape");
        if (qStart < 0 || qStart + qLen > kvLen) throw new ArgumentException($"attention: queries at {qStart}..{qStart + qLen - 1} need keys beyond kvLen {kvLen}");
        long tq = (long)batch * qLen, tk = (long)batch * kvLen;
        Need(q, tq * nh * qd, "q", "[B·qLen, nh, dn+dr]");
        Need(kvb, tk * nh * kvbw, "kvb", "[B·kvLen, nh, dn+dv]");
        Need(krope, tk * dr, "krope", "[B·kvLen, dr]");
        Need(output, tq * nh * dv, "the output", "[B·qLen, nh, dv]");
        if (!stats.IsEmpty) Need(stats, 2 * tq * nh, "stats", "[2, B·qLen, nh]");
        if (tq == 0) return;
        long t0 = Stopwatch.GetTimestamp();
        var isa = Gemm.Isa;
        float c = scale * Log2E;
        int tiles = (qLen + QueryTile - 1) / QueryTile, groups = batch * nh;
        fixed (float* pq = q, pkv = kvb, pkr = krope, po = output, ps = stats)
        {
            float* fq = pq, fkv = pkv, fkr = pkr, fo = po, fs = ps;
            // Heaviest (last) query tiles first, so the causal imbalance does not leave a thread idle at the end.
            var st = new CausalTasks
            {
                Q = fq, Kv = fkv, Kr = fkr, O = fo, S = fs, Tq = tq, Tiles = tiles, Groups = groups, Nh = nh, QLen = qLen, KvLen = kvLen,
                QStart = qStart, Dn = dn, Dr = dr, Dv = dv, C = c, Isa = isa,
            };
            Parallelism.For(tiles * groups, st, static (s, task) =>
            {
                int nh = s.Nh, qd = s.Dn + s.Dr, kvbw = s.Dn + s.Dv;
                int tile = s.Tiles - 1 - task / s.Groups, g = task % s.Groups, b = g / nh, h = g % nh;
                long row0 = (long)b * s.QLen * nh + h, key0 = (long)b * s.KvLen;
                var rows = new RowSet
                {
                    Q = s.Q + row0 * qd, QStride = nh * qd, O = s.O + row0 * s.Dv, OStride = nh * s.Dv,
                    M = s.S == null ? null : s.S + row0, L = s.S == null ? null : s.S + s.Tq * nh + row0, StatStride = nh,
                    Limit0 = s.QStart, PerLimit = 1,
                };
                var keys = new KeySet
                {
                    K1 = s.Kv + (key0 * nh + h) * kvbw, S1 = nh * kvbw, D1 = s.Dn,
                    K2 = s.Kr + key0 * s.Dr, S2 = s.Dr, D2 = s.Dr,
                    V = s.Kv + (key0 * nh + h) * kvbw + s.Dn, SV = nh * kvbw, Dv = s.Dv,
                    Begin = 0, End = s.KvLen,
                };
                ForwardTile(s.Isa, rows, tile * QueryTile, Math.Min(s.QLen, (tile + 1) * QueryTile), keys, s.C);
            });
        }
        Observer?.Invoke(Stopwatch.GetTimestamp() - t0);
    }

    /// <summary>What the tasks of <see cref="Causal(ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, Span{float}, Span{float}, int, int, int, int, int, int, int, int, float)"/> read (no closure per call).</summary>
    struct CausalTasks
    {
        public float* Q, Kv, Kr, O, S;
        public long Tq;
        public int Tiles, Groups, Nh, QLen, KvLen, QStart, Dn, Dr, Dv;
        public float C;
        public Gemm.KernelIsa Isa;
    }

    /// <summary>What the tasks of <see cref="CausalLatent"/> and <see cref="Absorbed"/> read (no closure per call).</summary>
    struct LatentTasks
    {
        public float* Q, Kv, Kr, O, St, Uk, Uv, Qa, Ol;
        public int Tiles, Nh, N, Start, First, E0, Kb0, Kb1, Dn, Dr, Dv, Rkv, RowCount;
        public float C;
        public Gemm.KernelIsa Isa;
    }

    [ThreadStatic] static float[]? t_few;
    [ThreadStatic] static float[]? t_kvb;
    [ThreadStatic] static float[]? t_state;

    /// <summary>
    /// Full form straight from the latent cache of one sequence: q [n, nh, dn+dr] at positions start..start+n-1 attend to
    /// latent [≥start+n, r_kv] / ropeKey [≥start+n, dr] (the new tokens' already written) -> out [n, nh, dv]. The cached
    /// latents are expanded through kv_b_proj a bounded block of keys at a time (at most 32 MiB, reused), with the
    /// online softmax carried across blocks, so a long context never allocates [T, nh, dn+dv]. Same bits as
    /// <see cref="Causal(ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, Span{float}, int, int, int, int, int, int, int, int, float)"/>
    /// over the expanded keys, whatever the block size.
    /// </summary>
    public static void CausalLatent(ReadOnlySpan<float> q, ReadOnlySpan<float> latent, ReadOnlySpan<float> ropeKey, Weight kvB, Span<float> output,
        int n, int start, int nh, int dn, int dr, int dv, int rkv, float scale)
    {
        int qd = dn + dr, kvbw = dn + dv, total = start + n;
        if (n < 0 || start < 0 || nh < 1 || dv < 1) throw new ArgumentException("attention: bad shape");
        if (kvB.Rows != nh * kvbw || kvB.Cols != rkv) throw new ArgumentException($"kv_b_proj is [{kvB.Rows}, {kvB.Cols}], expected [{nh * kvbw}, {rkv}]", nameof(kvB));
        Need(q, (long)n * nh * qd, "q", "[n, nh, dn+dr]");
        Need(latent, (long)total * rkv, "latent", "[start+n, r_kv]");
        Need(ropeKey, (long)total * dr, "ropeKey", "[start+n, dr]");
        Need(output, (long)n * nh * dv, "the output", "[n, nh, dv]");
        if (n == 0) return;
        int block = KeyBlockOverride ?? (int)Math.Max(KeyTile, MaxKeyBlockBytes / (4L * nh * kvbw) / KeyTile * KeyTile);
        if (block % KeyTile != 0) throw new InvalidOperationException($"key block {block} is not a multiple of {KeyTile}");
        block = Math.Min(block, (total + KeyTile - 1) / KeyTile * KeyTile);
        var kvbBuf = Scratch(ref t_kvb, (long)Math.Max(block + 3, PackedMinRows) * nh * kvbw);
        var state = total > block ? Scratch(ref t_state, 2L * n * nh) : null;
        var isa = Gemm.Isa;
        float c = scale * Log2E;
        int tiles = (n + QueryTile - 1) / QueryTile;
        fixed (float* pq = q, plat = latent, prk = ropeKey, po = output, pkv = kvbBuf, pst = state)
        {
            float* fq = pq, frk = prk, fo = po, fkv = pkv, fst = pst;
            for (int kb0 = 0; kb0 < total; kb0 += block)
            {
                int kb1 = Math.Min(total, kb0 + block);
                // Expand at least 4 rows, so every key goes through the GEMM's batch-invariant packed path: start up to
                // 3 keys early, or (a context of under 4 keys) pad with zero latents.
                int e0 = Math.Max(0, Math.Min(kb0, kb1 - PackedMinRows));
                if (kb1 - e0 >= PackedMinRows)
                    Gemm.MatMul(new ReadOnlySpan<float>(plat + (long)e0 * rkv, (kb1 - e0) * rkv), kvB, kvbBuf, kb1 - e0);
                else
                {
                    var few = Scratch(ref t_few, PackedMinRows * rkv);
                    new ReadOnlySpan<float>(plat, kb1 * rkv).CopyTo(few);
                    few.AsSpan(kb1 * rkv, (PackedMinRows - kb1) * rkv).Clear();
                    Gemm.MatMul(few, kvB, kvbBuf, PackedMinRows);
                }
                long t0 = Stopwatch.GetTimestamp();
                int first = Math.Max(0, kb0 - start); // rows whose last key is before kb0 are finished
                int firstTile = first / QueryTile, count = (tiles - firstTile) * nh;
                var st = new LatentTasks
                {
                    Q = fq, Kv = fkv, Kr = frk, O = fo, St = fst, Tiles = tiles, Nh = nh, N = n, Start = start, First = first, E0 = e0,
                    Kb0 = kb0, Kb1 = kb1, Dn = dn, Dr = dr, Dv = dv, C = c, Isa = isa,
                };
                Parallelism.For(count, st, static (s, task) =>
                {
                    int nh = s.Nh, qd = s.Dn + s.Dr, kvbw = s.Dn + s.Dv;
                    int tile = s.Tiles - 1 - task / nh, h = task % nh;
                    var rows = new RowSet
                    {
                        Q = s.Q + h * qd, QStride = nh * qd, O = s.O + h * s.Dv, OStride = nh * s.Dv,
                        M = s.St == null ? null : s.St + h, L = s.St == null ? null : s.St + (long)s.N * nh + h, StatStride = nh,
                        Limit0 = s.Start, PerLimit = 1,
                    };
                    float* kbase = s.Kv + ((long)-s.E0 * nh + h) * kvbw;
                    var keys = new KeySet
                    {
                        K1 = kbase, S1 = nh * kvbw, D1 = s.Dn, K2 = s.Kr, S2 = s.Dr, D2 = s.Dr,
                        V = kbase + s.Dn, SV = nh * kvbw, Dv = s.Dv, Begin = s.Kb0, End = s.Kb1,
                    };
                    ForwardTile(s.Isa, rows, Math.Max(s.First, tile * QueryTile), Math.Min(s.N, (tile + 1) * QueryTile), keys, s.C);
                });
                Observer?.Invoke(Stopwatch.GetTimestamp() - t0);
            }
        }
    }

    // ---------------- absorbed form (over the latent cache) ----------------

    [ThreadStatic] static float[]? t_qabs;
    [ThreadStatic] static float[]? t_olat;

    /// <summary>
    /// Absorbed form over the latent cache of one sequence. q [n, nh, dn+dr] at positions start..start+n-1;
    /// latent [≥start+n, r_kv], ropeKey [≥start+n, dr]; <paramref name="kvB"/> = kv_b_proj prepared once
    /// (<see cref="AbsorbedKvB.Prepare"/>) -> out [n, nh, dv]. Per head: q_lat = W_UKᵀ q_nope, then all n·nh rows attend
    /// as multi-query attention over the shared (r_kv + dr)-wide keys [c_kv | k_rope] with values c_kv (the same forward
    /// core as the full form), out = W_UV o_lat.
    /// </summary>
    public static void Absorbed(ReadOnlySpan<float> q, ReadOnlySpan<float> latent, ReadOnlySpan<float> ropeKey, AbsorbedKvB kvB, Span<float> output,
        int n, int start, int nh, int dn, int dr, int dv, int rkv, float scale)
    {
        int qd = dn + dr, qaw = rkv + dr, total = start + n, rowCount = n * nh;
        if (n < 0 || start < 0) throw new ArgumentException("attention: bad shape");
        if (kvB.Heads != nh || kvB.NopeDim != dn || kvB.ValueDim != dv || kvB.Rank != rkv)
            throw new ArgumentException($"absorbed kv_b_proj is for {kvB.Heads} heads, dn {kvB.NopeDim}, dv {kvB.ValueDim}, r_kv {kvB.Rank}; " +
                $"the call has {nh}, {dn}, {dv}, {rkv}", nameof(kvB));
        Need(q, (long)n * nh * qd, "q", "[n, nh, dn+dr]");
        Need(latent, (long)total * rkv, "latent", "[start+n, r_kv]");
        Need(ropeKey, (long)total * dr, "ropeKey", "[start+n, dr]");
        Need(output, (long)n * nh * dv, "the output", "[n, nh, dv]");
        if (n == 0) return;
        long t0 = Stopwatch.GetTimestamp();
        var isa = Gemm.Isa;
        float c = scale * Log2E;
        var qa = Scratch(ref t_qabs, (long)rowCount * qaw);
        var olat = Scratch(ref t_olat, (long)rowCount * rkv);
        bool parallel = (long)n * nh * rkv * Math.Max(dn, dv) >= SerialMacs;
        fixed (float* pq = q, plat = latent, prk = ropeKey, po = output, pqa = qa, pol = olat, puk = kvB.Uk, puv = kvB.UvT)
        {
            float* fq = pq, flat = plat, frk = prk, fo = po, fqa = pqa, fol = pol, fuk = puk, fuv = puv;
            var st = new LatentTasks
            {
                Q = fq, Kv = flat, Kr = frk, O = fo, Uk = fuk, Uv = fuv, Qa = fqa, Ol = fol, Nh = nh, N = n, Start = start,
                Dn = dn, Dr = dr, Dv = dv, Rkv = rkv, RowCount = rowCount, C = c, Isa = isa,
            };
            // q_lat[i, h] = Σ_d q_nope[i, h, d] · W_UK[h][d, :]; the rope part is copied next to it.
            if (parallel) Parallelism.For(nh, st, AbsorbHead); else for (int h = 0; h < nh; h++) AbsorbHead(st, h);

            int tiles = (rowCount + QueryTile - 1) / QueryTile;
            Parallelism.For(tiles, st, static (s, tile) =>
            {
                int qaw = s.Rkv + s.Dr;
                var rows = new RowSet { Q = s.Qa, QStride = qaw, O = s.Ol, OStride = s.Rkv, Limit0 = s.Start, PerLimit = s.Nh };
                var keys = new KeySet { K1 = s.Kv, S1 = s.Rkv, D1 = s.Rkv, K2 = s.Kr, S2 = s.Dr, D2 = s.Dr, V = s.Kv, SV = s.Rkv, Dv = s.Rkv, Begin = 0, End = s.Start + s.N };
                ForwardTile(s.Isa, rows, tile * QueryTile, Math.Min(s.RowCount, (tile + 1) * QueryTile), keys, s.C);
            });

            // out[i, h] = W_UV[h] · o_lat[i, h], as Σ_r o_lat[r] · W_UVᵀ[h][r, :].
            if (parallel) Parallelism.For(nh, st, ExpandHead); else for (int h = 0; h < nh; h++) ExpandHead(st, h);
        }
        Observer?.Invoke(Stopwatch.GetTimestamp() - t0);
    }

    static void AbsorbHead(LatentTasks s, int h)
    {
        int nh = s.Nh, qd = s.Dn + s.Dr, qaw = s.Rkv + s.Dr, rkv = s.Rkv;
        Mac(s.Isa, s.Q + h * qd, nh * qd, 1, s.Uk + (long)h * s.Dn * rkv, rkv, s.Qa + h * qaw, nh * qaw, s.N, s.Dn, rkv, acc: false);
        for (int i = 0; i < s.N; i++)
            new ReadOnlySpan<float>(s.Q + ((long)i * nh + h) * qd + s.Dn, s.Dr).CopyTo(new Span<float>(s.Qa + ((long)i * nh + h) * qaw + rkv, s.Dr));
    }

    static void ExpandHead(LatentTasks s, int h) =>
        Mac(s.Isa, s.Ol + h * s.Rkv, s.Nh * s.Rkv, 1, s.Uv + (long)h * s.Rkv * s.Dv, s.Dv, s.O + h * s.Dv, s.Nh * s.Dv, s.N, s.Rkv, s.Dv, acc: false);

    static void Need(ReadOnlySpan<float> a, long n, string name, string shape)
    {
        if (a.Length < n) throw new ArgumentException($"attention: {name} has {a.Length} values, {shape} needs {n}", name);
    }
}

/// <summary>
/// kv_b_proj [nh·(dn+dv), r_kv] prepared once (at load) for absorbed attention: W_UK [nh, dn, r_kv] as stored and
/// W_UVᵀ [nh, r_kv, dv] transposed, both fp32, so decode neither dequantizes nor transposes per call. Costs
/// 4·nh·(dn+dv)·r_kv bytes (<see cref="Bytes"/>) per attention sublayer, next to kv_b_proj itself.
/// </summary>
public sealed class AbsorbedKvB
{
    internal float[] Uk { get; }
    internal float[] UvT { get; }
    public int Heads { get; }
    public int NopeDim { get; }
    public int ValueDim { get; }
    public int Rank { get; }

    /// <summary>Bytes held by the prepared copies.</summary>
    public long Bytes => 4L * (Uk.Length + UvT.Length);

    AbsorbedKvB(float[] uk, float[] uvT, int nh, int dn, int dv, int rkv)
    {
        Uk = uk; UvT = uvT; Heads = nh; NopeDim = dn; ValueDim = dv; Rank = rkv;
    }

    /// <summary>Dequantizes and lays out <paramref name="kvB"/> ([nh·(dn+dv), r_kv], rows k_nope then v per head).</summary>
    public static AbsorbedKvB Prepare(Weight kvB, int nh, int dn, int dv)
    {
        int rkv = kvB.Cols;
        if (nh < 1 || dn < 0 || dv < 1 || kvB.Rows != nh * (dn + dv))
            throw new ArgumentException($"{kvB.Name}: [{kvB.Rows}, {kvB.Cols}] is not [nh·(dn+dv), r_kv] for nh {nh}, dn {dn}, dv {dv}", nameof(kvB));
        var uk = GC.AllocateUninitializedArray<float>(nh * dn * rkv, pinned: true);
        var uvT = GC.AllocateUninitializedArray<float>(nh * rkv * dv, pinned: true);
        var row = new float[rkv];
        for (int h = 0; h < nh; h++)
        {
            int row0 = h * (dn + dv);
            for (int d = 0; d < dn; d++) kvB.DequantizeRow(row0 + d, uk.AsSpan((h * dn + d) * rkv, rkv));
            for (int d = 0; d < dv; d++)
            {
                kvB.DequantizeRow(row0 + dn + d, row);
                for (int r = 0; r < rkv; r++) uvT[(h * rkv + r) * dv + d] = row[r];
            }
        }
        return new AbsorbedKvB(uk, uvT, nh, dn, dv, rkv);
    }
}
