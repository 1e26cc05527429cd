using LongCat.IO;
using LongCat.Kernels;
using LongCat.Model;
using Xunit.Abstractions;

namespace LongCat.Tests;

/// <summary>Forward parity with the Hugging Face transformers reference (tests/fixtures/reference/*/README.md).</summary>
public class GoldenParityTests(ITestOutputHelper output)
{
    public static TheoryData<string> Models => new(Fixtures.ReferenceModels);

    [Theory]
    [MemberData(nameof(Models))]
    public void ForwardMatchesReference(string name)
    {
        var dir = Fixtures.Reference(name);
        using var model = LongCatModel.Load(dir);
        using var expected = SafeTensorFile.Open(Path.Combine(dir, "expected.safetensors"));
        var idsT = expected.Tensor("input_ids");
        int b = (int)idsT.Shape[0], s = (int)idsT.Shape[1];
        var ids = idsT.ToInt64().Select(v => (int)v).ToArray();
        var r = model.Forward(ids, b, s, new ForwardOptions { KeepHiddenStates = true, KeepRouting = true });

        float dl = Fixtures.MaxAbsDiff(r.Logits, expected.Tensor("logits").ToFloat32());
        float df = Fixtures.MaxAbsDiff(r.FinalHidden, expected.Tensor("final_hidden").ToFloat32());
        output.WriteLine($"{name}: logits {dl:E2}, final_hidden {df:E2}");
        Assert.True(dl <= 1e-5f, $"logits differ by {dl}");
        Assert.True(df <= 5e-5f, $"final_hidden differs by {df}");
        int k = model.Config.MoeTopK;
        for (int l = 0; l < model.Config.NumLayers; l++)
        {
            float dh = Fixtures.MaxAbsDiff(r.HiddenAfterLayer[l], expected.Tensor($"hidden_after_layer_{l}").ToFloat32());
            output.WriteLine($"  hidden_after_layer_{l}: {dh:E2}");
            Assert.True(dh <= 5e-5f, $"hidden_after_layer_{l} differs by {dh}");
            var (idx, w) = RouterOutputs.SortedTopK(r.Routing[l]);
            var eIdx = expected.Tensor($"router_topk_indices_layer_{l}").ToInt64();
            var eW = expected.Tensor($"router_topk_weights_layer_{l}").ToFloat32();
            Assert.Equal(eIdx, idx);
            float dw = Fixtures.MaxAbsDiff(w, eW);
            output.WriteLine($"  router weights layer {l}: {dw:E2}");
            Assert.True(dw <= 1e-5f, $"router weights layer {l} differ by {dw}");
        }
    }
}
