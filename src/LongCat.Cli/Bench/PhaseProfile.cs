using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using LongCat.Kernels;
using LongCat.Model;

namespace LongCat.Cli.Bench;

/// <summary>
/// Where one pass of the model spends its time: GEMM time, calls, FLOPs and weight bytes by kind of weight (dense
/// FFN, experts, attention projections, router, lm_head), the attention core, and the rest (norms, rope, routing,
/// gathers, thread hand-offs). The numbers come from <see cref="Gemm.Observer"/> and <see cref="Attention.Observer"/>
/// during the pass, so they are measured, not modelled. Used by <c>bench forward</c> (a prefill) and <c>bench serve</c>
/// (one batched decode step).
/// </summary>
sealed class PhaseProfile
{
    public sealed record Phase(string Name, double Seconds, int Calls, double Flops, double WeightBytes);

    public double Seconds { get; private init; }
    public double AttentionSeconds { get; private init; }
    public IReadOnlyList<Phase> Gemms { get; private init; } = [];
    public double GemmSeconds => Gemms.Sum(p => p.Seconds);
    public double GemmFlops => Gemms.Sum(p => p.Flops);
    public double OtherSeconds => Math.Max(0, Seconds - GemmSeconds - AttentionSeconds);

    /// <summary>Runs <paramref name="pass"/> once with the observers on.</summary>
    public static PhaseProfile Measure(LongCatModel model, Action pass)
    {
        var category = new Dictionary<Weight, string>(ReferenceEqualityComparer.Instance);
        foreach (var layer in model.Layers)
        {
            foreach (var a in layer.Attention) foreach (var w in a.Linears) category[w] = "attention projections";
            foreach (var m in layer.Mlps) foreach (var w in m.Linears) category[w] = "dense FFN";
            category[layer.Moe.Classifier] = "router";
            foreach (var e in layer.Moe.Experts) foreach (var w in e.Linears) category[w] = "MoE experts";
        }
        category[model.LmHead] = "lm_head";
        var ticks = new Dictionary<string, (long Ticks, double Flops, double Bytes, int Calls)>();
        var gate = new object();
        Gemm.Observer = (w, m, t) =>
        {
            string k = category.GetValueOrDefault(w, "other GEMM");
            lock (gate)
            {
                var v = ticks.GetValueOrDefault(k);
                ticks[k] = (v.Ticks + t, v.Flops + 2.0 * m * w.Rows * w.Cols, v.Bytes + w.Bytes, v.Calls + 1);
            }
        };
        long attnTicks = 0;
        Attention.Observer = t => Interlocked.Add(ref attnTicks, t);
        long t0 = Stopwatch.GetTimestamp();
        try { pass(); }
        finally { Gemm.Observer = null; Attention.Observer = null; }
        double f = Stopwatch.Frequency;
        return new PhaseProfile
        {
            Seconds = (Stopwatch.GetTimestamp() - t0) / f,
            AttentionSeconds = attnTicks / f,
            Gemms = [.. ticks.OrderByDescending(p => p.Value.Ticks).Select(p => new Phase(p.Key, p.Value.Ticks / f, p.Value.Calls, p.Value.Flops, p.Value.Bytes))],
        };
    }

    const string AttentionCore = "attention core (QK, softmax, PV)", Other = "other non-GEMM (norms, rope, routing, gathers)";

    /// <summary>The table: seconds, share of the pass, calls, GFLOP/s and GB/s of weight bytes read by the GEMMs.</summary>
    public void Print(TextWriter o)
    {
        var ci = CultureInfo.InvariantCulture;
        o.WriteLine($"  {"phase",-50} {"seconds",8} {"share",6} {"calls",6} {"GFLOP/s",8} {"weight GB/s",11}");
        foreach (var p in Gemms)
            o.WriteLine($"  {"GEMM " + p.Name,-50} {p.Seconds.ToString("F4", ci),8} {(p.Seconds / Seconds).ToString("P0", ci),6} {p.Calls,6} " +
                $"{BenchUtil.F(p.Flops / p.Seconds / 1e9),8} {BenchUtil.F(p.WeightBytes / p.Seconds / 1e9),11}");
        o.WriteLine($"  {AttentionCore,-50} {AttentionSeconds.ToString("F4", ci),8} {(AttentionSeconds / Seconds).ToString("P0", ci),6}");
        o.WriteLine($"  {Other,-50} {OtherSeconds.ToString("F4", ci),8} {(OtherSeconds / Seconds).ToString("P0", ci),6}");
    }

    public JsonObject ToJson()
    {
        var phases = new JsonObject();
        foreach (var p in Gemms)
            phases[p.Name] = new JsonObject
            {
                ["seconds"] = Math.Round(p.Seconds, 5), ["calls"] = p.Calls,
                ["gflops"] = BenchUtil.J(p.Flops / p.Seconds / 1e9), ["weight_gb_per_s"] = BenchUtil.J(p.WeightBytes / p.Seconds / 1e9),
            };
        phases[AttentionCore] = new JsonObject { ["seconds"] = Math.Round(AttentionSeconds, 5) };
        phases[Other] = new JsonObject { ["seconds"] = Math.Round(OtherSeconds, 5) };
        return phases;
    }
}
