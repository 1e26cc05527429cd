using System.CommandLine;
using LongCat.IO;
using LongCat.Model;

namespace LongCat.Cli.Commands;

/// <summary><c>longcat forward</c>: the parity tool. input_ids in, every reference output out, fixture format.</summary>
public static class ForwardCommand
{
    public static Command Create()
    {
        var model = CliSupport.RequiredPath("--model", "Checkpoint folder (config.json + model.safetensors or shards).");
        var input = CliSupport.RequiredPath("--input", "safetensors file with 'input_ids' (I64 or I32, shape [B, S]).");
        var output = CliSupport.RequiredPath("--output", "safetensors file to write: logits, hidden_after_layer_L, final_hidden, router_topk_*.");
        var cmd = new Command("forward", "Run the model on input_ids and write logits, per-layer hidden states and router choices (the fixtures' format).")
        {
            model, input, output,
        };
        cmd.SetAction(p => CliSupport.Run(p, () => Run(p.GetValue(model)!, p.GetValue(input)!, p.GetValue(output)!)));
        return cmd;
    }

    static int Run(string modelDir, string inputPath, string outputPath)
    {
        using var m = LongCatModel.Load(modelDir);
        var c = m.Config;
        var (ids, ints, b, s) = InputIds.Read(inputPath, c.VocabSize);
        var r = m.Forward(ints, b, s, new ForwardOptions { KeepHiddenStates = true, KeepRouting = true });
        var w = new SafeTensorsWriter();
        w.Metadata["producer"] = "longcat forward";
        var floats = new List<(string Name, float[] Data)>();
        var longs = new List<(string Name, long[] Data)>();
        w.AddI64("input_ids", ids, b, s);
        w.AddF32("logits", r.Logits, b, s, c.VocabSize);
        floats.Add(("logits", r.Logits));
        for (int l = 0; l < c.NumLayers; l++)
        {
            w.AddF32($"hidden_after_layer_{l}", r.HiddenAfterLayer[l], b, s, c.HiddenSize);
            floats.Add(($"hidden_after_layer_{l}", r.HiddenAfterLayer[l]));
        }
        w.AddF32("final_hidden", r.FinalHidden, b, s, c.HiddenSize);
        floats.Add(("final_hidden", r.FinalHidden));
        for (int l = 0; l < c.NumLayers; l++)
        {
            var (idx, wt) = RouterOutputs.SortedTopK(r.Routing[l]);
            w.AddI64($"router_topk_indices_layer_{l}", idx, b * s, c.MoeTopK);
            w.AddF32($"router_topk_weights_layer_{l}", wt, b * s, c.MoeTopK);
            longs.Add(($"router_topk_indices_layer_{l}", idx));
            floats.Add(($"router_topk_weights_layer_{l}", wt));
        }
        w.Save(outputPath);
        Console.WriteLine($"wrote {outputPath}: logits [{b}, {s}, {c.VocabSize}], {c.NumLayers} layers of hidden states and router top-{c.MoeTopK}");
        CompareWithReference(inputPath, floats, longs);
        return 0;
    }

    /// <summary>
    /// When the input file also holds reference outputs under the same names (as the fixtures' expected.safetensors
    /// does), prints the max |difference| of each and whether the expert choices are identical.
    /// </summary>
    static void CompareWithReference(string inputPath, List<(string Name, float[] Data)> floats, List<(string Name, long[] Data)> longs)
    {
        using var inp = SafeTensorFile.Open(inputPath);
        if (!floats.Any(f => inp.Contains(f.Name)) && !longs.Any(l => inp.Contains(l.Name))) return;
        Console.WriteLine($"compared with the reference tensors in {inputPath}:");
        foreach (var (name, data) in floats)
        {
            if (!inp.Contains(name)) continue;
            var t = inp.Tensor(name);
            if (t.ElementCount != data.Length || !DTypes.IsFloat(t.DType)) { Console.WriteLine($"  {name,-32} shape or dtype differs ({t.DType} {t.Info.ShapeText})"); continue; }
            var refv = t.ToFloat32();
            double maxDiff = 0, maxRef = 0;
            for (int i = 0; i < data.Length; i++)
            {
                maxDiff = Math.Max(maxDiff, Math.Abs((double)data[i] - refv[i]));
                maxRef = Math.Max(maxRef, Math.Abs((double)refv[i]));
                if (double.IsNaN(data[i]) != double.IsNaN(refv[i])) maxDiff = double.PositiveInfinity;
            }
            Console.WriteLine($"  {name,-32} max |diff| {maxDiff.ToString("E2", System.Globalization.CultureInfo.InvariantCulture)}  (max |ref| {maxRef.ToString("G4", System.Globalization.CultureInfo.InvariantCulture)})");
        }
        foreach (var (name, data) in longs)
        {
            if (!inp.Contains(name)) continue;
            var t = inp.Tensor(name);
            if (t.ElementCount != data.Length) { Console.WriteLine($"  {name,-32} shape differs ({t.Info.ShapeText})"); continue; }
            var refv = t.ToInt64();
            int rowsDiffer = 0, k = (int)(t.Shape.Length == 2 ? t.Shape[1] : 1);
            for (int row = 0; row * k < data.Length; row++)
                if (!data.AsSpan(row * k, k).SequenceEqual(refv.AsSpan(row * k, k))) rowsDiffer++;
            Console.WriteLine($"  {name,-32} {(rowsDiffer == 0 ? "identical expert sets" : $"{rowsDiffer} rows choose different experts")}");
        }
    }
}
