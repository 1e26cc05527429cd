using System.Text.Json.Nodes;
using LongCat.IO;
using LongCat.Model;

namespace LongCat.Tests;

/// <summary>Tests that redirect Console: they run alone, never in parallel with any other test.</summary>
[CollectionDefinition("Console", DisableParallelization = true)]
public sealed class ConsoleCollection;

/// <summary>
/// The CLI in-process (<see cref="LongCat.Cli.Program.Main"/>): bad input gives exit code != 0 and exactly one
/// stderr line "longcat: error: ..." naming the file, tensor or key, never a stack trace; and the happy path of
/// <c>forward</c> writes the logits of an in-process forward, bit for bit, in the fixtures' layout.
/// </summary>
[Collection("Console")]
public class CliErrorTests
{
    static readonly string Tiny = Fixtures.Reference("tiny");
    static readonly string TinyInput = Path.Combine(Fixtures.Reference("tiny"), "expected.safetensors");

    static (int Rc, string Out, string Err) Cli(params string[] args) => InProcessCli.Run(args);

    /// <summary>Runs the CLI and asserts a non-zero exit and one error line containing every fragment.</summary>
    static string Fails(string[] args, params string[] fragments) => InProcessCli.Fails(args, fragments);

    static string Out() => Path.Combine(Fixtures.NewTempDir(), "out.safetensors");

    static string[] Forward(string model, string input, string output) => ["forward", "--model", model, "--input", input, "--output", output];

    static string InputFile(Action<SafeTensorsWriter> fill)
    {
        var w = new SafeTensorsWriter();
        fill(w);
        var p = Path.Combine(Fixtures.NewTempDir(), "input.safetensors");
        w.Save(p);
        return p;
    }

    // ---- forward ----

