using LongCat.IO;
using LongCat.Kernels;

namespace LongCat.Model;

/// <summary>
/// One parameter tensor as a module sees it: its values as a <see cref="Kernels.Weight"/> view (a mapped checkpoint in
/// any stored dtype, or training's flat fp32 <c>ParameterStore</c>) and, when the model was built for training, the
/// fp32 gradient its backward adds to. A 1-D tensor (norm weight, router bias) is a one-row or one-column weight.
/// </summary>
public sealed unsafe class Param
{
    readonly float* _grad;
    UnmanagedMemory? _gradMemory;

    public Param(Weight weight, float* grad = null)
    {
        Weight = weight;
        _grad = grad;
    }

    /// <summary>An owned F32 vector [1, n] holding a copy of <paramref name="values"/> (inference norms and biases).</summary>
    public static Param Vector(string name, ReadOnlySpan<float> values) => new(Weight.FromFloats(name, values, 1, values.Length));

    public Weight Weight { get; }
    public string Name => Weight.Name;
    public int Rows => Weight.Rows;
    public int Cols => Weight.Cols;
    public int Count => Rows * Cols;

    /// <summary>True when the backward has a gradient to add to (the model was built over a training store).</summary>
    public bool HasGrad => _grad != null;

    /// <summary>The values, row-major (F32 parameters only: norms, biases, training's store).</summary>
    public ReadOnlySpan<float> Values => Weight.DType == DType.F32
        ? new ReadOnlySpan<float>(Weight.Data, Count)
        : throw new InvalidOperationException($"parameter '{Name}' is stored as {Weight.DType}; only F32 parameters expose their values");

    /// <summary>The gradient (same shape); backward passes add to it.</summary>
    public Span<float> Grad => _grad != null
        ? new Span<float>(_grad, Count)
        : throw new InvalidOperationException($"parameter '{Name}' has no gradient: the model was built for inference, not training");

    /// <summary>The gradient as <see cref="Memory{T}"/>, for the grouped GEMM kernels (one wrapper, made on first use).</summary>
    public Memory<float> GradMemory => _grad != null
        ? (_gradMemory ??= new UnmanagedMemory(_grad, Count)).Memory
        : throw new InvalidOperationException($"parameter '{Name}' has no gradient: the model was built for inference, not training");

    /// <summary>The values as <see cref="ReadOnlyMemory{T}"/> (F32 only, as <see cref="Values"/>).</summary>
    public ReadOnlyMemory<float> ValuesMemory => Weight.DType == DType.F32
        ? (_valuesMemory ??= new UnmanagedMemory((float*)Weight.Data, Count)).Memory
        : throw new InvalidOperationException($"parameter '{Name}' is stored as {Weight.DType}; only F32 parameters expose their values");
    UnmanagedMemory? _valuesMemory;

    /// <summary>Memory over native fp32 storage that outlives every use (the training store, a mapped checkpoint).</summary>
    sealed class UnmanagedMemory(float* p, int length) : System.Buffers.MemoryManager<float>
    {
        public override Span<float> GetSpan() => new(p, length);
        public override System.Buffers.MemoryHandle Pin(int elementIndex = 0) => new(p + elementIndex);
        public override void Unpin() { }
        protected override void Dispose(bool disposing) { }
    }
}
