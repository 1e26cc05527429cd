using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using LongCat.Cli.Commands;
using LongCat.Config;
using LongCat.Inference;
using LongCat.Model;
using LongCat.Tokenization;
using LongCat.Training;

namespace LongCat.Cli.Ablations;

/// <summary>The paper's ablations (spec section 4 and the paper's sections 2-3, 5), at a scale 2 CPU cores afford.</summary>
public static class Experiments
{
    public sealed record Entry(string Name, string Id, string Title, Func<Lab, AblateArgs, string> Run);

    /// <summary>What the command passes besides the lab.</summary>
    public sealed record AblateArgs(string OutDir, string? GivenMtpModel, int MtpPrompts)
    {
        /// <summary>The --model given, or the shipped base model's path as the reports name it.</summary>
        public string MtpModel => GivenMtpModel ?? LongCat.IO.DemoModels.BasePath;
    }

    public static readonly Entry[] All =
    [
        new("zero-experts", "A1", "A1. Zero-computation experts vs a fixed number of real experts", ZeroExperts),
        new("budget", "A2", "A2. Budget control of the activated experts", Budget),
        new("scmoe", "A3", "A3. Shortcut-connected MoE vs the interleaved MoE/dense topology", ScMoE),
        new("mla-scale", "A4", "A4. MLA latent scaling (alpha_q, alpha_kv) on vs off", MlaScale),
        new("growth", "A5", "A5. Model growth (half depth, stacked) vs random init at equal tokens", Growth),
        new("z-loss", "A6", "A6. Hidden z-loss against massive activations", ZLoss),
        new("adam-eps", "A7", "A7. Adam epsilon against the gradient RMS", AdamEps),
        new("mtp", "A9", "A9. MTP acceptance rate of a dense MTP head", Mtp),
        new("transfer", "T", "Hyperparameter transfer: LR sweep on a proxy, transferred to a 4x wider model", Transfer),
    ];

    static string Cmd(Entry e, Lab lab) => $"longcat ablate {e.Name} --steps {lab.Steps}";
    static Entry E(string name) => All.First(e => e.Name == name);
    static Report NewReport(string name, AblateArgs a) => new(name, E(name).Title, Path.Combine(a.OutDir, name));

    static IEnumerable<(double, double)> ValCurve(RunResult r) => r.Validation.Select(v => ((double)(r.Steps.FirstOrDefault(s => s.Step == v.Step)?.Tokens ?? v.Step), v.Loss));

    /// <summary>Train CE smoothed over a window of steps, against tokens.</summary>
    static IEnumerable<(double, double)> CeCurve(RunResult r, int window = 10)
    {
        for (int i = window - 1; i < r.Steps.Count; i += Math.Max(1, window / 2))
            yield return (r.Steps[i].Tokens, r.Steps.Skip(i - window + 1).Take(window).Average(s => s.Ce));
    }

    static string[] LossRow(RunResult r, params string[] extra) => [r.Label, .. extra, Lab.F(r.FinalValLoss), Lab.F(r.Tail(s => s.Ce))];

