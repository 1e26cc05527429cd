using LongCat.Model;

namespace LongCat.Training;

/// <summary>
/// One tensor of the flat parameter buffer: its official checkpoint name, where it starts (in floats) and its shape.
/// </summary>
/// <param name="Name">Official Hugging Face name, e.g. <c>model.layers.0.self_attn.1.q_b_proj.weight</c>.</param>
/// <param name="Offset">First float of the tensor in the flat buffers (values and gradients share the layout).</param>
/// <param name="Shape">Dimensions, outermost first ([out, in] for linear weights).</param>
/// <param name="Kind">What the tensor is (decides initialisation and whether it is trained).</param>
public sealed record ParameterEntry(string Name, long Offset, long[] Shape, TensorKind Kind)
{
    /// <summary>Number of values.</summary>
    public int Count => checked((int)Shape.Aggregate(1L, (a, b) => a * b));

    /// <summary>Rows of a 2-D tensor (the length of a 1-D one).</summary>
    public int Rows => checked((int)Shape[0]);

    /// <summary>Columns of a 2-D tensor (1 for a 1-D one).</summary>
    public int Cols => Shape.Length > 1 ? checked((int)Shape[1]) : 1;

    /// <summary>
    /// False only for the router's e_score_correction_bias: it only selects experts, so no loss has a gradient
    /// for it (the budget controller of spec section 4 sets it). It stays in the buffer so a checkpoint is one pass.
    /// </summary>
    public bool Trainable => Kind != TensorKind.RouterBias;
}
