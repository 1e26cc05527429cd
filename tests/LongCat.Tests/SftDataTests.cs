using LongCat.Tokenization;
using LongCat.Training;

namespace LongCat.Tests;

/// <summary>
/// Supervised fine-tuning data: <c>data prepare --format chat</c> (OpenAI JSONL -> ids + loss mask), its errors, the
/// one-conversation-per-row loader, the masked loss (reference values, micro-batch invariance, isolation of rows), and
/// a fine-tuning run from a model (<c>init_from</c>).
/// </summary>
public class SftDataTests
{
    static readonly string Tok = Path.Combine(Fixtures.Tokenizer("longcat_style"), "tokenizer.json");

    const string Tools = """[{"type": "function", "function": {"name": "lookup_docs", "description": "Docs of a Python name", "parameters": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}}]""";

    internal static string[] Conversations(int n) => Enumerable.Range(0, n).Select(i => i % 2 == 0
        ? $$$"""{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is item {{{i}}}?"}, {"role": "assistant", "content": "Item {{{i}}} is a number."}]}"""
        : $$$"""{"messages": [{"role": "user", "content": "Look up json.dumps {{{i}}}"}, {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup_docs", "arguments": "{\"name\": \"json.dumps\"}"}}]}, {"role": "tool", "tool_call_id": "c1", "content": "Serialize obj to a JSON formatted str."}, {"role": "assistant", "content": "It serializes an object to JSON."}], "tools": TOOLS}""".Replace("TOOLS", Tools)).ToArray();

    internal static string ChatFile(int n = 40)
    {
        var dir = Fixtures.NewTempDir();
        var path = Path.Combine(dir, "chat.jsonl");
        File.WriteAllLines(path, Conversations(n));
        return path;
    }

    [Fact]
    public void PrepareChatStoresTheChatFormatIdsAndAMaskOfTheAssistantTokens()
    {
        var file = ChatFile();
        var outDir = Fixtures.NewTempDir();
        var r = TokenDataWriter.PrepareChat(Tok, [file], outDir, new DataPrepareOptions { ValidationFraction = 0.2, Seed = 3 });
        Assert.Equal(40, r.TrainDocuments + r.ValDocuments);
        Assert.InRange(r.ValDocuments, 2, 20);
        var tok = Tokenizer.Load(outDir);
        var examples = ChatData.Read(file).ToList();
        using var train = TokenDataset.Open(outDir, "train");
        Assert.True(train.HasLossMask);
        Assert.Equal(tok.EosTokenId ?? tok.TokenToId("</s>"), train.PadId);
        // Every stored conversation is exactly EncodeForTraining of one input conversation (ids and mask).
        var encoded = examples.Select(e => ChatFormat.EncodeForTraining(tok, e.Turns, new ChatRenderOptions { Tools = e.Tools })).ToList();
        for (int d = 0; d < train.DocumentCount; d++)
        {
            int start = (int)train.DocumentStarts[d], len = (int)(train.DocumentStarts[d + 1] - start);
            var ids = new int[len]; var mask = new byte[len];
            train.CopyTokens(start, ids); train.CopyMask(start, mask);
            var match = encoded.Single(e => e.Ids.AsSpan().SequenceEqual(ids) && e.Trainable.Select(b => b ? (byte)1 : (byte)0).SequenceEqual(mask));
            string trained = tok.Decode(ids.Where((_, i) => mask[i] == 1).ToArray());
            string context = tok.Decode(ids.Where((_, i) => mask[i] == 0).ToArray());
            Assert.Contains(ChatFormat.EndOfTurn, trained);
            Assert.DoesNotContain("USER", trained);
            if (context.Contains("lookup_docs"))
            {
                Assert.Contains("json.dumps", trained);                                // the call is trained
                Assert.Contains("It serializes an object to JSON.", trained);          // and the final answer
                Assert.DoesNotContain("Serialize obj", trained);                      // the tool result is not
                Assert.Contains("Serialize obj to a JSON formatted str.", context);
            }
            else Assert.Contains("is a number.", trained);
        }
    }

    [Fact]
    public void OldTextFoldersStillLoadWithEveryTokenTrained()
    {
        var dir = TrainingRuns.SyntheticData(40, 256, 64);
        using var d = TokenDataset.Open(dir, "train");
        Assert.False(d.HasLossMask);
        Assert.Equal(d.TokenCount, d.TrainedTokenCount);
        var loader = new PackedSequenceLoader(d, 16, 1);
        var ids = new int[32]; var mask = new byte[32];
        loader.Next(ids, mask);
        Assert.All(mask, b => Assert.Equal(1, b));
        Assert.Equal(0, loader.PaddingFraction);
    }

