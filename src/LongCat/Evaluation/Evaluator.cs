using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using LongCat.Inference;
using LongCat.Inference.Constraints;
using LongCat.Model;
using LongCat.Tokenization;
using LongCat.Training;

namespace LongCat.Evaluation;

/// <summary>One reported number: its value and, when it has one, a 95% interval.</summary>
public sealed record EvalMetric(string Name, double Value, double? Lo = null, double? Hi = null, long? Count = null);

/// <summary>The result of one task over one file.</summary>
public sealed record EvalResult(string Task, string File, int Items, IReadOnlyList<EvalMetric> Metrics);

/// <summary>Options of <see cref="Evaluator"/>.</summary>
public sealed record EvalOptions
{
    /// <summary>Tokens per scoring window (perplexity) and the most a choice item may have; null = the model's max_position_embeddings, at most 2048.</summary>
    public int? Context { get; init; }
    /// <summary>Evaluate only the first N items of each file (0 = all).</summary>
    public int Limit { get; init; }
    /// <summary>chat: most tokens generated per reply.</summary>
    public int MaxTokens { get; init; } = 256;
    /// <summary>chat: items that expect a tool call are decoded under the tool-call grammar.</summary>
    public bool Constrained { get; init; }
    /// <summary>Seed of the bootstrap intervals.</summary>
    public ulong Seed { get; init; } = 1234;
}

/// <summary>
/// <c>longcat eval</c>: scores a model on <c>perplexity</c>, <c>choice</c> and <c>chat</c> tasks (docs/post-training.md).
/// Log-likelihoods come from the training forward (<see cref="TrainableModel"/>, fp32, one sequence at a time),
/// replies from greedy decoding (<see cref="GenerationSession"/>) read by the <see cref="ToolCallParser"/>. Every kernel
/// is thread-count independent and nothing is sampled, so results are identical for any thread count.
/// Bad input is an <see cref="InvalidDataException"/> naming the file, line and field.
/// </summary>
public sealed class Evaluator : IDisposable
{
    readonly string _modelDir;
    readonly EvalOptions _o;
    TrainableModel? _scorer;
    LongCatModel? _generator;

    public Tokenizer Tokenizer { get; }

    /// <summary>Reports (done, total) as items complete.</summary>
    public event Action<string, int, int>? Progress;

    /// <summary>chat: one record per item (line, reply, parsed calls, its scores), for <c>--details</c>.</summary>
    public event Action<JsonObject>? ItemScored;

    public Evaluator(string modelDir, Tokenizer tokenizer, EvalOptions options)
    {
        _modelDir = modelDir; Tokenizer = tokenizer; _o = options;
        if (options.Limit < 0) throw new ArgumentException($"limit must be >= 0, got {options.Limit}");
        if (options.MaxTokens < 1) throw new ArgumentException($"max tokens must be >= 1, got {options.MaxTokens}");
        if (options.Context is < 2) throw new ArgumentException($"context must be >= 2 tokens, got {options.Context}");
    }

    public static readonly string[] Tasks = ["perplexity", "choice", "chat"];

    public EvalResult Run(string task, string file)
    {
        if (!File.Exists(file)) throw new IOException($"{file}: eval file not found");
        return task switch
        {
            "perplexity" => Perplexity(file),
            "choice" => Choice(file),
            "chat" => Chat(file),
            _ => throw new ArgumentException($"unknown eval task '{task}' (expected {string.Join(", ", Tasks)})"),
        };
    }

    TrainableModel Scorer()
    {
        if (_scorer is not null) return _scorer;
        _scorer = TrainableModel.Load(_modelDir);
        if (Tokenizer.VocabSize > _scorer.Config.VocabSize)
            throw new ArgumentException($"the tokenizer has {Tokenizer.VocabSize} tokens but the model's vocab_size is {_scorer.Config.VocabSize}");
        return _scorer;
    }

    int Context(TrainableModel m) => Math.Min(_o.Context ?? Math.Min(2048, m.Config.MaxPositionEmbeddings), m.Config.MaxPositionEmbeddings);

    /// <summary>
    /// A chat item's prompt: <see cref="ChatFormat.EncodePrompt"/> of its messages with its tools, in the model folder's
    /// tool-call syntax (<see cref="ToolCallFormat.StyleOfModel"/>) — the ids <c>longcat chat</c>, the server and
    /// <c>data prepare --format chat</c> give the same conversation.
    /// </summary>
    internal (int[] Ids, ChatRenderOptions Render) ChatPrompt(ChatExample ex)
    {
        var render = new ChatRenderOptions { Tools = ex.Tools, ToolCallStyle = ToolCallFormat.StyleOfModel(_modelDir) };
        return (ChatFormat.EncodePrompt(Tokenizer, ex.Turns, render), render);
    }

