using System.Text;
using LongCat.Kernels;
using LongCat.Tokenization;

namespace LongCat.Tests;

/// <summary>NFC, the BPE merge loops, decoding of invalid UTF-8 and batch determinism.</summary>
public class TokenizerCoreTests
{
    [Fact]
    public void NfcMatchesPythonOnCombiningText()
    {
        // Our table-driven NFC (needed for HF's alignments) against Python's unicodedata on text dense in
        // combining marks, Hangul jamo, singletons and composition exclusions (fixtures/tokenizers/nfc). Python is
        // Unicode 14.0 and our NFC follows HF's Unicode 9.0; the pool holds only characters of 9.0 or older,
        // where the two agree (TokenizerNfcSweepTests covers the newer marks against HF).
        int n = 0;
        foreach (var line in File.ReadLines(Path.Combine(Fixtures.Root, "tokenizers", "nfc", "nfc_cases.jsonl")))
        {
            using var doc = System.Text.Json.JsonDocument.Parse(line);
            var text = doc.RootElement.GetProperty("text").GetString()!;
            var cps = text.EnumerateRunes().Select(r => r.Value).ToArray();
            var outCps = new List<int>();
            Nfc.Normalize(cps, i => (i, i + 1), outCps, [], []);
            Assert.Equal(doc.RootElement.GetProperty("nfc").GetString(), string.Concat(outCps.Select(char.ConvertFromUtf32)));
            n++;
        }
        Assert.Equal(1500, n);
    }

    [Fact]
    public void NfcOffsetsMatchHuggingFaceOnQwen3()
    {
        var tok = TokenizerParityTests.Load("qwen3");
        var cases = TokenizerParityTests.ReadCases(Path.Combine(Fixtures.Root, "tokenizers", "nfc", "qwen3_nfc.jsonl"));
        Assert.Equal(300, cases.Count);
        foreach (var c in cases)
        {
            var e = tok.Encode(c.Text);
            Assert.Equal(c.Ids, e.Ids);
            Assert.Equal(c.Offsets.Select(o => (o[0], o[1])), e.Offsets.Select(o => (o.Start, o.End)));
            Assert.Equal(c.Decoded, tok.Decode(c.Ids));
        }
    }

    [Fact]
    public void NfcAlignmentFollowsHuggingFace()
    {
        // README trap 3: a composed character gets its first source character's span; the rest belong to no token.
        var qwen = TokenizerParityTests.Load("qwen3");
        var e = qwen.Encode("e\u0301");
        Assert.Equal([(0, 1)], e.Offsets);
        var h = qwen.Encode("\u1112\u1161\u11ab\u1100\u1173\u11af");
        Assert.Equal("한글", qwen.Decode(h.Ids));
        Assert.Equal([0, 3], h.Offsets.Select(o => o.Start).Distinct());
    }

    [Fact]
    public void ShortAndLongMergeLoopsAgree()
    {
        // The array scan (short words) and the priority queue (long words) must merge identically.
        foreach (var name in new[] { "longcat_style", "qwen3" })
        {
            var model = TokenizerParityTests.Load(name).Model;
            var rnd = new Random(11);
            var text = File.ReadAllText(Path.Combine(Fixtures.Root, "tokenizers", "bench", "bench_en_code_2mb.txt"));
            for (int t = 0; t < 400; t++)
            {
                int n = rnd.Next(2, 200);
                int at = rnd.Next(text.Length - n);
                var bytes = t % 4 == 0
                    ? Enumerable.Range(0, n).Select(_ => (byte)rnd.Next(256)).ToArray()
                    : Encoding.UTF8.GetBytes(text.Substring(at, n));
                var scratch = new BpeScratch();
                scratch.Ensure(bytes.Length);
                var ids = bytes.Select(b => model.TokenToIdOfByte(b)).ToArray();
                var a = (int[])ids.Clone(); var la = Enumerable.Repeat(1, a.Length).ToArray();
                var b2 = (int[])ids.Clone(); var lb = Enumerable.Repeat(1, b2.Length).ToArray();
                int na = model.MergeShort(a, la, a.Length, new int[a.Length]);
                int nb = model.MergeLong(b2, lb, b2.Length, ref scratch);
                Assert.Equal(a[..na], b2[..nb]);
                Assert.Equal(la[..na], lb[..nb]);
            }
        }
    }

