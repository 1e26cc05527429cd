using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using LongCat.Tokenization;

namespace LongCat.Training;

/// <summary>How a plain-text input file is cut into documents (a .jsonl file is always one document per line).</summary>
public enum DocumentMode
{
    /// <summary>The whole file is one document.</summary>
    File,
    /// <summary>Documents are separated by one or more blank lines.</summary>
    Paragraph,
    /// <summary>Every non-empty line is a document.</summary>
    Line,
}

/// <summary>Options of <see cref="TokenDataWriter.Prepare"/>.</summary>
public sealed record DataPrepareOptions
{
    public DocumentMode Documents { get; init; } = DocumentMode.File;
    /// <summary>Fraction of documents held out for validation (chosen by a seeded hash of the document index).</summary>
    public double ValidationFraction { get; init; } = 0.05;
    public ulong Seed { get; init; } = 1;
    /// <summary>Id appended after every document; null = the tokenizer's eos token (&lt;/s&gt;).</summary>
    public int? EndOfTextId { get; init; }
}

/// <summary>What <see cref="TokenDataWriter.Prepare"/> wrote.</summary>
public sealed record DataPrepareResult(long TrainTokens, int TrainDocuments, long ValTokens, int ValDocuments, long InputBytes)
{
    /// <summary>Chat data: tokens with a loss (both splits); 0 for text.</summary>
    public long TrainedTokens { get; init; }
}

