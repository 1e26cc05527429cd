using LongCat.IO;
using LongCat.Kernels;
using LongCat.Model;

namespace LongCat.Training;

/// <summary>
/// One tensor's views into a <see cref="ParameterStore"/>: its values, its gradient, and an F32 <see cref="Weight"/>
/// over the values so the forward runs the same GEMM kernels as inference. Valid while the store is alive.
/// </summary>
public sealed unsafe class ParameterTensor
{
    readonly float* _value, _grad;

    internal ParameterTensor(ParameterEntry entry, float* value, float* grad, object owner)
    {
        Entry = entry;
        _value = value;
        _grad = grad;
        Weight = new Weight(entry.Name, DType.F32, entry.Rows, entry.Cols, (byte*)value, owner: owner);
        Param = new Param(Weight, grad);
    }

    /// <summary>The tensor as a module parameter: values and gradient.</summary>
    public Param Param { get; }

    public ParameterEntry Entry { get; }
    public string Name => Entry.Name;
    public int Rows => Entry.Rows;
    public int Cols => Entry.Cols;
    public int Count => Entry.Count;

    /// <summary>The values, row-major.</summary>
    public Span<float> Value => new(_value, Count);

    /// <summary>The gradient (same shape); backward passes add to it.</summary>
    public Span<float> Grad => new(_grad, Count);

    /// <summary>The values as an F32 weight [Rows, Cols] for <see cref="Gemm"/>.</summary>
    public Weight Weight { get; }
}
