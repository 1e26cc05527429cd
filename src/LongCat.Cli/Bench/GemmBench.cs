using System.Globalization;
using System.Text.Json.Nodes;
using LongCat.Cli.Commands;
using LongCat.Config;
using LongCat.IO;
using LongCat.Kernels;

namespace LongCat.Cli.Bench;

/// <summary>One GEMM problem: y [M, N] = x [M, K] · W [N, K]ᵀ.</summary>
public sealed record GemmShape(string Set, string Name, int M, int N, int K, int Experts = 0)
{
    /// <summary>Flops of one problem (per expert when <see cref="Experts"/> &gt; 0).</summary>
    public double Flops => 2.0 * M * N * K;
}

public sealed class GemmBenchOptions
{
    public required List<GemmShape> Shapes { get; init; }
    public required List<DType> DTypes { get; init; }
    public double Seconds { get; init; } = 0.25;
    public int Repeats { get; init; } = 5;
    public double WarmupSeconds { get; init; } = 3;
    public bool Json { get; init; }
    public bool Blas { get; init; } = true;
    public string Python { get; init; } = "/usr/bin/python3";
    public string? BlasScript { get; init; }
}

/// <summary>
/// <c>longcat bench gemm</c>: GFLOP/s of <see cref="Gemm.MatMul"/> for F32 / BF16 / FP8 weights on the model's
/// shapes, against OpenBLAS sgemm measured in the same run with interleaved repeats (medians). Shapes with
/// M &lt; 4 (decode GEMV) are reported in GB/s of weight bytes.
/// </summary>
public static class GemmBench
{
    public const string DefaultShapes = "square,bench-350m,release,smallm,decode,experts";

    /// <summary>Shapes with at most this many rows are reported as GEMV (GB/s of weight bytes), at 1 and N threads.</summary>
    public const int GemvMaxRows = 8;

    /// <summary>bench/configs/bench-350m.json.</summary>
    public static LongCatConfig Bench350m => new()
    {
        VocabSize = 32000, HiddenSize = 1024, NumLayers = 4, NumAttentionHeads = 8, QLoraRank = 256, KvLoraRank = 128,
        QkNopeHeadDim = 64, QkRopeHeadDim = 32, VHeadDim = 64, FfnHiddenSize = 2816, ExpertFfnHiddenSize = 512,
        NRoutedExperts = 32, ZeroExpertNum = 16, MoeTopK = 6,
    };

    /// <summary>The linear layers of a config with <paramref name="tokens"/> rows (experts: <paramref name="expertTokens"/>).</summary>
    public static List<GemmShape> ModelShapes(string set, LongCatConfig c, int tokens, int expertTokens, int lmHeadCols)
    {
        int h = c.HiddenSize, nh = c.NumAttentionHeads;
        string lm = lmHeadCols < c.VocabSize ? $"lm_head/{c.VocabSize / lmHeadCols}" : "lm_head";
        return
        [
            new(set, "q_a", tokens, c.QLoraRank, h),
            new(set, "q_b", tokens, nh * (c.QkNopeHeadDim + c.QkRopeHeadDim), c.QLoraRank),
            new(set, "kv_a", tokens, c.KvLoraRank + c.QkRopeHeadDim, h),
            new(set, "kv_b", tokens, nh * (c.QkNopeHeadDim + c.VHeadDim), c.KvLoraRank),
            new(set, "o", tokens, h, nh * c.VHeadDim),
            new(set, "ffn_up", tokens, c.FfnHiddenSize, h),
            new(set, "ffn_down", tokens, h, c.FfnHiddenSize),
            new(set, "expert_up", expertTokens, c.ExpertFfnHiddenSize, h),
            new(set, "expert_down", expertTokens, h, c.ExpertFfnHiddenSize),
            new(set, lm, tokens, Math.Min(lmHeadCols, c.VocabSize), h),
        ];
    }

