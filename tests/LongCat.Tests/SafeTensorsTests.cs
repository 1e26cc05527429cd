using System.Text;
using LongCat.IO;

namespace LongCat.Tests;

/// <summary>
/// Bad input to the safetensors reader and the checkpoint folder: every defect is a
/// <see cref="ModelFormatException"/> whose message names the file and, where there is one, the tensor.
/// </summary>
public class SafeTensorsTests
{
    const string A = "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}";
    const string B = "\"b\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[24,40]}";

    static byte[] Good(int data = 40) => St.Image("{" + A + "," + B + "}", data);

    [Fact]
    public void ValidImageParses()
    {
        var img = Good();
        var (start, tensors, meta) = SafeTensorFile.ParseHeader("x", img, img.Length);
        Assert.Equal(img.Length - 40, start);
        Assert.Equal(2, tensors.Count);
        Assert.Empty(meta);
        using var f = SafeTensorFile.Open(St.WriteTemp(img));
        Assert.Equal(img.AsSpan((int)start + 24, 16).ToArray(), f.Tensor("b").Bytes.ToArray());
    }

    // ---- missing / unreadable files ----

    [Fact]
    public void MissingFile()
    {
        var p = Path.Combine(Fixtures.NewTempDir(), "nope.safetensors");
        St.OpenFails(p, "not found");
    }

    [Fact]
    public void FolderPassedAsFile() => St.OpenFails(Fixtures.NewTempDir(), "folder");

    [Fact]
    public void ZeroLengthFile() => St.OpenFails(St.WriteTemp([]), "truncated", "0 bytes");

    [Fact]
    public void ShorterThanLengthPrefix() => St.OpenFails(St.WriteTemp([1, 0, 0, 0, 0]), "truncated");

    [Fact]
    public void ParseHeaderWithSpanShorterThanClaimedLength()
    {
        // A caller may pass only the header of a larger file; a span too short for the header is an error, not an exception.
        var img = Good();
        St.Fails(() => SafeTensorFile.ParseHeader("x.safetensors", img.AsSpan(0, 5), img.Length), "x.safetensors", "truncated");
        St.Fails(() => SafeTensorFile.ParseHeader("x.safetensors", img.AsSpan(0, 30), img.Length), "x.safetensors", "larger than the file");
        var (start, t, _) = SafeTensorFile.ParseHeader("x.safetensors", img.AsSpan(0, img.Length - 40), img.Length);
        Assert.Equal(2, t.Count);
        Assert.Equal(img.Length - 40, start);
    }

    // ---- truncation and the length prefix ----

    [Fact]
    public void TruncatedDataNamesTheTensor()
    {
        var p = St.WriteSmall();
        var bytes = File.ReadAllBytes(p);
        File.WriteAllBytes(p, bytes[..^3]); // 'c' (BF16, last) loses its tail
        St.OpenFails(p, "tensor 'c'", "out of range", "truncated");
    }

    [Fact]
    public void TruncatedInsideTheHeader()
    {
        var p = St.WriteSmall();
        var bytes = File.ReadAllBytes(p);
        File.WriteAllBytes(p, bytes[..40]);
        St.OpenFails(p, "header length", "larger than the file");
    }

    [Fact]
    public void HeaderLengthLargerThanFile() =>
        St.BothFail(St.Image("{" + A + "}", 24, prefix: 5000), "header length 5000", "larger than the file");

    [Fact]
    public void HeaderLengthBeyondFormatLimit() =>
        St.BothFail(St.Image("{" + A + "}", 24, prefix: ulong.MaxValue), "exceeds");

    [Fact]
    public void HeaderLengthTooSmallForJson() => St.BothFail(St.Image("{}", 0, prefix: 1), "cannot hold a JSON object");

    // ---- header JSON ----

    [Fact]
    public void InvalidHeaderJson() => St.BothFail(St.Image("{" + A + ",}", 24), "invalid header JSON");

    [Fact]
    public void HeaderJsonWithTrailingGarbage() => St.BothFail(St.Image("{" + A + "} x", 24), "invalid header JSON");

    [Fact]
    public void HeaderNotAnObject() => St.BothFail(St.Image("[1, 2]", 0), "must be a JSON object", "Array");