/// <summary>
/// <c>longcat data prepare</c>: tokenizes text files into a prepared data folder for <see cref="TokenDataset"/>:
/// train.bin/.idx, val.bin/.idx, meta.json and a copy of the tokenizer (tokenizer.json, tokenizer_config.json), so
/// a model trained on the folder can carry its tokenizer. Each document is followed by the end-of-text id. A document
/// goes to the held-out split when a hash of (seed, its index) falls below the validation fraction; if that leaves
/// the split empty (e.g. one document), the last fraction of the training tokens is held out instead. Deterministic.
/// Files are written to temporary names and renamed, meta.json last: a folder with meta.json is complete.
/// </summary>
public static class TokenDataWriter
{
    public static DataPrepareResult Prepare(string tokenizerPath, IReadOnlyList<string> inputs, string outDir, DataPrepareOptions options)
    {
        if (inputs.Count == 0) throw new ArgumentException("no input files");
        if (!(options.ValidationFraction >= 0 && options.ValidationFraction < 1))
            throw new ArgumentException($"validation fraction must be in [0, 1), got {options.ValidationFraction}");
        foreach (var f in inputs) if (!File.Exists(f)) throw new IOException($"{f}: input file not found");
        var tok = Tokenizer.Load(tokenizerPath);
        int eos = options.EndOfTextId ?? tok.EosTokenId ?? tok.TokenToId(LongCatTokenizerSpec.Eos)
            ?? throw new ArgumentException($"{tokenizerPath}: the tokenizer has no end-of-text token '</s>'; give its id explicitly");
        if (eos < 0 || eos >= tok.VocabSize) throw new ArgumentException($"end-of-text id {eos} is outside the tokenizer's vocabulary 0..{tok.VocabSize - 1}");

        var train = new List<int>(); var val = new List<int>();
        var trainDocs = new List<long> { 0 }; var valDocs = new List<long> { 0 };
        long bytes = 0;
        int docIndex = 0;
        ulong threshold = (ulong)(options.ValidationFraction * 18446744073709551616.0);
        var batch = new List<string>();
        void Flush()
        {
            if (batch.Count == 0) return;
            var ids = tok.EncodeBatchToIds(batch);
            foreach (var d in ids)
            {
                bool held = options.ValidationFraction > 0 && Mix(options.Seed, (ulong)docIndex++) < threshold;
                var (dst, docs) = held ? (val, valDocs) : (train, trainDocs);
                dst.AddRange(d);
                dst.Add(eos);
                docs.Add(dst.Count);
            }
            batch.Clear();
        }
        foreach (var f in inputs)
        {
            bytes += new FileInfo(f).Length;
            foreach (var doc in TextCorpus.Documents(f, options.Documents))
            {
                batch.Add(doc);
                if (batch.Count >= 256) Flush();
            }
        }
        Flush();
        if (train.Count == 0) throw new ArgumentException($"the inputs hold no text to train on ({docIndex} documents)");
        if (options.ValidationFraction > 0 && val.Count == 0)
        {
            // Too few documents for a document-level split: hold out the tail of the token stream.
            int cut = train.Count - Math.Max(1, (int)Math.Round(train.Count * options.ValidationFraction));
            val.AddRange(train.Skip(cut));
            train.RemoveRange(cut, train.Count - cut);
            while (trainDocs.Count > 1 && trainDocs[^1] >= cut) trainDocs.RemoveAt(trainDocs.Count - 1);
            trainDocs.Add(cut);
            valDocs.Add(val.Count);
        }

        Directory.CreateDirectory(outDir);
        File.Delete(Path.Combine(outDir, "meta.json"));
        WriteSplit(outDir, "train", train, trainDocs);
        WriteSplit(outDir, "val", val, valDocs);
        CopyTokenizer(tokenizerPath, outDir);
        var meta = new JsonObject
        {
            ["format"] = TokenDataset.Format,
            ["version"] = TokenDataset.TextVersion,
            ["tokenizer"] = "tokenizer.json",
            ["vocab_size"] = tok.VocabSize,
            ["end_of_text_id"] = eos,
            ["documents"] = options.Documents.ToString().ToLowerInvariant(),
            ["validation_fraction"] = options.ValidationFraction,
            ["seed"] = options.Seed,
            ["sources"] = new JsonArray(inputs.Select(f => (JsonNode)new JsonObject { ["path"] = Path.GetFullPath(f), ["bytes"] = new FileInfo(f).Length }).ToArray()),
            ["train"] = new JsonObject { ["tokens"] = train.Count, ["documents"] = trainDocs.Count - 1 },
            ["val"] = new JsonObject { ["tokens"] = val.Count, ["documents"] = valDocs.Count - 1 },
        };
        AtomicWrite(Path.Combine(outDir, "meta.json"), Encoding.UTF8.GetBytes(meta.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n"));
        return new DataPrepareResult(train.Count, trainDocs.Count - 1, val.Count, valDocs.Count - 1, bytes);
    }

    /// <summary>
    /// <c>longcat data prepare --format chat</c>: conversations in OpenAI's JSONL shape (<see cref="ChatData"/>), rendered
    /// and encoded by <see cref="ChatFormat.EncodeForTraining"/> (the code the server uses for prompts), one document per
    /// conversation with no end-of-text id after it (the conversation ends with its end-of-turn token). Besides the ids,
    /// each split gets SPLIT.mask: one byte per token, 1 where the token is trained (assistant text, tool calls, their
    /// end-of-turn), 0 elsewhere. meta.json says <c>"loss_mask": true</c> and <c>"packing": "row"</c>: the trainer puts one
    /// conversation per row, padded (see <see cref="PackedSequenceLoader"/>). Version 2 of the format; plain folders stay
    /// version 1. The held-out split is chosen per conversation as for text.
    /// </summary>
    public static DataPrepareResult PrepareChat(string tokenizerPath, IReadOnlyList<string> inputs, string outDir, DataPrepareOptions options)
    {
        if (inputs.Count == 0) throw new ArgumentException("no input files");
        if (!(options.ValidationFraction >= 0 && options.ValidationFraction < 1))
            throw new ArgumentException($"validation fraction must be in [0, 1), got {options.ValidationFraction}");
        foreach (var f in inputs) if (!File.Exists(f)) throw new IOException($"{f}: input file not found");
        var tok = Tokenizer.Load(tokenizerPath);
        int pad = options.EndOfTextId ?? tok.EosTokenId ?? tok.TokenToId(LongCatTokenizerSpec.Eos)
            ?? throw new ArgumentException($"{tokenizerPath}: the tokenizer has no end-of-text token '</s>' to pad rows with; give its id explicitly");
        // The tool-call syntax of the tokenizer's folder ("tool_call_format" in its tokenizer_config.json), as the server,
        // chat and eval render for a model with this tokenizer.
        var render = new ChatRenderOptions { ToolCallStyle = ToolCallFormat.StyleOfModel(Directory.Exists(tokenizerPath) ? tokenizerPath : Path.GetDirectoryName(Path.GetFullPath(tokenizerPath))!) };
        var splits = new[] { (Ids: new List<int>(), Mask: new List<byte>(), Docs: new List<long> { 0 }), (Ids: new List<int>(), Mask: new List<byte>(), Docs: new List<long> { 0 }) };
        long bytes = 0, trained = 0;
        int docIndex = 0;
        ulong threshold = (ulong)(options.ValidationFraction * 18446744073709551616.0);
        foreach (var f in inputs)
        {
            bytes += new FileInfo(f).Length;
            foreach (var ex in ChatData.Read(f))
            {
                var enc = ChatFormat.EncodeForTraining(tok, ex.Turns, render with { Tools = ex.Tools });
                if (!enc.Trainable.Contains(true)) throw new InvalidDataException($"{f}:{ex.Line}: messages: no assistant token to train on");
                bool held = options.ValidationFraction > 0 && Mix(options.Seed, (ulong)docIndex++) < threshold;
                var s = splits[held ? 1 : 0];
                s.Ids.AddRange(enc.Ids);
                foreach (var t in enc.Trainable) { s.Mask.Add(t ? (byte)1 : (byte)0); if (t) trained++; }
                s.Docs.Add(s.Ids.Count);
            }
        }
        var (train, val) = (splits[0], splits[1]);
        if (train.Ids.Count == 0) throw new ArgumentException($"the inputs hold no conversation for the training split ({docIndex} conversations)");

        Directory.CreateDirectory(outDir);
        File.Delete(Path.Combine(outDir, "meta.json"));
        WriteSplit(outDir, "train", train.Ids, train.Docs);
        WriteSplit(outDir, "val", val.Ids, val.Docs);
        AtomicWrite(Path.Combine(outDir, "train.mask"), CollectionsMarshal.AsSpan(train.Mask));
        AtomicWrite(Path.Combine(outDir, "val.mask"), CollectionsMarshal.AsSpan(val.Mask));
        CopyTokenizer(tokenizerPath, outDir);
        int longest = 0;
        foreach (var s in splits) for (int i = 1; i < s.Docs.Count; i++) longest = Math.Max(longest, (int)(s.Docs[i] - s.Docs[i - 1]));
        var meta = new JsonObject
        {
            ["format"] = TokenDataset.Format,
            ["version"] = TokenDataset.Version,
            ["tokenizer"] = "tokenizer.json",
            ["vocab_size"] = tok.VocabSize,
            ["end_of_text_id"] = pad,
            ["documents"] = "chat",
            ["loss_mask"] = true,
            ["packing"] = "row",
            ["pad_id"] = pad,
            ["longest_document"] = longest,
            ["validation_fraction"] = options.ValidationFraction,
            ["seed"] = options.Seed,
            ["sources"] = new JsonArray(inputs.Select(f => (JsonNode)new JsonObject { ["path"] = Path.GetFullPath(f), ["bytes"] = new FileInfo(f).Length }).ToArray()),
            ["train"] = new JsonObject { ["tokens"] = train.Ids.Count, ["documents"] = train.Docs.Count - 1, ["trained_tokens"] = train.Mask.Count(b => b != 0) },
            ["val"] = new JsonObject { ["tokens"] = val.Ids.Count, ["documents"] = val.Docs.Count - 1, ["trained_tokens"] = val.Mask.Count(b => b != 0) },
        };
        AtomicWrite(Path.Combine(outDir, "meta.json"), Encoding.UTF8.GetBytes(meta.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n"));
        return new DataPrepareResult(train.Ids.Count, train.Docs.Count - 1, val.Ids.Count, val.Docs.Count - 1, bytes) { TrainedTokens = trained };
    }

    /// <summary>
    /// Writes already tokenized data as a prepared folder (no tokenizer): each split is one document. For synthetic data
    /// in tests and tools; <paramref name="vocabSize"/> bounds the ids.
    /// </summary>
    public static void WriteTokens(string outDir, ReadOnlySpan<int> train, ReadOnlySpan<int> val, int vocabSize)
    {
        foreach (var id in train) if ((uint)id >= (uint)vocabSize) throw new ArgumentException($"token id {id} outside 0..{vocabSize - 1}");
        foreach (var id in val) if ((uint)id >= (uint)vocabSize) throw new ArgumentException($"token id {id} outside 0..{vocabSize - 1}");
        Directory.CreateDirectory(outDir);
        File.Delete(Path.Combine(outDir, "meta.json"));
        WriteSplit(outDir, "train", [.. train], train.Length > 0 ? [0, train.Length] : [0]);
        WriteSplit(outDir, "val", [.. val], val.Length > 0 ? [0, val.Length] : [0]);
        var meta = new JsonObject
        {
            ["format"] = TokenDataset.Format,
            ["version"] = TokenDataset.TextVersion,
            ["vocab_size"] = vocabSize,
            ["train"] = new JsonObject { ["tokens"] = train.Length, ["documents"] = train.Length > 0 ? 1 : 0 },
            ["val"] = new JsonObject { ["tokens"] = val.Length, ["documents"] = val.Length > 0 ? 1 : 0 },
        };
        AtomicWrite(Path.Combine(outDir, "meta.json"), Encoding.UTF8.GetBytes(meta.ToJsonString() + "\n"));
    }

    static ulong Mix(ulong seed, ulong i)
    {
        ulong z = seed * 0x9E3779B97F4A7C15UL + i + 0x632BE59BD9B4E019UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    static void WriteSplit(string dir, string split, List<int> tokens, List<long> docs)
    {
        AtomicWrite(Path.Combine(dir, split + ".bin"), MemoryMarshal.AsBytes(CollectionsMarshal.AsSpan(tokens)).ToArray());
        AtomicWrite(Path.Combine(dir, split + ".idx"), MemoryMarshal.AsBytes(CollectionsMarshal.AsSpan(docs)).ToArray());
    }

    static void CopyTokenizer(string tokenizerPath, string outDir)
    {
        string srcDir = Directory.Exists(tokenizerPath) ? tokenizerPath : Path.GetDirectoryName(Path.GetFullPath(tokenizerPath))!;
        string srcFile = Directory.Exists(tokenizerPath) ? Path.Combine(tokenizerPath, "tokenizer.json") : tokenizerPath;
        AtomicWrite(Path.Combine(outDir, "tokenizer.json"), File.ReadAllBytes(srcFile));
        var cfg = Path.Combine(srcDir, "tokenizer_config.json");
        if (File.Exists(cfg)) AtomicWrite(Path.Combine(outDir, "tokenizer_config.json"), File.ReadAllBytes(cfg));
    }

    /// <summary>Temp file, flush to disk, rename.</summary>
    internal static void AtomicWrite(string path, ReadOnlySpan<byte> data)
    {
        var tmp = path + "." + Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + ".tmp";
        try
        {
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                fs.Write(data);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }
}
