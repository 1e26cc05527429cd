using System.Text;
using LongCat.Kernels;

namespace LongCat.Tokenization;

/// <summary>Options of <see cref="BpeTrainer"/>.</summary>
public sealed record BpeTrainerOptions
{
    /// <summary>Target vocabulary size, special tokens and the 256 byte symbols included.</summary>
    public int VocabSize { get; init; } = 8192;

    /// <summary>A pair seen fewer times than this is never merged (training stops early).</summary>
    public int MinFrequency { get; init; } = 2;

    /// <summary>Special tokens, given ids 0.. in this order (LongCat's: &lt;unk&gt; &lt;s&gt; &lt;/s&gt; &lt;pad&gt; &lt;/longcat_s&gt;).</summary>
    public IReadOnlyList<string> SpecialTokens { get; init; } = LongCatTokenizerSpec.SpecialTokens;

    /// <summary>Pre-tokenizer Split regexes (Isolated, applied in order); LongCat's three by default.</summary>
    public IReadOnlyList<string> SplitPatterns { get; init; } = LongCatTokenizerSpec.SplitPatterns;

    /// <summary>Progress callback (phase, done, total), called from the training thread.</summary>
    public Action<TrainerProgress>? Progress { get; init; }
}

/// <summary>A progress report: <paramref name="Phase"/> is "count" (bytes read) or "merge" (merges done).</summary>
public readonly record struct TrainerProgress(string Phase, long Done, long Total);

/// <summary>The result of training: vocabulary and merges, ready to save or to load as a <see cref="Tokenizer"/>.</summary>
/// <param name="Vocab">Token strings (byte-level characters) by id; special tokens first.</param>
/// <param name="Merges">Merges in rank order, as pairs of token strings.</param>
/// <param name="SpecialTokens">The special tokens (ids 0..n-1).</param>
/// <param name="SplitPatterns">The pre-tokenizer Split regexes.</param>
public sealed record TrainedBpe(IReadOnlyList<string> Vocab, IReadOnlyList<(string Left, string Right)> Merges,
    IReadOnlyList<string> SpecialTokens, IReadOnlyList<string> SplitPatterns);

/// <summary>
/// Byte-level BPE training with LongCat's pre-tokenization, deterministic for the same input and options
/// (and for any thread count).
/// </summary>
/// <remarks>
/// Steps: (1) count pre-tokens: special tokens are cut out of the text first (they never feed merges), the
/// rest is pre-tokenized exactly as the tokenizer will later do and each piece's bytes are counted, in parallel
/// over fixed chunks with the counts summed; (2) ids: special tokens, then the 256 byte symbols sorted by
/// their byte-level character, then one id per merge; (3) merge loop: the most frequent adjacent pair wins,
/// ties to the smaller (left id, right id); pair counts and the words holding each pair are updated
/// incrementally and a lazy max-heap finds the best pair, as Hugging Face's BpeTrainer does.
/// </remarks>
public static class BpeTrainer
{
    /// <summary>Trains on the UTF-8 text files <paramref name="files"/>.</summary>
    public static TrainedBpe TrainFiles(IReadOnlyList<string> files, BpeTrainerOptions options)
    {
        long total = 0;
        foreach (var f in files)
        {
            if (!File.Exists(f)) throw new FileNotFoundException($"{f}: training input not found", f);
            total += new FileInfo(f).Length;
        }
        var counter = new WordCounter(options);
        long done = 0;
        foreach (var f in files)
        {
            long size = new FileInfo(f).Length, read = 0;
            // A .jsonl(.gz) file trains on its documents' "text" fields; other files on their (decompressed) text.
            var blocks = Training.TextCorpus.IsJsonLines(f)
                ? Concatenate(Training.TextCorpus.Documents(f, Training.DocumentMode.File))
                : Blocks(Training.TextCorpus.OpenText(f), dispose: true);
            foreach (var block in blocks)
            {
                counter.AddBlock(block);
                read += Encoding.UTF8.GetByteCount(block);
                options.Progress?.Invoke(new TrainerProgress("count", Math.Min(done + Math.Min(read, size), total), total));
            }
            done += size;
        }
        return Merge(counter.Result(), options);
    }

    /// <summary>Trains on in-memory texts.</summary>
    public static TrainedBpe Train(IEnumerable<string> texts, BpeTrainerOptions options)
    {
        var counter = new WordCounter(options);
        foreach (var block in Concatenate(texts)) counter.AddBlock(block);
        return Merge(counter.Result(), options);
    }

    const int BlockChars = 1 << 22; // text handed to the parallel counter at a time (~4M chars)
    const int ChunkChars = 1 << 16; // one parallel work item; cut at line ends so results do not depend on threads

