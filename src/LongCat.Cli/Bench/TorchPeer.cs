using System.Globalization;
using System.Text.Json.Nodes;

namespace LongCat.Cli.Bench;

/// <summary>
/// The PyTorch peer: bench/peer/longcat_peer.py (LongCat-Flash in plain PyTorch, checked against the golden fixtures
/// by bench/peer/test_parity.py) run by Debian's /usr/bin/python3 with python3-torch as a long-lived child process,
/// on the same checkpoint as ours, so that `bench forward | generate | train --peer torch` alternate its repeats with
/// ours. Its environment: OMP_WAIT_POLICY=PASSIVE and torch.set_num_threads(--threads) (spinning OpenMP workers
/// would steal the 2 cores from our repeats), and glibc malloc tuning (without it PyTorch's training returns and
/// re-faults its large buffers every step and runs several times slower); <see cref="EnvironmentNote"/> says so.
/// </summary>
public sealed class TorchPeer : IDisposable
{
    const string Who = "PyTorch peer";
    public const string Python = "/usr/bin/python3";
    readonly JsonLinesProcess _p;

    /// <summary>The environment the peer process gets (beside the inherited one).</summary>
    public static IReadOnlyDictionary<string, string> Environment(int threads) => new Dictionary<string, string>
    {
        ["OMP_WAIT_POLICY"] = "PASSIVE",
        ["OMP_NUM_THREADS"] = threads.ToString(CultureInfo.InvariantCulture),
        ["MKL_NUM_THREADS"] = threads.ToString(CultureInfo.InvariantCulture),
        ["MALLOC_MMAP_THRESHOLD_"] = "4294967296",
        ["MALLOC_TRIM_THRESHOLD_"] = "17179869184",
        ["MALLOC_TOP_PAD_"] = "1073741824",
    };

    /// <summary>"PyTorch 1.13.0a0 (2 threads)".</summary>
    public string Description { get; }

    /// <summary>One line for the bench output: what the peer is and how its process is set up.</summary>
    public string EnvironmentNote { get; }

    TorchPeer(JsonLinesProcess p, int threads)
    {
        _p = p;
        Description = $"PyTorch {p.Info["torch"]} ({p.Info["threads"]} threads)";
        EnvironmentNote = $"peer: bench/peer/longcat_peer.py on {Description}, float32 compute; its process runs with " +
            string.Join(" ", Environment(threads).Select(kv => $"{kv.Key}={kv.Value}")) +
            (p.Info["env"]?["OPENBLAS_CORETYPE"] is { } core ? $" OPENBLAS_CORETYPE={core}" : "") +
            " (OpenMP workers sleep between calls; glibc malloc keeps large buffers instead of unmapping them every step;" +
            " the OpenBLAS kernel behind torch's float32 matmul is named from the CPU's flags, as for the sgemm peak)";
    }

    /// <summary>Parses --peer: null (none) or "torch"; anything else is refused by name.</summary>
    public static bool Parse(string? value) => value switch
    {
        null => false,
        "torch" => true,
        _ => throw new Commands.CliException($"--peer: '{value}' is not a supported reference (the only one is 'torch')"),
    };

    /// <summary>Starts the peer, or returns null with a note saying that the reference did not run and why.</summary>
    public static TorchPeer? TryStart(int threads, out string? note)
    {
        note = null;
        var script = JsonLinesProcess.FindBenchFile("peer", "longcat_peer.py");
        if (script == null)
        {
            note = "the PyTorch reference did not run: bench/peer/longcat_peer.py not found (run from the repository)";
            return null;
        }
        if (!File.Exists(Python))
        {
            note = $"the PyTorch reference did not run: {Python} not found (apt-get install -y python3-torch python3-numpy)";
            return null;
        }
        var p = JsonLinesProcess.TryStart(Python, [script, "--serve", "--threads", threads.ToString(CultureInfo.InvariantCulture)], Environment(threads), out var error);
        if (p == null)
        {
            note = $"the PyTorch reference did not run: {error}" +
                (error != null && error.Contains("No module named", StringComparison.Ordinal) ? " (apt-get install -y python3-torch python3-numpy)" : "");
            return null;
        }
        return new TorchPeer(p, threads);
    }

    /// <summary>Loads a checkpoint folder (F32 or BF16 weights) to compute in <paramref name="dtype"/> (float32 or
    /// bfloat16, the router staying float32); returns its parameter count.</summary>
    public long Load(string folder, string dtype = "float32") =>
        _p.Call(new JsonObject { ["op"] = "load", ["model"] = Path.GetFullPath(folder), ["dtype"] = dtype }, Who)["params"]!.GetValue<long>();

    /// <summary>One forward of one sequence (batch 1); returns its seconds (measured inside the peer).</summary>
    public double Forward(IReadOnlyList<int> ids, bool allLogits) =>
        _p.Call(new JsonObject { ["op"] = "forward", ["ids"] = Ints(ids), ["all_logits"] = allLogits }, Who)["seconds"]!.GetValue<double>();

    public sealed record GenerateResult(double PrefillSeconds, double DecodeSeconds, int[] Tokens, double? Acceptance);

    /// <summary>Greedy generation of batch 1 with the peer's latent KV cache (MTP drafting if asked and present).</summary>
    public GenerateResult Generate(IReadOnlyList<int> prompt, int maxTokens, bool mtp)
    {
        var r = _p.Call(new JsonObject { ["op"] = "generate", ["prompt"] = Ints(prompt), ["max_tokens"] = maxTokens, ["mtp"] = mtp }, Who);
        return new GenerateResult(r["prefill_seconds"]!.GetValue<double>(), r["decode_seconds"]!.GetValue<double>(),
            r["tokens"]!.AsArray().Select(t => t!.GetValue<int>()).ToArray(), r["acceptance"]?.GetValue<double>());
    }

    /// <summary>Prepares training steps on B sequences of S tokens (AdamW, lr 1e-4, gradient clipping at norm 1).</summary>
    public void TrainSetup(IReadOnlyList<int> ids, int batch, int seq) =>
        _p.Call(new JsonObject { ["op"] = "train_setup", ["ids"] = Ints(ids), ["batch"] = batch, ["seq"] = seq }, Who);

    /// <summary>One training step (zero grads, forward, next-token loss, backward, clip, AdamW); returns its seconds.</summary>
    public double TrainStep() => _p.Call(new JsonObject { ["op"] = "train_step" }, Who)["seconds"]!.GetValue<double>();

    static JsonArray Ints(IReadOnlyList<int> v) => new([.. v.Select(i => (JsonNode?)i)]);

    public void Dispose() => _p.Dispose();
}
