using LongCat.Config;
using LongCat.Model;
using LongCat.Training;

namespace LongCat.Tests;

/// <summary>The flat parameter buffer: layout, random init = longcat init, save/load round trip.</summary>
public class ParameterStoreTests
{
    [Fact]
    public void TableFollowsTheCheckpointLayoutWithAlignedOffsets()
    {
        var c = LongCatConfig.Load(Path.Combine(Fixtures.Reference("tiny"), "config.json"));
        var table = ParameterTable.Create(c, mtp: true);
        var specs = CheckpointLayout.Tensors(c).Concat(CheckpointLayout.Mtp(c)).ToArray();
        Assert.Equal(specs.Select(s => s.Name), table.Entries.Select(e => e.Name));
        long end = 0;
        foreach (var e in table.Entries)
        {
            Assert.Equal(0, e.Offset % ParameterTable.AlignmentFloats);
            Assert.True(e.Offset >= end);
            end = e.Offset + e.Count;
            Assert.Equal(e.Kind != TensorKind.RouterBias, e.Trainable);
        }
        Assert.True(table.Length >= end);
        Assert.Equal(specs.Where(s => s.Kind != TensorKind.RouterBias).Sum(s => s.Count), table.TrainableCount);
    }

    [Fact]
    public void RandomInitEqualsLongcatInitAndSaveLoadRoundTrips()
    {
        var cfg = Path.Combine(Fixtures.Reference("tiny"), "config.json");
        var dir = Fixtures.NewTempDir();
        var c = LongCatConfig.Load(cfg);
        ModelInitializer.Write(c, dir, seed: 7, mtp: true);
        using var loaded = ParameterStore.Load(dir);
        using var random = ParameterStore.Random(c, seed: 7, mtp: true);
        Assert.True(loaded.Table.HasMtp);
        foreach (var e in random.Table.Entries)
            Assert.True(random[e.Name].Value.SequenceEqual(loaded[e.Name].Value), e.Name);

        var saved = Fixtures.NewTempDir();
        random[random.Table.Entries[3].Name].Value[0] = 42f;
        random.Save(saved);
        using var back = ParameterStore.Load(saved);
        Assert.Equal(c with { }, back.Config with { });
        foreach (var e in random.Table.Entries)
            Assert.True(random[e.Name].Value.SequenceEqual(back[e.Name].Value), e.Name);
    }
}
