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
    /// <summary>The pass had a backward (its attention row includes the attention backward).</summary>
    public bool Backward { get; private init; }
    public IReadOnlyList<Phase> Gemms { get; private init; } = [];
    public double GemmSeconds => Gemms.Sum(p => p.Seconds);
    public double GemmFlops => Gemms.Sum(p => p.Flops);
    public double OtherSeconds => Math.Max(0, Seconds - GemmSeconds - AttentionSeconds);

    /// <summary>
    /// Runs <paramref name="pass"/> once with the observers on. Forward GEMMs are split by kind of weight when
    /// <paramref name="model"/> is given (else one "forward" row); with <paramref name="backward"/>, the backward GEMMs
    /// (<see cref="GemmGrad.Observer"/>) get their own rows, dX and dW.
    /// </summary>
    public static PhaseProfile Measure(LongCatModel? model, Action pass, bool backward = false)
    {
        var category = new Dictionary<Weight, string>(ReferenceEqualityComparer.Instance);
        if (model != null)
        {
            foreach (var layer in model.Layers)
            {
                foreach (var a in layer.Attention) foreach (var w in a.Linears) category[w] = "attention projections";
                foreach (var m in layer.Mlps) foreach (var w in m.Linears) category[w] = "dense FFN";
                category[layer.Moe.Classifier] = "router";
                foreach (var e in layer.Moe.Experts) foreach (var w in e.Linears) category[w] = "MoE experts";
            }
            category[model.LmHead] = "lm_head";
        }
        string other = model != null ? "other GEMM" : "forward";
        var ticks = new Dictionary<string, (long Ticks, double Flops, double Bytes, int Calls)>();
        void Add(string k, long t, double flops, double bytes)
        {
            lock (ticks)
            {
                var v = ticks.GetValueOrDefault(k);
                ticks[k] = (v.Ticks + t, v.Flops + flops, v.Bytes + bytes, v.Calls + 1);
            }
        }
        Gemm.Observer = (w, m, t) => Add(category.GetValueOrDefault(w, other), t, 2.0 * m * w.Rows * w.Cols, w.Bytes);
        if (backward) GemmGrad.Observer = (isDw, flops, t) => Add(isDw ? "backward dW" : "backward dX", t, flops, 0);
        long attnTicks = 0;
        Attention.Observer = t => Interlocked.Add(ref attnTicks, t);
        long t0 = Stopwatch.GetTimestamp();
        try { pass(); }
        finally { Gemm.Observer = null; GemmGrad.Observer = null; Attention.Observer = null; }
        double f = Stopwatch.Frequency;
        return new PhaseProfile
        {
            Seconds = (Stopwatch.GetTimestamp() - t0) / f,
            AttentionSeconds = attnTicks / f,
            Backward = backward,
            Gemms = [.. ticks.OrderByDescending(p => p.Value.Ticks).Select(p => new Phase(p.Key, p.Value.Ticks / f, p.Value.Calls, p.Value.Flops, p.Value.Bytes))],
        };
    }

    const string Other = "other non-GEMM (norms, rope, routing, gathers)";

    string AttentionCore => Backward ? "attention core (QK, softmax, PV), forward and backward" : "attention core (QK, softmax, PV)";

    /// <summary>
    /// What is neither GEMM nor attention, as one row, or as the rows of <paramref name="split"/> where the caller
    /// timed its parts (a training step: the optimizer apart from the rest of forward and backward).
    /// </summary>
    IEnumerable<(string Name, double Seconds)> Rest(IReadOnlyList<(string Name, double Seconds)>? split) =>
        split ?? [(Other, OtherSeconds)];

    /// <summary>The table: seconds, share of the pass, calls, GFLOP/s and GB/s of weight bytes read by the GEMMs.</summary>
    public void Print(TextWriter o, IReadOnlyList<(string Name, double Seconds)>? split = null)
    {
        var ci = CultureInfo.InvariantCulture;
        o.WriteLine($"  {"phase",-72} {"seconds",8} {"share",6} {"calls",6} {"GFLOP/s",8} {"weight GB/s",11}");
        foreach (var p in Gemms)
            o.WriteLine($"  {"GEMM " + p.Name,-72} {p.Seconds.ToString("F4", ci),8} {(p.Seconds / Seconds).ToString("P0", ci),6} {p.Calls,6} " +
                $"{BenchUtil.F(p.Flops / p.Seconds / 1e9),8} {(p.WeightBytes > 0 ? BenchUtil.F(p.WeightBytes / p.Seconds / 1e9) : ""),11}");
        foreach (var (name, sec) in Rest(split).Prepend((AttentionCore, AttentionSeconds)))
            o.WriteLine($"  {name,-72} {sec.ToString("F4", ci),8} {(sec / Seconds).ToString("P0", ci),6}");
    }

    public JsonObject ToJson(IReadOnlyList<(string Name, double Seconds)>? split = null)
    {
        var phases = new JsonObject();
        foreach (var p in Gemms)
            phases["GEMM " + p.Name] = new JsonObject
            {
                ["seconds"] = Math.Round(p.Seconds, 5), ["calls"] = p.Calls, ["gflops"] = BenchUtil.J(p.Flops / p.Seconds / 1e9),
                ["weight_gb_per_s"] = p.WeightBytes > 0 ? BenchUtil.J(p.WeightBytes / p.Seconds / 1e9) : null,
            };
        foreach (var (name, sec) in Rest(split).Prepend((AttentionCore, AttentionSeconds)))
            phases[name] = new JsonObject { ["seconds"] = Math.Round(sec, 5) };
        return phases;
    }
}
