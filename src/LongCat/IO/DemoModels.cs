namespace LongCat.IO;

/// <summary>Which shipped demo model a program defaults to.</summary>
public enum DemoModelKind
{
    /// <summary>The base model (<see cref="DemoModels.BasePath"/>): it continues text. Default of generate, eval and the others.</summary>
    Base,
    /// <summary>The chat model (<see cref="DemoModels.ChatPath"/>): it answers and calls tools. Default of chat, serve and examples/DocsAgent.</summary>
    Chat,
}

/// <summary>
/// The one rule for the model a program uses when none is named: the shipped demo models under <c>models/</c>,
/// looked up under the current folder, then under each folder above the executable (so <c>dotnet run --project ...</c>
/// and a build inside the clone find them from anywhere). A program that defaults to the chat model falls back to the
/// base model, with a one-line note, when the chat model's folder is missing.
/// </summary>
public static class DemoModels
{
    /// <summary>The shipped base model (models/longcat-flash-pydoc/README.md).</summary>
    public const string BasePath = "models/longcat-flash-pydoc";

    /// <summary>The shipped chat model, fine-tuned from the base model (docs/post-training.md).</summary>
    public const string ChatPath = "models/longcat-flash-pydoc-chat";

    /// <summary>The relative folder of <paramref name="kind"/>'s model.</summary>
    public static string PathOf(DemoModelKind kind) => kind == DemoModelKind.Chat ? ChatPath : BasePath;

    /// <summary>The folders the demo models are looked up under, in order: the current folder, then each folder above the executable.</summary>
    public static IReadOnlyList<string> SearchRoots()
    {
        var roots = new List<string> { Directory.GetCurrentDirectory() };
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent) roots.Add(d.FullName);
        return roots;
    }

    /// <summary>
    /// <paramref name="given"/> when not null; otherwise the folder of <paramref name="kind"/>'s demo model (the first root
    /// holding it with a config.json). For <see cref="DemoModelKind.Chat"/>, when no root holds the chat model, the base
    /// model, after one line on <paramref name="note"/> (stderr by default) saying so. Throws
    /// <see cref="FileNotFoundException"/> naming the folders searched when no model is found.
    /// </summary>
    public static string Resolve(string? given, DemoModelKind kind, TextWriter? note = null, IReadOnlyList<string>? roots = null)
    {
        if (given is not null) return given;
        roots ??= SearchRoots();
        if (Find(PathOf(kind), roots) is { } found) return found;
        if (kind == DemoModelKind.Chat && Find(BasePath, roots) is { } fallback)
        {
            (note ?? Console.Error).WriteLine($"longcat: note: the chat model ({ChatPath}) is not here; using the base model ({BasePath}), which continues text rather than answering. Pass --model DIR to choose.");
            return fallback;
        }
        throw new FileNotFoundException($"no --model given and the shipped demo model ({PathOf(kind)}) was not found under {roots[0]} or above the executable: run from the repository root or pass --model DIR");
    }

    static string? Find(string relative, IReadOnlyList<string> roots)
    {
        foreach (var r in roots)
        {
            var c = Path.GetFullPath(Path.Combine(r, relative));
            if (File.Exists(Path.Combine(c, "config.json"))) return c;
        }
        return null;
    }
}
