using System.CommandLine;
using System.Globalization;
using LongCat.IO;
using LongCat.Training;

namespace LongCat.Cli.Commands;

/// <summary>
/// <c>longcat grad</c>: the parity tool for gradients. input_ids in; the mean next-token cross-entropy (the fixtures'
/// loss) and d loss / d parameter for every parameter out, under the official names (grads.safetensors format).
/// </summary>
public static class GradCommand
{
    public static Command Create()
    {
        var model = CliSupport.RequiredPath("--model", "Checkpoint folder (config.json + model.safetensors or shards); any stored dtype, widened to fp32.");
        var input = CliSupport.RequiredPath("--input", "safetensors file with 'input_ids' (I64 or I32, shape [B, S], S >= 2).");
        var output = CliSupport.RequiredPath("--output", "safetensors file to write: 'loss' (F32 scalar) and one F32 gradient per parameter, official names.");
        var cmd = new Command("grad",
            "Compute the mean next-token cross-entropy over input_ids (logits[b, t] predicts input_ids[b, t+1]) and its gradient " +
            "w.r.t. every parameter (experts one by one; none for e_score_correction_bias): the fixtures' grads.safetensors format.")
        {
            model, input, output,
        };
        cmd.SetAction(p => CliSupport.Run(p, () => Run(p.GetValue(model)!, p.GetValue(input)!, p.GetValue(output)!)));
        return cmd;
    }

    static int Run(string modelDir, string inputPath, string outputPath)
    {
        long[] ids;
        int b, s;
        float? referenceLoss = null;
        using (var inp = SafeTensorFile.Open(inputPath))
        {
            if (!inp.Contains("input_ids"))
                throw new ModelFormatException($"{inputPath}: missing tensor 'input_ids'");
            var t = inp.Tensor("input_ids");
            if (t.DType is not (DType.I64 or DType.I32))
                throw new ModelFormatException($"{inputPath}: tensor 'input_ids' has dtype {t.DType}, expected I64 or I32");
            if (t.Shape.Length != 2 || t.Shape[0] <= 0 || t.Shape[1] <= 0)
                throw new ModelFormatException($"{inputPath}: tensor 'input_ids' has shape {t.Info.ShapeText}, expected [B, S] with B, S > 0");
            b = checked((int)t.Shape[0]); s = checked((int)t.Shape[1]);
            if (s < 2)
                throw new CliException($"{inputPath}: input_ids has sequences of {s} token; the next-token loss needs at least 2 per sequence");
            ids = t.ToInt64();
            // A fixture's expected.safetensors also holds the reference loss: report how far ours is.
            if (inp.Contains("loss") && inp.Tensor("loss").ElementCount == 1 && DTypes.IsFloat(inp.Tensor("loss").DType))
                referenceLoss = inp.Tensor("loss").ToFloat32()[0];
        }
        using var m = TrainableModel.Load(modelDir);
        var c = m.Config;
        var ints = new int[ids.Length];
        for (int i = 0; i < ids.Length; i++)
        {
            if (ids[i] < 0 || ids[i] >= c.VocabSize)
                throw new CliException($"{inputPath}: input_ids[{i / s}, {i % s}] = {ids[i]} is outside the vocabulary 0..{c.VocabSize - 1}");
            ints[i] = (int)ids[i];
        }
        var loss = m.ForwardBackward(ints, b, s);
        var meta = new Dictionary<string, string>
        {
            ["producer"] = "longcat grad",
            ["loss"] = "mean over B*(S-1) of cross_entropy(logits[:, t], input_ids[:, t+1])",
            ["content"] = "d loss / d parameter, official names",
        };
        m.Parameters.SaveGradients(outputPath, (float)loss.CrossEntropy, meta);
        int tensors = m.Parameters.Table.Entries.Count(e => e.Trainable);
        var line = $"wrote {outputPath}: loss {loss.CrossEntropy.ToString("F6", CultureInfo.InvariantCulture)}, {tensors} gradient tensors " +
                   $"({m.Parameters.Table.TrainableCount:N0} values) for input_ids [{b}, {s}]";
        if (referenceLoss is { } r)
            line += $"; reference loss {r.ToString("F6", CultureInfo.InvariantCulture)}, |diff| {Math.Abs(loss.CrossEntropy - r).ToString("E2", CultureInfo.InvariantCulture)}";
        Console.WriteLine(line);
        return 0;
    }
}
