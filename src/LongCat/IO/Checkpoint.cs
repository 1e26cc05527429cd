using System.Text.Json;

namespace LongCat.IO;

/// <summary>
/// A Hugging Face checkpoint folder: <c>config.json</c> plus either <c>model.safetensors</c> or shards listed
/// in <c>model.safetensors.index.json</c>. Every shard is memory-mapped; tensors are looked up by name.
/// </summary>
public sealed class Checkpoint : IDisposable
{
    readonly List<SafeTensorFile> _files = [];
    readonly Dictionary<string, SafeTensorFile> _byTensor = new(StringComparer.Ordinal);

    public string Folder { get; }
    public IReadOnlyList<SafeTensorFile> Files => _files;
    public IEnumerable<string> TensorNames => _byTensor.Keys;

    Checkpoint(string folder) { Folder = folder; }

    /// <summary>Opens a checkpoint folder, or a single .safetensors file.</summary>
    public static Checkpoint Open(string path)
    {
        if (File.Exists(path) && path.EndsWith(".safetensors", StringComparison.Ordinal))
        {
            var single = new Checkpoint(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);
            single.Add(SafeTensorFile.Open(path));
            return single;
        }
        if (File.Exists(path))
            throw new ModelFormatException($"{path}: is a file; expected a model folder or a .safetensors file");
        if (!Directory.Exists(path))
            throw new ModelFormatException($"{path}: model folder not found");
        var ck = new Checkpoint(path);
        try
        {
            var index = System.IO.Path.Combine(path, "model.safetensors.index.json");
            var single = System.IO.Path.Combine(path, "model.safetensors");
            if (File.Exists(index)) ck.OpenSharded(index);
            else if (File.Exists(single)) ck.Add(SafeTensorFile.Open(single));
            else
            {
                var any = Directory.GetFiles(path, "*.safetensors").Order(StringComparer.Ordinal).ToArray();
                if (any.Length == 0)
                    throw new ModelFormatException($"{path}: no model.safetensors, model.safetensors.index.json or *.safetensors file in the folder");
                foreach (var f in any) ck.Add(SafeTensorFile.Open(f));
            }
            return ck;
        }
        catch
        {
            ck.Dispose();
            throw;
        }
    }

    void OpenSharded(string index)
    {
        Dictionary<string, string> map;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(index));
            // TryGetProperty throws InvalidOperationException on a non-object root ([] or "x"): check the kind first.
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException($"{index}: the top level must be a JSON object with a 'weight_map', found {doc.RootElement.ValueKind}");
            if (doc.RootElement.EnumerateObject().Count(p => p.Name == "weight_map") > 1)
                throw new ModelFormatException($"{index}: 'weight_map' appears twice");
            if (!doc.RootElement.TryGetProperty("weight_map", out var wm) || wm.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException($"{index}: missing 'weight_map' object");
            map = new(StringComparer.Ordinal);
            foreach (var p in wm.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new ModelFormatException($"{index}: weight_map entry '{p.Name}' must name a shard file");
                // A tensor mapped twice would otherwise silently go to whichever shard came last.
                if (!map.TryAdd(p.Name, p.Value.GetString()!))
                    throw new ModelFormatException($"{index}: tensor '{p.Name}' appears twice in 'weight_map'");
            }
            if (map.Count == 0)
                throw new ModelFormatException($"{index}: 'weight_map' is empty: it names no tensors");
        }
        catch (JsonException e) { throw new ModelFormatException($"{index}: invalid JSON: {e.Message}", e); }
        // Names or values with escapes that are not valid UTF-16 (a lone surrogate such as "\ud800").
        catch (InvalidOperationException e) { throw new ModelFormatException($"{index}: invalid JSON: {e.Message}", e); }

        var shards = new Dictionary<string, SafeTensorFile>(StringComparer.Ordinal);
        foreach (var shard in map.Values.Distinct().Order(StringComparer.Ordinal))
        {
            if (shard.Contains('/') || shard.Contains('\\') || shard == ".." || shard.Length == 0)
                throw new ModelFormatException($"{index}: shard name '{shard}' must be a plain file name in the model folder");
            var p = System.IO.Path.Combine(Folder, shard);
            if (!File.Exists(p))
            {
                var tensor = map.First(kv => kv.Value == shard).Key;
                throw new ModelFormatException($"{index}: names shard '{shard}' (for tensor '{tensor}'), which does not exist in {Folder}");
            }
            var f = SafeTensorFile.Open(p);
            _files.Add(f);
            shards[shard] = f;
        }
        foreach (var (name, shard) in map)
        {
            var f = shards[shard];
            if (!f.Contains(name))
                throw new ModelFormatException($"{index}: tensor '{name}' is mapped to '{shard}', which does not contain it");
            _byTensor[name] = f;
        }
        // A tensor stored in two shards is ambiguous (loaders that read every shard would take the last copy),
        // as it is for unindexed folders (see Add).
        foreach (var f in _files)
            foreach (var name in f.Tensors.Keys)
                if (_byTensor.TryGetValue(name, out var owner) && !ReferenceEquals(owner, f))
                    throw new ModelFormatException($"{f.Path}: tensor '{name}' also appears in {owner.Path} (the shard {index} maps it to)");
    }

    void Add(SafeTensorFile f)
    {
        _files.Add(f);
        foreach (var name in f.Tensors.Keys)
        {
            if (_byTensor.TryGetValue(name, out var other))
                throw new ModelFormatException($"{f.Path}: tensor '{name}' also appears in {other.Path}");
            _byTensor[name] = f;
        }
    }

    public bool Contains(string name) => _byTensor.ContainsKey(name);

    /// <summary>The named tensor; throws naming the folder and tensor if absent.</summary>
    public TensorView Tensor(string name)
    {
        if (!_byTensor.TryGetValue(name, out var f))
            throw new ModelFormatException($"{Folder}: missing tensor '{name}'");
        return f.Tensor(name);
    }

    public TensorView? TryTensor(string name) => _byTensor.TryGetValue(name, out var f) ? f.Tensor(name) : null;

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
        _files.Clear();
    }
}
