using System.CommandLine;
using System.Diagnostics;
using System.Text.Json.Nodes;
using LongCat.Cli.Commands;
using LongCat.Inference;
using LongCat.IO;
using LongCat.Kernels;
using LongCat.Model;
using LongCat.Quantization;

namespace LongCat.Cli.Bench;

/// <summary>
/// <c>longcat bench generate</c>: prefill tokens/s (one 512-token prompt) and decode tokens/s at batch 1, for the
/// model converted to each weight format (f32, bf16, fp8, int8; converted into temp folders with the quantizer),
/// medians over <c>--repeats</c> after a warm-up. Beside decode: the memory-bandwidth roofline, i.e. the weight bytes
/// actually read per decoded token (every GEMM/GEMV call's weight bytes, counted through <see cref="Gemm.Observer"/>:
/// dense parts, the experts really used, lm_head, the MTP head) divided by the read bandwidth measured in the same run
/// (<see cref="BenchUtil.ReadBandwidth"/>), and the bytes the process allocated per decoded token. Prefill is also
/// shown as GEMM GFLOP/s against the machine's F32 peak measured in the same run (OpenBLAS sgemm 2048³).
/// With <c>--speculative mtp</c> every repeat also decodes plain greedy, so the MTP speedup is measured in the same
/// run, and the two outputs must be identical. With <c>--peer torch</c> the PyTorch peer generates from the same
/// checkpoint (f32 in float32, bf16 in bfloat16; it does not read fp8/int8), its repeats alternating with ours.
/// </summary>
public static class GenerateBench
{
    public static Command Create()
    {
        var model = CliSupport.RequiredPath("--model", "Checkpoint folder (e.g. from `longcat init --config bench/configs/bench-350m.json --mtp`).");
        var spec = new Option<string?>("--speculative") { Description = "mtp: also decode with the MTP draft head (the model must have one) and print its speedup over plain greedy, measured in the same run." };
        var json = new Option<bool>("--json") { Description = "One JSON object per line instead of the table." };
        var formats = new Option<string>("--formats") { Description = "Weight formats to convert to and measure: f32, bf16, fp8, int8.", DefaultValueFactory = _ => "f32,bf16,fp8,int8" };
        var prompt = new Option<int>("--prompt-tokens") { Description = "Prompt length (prefill).", DefaultValueFactory = _ => 512 };
        var decode = new Option<int>("--decode-tokens") { Description = "Tokens to decode (greedy).", DefaultValueFactory = _ => 32 };
        var draftVocab = new Option<int?>("--draft-vocab") { Description = "With --speculative mtp: the draft scores token ids [0, N) only (default: the generation default, max(1024, vocabulary/4)); the vocabulary size = the whole vocabulary." };
        var repeats = new Option<int>("--repeats") { Description = "Timed generations per format after the warm-up (medians are reported).", DefaultValueFactory = _ => 3 };
        var peer = BenchCommand.PeerOption();
        var cmd = new Command("generate", "Prefill and decode tokens/s per weight format (f32/bf16/fp8/int8), with the memory-bandwidth roofline of decode, bytes allocated per token, the MTP speedup and the PyTorch peer, all measured in the same run.")
        {
            model, spec, draftVocab, json, formats, prompt, decode, repeats, peer,
        };
        cmd.SetAction(p => CliSupport.Run(p, () => Run(p.GetValue(model)!, p.GetValue(spec), p.GetValue(json), p.GetValue(formats)!, p.GetValue(prompt),
            p.GetValue(decode), p.GetValue(repeats), TorchPeer.Parse(p.GetValue(peer)), p.GetValue(draftVocab))));
        return cmd;
    }

    /// <summary>One generation: timings, weight bytes read and bytes allocated per decoded token, the tokens.</summary>
    sealed record Sample(double PrefillS, double DecodeS, int Decoded, double AllocPerToken, double Acceptance, int[] Tokens, int DraftVocabulary);

