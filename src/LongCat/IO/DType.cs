namespace LongCat.IO;

/// <summary>Element types of the safetensors format that this project knows.</summary>
public enum DType
{
    F32, F16, BF16, F8_E4M3, I64, I32, F64, I16, I8, U8, BOOL,
}

/// <summary>Names and sizes of <see cref="DType"/> values as spelled in safetensors headers.</summary>
public static class DTypes
{
    public static int SizeOf(DType t) => t switch
    {
        DType.F64 or DType.I64 => 8,
        DType.F32 or DType.I32 => 4,
        DType.F16 or DType.BF16 or DType.I16 => 2,
        DType.F8_E4M3 or DType.I8 or DType.U8 or DType.BOOL => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    public static string Name(DType t) => t.ToString();

    public static bool TryParse(string s, out DType t)
    {
        // Enum.TryParse would also accept numbers and other casings: the format spells dtypes exactly.
        foreach (var v in Enum.GetValues<DType>())
            if (s == v.ToString()) { t = v; return true; }
        t = default;
        return false;
    }

    public static bool IsFloat(DType t) => t is DType.F32 or DType.F16 or DType.BF16 or DType.F8_E4M3 or DType.F64;
}
