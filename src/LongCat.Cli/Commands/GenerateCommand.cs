using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using LongCat.Inference;
using LongCat.Model;
using LongCat.Tokenization;

namespace LongCat.Cli.Commands;

/// <summary><c>longcat generate</c>: stream a completion, then one stats line.</summary>
public static class GenerateCommand
{
    /// <summary>Sampling options shared by generate, chat and bench generate.</summary>
    public sealed class SamplingOptions
    {
        public readonly Option<int> MaxTokens = new("--max-tokens") { Description = "Tokens to generate at most.", DefaultValueFactory = _ => 128 };
        public readonly Option<float> Temperature = new("--temperature") { Description = "0 = greedy; otherwise the softmax temperature.", DefaultValueFactory = _ => 0.8f };
        public readonly Option<int> TopK = new("--top-k") { Description = "Keep the k most likely tokens (0 = off).", DefaultValueFactory = _ => 0 };
        public readonly Option<float> TopP = new("--top-p") { Description = "Nucleus sampling threshold (1 = off).", DefaultValueFactory = _ => 0.95f };
        public readonly Option<float> MinP = new("--min-p") { Description = "Drop tokens below min_p x the top probability (0 = off).", DefaultValueFactory = _ => 0f };
        public readonly Option<float> RepetitionPenalty = new("--repetition-penalty") { Description = "HF repetition penalty (1 = off).", DefaultValueFactory = _ => 1f };
        public readonly Option<float> FrequencyPenalty = new("--frequency-penalty") { Description = "OpenAI frequency penalty in [-2, 2].", DefaultValueFactory = _ => 0f };
        public readonly Option<float> PresencePenalty = new("--presence-penalty") { Description = "OpenAI presence penalty in [-2, 2].", DefaultValueFactory = _ => 0f };
        public readonly Option<ulong> Seed = new("--seed") { Description = "Sampling seed (same seed, same output).", DefaultValueFactory = _ => 0UL };
        public readonly Option<string[]> StopIds = new("--stop-id") { Description = "Token id that ends generation (repeatable). The model's eos is always one.", AllowMultipleArgumentsPerToken = true };
        public readonly Option<string?> Speculative = new("--speculative") { Description = "'mtp': draft with the MTP head, verify with the main model." };
        public readonly Option<int?> DraftVocab = new("--draft-vocab") { Description = "With --speculative mtp: the draft scores token ids [0, N) only (cheaper; output unchanged). Default: max(1024, vocabulary/4), widened when the output often falls outside; the vocabulary size = all." };

        public void AddTo(Command cmd)
        {
            foreach (var o in new Option[] { MaxTokens, Temperature, TopK, TopP, MinP, RepetitionPenalty, FrequencyPenalty, PresencePenalty, Seed, StopIds, Speculative, DraftVocab })
                cmd.Options.Add(o);
        }

        public GenerationOptions Read(ParseResult p, LongCatModel model, Tokenizer? tokenizer = null)
        {
            var spec = p.GetValue(Speculative);
            if (spec is not null && spec != "mtp") throw new CliException($"--speculative must be 'mtp', got '{spec}'");
            var draftVocab = p.GetValue(DraftVocab);
            if (draftVocab is not null && spec is null) throw new CliException("--draft-vocab needs --speculative mtp");
            if (draftVocab is { } dv && (dv < 1 || dv > model.Config.VocabSize))
                throw new CliException($"--draft-vocab must be in 1..{model.Config.VocabSize} (the vocabulary size = the whole vocabulary), got {dv}");
            var stops = new List<int> { model.Config.EosTokenId };
            // The end of an assistant turn also ends generation when the tokenizer knows it.
            if (tokenizer?.TokenToId(ChatFormat.EndOfTurn) is { } eot && eot < model.Config.VocabSize) stops.Add(eot);
            foreach (var s in p.GetValue(StopIds) ?? [])
                foreach (var part in s.Split(',', StringSplitOptions.RemoveEmptyEntries))
                    stops.Add(int.TryParse(part, NumberStyles.Integer, CultureInfo.InvariantCulture, out var id) ? id : throw new CliException($"--stop-id: '{part}' is not a token id"));
            return new GenerationOptions
            {
                MaxTokens = p.GetValue(MaxTokens),
                Temperature = p.GetValue(Temperature),
                TopK = p.GetValue(TopK),
                TopP = p.GetValue(TopP),
                MinP = p.GetValue(MinP),
                RepetitionPenalty = p.GetValue(RepetitionPenalty),
                FrequencyPenalty = p.GetValue(FrequencyPenalty),
                PresencePenalty = p.GetValue(PresencePenalty),
                Seed = p.GetValue(Seed),
                StopTokenIds = stops,
                Speculative = spec == "mtp",
                DraftVocabulary = draftVocab,
            };
        }
    }

