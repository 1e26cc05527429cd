using System.CommandLine;
using System.Diagnostics;
using LongCat.Cli.Commands;
using LongCat.Inference;

namespace LongCat.Cli.Bench;

/// <summary>
/// <c>longcat bench sample</c>: the sampler's cost per token (penalties, temperature, softmax and the top-k / top-p /
/// min-p filters) at a vocabulary of 8k (the demo model) and 131k, against the full-sort filter it replaced
/// (<see cref="SamplingReference"/>) measured in the same run, interleaved; also checks both give the same
/// distribution bit for bit.
/// </summary>
public static class SampleBench
{
    public static Command Create()
    {
        var reps = new Option<int>("--reps") { Description = "Timed rounds per setting (medians are reported).", DefaultValueFactory = _ => 15 };
        var cmd = new Command("sample", "Sampling cost per token (top-k / top-p / min-p) at 8k and 131k vocabularies, against a full sort measured in the same run.") { reps };
        cmd.SetAction(p => CliSupport.Run(p, () => Run(p.GetValue(reps))));
        return cmd;
    }

    static int Run(int reps)
    {
        if (reps < 1) throw new CliException($"--reps must be at least 1, got {reps}");
        (string Name, GenerationOptions O)[] settings =
        [
            ("top_k=50", new GenerationOptions { Temperature = 0.8f, TopK = 50 }),
            ("top_p=0.9", new GenerationOptions { Temperature = 0.8f, TopP = 0.9f }),
            ("top_k=40 top_p=0.95", new GenerationOptions { Temperature = 0.8f, TopK = 40, TopP = 0.95f }),
            ("min_p=0.05", new GenerationOptions { Temperature = 0.8f, MinP = 0.05f }),
            ("top_p=0.9 T=1.5", new GenerationOptions { Temperature = 1.5f, TopP = 0.9f }),
        ];
        Console.WriteLine("sampling cost per token, microseconds (median of interleaved rounds; logits ~ N(0, 3^2), 16 draws per round)");
        Console.WriteLine("(no filter = penalties, temperature and softmax only: the floor both filters add to)");
        Console.WriteLine($"{"vocab",7} {"setting",-22} {"no filter",10} {"full sort",10} {"selection",10} {"speedup",8}  same result");
        foreach (int vocab in new[] { 8192, 131072 })
        {
            var rng = new Random(1);
            var logits = Enumerable.Range(0, 16).Select(_ => Enumerable.Range(0, vocab).Select(_ => (float)(3 * Gaussian(rng))).ToArray()).ToArray();
            foreach (var (name, o) in settings)
            {
                var filtered = new Sampler(o, vocab, []);
                var plain = new Sampler(o with { TopK = 0, TopP = 1, MinP = 0 }, vocab, []);
                bool same = true;
                foreach (var l in logits)
                {
                    var want = plain.Distribution(l);
                    SamplingReference.FilterBySorting(want, o.TopK, o.TopP, o.MinP);
                    same &= want.AsSpan().SequenceEqual(filtered.Distribution(l));
                }
                var tRef = new List<double>();
                var tNew = new List<double>();
                var tBase = new List<double>();
                for (int r = 0; r < reps; r++)
                {
                    var sw = Stopwatch.StartNew();
                    foreach (var l in logits) { var p = plain.Distribution(l); SamplingReference.FilterBySorting(p, o.TopK, o.TopP, o.MinP); }
                    tRef.Add(sw.Elapsed.TotalMicroseconds / logits.Length);
                    sw.Restart();
                    foreach (var l in logits) filtered.Distribution(l);
                    tNew.Add(sw.Elapsed.TotalMicroseconds / logits.Length);
                    sw.Restart();
                    foreach (var l in logits) plain.Distribution(l);
                    tBase.Add(sw.Elapsed.TotalMicroseconds / logits.Length);
                }
                double a = Median(tRef), b = Median(tNew);
                Console.WriteLine($"{vocab,7} {name,-22} {Median(tBase),10:F1} {a,10:F1} {b,10:F1} {a / b,7:F1}x  {(same ? "yes" : "NO")}");
            }
        }
        return 0;
    }

    static double Gaussian(Random r) => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());

    static double Median(List<double> x)
    {
        var s = x.Order().ToList();
        return s[s.Count / 2];
    }
}