    static IEnumerable<GemmShape> Named(string name)
    {
        switch (name)
        {
            case "square": return [new("square", "2048^3", 2048, 2048, 2048)];
            case "bench-350m": return ModelShapes("bench-350m", Bench350m, 512, 96, int.MaxValue);
            // The release lm_head (131072 columns) is timed on 1/8 of the vocabulary: same kernel, sane time and memory.
            case "release": return ModelShapes("release", new LongCatConfig(), 512, 96, 16384);
            case "decode":
                {
                    var b = ModelShapes("decode-350m", Bench350m, 1, 1, int.MaxValue);
                    var r = ModelShapes("decode-release", new LongCatConfig(), 1, 1, 16384);
                    string[] keepB = ["ffn_up", "ffn_down", "lm_head"], keepR = ["q_b", "o", "ffn_up", "ffn_down", "expert_up", "lm_head/8"];
                    return b.Where(s => keepB.Contains(s.Name)).Concat(r.Where(s => keepR.Contains(s.Name)));
                }
            case "smallm":
                // bench-350m's ffn_up at the row counts of MTP verification, batched decode and small expert groups:
                // up to Gemm.SmallMaxRows the GEMV-order path (weights converted once per call), then the packed one.
                return new[] { 2, 4, 8, 16, 32, Gemm.SmallMaxRows, Gemm.PackedMinRows, 96 }
                    .Select(m => new GemmShape("smallm", "ffn_up", m, Bench350m.FfnHiddenSize, Bench350m.HiddenSize));
            case "experts":
                {
                    // bench-350m's experts (32, up [512, 1024] and down [1024, 512]), rows per expert as routed
                    // uniformly: prefill 512 tokens (96), 16 decode streams (3), one decode token over its 6 experts.
                    var c = Bench350m;
                    var list = new List<GemmShape>();
                    foreach (var (label, rows, experts) in new[] { ("prefill-512", 96, c.NRoutedExperts), ("decode-16", 3, c.NRoutedExperts), ("decode-1", 1, c.MoeTopK) })
                    {
                        list.Add(new GemmShape("experts", $"{label} up", rows, c.ExpertFfnHiddenSize, c.HiddenSize, experts));
                        list.Add(new GemmShape("experts", $"{label} down", rows, c.HiddenSize, c.ExpertFfnHiddenSize, experts));
                    }
                    return list;
                }
            case "all": return Named("square").Concat(Named("bench-350m")).Concat(Named("release")).Concat(Named("smallm")).Concat(Named("decode")).Concat(Named("experts"));
            default: return [];
        }
    }

    /// <summary>Parses "square,release,512x1024x256,name=4x8x16" (MxNxK).</summary>
    public static List<GemmShape> ParseShapes(string spec)
    {
        var list = new List<GemmShape>();
        foreach (var raw in spec.Split([',', ' '], StringSplitOptions.RemoveEmptyEntries))
        {
            var item = raw.Trim().ToLowerInvariant();
            var named = Named(item).ToList();
            if (named.Count > 0) { list.AddRange(named); continue; }
            string label = item;
            int eq = item.IndexOf('=', StringComparison.Ordinal);
            if (eq >= 0) { label = item[..eq]; item = item[(eq + 1)..]; }
            var p = item.Split('x');
            if (p.Length != 3 || !int.TryParse(p[0], NumberStyles.None, CultureInfo.InvariantCulture, out int m) ||
                !int.TryParse(p[1], NumberStyles.None, CultureInfo.InvariantCulture, out int n) ||
                !int.TryParse(p[2], NumberStyles.None, CultureInfo.InvariantCulture, out int k) || m < 1 || n < 1 || k < 1)
                throw new CliException($"--shapes: '{raw}' is not a set (square, bench-350m, release, smallm, decode, experts, all) nor MxNxK with positive sizes");
            list.Add(new GemmShape("custom", label, m, n, k));
        }
        if (list.Count == 0) throw new CliException("--shapes: no shapes given");
        return list;
    }