    [Fact]
    public void InvalidUtf8InHeader()
    {
        var h = Encoding.UTF8.GetBytes("{" + A + ",\"__metadata__\":{\"k\":\"v?\"}}");
        h[Array.LastIndexOf(h, (byte)'?')] = 0xC3; // a lead byte followed by '"': not UTF-8
        St.BothFail(St.Image(h, 24), "invalid header JSON");
    }

    [Fact]
    public void LoneSurrogateEscapeInTensorName() =>
        St.BothFail(St.Image("{\"x\\ud800\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "invalid header JSON");

    [Fact]
    public void LoneSurrogateEscapeInMetadata() =>
        St.BothFail(St.Image("{\"__metadata__\":{\"k\":\"\\udc00\"}," + A + "}", 24), "invalid header JSON");

    [Fact]
    public void TooDeeplyNested() =>
        St.BothFail(St.Image("{\"__metadata__\":" + new string('[', 40) + new string(']', 40) + "}", 0), "invalid header JSON");

    [Fact]
    public void MetadataNotAnObject() => St.BothFail(St.Image("{\"__metadata__\":[\"x\"]," + A + "}", 24), "__metadata__");

    [Fact]
    public void NonStringMetadataValue() => St.BothFail(St.Image("{\"__metadata__\":{\"format\":1}," + A + "}", 24), "__metadata__", "'format'", "string");

    [Fact]
    public void MetadataRoundTrips()
    {
        var img = St.Image("{\"__metadata__\":{\"format\":\"pt\",\"k\":\"\\u00e9\"}," + A + "}", 24);
        var (_, _, meta) = SafeTensorFile.ParseHeader("x", img, img.Length);
        Assert.Equal("pt", meta["format"]);
        Assert.Equal("é", meta["k"]);
    }

    [Fact]
    public void DuplicateTensor() => St.BothFail(St.Image("{" + A + "," + A + "}", 24), "tensor 'a'", "appears twice");

    [Fact]
    public void DuplicateTensorSpelledWithAnEscape() =>
        St.BothFail(St.Image("{" + A + ",\"\\u0061\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", 24), "tensor 'a'", "appears twice");

    [Fact]
    public void DuplicateKeyInsideAnEntry() =>
        // Two data_offsets: taking the first or the last one would read different bytes; neither is acceptable.
        St.BothFail(St.Image("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"data_offsets\":[4,8]}}", 8), "tensor 'a'", "'data_offsets' appears twice");

    [Fact]
    public void DuplicateMetadata()
    {
        St.BothFail(St.Image("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0), "__metadata__ key 'k' appears twice");
        St.BothFail(St.Image("{\"__metadata__\":{},\"__metadata__\":{}}", 0), "__metadata__ appears twice");
    }

    // ---- entries ----

    [Fact]
    public void EntryNotAnObject() => St.BothFail(St.Image("{\"a\":[1,2]}", 0), "tensor 'a'", "must be an object");

    [Fact]
    public void MissingDtype() => St.BothFail(St.Image("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "tensor 'a'", "dtype");

    [Fact]
    public void UnknownDtype()
    {
        var e = St.BothFail(St.Image("{\"a\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1), "tensor 'a'", "unknown dtype 'F4'");
        Assert.Contains("BF16", e.Message); // lists the known ones
    }

    [Theory]
    [InlineData("f32")]   // dtypes are spelled exactly
    [InlineData("0")]     // Enum.TryParse would accept numbers
    [InlineData("")]
    public void DtypeSpelledDifferently(string dt) =>
        St.BothFail(St.Image("{\"a\":{\"dtype\":\"" + dt + "\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "tensor 'a'", "unknown dtype");

    [Fact]
    public void MissingShape() => St.BothFail(St.Image("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4), "tensor 'a'", "shape");

    [Theory]
    [InlineData("[-1]")]
    [InlineData("[2, -3]")]
    [InlineData("[1.5]")]
    [InlineData("[\"4\"]")]
    [InlineData("[null]")]
    [InlineData("[9223372036854775808]")]
    public void BadShapeEntries(string shape) =>
        St.BothFail(St.Image("{\"a\":{\"dtype\":\"F32\",\"shape\":" + shape + ",\"data_offsets\":[0,4]}}", 4), "tensor 'a'", "non-negative integers");

    [Fact]
    public void ShapeNotAnArray() => St.BothFail(St.Image("{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}}", 16), "tensor 'a'", "shape");

    [Fact]
    public void TooManyDimensions() =>
        St.BothFail(St.Image("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4), "tensor 'a'", "9 dimensions");

    [Fact]
    public void ShapeProductOverflows() =>
        St.BothFail(St.Image("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4), "tensor 'a'", "overflows");

    [Fact]
    public void DtypeShapeSizeMismatch()
    {
        // [2, 3] F32 needs 24 bytes; 20 are given.
        var e = St.BothFail(St.Image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24), "tensor 'a'", "20 bytes", "needs 24");
        Assert.Contains("[2, 3]", e.Message);
    }

    [Fact]
    public void ScalarAndEmptyTensorsAreValid()
    {
        var img = St.Image("{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[4,4]}}", 4);
        using var f = SafeTensorFile.Open(St.WriteTemp(img));
        Assert.Equal(1, f.Tensor("s").ElementCount);
        Assert.Equal(0, f.Tensor("e").Bytes.Length);
    }

    // ---- data_offsets ----

    [Fact]
    public void OffsetsOutOfRange() =>
        St.BothFail(St.Image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[8,32]}}", 24), "tensor 'a'", "[8, 32]", "out of range", "24 bytes");

    [Fact]
    public void OffsetsReversed() =>
        St.BothFail(St.Image("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 24), "tensor 'a'", "end before they begin");

    [Theory]
    [InlineData("[-4,0]")]
    [InlineData("[0,-4]")]
    [InlineData("[0,4.0]")]
    [InlineData("[0,\"4\"]")]
    [InlineData("[0,9223372036854775808]")]
    [InlineData("[0,1e400]")]
    public void BadOffsetValues(string off) =>
        St.BothFail(St.Image("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":" + off + "}}", 4), "tensor 'a'", "data_offsets");

    [Theory]
    [InlineData("[0]")]
    [InlineData("[0,4,8]")]
    [InlineData("{\"begin\":0}")]
    public void OffsetsNotAPair(string off) =>
        St.BothFail(St.Image("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":" + off + "}}", 4), "tensor 'a'", "data_offsets");

    [Fact]
    public void OffsetsHugeEnd() =>
        St.BothFail(St.Image("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[9223372036854775803,9223372036854775807]}}", 4), "tensor 'a'", "out of range");

    [Fact]
    public void OverlappingTensorsNamesBoth()
    {
        var img = St.Image("{" + A + ",\"b\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[16,32]}}", 40);
        St.BothFail(img, "'a'", "'b'", "overlap");
    }

    [Fact]
    public void ContainedTensorOverlaps()
    {
        var img = St.Image("{\"big\":{\"dtype\":\"U8\",\"shape\":[40],\"data_offsets\":[0,40]},\"small\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[10,14]}}", 40);
        St.BothFail(img, "'big'", "'small'", "overlap");
    }

    [Fact]
    public void EmptyTensorsMayShareAnOffset()
    {
        var img = St.Image("{" + A + ",\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}}", 24);
        var (_, t, _) = SafeTensorFile.ParseHeader("x", img, img.Length);
        Assert.Equal(2, t.Count);
    }

    // ---- tensors and checkpoint folders ----

    [Fact]
    public void MissingTensorNamesFileAndTensor()
    {
        var p = St.WriteSmall();
        using var f = SafeTensorFile.Open(p);
        Assert.False(f.Contains("zzz"));
        St.Fails(() => f.Tensor("zzz"), p, "missing tensor 'zzz'");
        using var ck = Checkpoint.Open(Path.GetDirectoryName(p)!);
        St.Fails(() => ck.Tensor("zzz"), Path.GetDirectoryName(p)!, "missing tensor 'zzz'");
        Assert.Null(ck.TryTensor("zzz"));
    }

    [Fact]
    public void MissingModelFolder()
    {
        var d = Path.Combine(Fixtures.NewTempDir(), "no-such-model");
        St.Fails(() => Checkpoint.Open(d).Dispose(), d, "model folder not found");
    }

    [Fact]
    public void NonSafetensorsFilePassedAsModel()
    {
        var p = Path.Combine(Fixtures.NewTempDir(), "config.json");
        File.WriteAllText(p, "{}");
        St.Fails(() => Checkpoint.Open(p).Dispose(), p, "is a file");
    }

    [Fact]
    public void FolderWithoutSafetensors()
    {
        var d = Fixtures.NewTempDir();
        File.WriteAllText(Path.Combine(d, "config.json"), "{}");
        St.Fails(() => Checkpoint.Open(d).Dispose(), d, "no model.safetensors");
    }

    [Fact]
    public void TruncatedModelInFolderNamesTheFile()
    {
        var p = St.WriteSmall();
        File.WriteAllBytes(p, File.ReadAllBytes(p)[..^1]);
        St.Fails(() => Checkpoint.Open(Path.GetDirectoryName(p)!).Dispose(), p, "tensor 'c'");
    }

    [Fact]
    public void OpensASingleFileAndAFolder()
    {
        var p = St.WriteSmall();
        using (var ck = Checkpoint.Open(p))
            Assert.Equal([1, 2, 3, 4, 5, 6], ck.Tensor("a").ToFloat32());
        using (var ck = Checkpoint.Open(Path.GetDirectoryName(p)!))
            Assert.Equal([10, -20, 30, long.MaxValue], ck.Tensor("b").ToInt64());
    }

    // ---- sharded checkpoints (model.safetensors.index.json) ----

    /// <summary>Two shards written by the writer: s1 holds x, y; s2 holds z. Returns the folder.</summary>
    static string TwoShards(string? index = null)
    {
        // A subfolder of a fresh temp folder, so that tests may put files next to the model folder.
        var d = Directory.CreateDirectory(Path.Combine(Fixtures.NewTempDir(), "model")).FullName;
        var w1 = new SafeTensorsWriter();
        w1.AddF32("x", [1, 2, 3], 3);
        w1.AddBF16("y", [0.5f, -1], 2);
        w1.Save(Path.Combine(d, "model-00001-of-00002.safetensors"));
        var w2 = new SafeTensorsWriter();
        w2.AddI32("z", [7, 8, 9, 10], 2, 2);
        w2.Save(Path.Combine(d, "model-00002-of-00002.safetensors"));
        File.WriteAllText(Path.Combine(d, "model.safetensors.index.json"), index ??
            """
            {"metadata": {"total_size": 32},
             "weight_map": {"x": "model-00001-of-00002.safetensors", "y": "model-00001-of-00002.safetensors",
                            "z": "model-00002-of-00002.safetensors"}}
            """);
        return d;
    }

    static string Index(string d) => Path.Combine(d, "model.safetensors.index.json");

    [Fact]
    public void ShardedCheckpointReadsAcrossShards()
    {
        var d = TwoShards();
        using var ck = Checkpoint.Open(d);
        Assert.Equal(2, ck.Files.Count);
        Assert.Equal(["x", "y", "z"], ck.TensorNames.Order(StringComparer.Ordinal));
        Assert.Equal([1f, 2, 3], ck.Tensor("x").ToFloat32());
        Assert.Equal([0.5f, -1], ck.Tensor("y").ToFloat32());
        var z = ck.Tensor("z");
        Assert.EndsWith("model-00002-of-00002.safetensors", z.File);
        Assert.Equal([2L, 2], z.Shape);
        Assert.Equal([7L, 8, 9, 10], z.ToInt64());
    }

    [Fact]
    public void IndexNamingAMissingShard()
    {
        var d = TwoShards();
        File.Delete(Path.Combine(d, "model-00002-of-00002.safetensors"));
        St.Fails(() => Checkpoint.Open(d).Dispose(), Index(d), "model-00002-of-00002.safetensors", "tensor 'z'", "does not exist");
    }

    [Fact]
    public void IndexInvalidJson()
    {
        var d = TwoShards("{\"weight_map\": {");
        St.Fails(() => Checkpoint.Open(d).Dispose(), Index(d), "invalid JSON");
    }

    [Theory]
    [InlineData("[]")]
    [InlineData("\"weights\"")]
    [InlineData("null")]
    public void IndexNotAnObject(string json)
    {
        // [] used to escape as InvalidOperationException from JsonElement.TryGetProperty.
        var d = TwoShards(json);
        St.Fails(() => Checkpoint.Open(d).Dispose(), Index(d), "top level must be a JSON object");
    }

    [Theory]
    [InlineData("{\"metadata\": {}}")]
    [InlineData("{\"weight_map\": [\"x\"]}")]
    public void IndexWithoutWeightMap(string json)
    {
        var d = TwoShards(json);
        St.Fails(() => Checkpoint.Open(d).Dispose(), Index(d), "weight_map");
    }

    [Fact]
    public void IndexWithEmptyWeightMap()
    {
        var d = TwoShards("{\"weight_map\": {}}");
        St.Fails(() => Checkpoint.Open(d).Dispose(), Index(d), "empty");
    }

    [Fact]
    public void IndexEntryNotAString()
    {
        var d = TwoShards("{\"weight_map\": {\"x\": 1}}");
        St.Fails(() => Checkpoint.Open(d).Dispose(), Index(d), "'x'", "shard");
    }

    [Fact]
    public void IndexWithDuplicateTensor()
    {
        var d = TwoShards("{\"weight_map\": {\"x\": \"model-00001-of-00002.safetensors\", \"x\": \"model-00002-of-00002.safetensors\"}}");
        St.Fails(() => Checkpoint.Open(d).Dispose(), Index(d), "tensor 'x'", "appears twice");
        var d2 = TwoShards("{\"weight_map\": {\"x\": \"model-00001-of-00002.safetensors\"}, \"weight_map\": {}}");
        St.Fails(() => Checkpoint.Open(d2).Dispose(), Index(d2), "'weight_map' appears twice");
    }

    [Fact]
    public void IndexWithLoneSurrogate()
    {
        var d = TwoShards("{\"weight_map\": {\"x\\ud800\": \"model-00001-of-00002.safetensors\"}}");
        St.Fails(() => Checkpoint.Open(d).Dispose(), Index(d), "invalid JSON");
    }

    [Fact]
    public void IndexMapsTensorToAShardThatLacksIt()
    {
        var d = TwoShards("{\"weight_map\": {\"x\": \"model-00001-of-00002.safetensors\", \"z\": \"model-00001-of-00002.safetensors\"}}");
        St.Fails(() => Checkpoint.Open(d).Dispose(), Index(d), "tensor 'z'", "model-00001-of-00002.safetensors", "does not contain it");
    }

    [Theory]
    [InlineData("../outside.safetensors")]
    [InlineData("..\\\\outside.safetensors")]
    [InlineData("sub/inner.safetensors")]
    [InlineData("..")]
    [InlineData("")]
    public void IndexShardPathEscapingTheFolder(string shard)
    {
        var d = TwoShards("{\"weight_map\": {\"a\": \"" + shard + "\"}}");
        // Make the escaping targets real, so that only the name check can stop them.
        St.WriteSmall(Path.GetDirectoryName(d)!, "outside.safetensors");
        St.WriteSmall(Directory.CreateDirectory(Path.Combine(d, "sub")).FullName, "inner.safetensors");
        St.Fails(() => Checkpoint.Open(d).Dispose(), Index(d), "plain file name");
    }

    [Fact]
    public void IndexShardPathAbsolute()
    {
        var outside = St.WriteSmall();
        var d = TwoShards("{\"weight_map\": {\"a\": \"" + outside.Replace("\\", "\\\\") + "\"}}");
        St.Fails(() => Checkpoint.Open(d).Dispose(), Index(d), "plain file name");
    }

    [Fact]
    public void DuplicateTensorAcrossIndexedShards()
    {
        var d = TwoShards();
        // Shard 2 now also holds 'x' (the index maps x to shard 1).
        var w2 = new SafeTensorsWriter();
        w2.AddI32("z", [7, 8, 9, 10], 2, 2);
        w2.AddF32("x", [9, 9, 9], 3);
        w2.Save(Path.Combine(d, "model-00002-of-00002.safetensors"));
        St.Fails(() => Checkpoint.Open(d).Dispose(), "tensor 'x'", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors");
    }

    [Fact]
    public void DuplicateTensorAcrossUnindexedShards()
    {
        var d = TwoShards();
        File.Delete(Index(d));
        var w = new SafeTensorsWriter();
        w.AddF32("x", [9, 9, 9], 3);
        w.Save(Path.Combine(d, "extra.safetensors"));
        St.Fails(() => Checkpoint.Open(d).Dispose(), "tensor 'x'", "also appears", "extra.safetensors", "model-00001-of-00002.safetensors");
    }

    [Fact]
    public void UnindexedShardsAreAllRead()
    {
        var d = TwoShards();
        File.Delete(Index(d));
        using var ck = Checkpoint.Open(d);
        Assert.Equal(["x", "y", "z"], ck.TensorNames.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void BadShardNamesTheShard()
    {
        var d = TwoShards();
        var s2 = Path.Combine(d, "model-00002-of-00002.safetensors");
        File.WriteAllBytes(s2, File.ReadAllBytes(s2)[..^2]);
        St.Fails(() => Checkpoint.Open(d).Dispose(), s2, "tensor 'z'");
    }
}
