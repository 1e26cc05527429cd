using LongCat.Config;

namespace LongCat.Model;

/// <summary>
/// Where the modules get their parameters: a checkpoint (<see cref="WeightLoader"/>, inference, stored dtypes kept) or
/// training's flat fp32 store (values and gradients). The network is built once from either.
/// </summary>
public interface IParameterSource
{
    LongCatConfig Config { get; }
    bool Contains(string name);
    /// <summary>A 2-D tensor [rows, cols].</summary>
    Param Linear(string name, int rows, int cols);
    /// <summary>A 1-D tensor [length] (F32 values).</summary>
    Param Vector(string name, int length);
}
