using LongCat.IO;
using LongCat.Kernels;
using LongCat.Model;

namespace LongCat.Tests;

/// <summary>Outputs must not change with the thread count (bitwise), and greedy decoding must match the fixtures.</summary>
public class DeterminismTests
{
    public static TheoryData<string> Models => new(Fixtures.ReferenceModels);

    [Theory]
    [MemberData(nameof(Models))]
    public void ForwardIsBitwiseIdenticalForAnyThreadCount(string name)
    {
        var dir = Fixtures.Reference(name);
        using var model = LongCatModel.Load(dir);
        using var expected = SafeTensorFile.Open(Path.Combine(dir, "expected.safetensors"));
        var t = expected.Tensor("input_ids");
        var ids = t.ToInt64().Select(v => (int)v).ToArray();
        int b = (int)t.Shape[0], s = (int)t.Shape[1];
        var opts = new ForwardOptions { KeepHiddenStates = true, KeepRouting = true };
        int saved = Parallelism.Threads;
        try
        {
            Parallelism.Threads = 1;
            var r1 = model.Forward(ids, b, s, opts);
            foreach (var threads in new[] { 2, 3, 8 })
            {
                Parallelism.Threads = threads;
                var r = model.Forward(ids, b, s, opts);
                Assert.Equal(r1.Logits, r.Logits);
                Assert.Equal(r1.FinalHidden, r.FinalHidden);
                for (int l = 0; l < r1.HiddenAfterLayer.Count; l++) Assert.Equal(r1.HiddenAfterLayer[l], r.HiddenAfterLayer[l]);
                for (int l = 0; l < r1.Routing.Count; l++)
                {
                    Assert.Equal(r1.Routing[l].Indices, r.Routing[l].Indices);
                    Assert.Equal(r1.Routing[l].Weights, r.Routing[l].Weights);
                }
            }
        }
        finally { Parallelism.Threads = saved; }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void GreedyContinuationMatchesReference(string name)
    {
        var dir = Fixtures.Reference(name);
        using var model = LongCatModel.Load(dir);
        using var expected = SafeTensorFile.Open(Path.Combine(dir, "expected.safetensors"));
        var seq = expected.Tensor("greedy_prompt").ToInt64().Select(v => (int)v).ToList();
        var want = expected.Tensor("greedy_continuation").ToInt64();
        var got = new List<long>();
        for (int step = 0; step < want.Length; step++)
        {
            var r = model.Forward(seq.ToArray(), 1, seq.Count, new ForwardOptions { AllLogits = false });
            int best = 0;
            for (int v = 1; v < r.Logits.Length; v++) if (r.Logits[v] > r.Logits[best]) best = v;
            got.Add(best);
            seq.Add(best);
        }
        Assert.Equal(want, got);
    }

    [Fact]
    public void LastPositionLogitsEqualFullLogitsRows()
    {
        using var model = LongCatModel.Load(Fixtures.Reference("tiny"));
        var ids = new[] { 1, 5, 9, 200, 17, 1, 8, 8, 30, 44 };
        var full = model.Forward(ids, 2, 5);
        var last = model.Forward(ids, 2, 5, new ForwardOptions { AllLogits = false });
        int v = model.Config.VocabSize;
        for (int b = 0; b < 2; b++)
            for (int j = 0; j < v; j++)
                Assert.Equal(full.Logits[(b * 5 + 4) * v + j], last.Logits[b * v + j], 1e-6f);
    }
}