    int[] WithBos(string text, int bos)
    {
        var ids = Tokenizer.EncodeToIds(text, addSpecialTokens: true);
        return ids.Length > 0 && ids[0] == bos ? ids : [bos, .. ids];
    }

    /// <summary>Σ −log p(ids[i] | ids[..i]) for i in [from, ids.Length), in one forward (ids must fit the context).</summary>
    double Nll(TrainableModel m, int[] ids, int from)
    {
        m.Loss(ids, 1, ids.Length);
        var nll = m.LastTokenLoss;
        double sum = 0;
        for (int i = from; i < ids.Length; i++) sum += nll[i - 1];
        return sum;
    }

    EvalResult Perplexity(string file)
    {
        var m = Scorer();
        int ctx = Context(m), bos = m.Config.BosTokenId;
        var docs = TextCorpus.Documents(file, DocumentMode.File).Where(d => !string.IsNullOrWhiteSpace(d)).ToList();
        if (_o.Limit > 0 && docs.Count > _o.Limit) docs = docs.Take(_o.Limit).ToList();
        if (docs.Count == 0) throw new InvalidDataException($"{file}: no text to score");
        double nats = 0; long tokens = 0, bytes = 0;
        for (int d = 0; d < docs.Count; d++)
        {
            var ids = WithBos(docs[d], bos);
            bytes += Encoding.UTF8.GetByteCount(docs[d]);
            // Windows of ctx tokens overlapping by one: every token after the first is predicted exactly once.
            for (int start = 0; start + 1 < ids.Length; start += ctx - 1)
            {
                int len = Math.Min(ctx, ids.Length - start);
                nats += Nll(m, ids[start..(start + len)], 1);
                tokens += len - 1;
            }
            Progress?.Invoke("perplexity", d + 1, docs.Count);
        }
        double mean = tokens == 0 ? double.NaN : nats / tokens;
        return new EvalResult("perplexity", file, docs.Count,
        [
            new("tokens", tokens), new("mean_nats", mean), new("perplexity", Math.Exp(mean)),
            new("bits_per_byte", bytes == 0 ? double.NaN : nats / Math.Log(2) / bytes, Count: bytes),
        ]);
    }

    IEnumerable<(JsonElement Root, int Line)> Lines(string file)
    {
        int line = 0, taken = 0;
        using var reader = TextCorpus.OpenText(file);
        string? l;
        while ((l = reader.ReadLine()) is not null)
        {
            line++;
            if (string.IsNullOrWhiteSpace(l)) continue;
            if (_o.Limit > 0 && taken >= _o.Limit) yield break;
            JsonElement root;
            try { using var d = JsonDocument.Parse(l); root = d.RootElement.Clone(); }
            catch (JsonException e) { throw new InvalidDataException($"{file}:{line}: invalid JSON ({e.Message})"); }
            if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{file}:{line}: not a JSON object");
            taken++;
            yield return (root, line);
        }
    }

