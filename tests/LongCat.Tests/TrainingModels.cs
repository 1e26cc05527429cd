using LongCat.Config;
using LongCat.Model;
using LongCat.Training;

namespace LongCat.Tests;

/// <summary>Tiny random models and batches for the training tests (finite differences, determinism).</summary>
public static class TrainingModels
{
    /// <summary>A model small enough for hundreds of forwards per test, with every feature of the layer present.</summary>
    public static LongCatConfig Tiny => new()
    {
        VocabSize = 40, HiddenSize = 16, NumLayers = 2, NumAttentionHeads = 2,
        QLoraRank = 12, KvLoraRank = 8, QkNopeHeadDim = 4, QkRopeHeadDim = 4, VHeadDim = 6,
        FfnHiddenSize = 24, ExpertFfnHiddenSize = 8, NRoutedExperts = 4, ZeroExpertNum = 2, MoeTopK = 3,
        RoutedScalingFactor = 2.5, RopeTheta = 10000, MaxPositionEmbeddings = 256,
    };

    /// <summary>
    /// A random model whose norm weights and router bias are not at their init values (1 and 0), so a backward that
    /// confuses w with 1, or lets the selection bias into the weights, shows up.
    /// </summary>
    public static TrainableModel Random(LongCatConfig config, ulong seed, double std, bool mtp = false)
    {
        var m = TrainableModel.Random(config, seed, std, mtp);
        var rng = new NormalRng(seed + 1, "perturb");
        foreach (var e in m.Parameters.Table.Entries)
        {
            var v = m.Parameters[e.Name].Value;
            if (e.Kind == TensorKind.Norm) for (int i = 0; i < v.Length; i++) v[i] = (float)(1 + 0.2 * rng.Next());
            if (e.Kind == TensorKind.RouterBias) for (int i = 0; i < v.Length; i++) v[i] = (float)(0.05 * rng.Next());
        }
        return m;
    }

    /// <summary>B·S token ids in 3..V-1, deterministic.</summary>
    public static int[] Ids(int vocab, int batch, int seq, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, batch * seq).Select(_ => r.Next(3, vocab)).ToArray();
    }
}
