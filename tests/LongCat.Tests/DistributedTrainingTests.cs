using System.Diagnostics;
using System.Text.Json.Nodes;

namespace LongCat.Tests;

/// <summary>
/// Data-parallel training over Open MPI (issue 14): <c>mpirun -n N longcat train</c> (ZeRO-1: Adam moments and
/// update sharded) gives the same bits as one process (final model, every checkpoint file, every metrics line but the
/// timings) for N = 1, 2, 3, 4, with micro-batch counts that do not divide evenly. Needs Open MPI's mpirun (Debian: openmpi-bin libopenmpi-dev); as root the
/// allow-run-as-root variables are set, and --oversubscribe lets 3 or 4 ranks share 2 cores.
/// </summary>
public class DistributedTrainingTests
{
    // 5 micro-batches of 1 sequence: 2 ranks get 3 + 2, 3 ranks get 2 + 2 + 1, 4 ranks 2 + 1 + 1 + 1.
    static string Config(string data, string outDir, long steps) =>
        TrainCliTests.Config(data, outDir, steps, batch: 5, micro: 1, evalBatches: 3, keep: 3, plot: "none");

    /// <summary>The uninterrupted one-process run (2 threads) of the config writing to a new out folder: the reference of the
    /// resume tests. Returns the out folder.</summary>
    static string StraightRun(Func<string, string> configForOut)
    {
        var outDir = Fixtures.NewTempDir();
        var (rc, _, err) = CliProcess.Run("train", "--config", configForOut(outDir), "--threads", "2", "--quiet");
        Assert.True(rc == 0, err);
        return outDir;
    }

    /// <summary>
    /// mpirun on PATH; when missing and this runs as root with apt-get (a fresh machine), Debian's Open MPI is installed
    /// once (<see cref="DebianPackages"/>); otherwise a failure saying how to install it (never a silent skip).
    /// </summary>
    static string Mpirun()
    {
        if (DebianPackages.OnPath("mpirun") is { } found) return found;
        const string how = "the data-parallel tests need Open MPI (Debian/Ubuntu, as root: apt-get install -y openmpi-bin libopenmpi-dev)";
        if (!DebianPackages.CanInstall()) Assert.Fail($"mpirun not found on PATH and it cannot be installed here (needs root and apt-get): {how}");
        var (ok, log) = DebianPackages.Install("openmpi-bin libopenmpi-dev");
        if (ok && DebianPackages.OnPath("mpirun") is { } installed) return installed;
        Assert.Fail($"mpirun not found and installing Open MPI failed: {how}\n{string.Join('\n', log.Split('\n').TakeLast(15))}");
        return "";
    }

    /// <summary>Runs <c>mpirun -n <paramref name="ranks"/> longcat ARGS</c> on this machine.</summary>
    internal static (int Exit, string Out, string Err) MpiRun(int ranks, params string[] args) => MpiRunWith(ranks, null, args);

    /// <summary>The same with extra environment variables for every rank.</summary>
    internal static (int Exit, string Out, string Err) MpiRunWith(int ranks, Dictionary<string, string>? env, params string[] args) =>
        MpiRunWatched(ranks, env, null, args);

    /// <summary>The same, calling <paramref name="whileRunning"/> with mpirun's process once it started.</summary>
    internal static (int Exit, string Out, string Err) MpiRunWatched(int ranks, Dictionary<string, string>? env, Action<Process>? whileRunning, params string[] args)
    {
        var psi = new ProcessStartInfo(Mpirun())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // CI runs as root; Open MPI refuses that unless told twice.
        psi.Environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1";
        psi.Environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1";
        foreach (var (k, v) in env ?? []) psi.Environment[k] = v;
        foreach (var a in new[] { "--oversubscribe", "--bind-to", "none", "-n", ranks.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "dotnet", "exec", Path.Combine(AppContext.BaseDirectory, "longcat.dll") }) psi.ArgumentList.Add(a);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var so = p.StandardOutput.ReadToEndAsync();
        var se = p.StandardError.ReadToEndAsync();
        whileRunning?.Invoke(p);
        if (!p.WaitForExit(300_000)) { p.Kill(true); throw new TimeoutException($"mpirun -n {ranks} did not finish in 5 minutes"); }
        return (p.ExitCode, so.Result, se.Result);
    }