    EvalResult Choice(string file)
    {
        var m = Scorer();
        int ctx = Context(m), bos = m.Config.BosTokenId;
        var items = Lines(file).ToList();
        if (items.Count == 0) throw new InvalidDataException($"{file}: no items");
        int acc = 0, accNorm = 0, n = 0;
        foreach (var (root, line) in items)
        {
            Exception Bad(string field, string what) => new InvalidDataException($"{file}:{line}: {field}: {what}");
            string context = root.TryGetProperty("context", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString()! : throw Bad("context", "missing or not a string");
            if (!root.TryGetProperty("choices", out var cs) || cs.ValueKind != JsonValueKind.Array || cs.GetArrayLength() < 2)
                throw Bad("choices", "must be an array of at least 2 strings");
            var choices = cs.EnumerateArray().Select((x, i) => x.ValueKind == JsonValueKind.String ? x.GetString()! : throw Bad($"choices[{i}]", "not a string")).ToArray();
            if (!root.TryGetProperty("gold", out var g) || g.ValueKind != JsonValueKind.Number || !g.TryGetInt32(out int gold))
                throw Bad("gold", "missing or not an integer");
            if (gold < 0 || gold >= choices.Length) throw Bad("gold", $"{gold} is not an index of the {choices.Length} choices");
            var ll = new double[choices.Length]; var norm = new double[choices.Length];
            for (int i = 0; i < choices.Length; i++)
            {
                // lm-evaluation-harness's pairing: trailing spaces of the context move to the continuation; the
                // continuation is whole[len(context):] of the joint encoding.
                string ctxText = context.TrimEnd(' '), cont = context[ctxText.Length..] + choices[i];
                var ctxIds = WithBos(ctxText, bos);
                var whole = WithBos(ctxText + cont, bos);
                if (whole.Length <= ctxIds.Length) throw Bad($"choices[{i}]", "encodes to no tokens after the context");
                int contLen = whole.Length - ctxIds.Length;
                if (whole.Length > ctx) whole = whole[^ctx..]; // keep the end: the continuation and as much context as fits
                int from = whole.Length - contLen;
                if (from < 1) throw Bad($"choices[{i}]", $"its {contLen} tokens do not fit the {ctx}-token context after at least one context token");
                ll[i] = -Nll(m, whole, from);
                int b = Encoding.UTF8.GetByteCount(choices[i]);
                norm[i] = ll[i] / Math.Max(1, b);
            }
            if (EvalMetrics.ArgMaxFirst(ll) == gold) acc++;
            if (EvalMetrics.ArgMaxFirst(norm) == gold) accNorm++;
            n++;
            Progress?.Invoke("choice", n, items.Count);
        }
        var (lo, hi) = EvalMetrics.Wilson(acc, n);
        var (nlo, nhi) = EvalMetrics.Wilson(accNorm, n);
        return new EvalResult("choice", file, n, [new("acc", (double)acc / n, lo, hi, acc), new("acc_norm", (double)accNorm / n, nlo, nhi, accNorm)]);
    }

    EvalResult Chat(string file)
    {
        _generator ??= LongCatModel.Load(_modelDir);
        var model = _generator;
        if (Tokenizer.VocabSize > model.Config.VocabSize)
            throw new ArgumentException($"the tokenizer has {Tokenizer.VocabSize} tokens but the model's vocab_size is {model.Config.VocabSize}");
        var stops = new SortedSet<int> { model.Config.EosTokenId };
        if (Tokenizer.EosTokenId is { } eos) stops.Add(eos);
        if (Tokenizer.TokenToId(ChatFormat.EndOfTurn) is { } eot) stops.Add(eot);
        var stopIds = stops.Where(id => id >= 0 && id < model.Config.VocabSize).ToList();
        TokenVocabulary? vocab = null;

        var items = Lines(file).ToList();
        if (items.Count == 0) throw new InvalidDataException($"{file}: no items");
        int callItems = 0, valid = 0, exact = 0;
        var rouge = new List<double>();
        int done = 0;
        foreach (var (root, line) in items)
        {
            Exception Bad(string field, string what) => new InvalidDataException($"{file}:{line}: {field}: {what}");
            var ex = ChatData.Parse(root, file, line, requireAssistant: false);
            bool hasCall = root.TryGetProperty("expected_tool_call", out var expected) && expected.ValueKind != JsonValueKind.Null;
            bool hasRef = root.TryGetProperty("reference", out var reference) && reference.ValueKind != JsonValueKind.Null;
            if (hasCall == hasRef) throw Bad("expected_tool_call", "give exactly one of 'expected_tool_call' ({\"name\", \"arguments\"}) or 'reference' (text)");
            if (ex.Turns.Count == 0 || ex.Turns[^1].Role is not (ChatTurn.User or ChatTurn.Tool))
                throw Bad("messages", "must end with a user message or tool results (the model replies next)");
            ToolCall? want = null;
            if (hasCall)
            {
                if (ex.Tools.Count == 0) throw Bad("tools", "an item that expects a tool call must offer tools");
                if (expected.ValueKind != JsonValueKind.Object) throw Bad("expected_tool_call", "must be an object {\"name\", \"arguments\"}");
                want = ChatData.ParseCall(JsonSerializer.SerializeToElement(new { function = expected }), "expected_tool_call", ex.Tools,
                    (f, w) => Bad(f.Replace("expected_tool_call.function", "expected_tool_call", StringComparison.Ordinal), w));
            }
            else if (reference.ValueKind != JsonValueKind.String) throw Bad("reference", "must be a string");

            var (prompt, render) = ChatPrompt(ex);
            var g = new GenerationOptions { Temperature = 0, MaxTokens = _o.MaxTokens, StopTokenIds = stopIds };
            if (_o.Constrained && hasCall)
            {
                vocab ??= TokenVocabulary.For(Tokenizer, model.Config.VocabSize, stopIds);
                var grammar = ToolCallGrammar.For(vocab, ex.Tools.Select(t => new ToolGrammarSpec(t.Name, t.Schema)).ToList(), separator: "");
                g = g with { Constraint = grammar.Start };
            }
            GenerationSession session;
            try { session = new GenerationSession(model, prompt, g); }
            catch (ArgumentException e) { throw Bad("messages", e.Message); }
            var output = session.Run().Where(id => !stopIds.Contains(id)).ToArray();
            string reply = Tokenizer.Decode(output, skipSpecialTokens: true);
            var parser = new ToolCallParser(ex.Tools, render.ToolCallStyle, () => "call");
            var pieces = parser.Push(reply);
            pieces.AddRange(parser.Flush());
            var calls = pieces.Where(p => p.Kind == ReplyPieceKind.ToolCall).Select(p => p.Call!).ToList();
            string text = string.Concat(pieces.Where(p => p.Kind == ReplyPieceKind.Text).Select(p => p.Text)).Trim();
            // Valid: at least one call parsed (offered tool, JSON arguments valid for its schema) and no malformed call block left as text.
            bool ok = calls.Count > 0 && !text.Contains(ToolCallFormat.CallOpen, StringComparison.Ordinal);
            bool match = hasCall && ok && calls[0].Name == want!.Name && JsonNode.DeepEquals(JsonNode.Parse(calls[0].Arguments), JsonNode.Parse(want.Arguments));
            if (hasCall)
            {
                callItems++;
                if (ok) valid++;
                if (match) exact++;
            }
            else rouge.Add(EvalMetrics.RougeL(text, reference.GetString()!));
            if (ItemScored is { } scored)
            {
                var rec = new JsonObject
                {
                    ["file"] = file, ["line"] = line, ["reply"] = reply,
                    ["calls"] = new JsonArray([.. calls.Select(c => (JsonNode)new JsonObject { ["name"] = c.Name, ["arguments"] = c.Arguments })]),
                };
                if (hasCall) { rec["valid_tool_call"] = ok; rec["exact_call"] = match; }
                else { rec["rouge_l_f1"] = rouge[^1]; rec["substance"] = rouge[^1] >= EvalMetrics.SubstanceRougeL; }
                scored(rec);
            }
            Progress?.Invoke("chat", ++done, items.Count);
        }
        var metrics = new List<EvalMetric>();
        if (callItems > 0)
        {
            var (vlo, vhi) = EvalMetrics.Wilson(valid, callItems);
            var (elo, ehi) = EvalMetrics.Wilson(exact, callItems);
            metrics.Add(new("tool_call_items", callItems));
            metrics.Add(new("valid_tool_call", (double)valid / callItems, vlo, vhi, valid));
            metrics.Add(new("exact_call", (double)exact / callItems, elo, ehi, exact));
        }
        if (rouge.Count > 0)
        {
            var (rlo, rhi) = EvalMetrics.BootstrapMean(rouge, seed: _o.Seed);
            metrics.Add(new("answer_items", rouge.Count));
            metrics.Add(new("rouge_l_f1", rouge.Average(), rlo, rhi));
            int kept = rouge.Count(r => r >= EvalMetrics.SubstanceRougeL);
            var (slo, shi) = EvalMetrics.Wilson(kept, rouge.Count);
            metrics.Add(new("substance", (double)kept / rouge.Count, slo, shi, kept));
        }
        return new EvalResult("chat", file, items.Count, metrics);
    }

    /// <summary>The results as JSON (the <c>--json</c> output).</summary>
    public static string ToJson(IReadOnlyList<EvalResult> results, string model)
    {
        var arr = new JsonArray();
        foreach (var r in results)
        {
            var ms = new JsonObject();
            foreach (var m in r.Metrics)
            {
                var o = new JsonObject { ["value"] = Num(m.Value) };
                if (m.Lo is { } lo) { o["ci95_low"] = Num(lo); o["ci95_high"] = Num(m.Hi!.Value); }
                if (m.Count is { } c) o["count"] = c;
                ms[m.Name] = o;
            }
            arr.Add(new JsonObject { ["task"] = r.Task, ["file"] = r.File, ["items"] = r.Items, ["metrics"] = ms });
        }
        return new JsonObject { ["model"] = model, ["results"] = arr }.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    static JsonNode? Num(double v) => double.IsFinite(v) ? JsonValue.Create(v) : null;

    /// <summary>The results as a table.</summary>
    public static string ToTable(IReadOnlyList<EvalResult> results)
    {
        var inv = CultureInfo.InvariantCulture;
        var rows = new List<string[]> { new[] { "task", "file", "items", "metric", "value", "95% interval" } };
        foreach (var r in results)
            foreach (var m in r.Metrics)
                rows.Add([r.Task, Path.GetFileName(r.File), r.Items.ToString(inv), m.Name,
                    m.Value == Math.Floor(m.Value) && Math.Abs(m.Value) < 1e15 && m.Lo is null ? m.Value.ToString("0", inv) : m.Value.ToString("0.0000", inv),
                    m.Lo is { } lo ? string.Create(inv, $"[{lo:0.0000}, {m.Hi:0.0000}]") : ""]);
        var widths = Enumerable.Range(0, 6).Select(c => rows.Max(r => r[c].Length)).ToArray();
        var sb = new StringBuilder();
        foreach (var r in rows) sb.AppendLine(string.Join("  ", r.Select((x, c) => x.PadRight(widths[c]))).TrimEnd());
        return sb.ToString();
    }

    public void Dispose()
    {
        _scorer?.Dispose();
        _generator?.Dispose();
    }
}