    // A1 ------------------------------------------------------------------------------------------------------------
    static string ZeroExperts(Lab lab, AblateArgs a)
    {
        var rep = NewReport("zero-experts", a);
        var b = lab.BaseConfig();
        var zc = lab.Run("zero-computation: 16 real + 8 zero, top-4, K_e = 3", b);
        var fixedRuns = new List<(int K, RunResult R)>();
        foreach (int k in new[] { 2, 3, 4 })
        {
            var c = Lab.Without(Lab.With(b, "model.zero_expert_num=0", $"model.moe_topk={k}", "budget.enabled=false"), "budget.target_real_experts");
            fixedRuns.Add((k, lab.Run($"fixed top-{k}: 16 real experts", c)));
        }
        double zcExperts = zc.Tail(s => s.RealExperts, 0.5);
        // The fixed-k loss interpolated at the zero-expert run's measured real experts per token.
        var pts = fixedRuns.Select(f => (X: f.R.Tail(s => s.RealExperts, 0.5), Y: f.R.FinalValLoss)).OrderBy(p => p.X).ToArray();
        double interp = Interp(pts, zcExperts);
        rep.Claim("zero-computation experts let a token use fewer real experts where it needs less compute; at the same average " +
                  "activated compute the model reaches a lower loss than one with a fixed number of real experts (paper section 2.1, Figure 3b).")
           .Setup($"base lab model (2 layers, width 128, 16 real experts of 64), {lab.Steps} steps x 2,048 tokens of the Python docs; " +
                  "the zero-expert model (top-4 of 16 real + 8 zero, budget K_e = 3) against 16 real experts with a fixed top-2/3/4. " +
                  "Real-expert FLOPs are forward FLOPs of the activated real experts per token (2 x 3 x H x F_e x experts x layers).")
           .Table(["run", "real experts/token", "expert MFLOP/token", "val loss", "train CE (last 20%)"],
                  [.. new[] { zc }.Concat(fixedRuns.Select(f => f.R)).Select(r =>
                  {
                      double e = r.Tail(s => s.RealExperts, 0.5);
                      return LossRow(r, Lab.F(e, 2), Lab.F(Lab.ExpertFlops(r.Config, e) / 1e6, 3));
                  })]);
        double delta = zc.FinalValLoss - interp;
        rep.Measured(string.Create(CultureInfo.InvariantCulture,
            $"at {zcExperts:F2} real experts/token the zero-expert model's validation loss is {zc.FinalValLoss:F4}; the fixed-k line interpolated " +
            $"there gives {interp:F4}: {(delta < 0 ? "lower by" : "higher by")} {Math.Abs(delta):F4} nats."))
           .Value("delta_vs_fixed_interpolated", delta)
           .Plot(new Chart("A1: loss vs activated real-expert compute", "expert MFLOP per token (forward)", "validation loss")
                    .Series("fixed top-k (k = 2, 3, 4)", fixedRuns.Select(f => (Lab.ExpertFlops(f.R.Config, f.R.Tail(s => s.RealExperts, 0.5)) / 1e6, f.R.FinalValLoss)), markers: true)
                    .Series("zero-computation experts (K_e = 3)", [(Lab.ExpertFlops(zc.Config, zcExperts) / 1e6, zc.FinalValLoss)], markers: true, line: false),
                 "a1-loss-vs-flops.svg", "A1 loss vs real-expert FLOPs")
           .Runs([zc, .. fixedRuns.Select(f => f.R)]);
        return rep.Save(Cmd(E("zero-experts"), lab));
    }

    static double Interp((double X, double Y)[] pts, double x)
    {
        if (pts.Length == 0) return double.NaN;
        if (x <= pts[0].X) return Line(pts[0], pts[Math.Min(1, pts.Length - 1)], x);
        for (int i = 1; i < pts.Length; i++) if (x <= pts[i].X) return Line(pts[i - 1], pts[i], x);
        return Line(pts[^Math.Min(2, pts.Length)], pts[^1], x);
        static double Line((double X, double Y) p, (double X, double Y) q, double x) => p.X == q.X ? p.Y : p.Y + (q.Y - p.Y) * (x - p.X) / (q.X - p.X);
    }

