using LongCat.IO;

namespace LongCat.Tests;

/// <summary>The one rule for the default model (<see cref="DemoModels.Resolve"/>), on temporary folder trees.</summary>
public class DemoModelsTests
{
    /// <summary>A root folder holding the given demo models (a config.json each is what makes a model folder).</summary>
    static string Root(params string[] models)
    {
        var root = Fixtures.NewTempDir();
        foreach (var m in models)
        {
            Directory.CreateDirectory(Path.Combine(root, m));
            File.WriteAllText(Path.Combine(root, m, "config.json"), "{}");
        }
        return root;
    }

    static string Full(string root, string model) => Path.GetFullPath(Path.Combine(root, model));

    [Fact]
    public void AGivenModelIsUsedAsIs()
    {
        var note = new StringWriter();
        Assert.Equal("some/dir", DemoModels.Resolve("some/dir", DemoModelKind.Chat, note, [Root()]));
        Assert.Equal("", note.ToString());
    }

    [Fact]
    public void ChatDefaultsToTheChatModelAndBaseToTheBaseModel()
    {
        var root = Root(DemoModels.BasePath, DemoModels.ChatPath);
        var note = new StringWriter();
        Assert.Equal(Full(root, DemoModels.ChatPath), DemoModels.Resolve(null, DemoModelKind.Chat, note, [root]));
        Assert.Equal(Full(root, DemoModels.BasePath), DemoModels.Resolve(null, DemoModelKind.Base, note, [root]));
        Assert.Equal("", note.ToString());
    }

    [Fact]
    public void WithoutTheChatModelChatFallsBackToTheBaseModelWithOneNote()
    {
        var root = Root(DemoModels.BasePath);
        var note = new StringWriter();
        Assert.Equal(Full(root, DemoModels.BasePath), DemoModels.Resolve(null, DemoModelKind.Chat, note, [root]));
        var lines = note.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains(DemoModels.ChatPath, Assert.Single(lines));
        Assert.Contains(DemoModels.BasePath, lines[0]);
    }

    [Fact]
    public void TheChatModelInAnyRootWinsOverTheBaseModelInAnEarlierOne()
    {
        // The current folder has only the base model; the clone above the executable has both.
        var cwd = Root(DemoModels.BasePath);
        var clone = Root(DemoModels.BasePath, DemoModels.ChatPath);
        Assert.Equal(Full(clone, DemoModels.ChatPath), DemoModels.Resolve(null, DemoModelKind.Chat, TextWriter.Null, [cwd, clone]));
        Assert.Equal(Full(cwd, DemoModels.BasePath), DemoModels.Resolve(null, DemoModelKind.Base, TextWriter.Null, [cwd, clone]));
    }

    [Fact]
    public void AFolderWithoutConfigJsonIsNotAModel()
    {
        var root = Root(DemoModels.BasePath);
        Directory.CreateDirectory(Path.Combine(root, DemoModels.ChatPath));   // e.g. a training run still writing it
        var note = new StringWriter();
        Assert.Equal(Full(root, DemoModels.BasePath), DemoModels.Resolve(null, DemoModelKind.Chat, note, [root]));
        Assert.NotEqual("", note.ToString());
    }

    [Fact]
    public void NoModelAnywhereIsAClearError()
    {
        var root = Root();
        var e = Assert.Throws<FileNotFoundException>(() => DemoModels.Resolve(null, DemoModelKind.Base, TextWriter.Null, [root]));
        Assert.Contains(DemoModels.BasePath, e.Message);
        Assert.Contains("--model", e.Message);
        // The chat default names the chat model it looked for.
        e = Assert.Throws<FileNotFoundException>(() => DemoModels.Resolve(null, DemoModelKind.Chat, TextWriter.Null, [root]));
        Assert.Contains(DemoModels.ChatPath, e.Message);
    }

    [Fact]
    public void InTheCloneTheShippedBaseModelIsFound()
    {
        // The test runs from the build output inside the clone: the base model is found above the executable.
        var dir = DemoModels.Resolve(null, DemoModelKind.Base, TextWriter.Null);
        Assert.True(File.Exists(Path.Combine(dir, "model.safetensors")), dir);
        Assert.EndsWith(Path.Combine("models", "longcat-flash-pydoc"), dir);
    }
}
