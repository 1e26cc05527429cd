using LongCat.Config;

namespace LongCat.Model;

/// <summary>
/// The MLA latent KV cache of one sequence: per attention sublayer, only c_kv (kv_lora_rank values, normalised
/// and scaled) and the roped shared key k_rope (qk_rope_head_dim values) per token; 576 values per token per
/// sublayer for the release. Preallocated for <see cref="Capacity"/> tokens and written in place.
/// </summary>
public sealed class KvCache
{
    readonly float[][] _latent;
    readonly float[][] _ropeKey;

    public int Sublayers { get; }
    public int Capacity { get; }
    public int LatentDim { get; }
    public int RopeDim { get; }
    /// <summary>Tokens currently cached (the next token's position).</summary>
    public int Length { get; private set; }

    /// <param name="config">Model config (sets the widths).</param>
    /// <param name="capacity">Maximum tokens (prompt + generated).</param>
    /// <param name="sublayers">Attention sublayers: 2 · num_layers for the main model, 1 for the MTP head.</param>
    public KvCache(LongCatConfig config, int capacity, int sublayers)
    {
        if (capacity <= 0) throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "KV cache capacity must be positive");
        if (capacity > config.MaxPositionEmbeddings)
            throw new ArgumentOutOfRangeException(nameof(capacity), capacity, $"KV cache capacity exceeds max_position_embeddings {config.MaxPositionEmbeddings}");
        Sublayers = sublayers;
        Capacity = capacity;
        LatentDim = config.KvLoraRank;
        RopeDim = config.QkRopeHeadDim;
        _latent = new float[sublayers][];
        _ropeKey = new float[sublayers][];
        for (int s = 0; s < sublayers; s++)
        {
            _latent[s] = new float[(long)capacity * LatentDim];
            _ropeKey[s] = new float[(long)capacity * RopeDim];
        }
    }

    /// <summary>[Capacity, kv_lora_rank] latents of a sublayer.</summary>
    public float[] Latent(int sublayer) => _latent[sublayer];
    /// <summary>[Capacity, qk_rope_head_dim] roped keys of a sublayer.</summary>
    public float[] RopeKey(int sublayer) => _ropeKey[sublayer];

    /// <summary>Bytes held by the cache.</summary>
    public long Bytes => 4L * Sublayers * Capacity * (LatentDim + RopeDim);

    /// <summary>Marks <paramref name="n"/> more tokens as cached (after every sublayer wrote them).</summary>
    public void Advance(int n)
    {
        if (n < 0 || Length + n > Capacity) throw new InvalidOperationException($"KV cache full: {Length} + {n} tokens exceed its capacity of {Capacity}");
        Length += n;
    }

    /// <summary>Forgets tokens from <paramref name="length"/> on (speculative decoding rollback).</summary>
    public void Truncate(int length)
    {
        if (length < 0 || length > Length) throw new ArgumentOutOfRangeException(nameof(length), length, $"must be in 0..{Length}");
        Length = length;
    }

    public void Reset() => Length = 0;

    /// <summary>Makes this cache hold what <paramref name="source"/> holds (n &gt; 1 choices share one prefill).</summary>
    public void CopyFrom(KvCache source)
    {
        if (source.Sublayers != Sublayers || source.LatentDim != LatentDim || source.RopeDim != RopeDim)
            throw new ArgumentException("the caches belong to different models", nameof(source));
        if (source.Length > Capacity) throw new ArgumentException($"{source.Length} cached tokens do not fit a capacity of {Capacity}", nameof(source));
        for (int l = 0; l < Sublayers; l++)
        {
            Array.Copy(source._latent[l], _latent[l], (long)source.Length * LatentDim);
            Array.Copy(source._ropeKey[l], _ropeKey[l], (long)source.Length * RopeDim);
        }
        Length = source.Length;
    }
}
