using LongCat.IO;

namespace LongCat.Cli.Commands;

/// <summary>The <c>input_ids</c> tensor of a parity-tool input file (I64 or I32, [B, S]), validated against a vocabulary.</summary>
public sealed record InputIds(long[] Raw, int[] Ids, int Batch, int SeqLen)
{
    /// <summary>Reads and checks input_ids; <paramref name="minSeqLen"/> is 2 for next-token losses.</summary>
    public static InputIds Read(string path, int vocabSize, int minSeqLen = 1)
    {
        using var inp = SafeTensorFile.Open(path);
        if (!inp.Contains("input_ids"))
            throw new ModelFormatException($"{path}: missing tensor 'input_ids'");
        var t = inp.Tensor("input_ids");
        if (t.DType is not (DType.I64 or DType.I32))
            throw new ModelFormatException($"{path}: tensor 'input_ids' has dtype {t.DType}, expected I64 or I32");
        if (t.Shape.Length != 2 || t.Shape[0] <= 0 || t.Shape[1] <= 0)
            throw new ModelFormatException($"{path}: tensor 'input_ids' has shape {t.Info.ShapeText}, expected [B, S] with B, S > 0");
        // The checked casts below would otherwise escape as an OverflowException (a crash, not an error line).
        if (t.ElementCount > int.MaxValue)
            throw new ModelFormatException($"{path}: tensor 'input_ids' has shape {t.Info.ShapeText}: more than {int.MaxValue} tokens");
        int b = checked((int)t.Shape[0]), s = checked((int)t.Shape[1]);
        if (s < minSeqLen)
            throw new CliException($"{path}: input_ids has sequences of {s} token; the next-token loss needs at least {minSeqLen} per sequence");
        var raw = t.ToInt64();
        var ids = new int[raw.Length];
        for (int i = 0; i < raw.Length; i++)
        {
            if (raw[i] < 0 || raw[i] >= vocabSize)
                throw new CliException($"{path}: input_ids[{i / s}, {i % s}] = {raw[i]} is outside the vocabulary 0..{vocabSize - 1}");
            ids[i] = (int)raw[i];
        }
        return new InputIds(raw, ids, b, s);
    }
}
