using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace LongCat.Training;

/// <summary>
/// What a checkpoint holds beyond the weights and the Adam moments (trainer_state.json): the step, the data position
/// (the data order is a function of the seed and the epoch, so the position is the whole RNG state), the budget
/// controller's pending counts, the fault count, and the settings a bit-exact resume depends on.
/// </summary>
public sealed record TrainerState
{
    public const int FormatVersion = 1;

    /// <summary>Steps completed.</summary>
    public long Step { get; init; }
    /// <summary>Updates applied (Adam's t; skipped steps do not count).</summary>
    public long AdamStep { get; init; }
    /// <summary>Training sequences consumed (<see cref="PackedSequenceLoader.Position"/>).</summary>
    public long DataPosition { get; init; }
    public long Tokens { get; init; }
    public int Faults { get; init; }
    public ulong Seed { get; init; }
    /// <summary>The model config (config.json text): a resume needs the same architecture.</summary>
    public string ModelConfig { get; init; } = "";
    public int SequenceLength { get; init; }
    public int BatchSize { get; init; }
    public int MicroBatchSize { get; init; }
    /// <summary>Tokens of the training split: a resume needs the same data.</summary>
    public long DataTokens { get; init; }
    /// <summary><see cref="BudgetController.SaveState"/>.</summary>
    public long[] BudgetCounts { get; init; } = [];

    public string ToJson()
    {
        var o = new JsonObject
        {
            ["format_version"] = FormatVersion,
            ["step"] = Step,
            ["adam_step"] = AdamStep,
            ["data_position"] = DataPosition,
            ["tokens"] = Tokens,
            ["faults"] = Faults,
            ["seed"] = Seed.ToString(CultureInfo.InvariantCulture),
            ["seq_len"] = SequenceLength,
            ["batch_size"] = BatchSize,
            ["micro_batch_size"] = MicroBatchSize,
            ["data_tokens"] = DataTokens,
            ["budget_counts"] = new JsonArray(BudgetCounts.Select(x => (JsonNode)x).ToArray()),
            ["model_config"] = JsonNode.Parse(ModelConfig),
        };
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    public static TrainerState Parse(string json, string source)
    {
        try
        {
            var o = JsonNode.Parse(json) as JsonObject ?? throw new InvalidDataException($"{source}: not a JSON object");
            if ((int?)o["format_version"] != FormatVersion) throw new InvalidDataException($"{source}: format_version {(int?)o["format_version"]} is not {FormatVersion}");
            long L(string k) => (long?)o[k] ?? throw new InvalidDataException($"{source}: missing '{k}'");
            return new TrainerState
            {
                Step = L("step"),
                AdamStep = L("adam_step"),
                DataPosition = L("data_position"),
                Tokens = L("tokens"),
                Faults = (int)L("faults"),
                Seed = ulong.Parse((string?)o["seed"] ?? "0", CultureInfo.InvariantCulture),
                SequenceLength = (int)L("seq_len"),
                BatchSize = (int)L("batch_size"),
                MicroBatchSize = (int)L("micro_batch_size"),
                DataTokens = L("data_tokens"),
                BudgetCounts = (o["budget_counts"] as JsonArray ?? throw new InvalidDataException($"{source}: missing 'budget_counts'")).Select(n => (long)n!).ToArray(),
                ModelConfig = o["model_config"]?.ToJsonString() ?? throw new InvalidDataException($"{source}: missing 'model_config'"),
            };
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{source}: unreadable trainer state: {e.Message}");
        }
    }
}
