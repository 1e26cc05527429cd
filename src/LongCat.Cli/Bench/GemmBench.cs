using System.Globalization;
using System.Text.Json.Nodes;
using LongCat.Cli.Commands;
using LongCat.Config;
using LongCat.IO;
using LongCat.Kernels;

namespace LongCat.Cli.Bench;

/// <summary>One GEMM problem: y [M, N] = x [M, K] · W [N, K]ᵀ.</summary>
public sealed record GemmShape(string Set, string Name, int M, int N, int K)
{
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
    public const string DefaultShapes = "square,bench-350m,release,decode";

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
            case "all": return Named("square").Concat(Named("bench-350m")).Concat(Named("release")).Concat(Named("decode"));
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
                throw new CliException($"--shapes: '{raw}' is not a set (square, bench-350m, release, decode, all) nor MxNxK with positive sizes");
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
        var o => throw new CliException($"--dtypes: '{o}' is not one of f32, bf16, f16, fp8"),
    }).Distinct().ToList();

    static string Label(DType d) => d switch { DType.F32 => "F32", DType.BF16 => "BF16", DType.F16 => "F16", _ => "FP8" };

    sealed class Row
    {
        public required GemmShape Shape;
        public readonly Dictionary<DType, double> Gflops = [];
        public readonly Dictionary<DType, long> WeightBytes = [];
        public double Blas = double.NaN;
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
        try
        {
            string header = $"{Gemm.KernelName}, {Parallelism.Threads} threads, {Environment.ProcessorCount} cores; reference: {blas?.Description ?? "none"}";
            if (o.Json)
            {
                var info = new JsonObject
                {
                    ["bench"] = "gemm-info", ["date"] = DateTime.UtcNow.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
                    ["kernel"] = Gemm.KernelName, ["threads"] = Parallelism.Threads, ["cores"] = Environment.ProcessorCount,
                    ["seconds_per_repeat"] = o.Seconds, ["repeats"] = o.Repeats,
                    ["reference"] = blas?.Info.DeepClone(), ["note"] = note,
                };
                output.WriteLine(info.ToJsonString(BenchUtil.JsonOptions));
            }
            else
            {
                output.WriteLine($"longcat bench gemm: {header}");
                output.WriteLine($"median of {o.Repeats} interleaved repeats of {o.Seconds:0.###} s per variant; GFLOP/s = 2·M·N·K / time");
                if (note != null) output.WriteLine($"note: {note}");
            }

            Warmup(o.WarmupSeconds);
            var rows = new List<Row>();
            bool tableHeaderDone = false, gemvHeaderDone = false;
            foreach (var shape in o.Shapes)
            {
                var row = Measure(shape, o, blas);
                rows.Add(row);
                if (o.Json) output.WriteLine(ToJson(row, o).ToJsonString(BenchUtil.JsonOptions));
                else if (shape.M >= Gemm.PackedMinRows)
                {
                    if (!tableHeaderDone) { PrintGemmHeader(output, o, blas != null); tableHeaderDone = true; }
                    PrintGemmRow(output, row, o, blas != null);
                }
                else
                {
                    if (!gemvHeaderDone) { PrintGemvHeader(output, o, blas != null); gemvHeaderDone = true; }
                    PrintGemvRow(output, row, o, blas != null);
                }
            }

            if (rows.Any(r => r.Shape.M < Gemm.PackedMinRows))
            {
                double cs = BenchUtil.ReadBandwidth(512, 1.0);
                double np = blas != null ? blas.Bandwidth(512, 1.0) : double.NaN;
                if (o.Json)
                    output.WriteLine(new JsonObject { ["bench"] = "bandwidth", ["csharp_sum_gbps"] = BenchUtil.J(cs), ["threads"] = Parallelism.Threads, ["numpy_sum_1thread_gbps"] = BenchUtil.J(np) }.ToJsonString(BenchUtil.JsonOptions));
                else
                    output.WriteLine($"memory read bandwidth (512 MiB sum): C# {Parallelism.Threads} threads {BenchUtil.F(cs)} GB/s" +
                        (blas != null ? $", numpy (1 thread) {BenchUtil.F(np)} GB/s" : ""));
            }
            if (!o.Json && blas != null)
            {
                var gem = rows.Where(r => r.Shape.M >= Gemm.PackedMinRows && r.Gflops.ContainsKey(DType.F32) && !double.IsNaN(r.Blas)).ToList();
                if (gem.Count > 0)
                    output.WriteLine($"F32 / OpenBLAS: median {BenchUtil.F(BenchUtil.Median(gem.Select(r => r.Gflops[DType.F32] / r.Blas)), 2)}, " +
                        $"min {BenchUtil.F(gem.Min(r => r.Gflops[DType.F32] / r.Blas), 2)} over {gem.Count} shapes");
            }
            return 0;
        }
        finally { blas?.Dispose(); }
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

    static Row Measure(GemmShape s, GemmBenchOptions o, BlasReference? blas)
    {
        var row = new Row { Shape = s };
        blas?.BeginPrepare(s.M, s.N, s.K);
        var x = new float[(long)s.M * s.K];
        BenchUtil.FillUniform(x, 1f, 7);
        var y = new float[(long)s.M * s.N];
        var weights = o.DTypes.Select((d, i) => BenchUtil.RandomWeight(d, s.N, s.K, 100 + (ulong)i)).ToList();
        blas?.EndPrepare();

        var variants = new List<(string Name, Func<double> Once)>();
        for (int i = 0; i < weights.Count; i++)
        {
            var w = weights[i];
            row.WeightBytes[o.DTypes[i]] = w.Bytes;
            Gemm.MatMul(x, w, y, s.M); // warm (JIT, caches, page faults)
            variants.Add((Label(o.DTypes[i]), () => BenchUtil.CallsPerSecond(() => Gemm.MatMul(x, w, y, s.M), o.Seconds) * s.Flops / 1e9));
        }
        if (blas != null) variants.Add(("BLAS", () => blas.Run(o.Seconds)));

        var samples = variants.Select(_ => new List<double>()).ToList();
        for (int rep = 0; rep < o.Repeats; rep++)
            for (int j = 0; j < variants.Count; j++)
            {
                int v = (j + rep) % variants.Count; // rotate the order between repeats
                samples[v].Add(variants[v].Once());
            }
        for (int i = 0; i < weights.Count; i++) row.Gflops[o.DTypes[i]] = BenchUtil.Median(samples[i]);
        if (blas != null) row.Blas = BenchUtil.Median(samples[^1]);
        GC.KeepAlive(weights);
        return row;
    }

    static JsonObject ToJson(Row r, GemmBenchOptions o)
    {
        var s = r.Shape;
        var j = new JsonObject
        {
            ["bench"] = s.M >= Gemm.PackedMinRows ? "gemm" : "gemv",
            ["set"] = s.Set, ["shape"] = s.Name, ["m"] = s.M, ["n"] = s.N, ["k"] = s.K,
            ["threads"] = Parallelism.Threads, ["kernel"] = Gemm.KernelName,
        };
        foreach (var d in o.DTypes)
        {
            string l = Label(d).ToLowerInvariant();
            j[$"{l}_gflops"] = BenchUtil.J(r.Gflops[d]);
            j[$"{l}_weight_gbps"] = BenchUtil.J(r.Gbps(d));
            if (!double.IsNaN(r.Blas)) j[$"ratio_{l}"] = BenchUtil.J(r.Gflops[d] / r.Blas, 3);
        }
        j["openblas_gflops"] = BenchUtil.J(r.Blas);
        if (!double.IsNaN(r.Blas)) j["openblas_weight_gbps"] = BenchUtil.J(r.BlasGbps);
        return j;
    }

    static void PrintGemmHeader(TextWriter w, GemmBenchOptions o, bool blas)
    {
        w.WriteLine();
        w.Write($"{"set",-11} {"shape",-11} {"M",5} {"N",6} {"K",6}");
        foreach (var d in o.DTypes) w.Write($" {Label(d),7}");
        if (blas) { w.Write($" {"OpenBLAS",8}"); foreach (var d in o.DTypes) w.Write($" {Label(d) + "/BL",7}"); }
        w.WriteLine("   (GFLOP/s)");
    }

    static void PrintGemmRow(TextWriter w, Row r, GemmBenchOptions o, bool blas)
    {
        var s = r.Shape;
        w.Write($"{s.Set,-11} {s.Name,-11} {s.M,5} {s.N,6} {s.K,6}");
        foreach (var d in o.DTypes) w.Write($" {BenchUtil.F(r.Gflops[d]),7}");
        if (blas) { w.Write($" {BenchUtil.F(r.Blas),8}"); foreach (var d in o.DTypes) w.Write($" {BenchUtil.F(r.Gflops[d] / r.Blas, 2),7}"); }
        w.WriteLine();
    }

    static void PrintGemvHeader(TextWriter w, GemmBenchOptions o, bool blas)
    {
        w.WriteLine();
        w.Write($"{"decode",-14} {"shape",-11} {"M",2} {"N",6} {"K",6}");
        foreach (var d in o.DTypes) w.Write($" {Label(d) + " MB",8} {Label(d) + " GB/s",9}");
        if (blas) w.Write($" {"BLAS GB/s",9}");
        w.WriteLine("   (GB/s of weight bytes read per call)");
    }

    static void PrintGemvRow(TextWriter w, Row r, GemmBenchOptions o, bool blas)
    {
        var s = r.Shape;
        w.Write($"{s.Set,-14} {s.Name,-11} {s.M,2} {s.N,6} {s.K,6}");
        foreach (var d in o.DTypes) w.Write($" {BenchUtil.F(r.WeightBytes[d] / 1e6, 1),8} {BenchUtil.F(r.Gbps(d)),9}");
        if (blas) w.Write($" {BenchUtil.F(r.BlasGbps),9}");
        w.WriteLine();
    }
}