    static int Run(string modelDir, string? speculative, bool json, string formatList, int promptTokens, int decodeTokens, int repeats, bool peer, int? draftVocab)
    {
        if (speculative is not (null or "mtp")) throw new CliException($"--speculative must be 'mtp', got '{speculative}'");
        if (draftVocab is not null && speculative is null) throw new CliException("--draft-vocab needs --speculative mtp");
        if (promptTokens < 1) throw new CliException($"--prompt-tokens must be >= 1, got {promptTokens}");
        if (decodeTokens < 2) throw new CliException($"--decode-tokens must be >= 2, got {decodeTokens}");
        if (repeats < 1 || repeats > 100) throw new CliException($"--repeats must be in 1..100, got {repeats}");
        if (!Directory.Exists(modelDir)) throw new CliException($"{modelDir}: model folder not found");
        var formats = formatList.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(CheckpointQuantizer.ParseFormat).Distinct().ToList();
        if (formats.Count == 0) throw new CliException("--formats is empty");
        bool mtp = speculative == "mtp";

        double bw = BenchUtil.ReadBandwidth(512, 1.0);
        double peak = BlasReference.MeasurePeak(Parallelism.Threads, out var blasName, out var blasNote);
        string? peerNote = null;
        using var torch = peer ? TorchPeer.TryStart(Parallelism.Threads, out peerNote) : null;
        if (!json)
        {
            Console.WriteLine($"{modelDir}: batch 1, prompt {promptTokens} tokens, {decodeTokens} decoded (greedy{(mtp ? "; and MTP speculative, same run" : "")}), {Parallelism.Threads} threads, {Gemm.KernelName}, medians of {repeats} after a warm-up");
            Console.WriteLine($"read bandwidth {BenchUtil.F(bw, 1)} GB/s; " + (double.IsNaN(peak)
                ? $"F32 peak not measured ({blasNote}): no % of peak"
                : $"F32 peak {BenchUtil.F(peak, 1)} GFLOP/s ({blasName} sgemm 2048³, measured now)"));
            if (peer) Console.WriteLine(torch != null ? torch.EnvironmentNote : $"PyTorch peer: {peerNote}");
            Console.WriteLine();
            Console.WriteLine($"{"format",-6} {"weights MB",10} {"prefill tok/s",13} {"GFLOP/s",8} {"% peak",6} {"decode tok/s",12} {"MB/token",9} {"roofline tok/s",14} {"x roofline",10} {"alloc/token",11}"
                + (mtp ? $" {"MTP tok/s",9} {"speedup",7} {"accept",6} {"same out",8}" : "")
                + (torch != null ? $" {"torch prefill",13} {"torch decode",12} {"x prefill",9} {"x decode",8}" : ""));
        }
        var tmpRoot = Path.Combine(Path.GetTempPath(), "longcat-bench-generate-" + Environment.ProcessId);
        var changed = new List<string>();
        try
        {
            foreach (var f in formats)
            {
                string name = CheckpointQuantizer.Name(f);
                var dir = Path.Combine(tmpRoot, name);
                CheckpointQuantizer.Convert(modelDir, dir, f);
                var plain = new List<Sample>();
                var spec = new List<Sample>();
                var theirs = new List<TorchPeer.GenerateResult>();
                string? formatPeerNote = peerNote;
                long weightBytes;
                bool hasMtp;
                (double BytesPerToken, double PrefillFlops) counted;
                (double Step, double Verify, double Draft)? stepCosts = null;
                using (var m = LongCatModel.Load(dir))
                {
                    weightBytes = m.Linears.Sum(w => w.Bytes);
                    hasMtp = m.Mtp is not null;
                    if (mtp && !hasMtp) throw new CliException($"{modelDir}: --speculative mtp needs an MTP head, and this checkpoint has no model.mtp.* weights (make one with `longcat init --mtp`)");
                    if (draftVocab is { } dv && (dv < 1 || dv > m.Config.VocabSize))
                        throw new CliException($"--draft-vocab must be in 1..{m.Config.VocabSize} (the vocabulary size = the whole vocabulary), got {dv}");
                    var prompt = QuantDrift.PseudoText(m.Config.VocabSize, 1, promptTokens, 99);
                    bool peerRuns = false;
                    if (torch != null)
                    {
                        if (f is not (WeightFormat.F32 or WeightFormat.BF16))
                            formatPeerNote = $"the PyTorch reference did not run for {name}: the peer reads F32 and BF16 weights only";
                        else
                        {
                            try
                            {
                                torch.Load(dir, f == WeightFormat.BF16 ? "bfloat16" : "float32");
                                torch.Generate(prompt[..Math.Min(promptTokens, 16)], 4, false); // warm-up
                                peerRuns = true;
                            }
                            catch (IOException e) { formatPeerNote = $"the PyTorch reference did not run for {name}: {e.Message}"; }
                        }
                    }
                    // Warm-up, as long as a timed run: JIT (tiered: a path's methods reach their optimised code only after
                    // some calls, and the speculative path has its own), page-in of the weights, buffers.
                    Measure(m, prompt, decodeTokens, false, null);
                    if (mtp) Measure(m, prompt, decodeTokens, true, draftVocab);
                    // Weight bytes per decoded token and prefill FLOPs, counted in one untimed generation: the counting hook
                    // would slow the timed ones (and splits the fused GEMV pairs).
                    counted = Count(m, prompt, decodeTokens);
                    for (int r = 0; r < repeats; r++)
                    {
                        plain.Add(Measure(m, prompt, decodeTokens, false, null));
                        if (mtp) spec.Add(Measure(m, prompt, decodeTokens, true, draftVocab));
                        if (peerRuns) theirs.Add(torch!.Generate(prompt, decodeTokens, false));
                    }
                    if (mtp) stepCosts = StepCosts(m, prompt, spec[0].DraftVocabulary);
                }
                Directory.Delete(dir, recursive: true);
                if (!Print(json, modelDir, name, weightBytes, promptTokens, decodeTokens, bw, peak, counted, stepCosts, plain, spec, theirs, formatPeerNote, peer)) changed.Add(name);
            }
        }
        finally
        {
            if (Directory.Exists(tmpRoot)) Directory.Delete(tmpRoot, recursive: true);
        }
        if (!json)
        {
            Console.WriteLine();
            Console.WriteLine("x roofline: decode time / (weight bytes read per token / read bandwidth); alloc/token: bytes the process allocated per decoded token (GC.GetTotalAllocatedBytes)." +
                (mtp ? " speedup: MTP decode tok/s / plain greedy decode tok/s, both medians of this run; same out: the MTP output equals plain greedy's." : "") +
                (torch != null ? " x prefill / x decode: LongCat.NET tokens/s / PyTorch peer tokens/s, medians, repeats alternating." : ""));
        }
        // Speculative decoding that changes greedy output is a bug, not a speed figure: fail the command.
        if (changed.Count > 0)
            throw new CliException($"MTP speculative decoding changed the greedy output ({string.Join(", ", changed)}): the speedup above is not valid");
        return 0;
    }

