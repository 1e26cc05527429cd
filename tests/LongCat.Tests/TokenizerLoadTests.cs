using System.Text.Json.Nodes;
using LongCat.IO;
using LongCat.Tokenization;

namespace LongCat.Tests;

/// <summary>Bad tokenizer files get a clear <see cref="ModelFormatException"/> naming the file and the component.</summary>
public class TokenizerLoadTests
{
    static JsonObject Base() =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(Fixtures.Tokenizer("longcat_style"), "tokenizer.json")))!.AsObject();

    static string LoadError(JsonObject json) =>
        Assert.Throws<ModelFormatException>(() => Tokenizer.FromJson(json.ToJsonString(), "bad.json")).Message;

    [Fact]
    public void MalformedJsonNamesTheFile()
    {
        var e = Assert.Throws<ModelFormatException>(() => Tokenizer.FromJson("{\"model\": {\"type\": \"BPE\", ", "broken.json"));
        Assert.StartsWith("broken.json: not valid JSON", e.Message);
        Assert.Contains("expected a JSON object", Assert.Throws<ModelFormatException>(() => Tokenizer.FromJson("[1, 2]", "list.json")).Message);
    }

    [Fact]
    public void MissingMergesIsAnError()
    {
        var j = Base();
        j["model"]!.AsObject().Remove("merges");
        Assert.Equal("bad.json: model.merges: missing (a BPE model needs its merges list)", LoadError(j));
    }

    [Theory]
    [InlineData("WordPiece")]
    [InlineData("Unigram")]
    [InlineData("WordLevel")]
    public void UnsupportedModelTypesAreNamed(string type)
    {
        var j = Base();
        j["model"]!["type"] = type;
        var m = LoadError(j);
        Assert.Contains("model.type", m);
        Assert.Contains($"unsupported model type '{type}'", m);
    }

    [Fact]
    public void MergesNamingUnknownTokensAreErrors()
    {
        var j = Base();
        j["model"]!["merges"]!.AsArray().Insert(0, new JsonArray("Ġ", "nonexistent-token"));
        Assert.Equal("bad.json: model.merges[0]: token 'nonexistent-token' is not in the vocabulary", LoadError(j));

        j = Base();
        j["model"]!["merges"]!.AsArray().Add("a b c");
        Assert.Contains("is not two tokens separated by one space", LoadError(j));

        j = Base();
        j["model"]!["merges"]!.AsArray().Add(new JsonArray("q", "q")); // "qq" is not a vocabulary entry
        Assert.Contains("merged token 'qq' is not in the vocabulary", LoadError(j));

        j = Base();
        j["model"]!["merges"]!.AsArray().Add(42);
        Assert.Contains("expected \"a b\" or [\"a\", \"b\"]", LoadError(j));
    }

    [Fact]
    public void UnsupportedComponentsNameTheirPath()
    {
        var j = Base();
        j["pre_tokenizer"]!["pretokenizers"]![1] = new JsonObject { ["type"] = "Metaspace", ["replacement"] = "▁" };
        Assert.Equal("bad.json: pre_tokenizer.pretokenizers[1]: unsupported pre-tokenizer type 'Metaspace' (supported: Sequence, Split, ByteLevel, Digits)", LoadError(j));

        j = Base();
        j["normalizer"] = new JsonObject { ["type"] = "Sequence", ["normalizers"] = new JsonArray(new JsonObject { ["type"] = "NFKC" }) };
        Assert.Contains("normalizer.normalizers[0]: unsupported normalizer type 'NFKC'", LoadError(j));

        j = Base();
        j["decoder"] = new JsonObject { ["type"] = "WordPiece" };
        Assert.Contains("decoder: unsupported decoder type 'WordPiece'", LoadError(j));

        j = Base();
        j["post_processor"] = new JsonObject { ["type"] = "BertProcessing" };
        Assert.Contains("post_processor: unsupported post-processor type 'BertProcessing'", LoadError(j));

        j = Base();
        j["pre_tokenizer"] = new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = "\\s+" }, ["behavior"] = "Isolated" };
        Assert.Contains("has no ByteLevel step", LoadError(j));

        j = Base();
        j["pre_tokenizer"]!["pretokenizers"]![0]!["pattern"] = new JsonObject { ["Regex"] = "(a)\\1" };
        Assert.Contains("pre_tokenizer.pretokenizers[0].pattern: regex /(a)\\1/: backreferences", LoadError(j));

        j = Base();
        j["pre_tokenizer"]!["pretokenizers"]![0]!["behavior"] = "Sideways";
        Assert.Contains("unknown behavior 'Sideways'", LoadError(j));

        j = Base();
        j["truncation"] = new JsonObject { ["max_length"] = 8 };
        Assert.Contains("bad.json: truncation: is set", LoadError(j));

        j = Base();
        j["model"]!["vocab"]!["<s>"] = "one";
        Assert.Contains("model.vocab[\"<s>\"]: id must be a non-negative integer", LoadError(j));
    }

    [Fact]
    public void MissingFilesAreNamed()
    {
        var dir = Fixtures.NewTempDir();
        Assert.Contains("no tokenizer.json in this folder", Assert.Throws<ModelFormatException>(() => Tokenizer.Load(dir)).Message);
        Assert.Contains("tokenizer file not found", Assert.Throws<ModelFormatException>(() => Tokenizer.Load(Path.Combine(dir, "x.json"))).Message);
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), "{}");
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), "{\"bos_token\": 5}");
        Assert.Contains("tokenizer_config.json: 'bos_token' must be a string", Assert.Throws<ModelFormatException>(() => Tokenizer.Load(dir)).Message);
    }

    [Fact]
    public void AddedTokenIdsAreAssignedLikeHuggingFace()
    {
        // HF ignores the "id" of an added token that is not in the vocabulary and appends it after the
        // vocabulary (checked with tokenizers 0.23.2: 5000 -> 4096, 4999 -> 4097, 77 -> 4098).
        var j = Base();
        var added = j["added_tokens"]!.AsArray();
        added.Add(new JsonObject { ["id"] = 5000, ["content"] = "<extra>", ["special"] = false, ["normalized"] = false });
        added.Add(new JsonObject { ["id"] = 4999, ["content"] = "<extra2>", ["special"] = true, ["normalized"] = false });
        added.Add(new JsonObject { ["id"] = 77, ["content"] = "<x3>", ["special"] = true, ["normalized"] = false });
        var tok = Tokenizer.FromJson(j.ToJsonString());
        Assert.Equal([69, 4096, 70, 4097, 4098], tok.EncodeToIds("a<extra>b<extra2><x3>"));
        Assert.Equal(4099, tok.VocabSize);
        Assert.Equal("<extra>i", tok.Decode([4096, 5000, 4999, 77]));
        Assert.Equal(3, tok.Warnings.Count);
        Assert.Contains("'<extra>' has id 5000 in the file but gets 4096", tok.Warnings[0]);
    }

    [Fact]
    public void ConfigGivesSpecialTokenIds()
    {
        var ds = TokenizerParityTests.Load("deepseek_v3");
        Assert.Equal(0, ds.BosTokenId);
        Assert.Equal(1, ds.EosTokenId);
        Assert.True(ds.Config!.AddBosToken);
        Assert.Contains("<｜Assistant｜>", ds.Config.ChatTemplate);
        var qw = TokenizerParityTests.Load("qwen3");
        Assert.Equal(151645, qw.EosTokenId);
        Assert.Null(TokenizerParityTests.Load("longcat_style").Config);
        // Adding special tokens never adds a BOS for DeepSeek-V3: its post-processor is ByteLevel (README trap 8).
        Assert.Equal(ds.EncodeToIds("Hello"), ds.EncodeToIds("Hello", addSpecialTokens: true));
    }
}
