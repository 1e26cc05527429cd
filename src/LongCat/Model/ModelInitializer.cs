using LongCat.Config;
using LongCat.IO;

namespace LongCat.Model;

/// <summary>
/// Writes a randomly initialised checkpoint in the official layout: linears, embedding, lm_head and router
/// normal(0, std) (std 0.02 by default), RMSNorm weights 1, router bias 0. Each tensor draws from its own
/// generator seeded by (seed, name), so results do not depend on order or threads.
/// </summary>
public static class ModelInitializer
{
    public static void Write(LongCatConfig config, string folder, ulong seed, DType dtype = DType.F32, double std = 0.02, bool mtp = false)
    {
        if (dtype is not (DType.F32 or DType.BF16))
            throw new ArgumentException($"--dtype must be F32 or BF16, got {dtype}");
        config.Validate();
        Directory.CreateDirectory(folder);
        var specs = CheckpointLayout.Tensors(config).Concat(mtp ? CheckpointLayout.Mtp(config) : []).ToArray();
        long total = specs.Sum(s => s.Count);
        if (total * DTypes.SizeOf(dtype) > 16L << 30)
            throw new ArgumentException($"the model has {total:N0} parameters; init builds checkpoints in memory and stops at 16 GiB of weights");
        var w = new SafeTensorsWriter();
        w.Metadata["format"] = "pt";
        w.Metadata["producer"] = $"longcat init --seed {seed}";
        var data = new float[specs.Length][];
        Kernels.Parallelism.For(specs.Length, i => data[i] = Generate(specs[i], seed, std));
        for (int i = 0; i < specs.Length; i++)
        {
            var s = specs[i];
            // Like the release: router weights and bias stay F32 whatever the storage dtype.
            var dt = s.Kind is TensorKind.RouterClassifier or TensorKind.RouterBias ? DType.F32 : dtype;
            w.AddFloat(s.Name, dt, data[i], s.Shape);
            data[i] = [];
        }
        w.Save(Path.Combine(folder, "model.safetensors"));
        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJson() + "\n");
        File.WriteAllText(Path.Combine(folder, "generation_config.json"), config.GenerationConfigJson());
    }

    static float[] Generate(TensorSpec s, ulong seed, double std)
    {
        var a = new float[checked((int)s.Count)];
        Fill(s, seed, std, a);
        return a;
    }

    /// <summary>
    /// Writes tensor <paramref name="s"/>'s initial values into <paramref name="values"/> (length s.Count): the numbers
    /// <see cref="Write"/> stores in F32, so a trainer initialising in memory gets the same model as init + load.
    /// </summary>
    public static void Fill(TensorSpec s, ulong seed, double std, Span<float> values)
    {
        if (values.Length != s.Count) throw new ArgumentException($"tensor '{s.Name}' has {s.Count} values, the destination {values.Length}");
        switch (s.Kind)
        {
            case TensorKind.Norm: values.Fill(1f); break;
            case TensorKind.RouterBias: values.Clear(); break;
            default:
                var rng = new NormalRng(seed, s.Name);
                for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.Next() * std);
                break;
        }
    }
}

/// <summary>Deterministic standard normal generator: xoshiro256** seeded by SplitMix64 of (seed, FNV-1a(name)), Box-Muller.</summary>
public sealed class NormalRng
{
    ulong _s0, _s1, _s2, _s3;
    double _spare;
    bool _hasSpare;

    public NormalRng(ulong seed, string stream = "")
    {
        ulong h = 14695981039346656037UL;
        foreach (char ch in stream) { h ^= ch; h *= 1099511628211UL; }
        ulong x = seed ^ (h * 0x9E3779B97F4A7C15UL);
        _s0 = SplitMix(ref x); _s1 = SplitMix(ref x); _s2 = SplitMix(ref x); _s3 = SplitMix(ref x);
    }

    static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public ulong NextUInt64()
    {
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0; _s3 ^= _s1; _s1 ^= _s2; _s0 ^= _s3; _s2 ^= t; _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform in (0, 1).</summary>
    public double NextDouble() => ((NextUInt64() >> 11) + 0.5) * (1.0 / (1UL << 53));

    public double Next()
    {
        if (_hasSpare) { _hasSpare = false; return _spare; }
        double u = NextDouble(), v = NextDouble();
        double r = Math.Sqrt(-2 * Math.Log(u)), th = 2 * Math.PI * v;
        _spare = r * Math.Sin(th);
        _hasSpare = true;
        return r * Math.Cos(th);
    }
}