    public static List<DType> ParseDTypes(string spec) => spec.Split([',', ' '], StringSplitOptions.RemoveEmptyEntries).Select(s => s.Trim().ToLowerInvariant() switch
    {
        "f32" or "float32" => DType.F32,
        "bf16" or "bfloat16" => DType.BF16,
        "f16" or "float16" => DType.F16,
        "fp8" or "f8" or "f8_e4m3" => DType.F8_E4M3,
        "int8" or "i8" => DType.I8,
        var o => throw new CliException($"--dtypes: '{o}' is not one of f32, bf16, f16, fp8, int8"),
    }).Distinct().ToList();

    static string Label(DType d) => d switch { DType.F32 => "F32", DType.BF16 => "BF16", DType.F16 => "F16", DType.I8 => "INT8", _ => "FP8" };

    sealed class Row
    {
        public required GemmShape Shape;
        public int Threads;
        public readonly Dictionary<DType, double> Gflops = [];
        public readonly Dictionary<DType, long> WeightBytes = [];
        /// <summary>BF16 weights pre-packed at load (Weight.Prepack), GFLOP/s; NaN when BF16 is not measured.</summary>
        public double Bf16Prepacked = double.NaN;
        public double Blas = double.NaN, Dx = double.NaN, Dw = double.NaN, BlasDx = double.NaN, BlasDw = double.NaN;
        /// <summary>GEMV rows: the read-bandwidth probe measured beside them at the same thread count (GB/s).</summary>
        public double Probe = double.NaN;
        public bool IsGemv => Shape.M <= GemvMaxRows;
        public double Seconds(DType d) => Shape.Flops / (Gflops[d] * 1e9);
        public double Gbps(DType d) => WeightBytes[d] / Seconds(d) / 1e9;
        public double BlasGbps => 4.0 * Shape.N * Shape.K / (Shape.Flops / (Blas * 1e9)) / 1e9;
    }