    [Fact]
    public void LongPiecesEncodeQuicklyAndRoundTrip()
    {
        // 100 kB without a break takes the priority-queue merge loop (O(n log n)), not the quadratic scan.
        var tok = TokenizerParityTests.Load("qwen3");
        var s = string.Concat(Enumerable.Repeat("abcdefghij", 10_000));
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var ids = tok.EncodeToIds(s);
        Assert.True(sw.Elapsed.TotalSeconds < 10, $"took {sw.Elapsed}");
        Assert.Equal(s, tok.Decode(ids));
    }

    [Fact]
    public void InvalidUtf8DecodesToReplacementCharactersAsHuggingFace()
    {
        // Expected strings from HF tokenizers 0.23.2 decode() of the byte tokens (maximal-subpart U+FFFD).
        var tok = TokenizerParityTests.Load("longcat_style");
        int[] Ids(params int[] bytes) => [.. bytes.Select(b => tok.TokenToId(ByteLevel.ByteToChar((byte)b).ToString())!.Value)];
        Assert.Equal("a\uFFFDA", tok.Decode(Ids(0x61, 0xE2, 0x82, 0x41)));
        Assert.Equal("\uFFFD", tok.Decode(Ids(0xF0, 0x9F, 0x98)));
        Assert.Equal("\uFFFD\uFFFD\uFFFDa", tok.Decode(Ids(0xFF, 0xC0, 0x80, 0x61)));
        Assert.Equal("\uFFFD\uFFFD\uFFFD", tok.Decode(Ids(0xED, 0xA0, 0x80)));
        Assert.Equal("\uFFFD\uFFFD\uFFFD\uFFFD", tok.Decode(Ids(0xF4, 0x90, 0x80, 0x80)));
        Assert.Equal("\uFFFD\uFFFD\uFFFD", tok.Decode(Ids(0xE0, 0x80, 0xAF)));
        Assert.Equal("😀", tok.Decode(Ids(0xF0, 0x9F, 0x98, 0x80)));
        Assert.Equal("ab", tok.Decode([.. Ids('a'), 999_999, -1, .. Ids('b')])); // unknown ids are skipped, as HF does
    }