    // A2 ------------------------------------------------------------------------------------------------------------
    static string Budget(Lab lab, AblateArgs a)
    {
        var rep = NewReport("budget", a);
        var b = lab.BaseConfig();
        const double ke = 3.0;
        var runs = new List<RunResult>
        {
            lab.Run("controller on, mu 1 (cosine decay)", Lab.With(b, "budget.rate=1.0")),
            lab.Run("controller on, mu 0.05 (lab default)", b),
            lab.Run("controller on, mu 0.005", Lab.With(b, "budget.rate=0.005")),
            lab.Run("controller off", Lab.With(b, "budget.enabled=false")),
        };
        rep.Claim("the expert-bias PID-like controller (Eq. 2) holds the mean number of activated real experts at the target K_e " +
                  "(fluctuation < 1%), while the per-token number keeps a large spread (token-dependent compute).")
           .Setup($"base lab model, 16 real + 8 zero experts, top-4, target K_e = {ke}; {lab.Steps} steps. 'fluctuation' is the std of the " +
                  "per-step mean over the last 20% of steps, relative to K_e; 'per-token std' is the std over tokens of the real experts a token uses.")
           .Table(["run", "mean real experts (last 20%)", "deviation from K_e", "fluctuation", "per-token std", "val loss"],
                  runs.Select(r =>
                  {
                      double m = r.Tail(s => s.RealExperts);
                      return new[] { r.Label, Lab.F(m, 3), Report.Pct(Math.Abs(m - ke) / ke), Report.Pct(r.TailStd(s => s.RealExperts) / ke), Lab.F(r.Tail(s => s.ExpertsStd), 2), Lab.F(r.FinalValLoss) };
                  }));
        var on = runs[0];
        double Dev(RunResult r) => Math.Abs(r.Tail(s => s.RealExperts) - ke) / ke;
        double Fluct(RunResult r) => r.TailStd(s => s.RealExperts) / ke;
        string Within(double x) => x < 0.01 ? "within the paper's 1%" : "outside the paper's 1%";
        rep.Measured(string.Create(CultureInfo.InvariantCulture,
                $"{on.Label}: mean {on.Tail(s => s.RealExperts):F3} real experts per token over the last 20% of steps, {Report.Pct(Dev(on))} from K_e ({Within(Dev(on))}), " +
                $"step-to-step fluctuation {Report.Pct(Fluct(on))} ({Within(Fluct(on))}), per-token std {on.Tail(s => s.ExpertsStd):F2}; " +
                $"{runs[^1].Label}: mean {runs[^1].Tail(s => s.RealExperts):F2} ({Report.Pct(Dev(runs[^1]))} from K_e); " +
                $"{runs[1].Label}: mean {runs[1].Tail(s => s.RealExperts):F2} ({Report.Pct(Dev(runs[1]))} from K_e) after {lab.Steps} steps."))
           .Value("mean_real_experts", on.Tail(s => s.RealExperts))
           .Plot(Curves(new Chart("A2: mean real experts per token", "step", "real experts / token (mean over layers)"), runs, s => s.RealExperts).HLine(ke, "K_e"),
                 "a2-mean-experts.svg", "A2 mean real experts per token")
           .Plot(Curves(new Chart("A2: per-token spread of real experts", "step", "std over tokens of real experts / token"), runs, s => s.ExpertsStd),
                 "a2-per-token-std.svg", "A2 per-token std")
           .Runs(runs);
        return rep.Save(Cmd(E("budget"), lab));
    }

    static Chart Curves(Chart c, IEnumerable<RunResult> runs, Func<StepPoint, double> f)
    {
        foreach (var r in runs) c.Series(r.Label, r.Steps.Select(s => ((double)s.Step, f(s))));
        return c;
    }

    /// <summary>Two or more runs that should reach the same (or a ranked) loss: table + validation/train curves.</summary>
    static string CompareLoss(Lab lab, AblateArgs a, string name, string claim, string setup, List<RunResult> runs, string[] extraHeader,
        Func<RunResult, string[]> extra, string plotPrefix, Action<Report>? more = null)
    {
        var rep = NewReport(name, a);
        rep.Claim(claim).Setup(setup)
           .Table(["run", .. extraHeader, "val loss", "train CE (last 20%)"], runs.Select(r => LossRow(r, extra(r))));
        var first = runs[0];
        rep.Measured(string.Join("; ", runs.Skip(1).Select(r => string.Create(CultureInfo.InvariantCulture,
            $"{r.Label}: validation loss {r.FinalValLoss:F4} vs {first.FinalValLoss:F4} ({r.FinalValLoss - first.FinalValLoss:+0.0000;-0.0000} nats, " +
            $"{100 * (r.FinalValLoss - first.FinalValLoss) / first.FinalValLoss:+0.00;-0.00}%)"))) + ".");
        more?.Invoke(rep);
        var c = new Chart($"{E(name).Id}: loss", "tokens", "cross-entropy");
        for (int i = 0; i < runs.Count; i++) c.Series(runs[i].Label + " (train)", CeCurve(runs[i]), color: i);
        for (int i = 0; i < runs.Count; i++) c.Series(runs[i].Label + " (validation)", ValCurve(runs[i]), markers: true, dashed: true, color: i);
        rep.Plot(c, plotPrefix + "-loss.svg", E(name).Id + " loss curves").Runs(runs);
        return rep.Save(Cmd(E(name), lab));
    }