    public static int Run(GemmBenchOptions o)
    {
        var output = Console.Out;
        string? note = null;
        BlasReference? blas = o.Blas ? BlasReference.TryStart(o.Python, o.BlasScript, Parallelism.Threads, out note) : null;
        if (!o.Blas) note = "--no-blas: no reference";
        int threads = Parallelism.Threads;
        try
        {
            string header = $"{Gemm.KernelName}, {threads} threads, {Environment.ProcessorCount} cores; reference: {blas?.Description ?? "none"}";
            if (o.Json)
            {
                var info = new JsonObject
                {
                    ["bench"] = "gemm-info", ["date"] = DateTime.UtcNow.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
                    ["kernel"] = Gemm.KernelName, ["threads"] = threads, ["cores"] = Environment.ProcessorCount,
                    ["seconds_per_repeat"] = o.Seconds, ["repeats"] = o.Repeats, ["small_max_rows"] = Gemm.SmallMaxRows,
                    ["reference"] = blas?.Info.DeepClone(), ["note"] = note,
                };
                output.WriteLine(info.ToJsonString(BenchUtil.JsonOptions));
            }
            else
            {
                output.WriteLine($"longcat bench gemm: {header}");
                output.WriteLine($"median of {o.Repeats} interleaved repeats of {o.Seconds:0.###} s per variant; GFLOP/s = 2·M·N·K / time; " +
                    $"M <= {Gemm.SmallMaxRows}: GEMV-order path (weights converted once per call), larger M: packed");
                if (note != null) output.WriteLine($"note: {note}");
            }

            Warmup(o.WarmupSeconds);
            float[]? probe = o.Shapes.Any(x => x.M <= GemvMaxRows) ? ProbeBuffer() : null;
            var rows = new List<Row>();
            bool tableHeaderDone = false, gemvHeaderDone = false, expertsHeaderDone = false;
            foreach (var shape in o.Shapes)
            {
                if (shape.Experts > 0)
                {
                    var (seqFwd, grpFwd, seqDx, grpDx, seqDw, grpDw) = MeasureExperts(shape, o);
                    if (o.Json)
                        output.WriteLine(new JsonObject
                        {
                            ["bench"] = "experts", ["shape"] = shape.Name, ["experts"] = shape.Experts, ["m"] = shape.M, ["n"] = shape.N, ["k"] = shape.K,
                            ["threads"] = Parallelism.Threads, ["dtype"] = "f32",
                            ["sequential_gflops"] = BenchUtil.J(seqFwd), ["grouped_gflops"] = BenchUtil.J(grpFwd),
                            ["sequential_dx_gflops"] = BenchUtil.J(seqDx), ["grouped_dx_gflops"] = BenchUtil.J(grpDx),
                            ["sequential_dw_gflops"] = BenchUtil.J(seqDw), ["grouped_dw_gflops"] = BenchUtil.J(grpDw),
                        }.ToJsonString(BenchUtil.JsonOptions));
                    else
                    {
                        if (!expertsHeaderDone)
                        {
                            output.WriteLine();
                            output.WriteLine($"{"experts (F32)",-20} {"E",3} {"M",3} {"N",5} {"K",5} {"seq",6} {"group",6} {"ratio",5} {"seqdX",6} {"grpdX",6} {"ratio",5} {"seqdW",6} {"grpdW",6} {"ratio",5}   (GFLOP/s: each expert one call after another vs one grouped call)");
                            expertsHeaderDone = true;
                        }
                        output.WriteLine($"{shape.Name,-20} {shape.Experts,3} {shape.M,3} {shape.N,5} {shape.K,5} {BenchUtil.F(seqFwd),6} {BenchUtil.F(grpFwd),6} {BenchUtil.F(grpFwd / seqFwd, 2),5} " +
                            $"{BenchUtil.F(seqDx),6} {BenchUtil.F(grpDx),6} {BenchUtil.F(grpDx / seqDx, 2),5} {BenchUtil.F(seqDw),6} {BenchUtil.F(grpDw),6} {BenchUtil.F(grpDw / seqDw, 2),5}");
                    }
                    continue;
                }
                if (shape.M > GemvMaxRows)
                {
                    var row = Measure(shape, o, blas);
                    rows.Add(row);
                    if (o.Json) output.WriteLine(ToJson(row, o).ToJsonString(BenchUtil.JsonOptions));
                    else
                    {
                        if (!tableHeaderDone) { PrintGemmHeader(output, o, blas != null); tableHeaderDone = true; }
                        PrintGemmRow(output, row, o, blas != null);
                    }
                    continue;
                }
                // GEMV: at 1 thread and at the configured count, each beside the bandwidth probe at that count.
                foreach (int t in threads > 1 ? new[] { 1, threads } : new[] { 1 })
                {
                    var row = MeasureGemv(shape, o, t, threads, probe!);
                    rows.Add(row);
                    if (o.Json) output.WriteLine(ToJson(row, o).ToJsonString(BenchUtil.JsonOptions));
                    else
                    {
                        if (!gemvHeaderDone) { PrintGemvHeader(output, o); gemvHeaderDone = true; }
                        PrintGemvRow(output, row, o);
                    }
                }
            }
            if (!o.Json && blas != null)
            {
                var gem = rows.Where(r => !r.IsGemv && r.Gflops.ContainsKey(DType.F32) && !double.IsNaN(r.Blas)).ToList();
                if (gem.Count > 0)
                {
                    output.WriteLine($"F32 / OpenBLAS: median {BenchUtil.F(BenchUtil.Median(gem.Select(r => r.Gflops[DType.F32] / r.Blas)), 2)}, " +
                        $"min {BenchUtil.F(gem.Min(r => r.Gflops[DType.F32] / r.Blas), 2)} over {gem.Count} shapes");
                    output.WriteLine($"dX / OpenBLAS dX: median {BenchUtil.F(BenchUtil.Median(gem.Select(r => r.Dx / r.BlasDx)), 2)}; " +
                        $"dW / OpenBLAS dW: median {BenchUtil.F(BenchUtil.Median(gem.Select(r => r.Dw / r.BlasDw)), 2)}");
                }
            }
            if (!o.Json && probe != null)
                foreach (var d in o.DTypes)
                {
                    var g = rows.Where(r => r.IsGemv && r.Shape.M == 1 && r.Gflops.ContainsKey(d)).GroupBy(r => r.Threads);
                    foreach (var grp in g)
                        output.WriteLine($"decode GEMV {Label(d)}, {grp.Key} thread(s): median {BenchUtil.F(BenchUtil.Median(grp.Select(r => r.Gbps(d) / r.Probe)), 2)} " +
                            $"of the read probe ({BenchUtil.F(BenchUtil.Median(grp.Select(r => r.Gbps(d))))} GB/s vs {BenchUtil.F(BenchUtil.Median(grp.Select(r => r.Probe)))} GB/s)");
                }
            return 0;
        }
        finally { blas?.Dispose(); Parallelism.Threads = threads; }
    }

