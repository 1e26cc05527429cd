using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using LongCat.Tokenization;

namespace LongCat.Cli.Commands;

/// <summary><c>longcat tokenizer train</c>: byte-level BPE training with LongCat's pre-tokenization.</summary>
public static class TokenizerTrainCommand
{
    /// <summary>The <c>tokenizer</c> command group.</summary>
    public static Command CreateGroup()
    {
        var group = new Command("tokenizer", "Tokenizer tools: train a byte-level BPE tokenizer.");
        group.Subcommands.Add(Create());
        return group;
    }

    public static Command Create()
    {
        var input = new Option<string[]>("--input")
        {
            Description = "UTF-8 text files to train on (repeat the option or list several); .jsonl trains on each line's \"text\" field; a .gz suffix is decompressed.",
            Required = true,
            AllowMultipleArgumentsPerToken = true,
        };
        var vocab = new Option<int>("--vocab-size") { Description = "Vocabulary size, including the 5 special tokens and 256 byte symbols.", Required = true };
        var output = CliSupport.RequiredPath("--out", "Folder to write tokenizer.json and tokenizer_config.json into (created if missing).");
        var minFreq = new Option<int>("--min-frequency") { Description = "Stop merging once the best pair occurs fewer times (default 2).", DefaultValueFactory = _ => 2 };
        var quiet = new Option<bool>("--quiet") { Description = "No progress on stderr." };
        var cmd = new Command("train", "Train byte-level BPE with LongCat's pre-tokenizer (three Split regexes: words with single digits, full-width punctuation, CJK) and special tokens <unk>=0 <s>=1 </s>=2 <pad>=3 </longcat_s>=4; writes HF tokenizer.json + tokenizer_config.json. Deterministic for the same input.")
        {
            input, vocab, output, minFreq, quiet,
        };
        cmd.SetAction(p => CliSupport.Run(p, () => Run(p.GetValue(input)!, p.GetValue(vocab), p.GetValue(output)!, p.GetValue(minFreq), p.GetValue(quiet))));
        return cmd;
    }

    static int Run(string[] inputs, int vocabSize, string outDir, int minFrequency, bool quiet)
    {
        if (inputs.Length == 0) throw new CliException("--input needs at least one file");
        foreach (var f in inputs)
            if (!File.Exists(f)) throw new CliException($"{f}: input file not found");
        int min = LongCatTokenizerSpec.SpecialTokens.Count + 256;
        if (vocabSize < min || vocabSize > 1_000_000) throw new CliException($"--vocab-size must be in {min}..1000000, got {vocabSize}");
        if (minFrequency < 1) throw new CliException($"--min-frequency must be >= 1, got {minFrequency}");

        var sw = Stopwatch.StartNew();
        int lastPct = -1;
        string lastPhase = "";
        void Progress(TrainerProgress p)
        {
            if (quiet || p.Total <= 0) return;
            int pct = (int)(100 * p.Done / p.Total);
            if (p.Phase == lastPhase && pct / 10 == lastPct / 10 && pct != 100) return;
            lastPhase = p.Phase;
            lastPct = pct;
            string what = p.Phase == "count" ? $"{p.Done / 1e6:F1}/{p.Total / 1e6:F1} MB read" : $"vocab {p.Done}/{p.Total}";
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"longcat: {p.Phase}: {pct,3}% ({what}, {sw.Elapsed.TotalSeconds:F1} s)"));
        }
        var model = BpeTrainer.TrainFiles(inputs, new BpeTrainerOptions { VocabSize = vocabSize, MinFrequency = minFrequency, Progress = Progress });
        TokenizerWriter.Save(model, outDir);

        // Check what we wrote: it must reload and round-trip the start of the input exactly.
        var tok = Tokenizer.Load(outDir);
        {
            var sample = string.Concat(LongCat.Training.TextCorpus.Documents(inputs[0], LongCat.Training.DocumentMode.File).Take(64));
            if (sample.Length > 100_000) sample = sample[..100_000];
            if (sample.Length > 0 && char.IsHighSurrogate(sample[^1])) sample = sample[..^1];
            if (tok.Decode(tok.EncodeToIds(sample)) != sample)
                throw new CliException($"{outDir}: the trained tokenizer does not round-trip the input (please report this)");
        }
        Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"trained vocab {model.Vocab.Count} ({model.Merges.Count} merges) in {sw.Elapsed.TotalSeconds:F1} s; wrote {Path.Combine(outDir, "tokenizer.json")} and tokenizer_config.json"));
        if (model.Vocab.Count < vocabSize)
            Console.Out.WriteLine($"note: stopped at {model.Vocab.Count} < {vocabSize}: no pair occurs {minFrequency}+ times any more");
        return 0;
    }
}