    [Fact]
    public void StreamingDecodeEqualsDecodeOfAllIds()
    {
        var tok = TokenizerParityTests.Load("longcat_style");
        var rnd = new Random(5);
        var texts = TokenizerParityTests.ReadCases(Path.Combine(Fixtures.Tokenizer("longcat_style"), "cases.jsonl")).Select(c => c.Text);
        foreach (var text in texts)
        {
            var ids = tok.EncodeToIds(text).ToList();
            // Sprinkle random byte tokens in to produce invalid UTF-8 too.
            if (rnd.Next(3) == 0) ids.Insert(rnd.Next(ids.Count + 1), 5 + rnd.Next(256));
            foreach (bool skip in new[] { false, true })
            {
                var dec = new TokenStreamDecoder(tok, skip);
                var sb = new StringBuilder();
                foreach (var id in ids) sb.Append(dec.Append(id));
                sb.Append(dec.Flush());
                Assert.Equal(tok.Decode(ids.ToArray(), skip), sb.ToString());
            }
        }
        // Without a decoder HF joins token strings with spaces; the stream does the same.
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(Fixtures.Tokenizer("longcat_style"), "tokenizer.json")))!;
        json["decoder"] = null;
        var plain = Tokenizer.FromJson(json.ToJsonString());
        var pids = plain.EncodeToIds("Hello world, <s> again");
        var ps = new TokenStreamDecoder(plain);
        Assert.Equal(plain.Decode(pids), string.Concat(pids.Select(ps.Append)) + ps.Flush());
        Assert.Equal(string.Join(" ", pids.Select(i => plain.IdToToken(i))), plain.Decode(pids));

        var d = new TokenStreamDecoder(tok);
        var emojiIds = tok.EncodeToIds("😀"); // three byte-level tokens
        Assert.Equal("", d.Append(emojiIds[0]));
        Assert.Equal("😀", string.Concat(emojiIds.Skip(1).Select(d.Append)));
    }

    [Fact]
    public void RandomTextRoundTripsWithSaneOffsets()
    {
        // Any string, from every plane, with lone surrogates: no exception, offsets inside the text and
        // non-decreasing, and decode gives the text back (NFC for Qwen3; a lone surrogate becomes U+FFFD).
        var rnd = new Random(3);
        foreach (var name in new[] { "deepseek_v3", "qwen3", "longcat_style" })
        {
            var tok = TokenizerParityTests.Load(name);
            for (int t = 0; t < 300; t++)
            {
                var sb = new StringBuilder();
                int n = rnd.Next(0, 40);
                for (int i = 0; i < n; i++)
                {
                    int kind = rnd.Next(10);
                    if (kind < 4) sb.Append((char)rnd.Next(0x20, 0x7F));
                    else if (kind < 6) sb.Append(" \n\t\r"[rnd.Next(4)]);
                    else if (kind == 6) sb.Append((char)rnd.Next(0xD800, 0xE000)); // lone surrogate
                    else
                    {
                        int cp;
                        do cp = rnd.Next(0x80, 0x110000); while (cp is >= 0xD800 and <= 0xDFFF);
                        sb.Append(char.ConvertFromUtf32(cp));
                    }
                }
                var text = sb.ToString();
                var e = tok.Encode(text);
                int cps = text.EnumerateRunes().Count();
                int prevStart = 0;
                foreach (var (s, end) in e.Offsets)
                {
                    Assert.InRange(s, 0, cps);
                    Assert.InRange(end, s, cps);
                    Assert.True(s >= prevStart, $"{name}: offsets go back in {System.Text.Json.JsonSerializer.Serialize(text)}");
                    prevStart = s;
                }
                var expected = string.Concat(text.EnumerateRunes().Select(r => r.ToString())); // lone surrogates -> U+FFFD
                if (name == "qwen3") expected = NfcOf(expected);
                Assert.Equal(expected, tok.Decode(e.Ids));
            }
        }
    }

    static string NfcOf(string s)
    {
        var cps = s.EnumerateRunes().Select(r => r.Value).ToArray();
        var o = new List<int>();
        Nfc.Normalize(cps, i => (i, i + 1), o, [], []);
        return string.Concat(o.Select(char.ConvertFromUtf32));
    }

    [Fact]
    public void SpecialTokensCanBeEncodedAsText()
    {
        var tok = TokenizerParityTests.Load("longcat_style");
        Assert.Equal([1], tok.EncodeToIds("<s>"));
        var plain = Tokenizer.Load(Fixtures.Tokenizer("longcat_style"));
        plain.EncodeSpecialTokens = true;
        Assert.DoesNotContain(1, plain.EncodeToIds("<s>"));
        Assert.Equal("<s>", plain.Decode(plain.EncodeToIds("<s>")));
    }

    [Fact]
    public void BatchResultsDoNotDependOnThreads()
    {
        var tok = TokenizerParityTests.Load("deepseek_v3");
        var text = File.ReadAllText(Path.Combine(Fixtures.Root, "tokenizers", "bench", "bench_en_code_2mb.txt"))[..200_000];
        var chunks = Enumerable.Range(0, 50).Select(i => text.Substring(i * 4000, 4000)).ToArray();
        int saved = Parallelism.Threads;
        try
        {
            Parallelism.Threads = 1;
            var one = tok.EncodeBatch(chunks);
            Parallelism.Threads = 3;
            var three = tok.EncodeBatch(chunks);
            for (int i = 0; i < chunks.Length; i++)
            {
                Assert.Equal(one[i].Ids, three[i].Ids);
                Assert.Equal(one[i].Offsets, three[i].Offsets);
                Assert.Equal(tok.EncodeToIds(chunks[i]), one[i].Ids);
                Assert.Equal(chunks[i], tok.Decode(one[i].Ids));
            }
        }
        finally { Parallelism.Threads = saved; }
    }
}