    /// <summary>Sustained load first: the second core of this VM class often joins only after ~2 s.</summary>
    static void Warmup(double seconds)
    {
        if (seconds <= 0) return;
        var w = BenchUtil.RandomWeight(DType.F32, 1024, 1024, 1);
        var x = new float[512 * 1024];
        BenchUtil.FillUniform(x, 1f, 2);
        var y = new float[512 * 1024];
        BenchUtil.CallsPerSecond(() => Gemm.MatMul(x, w, y, 512), seconds);
    }

    const int ProbeMiB = 256, ProbeChunk = 1 << 18;

    static float[] ProbeBuffer()
    {
        var a = GC.AllocateUninitializedArray<float>(ProbeMiB << 18);
        a.AsSpan().Fill(1f);
        return a;
    }

    /// <summary>The read-bandwidth probe: a vectorised sum over 256 MiB in 1 MiB chunks on the current threads; GB/s.</summary>
    static double Probe(float[] a, double seconds)
    {
        int chunks = a.Length / ProbeChunk;
        var partial = new float[chunks];
        void Pass() => Parallelism.For(chunks, c => partial[c] = System.Numerics.Tensors.TensorPrimitives.Sum(a.AsSpan(c * ProbeChunk, ProbeChunk)));
        return BenchUtil.CallsPerSecond(Pass, Math.Max(seconds, 0.2)) * a.Length * 4.0 / 1e9;
    }

    static Row MeasureGemv(GemmShape s, GemmBenchOptions o, int threads, int saved, float[] probe)
    {
        var row = new Row { Shape = s, Threads = threads };
        var x = new float[(long)s.M * s.K];
        BenchUtil.FillUniform(x, 1f, 7);
        var y = new float[(long)s.M * s.N];
        var weights = o.DTypes.Select((d, i) => BenchUtil.RandomWeight(d, s.N, s.K, 100 + (ulong)i)).ToList();
        var variants = new List<Func<double>>();
        try
        {
            Parallelism.Threads = threads;
            for (int i = 0; i < weights.Count; i++)
            {
                var w = weights[i];
                row.WeightBytes[o.DTypes[i]] = w.Bytes;
                Gemm.MatMul(x, w, y, s.M);
                variants.Add(() => BenchUtil.CallsPerSecond(() => Gemm.MatMul(x, w, y, s.M), o.Seconds) * s.Flops / 1e9);
            }
            variants.Add(() => Probe(probe, o.Seconds));
            var samples = Interleave(variants, o.Repeats);
            for (int i = 0; i < weights.Count; i++) row.Gflops[o.DTypes[i]] = BenchUtil.Median(samples[i]);
            row.Probe = BenchUtil.Median(samples[^1]);
        }
        finally { Parallelism.Threads = saved; }
        GC.KeepAlive(weights);
        return row;
    }