    [Fact]
    public void MissingModelFolder()
    {
        var model = Path.Combine(Fixtures.NewTempDir(), "no-model");
        var output = Out();
        Fails(Forward(model, TinyInput, output), model, "not found");
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void TruncatedModelFile()
    {
        var d = St.CopyFixture("tiny");
        var m = Path.Combine(d, "model.safetensors");
        using (var fs = new FileStream(m, FileMode.Open)) fs.SetLength(fs.Length - 100);
        Fails(Forward(d, TinyInput, Out()), m, "out of range");
    }

    [Fact]
    public void ModelFileCutInsideTheHeader()
    {
        var d = St.CopyFixture("tiny");
        var m = Path.Combine(d, "model.safetensors");
        using (var fs = new FileStream(m, FileMode.Open)) fs.SetLength(100);
        Fails(Forward(d, TinyInput, Out()), m, "larger than the file");
    }

    [Fact]
    public void ModelWithAShapeTheConfigDoesNotImply()
    {
        var d = St.CopyFixture("tiny");
        const string name = "model.layers.0.mlps.1.up_proj.weight";
        St.Rewrite(Path.Combine(d, "model.safetensors"), (n, dt, s, b) => n == name ? (dt, [64L, 128], b) : (dt, s, b));
        Fails(Forward(d, TinyInput, Out()), $"tensor '{name}'", "[64, 128]", "[128, 64]");
    }

    [Fact]
    public void ModelWithoutConfig()
    {
        var d = St.CopyFixture("tiny");
        File.Delete(Path.Combine(d, "config.json"));
        Fails(Forward(d, TinyInput, Out()), Path.Combine(d, "config.json"), "not found");
    }

    [Fact]
    public void MissingInputFile()
    {
        var input = Path.Combine(Fixtures.NewTempDir(), "ids.safetensors");
        Fails(Forward(Tiny, input, Out()), input, "not found");
    }

    [Fact]
    public void InputThatIsAFolder()
    {
        var input = Fixtures.NewTempDir();
        Fails(Forward(Tiny, input, Out()), input, "folder");
    }

    [Fact]
    public void InputThatIsNotSafetensors()
    {
        var input = Path.Combine(Fixtures.NewTempDir(), "ids.safetensors");
        File.WriteAllText(input, "input_ids = [1, 2, 3]\n");
        Fails(Forward(Tiny, input, Out()), input);
    }

    [Fact]
    public void InputWithoutInputIds()
    {
        var input = InputFile(w => w.AddI64("tokens", [1, 2, 3], 1, 3));
        Fails(Forward(Tiny, input, Out()), input, "'input_ids'", "missing");
    }

    [Fact]
    public void InputIdsOfTheWrongDtype()
    {
        var input = InputFile(w => w.AddF32("input_ids", [1, 2, 3], 1, 3));
        Fails(Forward(Tiny, input, Out()), input, "'input_ids'", "F32");
    }

    [Fact]
    public void InputIdsOfTheWrongShape()
    {
        var input = InputFile(w => w.AddI64("input_ids", [1, 2, 3], 3));
        Fails(Forward(Tiny, input, Out()), input, "'input_ids'", "[3]");
        var empty = InputFile(w => w.AddI64("input_ids", [], 0, 3));
        Fails(Forward(Tiny, empty, Out()), empty, "'input_ids'", "[0, 3]");
    }

    [Theory]
    [InlineData(256)]   // vocab_size is 256
    [InlineData(-1)]
    [InlineData(long.MaxValue)]
    public void TokenIdOutsideTheVocabulary(long id)
    {
        var input = InputFile(w => w.AddI64("input_ids", [1, 2, 3, id], 2, 2));
        var line = Fails(Forward(Tiny, input, Out()), input, "input_ids[1, 1]", id.ToString(), "0..255");
        Assert.Contains("vocabulary", line);
    }

    [Fact]
    public void OutputPathThatIsAFolder()
    {
        var output = Directory.CreateDirectory(Path.Combine(Fixtures.NewTempDir(), "out.safetensors")).FullName;
        Fails(Forward(Tiny, TinyInput, output), output);
    }

    [Theory]
    [InlineData("abc")]
    [InlineData("0")]
    [InlineData("-3")]
    [InlineData("1025")]
    [InlineData("99999999999")]
    [InlineData("2.5")]
    public void BadThreadsValue(string threads)
    {
        Fails(["--threads", threads, .. Forward(Tiny, TinyInput, Out())], "--threads", $"'{threads}'");
        Fails(["info", "--config", Path.Combine(Tiny, "config.json"), "--threads", threads], "--threads", $"'{threads}'");
    }

    // ---- info ----

    [Fact]
    public void InfoWithAnInvalidConfigKey()
    {
        var cfg = Path.Combine(Fixtures.NewTempDir(), "config.json");
        var o = JsonNode.Parse(File.ReadAllText(Path.Combine(Tiny, "config.json")))!.AsObject();
        o["qk_rope_head_dim"] = 7;
        File.WriteAllText(cfg, o.ToJsonString());
        Fails(["info", "--config", cfg], cfg, "'qk_rope_head_dim'", "7");
    }

    [Fact]
    public void InfoWithInvalidConfigJson()
    {
        var cfg = Path.Combine(Fixtures.NewTempDir(), "config.json");
        File.WriteAllText(cfg, "{\"hidden_size\": 64,, }");
        Fails(["info", "--config", cfg], cfg, "invalid JSON");
    }

    [Fact]
    public void InfoWithADuplicateConfigKey()
    {
        var cfg = Path.Combine(Fixtures.NewTempDir(), "config.json");
        File.WriteAllText(cfg, "{\"hidden_size\": 64, \"hidden_size\": 64}");
        Fails(["info", "--config", cfg], cfg, "hidden_size");
    }

    [Fact]
    public void InfoWithAMissingConfig()
    {
        var cfg = Path.Combine(Fixtures.NewTempDir(), "config.json");
        Fails(["info", "--config", cfg], cfg);
    }

    [Fact]
    public void InfoWithAMissingModelFolder()
    {
        var d = Path.Combine(Fixtures.NewTempDir(), "nope");
        Fails(["info", "--model", d], d, "not found");
    }

    [Theory]
    [InlineData("[]")]          // aborted with InvalidOperationException and a stack trace before
    [InlineData("{\"weight_map\": {\"x\": \"../model.safetensors\"}}")]
    [InlineData("{\"weight_map\": {\"x\": \"model-2.safetensors\"}}")]
    public void InfoWithABadIndex(string index)
    {
        var d = St.CopyFixture("tiny");
        var idx = Path.Combine(d, "model.safetensors.index.json");
        File.WriteAllText(idx, index);
        Fails(["info", "--model", d], idx);
    }

    [Fact]
    public void InfoOnTheFixtureWorks()
    {
        var (rc, o, err) = Cli("info", "--model", Tiny);
        Assert.Equal(0, rc);
        Assert.Equal("", err);
        Assert.Contains("Total parameters", o);
    }

    // ---- happy path ----

    [Fact]
    public void ForwardWritesTheInProcessLogitsInTheFixtureLayout()
    {
        var output = Out();
        var (rc, o, err) = Cli(Forward(Tiny, TinyInput, output));
        Assert.True(rc == 0, err);
        Assert.Equal("", err);
        Assert.Contains(output, o);

        using var expected = SafeTensorFile.Open(TinyInput);
        using var got = SafeTensorFile.Open(output);
        var idsT = expected.Tensor("input_ids");
        int b = (int)idsT.Shape[0], s = (int)idsT.Shape[1];
        var ids = idsT.ToInt64().Select(v => (int)v).ToArray();
        using var model = LongCatModel.Load(Tiny);
        var r = model.Forward(ids, b, s, new ForwardOptions { KeepHiddenStates = true, KeepRouting = true });
        var logits = got.Tensor("logits").ToFloat32();
        Assert.Equal(r.Logits.Select(BitConverter.SingleToInt32Bits), logits.Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(r.FinalHidden, got.Tensor("final_hidden").ToFloat32());

        // Same names, dtypes and shapes as the fixture (which also holds the loss and a greedy continuation).
        foreach (var (name, info) in got.Tensors)
        {
            Assert.True(expected.Contains(name), $"'{name}' is not in the fixture");
            Assert.Equal(expected.Tensors[name].DType, info.DType);
            Assert.Equal(expected.Tensors[name].Shape, info.Shape);
        }
        foreach (var name in expected.Tensors.Keys.Where(n => n != "loss" && !n.StartsWith("greedy_", StringComparison.Ordinal)))
            Assert.True(got.Contains(name), $"'{name}' missing from the output");
        Assert.Equal(idsT.ToInt64(), got.Tensor("input_ids").ToInt64());
        Assert.Equal(expected.Tensor("router_topk_indices_layer_1").ToInt64(), got.Tensor("router_topk_indices_layer_1").ToInt64());
        Assert.True(Fixtures.MaxAbsDiff(expected.Tensor("logits").ToFloat32(), logits) <= 1e-5f);
    }
}
