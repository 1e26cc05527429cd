using System.CommandLine;
using System.Globalization;
using LongCat.Distributed;
using LongCat.Training;

namespace LongCat.Cli.Commands;

/// <summary><c>longcat train</c>: the training loop of <see cref="Trainer"/> with a progress line, validation, checkpoints and a plot.</summary>
public static class TrainCommand
{
    public static Command Create()
    {
        var config = CliSupport.RequiredPath("--config", "train.json: model, data, optimizer, schedule, losses, budget controller, eval, checkpoints (see docs/training.md).");
        var set = new Option<string[]>("--set")
        {
            Description = "Override a config key, e.g. --set optimizer.lr=1e-3 --set data.batch_size=16 (value parsed as JSON, else a string).",
            AllowMultipleArgumentsPerToken = false,
        };
        var resume = new Option<string?>("--resume")
        {
            Description = "Continue bit-exactly from a checkpoint: a checkpoint folder, or with no value the latest one under OUT/checkpoints.",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var quiet = new Option<bool>("--quiet") { Description = "No progress line (metrics.jsonl is still written)." };
        var mpiTimeout = new Option<string?>("--mpi-timeout")
        {
            Description = $"Under mpirun: seconds a collective may wait for the slowest rank before the job ends with an error naming the ranks that stopped answering (default {MpiCommunicator.TimeoutVariable}, else {MpiCommunicator.DefaultTimeoutSeconds} s).",
        };
        var cmd = new Command("train",
            "Train a LongCat-Flash model on a prepared data folder: AdamW, LR schedule, expert-bias budget controller, MTP / " +
            "load-balance / hidden z-losses, stability monitors (metrics.jsonl every step), validation, atomic checkpoints, " +
            "a loss/experts plot (plot.svg). Bitwise reproducible for any --threads, and across --resume.")
        {
            config, set, resume, quiet, mpiTimeout,
        };
        cmd.SetAction(p => CliSupport.Run(p, () =>
        {
            var o = TrainConfigFile.Load(p.GetValue(config)!, p.GetValue(set) ?? []);
            string? from = null;
            if (p.GetResult(resume) is not null)
            {
                from = p.GetValue(resume);
                if (string.IsNullOrEmpty(from))
                {
                    var root = Path.Combine(o.OutDir, "checkpoints");
                    from = TrainingCheckpoint.FindLatest(root) ?? throw new CliException($"--resume: no checkpoint under {root} (give a checkpoint folder)");
                }
                else if (!Directory.Exists(from)) throw new CliException($"--resume: checkpoint folder {from} not found");
            }
            if (Environment.GetEnvironmentVariable("LONGCAT_TEST_CHECKPOINT_DELAY_MS") is { } delay &&
                int.TryParse(delay, NumberStyles.Integer, CultureInfo.InvariantCulture, out var ms) && ms > 0)
                TrainingCheckpoint.BeforeTensorWrite = () => Thread.Sleep(ms);
            TimeSpan? timeout = p.GetValue(mpiTimeout) is { } t ? MpiCommunicator.ParseTimeout(t, "--mpi-timeout") : null;
            // Started by mpirun: the ranks share each step's micro-batches (same bits as one process); rank 0 reports.
            var comm = Communicator.FromEnvironment();
            if (comm is MpiCommunicator mpi && timeout is { } limit) mpi.Timeout = limit;
            int rc;
            try { rc = Run(o, from, p.GetValue(quiet), comm); }
            catch (MpiTimeoutException e) when (comm is MpiCommunicator world)
            {
                // A rank stopped answering: the others would wait for it forever, so this rank ends the whole job.
                Console.Error.WriteLine($"longcat: error: {e.Message}");
                Console.Error.Flush();
                world.Abort(1);
                throw;
            }
            // MPI_Finalize after a clean run only: a failing rank exits without it, and mpirun then ends the others.
            comm.Dispose();
            return rc;
        }));
        return cmd;
    }

    static int Run(TrainingOptions o, string? resumeFrom, bool quiet, Communicator comm)
    {
        using var trainer = Trainer.Create(o, resumeFrom, comm);
        // Test hook (fault tolerance): "R:S" makes rank R kill itself (SIGKILL) once step S is done.
        if (Environment.GetEnvironmentVariable("LONGCAT_TEST_KILL_RANK_AT_STEP") is { } kill && kill.Split(':') is [var kr, var ks] &&
            int.TryParse(kr, CultureInfo.InvariantCulture, out var killRank) && long.TryParse(ks, CultureInfo.InvariantCulture, out var killStep) &&
            killRank == comm.Rank)
            trainer.StepCompleted += m => { if (m.Step == killStep) System.Diagnostics.Process.GetCurrentProcess().Kill(); };
        // Test hook (crash during a checkpoint): "R:S" makes rank R kill itself (SIGKILL) once its part of checkpoint S
        // is on disk, before the commit.
        if (Environment.GetEnvironmentVariable("LONGCAT_TEST_KILL_RANK_AFTER_SHARD") is { } shard && shard.Split(':') is [var sr, var ss] &&
            int.TryParse(sr, CultureInfo.InvariantCulture, out var shardRank) && long.TryParse(ss, CultureInfo.InvariantCulture, out var shardStep) &&
            shardRank == comm.Rank)
            TrainingCheckpoint.AfterShardWritten = step => { if (step == shardStep) System.Diagnostics.Process.GetCurrentProcess().Kill(); };
        // Test hook (collective timeout): "R:S" makes rank R stop answering (sleep forever) once step S is done.
        if (Environment.GetEnvironmentVariable("LONGCAT_TEST_HANG_RANK_AT_STEP") is { } hang && hang.Split(':') is [var hr, var hs] &&
            int.TryParse(hr, CultureInfo.InvariantCulture, out var hangRank) && long.TryParse(hs, CultureInfo.InvariantCulture, out var hangStep) &&
            hangRank == comm.Rank)
            trainer.StepCompleted += m => { if (m.Step == hangStep) Thread.Sleep(Timeout.Infinite); };
        // Test hook (stop requests): every step takes at least this many more milliseconds, on every rank.
        if (Environment.GetEnvironmentVariable("LONGCAT_TEST_STEP_DELAY_MS") is { } stepDelay &&
            int.TryParse(stepDelay, NumberStyles.Integer, CultureInfo.InvariantCulture, out var stepMs) && stepMs > 0)
            trainer.StepCompleted += _ => Thread.Sleep(stepMs);
        // Stop requests. One process: Ctrl+C. Under mpirun: SIGINT, SIGTERM (a batch scheduler's) and SIGUSR1 (mpirun
        // forwards it to every rank: kill -USR1 <mpirun's pid>) on any rank; the ranks agree after each step and write
        // the checkpoint together. (Ctrl+C on mpirun itself makes mpirun end the job: SIGTERM, then SIGKILL 1 s later.)
        using var cancel = new CancellationTokenSource();
        var signals = new List<System.Runtime.InteropServices.PosixSignalRegistration>();
        if (comm.Size > 1)
            foreach (var signal in new[] { System.Runtime.InteropServices.PosixSignal.SIGINT, System.Runtime.InteropServices.PosixSignal.SIGTERM, SigUsr1 })
                signals.Add(System.Runtime.InteropServices.PosixSignalRegistration.Create(signal, context =>
                {
                    context.Cancel = true;
                    cancel.Cancel();
                }));
        try
        {
            return trainer.IsWriter ? RunWriter(trainer, o, resumeFrom, quiet, comm, cancel) : RunQuietRank(trainer, cancel.Token);
        }
        finally
        {
            foreach (var s in signals) s.Dispose();
        }
    }

    /// <summary>SIGUSR1 (Linux numbering), which mpirun forwards to every rank.</summary>
    static System.Runtime.InteropServices.PosixSignal SigUsr1 => (System.Runtime.InteropServices.PosixSignal)(OperatingSystem.IsMacOS() ? 30 : 10);

    /// <summary>Rank 0 (or the one process): progress, plot, messages.</summary>
    static int RunWriter(Trainer trainer, TrainingOptions o, string? resumeFrom, bool quiet, Communicator comm, CancellationTokenSource cancel)
    {
        var c = trainer.Model.Config;
        var inv = CultureInfo.InvariantCulture;
        var plot = new TrainPlot();
        var plotPath = Path.Combine(o.OutDir, "plot.svg");
        if (resumeFrom is not null) plot.Load(trainer.MetricsPath);
        bool tty = !Console.IsErrorRedirected && !quiet;
        var progress = new Progress(o.Steps, trainer.Step);
        Console.Error.WriteLine(string.Create(inv,
            $"longcat train: {trainer.Model.Parameters.Table.TrainableCount:N0} parameters, {c.NumLayers} layers, {c.NRoutedExperts}+{c.ZeroExpertNum} experts (top {c.MoeTopK}), " +
            $"{o.BatchSize}x{o.SequenceLength} tokens/step, {o.Steps} steps{(comm.Size > 1 ? $", data parallel over {comm.Size} processes" : "")}{(resumeFrom is null ? "" : $", resumed at step {trainer.Step} from {resumeFrom}")}; metrics in {trainer.MetricsPath}"));
        if (comm.Size > 1)
            Console.Error.WriteLine(string.Create(inv,
                $"longcat train: ZeRO-1: Adam moments {trainer.Optimizer.MomentBytes / 1048576.0:F2} MiB on rank 0 ({2.0 * 4 * trainer.Model.Parameters.Length / 1048576.0:F2} MiB in one process), parameters and gradients {2.0 * 4 * trainer.Model.Parameters.Length / 1048576.0:F2} MiB per rank; " +
                $"gradient exchange in {trainer.GradientBuckets} bucket(s) per round{(trainer.GradientBuckets > 1 ? ", each layer's started as soon as its backward is done" : "")}"));
        if (!trainer.HasValidation) Console.Error.WriteLine($"longcat train: note: {o.DataDir} has no held-out sequence of {o.SequenceLength} tokens: no validation loss");

        void Line(string text)
        {
            if (quiet) return;
            if (tty) Console.Error.Write("\r\x1b[2K");
            Console.Error.WriteLine(text);
        }
        trainer.Message += m => Line("longcat train: " + m);
        trainer.Validated += (step, loss) =>
        {
            plot.AddValidation(step, loss);
            Line(string.Create(inv, $"step {step}: validation loss {loss:F4}"));
        };
        trainer.CheckpointSaved += dir =>
        {
            if (o.Plot == "svg") plot.Save(plotPath, "LongCat training: cross-entropy and real experts per token");
            Line($"step {trainer.Step}: checkpoint {dir}");
        };
        trainer.StepCompleted += m =>
        {
            plot.AddStep(m.Step, m.CrossEntropy, m.MeanRealExperts);
            var text = progress.Format(m, tty);
            if (quiet || (m.Step % o.LogEvery != 0 && m.Step != o.Steps)) return;
            if (tty) Console.Error.Write("\r\x1b[2K" + text);
            else Console.Error.WriteLine(text);
        };
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;
            cancel.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        try { trainer.Run(cancel.Token); }
        finally { Console.CancelKeyPress -= onCancel; }
        if (tty) Console.Error.WriteLine();
        if (comm.Size > 1)
            Console.Error.WriteLine(string.Create(inv,
                $"longcat train: rank 0 sent {comm.BytesSent:N0} bytes to the other {comm.Size - 1} process(es) in this run (gradient shards, records, gathers)"));
        if (o.Plot == "svg") plot.Save(plotPath, "LongCat training: cross-entropy and real experts per token");
        var val = trainer.LastValidationLoss is { } v ? string.Create(inv, $", validation loss {v:F4}") : "";
        Console.WriteLine(string.Create(inv,
            $"trained {trainer.Step} steps ({trainer.Tokens:N0} tokens, {trainer.Faults} faulty step(s) skipped){val}; model in {trainer.ModelDir}, " +
            $"checkpoints in {trainer.CheckpointsDir}, metrics {trainer.MetricsPath}{(o.Plot == "svg" ? ", plot " + plotPath : "")}"));
        return 0;
    }

    /// <summary>An MPI rank other than 0: trains in step with the others, prints and writes nothing.</summary>
    static int RunQuietRank(Trainer trainer, CancellationToken cancel)
    {
        trainer.Run(cancel);
        return 0;
    }

    /// <summary>The progress line: step, bar, loss, tokens/s, ETA, experts/token, lr, gradient norm, worst layer's R_g, max |hidden|.</summary>
    sealed class Progress(long total, long start)
    {
        readonly System.Diagnostics.Stopwatch _sw = System.Diagnostics.Stopwatch.StartNew();
        readonly long _start = start;

        public string Format(StepMetrics m, bool bar)
        {
            var inv = CultureInfo.InvariantCulture;
            double elapsed = _sw.Elapsed.TotalSeconds;
            long done = m.Step - _start;
            double eta = done > 0 ? elapsed / done * (total - m.Step) : 0;
            double std = m.ExpertsStd.Length == 0 ? 0 : m.ExpertsStd.Average();
            string b = "";
            if (bar)
            {
                int w = 20, filled = (int)(w * m.Step / Math.Max(1, total));
                b = "[" + new string('#', filled) + new string('-', w - filled) + "] ";
            }
            return string.Create(inv,
                $"step {m.Step}/{total} {b}| loss {m.Loss:F4} (ce {m.CrossEntropy:F4}) | {m.TokensPerSecond:F0} tok/s | ETA {Eta(eta)} | experts/token {m.MeanRealExperts:F2}±{std:F2} | " +
                $"lr {m.LearningRate:0.00e+0} | gnorm {m.GradNorm:F3} | R_g {(m.RouterGradRatio.Length == 0 ? 0 : m.RouterGradRatio.Max()):F3} | max|h| {m.HiddenMaxAbs:F1}" +
                $"{(m.Skipped ? " | SKIPPED (non-finite)" : "")}");
        }

        static string Eta(double s) => s >= 3600 ? $"{(int)(s / 3600)}h{(int)(s % 3600 / 60):D2}m" : s >= 60 ? $"{(int)(s / 60)}m{(int)(s % 60):D2}s" : $"{s:F0}s";
    }
}
