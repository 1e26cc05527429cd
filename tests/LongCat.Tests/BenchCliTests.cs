using System.Text.Json.Nodes;

namespace LongCat.Tests;

/// <summary>
/// The benches print only what they measured in the run: MFU against the OpenBLAS peak measured now (or a note that
/// it could not be), no constant reference lines, bytes allocated per step, 16 streams vs 1, the MTP speedup with an
/// output check. Tiny models keep these fast; the numbers themselves are not asserted (no wall-clock assertions).
/// </summary>
public class BenchCliTests
{
    [Fact]
    public void TrainPrintsMfuAgainstTheMeasuredPeakAndNoFixedReference()
    {
        var (rc, stdout, err) = CliProcess.Run("bench", "train", "--config", Path.Combine(Fixtures.Reference("tiny"), "config.json"),
            "--seq", "8", "--batch", "2", "--steps", "2", "--json", "--threads", "1");
        Assert.True(rc == 0, err);
        var o = JsonNode.Parse(stdout.Trim())!;
        Assert.True((double)o["tokens_per_s"]! > 0);
        Assert.True((long)o["allocated_bytes_per_step"]! >= 0);
        Assert.True((double)o["profile"]!["GEMM backward dW"]!["gflops"]! > 0);
        Assert.True((double)o["profile"]!["GEMM forward"]!["gflops"]! > 0);
        Assert.True((double)o["profile"]!["optimizer (AdamW, clipping, budget, zeroing)"]!["seconds"]! >= 0);
        Assert.Null(o["peer"]);
        if (o["peak_gflops"] is null)
            Assert.Contains("no OpenBLAS reference", (string?)o["peak_source"]);   // and then no MFU
        else
        {
            Assert.Contains("sgemm 2048x2048x2048", (string?)o["peak_source"]);
            Assert.True((double)o["mfu"]! > 0);
        }
        (rc, stdout, err) = CliProcess.Run("bench", "train", "--config", Path.Combine(Fixtures.Reference("tiny"), "config.json"),
            "--seq", "8", "--batch", "2", "--steps", "1", "--threads", "1");
        Assert.True(rc == 0, err);
        Assert.Contains("F32 peak", stdout);
        Assert.DoesNotContain("PyTorch", stdout);      // no peer asked: no PyTorch figure of any kind
        // The profiled step: forward and backward GEMMs (with their rates), the attention core, the optimizer, the rest.
        Assert.Matches(@"profiled step, config: [0-9.]+ s", stdout);
        foreach (var phase in new[] { "GEMM forward", "GEMM backward dX", "GEMM backward dW" })
            Assert.Matches("(?m)^  " + phase + @" +[0-9.]+ +[0-9]+ % +[0-9]+ +[0-9.]+", stdout);
        foreach (var phase in new[] { "attention core (QK, softmax, PV), forward and backward", "optimizer (AdamW, clipping, budget, zeroing)", "the rest of forward and backward" })
            Assert.Contains("  " + phase, stdout);
    }

    [Fact]
    public void ServePrintsSixteenStreamsOverOne()
    {
        var (rc, stdout, err) = CliProcess.Run("bench", "serve", "--model", Fixtures.Reference("tiny"), "--streams", "16", "--tokens", "4",
            "--prompt-tokens", "4", "--repeats", "1", "--threads", "1");
        Assert.True(rc == 0, err);
        Assert.Contains("| 1 |", stdout);   // one stream is always measured
        Assert.Contains("| 16 |", stdout);
        Assert.Matches(@"16 streams vs 1: [0-9.]+x the aggregate decode tokens/s of one stream", stdout);
        // Where a step's time goes, for one stream and for 16: every GEMM kind the tiny model has, measured.
        foreach (var n in new[] { "1 stream(s)", "16 stream(s)" })
            Assert.Matches(@"one decode step of " + System.Text.RegularExpressions.Regex.Escape(n) + @" outside the scheduler: median [0-9.]+ ms of 5 => [0-9.]+ tokens/s", stdout);
        foreach (var phase in new[] { "GEMM dense FFN", "GEMM MoE experts", "GEMM attention projections", "GEMM lm_head", "attention core", "other non-GEMM" })
            Assert.Equal(2, System.Text.RegularExpressions.Regex.Count(stdout, "^  " + phase, System.Text.RegularExpressions.RegexOptions.Multiline));
    }

    [Fact]
    public void GenerateSpeculativeIsComparedWithPlainGreedyInTheSameRun()
    {
        var dir = Fixtures.NewTempDir();
        var model = Path.Combine(dir, "m");
        var (rc, _, err) = CliProcess.Run("init", "--config", Path.Combine(Fixtures.Reference("tiny"), "config.json"), "--out", model, "--mtp", "--seed", "3");
        Assert.True(rc == 0, err);
        (rc, var stdout, err) = CliProcess.Run("bench", "generate", "--model", model, "--formats", "f32", "--speculative", "mtp", "--json",
            "--prompt-tokens", "8", "--decode-tokens", "8", "--repeats", "1", "--threads", "1");
        Assert.True(rc == 0, err);
        var o = JsonNode.Parse(stdout.Trim())!;
        Assert.True((bool)o["mtp_output_unchanged"]!, "MTP speculative decoding changed the greedy output");
        Assert.True((double)o["mtp_speedup"]! > 0);
        Assert.True((double)o["allocated_bytes_per_token"]! >= 0);
        Assert.True((double)o["mtp_speedup_median_of_pairs"]! > 0);
        Assert.Equal(256, (int)o["mtp_draft_vocabulary"]!);   // the tiny vocabulary is below the reduced draft's minimum
        Assert.True((double)o["mtp_verify_cost_in_steps"]! > 0);
        Assert.True((double)o["mtp_draft_cost_in_steps"]! > 0);
        // A reduced draft vocabulary: output still unchanged.
        (rc, stdout, err) = CliProcess.Run("bench", "generate", "--model", model, "--formats", "f32", "--speculative", "mtp", "--draft-vocab", "32", "--json",
            "--prompt-tokens", "8", "--decode-tokens", "8", "--repeats", "1", "--threads", "1");
        Assert.True(rc == 0, err);
        o = JsonNode.Parse(stdout.Trim())!;
        Assert.True((bool)o["mtp_output_unchanged"]!, "MTP speculative decoding with a reduced draft vocabulary changed the greedy output");
        Assert.Equal(32, (int)o["mtp_draft_vocabulary"]!);
        // A model without an MTP head: refused by name, not silently measured without it.
        (rc, _, err) = CliProcess.Run("bench", "generate", "--model", Fixtures.Reference("tiny"), "--formats", "f32", "--speculative", "mtp", "--repeats", "1");
        Assert.Equal(1, rc);
        Assert.Contains("no model.mtp.* weights", err);
    }
}
