using System.IO.MemoryMappedFiles;
using System.Text.Json.Nodes;

namespace LongCat.Training;

/// <summary>
/// One split ("train" or "val") of a prepared data folder (<see cref="TokenDataWriter"/>), memory-mapped:
/// <c>SPLIT.bin</c> holds the token ids as little-endian uint32, every document followed by the end-of-text id;
/// <c>SPLIT.idx</c> holds the documents' start offsets as int64 (documents + 1 entries, the last = token count).
/// <c>meta.json</c> describes the folder. Version 2 (chat data, <c>"loss_mask": true</c>) adds <c>SPLIT.mask</c>, one
/// byte per token (1 = the token is trained, 0 = context only), and <c>"packing": "row"</c> with a <c>"pad_id"</c>:
/// one document per training row. Version 1 folders (plain text) load as before, every token trained.
/// </summary>
public sealed unsafe class TokenDataset : IDisposable
{
    public const string Format = "longcat-tokens";
    /// <summary>The newest version (written for chat data).</summary>
    public const int Version = 2;
    /// <summary>The version written for plain text (no mask), readable by older builds.</summary>
    public const int TextVersion = 1;

    readonly byte[]? _mask;

    readonly MemoryMappedFile? _file;
    readonly MemoryMappedViewAccessor? _view;
    byte* _base;

    public string Folder { get; }
    public string Split { get; }
    public long TokenCount { get; }
    public long[] DocumentStarts { get; }
    public int DocumentCount => DocumentStarts.Length - 1;
    /// <summary>The tokenizer's vocabulary size recorded at preparation (every id is below it).</summary>
    public int VocabSize { get; }
    /// <summary>True for chat data: a per-token loss mask, one document per row.</summary>
    public bool HasLossMask => _mask is not null;
    /// <summary>The id that pads rows of chat data (the end-of-text id).</summary>
    public int PadId { get; }
    /// <summary>Tokens whose mask is 1 (all tokens without a mask).</summary>
    public long TrainedTokenCount { get; }

    TokenDataset(string folder, string split, MemoryMappedFile? file, MemoryMappedViewAccessor? view, long tokens, long[] docs, int vocab, byte[]? mask, int pad)
    {
        Folder = folder; Split = split; _file = file; _view = view; TokenCount = tokens; DocumentStarts = docs; VocabSize = vocab;
        _mask = mask; PadId = pad;
        long trained = tokens;
        if (mask is not null) { trained = 0; foreach (var b in mask) trained += b; }
        TrainedTokenCount = trained;
        if (view is not null)
        {
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            _base = p + view.PointerOffset;
        }
    }

    /// <summary>Reads meta.json of a prepared folder; throws naming what is missing or wrong.</summary>
    public static JsonObject ReadMeta(string folder)
    {
        if (!Directory.Exists(folder)) throw new IOException($"{folder}: data folder not found (prepare one with 'longcat data prepare')");
        var path = Path.Combine(folder, "meta.json");
        if (!File.Exists(path)) throw new IOException($"{path}: not found; {folder} is not a prepared data folder (run 'longcat data prepare')");
        JsonObject meta;
        try { meta = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new InvalidDataException($"{path}: not a JSON object"); }
        catch (System.Text.Json.JsonException e) { throw new InvalidDataException($"{path}: invalid JSON: {e.Message}"); }
        if ((string?)meta["format"] != Format) throw new InvalidDataException($"{path}: format is not '{Format}'");
        int? version = (int?)meta["version"];
        if (version is not (1 or 2)) throw new InvalidDataException($"{path}: version {version} is not supported (expected 1 or 2)");
        return meta;
    }

