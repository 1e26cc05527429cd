using System.Numerics.Tensors;

namespace LongCat.Kernels;

/// <summary>Elementwise and row kernels of the forward pass. All compute in fp32 with a fixed order.</summary>
public static class Ops
{
    /// <summary>
    /// Interleaved (GPT-J / DeepSeek) RoPE in place on <paramref name="v"/> [d]: pairs (2i, 2i+1) rotate by
    /// pos · invFreq[i]. <paramref name="cos"/>/<paramref name="sin"/> are the row of the position (d/2 each).
    /// </summary>
    public static void RopeInterleaved(Span<float> v, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        int half = v.Length / 2;
        for (int i = 0; i < half; i++)
        {
            float a = v[2 * i], b = v[2 * i + 1];
            v[2 * i] = a * cos[i] - b * sin[i];
            v[2 * i + 1] = b * cos[i] + a * sin[i];
        }
    }

    /// <summary>In-place softmax of one row, max-subtracted, in fp32.</summary>
    public static void Softmax(Span<float> x)
    {
        float max = TensorPrimitives.Max(x);
        float sum = 0;
        for (int i = 0; i < x.Length; i++) { float e = MathF.Exp(x[i] - max); x[i] = e; sum += e; }
        float inv = 1f / sum;
        TensorPrimitives.Multiply(x, inv, x);
    }

    /// <summary>gateUp holds gate then up for each row: out[r, j] = silu(gate[r, j]) * up[r, j].</summary>
    public static void SiluMul(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> y)
    {
        for (int i = 0; i < y.Length; i++)
        {
            float g = gate[i];
            y[i] = g / (1f + MathF.Exp(-g)) * up[i];
        }
    }

    /// <summary>Indices of the k largest scores (ties: lower index first), in descending score order.</summary>
    public static void TopK(ReadOnlySpan<float> scores, Span<int> idx)
    {
        int k = idx.Length;
        int filled = 0;
        for (int i = 0; i < scores.Length; i++)
        {
            float s = scores[i];
            if (filled == k && !(s > scores[idx[k - 1]])) continue;
            int pos = filled < k ? filled++ : k - 1;
            while (pos > 0 && s > scores[idx[pos - 1]]) { idx[pos] = idx[pos - 1]; pos--; }
            idx[pos] = i;
        }
    }
}