    /// <summary>Joins documents, one per line, into ~4M-char blocks.</summary>
    static IEnumerable<string> Concatenate(IEnumerable<string> texts)
    {
        var sb = new StringBuilder();
        foreach (var t in texts)
        {
            sb.Append(t).Append('\n');
            if (sb.Length >= BlockChars) { yield return sb.ToString(); sb.Clear(); }
        }
        if (sb.Length > 0) yield return sb.ToString();
    }

    /// <summary>Reads ~4M-char blocks that end at a line end (or at EOF).</summary>
    static IEnumerable<string> Blocks(StreamReader reader, bool dispose = false)
    {
        using var owned = dispose ? reader : null;
        var buf = new char[BlockChars];
        var carry = new StringBuilder();
        while (true)
        {
            int n = reader.ReadBlock(buf, 0, buf.Length);
            if (n == 0) break;
            carry.Append(buf, 0, n);
            string s = carry.ToString();
            int cut = s.LastIndexOf('\n');
            if (cut < 0 || n < buf.Length) { if (n < buf.Length) { yield return s; carry.Clear(); break; } continue; }
            yield return s[..(cut + 1)];
            carry.Clear().Append(s, cut + 1, s.Length - cut - 1);
        }
        if (carry.Length > 0) yield return carry.ToString();
    }

    /// <summary>Counts byte-level words of text blocks.</summary>
    sealed class WordCounter(BpeTrainerOptions options)
    {
        readonly Dictionary<string, long> _counts = new(StringComparer.Ordinal);
        readonly List<PreTokenizerStep> _steps = BuildSteps(options);
        readonly AddedVocabulary _specials = BuildSpecials(options);

        static List<PreTokenizerStep> BuildSteps(BpeTrainerOptions o)
        {
            var steps = new List<PreTokenizerStep>();
            foreach (var p in o.SplitPatterns)
            {
                try { steps.Add(new SplitStep(CodePointRegex.Compile(p), SplitBehavior.Isolated, false)); }
                catch (ArgumentException e) { throw new ArgumentException($"pre-tokenizer pattern: {e.Message}", e); }
            }
            steps.Add(new ByteLevelStep(false, false));
            return steps;
        }

        static AddedVocabulary BuildSpecials(BpeTrainerOptions o)
        {
            var v = new AddedVocabulary();
            for (int i = 0; i < o.SpecialTokens.Count; i++)
                v.Add(new AddedToken(i, o.SpecialTokens[i], true), AddedVocabulary.ToCodePoints(o.SpecialTokens[i]));
            return v;
        }

        public void AddBlock(string block)
        {
            // Fixed chunks cut at line ends: the same pieces whatever the thread count.
            var chunks = new List<(int Start, int End)>();
            for (int s = 0; s < block.Length;)
            {
                int e = Math.Min(block.Length, s + ChunkChars);
                if (e < block.Length)
                {
                    int nl = block.IndexOf('\n', e);
                    e = nl < 0 ? block.Length : nl + 1;
                }
                chunks.Add((s, e));
                s = e;
            }
            var partial = new Dictionary<string, long>[chunks.Count];
            Parallelism.For(chunks.Count, c =>
            {
                var (s, e) = chunks[c];
                partial[c] = CountChunk(block.AsSpan(s, e - s));
            });
            foreach (var d in partial)
                foreach (var (w, n) in d)
                    _counts[w] = _counts.GetValueOrDefault(w) + n;
        }

        Dictionary<string, long> CountChunk(ReadOnlySpan<char> text)
        {
            var counts = new Dictionary<string, long>(StringComparer.Ordinal);
            var st = new EncodeState();
            int n = st.LoadCodePoints(text);
            var parts = new List<(int Start, int End, int Token)>();
            _specials.Split(st.Cps.AsSpan(0, n), normalized: false, skipSpecial: false, parts);
            var pl = st.Pieces;
            var sb = new StringBuilder();
            foreach (var (s, e, tok) in parts)
            {
                if (tok >= 0) continue;
                pl.Reset();
                int b = pl.NewBacking();
                pl.Backings[b].Cps = st.Cps;
                pl.Current.Add(new Piece { B = b, Start = s, End = e });
                foreach (var step in _steps) step.Apply(pl);
                foreach (var p in pl.Current)
                {
                    int nb = st.LoadWordBytes(pl.Span(p), 0);
                    sb.Clear();
                    for (int k = 0; k < nb; k++) sb.Append(ByteLevel.ByteToChar(st.WordBytes[k]));
                    var w = sb.ToString();
                    counts[w] = counts.GetValueOrDefault(w) + 1;
                }
            }
            return counts;
        }

        public Dictionary<string, long> Result() => _counts;
    }