    /// <summary>
    /// Experts one call after another (as the model runs them today) against one grouped call, interleaved:
    /// forward, dX and dW, F32 weights; GFLOP/s over all experts.
    /// </summary>
    static (double, double, double, double, double, double) MeasureExperts(GemmShape s, GemmBenchOptions o)
    {
        int e = s.Experts, m = s.M, n = s.N, k = s.K;
        var ws = Enumerable.Range(0, e).Select(i => BenchUtil.RandomWeight(DType.F32, n, k, 300 + (ulong)i)).ToList();
        var wf = ws.Select(w => new float[(long)n * k]).ToList();
        for (int i = 0; i < e; i++) BenchUtil.FillUniform(wf[i], 0.05f, 400 + (ulong)i);
        var x = new float[(long)e * m * k];
        BenchUtil.FillUniform(x, 1f, 8);
        var dy = new float[(long)e * m * n];
        BenchUtil.FillUniform(dy, 1f, 9);
        var y = new float[(long)e * m * n];
        var dx = new float[(long)e * m * k];
        var dw = ws.Select(_ => new float[(long)n * k]).ToList();
        var fwd = Enumerable.Range(0, e).Select(i => new GemmProblem(ws[i], x.AsMemory(i * m * k, m * k), y.AsMemory(i * m * n, m * n), m)).ToArray();
        var ig = Enumerable.Range(0, e).Select(i => new InputGradProblem(dy.AsMemory(i * m * n, m * n), wf[i], dx.AsMemory(i * m * k, m * k), m, n, k)).ToArray();
        var wg = Enumerable.Range(0, e).Select(i => new WeightGradProblem(dy.AsMemory(i * m * n, m * n), x.AsMemory(i * m * k, m * k), dw[i], m, n, k)).ToArray();
        void SeqFwd() { for (int i = 0; i < e; i++) Gemm.MatMul(x.AsSpan(i * m * k, m * k), ws[i], y.AsSpan(i * m * n, m * n), m); }
        void SeqDx() { for (int i = 0; i < e; i++) GemmGrad.InputGrad(dy.AsSpan(i * m * n, m * n), wf[i], dx.AsSpan(i * m * k, m * k), m, n, k); }
        void SeqDw() { for (int i = 0; i < e; i++) GemmGrad.WeightGrad(dy.AsSpan(i * m * n, m * n), x.AsSpan(i * m * k, m * k), dw[i], m, n, k); }
        double flops = s.Flops * e;
        var variants = new List<Func<double>>
        {
            () => BenchUtil.CallsPerSecond(SeqFwd, o.Seconds) * flops / 1e9,
            () => BenchUtil.CallsPerSecond(() => Gemm.MatMulGrouped(fwd), o.Seconds) * flops / 1e9,
            () => BenchUtil.CallsPerSecond(SeqDx, o.Seconds) * flops / 1e9,
            () => BenchUtil.CallsPerSecond(() => GemmGrad.InputGradGrouped(ig), o.Seconds) * flops / 1e9,
            () => BenchUtil.CallsPerSecond(SeqDw, o.Seconds) * flops / 1e9,
            () => BenchUtil.CallsPerSecond(() => GemmGrad.WeightGradGrouped(wg), o.Seconds) * flops / 1e9,
        };
        SeqFwd(); Gemm.MatMulGrouped(fwd); SeqDx(); GemmGrad.InputGradGrouped(ig); SeqDw(); GemmGrad.WeightGradGrouped(wg);
        var r = Interleave(variants, o.Repeats).Select(BenchUtil.Median).ToArray();
        GC.KeepAlive(ws);
        return (r[0], r[1], r[2], r[3], r[4], r[5]);
    }

    static List<List<double>> Interleave(List<Func<double>> variants, int repeats)
    {
        var samples = variants.Select(_ => new List<double>()).ToList();
        for (int rep = 0; rep < repeats; rep++)
            for (int j = 0; j < variants.Count; j++)
            {
                int v = (j + rep) % variants.Count; // rotate the order between repeats
                samples[v].Add(variants[v]());
            }
        return samples;
    }