    /// <summary>Prints one format's row; false when the MTP output differed from plain greedy.</summary>
    static bool Print(bool json, string modelDir, string format, long weightBytes, int promptTokens, int decodeTokens, double bw, double peak,
        (double BytesPerToken, double PrefillFlops) counted, (double Step, double Verify, double Draft)? steps, List<Sample> plain, List<Sample> spec, List<TorchPeer.GenerateResult> theirs, string? peerNote, bool peerAsked)
    {
        double prefillTps = promptTokens / BenchUtil.Median(plain.Select(s => s.PrefillS));
        double prefillGflops = BenchUtil.Median(plain.Select(s => counted.PrefillFlops / s.PrefillS / 1e9));
        double decodeTps = BenchUtil.Median(plain.Select(s => s.Decoded / s.DecodeS));
        double bytesPerToken = counted.BytesPerToken;
        double allocPerToken = BenchUtil.Median(plain.Select(s => s.AllocPerToken));
        double roofline = bw * 1e9 / bytesPerToken;
        double ratio = roofline / decodeTps;
        bool mtp = spec.Count > 0;
        double specTps = mtp ? BenchUtil.Median(spec.Select(s => s.Decoded / s.DecodeS)) : double.NaN;
        double accept = mtp ? BenchUtil.Median(spec.Select(s => s.Acceptance)) : double.NaN;
        // The speedup as the median of each repeat's pair (plain, then speculative right after) and of the medians.
        double pairRatio = mtp ? BenchUtil.Median(spec.Zip(plain).Select(p => p.First.Decoded / p.First.DecodeS / (p.Second.Decoded / p.Second.DecodeS))) : double.NaN;
        int draftVocab = mtp ? spec[0].DraftVocabulary : 0;
        bool same = mtp && spec.Zip(plain).All(p => p.First.Tokens.SequenceEqual(p.Second.Tokens));
        bool peer = theirs.Count > 0;
        double peerPrefill = peer ? promptTokens / BenchUtil.Median(theirs.Select(t => t.PrefillSeconds)) : double.NaN;
        double peerDecode = peer ? BenchUtil.Median(theirs.Select(t => (t.Tokens.Length - 1) / t.DecodeSeconds)) : double.NaN;
        bool peerSame = peer && theirs.Zip(plain).All(p => p.First.Tokens.SequenceEqual(p.Second.Tokens));
        if (json)
        {
            Console.WriteLine(new JsonObject
            {
                ["bench"] = "generate", ["model"] = modelDir, ["format"] = format, ["weight_bytes"] = weightBytes,
                ["prompt_tokens"] = promptTokens, ["decode_tokens"] = decodeTokens, ["threads"] = Parallelism.Threads, ["repeats"] = plain.Count,
                ["prefill_tokens_per_s"] = BenchUtil.J(prefillTps), ["prefill_gemm_gflops"] = BenchUtil.J(prefillGflops),
                ["f32_peak_gflops_openblas"] = BenchUtil.J(peak), ["prefill_fraction_of_peak"] = BenchUtil.J(prefillGflops / peak, 3),
                ["decode_tokens_per_s"] = BenchUtil.J(decodeTps), ["weight_bytes_per_token"] = Math.Round(bytesPerToken),
                ["read_bandwidth_gbs"] = BenchUtil.J(bw), ["roofline_tokens_per_s"] = BenchUtil.J(roofline),
                ["roofline_ratio"] = BenchUtil.J(ratio, 3), ["allocated_bytes_per_token"] = Math.Round(allocPerToken),
                ["mtp_decode_tokens_per_s"] = mtp ? BenchUtil.J(specTps) : null, ["mtp_speedup"] = mtp ? BenchUtil.J(specTps / decodeTps, 3) : null,
                ["mtp_acceptance_rate"] = mtp ? BenchUtil.J(accept, 3) : null, ["mtp_output_unchanged"] = mtp ? same : null,
                ["mtp_speedup_median_of_pairs"] = mtp ? BenchUtil.J(pairRatio, 3) : null, ["mtp_draft_vocabulary"] = mtp ? draftVocab : null,
                ["mtp_verify_cost_in_steps"] = steps is { } v1 ? BenchUtil.J(v1.Verify / v1.Step, 3) : null,
                ["mtp_draft_cost_in_steps"] = steps is { } d1 ? BenchUtil.J(d1.Draft / d1.Step, 3) : null,
                ["peer"] = !peerAsked ? null : !peer ? new JsonObject { ["ran"] = false, ["note"] = peerNote } : new JsonObject
                {
                    ["ran"] = true, ["prefill_tokens_per_s"] = BenchUtil.J(peerPrefill), ["decode_tokens_per_s"] = BenchUtil.J(peerDecode),
                    ["prefill_ratio"] = BenchUtil.J(prefillTps / peerPrefill, 3), ["decode_ratio"] = BenchUtil.J(decodeTps / peerDecode, 3),
                    ["same_tokens"] = peerSame,
                },
            }.ToJsonString(BenchUtil.JsonOptions));
            return !mtp || same;
        }
        Console.WriteLine($"{format,-6} {BenchUtil.F(weightBytes / 1e6, 1),10} {BenchUtil.F(prefillTps, 1),13} {BenchUtil.F(prefillGflops, 1),8} {BenchUtil.F(100 * prefillGflops / peak, 0),6} {BenchUtil.F(decodeTps, 2),12} {BenchUtil.F(bytesPerToken / 1e6, 1),9} {BenchUtil.F(roofline, 2),14} {BenchUtil.F(ratio, 2),10} {Bytes(allocPerToken),11}"
            + (mtp ? $" {BenchUtil.F(specTps, 2),9} {BenchUtil.F(specTps / decodeTps, 2) + "x",7} {BenchUtil.F(100 * accept, 0) + "%",6} {(same ? "yes" : "NO"),8}" : "")
            + (peer ? $" {BenchUtil.F(peerPrefill, 1),13} {BenchUtil.F(peerDecode, 2),12} {BenchUtil.F(prefillTps / peerPrefill, 2) + "x",9} {BenchUtil.F(decodeTps / peerDecode, 2) + "x",8}" : ""));
        if (mtp) Console.WriteLine($"  {format}: MTP speedup as the median of the {spec.Count} interleaved pairs {BenchUtil.F(pairRatio, 2)}x; the draft scored token ids 0..{draftVocab - 1}");
        if (steps is { } st)
            Console.WriteLine($"  {format}: one plain step {BenchUtil.F(st.Step * 1e3, 3)} ms; verifying [token, draft] {BenchUtil.F(st.Verify / st.Step, 2)} steps; the draft (one pair) {BenchUtil.F(st.Draft / st.Step, 2)} steps (forwards alone at the prompt's end, interleaved, medians)");
        if (mtp && !same) Console.WriteLine($"  {format}: the MTP speculative output DIFFERS from plain greedy decoding");
        if (peerAsked && !peer) Console.WriteLine($"  {format}: {peerNote}");
        else if (peer && !peerSame) Console.WriteLine($"  {format}: the PyTorch peer's greedy tokens differ from ours (float rounding can flip near-ties; the timings still compare the same work)");
        return !mtp || same;
    }

