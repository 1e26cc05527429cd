using LongCat.Config;
using LongCat.Model;

namespace LongCat.Training;

/// <summary>
/// The layout of the flat fp32 parameter buffer (and of the gradient and optimizer buffers, which mirror it):
/// every tensor of the official checkpoint layout (<see cref="CheckpointLayout"/>), in that order, each starting on a
/// 64-byte boundary. Name -> (offset, shape).
/// </summary>
public sealed class ParameterTable
{
    /// <summary>Every tensor starts at a multiple of this many floats (64 bytes), so SIMD loads line up.</summary>
    public const int AlignmentFloats = 16;

    readonly Dictionary<string, ParameterEntry> _byName = new(StringComparer.Ordinal);

    /// <summary>Tensors in checkpoint order.</summary>
    public IReadOnlyList<ParameterEntry> Entries { get; }

    /// <summary>Floats in the buffer, padding included.</summary>
    public long Length { get; }

    /// <summary>True when the table holds an MTP head (model.mtp.*).</summary>
    public bool HasMtp { get; }

    /// <summary>True when the MTP head has its own embedding (model.mtp.embed_tokens.weight).</summary>
    public bool MtpOwnEmbedding { get; }

    ParameterTable(IEnumerable<TensorSpec> specs, bool mtp, bool mtpOwnEmbedding)
    {
        var entries = new List<ParameterEntry>();
        long offset = 0;
        foreach (var s in specs)
        {
            var e = new ParameterEntry(s.Name, offset, s.Shape, s.Kind);
            if (!_byName.TryAdd(s.Name, e)) throw new ArgumentException($"tensor '{s.Name}' appears twice in the layout");
            entries.Add(e);
            offset += (s.Count + AlignmentFloats - 1) / AlignmentFloats * AlignmentFloats;
        }
        Entries = entries;
        Length = offset;
        HasMtp = mtp;
        MtpOwnEmbedding = mtpOwnEmbedding;
    }

    /// <summary>The layout of a model with <paramref name="config"/>, optionally with an MTP head.</summary>
    public static ParameterTable Create(LongCatConfig config, bool mtp = false, bool mtpOwnEmbedding = false)
    {
        config.Validate();
        var specs = CheckpointLayout.Tensors(config);
        if (mtp) specs = specs.Concat(CheckpointLayout.Mtp(config, mtpOwnEmbedding));
        return new ParameterTable(specs, mtp, mtp && mtpOwnEmbedding);
    }

    /// <summary>The named tensor; throws naming it if the layout has no such tensor.</summary>
    public ParameterEntry this[string name] =>
        _byName.TryGetValue(name, out var e) ? e : throw new KeyNotFoundException($"the parameter layout has no tensor '{name}'");

    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>Trainable parameters (every tensor but the routers' selection bias).</summary>
    public long TrainableCount => Entries.Where(e => e.Trainable).Sum(e => (long)e.Count);
}