    // A3 ------------------------------------------------------------------------------------------------------------
    static string ScMoE(Lab lab, AblateArgs a)
    {
        var b = lab.BaseConfig();
        var runs = new List<RunResult>
        {
            lab.Run("ScMoE (shortcut)", b),
            lab.Run("interleaved MoE/dense", Lab.With(b, "model.ffn_topology=interleaved")),
        };
        string Params(RunResult r)
        {
            var c = LongCatConfig.Parse(r.Config["model"]!.ToJsonString(), r.Label);
            var p = new Planning.ParameterCount(c);
            return p.Total.ToString("N0", CultureInfo.InvariantCulture) + " / " + (p.Activated(3.0) / 1e6).ToString("F3", CultureInfo.InvariantCulture) + "M";
        }
        return CompareLoss(lab, a, "scmoe",
            "the shortcut connection (the MoE reads the first sublayer's normalised output and joins at the end of the layer) lets " +
            "communication overlap computation with no loss of quality: loss parity with the interleaved topology at equal parameters and compute (paper section 2.2, Figure 4).",
            $"base lab model; the interleaved layer is MLA, dense FFN (2x intermediate), MLA, MoE, each a residual sublayer (same parameters and activated compute); {lab.Steps} steps.",
            runs, ["params / activated at K_e = 3"], r => [Params(r)], "a3");
    }

    // A4 ------------------------------------------------------------------------------------------------------------
    static string MlaScale(Lab lab, AblateArgs a)
    {
        var b = lab.BaseConfig();
        var runs = new List<RunResult>
        {
            lab.Run("alpha scaling on", b),
            lab.Run("alpha scaling off", Lab.With(b, "model.mla_scale_q_lora=false", "model.mla_scale_kv_lora=false")),
        };
        return CompareLoss(lab, a, "mla-scale",
            "scaling the MLA latents by alpha_q = sqrt(H / r_q) and alpha_kv = sqrt(H / r_kv) corrects the variance mismatch of the low-rank " +
            "path, which matters for width scaling and improves convergence (paper section 2.3).",
            $"base lab model (H = 128, r_q = 64, r_kv = 32: alpha_q = {Math.Sqrt(2):F3}, alpha_kv = 2); {lab.Steps} steps.",
            runs, [], _ => [], "a4");
    }

    // A6 ------------------------------------------------------------------------------------------------------------
    static string ZLoss(Lab lab, AblateArgs a)
    {
        var b = lab.BaseConfig();
        var runs = new List<RunResult>
        {
            lab.Run("z-loss off", Lab.With(b, "loss.z_loss_lambda=0")),
            lab.Run("z-loss 1e-6", b),
            lab.Run("z-loss 1e-4", Lab.With(b, "loss.z_loss_lambda=1e-4")),
        };
        return CompareLoss(lab, a, "z-loss",
            "a hidden z-loss on the last layer's output suppresses massive activations without hurting the loss (paper section 3.1).",
            $"base lab model; lambda = 0, 1e-6, 1e-4 on the last layer's output before the final norm; {lab.Steps} steps.",
            runs, ["max abs(h), last 20%", "max abs(h), whole run"],
            r => [Lab.F(r.Tail(s => s.HiddenMaxAbs), 1), Lab.F(r.Steps.Max(s => s.HiddenMaxAbs), 1)], "a6",
            rep => rep.Plot(Curves(new Chart("A6: last-layer max |activation|", "step", "max |h|"), runs, s => s.HiddenMaxAbs), "a6-max-activation.svg", "A6 max activation"));
    }