    internal static string Bytes(double b) => double.IsNaN(b) ? "-" : b >= 1 << 20 ? $"{b / (1 << 20):F1} MiB" : b >= 1 << 10 ? $"{b / 1024.0:F1} KiB" : $"{b:F0} B";

    /// <summary>
    /// What one speculative step costs, in plain steps: after prefilling the prompt, a 1-row forward, the 2-row
    /// verification forward (both logit rows) and the draft (one pair, the draft vocabulary of the timed runs), each
    /// alone with the caches rolled back after it, interleaved, 60 rounds after 10 of warm-up: medians in seconds.
    /// Null when the prompt leaves no room for two more tokens.
    /// </summary>
    static (double Step, double Verify, double Draft)? StepCosts(LongCatModel m, int[] prompt, int draftVocab)
    {
        var c = m.Config;
        int hd = c.HiddenSize, n = prompt.Length;
        if (n + 2 > c.MaxPositionEmbeddings) return null;
        var cache = m.NewCache(n + 2);
        var head = m.Mtp!;
        var mcache = head.NewCache(n + 2);
        var r = m.Prefill(prompt, cache);
        if (n > 1) head.Forward(r.FinalHidden.AsSpan(0, (n - 1) * hd), prompt.AsSpan(1, n - 1), mcache, m.LmHead, m.Rope);
        var last = r.FinalHidden.AsSpan((n - 1) * hd, hd).ToArray();
        var lmHead = m.LmHead.FirstRows(draftVocab);
        int len = cache.Length, mlen = mcache.Length;
        StepResult? one = null, two = null;
        float[]? draft = null;
        var ts = new List<double>[] { [], [], [] };
        for (int round = 0; round < 70; round++)
        {
            int a = prompt[round % n], b = prompt[(7 * round + 3) % n];
            long t0 = Stopwatch.GetTimestamp();
            one = m.ForwardCached([a], cache, false, null, one);
            long t1 = Stopwatch.GetTimestamp();
            cache.Truncate(len);
            two = m.ForwardCached([a, b], cache, true, null, two);
            long t2 = Stopwatch.GetTimestamp();
            cache.Truncate(len);
            draft = head.Forward(last, [a], mcache, lmHead, m.Rope, false, draft);
            long t3 = Stopwatch.GetTimestamp();
            mcache.Truncate(mlen);
            if (round < 10) continue;
            ts[0].Add((t1 - t0) / (double)Stopwatch.Frequency); ts[1].Add((t2 - t1) / (double)Stopwatch.Frequency); ts[2].Add((t3 - t2) / (double)Stopwatch.Frequency);
        }
        return (BenchUtil.Median(ts[0]), BenchUtil.Median(ts[1]), BenchUtil.Median(ts[2]));
    }

