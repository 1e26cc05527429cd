using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using LongCat.Inference;
using LongCat.Model;

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

        public void AddTo(Command cmd)
        {
            foreach (var o in new Option[] { MaxTokens, Temperature, TopK, TopP, MinP, RepetitionPenalty, FrequencyPenalty, PresencePenalty, Seed, StopIds, Speculative })
                cmd.Options.Add(o);
        }

        public GenerationOptions Read(ParseResult p, LongCatModel model)
        {
            var spec = p.GetValue(Speculative);
            if (spec is not null && spec != "mtp") throw new CliException($"--speculative must be 'mtp', got '{spec}'");
            var stops = new List<int> { model.Config.EosTokenId };
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
            };
        }
    }

    public static Command Create()
    {
        var model = CliSupport.RequiredPath("--model", "Checkpoint folder.");
        var promptIds = new Option<string?>("--prompt-ids") { Description = "Prompt as comma-separated token ids, e.g. 1,17,42." };
        var printIds = new Option<bool>("--print-ids") { Description = "Print the generated ids on one line, comma-separated (instead of text)." };
        var ctx = new Option<int?>("--context") { Description = "Context length (prompt + generated tokens); default: max_position_embeddings." };
        var sampling = new SamplingOptions();
        var cmd = new Command("generate", "Generate a continuation of a prompt, streamed, then one stats line (prompt and decode tokens/s, MTP acceptance, real experts per token, peak memory).")
        {
            model, promptIds, printIds, ctx,
        };
        sampling.AddTo(cmd);
        cmd.SetAction(p => CliSupport.Run(p, () =>
        {
            var ids = ParseIds(p.GetValue(promptIds) ?? throw new CliException("give the prompt with --prompt-ids 1,17,42 (text prompts need a tokenizer)"));
            using var m = LongCatModel.Load(p.GetValue(model)!);
            var o = sampling.Read(p, m);
            var session = new GenerationSession(m, ids, o, p.GetValue(ctx));
            // Until a tokenizer is wired in, ids are the output; --print-ids keeps that format when text exists.
            _ = p.GetValue(printIds);
            bool first = true;
            foreach (var t in session.Generate())
            {
                Console.Write(first ? t.Id.ToString(CultureInfo.InvariantCulture) : "," + t.Id.ToString(CultureInfo.InvariantCulture));
                first = false;
                Console.Out.Flush();
            }
            Console.WriteLine();
            PrintStats(session.Result!);
            return 0;
        }));
        return cmd;
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
        var spec = r.DraftedTokens > 0 ? $" | MTP acceptance {r.AcceptanceRate.ToString("P1", inv)} ({r.AcceptedDrafts}/{r.DraftedTokens})" : "";
        Console.Error.WriteLine(
            $"[{r.StopReason.ToString().ToLowerInvariant()}] prompt {r.PromptTokens} tok at {r.PrefillTokensPerSecond.ToString("F1", inv)} tok/s | " +
            $"decode {r.CompletionTokens} tok at {r.DecodeTokensPerSecond.ToString("F1", inv)} tok/s{spec} | " +
            $"real experts/token/layer {r.MeanRealExperts.ToString("F2", inv)} (histogram {hist}) | peak memory {Process.GetCurrentProcess().PeakWorkingSet64 / (1 << 20)} MiB");
    }
}
