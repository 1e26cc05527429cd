namespace LongCat.Inference;

/// <summary>How to generate: sampling, penalties, stopping, speculative decoding. Validated by <see cref="Validate"/>.</summary>
public sealed record GenerationOptions
{
    /// <summary>Maximum tokens to generate (≥ 1).</summary>
    public int MaxTokens { get; init; } = 256;
    /// <summary>0 = greedy (argmax); otherwise logits are divided by it. Range [0, 100].</summary>
    public float Temperature { get; init; } = 1f;
    /// <summary>Keep the k most likely tokens (0 = off).</summary>
    public int TopK { get; init; }
    /// <summary>Nucleus sampling: keep the smallest set with cumulative probability ≥ p (1 = off). Range (0, 1].</summary>
    public float TopP { get; init; } = 1f;
    /// <summary>Drop tokens whose probability is below min_p · max probability (0 = off). Range [0, 1].</summary>
    public float MinP { get; init; }
    /// <summary>HF repetition penalty on tokens seen in prompt or output: logit/θ if positive, logit·θ if negative (1 = off).</summary>
    public float RepetitionPenalty { get; init; } = 1f;
    /// <summary>OpenAI frequency penalty: logit -= f · count in the output. Range [-2, 2].</summary>
    public float FrequencyPenalty { get; init; }
    /// <summary>OpenAI presence penalty: logit -= p if the token occurred in the output. Range [-2, 2].</summary>
    public float PresencePenalty { get; init; }
    /// <summary>OpenAI logit_bias: added to a token's logit before penalties and temperature. Values in [-100, 100].</summary>
    public IReadOnlyDictionary<int, float>? LogitBias { get; init; }
    /// <summary>Report each generated token's log-probability and this many alternatives (0..20; null = off); see <see cref="TokenLogprobs"/>.</summary>
    public int? Logprobs { get; init; }
    /// <summary>Token ids that end generation (the stop token is reported, not counted as text).</summary>
    public IReadOnlyList<int> StopTokenIds { get; init; } = [];
    /// <summary>Strings that end generation; needs <see cref="Decode"/>.</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];
    /// <summary>Turns generated ids into text, for stop strings.</summary>
    public Func<IReadOnlyList<int>, string>? Decode { get; init; }
    /// <summary>Seed of the sampler: the same seed gives the same output.</summary>
    public ulong Seed { get; init; }
    /// <summary>Draft with the MTP head and verify with the main model (needs model.mtp.* weights).</summary>
    public bool Speculative { get; init; }
    /// <summary>
    /// Speculative decoding: the MTP draft scores only token ids [0, N) (the first N rows of the lm_head, ids of a
    /// BPE vocabulary roughly in frequency order), which makes the draft cheaper; the output is unchanged (the main
    /// model verifies every draft: a token outside the draft vocabulary is only never drafted). Null (the default):
    /// <see cref="Model.MtpHead.DefaultDraftVocabulary"/>, widened to the whole vocabulary for the rest of a generation
    /// once more than 1 in 8 of its first 32+ generated tokens fall outside it. 1..vocabulary size: exactly that
    /// (the vocabulary size = the whole vocabulary). Constrained decoding always drafts over the whole vocabulary.
    /// </summary>
    public int? DraftVocabulary { get; init; }
    /// <summary>
    /// Constrained decoding (structured output, tool calls): makes each sequence's constraint state; the sampler masks
    /// every token it disallows, for every draw. Null = unconstrained. See <see cref="Constraints.JsonGrammar"/>.
    /// </summary>
    public Func<Constraints.ITokenConstraint>? Constraint { get; init; }

    /// <summary>
    /// The stop condition after <paramref name="output"/>'s last token was generated: a stop token, a stop string, or
    /// max_tokens; <see cref="StopReason.None"/> to go on. Only the tail is decoded (an older match would have
    /// stopped already): a stop string of L characters spans at most 4·L byte-level tokens.
    /// </summary>
    public (StopReason Reason, string? Matched) CheckStop(List<int> output)
    {
        int token = output[^1];
        if (StopTokenIds.Contains(token)) return (StopReason.StopToken, null);
        if (StopStrings.Count > 0)
        {
            int window = Math.Min(output.Count, 4 * StopStrings.Max(x => x.Length) + 4);
            var text = Decode!(output.GetRange(output.Count - window, window));
            foreach (var st in StopStrings)
                if (text.Contains(st, StringComparison.Ordinal)) return (StopReason.StopString, st);
        }
        if (output.Count >= MaxTokens) return (StopReason.Length, null);
        return (StopReason.None, null);
    }

    /// <summary>Throws <see cref="ArgumentException"/> naming the option that is out of range.</summary>
    public void Validate(int vocabSize)
    {
        static ArgumentException Bad(string name, object v, string rule) => new($"{name} = {v} is invalid: {rule}");
        if (MaxTokens < 1) throw Bad("max_tokens", MaxTokens, "must be at least 1");
        if (!(Temperature >= 0 && Temperature <= 100)) throw Bad("temperature", Temperature, "must be in [0, 100]");
        if (TopK < 0) throw Bad("top_k", TopK, "must be >= 0 (0 = off)");
        if (!(TopP > 0 && TopP <= 1)) throw Bad("top_p", TopP, "must be in (0, 1]");
        if (!(MinP >= 0 && MinP <= 1)) throw Bad("min_p", MinP, "must be in [0, 1]");
        if (!(RepetitionPenalty > 0 && RepetitionPenalty <= 10)) throw Bad("repetition_penalty", RepetitionPenalty, "must be in (0, 10]");
        if (!(FrequencyPenalty >= -2 && FrequencyPenalty <= 2)) throw Bad("frequency_penalty", FrequencyPenalty, "must be in [-2, 2]");
        if (!(PresencePenalty >= -2 && PresencePenalty <= 2)) throw Bad("presence_penalty", PresencePenalty, "must be in [-2, 2]");
        if (LogitBias is not null)
            foreach (var (id, b) in LogitBias)
            {
                if (id < 0 || id >= vocabSize) throw Bad("logit_bias", id, $"token ids must be in 0..{vocabSize - 1}");
                if (!(b >= -100 && b <= 100)) throw Bad("logit_bias", $"{b} for token {id}", "biases must be in [-100, 100]");
            }
        if (DraftVocabulary is { } dv && (dv < 1 || dv > vocabSize)) throw Bad("draft_vocabulary", dv, $"must be in 1..{vocabSize} (the vocabulary size = the whole vocabulary)");
        if (Logprobs is < 0 or > TokenLogprobs.MaxTop) throw Bad("top_logprobs", Logprobs, $"must be in 0..{TokenLogprobs.MaxTop}");
        foreach (var id in StopTokenIds)
            if (id < 0 || id >= vocabSize) throw Bad("stop_token_ids", id, $"token ids must be in 0..{vocabSize - 1}");
        if (StopStrings.Any(string.IsNullOrEmpty)) throw Bad("stop", "\"\"", "stop strings must not be empty");
        if (StopStrings.Count > 0 && Decode is null) throw Bad("stop", string.Join(",", StopStrings), "stop strings need a tokenizer to decode text");
    }
}