    /// <summary>One untimed generation with the GEMM hook: weight bytes read per decoded token and prefill FLOPs.</summary>
    static (double BytesPerToken, double PrefillFlops) Count(LongCatModel model, int[] prompt, int decodeTokens)
    {
        double prefillFlops = 0, decodeBytes = 0;
        bool decoding = false;
        var gate = new object();
        Gemm.Observer = (w, m, _) =>
        {
            lock (gate)
            {
                if (decoding) decodeBytes += w.Bytes;
                else prefillFlops += 2.0 * m * w.Rows * w.Cols;
            }
        };
        int tokens = 0;
        try
        {
            foreach (var _ in new GenerationSession(model, prompt, new GenerationOptions { MaxTokens = decodeTokens, Temperature = 0f }).Generate())
                if (++tokens == 1) lock (gate) decoding = true;
        }
        finally { Gemm.Observer = null; }
        return (decodeBytes / Math.Max(1, tokens - 1), prefillFlops);
    }

    static Sample Measure(LongCatModel model, int[] prompt, int decodeTokens, bool speculative, int? draftVocab)
    {
        var opts = new GenerationOptions { MaxTokens = decodeTokens, Temperature = 0f, Speculative = speculative, DraftVocabulary = draftVocab };
        var session = new GenerationSession(model, prompt, opts);
        var tokens = new List<int>();
        var sw = Stopwatch.StartNew();
        double prefillS = 0;
        long alloc0 = 0;
        foreach (var t in session.Generate())
        {
            tokens.Add(t.Id);
            if (tokens.Count == 1)
            {
                prefillS = sw.Elapsed.TotalSeconds;
                alloc0 = GC.GetTotalAllocatedBytes(true);
                sw.Restart();
            }
        }
        double decodeS = sw.Elapsed.TotalSeconds;
        long alloc = GC.GetTotalAllocatedBytes(true) - alloc0;
        int decoded = tokens.Count - 1;
        return new Sample(prefillS, decodeS, decoded, alloc / (double)Math.Max(1, decoded),
            session.Result?.AcceptanceRate ?? 0, [.. tokens], session.Result?.DraftVocabulary ?? 0);
    }
}
