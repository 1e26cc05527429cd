using LongCat.Config;
using LongCat.IO;
using LongCat.Kernels;

namespace LongCat.Model;

/// <summary>Reads named tensors from a checkpoint with the shapes the config implies, keeping stored dtypes.</summary>
public sealed unsafe class WeightLoader(Checkpoint checkpoint, LongCatConfig config) : IParameterSource
{
    bool IParameterSource.Contains(string name) => Checkpoint.Contains(name);
    Param IParameterSource.Linear(string name, int rows, int cols) => new(Linear(name, rows, cols));
    Param IParameterSource.Vector(string name, int length) => Param.Vector(name, Vector(name, length));

    public Checkpoint Checkpoint { get; } = checkpoint;
    public LongCatConfig Config { get; } = config;

    /// <summary>A linear weight [rows, cols]; FP8 weights bring their <c>weight_scale_inv</c> block scales, INT8 weights their per-row <c>weight_scale</c>.</summary>
    public Weight Linear(string name, int rows, int cols)
    {
        var t = Checkpoint.Tensor(name).ExpectShape(rows, cols);
        if (t.DType == DType.F8_E4M3)
        {
            var scaleName = name.EndsWith(".weight", StringComparison.Ordinal) ? name[..^".weight".Length] + ".weight_scale_inv" : name + "_scale_inv";
            int br = Config.WeightBlockSize?[0] ?? 128, bc = Config.WeightBlockSize?[1] ?? 128;
            if (!Checkpoint.Contains(scaleName))
                throw new ModelFormatException($"{Checkpoint.Folder}: FP8 tensor '{name}' has no block scales '{scaleName}'");
            var s = Checkpoint.Tensor(scaleName);
            if (s.DType != DType.F32)
                throw new ModelFormatException($"{s.File}: tensor '{scaleName}' has dtype {s.DType}, expected F32 scales");
            s.ExpectShape((rows + br - 1) / br, (cols + bc - 1) / bc);
            return new Weight(name, t.DType, rows, cols, t.Data, (float*)s.Data, br, bc);
        }
        if (t.DType == DType.I8)
        {
            // INT8 per output channel (LongCat.NET's format): <module>.weight_scale, F32 [rows, 1], value = q · scale[row].
            var scaleName = name.EndsWith(".weight", StringComparison.Ordinal) ? name[..^".weight".Length] + ".weight_scale" : name + "_scale";
            if (!Checkpoint.Contains(scaleName))
                throw new ModelFormatException($"{Checkpoint.Folder}: INT8 tensor '{name}' has no per-row scales '{scaleName}'");
            var s = Checkpoint.Tensor(scaleName);
            if (s.DType != DType.F32)
                throw new ModelFormatException($"{s.File}: tensor '{scaleName}' has dtype {s.DType}, expected F32 scales");
            s.ExpectShape(rows, 1);
            return new Weight(name, DType.I8, rows, cols, t.Data, (float*)s.Data);
        }
        if (t.DType is not (DType.F32 or DType.BF16 or DType.F16))
            throw new ModelFormatException($"{t.File}: tensor '{name}' has dtype {t.DType}; linear weights must be F32, BF16, F16, F8_E4M3 or I8");
        return new Weight(name, t.DType, rows, cols, t.Data);
    }

    /// <summary>A 1-D float vector (norm weight, bias) widened to F32.</summary>
    public float[] Vector(string name, int length)
    {
        var t = Checkpoint.Tensor(name).ExpectShape(length);
        if (!DTypes.IsFloat(t.DType))
            throw new ModelFormatException($"{t.File}: tensor '{name}' has dtype {t.DType}, expected a float dtype");
        return t.ToFloat32();
    }
}