    static Row Measure(GemmShape s, GemmBenchOptions o, BlasReference? blas)
    {
        var row = new Row { Shape = s, Threads = Parallelism.Threads };
        blas?.BeginPrepare(s.M, s.N, s.K);
        var x = new float[(long)s.M * s.K];
        BenchUtil.FillUniform(x, 1f, 7);
        var y = new float[(long)s.M * s.N];
        var weights = o.DTypes.Select((d, i) => BenchUtil.RandomWeight(d, s.N, s.K, 100 + (ulong)i)).ToList();
        // The backward GEMMs of the same layer in F32: dx [M, K] = dy · W, dW [N, K] += dyᵀ · x.
        var wf = new float[(long)s.N * s.K];
        BenchUtil.FillUniform(wf, 0.05f, 11);
        var dy = new float[(long)s.M * s.N];
        BenchUtil.FillUniform(dy, 1f, 12);
        var dx = new float[(long)s.M * s.K];
        var dw = new float[(long)s.N * s.K];
        blas?.EndPrepare();

        var variants = new List<Func<double>>();
        for (int i = 0; i < weights.Count; i++)
        {
            var w = weights[i];
            row.WeightBytes[o.DTypes[i]] = w.Bytes;
            Gemm.MatMul(x, w, y, s.M); // warm (JIT, caches, page faults)
            variants.Add(() => BenchUtil.CallsPerSecond(() => Gemm.MatMul(x, w, y, s.M), o.Seconds) * s.Flops / 1e9);
        }
        int bf = o.DTypes.IndexOf(DType.BF16);
        Weight? pre = null;
        if (bf >= 0)
        {
            pre = BenchUtil.RandomWeight(DType.BF16, s.N, s.K, 100 + (ulong)bf);
            pre.Prepack();
            Gemm.MatMul(x, pre, y, s.M);
        }
        GemmGrad.InputGrad(dy, wf, dx, s.M, s.N, s.K);
        GemmGrad.WeightGrad(dy, x, dw, s.M, s.N, s.K);
        variants.Add(() => BenchUtil.CallsPerSecond(() => GemmGrad.InputGrad(dy, wf, dx, s.M, s.N, s.K), o.Seconds) * s.Flops / 1e9);
        variants.Add(() => BenchUtil.CallsPerSecond(() => GemmGrad.WeightGrad(dy, x, dw, s.M, s.N, s.K), o.Seconds) * s.Flops / 1e9);
        if (pre != null) variants.Add(() => BenchUtil.CallsPerSecond(() => Gemm.MatMul(x, pre, y, s.M), o.Seconds) * s.Flops / 1e9);
        if (blas != null)
        {
            variants.Add(() => blas.Run(o.Seconds));
            variants.Add(() => blas.RunGrad("dx", o.Seconds));
            variants.Add(() => blas.RunGrad("dw", o.Seconds));
        }
        var samples = Interleave(variants, o.Repeats);
        int nw = weights.Count;
        for (int i = 0; i < nw; i++) row.Gflops[o.DTypes[i]] = BenchUtil.Median(samples[i]);
        row.Dx = BenchUtil.Median(samples[nw]);
        row.Dw = BenchUtil.Median(samples[nw + 1]);
        int next = nw + 2;
        if (pre != null) row.Bf16Prepacked = BenchUtil.Median(samples[next++]);
        if (blas != null)
        {
            row.Blas = BenchUtil.Median(samples[next]);
            row.BlasDx = BenchUtil.Median(samples[next + 1]);
            row.BlasDw = BenchUtil.Median(samples[next + 2]);
        }
        GC.KeepAlive(pre);
        GC.KeepAlive(weights);
        return row;
    }