    /// <summary>metrics.jsonl without the wall-clock fields.</summary>
    internal static string[] Metrics(string outDir) => File.ReadAllLines(Path.Combine(outDir, "metrics.jsonl")).Select(l =>
    {
        var o = JsonNode.Parse(l)!.AsObject();
        o.Remove("tokens_per_s");
        o.Remove("step_s");
        return o.ToJsonString();
    }).ToArray();

    /// <summary>
    /// Every file of the final model and of each checkpoint, by relative path; a checkpoint's optimizer (one file, or
    /// per-rank shards and their list) becomes one entry CHECKPOINT/moments: the flat Adam moments, whatever the layout.
    /// </summary>
    internal static SortedDictionary<string, byte[]> Outputs(string outDir)
    {
        var r = new SortedDictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var sub in new[] { "model", "checkpoints" })
            foreach (var f in Directory.EnumerateFiles(Path.Combine(outDir, sub), "*", SearchOption.AllDirectories))
            {
                var name = Path.GetFileName(f);
                if (name.StartsWith("optimizer", StringComparison.Ordinal)) continue;
                r[Path.GetRelativePath(outDir, f)] = File.ReadAllBytes(f);
            }
        foreach (var dir in Directory.EnumerateDirectories(Path.Combine(outDir, "checkpoints"), "step-*"))
        {
            using var p = LongCat.Training.ParameterStore.Load(dir);
            var (m, v) = LongCat.Training.TrainingCheckpoint.ReadMoments(dir, p.Table);
            r[Path.Combine(Path.GetRelativePath(outDir, dir), "moments")] = [.. System.Runtime.InteropServices.MemoryMarshal.AsBytes(m.AsSpan()), .. System.Runtime.InteropServices.MemoryMarshal.AsBytes(v.AsSpan())];
        }
        return r;
    }

    /// <summary>The optimizer files of checkpoint folder <paramref name="dir"/>.</summary>
    static string[] OptimizerFiles(string dir) =>
        Directory.GetFiles(dir, "optimizer*").Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray()!;

    internal static void AssertSameRun(string expectedOut, string actualOut, string what)
    {
        Assert.Equal(Metrics(expectedOut), Metrics(actualOut));
        var e = Outputs(expectedOut);
        var a = Outputs(actualOut);
        Assert.Equal(e.Keys, a.Keys);
        foreach (var (name, bytes) in e)
            Assert.True(bytes.AsSpan().SequenceEqual(a[name]), $"{what}: {name} differs from the single-process run");
    }

    [Fact]
    public void DataParallelRunsAreBitwiseIdenticalToOneProcess()
    {
        Mpirun();
        var data = TrainingRuns.SyntheticData(40);
        var single = Fixtures.NewTempDir();
        var (rc, _, err) = CliProcess.Run("train", "--config", Config(data, single, 4), "--threads", "2", "--quiet");
        Assert.True(rc == 0, err);
        // N = 4 ranks of 2 threads each (8 threads on this machine's 2 cores): the bits depend on neither.
        foreach (var (n, threads) in new[] { (1, "1"), (2, "1"), (3, "1"), (4, "2") })
        {
            var outDir = Fixtures.NewTempDir();
            var (mrc, mout, merr) = MpiRun(n, "train", "--config", Config(data, outDir, 4), "--threads", threads);
            Assert.True(mrc == 0, $"mpirun -n {n}: exit {mrc}\n{mout}\n{merr}");
            if (n > 1)
            {
                Assert.Contains($"data parallel over {n} processes", merr);
                Assert.Contains("ZeRO-1: Adam moments", merr);   // each rank holds its range of the moments only
                // Overlap: layer 1's and layer 0's gradients, then the embeddings and the rest (norm, head, MTP) after the backward.
                Assert.Contains("gradient exchange in 4 bucket(s) per round, each layer's started as soon as its backward is done", merr);
            }
            Assert.Single(mout.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.Contains("trained 4 steps", StringComparison.Ordinal));   // rank 0 alone reports
            // One process writes optimizer.safetensors; N ranks each their shard, listed by rank 0 once all are on disk.
            string[] expected = n == 1 ? ["optimizer.safetensors"]
                : [.. Enumerable.Range(0, n).Select(k => $"optimizer-{k:D5}-of-{n:D5}.safetensors"), "optimizer-shards.json"];
            Assert.Equal(expected, OptimizerFiles(Path.Combine(outDir, "checkpoints", "step-00000004")));
            AssertSameRun(single, outDir, $"mpirun -n {n}");
            if (n == 3)
            {
                // grow reads the shards too: the grown checkpoint is the one grown from the single-process run.
                string fromSingle = Fixtures.NewTempDir(), fromShards = Fixtures.NewTempDir();
                foreach (var (from, to) in new[] { (single, fromSingle), (outDir, fromShards) })
                {
                    var (grc, _, gerr) = CliProcess.Run("grow", "--from", from, "--out", to);
                    Assert.True(grc == 0, gerr);
                }
                foreach (var f in new[] { "model.safetensors", "optimizer.safetensors", "trainer_state.json" })
                    Assert.Equal(File.ReadAllBytes(Path.Combine(fromSingle, "checkpoints", "step-00000004", f)),
                        File.ReadAllBytes(Path.Combine(fromShards, "checkpoints", "step-00000004", f)));
            }
        }
    }

    [Fact]
    public void KilledRankEndsTheJobAndElasticResumeOverTwoThreeOneProcessesMatchesAStraightRun()
    {
        Mpirun();
        var data = TrainingRuns.SyntheticData(40);
        var straight = StraightRun(o => Config(data, o, 6));

        // 2 processes; rank 1 dies after step 3: the job must end (not hang) with an error, keeping checkpoint 2.
        var outDir = Fixtures.NewTempDir();
        var config = Config(data, outDir, 6);
        var (krc, kout, kerr) = MpiRunWith(2, new() { ["LONGCAT_TEST_KILL_RANK_AT_STEP"] = "1:3" }, "train", "--config", config, "--threads", "1");
        Assert.True(krc != 0, $"a killed rank must fail the job\n{kout}\n{kerr}");
        Assert.Contains("process rank 1", kerr);
        Assert.Contains("exited on signal 9", kerr);
        Assert.Equal("step-00000002", File.ReadAllText(Path.Combine(outDir, "checkpoints", "latest")).Trim());
        // 3 processes resume from step 2; rank 2 dies after step 5, leaving checkpoint 4.
        (krc, kout, kerr) = MpiRunWith(3, new() { ["LONGCAT_TEST_KILL_RANK_AT_STEP"] = "2:5" }, "train", "--config", config, "--resume", "--threads", "1");
        Assert.True(krc != 0, $"a killed rank must fail the job\n{kout}\n{kerr}");
        Assert.Contains("exited on signal 9", kerr);
        Assert.Equal("step-00000004", File.ReadAllText(Path.Combine(outDir, "checkpoints", "latest")).Trim());
        // One process finishes.
        var (frc, fout, ferr) = MpiRun(1, "train", "--config", config, "--resume", "--threads", "2");
        Assert.True(frc == 0, $"{fout}\n{ferr}");
        AssertSameRun(straight, outDir, "resumed 2 -> 3 -> 1 processes");
    }

    [Fact]
    public void ARankDyingDuringACheckpointWriteKeepsThePreviousCheckpointAndTheResumeMatches()
    {
        Mpirun();
        var data = TrainingRuns.SyntheticData(40);
        var straight = StraightRun(o => Config(data, o, 6));

        // 3 ranks; at checkpoint 4 rank 1 dies once its shard is on disk, before rank 0 commits the checkpoint.
        var outDir = Fixtures.NewTempDir();
        var config = Config(data, outDir, 6);
        var (krc, kout, kerr) = MpiRunWith(3, new() { ["LONGCAT_TEST_KILL_RANK_AFTER_SHARD"] = "1:4" }, "train", "--config", config, "--threads", "1");
        Assert.True(krc != 0, $"a killed rank must fail the job\n{kout}\n{kerr}");
        Assert.Contains("exited on signal 9", kerr);
        var checkpoints = Path.Combine(outDir, "checkpoints");
        Assert.Equal("step-00000002", File.ReadAllText(Path.Combine(checkpoints, "latest")).Trim());
        Assert.False(Directory.Exists(Path.Combine(checkpoints, "step-00000004")), "an uncommitted checkpoint must not look complete");
        // The interrupted write is still there, with rank 1's shard but no commit (list of shards, trainer state).
        var partial = Assert.Single(Directory.GetDirectories(checkpoints, ".tmp-step-00000004-*"));
        Assert.True(File.Exists(Path.Combine(partial, "optimizer-00001-of-00003.safetensors")));
        Assert.False(File.Exists(Path.Combine(partial, "optimizer-shards.json")));
        Assert.False(File.Exists(Path.Combine(partial, "trainer_state.json")));
        // Resume on 2 ranks from checkpoint 2 (3 shards read into 2 ranges): the next save removes the leftover.
        var (frc, fout, ferr) = MpiRun(2, "train", "--config", config, "--resume", "--threads", "1");
        Assert.True(frc == 0, $"{fout}\n{ferr}");
        Assert.Contains("resumed at step 2", ferr);
        Assert.Empty(Directory.GetDirectories(checkpoints, ".tmp-*"));
        AssertSameRun(straight, outDir, "3 ranks crashed in checkpoint 4, resumed on 2");
    }

    [Fact]
    public void ARankThatStopsAnsweringEndsTheJobWithAnErrorNamingItAndTheCollective()
    {
        Mpirun();
        var data = TrainingRuns.SyntheticData(40);
        var outDir = Fixtures.NewTempDir();
        // Rank 1 of 3 sleeps forever after step 1 (alive, so mpirun notices nothing); the others give up after 5 s (a
        // limit well above the ranks' start-up skew on a loaded machine, which the earlier collectives also wait for).
        var (rc, output, err) = MpiRunWith(3, new() { ["LONGCAT_TEST_HANG_RANK_AT_STEP"] = "1:1" },
            "train", "--config", Config(data, outDir, 4), "--threads", "1", "--mpi-timeout", "5");
        Assert.True(rc != 0, $"the job must fail\n{output}\n{err}");
        // Rank 0 or 2 (whichever times out first; the other hears its alarm) names the call (the agreement on stopping
        // after step 1), rank 1 and the other waiting rank.
        Assert.Matches(@"longcat: error: rank (0|2): MPI_Allgather \(this rank's MPI call #\d+\) was abandoned: it did not complete within 5 s; " +
            @"rank\(s\) 1 did not answer within 5 s \(stuck or dead\), rank\(s\) (0|2) were waiting too", err);
        Assert.Contains("the timeout is LONGCAT_MPI_TIMEOUT_S", err);
        Assert.Contains("MPI_ABORT was invoked", err);
        // The same limit from the environment; a bad value is refused by name.
        (rc, output, err) = MpiRunWith(2, new() { ["LONGCAT_TEST_HANG_RANK_AT_STEP"] = "0:1", ["LONGCAT_MPI_TIMEOUT_S"] = "4.5" },
            "train", "--config", Config(data, Fixtures.NewTempDir(), 4), "--threads", "1");
        Assert.True(rc != 0, $"the job must fail\n{output}\n{err}");
        Assert.Contains("longcat: error: rank 1: MPI_Allgather (this rank's MPI call #", err);
        Assert.Contains("it did not complete within 4.5 s; rank(s) 0 did not answer within 4.5 s (stuck or dead)", err);
        (rc, _, err) = MpiRunWith(1, new() { ["LONGCAT_MPI_TIMEOUT_S"] = "soon" }, "train", "--config", Config(data, Fixtures.NewTempDir(), 1));
        Assert.True(rc != 0);
        Assert.Contains("LONGCAT_MPI_TIMEOUT_S: 'soon' is not a timeout in seconds", err);
    }

    [Fact]
    public void SigUsr1ToMpirunStopsEveryRankAfterTheSameStepWithACheckpointAndTheResumeMatches()
    {
        Mpirun();
        var data = TrainingRuns.SyntheticData(40);
        string Config8(string outDir) => TrainCliTests.Config(data, outDir, 8, batch: 5, micro: 1, evalBatches: 3, keep: 1, plot: "none");
        var straight = StraightRun(Config8);

        // 2 ranks, each step slowed down; once step 2 is logged, SIGUSR1 to mpirun, which forwards it to every rank.
        var outDir = Fixtures.NewTempDir();
        var config = Config8(outDir);
        var metrics = Path.Combine(outDir, "metrics.jsonl");
        var (src, sout, serr) = MpiRunWatched(2, new() { ["LONGCAT_TEST_STEP_DELAY_MS"] = "400" }, mpirun =>
        {
            var sw = Stopwatch.StartNew();
            while (!(File.Exists(metrics) && File.ReadAllText(metrics).Contains("\"step\":2,\"tokens\"", StringComparison.Ordinal)))
            {
                if (mpirun.HasExited || sw.Elapsed.TotalMinutes > 3) return;   // the asserts below say what happened
                Thread.Sleep(50);
            }
            using var kill = Process.Start("kill", ["-USR1", mpirun.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!;
            kill.WaitForExit();
        }, "train", "--config", config, "--threads", "1");
        Assert.True(src == 0, $"a stop request ends the job cleanly\n{sout}\n{serr}");
        var stopped = System.Text.RegularExpressions.Regex.Match(serr, @"longcat train: stopped at step (\d+); resume with --resume");
        Assert.True(stopped.Success, serr);
        int step = int.Parse(stopped.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(step, 2, 7);
        Assert.DoesNotContain("trained 8 steps", sout);
        // The checkpoint of the step every rank stopped after, written by both ranks (2 shards).
        var dir = Path.Combine(outDir, "checkpoints", $"step-{step:D8}");
        Assert.Equal($"step-{step:D8}", File.ReadAllText(Path.Combine(outDir, "checkpoints", "latest")).Trim());
        Assert.Equal(["optimizer-00000-of-00002.safetensors", "optimizer-00001-of-00002.safetensors", "optimizer-shards.json"], OptimizerFiles(dir));
        // Resumed on 3 ranks, the run ends on the straight run's bits.
        var (frc, fout, ferr) = MpiRun(3, "train", "--config", config, "--resume", "--threads", "1");
        Assert.True(frc == 0, $"{fout}\n{ferr}");
        AssertSameRun(straight, outDir, $"stopped by SIGUSR1 after step {step} on 2 ranks, resumed on 3");
    }

    [Fact]
    public void EveryCollectiveGivesItsKnownAnswerAndMpiErrorsCarryMpisText()
    {
        Mpirun();
        var (rc, output, err) = MpiRun(3, "mpi-check", "--mib", "1");
        Assert.True(rc == 0, $"{output}\n{err}");
        foreach (var what in new[] { "barrier", "broadcast from rank 2", "allgather", "allgatherv", "gatherv to rank 0", "alltoallv", "send/receive ring" })
            Assert.Contains($"  {what}: ok", output);
        Assert.Contains("send to rank 8 (no such rank) fails with: MPI_Send failed: MPI_ERR_RANK: invalid rank", output);
        Assert.Contains("all-to-all of 1 MiB per rank", output);
        // Without mpirun it says how to run it.
        var (src, _, serr) = CliProcess.Run("mpi-check");
        Assert.Equal(1, src);
        Assert.Contains("mpi-check runs under Open MPI: mpirun -n 2 longcat mpi-check", serr);
    }

    [Fact]
    public void MissingMpiLibraryIsAClearError()
    {
        // As if started by mpirun on a machine without Open MPI's library.
        var data = TrainingRuns.SyntheticData(40);
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "exec", Path.Combine(AppContext.BaseDirectory, "longcat.dll"), "train", "--config", Config(data, Fixtures.NewTempDir(), 1) })
            psi.ArgumentList.Add(a);
        psi.Environment["OMPI_COMM_WORLD_SIZE"] = "2";
        psi.Environment["LONGCAT_MPI_LIBRARY"] = "/nonexistent/libmpi.so.40";
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.Equal(1, p.ExitCode);
        Assert.Contains("longcat: error: this process was started by mpirun but Open MPI's /nonexistent/libmpi.so.40 cannot be loaded", err);
        Assert.Contains("apt-get install openmpi-bin libopenmpi-dev", err);
    }
}