    // A7 ------------------------------------------------------------------------------------------------------------
    static string AdamEps(Lab lab, AblateArgs a)
    {
        var rep = NewReport("adam-eps", a);
        var b = lab.BaseConfig();
        double[] eps = [1e-16, 1e-10, 1e-8, 1e-6, 1e-5, 1e-4, 1e-3];
        var runs = eps.Select(e => lab.Run($"eps {Lab.G(e)}", Lab.With(b, $"optimizer.eps={e.ToString("R", CultureInfo.InvariantCulture)}"))).ToList();
        var rms = runs[0].Steps.Select(s => s.GradRms).Where(double.IsFinite).OrderBy(x => x).ToArray();
        double med = rms.Length == 0 ? double.NaN : rms[rms.Length / 2];
        rep.Claim("Adam's epsilon must stay far below the gradient RMS: once eps approaches it the update shrinks and the loss degrades; LongCat uses eps = 1e-16 (paper section 3.1).")
           .Setup($"base lab model, {lab.Steps} steps, eps swept from 1e-16 to 1e-3; the gradient RMS is measured every step (median over the eps = 1e-16 run: {Lab.G(med)}, range {Lab.G(rms.FirstOrDefault())}..{Lab.G(rms.LastOrDefault())}).")
           .Table(["eps", "eps / median grad RMS", "val loss", "train CE (last 20%)"],
                  runs.Select((r, i) => new[] { Lab.G(eps[i]), Lab.G(eps[i] / med), Lab.F(r.FinalValLoss), Lab.F(r.Tail(s => s.Ce)) }));
        double baseLoss = runs[0].FinalValLoss;
        int firstBad = runs.FindIndex(r => r.FinalValLoss > baseLoss + 0.02);
        rep.Measured(firstBad < 0
                ? $"no eps up to {Lab.G(eps[^1])} moved the validation loss by more than 0.02 nats."
                : string.Create(CultureInfo.InvariantCulture,
                    $"the loss is flat up to eps = {Lab.G(eps[Math.Max(0, firstBad - 1)])} and degrades from eps = {Lab.G(eps[firstBad])} " +
                    $"(= {eps[firstBad] / med:G2} x the median gradient RMS): +{runs[firstBad].FinalValLoss - baseLoss:F4} nats, " +
                    $"+{runs[^1].FinalValLoss - baseLoss:F4} at {Lab.G(eps[^1])}."))
           .Value("median_grad_rms", med)
           .Plot(new Chart("A7: validation loss vs Adam epsilon", "Adam epsilon", "validation loss", logX: true)
                    .Series("validation loss", runs.Select((r, i) => (eps[i], r.FinalValLoss)), markers: true)
                    .VLine(med, "median grad RMS"),
                 "a7-eps.svg", "A7 loss vs epsilon")
           .Runs(runs);
        return rep.Save(Cmd(E("adam-eps"), lab));
    }

