using LongCat.Config;
using LongCat.Model;
using LongCat.Planning;
using LongCat.Training;

namespace LongCat.Tests;

/// <summary>Parameter accounting against the spec's numbers for the released LongCat-Flash-Chat config.</summary>
public class PlanningTests
{
    static LongCatConfig Release => LongCatConfig.Load(Path.Combine(AppContext.BaseDirectory, "presets", "longcat-flash-chat.json"));

    [Fact]
    public void ReleaseComponentCountsMatchSpec()
    {
        var pc = new ParameterCount(Release);
        Assert.Equal(90.57e6, pc.MlaBlock, 0.005e6);
        Assert.Equal(226.49e6, pc.DenseFfn, 0.005e6);
        Assert.Equal(37.75e6, pc.Expert, 0.005e6);
        Assert.Equal(768L * 6144, pc.Router);
        Assert.Equal(560_664_958_976L, pc.Total);
        Assert.Equal(0.4e9, pc.MtpBlock, 0.01e9);
        Assert.Equal(576, Release.KvCacheWidth);
        // Paper: 18.6B-31.3B activated (it truncates), ~27B at K_e ~ 8.
        Assert.InRange(pc.Activated(0), 18.6e9, 18.7e9);
        Assert.InRange(pc.Activated(12), 31.3e9, 31.4e9);
        Assert.InRange(pc.Activated(8), 27.0e9, 27.2e9);
    }

    [Fact]
    public void InterleavedTopologyHasTheShortcutLayersParametersAndActivatedCounts()
    {
        // The ScMoE ablation compares the two topologies at equal parameters and compute: the interleaved layer's one
        // dense FFN of 2F has exactly the two F-sized FFNs' weights and multiply-adds per token.
        foreach (var shortcut in new[] { Release, TrainingModels.Tiny, TrainingModels.Tiny with { TieWordEmbeddings = true, NRoutedExperts = 3 } })
        {
            var interleaved = shortcut with { FfnTopology = LongCatConfig.InterleavedTopology };
            var a = new ParameterCount(shortcut);
            var b = new ParameterCount(interleaved);
            Assert.Equal(2 * a.DenseFfn, b.LayerDenseFfn);
            Assert.Equal(a.DenseFfn, a.LayerDenseFfn);
            Assert.Equal(a.DenseLayer, b.DenseLayer);
            Assert.Equal(a.Layer, b.Layer);
            Assert.Equal(a.Total, b.Total);
            Assert.Equal(a.MtpBlock, b.MtpBlock);
            Assert.Equal(a.ReleaseStyleBytes, b.ReleaseStyleBytes);
            for (int k = 0; k <= shortcut.MoeTopK; k++) Assert.Equal(a.Activated(k), b.Activated(k));
            Assert.Equal(a.Activated(2.5), b.Activated(2.5));
            // The tensor layouts (names and shapes only: nothing is allocated) agree with the counts, which leave out the
            // routers' selection bias.
            foreach (var c in new[] { shortcut, interleaved })
            {
                var specs = CheckpointLayout.Tensors(c).ToArray();
                Assert.Equal(new ParameterCount(c).Total, specs.Where(s => s.Kind != TensorKind.RouterBias).Sum(s => s.Count));
                Assert.Equal(new ParameterCount(c).Total, ParameterTable.Create(c).TrainableCount);
            }
        }
    }

    [Fact]
    public void InfoCommandPrintsPaperFigures()
    {
        var (exit, output, err) = CliProcess.Run("info", "--config", "longcat-flash-chat");
        Assert.True(exit == 0, err);
        Assert.Contains("560.7B", output);
        Assert.Contains("18.6B-31.3B", output);
        Assert.Contains("64,512 bytes in BF16", output);
    }

    [Fact]
    public void InfoJsonAndModelFolder()
    {
        var (exit, output, err) = CliProcess.Run("info", "--model", Fixtures.Reference("small-fp8"), "--json");
        Assert.True(exit == 0, err);
        using var doc = System.Text.Json.JsonDocument.Parse(output);
        var bytes = doc.RootElement.GetProperty("weight_bytes_by_dtype");
        Assert.True(bytes.GetProperty("F8_E4M3").GetInt64() > 0);
        Assert.True(bytes.GetProperty("F32").GetInt64() > 0);
    }
}