    /// <summary>The merge loop over counted words.</summary>
    static TrainedBpe Merge(Dictionary<string, long> wordCounts, BpeTrainerOptions o)
    {
        if (o.VocabSize < o.SpecialTokens.Count + 256)
            throw new ArgumentException($"vocab size {o.VocabSize} is below the {o.SpecialTokens.Count} special tokens + 256 byte symbols");
        if (o.SpecialTokens.Distinct().Count() != o.SpecialTokens.Count || o.SpecialTokens.Any(string.IsNullOrEmpty))
            throw new ArgumentException("special tokens must be distinct and non-empty");

        var vocab = new List<string>(o.SpecialTokens);
        var byteIdOfChar = new Dictionary<char, int>();
        foreach (var c in Enumerable.Range(0, 256).Select(b => ByteLevel.ByteToChar((byte)b)).Order())
        {
            byteIdOfChar[c] = vocab.Count;
            vocab.Add(c.ToString());
        }
        var tokenIds = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < vocab.Count; i++) tokenIds.TryAdd(vocab[i], i);

        // Words in a fixed order (ordinal) so ids of equal-count pairs never depend on hash order.
        var keys = wordCounts.Keys.Order(StringComparer.Ordinal).ToArray();
        int nw = keys.Length;
        var words = new int[nw][];
        var lens = new int[nw];
        var counts = new long[nw];
        for (int w = 0; w < nw; w++)
        {
            var k = keys[w];
            words[w] = new int[k.Length];
            for (int i = 0; i < k.Length; i++) words[w][i] = byteIdOfChar[k[i]];
            lens[w] = k.Length;
            counts[w] = wordCounts[k];
        }

        var pairCounts = new Dictionary<long, long>();
        var where = new Dictionary<long, List<int>>();
        static long Key(int a, int b) => ((long)a << 32) | (uint)b;
        for (int w = 0; w < nw; w++)
        {
            var s = words[w];
            for (int i = 0; i + 1 < lens[w]; i++)
            {
                long key = Key(s[i], s[i + 1]);
                pairCounts[key] = pairCounts.GetValueOrDefault(key) + counts[w];
                if (!where.TryGetValue(key, out var list)) where[key] = list = [];
                if (list.Count == 0 || list[^1] != w) list.Add(w);
            }
        }

        // Max-heap on count, ties to the smaller pair; entries may be stale and are re-checked when popped.
        var heap = new PriorityQueue<long, (long NegCount, long Pair)>();
        foreach (var (k, c) in pairCounts) heap.Enqueue(k, (-c, k));

        var merges = new List<(string, string)>();
        int target = o.VocabSize;
        var changed = new Dictionary<long, long>();
        while (vocab.Count < target && heap.TryDequeue(out long pair, out var prio))
        {
            long current = pairCounts.GetValueOrDefault(pair);
            if (current != -prio.NegCount)
            {
                if (current > 0) heap.Enqueue(pair, (-current, pair));
                continue;
            }
            if (current < Math.Max(1, o.MinFrequency)) break;

            int a = (int)(pair >> 32), b = (int)pair;
            string merged = vocab[a] + vocab[b];
            if (!tokenIds.TryGetValue(merged, out int newId))
            {
                newId = vocab.Count;
                vocab.Add(merged);
                tokenIds[merged] = newId;
            }
            merges.Add((vocab[a], vocab[b]));
            changed.Clear();
            foreach (int w in where[pair])
            {
                var s = words[w];
                int n = lens[w];
                long c = counts[w];
                int write = 0;
                for (int i = 0; i < n; i++)
                {
                    if (i + 1 < n && s[i] == a && s[i + 1] == b)
                    {
                        // Left neighbour (already written) and right neighbour pairs change.
                        if (write > 0)
                        {
                            Add(changed, Key(s[write - 1], a), -c);
                            Add(changed, Key(s[write - 1], newId), c);
                        }
                        if (i + 2 < n)
                        {
                            Add(changed, Key(b, s[i + 2]), -c);
                            Add(changed, Key(newId, s[i + 2]), c);
                        }
                        Add(changed, pair, -c);
                        s[write++] = newId;
                        i++;
                    }
                    else s[write++] = s[i];
                }
                lens[w] = write;
                foreach (var (k, d) in changed)
                {
                    if (d > 0 && (!where.TryGetValue(k, out var list) || list.Count == 0 || list[^1] != w))
                    {
                        if (list is null) where[k] = list = [];
                        list.Add(w);
                    }
                }
                foreach (var (k, d) in changed) pairCounts[k] = pairCounts.GetValueOrDefault(k) + d;
                foreach (var (k, d) in changed)
                    if (d > 0) heap.Enqueue(k, (-pairCounts[k], k));
                changed.Clear();
            }
            where.Remove(pair);
            pairCounts.Remove(pair);
            if (merges.Count % 256 == 0) o.Progress?.Invoke(new TrainerProgress("merge", vocab.Count, target));
        }
        o.Progress?.Invoke(new TrainerProgress("merge", vocab.Count, target));
        return new TrainedBpe(vocab, merges, o.SpecialTokens, o.SplitPatterns);
    }

    static void Add(Dictionary<long, long> d, long k, long v) => d[k] = d.GetValueOrDefault(k) + v;
}