    // A5 ------------------------------------------------------------------------------------------------------------
    static string Growth(Lab lab, AblateArgs a)
    {
        var rep = NewReport("growth", a);
        var b = lab.BaseConfig();
        var deep = Lab.With(b, "model.num_layers=4");
        var random = lab.Run("random init, 4 layers", deep);
        long half = lab.Steps / 2;
        // The grown run: the 2-layer half trains the first half of the 4-layer run's schedule (same steps, LR schedule
        // and data order), is stacked to 4 layers with all its training state, and trains the second half.
        var grown = lab.Run("grown: 2 layers for half the tokens, stacked to 4", deep, variant: "grown-from-half-depth", body: (c, label) =>
        {
            var dir = c["out"]!.GetValue<string>();
            var small = Lab.With(c, "model.num_layers=2");
            small["out"] = Path.Combine(dir, "half");
            var so = TrainConfigFile.Parse(small.ToJsonString(), label + " (half depth)");
            string ck;
            double before, after;
            using (var t = Trainer.Create(so))
            {
                lab.Attach(t, label + " (half depth)");
                while (t.Step < half) t.TrainStep();
                before = t.Validate();
                ck = t.SaveCheckpoint();
            }
            var grownDir = Path.Combine(dir, "grown");
            var g = ModelGrowth.Grow(ck, grownDir, 2).Checkpoint;
            var go = TrainConfigFile.Parse(c.ToJsonString(), label);
            using (var t = Trainer.Create(go, g))
            {
                lab.Attach(t, label);
                after = t.Validate();
                t.Run();
            }
            File.WriteAllText(Path.Combine(dir, "growth.json"), new JsonObject { ["before"] = before, ["after"] = after }.ToJsonString());
            // One metrics file for the whole run: the half-depth steps, then the grown ones.
            var lines = File.ReadLines(Path.Combine(dir, "half", "metrics.jsonl")).Concat(File.ReadLines(Path.Combine(dir, "metrics.jsonl"))).ToList();
            File.WriteAllLines(Path.Combine(dir, "metrics.jsonl"), lines);
        });
        var jumpFile = Path.Combine(grown.Dir, "growth.json");
        var jumpJson = File.Exists(jumpFile) ? JsonNode.Parse(File.ReadAllText(jumpFile)) : null;
        (double Before, double After)? jump = jumpJson is null ? null : (jumpJson["before"]!.GetValue<double>(), jumpJson["after"]!.GetValue<double>());
        rep.Claim("training a half-depth model and stacking its layers (1..n, 1..n) with all training state carried over beats random " +
                  "initialisation at equal tokens: the loss jumps right after growth, then converges faster and ends lower (paper section 3.2, Figure 6).")
           .Setup($"base lab model at 4 layers; grown run: 2 layers for {half} steps, `longcat grow` (optimizer moments, step, schedule, data position " +
                  $"and router biases duplicated with their layers), then 4 layers for the remaining {lab.Steps - half} steps; both runs see the same " +
                  $"{lab.Steps} x 2,048 tokens in the same order.")
           .Table(["run", "val loss", "train CE (last 20%)"], [LossRow(random), LossRow(grown)]);
        double d = grown.FinalValLoss - random.FinalValLoss;
        var inv = CultureInfo.InvariantCulture;
        rep.Measured(string.Create(inv, $"final validation loss {grown.FinalValLoss:F4} grown vs {random.FinalValLoss:F4} random ({d:+0.0000;-0.0000} nats)") +
                (jump is { } j ? string.Create(inv, $"; at the growth step the validation loss went from {j.Before:F4} (2 layers) to {j.After:F4} (stacked, before any update)") : "") + ".")
           .Value("delta_grown_minus_random", d)
           .Plot(new Chart("A5: model growth vs random init", "tokens", "cross-entropy")
                    .Series("random init (train)", CeCurve(random), color: 0).Series("grown (train)", CeCurve(grown), color: 1)
                    .Series("random init (validation)", ValCurve(random), markers: true, dashed: true, color: 0)
                    .Series("grown (validation)", ValCurve(grown), markers: true, dashed: true, color: 1),
                 "a5-growth.svg", "A5 growth vs random init")
           .Runs([random, grown]);
        return rep.Save(Cmd(E("growth"), lab));
    }

