using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using LongCat.Training;

namespace LongCat.Cli.Commands;

/// <summary><c>longcat data prepare</c>: text files -> a memory-mapped token folder for <c>longcat train</c>.</summary>
public static class DataCommand
{
    public static Command CreateGroup()
    {
        var group = new Command("data", "Training data: tokenize text into a prepared data folder.");
        group.Subcommands.Add(CreatePrepare());
        return group;
    }

    static Command CreatePrepare()
    {
        var tokenizer = CliSupport.RequiredPath("--tokenizer", "tokenizer.json, or a folder holding it (e.g. one made by 'longcat tokenizer train').");
        var input = new Option<string[]>("--input")
        {
            Description = "UTF-8 text files (.txt: see --documents) or .jsonl files (one document per line in a \"text\" field); a .gz suffix is decompressed.",
            Required = true,
            AllowMultipleArgumentsPerToken = true,
        };
        var output = CliSupport.RequiredPath("--out", "Folder to write train.bin/.idx, val.bin/.idx, meta.json and the tokenizer into (created if missing).");
        var documents = new Option<string>("--documents") { Description = "How a text file splits into documents: file (whole file), paragraph (blank lines), line.", DefaultValueFactory = _ => "file" };
        var val = new Option<double>("--val-fraction") { Description = "Fraction of documents held out for validation (0 = none).", DefaultValueFactory = _ => 0.05 };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the held-out selection.", DefaultValueFactory = _ => 1UL };
        var format = new Option<string>("--format")
        {
            Description = "text (documents of text) or chat (JSONL conversations in OpenAI's shape, {\"messages\": [...], \"tools\": [...]}, " +
                          "rendered with the chat format; a loss mask trains only the assistant's replies and tool calls; one conversation per training row).",
            DefaultValueFactory = _ => "text",
        };
        var cmd = new Command("prepare",
            "Tokenize text files into a prepared data folder: token ids as uint32 (memory-mapped by the trainer), document " +
            "start offsets, every document followed by </s>, a seeded held-out split for validation loss, and a copy of the " +
            "tokenizer so trained checkpoints carry it. Deterministic.")
        {
            tokenizer, input, output, documents, val, seed, format,
        };
        cmd.SetAction(p => CliSupport.Run(p, () =>
        {
            var mode = p.GetValue(documents) switch
            {
                "file" => DocumentMode.File,
                "paragraph" => DocumentMode.Paragraph,
                "line" => DocumentMode.Line,
                var s => throw new CliException($"--documents must be file, paragraph or line, got '{s}'"),
            };
            double f = p.GetValue(val);
            if (!(f >= 0 && f < 1)) throw new CliException($"--val-fraction must be in [0, 1), got {f.ToString(CultureInfo.InvariantCulture)}");
            var inputs = p.GetValue(input)!;
            if (inputs.Length == 0) throw new CliException("--input needs at least one file");
            var sw = Stopwatch.StartNew();
            var outDir = p.GetValue(output)!;
            bool chat = p.GetValue(format) switch
            {
                "text" => false,
                "chat" => true,
                var s => throw new CliException($"--format must be text or chat, got '{s}'"),
            };
            var po = new DataPrepareOptions { Documents = mode, ValidationFraction = f, Seed = p.GetValue(seed) };
            var r = chat ? TokenDataWriter.PrepareChat(p.GetValue(tokenizer)!, inputs, outDir, po) : TokenDataWriter.Prepare(p.GetValue(tokenizer)!, inputs, outDir, po);
            string unit = chat ? "conversations" : "documents";
            var inv = CultureInfo.InvariantCulture;
            string trainedNote = chat ? string.Create(inv, $", {r.TrainedTokens:N0} tokens trained (assistant replies)") : "";
            Console.WriteLine(string.Create(inv,
                $"wrote {outDir}: train {r.TrainTokens:N0} tokens in {r.TrainDocuments:N0} {unit}, val {r.ValTokens:N0} tokens in {r.ValDocuments:N0} {unit}{trainedNote} ({r.InputBytes / 1e6:F2} MB of input files in {sw.Elapsed.TotalSeconds:F1} s)"));
            if (chat) PrintPadding(outDir);
            return 0;
        }));
        return cmd;
    }

    /// <summary>Chat data trains one conversation per row: what that costs at common row lengths (padding, truncation).</summary>
    static void PrintPadding(string dir)
    {
        using var d = TokenDataset.Open(dir, "train");
        var lens = Enumerable.Range(0, d.DocumentCount).Select(i => d.DocumentStarts[i + 1] - d.DocumentStarts[i]).Order().ToArray();
        var inv = CultureInfo.InvariantCulture;
        Console.WriteLine(string.Create(inv, $"conversation length (tokens): median {lens[lens.Length / 2]}, 90th percentile {lens[(int)(0.9 * (lens.Length - 1))]}, longest {lens[^1]}"));
        foreach (int s in new[] { 128, 256, 512, 1024, 2048 })
        {
            var l = new PackedSequenceLoader(d, s, 1);
            Console.WriteLine(string.Create(inv, $"  seq_len {s,4}: {l.PaddingFraction:P1} of row tokens are padding, {l.TruncatedDocuments} conversation(s) truncated"));
        }
    }
}