    /// <summary>Opens <paramref name="split"/> of a prepared data folder (an empty split is allowed: 0 tokens).</summary>
    public static TokenDataset Open(string folder, string split)
    {
        var meta = ReadMeta(folder);
        int vocab = (int?)meta["vocab_size"] ?? throw new InvalidDataException($"{folder}/meta.json: missing 'vocab_size'");
        string bin = Path.Combine(folder, split + ".bin"), idx = Path.Combine(folder, split + ".idx");
        if (!File.Exists(bin) || !File.Exists(idx)) throw new IOException($"{folder}: split '{split}' is missing ({split}.bin / {split}.idx)");
        long bytes = new FileInfo(bin).Length;
        if (bytes % 4 != 0) throw new InvalidDataException($"{bin}: {bytes} bytes is not a whole number of uint32 tokens (truncated?)");
        long tokens = bytes / 4;
        var idxBytes = File.ReadAllBytes(idx);
        if (idxBytes.Length % 8 != 0 || idxBytes.Length < 8) throw new InvalidDataException($"{idx}: not a list of int64 document offsets");
        var docs = new long[idxBytes.Length / 8];
        Buffer.BlockCopy(idxBytes, 0, docs, 0, idxBytes.Length);
        if (docs[0] != 0 || docs[^1] != tokens) throw new InvalidDataException($"{idx}: document offsets do not span {bin} (0..{tokens})");
        for (int i = 1; i < docs.Length; i++)
            if (docs[i] < docs[i - 1]) throw new InvalidDataException($"{idx}: document offsets decrease at entry {i}");
        byte[]? mask = null;
        int pad = 0;
        if ((bool?)meta["loss_mask"] == true)
        {
            string m = Path.Combine(folder, split + ".mask");
            if (!File.Exists(m)) throw new IOException($"{folder}: split '{split}' has a loss mask in meta.json but no {split}.mask");
            mask = File.ReadAllBytes(m);
            if (mask.Length != tokens) throw new InvalidDataException($"{m}: {mask.Length} mask bytes for {tokens} tokens");
            foreach (var b in mask) if (b > 1) throw new InvalidDataException($"{m}: mask bytes must be 0 or 1, found {b}");
            if ((string?)meta["packing"] != "row") throw new InvalidDataException($"{folder}/meta.json: packing '{(string?)meta["packing"]}' is not supported (expected 'row')");
            pad = (int?)meta["pad_id"] ?? throw new InvalidDataException($"{folder}/meta.json: missing 'pad_id'");
            if ((uint)pad >= (uint)vocab) throw new InvalidDataException($"{folder}/meta.json: pad_id {pad} outside 0..{vocab - 1}");
        }
        if (tokens == 0) return new TokenDataset(folder, split, null, null, 0, docs, vocab, mask, pad);
        var file = MemoryMappedFile.CreateFromFile(bin, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        try
        {
            var view = file.CreateViewAccessor(0, bytes, MemoryMappedFileAccess.Read);
            return new TokenDataset(folder, split, file, view, tokens, docs, vocab, mask, pad);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Copies tokens [start, start + dst.Length) into <paramref name="dst"/>.</summary>
    public void CopyTokens(long start, Span<int> dst)
    {
        if (start < 0 || start + dst.Length > TokenCount) throw new ArgumentOutOfRangeException(nameof(start), $"tokens [{start}, {start + dst.Length}) outside 0..{TokenCount}");
        if (_base == null) throw new ObjectDisposedException(nameof(TokenDataset));
        new ReadOnlySpan<int>(_base + start * 4, dst.Length).CopyTo(dst);
    }

    /// <summary>Copies the loss mask of tokens [start, start + dst.Length) (1 = trained); all ones without a mask.</summary>
    public void CopyMask(long start, Span<byte> dst)
    {
        if (start < 0 || start + dst.Length > TokenCount) throw new ArgumentOutOfRangeException(nameof(start), $"tokens [{start}, {start + dst.Length}) outside 0..{TokenCount}");
        if (_mask is null) dst.Fill(1); else _mask.AsSpan((int)start, dst.Length).CopyTo(dst);
    }

    public void Dispose()
    {
        if (_view is not null && _base != null) _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _base = null;
        _view?.Dispose();
        _file?.Dispose();
    }
}