    static JsonObject ToJson(Row r, GemmBenchOptions o)
    {
        var s = r.Shape;
        var j = new JsonObject
        {
            ["bench"] = r.IsGemv ? "gemv" : "gemm",
            ["set"] = s.Set, ["shape"] = s.Name, ["m"] = s.M, ["n"] = s.N, ["k"] = s.K,
            ["threads"] = r.Threads, ["kernel"] = Gemm.KernelName,
        };
        foreach (var d in o.DTypes)
        {
            string l = Label(d).ToLowerInvariant();
            j[$"{l}_gflops"] = BenchUtil.J(r.Gflops[d]);
            j[$"{l}_weight_gbps"] = BenchUtil.J(r.Gbps(d));
            if (!double.IsNaN(r.Blas)) j[$"ratio_{l}"] = BenchUtil.J(r.Gflops[d] / r.Blas, 3);
            if (r.IsGemv) j[$"{l}_of_probe"] = BenchUtil.J(r.Gbps(d) / r.Probe, 3);
        }
        if (r.IsGemv) j["read_probe_gbps"] = BenchUtil.J(r.Probe);
        else
        {
            j["dx_gflops"] = BenchUtil.J(r.Dx);
            j["dw_gflops"] = BenchUtil.J(r.Dw);
            j["bf16_prepacked_gflops"] = BenchUtil.J(r.Bf16Prepacked);
            j["openblas_gflops"] = BenchUtil.J(r.Blas);
            j["openblas_dx_gflops"] = BenchUtil.J(r.BlasDx);
            j["openblas_dw_gflops"] = BenchUtil.J(r.BlasDw);
        }
        return j;
    }

    static void PrintGemmHeader(TextWriter w, GemmBenchOptions o, bool blas)
    {
        w.WriteLine();
        w.Write($"{"set",-11} {"shape",-11} {"M",5} {"N",6} {"K",6}");
        foreach (var d in o.DTypes) w.Write($" {Label(d),7}");
        if (o.DTypes.Contains(DType.BF16)) w.Write($" {"BF16pp",7}");
        w.Write($" {"dX",6} {"dW",6}");
        if (blas)
        {
            w.Write($" {"BLAS",6} {"BLdX",6} {"BLdW",6}");
            foreach (var d in o.DTypes) w.Write($" {Label(d) + "/BL",7}");
            w.Write($" {"dX/BL",6} {"dW/BL",6}");
        }
        w.WriteLine("   (GFLOP/s; BF16pp: BF16 pre-packed at load; dX, dW: F32 backward GEMMs of the same layer)");
    }

    static void PrintGemmRow(TextWriter w, Row r, GemmBenchOptions o, bool blas)
    {
        var s = r.Shape;
        w.Write($"{s.Set,-11} {s.Name,-11} {s.M,5} {s.N,6} {s.K,6}");
        foreach (var d in o.DTypes) w.Write($" {BenchUtil.F(r.Gflops[d]),7}");
        if (o.DTypes.Contains(DType.BF16)) w.Write($" {BenchUtil.F(r.Bf16Prepacked),7}");
        w.Write($" {BenchUtil.F(r.Dx),6} {BenchUtil.F(r.Dw),6}");
        if (blas)
        {
            w.Write($" {BenchUtil.F(r.Blas),6} {BenchUtil.F(r.BlasDx),6} {BenchUtil.F(r.BlasDw),6}");
            foreach (var d in o.DTypes) w.Write($" {BenchUtil.F(r.Gflops[d] / r.Blas, 2),7}");
            w.Write($" {BenchUtil.F(r.Dx / r.BlasDx, 2),6} {BenchUtil.F(r.Dw / r.BlasDw, 2),6}");
        }
        w.WriteLine();
    }

    static void PrintGemvHeader(TextWriter w, GemmBenchOptions o)
    {
        w.WriteLine();
        w.Write($"{"gemv",-14} {"shape",-11} {"M",2} {"N",6} {"K",6} {"thr",3}");
        foreach (var d in o.DTypes) w.Write($" {Label(d) + " GB/s",9} {"/probe",6}");
        w.WriteLine($" {"probe",6}   (GB/s of weight bytes read per call; probe: vectorised sum over {ProbeMiB} MiB, same threads, same run)");
    }

    static void PrintGemvRow(TextWriter w, Row r, GemmBenchOptions o)
    {
        var s = r.Shape;
        w.Write($"{s.Set,-14} {s.Name,-11} {s.M,2} {s.N,6} {s.K,6} {r.Threads,3}");
        foreach (var d in o.DTypes) w.Write($" {BenchUtil.F(r.Gbps(d)),9} {BenchUtil.F(r.Gbps(d) / r.Probe, 2),6}");
        w.WriteLine($" {BenchUtil.F(r.Probe),6}");
    }
}