    // A9 ------------------------------------------------------------------------------------------------------------
    static string Mtp(Lab lab, AblateArgs a)
    {
        var rep = NewReport("mtp", a);
        var dir = CliSupport.ResolveModel(a.GivenMtpModel);
        if (!File.Exists(Path.Combine(dir, "config.json"))) throw new CliException($"--model: {a.MtpModel} is not a model folder");
        using var model = LongCatModel.Load(dir);
        if (model.Mtp is null) throw new CliException($"--model: {a.MtpModel} has no MTP head (model.mtp.*)");
        var tok = Tokenizer.Load(dir);
        // Prompts: 48-token openings of every k-th document of the corpus (held-out or not: the head's acceptance is about
        // agreement with the main model, not about memorisation).
        var docs = TextCorpus.Documents(lab.Corpus, DocumentMode.File).ToList();
        int n = Math.Min(a.MtpPrompts, docs.Count), stride = Math.Max(1, docs.Count / n);
        var prompts = Enumerable.Range(0, n).Select(i => tok.EncodeToIds(docs[i * stride]).Take(48).ToArray()).Where(p => p.Length >= 8).ToList();
        var rows = new List<string[]>();
        var perPrompt = new List<(double, double)>();
        int greedyMismatches = 0;
        foreach (var (label, temp) in new[] { ("greedy", 0f), ("sampled, T = 0.7", 0.7f) })
        {
            long drafted = 0, accepted = 0, tokens = 0, forwards = 0;
            double specS = 0, plainS = 0;
            int mismatches = 0;
            for (int i = 0; i < prompts.Count; i++)
            {
                var o = new GenerationOptions { MaxTokens = 64, Temperature = temp, Seed = (ulong)(i + 1), StopTokenIds = [] };
                var sw = Stopwatch.StartNew();
                var spec = new GenerationSession(model, prompts[i], o with { Speculative = true });
                var ids = spec.Generate().Select(t => t.Id).ToArray();
                specS += sw.Elapsed.TotalSeconds;
                sw.Restart();
                var plain = new GenerationSession(model, prompts[i], o).Generate().Select(t => t.Id).ToArray();
                plainS += sw.Elapsed.TotalSeconds;
                if (temp == 0 && !ids.SequenceEqual(plain)) { mismatches++; greedyMismatches++; }
                var r = spec.Result!;
                drafted += r.DraftedTokens; accepted += r.AcceptedDrafts; tokens += ids.Length;
                forwards += ids.Length - r.AcceptedDrafts;
                if (temp == 0) perPrompt.Add((i, r.AcceptanceRate));
            }
            double acc = drafted == 0 ? 0 : (double)accepted / drafted;
            rows.Add([label, prompts.Count.ToString(CultureInfo.InvariantCulture), tokens.ToString(CultureInfo.InvariantCulture), Report.Pct(acc),
                Lab.F((double)tokens / Math.Max(1, forwards), 2), Lab.F(plainS / specS, 2), temp == 0 ? (mismatches == 0 ? "identical" : $"{mismatches} differ") : "-"]);
            rep.Value(temp == 0 ? "acceptance_greedy" : "acceptance_sampled", acc);
        }
        var cfg = model.Config;
        rep.Claim("a single dense MTP layer used as the draft model of speculative decoding reaches ~90% acceptance (paper section 6 and Table 5).")
           .Setup($"{a.MtpModel} ({cfg.NumLayers} layers, width {cfg.HiddenSize}; its MTP head is one dense layer trained with the MTP loss); " +
                  $"{prompts.Count} prompts of 48 tokens from the corpus, 64 new tokens each, one drafted token per step; wall time on this machine.")
           .Table(["decoding", "prompts", "tokens", "acceptance", "tokens per main-model step", "speed-up vs plain", "greedy output vs plain"], rows)
           .Measured($"greedy acceptance {rows[0][3]} ({rows[0][4]} tokens per main-model step), sampled at T = 0.7 {rows[1][3]}; " +
                     (greedyMismatches == 0
                         ? $"greedy speculative output equals the plain greedy output on all {prompts.Count} prompts; "
                         : $"greedy speculative output DIFFERS from the plain greedy output on {greedyMismatches} of {prompts.Count} prompts; ") +
                     $"speculative decoding ran at {rows[0][5]}x the plain greedy speed (wall time, same process, prompts alternating).")
           .Plot(new Chart("A9: MTP draft acceptance per prompt (greedy)", "prompt", "acceptance rate").Series("acceptance", perPrompt, markers: true, line: false),
                 "a9-acceptance.svg", "A9 acceptance per prompt");
        return rep.Save($"longcat ablate mtp --model {a.MtpModel}");
    }