    public static Command Create()
    {
        var model = CliSupport.ModelOption("Checkpoint folder (with tokenizer.json for text prompts).");
        var prompt = new Option<string?>("--prompt") { Description = "Prompt text (needs tokenizer.json in the model folder, or --tokenizer)." };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "tokenizer.json (or its folder) when the model folder has none." };
        var promptIds = new Option<string?>("--prompt-ids") { Description = "Prompt as comma-separated token ids, e.g. 1,17,42 (no tokenizer needed)." };
        var printIds = new Option<bool>("--print-ids") { Description = "Print the generated ids on one line, comma-separated, instead of text." };
        var stop = new Option<string[]>("--stop") { Description = "Stop string (repeatable; needs a tokenizer)." };
        var ctx = new Option<int?>("--context") { Description = "Context length (prompt + generated tokens); default: max_position_embeddings." };
        var sampling = new SamplingOptions();
        var cmd = new Command("generate", "Generate a continuation of a prompt, streamed, then one stats line (prompt and decode tokens/s, MTP acceptance, real experts per token, peak memory).")
        {
            model, prompt, tokenizer, promptIds, printIds, stop, ctx,
        };
        sampling.AddTo(cmd);
        cmd.SetAction(p => CliSupport.Run(p, () =>
        {
            var text = p.GetValue(prompt);
            var idsText = p.GetValue(promptIds);
            if ((text is null) == (idsText is null)) throw new CliException("give exactly one of --prompt TEXT or --prompt-ids 1,17,42");
            var dir = CliSupport.ResolveModel(p.GetValue(model));
            var tok = LoadTokenizer(dir, p.GetValue(tokenizer), required: text is not null || (p.GetValue(stop)?.Length ?? 0) > 0);
            using var m = LongCatModel.Load(dir);
            if (tok is not null && tok.VocabSize > m.Config.VocabSize)
                throw new CliException($"the tokenizer has {tok.VocabSize} tokens but the model's vocab_size is {m.Config.VocabSize}");
            int[] ids = text is not null ? EncodePrompt(tok!, text, m.Config.BosTokenId) : ParseIds(idsText!);
            var o = sampling.Read(p, m, tok);
            if (p.GetValue(stop) is { Length: > 0 } stops) o = o with { StopStrings = stops, Decode = ids2 => tok!.Decode([.. ids2]) };
            var session = new GenerationSession(m, ids, o, p.GetValue(ctx));
            bool asIds = p.GetValue(printIds) || tok is null;
            var decoder = tok is null ? null : new TokenStreamDecoder(tok, skipSpecialTokens: true);
            bool first = true;
            foreach (var t in session.Generate())
            {
                if (asIds) { Console.Write((first ? "" : ",") + t.Id.ToString(CultureInfo.InvariantCulture)); first = false; }
                else if (!o.StopTokenIds.Contains(t.Id)) Console.Write(decoder!.Append(t.Id));
                Console.Out.Flush();
            }
            if (!asIds) Console.Write(decoder!.Flush());
            Console.WriteLine();
            PrintStats(session.Result!);
            return 0;
        }));
        return cmd;
    }

    /// <summary>The tokenizer from --tokenizer or the model folder; null if neither has one and none is required.</summary>
    internal static Tokenizer? LoadTokenizer(string modelDir, string? explicitPath, bool required)
    {
        if (explicitPath is not null) return Tokenizer.Load(explicitPath);
        var inModel = Path.Combine(modelDir, "tokenizer.json");
        if (File.Exists(inModel)) return Tokenizer.Load(inModel);
        if (required) throw new CliException($"{modelDir}: no tokenizer.json in the model folder: pass --tokenizer PATH, or use --prompt-ids");
        return null;
    }

    /// <summary>Text prompt to ids: bos first (as the model was trained), then the text.</summary>
    internal static int[] EncodePrompt(Tokenizer tok, string text, int bos)
    {
        var ids = tok.EncodeToIds(text, addSpecialTokens: true);
        return ids.Length > 0 && ids[0] == bos ? ids : [bos, .. ids];
    }

    internal static int[] ParseIds(string text)
    {
        var parts = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (parts.Length == 0) throw new CliException("--prompt-ids is empty");
        return parts.Select(s => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : throw new CliException($"--prompt-ids: '{s}' is not a token id")).ToArray();
    }

    internal static void PrintStats(GenerationResult r)
    {
        var inv = CultureInfo.InvariantCulture;
        var hist = string.Join(" ", r.RealExpertHistogram.Select((n, k) => $"{k}:{n}"));
        var spec = r.DraftedTokens > 0 ? $" | MTP acceptance {r.AcceptanceRate.ToString("P1", inv)} ({r.AcceptedDrafts}/{r.DraftedTokens}), draft vocabulary {r.DraftVocabulary}" : "";
        Console.Error.WriteLine(
            $"[{r.StopReason.ToString().ToLowerInvariant()}] prompt {r.PromptTokens} tok at {r.PrefillTokensPerSecond.ToString("F1", inv)} tok/s | " +
            $"decode {r.CompletionTokens} tok at {r.DecodeTokensPerSecond.ToString("F1", inv)} tok/s{spec} | " +
            $"real experts/token/layer {r.MeanRealExperts.ToString("F2", inv)} (histogram {hist}) | peak memory {Process.GetCurrentProcess().PeakWorkingSet64 / (1 << 20)} MiB");
    }
}
