using System.Diagnostics;
using Xunit.Abstractions;

namespace LongCat.Tests;

/// <summary>
/// The PyTorch peer (bench/peer/longcat_peer.py, the same-run reference of `longcat bench --peer torch`) against the
/// golden fixtures: bench/peer/test_parity.py checks logits, hidden states, routing, loss, greedy decoding through
/// its latent KV cache and every gradient, and that a quantized checkpoint is refused by name. Needs Debian's
/// /usr/bin/python3 with python3-torch and python3-numpy (.ci/run installs them); without them the test is reported
/// as skipped, with the reason, never as passed.
/// </summary>
public class TorchPeerTests(ITestOutputHelper output)
{
    [TorchPeerFact]
    public void PeerMatchesGoldenFixtures()
    {
        var script = Path.Combine(TorchPeer.BenchDir!, "test_parity.py");
        var (exit, stdout, stderr) = TorchPeer.Run(script, Path.Combine(Fixtures.Root, "reference"));
        output.WriteLine(stdout);
        output.WriteLine(stderr);
        Assert.True(exit == 0, $"test_parity.py exited with {exit}:\n{string.Join('\n', stdout.Split('\n').Where(l => l.StartsWith("FAIL", StringComparison.Ordinal)))}\n{stderr}");
        Assert.Contains("PASS: 0 failed checks", stdout);
        foreach (var f in new[] { "tiny", "tiny-nozero", "tiny-bf16" })
        {
            Assert.Contains($"ok   {f}: gradients", stdout);
            Assert.Contains($"ok   {f}: greedy (latent KV cache)", stdout);
        }
        Assert.Contains("ok   small-fp8: refused", stdout);
    }

    [TorchPeerFact]
    public void BenchGenerateRunsThePeerOnTheSameCheckpoint()
    {
        // tiny's greedy margins are wide (fixture README), so the peer's tokens must equal ours exactly.
        var (rc, stdout, err) = CliProcess.Run("bench", "generate", "--model", Fixtures.Reference("tiny"), "--formats", "f32,bf16,int8", "--json",
            "--prompt-tokens", "8", "--decode-tokens", "6", "--repeats", "1", "--peer", "torch", "--threads", "1");
        Assert.True(rc == 0, err);
        var rows = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => System.Text.Json.Nodes.JsonNode.Parse(l)!).ToList();
        Assert.Equal(3, rows.Count);
        Assert.True((bool)rows[0]["peer"]!["ran"]!);
        Assert.True((bool)rows[0]["peer"]!["same_tokens"]!, "the peer's greedy tokens differ from ours on tiny (f32)");
        Assert.True((double)rows[0]["peer"]!["decode_ratio"]! > 0);
        Assert.True((bool)rows[1]["peer"]!["ran"]!);
        Assert.False((bool)rows[2]["peer"]!["ran"]!);
        Assert.Contains("F32 and BF16 weights only", (string?)rows[2]["peer"]!["note"]);
    }

    [TorchPeerFact]
    public void BenchTrainAndForwardRunThePeer()
    {
        var (rc, stdout, err) = CliProcess.Run("bench", "train", "--config", Path.Combine(Fixtures.Reference("tiny"), "config.json"),
            "--seq", "8", "--batch", "2", "--steps", "2", "--peer", "torch", "--threads", "1");
        Assert.True(rc == 0, err);
        Assert.Contains("MALLOC_MMAP_THRESHOLD_=4294967296", stdout);
        Assert.Contains("vs torch", stdout);
        Assert.DoesNotContain("did not run", stdout);
        (rc, stdout, err) = CliProcess.Run("bench", "forward", "--model", Fixtures.Reference("tiny"), "--tokens", "9", "--repeats", "2", "--peer", "torch", "--threads", "1");
        Assert.True(rc == 0, err);
        Assert.Contains("LongCat.NET / PyTorch = ", stdout);
        (rc, stdout, err) = CliProcess.Run("bench", "forward", "--model", Fixtures.Reference("small-fp8"), "--tokens", "9", "--repeats", "1", "--peer", "torch", "--threads", "1");
        Assert.True(rc == 0, err);
        Assert.Contains("PyTorch peer: the PyTorch reference did not run:", stdout);
        Assert.DoesNotContain("LongCat.NET / PyTorch", stdout);
    }

    [Fact]
    public void UnknownPeerIsRefusedByName()
    {
        var (rc, _, err) = CliProcess.Run("bench", "forward", "--model", Fixtures.Reference("tiny"), "--peer", "jax");
        Assert.Equal(1, rc);
        Assert.StartsWith("longcat: error: --peer: 'jax'", err);
    }
}

/// <summary>A fact that runs only where /usr/bin/python3 imports torch and numpy; otherwise skipped with the reason.</summary>
public sealed class TorchPeerFactAttribute : FactAttribute
{
    public TorchPeerFactAttribute()
    {
        if (TorchPeer.Unavailable is { } why) Skip = why;
    }
}

static class TorchPeer
{
    public const string Python = "/usr/bin/python3";

    /// <summary>bench/peer in the repository above the test binaries, or null.</summary>
    public static readonly string? BenchDir = Find();

    /// <summary>Why the peer cannot run here, or null when it can.</summary>
    public static readonly string? Unavailable = Probe();

    static string? Find()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
        {
            var p = Path.Combine(d.FullName, "bench", "peer");
            if (File.Exists(Path.Combine(p, "longcat_peer.py"))) return p;
        }
        return null;
    }

    static string? Probe()
    {
        if (BenchDir is null) return "NOT RUN: bench/peer/longcat_peer.py not found above the test binaries";
        if (!File.Exists(Python)) return $"NOT RUN: {Python} not found (apt-get install -y python3-torch python3-numpy)";
        var (exit, _, err) = Run("-c", "import torch, numpy");
        return exit == 0 ? null : $"NOT RUN: {Python} cannot import torch/numpy ({err.Trim().Split('\n').LastOrDefault()}); apt-get install -y python3-torch python3-numpy";
    }

    public static (int Exit, string Out, string Err) Run(params string[] args)
    {
        var psi = new ProcessStartInfo(Python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["OMP_WAIT_POLICY"] = "PASSIVE";
        psi.Environment["PEER_THREADS"] = "1";
        using var p = Process.Start(psi)!;
        var so = p.StandardOutput.ReadToEndAsync();
        var se = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000)) { p.Kill(true); throw new TimeoutException($"{Python} {string.Join(' ', args)} did not finish in 2 minutes"); }
        return (p.ExitCode, so.Result, se.Result);
    }
}