    [Theory]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"robot\", \"content\": \"x\"}]}", "messages[1].role")]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", "messages[0].content")]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", "no assistant message")]
    [InlineData("{\"message\": []}", "messages: missing")]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": \"{not json\"}}]}]}", "messages[1].tool_calls[0].function.arguments")]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\": \"g\"}}]}], \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]}", "'g' is not one of the conversation's tools")]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"tool\", \"content\": \"r\"}, {\"role\": \"assistant\", \"content\": \"a\"}]}", "messages[1].role: a tool result must follow")]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"a\"}], \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": 3}}]}", "tools[0].function.parameters")]
    [InlineData("not json", "invalid JSON")]
    public void BadConversationsAreErrorsNamingTheLineAndField(string bad, string expected)
    {
        var dir = Fixtures.NewTempDir();
        var path = Path.Combine(dir, "bad.jsonl");
        File.WriteAllLines(path, [Conversations(1)[0], "", bad]);
        var e = Assert.Throws<InvalidDataException>(() => TokenDataWriter.PrepareChat(Tok, [path], Fixtures.NewTempDir(), new DataPrepareOptions()));
        Assert.Contains("bad.jsonl:3:", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void TheLoaderPutsOneConversationPerRowPaddedWithAZeroMask()
    {
        var outDir = Fixtures.NewTempDir();
        TokenDataWriter.PrepareChat(Tok, [ChatFile(10)], outDir, new DataPrepareOptions { ValidationFraction = 0 });
        using var d = TokenDataset.Open(outDir, "train");
        int longest = Enumerable.Range(0, d.DocumentCount).Max(i => (int)(d.DocumentStarts[i + 1] - d.DocumentStarts[i]));
        int shortest = Enumerable.Range(0, d.DocumentCount).Min(i => (int)(d.DocumentStarts[i + 1] - d.DocumentStarts[i]));
        int s = longest + 3;
        var loader = new PackedSequenceLoader(d, s, seed: 9);
        Assert.Equal(10, loader.SequencesPerEpoch);
        Assert.Equal(0, loader.TruncatedDocuments);
        Assert.Equal(1 - (double)d.TokenCount / (10 * s), loader.PaddingFraction, 12);
        var ids = new int[10 * s]; var mask = new byte[10 * s];
        loader.Next(ids, mask);
        var seen = new HashSet<long>();
        for (int row = 0; row < 10; row++)
        {
            // The row is a whole conversation from its start, then only padding: no second conversation in it.
            int doc = Enumerable.Range(0, d.DocumentCount).Single(i =>
            {
                int len = (int)(d.DocumentStarts[i + 1] - d.DocumentStarts[i]);
                var want = new int[len]; d.CopyTokens(d.DocumentStarts[i], want);
                return ids.AsSpan(row * s, len).SequenceEqual(want) && ids.AsSpan(row * s + len, s - len).IndexOfAnyExcept(d.PadId) < 0 && !seen.Contains(i);
            });
            seen.Add(doc);
            int n = (int)(d.DocumentStarts[doc + 1] - d.DocumentStarts[doc]);
            Assert.Equal(-1, mask.AsSpan(row * s + n, s - n).IndexOfAnyExcept((byte)0));
        }
        // A row shorter than the longest conversation truncates it (and says so).
        var shortLoader = new PackedSequenceLoader(d, shortest, seed: 9);
        Assert.True(shortLoader.TruncatedDocuments > 0);
    }

    [Fact]
    public void MaskedLossIsTheMeanOverTrainedTargetsAndAFullMaskIsTheUnmaskedLoss()
    {
        const int b = 2, s = 9;
        var c = TrainingModels.Tiny;
        using var m = TrainingModels.Random(c, seed: 3, std: 0.3);
        var ids = TrainingModels.Ids(c.VocabSize, b, s, seed: 4);
        var ones = Enumerable.Repeat((byte)1, b * s).ToArray();

        var plain = m.ForwardBackward(ids, b, s);
        var gPlain = m.Parameters.Table.Entries.Select(e => m.Parameters[e.Name].Grad.ToArray()).ToArray();
        var nll = m.LastTokenLoss.ToArray();
        m.Parameters.ZeroGrads();
        var full = m.ForwardBackward(ids, ones, b, s);
        Assert.Equal(plain, full); // bitwise, gradients too
        var entries = m.Parameters.Table.Entries;
        for (int k = 0; k < entries.Count; k++) Assert.True(gPlain[k].AsSpan().SequenceEqual(m.Parameters[entries[k].Name].Grad));

        var mask = new byte[b * s];
        for (int i = 0; i < mask.Length; i++) mask[i] = (byte)(i % 3 == 1 ? 1 : 0);
        var masked = m.Loss(ids, mask, b, s);
        double sum = 0; int n = 0;
        for (int i = 0; i < b * s; i++)
            if (i % s != s - 1 && mask[i + 1] == 1) { sum += nll[i]; n++; }
        Assert.Equal(sum / n, masked.CrossEntropy, 5);
        Assert.Equal(0, m.Loss(ids, new byte[b * s], b, s).CrossEntropy);
        Assert.Throws<ArgumentException>(() => m.Loss(ids, new byte[3], b, s));
    }

    [Fact]
    public void RowsDoNotSeeEachOtherAndMicroBatchesGiveTheStepMean()
    {
        const int s = 8;
        var c = TrainingModels.Tiny;
        using var m = TrainingModels.Random(c, seed: 3, std: 0.3);
        var ids = TrainingModels.Ids(c.VocabSize, 2, s, seed: 6);
        var mask = new byte[] { 0, 0, 0, 1, 1, 1, 0, 0, /* row 2 */ 0, 1, 1, 1, 1, 1, 1, 1 };
        // Row 0's per-token losses are the same alone and beside another conversation (no attention across rows).
        m.Loss(ids, mask, 2, s);
        var both = m.LastTokenLoss[..s].ToArray();
        m.Loss(ids.AsSpan(0, s), mask.AsSpan(0, s), 1, s);
        Assert.True(both.AsSpan().SequenceEqual(m.LastTokenLoss));

        // One batch of 2 rows vs 2 micro-batches of 1 row with the step's count: the same mean over 3 + 7 trained targets.
        m.Parameters.ZeroGrads();
        var whole = m.ForwardBackward(ids, mask, 2, s);
        var g1 = m.Parameters.Table.Entries.Select(e => m.Parameters[e.Name].Grad.ToArray()).ToArray();
        m.Parameters.ZeroGrads();
        double ce = 0;
        for (int r = 0; r < 2; r++) ce += m.ForwardBackward(ids.AsSpan(r * s, s), mask.AsSpan(r * s, s), 1, s, lossTokens: 10.0 / 2).CrossEntropy;
        Assert.Equal(whole.CrossEntropy, ce / 2, 6);
        var entries = m.Parameters.Table.Entries;
        for (int k = 0; k < entries.Count; k++)
        {
            var g2 = m.Parameters[entries[k].Name].Grad;
            for (int i = 0; i < g2.Length; i++) Assert.Equal(g1[k][i], g2[i] / 2, 5);
        }
    }

    [Fact]
    public void TrainFineTunesAModelOnChatDataWithItsOwnSchedule()
    {
        var data = Fixtures.NewTempDir();
        TokenDataWriter.PrepareChat(Tok, [ChatFile(24)], data, new DataPrepareOptions { ValidationFraction = 0.25, Seed = 2 });
        var vocab = Tokenizer.Load(data).VocabSize;
        var config = TrainingModels.Tiny with { VocabSize = vocab };
        var baseOut = Fixtures.NewTempDir();
        var o = TrainingRuns.Options(config, data, baseOut, 2) with
        {
            Mtp = false, Loss = new LossOptions(), MtpStartStep = 0, SequenceLength = 64, BatchSize = 4, MicroBatchSize = 2, EvalEvery = 0,
        };
        using (var t = Trainer.Create(o)) t.Run();
        var ftOut = Fixtures.NewTempDir();
        var ft = o with
        {
            InitFrom = Path.Combine(baseOut, "model"), OutDir = ftOut, Steps = 4,
            Schedule = new LearningRateSchedule { Kind = ScheduleKind.Constant, Peak = 1e-3, TotalSteps = 4 },
        };
        using (var t = Trainer.Create(ft))
        {
            Assert.Equal(0, t.Step);
            var first = t.TrainStep();
            Assert.Equal(1e-3, first.LearningRate);
            Assert.True(double.IsFinite(first.Loss) && first.Loss > 0);
            t.Run();
            Assert.True(t.LastValidationLoss is { } v && double.IsFinite(v));
        }
        Assert.True(File.Exists(Path.Combine(ftOut, "model", "tokenizer.json")));
        Assert.Throws<LongCat.Config.ConfigException>(() => Trainer.Create(ft with { OutDir = Fixtures.NewTempDir(), Loss = new LossOptions { MtpWeight = 0.3 }, Mtp = true, InitFrom = null }));
    }
}
