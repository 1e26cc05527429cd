namespace LongCat.Model;

/// <summary>
/// Interleaved RoPE tables: cos/sin [position, d/2] with angle = pos · θ^(-2i/d), computed in float32 the way
/// transformers does (inv_freq = 1 / θ^(float32(2i)/d), angle = float32(pos) · inv_freq).
/// </summary>
public sealed class Rope
{
    readonly float[] _invFreq;
    float[] _cos = [], _sin = [];
    int _positions;

    public int Dim { get; }

    public Rope(int dim, double theta)
    {
        Dim = dim;
        _invFreq = new float[dim / 2];
        float th = (float)theta;
        for (int i = 0; i < dim / 2; i++) _invFreq[i] = 1f / MathF.Pow(th, (float)(2 * i) / dim);
    }

    /// <summary>Makes sure tables cover positions 0..count-1.</summary>
    public void Ensure(int count)
    {
        lock (_invFreq)
        {
            if (count <= _positions) return;
            Build(count);
        }
    }

    void Build(int count)
    {
        int n = Math.Max(count, Math.Max(64, _positions * 2));
        int h = Dim / 2;
        var c = new float[n * h];
        var s = new float[n * h];
        for (int p = 0; p < n; p++)
            for (int i = 0; i < h; i++)
            {
                float a = p * _invFreq[i];
                c[p * h + i] = MathF.Cos(a);
                s[p * h + i] = MathF.Sin(a);
            }
        _cos = c; _sin = s; _positions = n;
    }

    public ReadOnlySpan<float> Cos(int pos) => _cos.AsSpan(pos * (Dim / 2), Dim / 2);
    public ReadOnlySpan<float> Sin(int pos) => _sin.AsSpan(pos * (Dim / 2), Dim / 2);
}