    // Transfer ------------------------------------------------------------------------------------------------------
    static string Transfer(Lab lab, AblateArgs a)
    {
        var rep = NewReport("transfer", a);
        // Proxy: the lab model at width 32 (1 head); target: 4x wider by HyperparameterTransfer, which is the lab model's
        // own shape (width 128, 4 heads). 8 x 128 tokens per step: the sweep is ten runs.
        var proxy = Lab.With(lab.BaseConfig(), "model.hidden_size=32", "model.num_attention_heads=1", "model.q_lora_rank=16",
            "model.kv_lora_rank=8", "model.ffn_hidden_size=80", "model.expert_ffn_hidden_size=16", "data.batch_size=8", "data.micro_batch_size=8");
        double[] lrs = [2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2];
        string L(double lr) => lr.ToString("R", CultureInfo.InvariantCulture);
        var proxyRuns = lrs.Select(lr => lab.Run($"proxy width 32, lr {Lab.G(lr)}", Lab.With(proxy, $"optimizer.lr={L(lr)}"))).ToList();
        var targetRuns = lrs.Select(lr =>
        {
            var p = Lab.With(proxy, $"optimizer.lr={L(lr)}");
            var t = HyperparameterTransfer.Transfer(p, 128, "proxy", runOut: "").Config;
            return lab.Run($"target width 128 (transferred), lr {Lab.G(lr)}", t);
        }).ToList();
        // The control: the same wide model with the proxy's hyperparameters taken over as they are (no /s).
        var naiveRuns = lrs.Select(lr =>
        {
            var t = HyperparameterTransfer.Transfer(Lab.With(proxy, $"optimizer.lr={L(lr)}"), 128, "proxy", runOut: "").Config;
            t["groups"] = new JsonObject();
            return lab.Run($"target width 128 (not transferred), lr {Lab.G(lr)}", t);
        }).ToList();
        int bp = proxyRuns.Select((r, i) => (r.FinalValLoss, i)).Min().i;
        int bn = naiveRuns.Select((r, i) => (r.FinalValLoss, i)).Min().i;
        int bt = targetRuns.Select((r, i) => (r.FinalValLoss, i)).Min().i;
        rep.Claim("with the width transfer rules of Table 1 (hidden and unembedding init variance and LR divided by s = width ratio, embedding kept) " +
                  "the learning rate tuned on a narrow proxy is (near) optimal for the wide model (paper section 3.1; LongCat tuned at 768, trained at 6144).")
           .Setup($"proxy: the lab model at width 32 (1 head); target: `longcat transfer --width 128` of each proxy config (the lab model's shape) (s = 4: width dims x4, hidden/router/unembedding LR and " +
                  $"init variance /4); the same base LR grid {string.Join(", ", lrs.Select(Lab.G))} on both; {lab.Steps} steps of 8 x 128 tokens each.")
           .Table(["base LR", "proxy (w32) val loss", "target (w128, transferred) val loss", "target (w128, proxy's multipliers as they are) val loss"],
                  lrs.Select((lr, i) => new[] { Lab.G(lr) + (i == bp ? " (proxy best)" : ""), Lab.F(proxyRuns[i].FinalValLoss),
                      Lab.F(targetRuns[i].FinalValLoss) + (i == bt ? " (best)" : ""), Lab.F(naiveRuns[i].FinalValLoss) + (i == bn ? " (best)" : "") }));
        double gap = targetRuns[bp].FinalValLoss - targetRuns[bt].FinalValLoss;
        rep.Measured($"the proxy's best base LR is {Lab.G(lrs[bp])}; the wide model's best is {Lab.G(lrs[bt])}" +
                (bp == bt ? ": the same grid point." : $"; at the proxy's LR the wide model is {Lab.F(gap)} nats from its best.") +
                $" Without the transfer rules (every group at the base LR and init variance) the wide model's best is {Lab.G(lrs[bn])} " +
                $"({Lab.F(naiveRuns[bn].FinalValLoss)}), and at the proxy's best LR it reaches {Lab.F(naiveRuns[bp].FinalValLoss)} vs {Lab.F(targetRuns[bp].FinalValLoss)} transferred.")
           .Value("target_gap_at_proxy_best", gap)
           .Plot(new Chart("Transfer: validation loss vs base LR", "base learning rate", "validation loss", logX: true)
                    .Series("proxy, width 32", lrs.Select((lr, i) => (lr, proxyRuns[i].FinalValLoss)), markers: true)
                    .Series("target, width 128 (transferred)", lrs.Select((lr, i) => (lr, targetRuns[i].FinalValLoss)), markers: true)
                    .Series("target, width 128 (not transferred)", lrs.Select((lr, i) => (lr, naiveRuns[i].FinalValLoss)), markers: true, dashed: true)
                    .VLine(lrs[bp], "proxy best"),
                 "transfer-lr.svg", "LR sweep, proxy vs transferred target")
           .Runs([.. proxyRuns, .. targetRuns, .. naiveRuns]);
        return rep.Save(Cmd(E("transfer"), lab));
    }
}
