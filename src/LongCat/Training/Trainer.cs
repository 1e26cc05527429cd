using System.Buffers;
using System.Diagnostics;
using System.Text.Json;
using LongCat.Config;
using LongCat.Distributed;

namespace LongCat.Training;

/// <summary>
/// The training loop. One step:
/// <list type="number">
/// <item>take BatchSize packed sequences from the loader, in micro-batches; forward + backward each from a zero gradient,
/// recording its losses, routing counts (budget controller, experts-per-token monitor) and the router's dL/dP (R_g);</item>
/// <item>sum the micro-batch gradients and fold the records in micro-batch order (<see cref="DataParallel"/>: the
/// micro-batches may be spread over the processes of an MPI job, which changes no bit of the result);</item>
/// <item>gradient norm of the averaged gradient; a non-finite loss or norm is a fault: the update is skipped, so
/// parameters, moments and controller stay as after the last good step (the step's routing is dropped), and it is
/// counted and logged;</item>
/// <item>otherwise clip, AdamW at the schedule's learning rate, commit the routing (every n steps the controller moves
/// the biases);</item>
/// <item>write the step's monitors to metrics.jsonl; validate and checkpoint at their intervals.</item>
/// </list>
/// Everything the state depends on is a deterministic function of the options and the seed, and every kernel is
/// thread-count independent, so a run's loss curve and weights are bitwise reproducible, across resumes too, and for
/// any number of data-parallel processes. In an MPI job every rank holds the same state; rank 0 writes metrics,
/// the model and the checkpoints' commit, each rank its own optimizer shard of a checkpoint.
/// </summary>
public sealed class Trainer : IDisposable
{
    readonly TokenDataset _train;
    readonly TokenDataset? _val;
    readonly PackedSequenceLoader _loader;
    readonly TrainingMonitor _monitor;
    readonly int[] _ids;
    // Chat data (loss mask): the whole step's rows and mask, read before the micro-batches so the loss is the mean over
    // the step's trained targets (null for text).
    readonly int[]? _stepIds;
    readonly byte[]? _stepMask;
    readonly LossOptions _lossBefore, _lossAfter;
    readonly FileStream? _metrics;
    readonly DataParallel _dp;
    readonly int _recordLength, _budgetAt, _monitorAt;
    readonly ArrayBufferWriter<byte> _line = new(1 << 12);
    readonly string? _tokenizerDir;
    int _consecutiveFaults;
    long _lastCheckpointStep = -1, _lastValidationStep = -1;

    public TrainingOptions Options { get; }
    public TrainableModel Model { get; }
    public AdamW Optimizer { get; }
    public BudgetController Budget { get; }
    /// <summary>The processes sharing each step's micro-batches (<see cref="Communicator.Single"/> without MPI).</summary>
    public Communicator Communicator => _dp.Comm;
    /// <summary>Gradient exchanges per round of micro-batches (several: they overlap the backward, layer by layer).</summary>
    public int GradientBuckets => _dp.BucketCount;
    /// <summary>Whether this process writes metrics, checkpoints and the model (rank 0).</summary>
    public bool IsWriter => _dp.Rank == 0;

    /// <summary>Steps completed.</summary>
    public long Step { get; private set; }
    public long Tokens { get; private set; }
    public int Faults { get; private set; }
    public string MetricsPath => Path.Combine(Options.OutDir, "metrics.jsonl");
    public string CheckpointsDir => Path.Combine(Options.OutDir, "checkpoints");
    public string ModelDir => Path.Combine(Options.OutDir, "model");
    /// <summary>The held-out split, when it has at least one sequence.</summary>
    public bool HasValidation => _val is not null;
    public double? LastValidationLoss { get; private set; }

    public event Action<StepMetrics>? StepCompleted;
    public event Action<long, double>? Validated;
    public event Action<string>? CheckpointSaved;
    /// <summary>Faults and other notes worth a line in the log.</summary>
    public event Action<string>? Message;

    Trainer(TrainingOptions o, TrainableModel model, TokenDataset train, TokenDataset? val, TrainerState? resume, Communicator comm)
    {
        Options = o;
        Model = model;
        _train = train;
        _val = val;
        var c = model.Config;
        // ZeRO-1: each rank's optimizer owns one contiguous range of whole chunks (everything in one process).
        var shards = AdamW.ShardStarts(model.Parameters.Table, comm.Size);
        Optimizer = new AdamW(model.Parameters, o.Optimizer, shards[comm.Rank], shards[comm.Rank + 1]);
        Budget = new BudgetController(c, o.Budget, o.Steps);
        _loader = new PackedSequenceLoader(train, o.SequenceLength, o.Seed);
        _monitor = new TrainingMonitor(c);
        _ids = new int[o.MicroBatchSize * o.SequenceLength];
        if (train.HasLossMask)
        {
            _stepIds = new int[o.BatchSize * o.SequenceLength];
            _stepMask = new byte[o.BatchSize * o.SequenceLength];
        }
        _lossAfter = o.Loss;
        _lossBefore = o.LossAt(-1) == o.Loss ? o.Loss : o.Loss with { MtpWeight = 0 };
        // A micro-batch's record: 5 losses, routing counts [L·E], monitors.
        _budgetAt = 5;
        _monitorAt = _budgetAt + c.NumLayers * c.NRoutedExperts;
        _recordLength = _monitorAt + TrainingMonitor.RecordLength(c);
        _dp = new DataParallel(comm, model.Parameters, o.MicroBatches, _recordLength, shards, Optimizer);
        // Overlap: each layer's gradient exchange starts as soon as its backward is done.
        if (comm.Size > 1) model.AfterLayerBackward = _dp.LayerBackwardDone;
        _tokenizerDir = File.Exists(Path.Combine(o.DataDir, "tokenizer.json")) ? o.DataDir : null;
        Directory.CreateDirectory(o.OutDir);
        if (resume is not null)
        {
            Step = resume.Step;
            Optimizer.Step = resume.AdamStep;
            _loader.Position = resume.DataPosition;
            Tokens = resume.Tokens;
            Faults = resume.Faults;
            Budget.LoadState(resume.BudgetCounts);
            _lastCheckpointStep = Step;
            if (IsWriter) TruncateMetrics(Step);
        }
        else if (IsWriter && File.Exists(MetricsPath)) File.Delete(MetricsPath);
        if (IsWriter) _metrics = new FileStream(MetricsPath, FileMode.Append, FileAccess.Write, FileShare.Read);
    }

    /// <summary>
    /// A trainer for <paramref name="o"/>: a new model (random init, or <see cref="TrainingOptions.InitFrom"/>), or the
    /// state of checkpoint folder <paramref name="resumeFrom"/>, which must come from a compatible run. With
    /// <paramref name="comm"/> (an MPI job's ranks, each calling this) the step's micro-batches are spread over the ranks.
    /// </summary>
    public static Trainer Create(TrainingOptions o, string? resumeFrom = null, Communicator? comm = null)
    {
        var train = TokenDataset.Open(o.DataDir, "train");
        TokenDataset? val = null;
        TrainableModel? model = null;
        try
        {
            var v = TokenDataset.Open(o.DataDir, "val");
            if ((v.HasLossMask ? v.DocumentCount > 0 : v.TokenCount >= o.SequenceLength) && o.EvalBatches > 0) val = v; else v.Dispose();

            TrainerState? state = null;
            ParameterStore store;
            if (resumeFrom is not null)
            {
                state = TrainingCheckpoint.ReadState(resumeFrom);
                CheckCompatible(o, state, train, resumeFrom);
                store = ParameterStore.Load(resumeFrom);
            }
            else if (o.InitFrom is not null) store = ParameterStore.Load(o.InitFrom);
            else
            {
                store = ParameterStore.Random(o.Model, o.Seed, o.InitStd, o.Mtp);
                ParameterGroups.ScaleInitVariance(store, o.InitVarianceMultipliers);
            }
            model = new TrainableModel(store);
            var c = model.Config;
            o.Validate(c, model.HasMtp);
            if (train.HasLossMask && (o.Loss.MtpWeight > 0))
                throw new ConfigException($"{o.DataDir}: chat data (loss mask) with loss.mtp_weight {o.Loss.MtpWeight}: the MTP loss is not masked; set it to 0");
            if (train.VocabSize > c.VocabSize)
                throw new ConfigException($"{o.DataDir}: the data's tokenizer has {train.VocabSize} tokens, more than the model's vocab_size {c.VocabSize}");
            var t = new Trainer(o, model, train, val, state, comm ?? Communicator.Single);
            if (resumeFrom is not null) TrainingCheckpoint.LoadMoments(resumeFrom, model.Parameters, t.Optimizer);
            return t;
        }
        catch
        {
            model?.Dispose();
            train.Dispose();
            val?.Dispose();
            throw;
        }
    }

    static void CheckCompatible(TrainingOptions o, TrainerState s, TokenDataset train, string dir)
    {
        string? model = o.InitFrom is null ? o.Model.ToJson() : null;
        string saved = LongCatConfig.Parse(s.ModelConfig, dir).ToJson();
        void Need(bool ok, string what)
        {
            if (!ok) throw new ConfigException($"cannot resume from {dir}: {what}");
        }
        Need(model is null || model == saved, "the checkpoint's model config differs from this config's model");
        Need(s.SequenceLength == o.SequenceLength, $"it was trained with data.seq_len {s.SequenceLength}, this config has {o.SequenceLength}");
        Need(s.BatchSize == o.BatchSize, $"it was trained with data.batch_size {s.BatchSize}, this config has {o.BatchSize}");
        Need(s.MicroBatchSize == o.MicroBatchSize, $"it was trained with data.micro_batch_size {s.MicroBatchSize}, this config has {o.MicroBatchSize}");
        Need(s.Seed == o.Seed, $"it was trained with seed {s.Seed}, this config has {o.Seed}");
        Need(s.DataTokens == train.TokenCount, $"it was trained on {s.DataTokens} training tokens, {o.DataDir} has {train.TokenCount}");
        Need(s.Step <= o.Steps, $"it is at step {s.Step}, past this config's steps {o.Steps}");
    }

    /// <summary>Trains to <see cref="TrainingOptions.Steps"/>, validating and checkpointing on the way; at the end a final
    /// checkpoint and the model in <see cref="ModelDir"/>. Cancelling stops after the current step with a checkpoint (in
    /// an MPI job: cancelling on any rank stops every rank after the same step, and they write the checkpoint together).</summary>
    public void Run(CancellationToken cancel = default)
    {
        var o = Options;
        while (Step < o.Steps)
        {
            TrainStep();
            if (o.EvalEvery > 0 && Step % o.EvalEvery == 0) Validate();
            if (o.CheckpointEvery > 0 && Step % o.CheckpointEvery == 0) SaveCheckpoint();
            // In an MPI job a stop request (a signal) may reach some ranks only, or in different steps: the ranks agree
            // after every step, and all stop after the same one with the same checkpoint.
            if (_dp.AnyRank(cancel.IsCancellationRequested))
            {
                if (_lastCheckpointStep != Step) SaveCheckpoint();
                Message?.Invoke($"stopped at step {Step}; resume with --resume");
                return;
            }
        }
        if (_lastValidationStep != Step) Validate();
        if (_lastCheckpointStep != Step) SaveCheckpoint();
        if (IsWriter) TrainingCheckpoint.ExportModel(ModelDir, Model.Parameters, _tokenizerDir);
        _dp.Comm.Barrier();   // the job ends once the model is written
    }

    /// <summary>One optimizer step (see the class summary).</summary>
    public StepMetrics TrainStep()
    {
        var o = Options;
        var p = Model.Parameters;
        var c = Model.Config;
        long t0 = Stopwatch.GetTimestamp();
        double lr = o.Schedule.At(Step);
        var loss = Step >= o.MtpStartStep ? _lossAfter : _lossBefore;
        _monitor.Reset();
        double total = 0, ce = 0, mtp = 0, lb = 0, z = 0;
        int micro = o.MicroBatches, tokens = o.MicroBatchSize * o.SequenceLength;
        long trained = _stepMask is null ? 0 : CountTrainedTargets(_loader, _stepIds!, _stepMask, o.SequenceLength);
        for (int mb = 0; mb < micro; mb++)
        {
            // Every rank reads every micro-batch, so the data position is the same everywhere (chat data: the whole
            // step was read above, to count its trained targets).
            if (_stepMask is null) _loader.Next(_ids);
            if (_dp.Owns(mb))
            {
                p.ZeroGrads();
                _dp.BeginMicroBatch(mb);
                var r = _stepMask is null
                    ? Model.ForwardBackward(_ids, o.MicroBatchSize, o.SequenceLength, loss)
                    // chat data: each micro-batch's loss is its sum over trained targets / (step's trained targets / micro-batches)
                    : Model.ForwardBackward(_stepIds.AsSpan(mb * tokens, tokens), _stepMask.AsSpan(mb * tokens, tokens),
                        o.MicroBatchSize, o.SequenceLength, loss, lossTokens: (double)trained / micro);
                var rec = _dp.Record(mb);
                rec[0] = r.Total; rec[1] = r.CrossEntropy; rec[2] = r.Mtp; rec[3] = r.LoadBalance; rec[4] = r.HiddenZ;
                BudgetController.Count(Model, rec[_budgetAt.._monitorAt]);
                TrainingMonitor.Capture(Model, tokens, backward: true, rec[_monitorAt..]);
            }
            if (_dp.EndsRound(mb)) _dp.ReduceRound(mb / _dp.Size);
        }
        _dp.FinishGradients();
        var records = _dp.GatherRecords();
        for (int mb = 0; mb < micro; mb++)
        {
            var rec = records.AsSpan(mb * _recordLength, _recordLength);
            total += rec[0]; ce += rec[1]; mtp += rec[2]; lb += rec[3]; z += rec[4];
            Budget.ObserveCounts(rec[_budgetAt.._monitorAt], tokens);
            _monitor.Fold(rec[_monitorAt..], tokens);
        }
        if (Array.IndexOf(o.InjectNanAtSteps, Step + 1) >= 0) p[p.Table.Entries[0].Name].Grad[0] = float.NaN;
        double inv = 1.0 / micro;
        double norm = Math.Sqrt(_dp.GradSquaredSum(Optimizer)) * inv;
        double lossMean = total * inv;
        bool skipped = !double.IsFinite(lossMean) || !double.IsFinite(norm);
        if (skipped)
        {
            Faults++;
            _consecutiveFaults++;
            Budget.DiscardPending();
            Message?.Invoke($"step {Step + 1}: non-finite {(double.IsFinite(lossMean) ? "gradient" : "loss")} (loss {lossMean}, gradient norm {norm}); update skipped, state kept from step {Step} ({Faults} fault(s) so far)");
            if (_consecutiveFaults >= o.MaxConsecutiveFaults)
                throw new InvalidOperationException($"{_consecutiveFaults} faulty steps in a row (the last at step {Step + 1}); stopping. Resume from the last checkpoint with a lower learning rate or check the data.");
        }
        else
        {
            _consecutiveFaults = 0;
            double clip = o.GradClip > 0 && norm > o.GradClip ? o.GradClip / (norm + 1e-6) : 1.0;
            Optimizer.Update(lr, inv * clip);
            _dp.GatherParameters();
            Budget.Commit(Step, p);
        }
        Step++;
        Tokens += o.TokensPerStep;
        var (mean, std, rg, rms, max) = _monitor.Finish();
        double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        var m = new StepMetrics
        {
            Step = Step, TotalSteps = o.Steps, Tokens = Tokens,
            Loss = lossMean, CrossEntropy = ce * inv, Mtp = mtp * inv, LoadBalance = lb * inv, HiddenZ = z * inv,
            LearningRate = lr, GradNorm = norm, GradRms = norm / Math.Sqrt(Math.Max(1, Optimizer.TrainableCount)),
            AdamEpsilon = o.Optimizer.Epsilon, TokensPerSecond = o.TokensPerStep / Math.Max(1e-9, seconds), StepSeconds = seconds,
            ExpertsMean = mean, ExpertsStd = std, RouterGradRatio = rg, RouterCosine = TrainingMonitor.RouterCosine(p),
            HiddenRms = rms, HiddenMaxAbs = max, BudgetRate = o.Budget.Enabled ? Budget.RateAt(Step - 1) : 0,
            Skipped = skipped, Faults = Faults,
        };
        WriteMetrics(m);
        StepCompleted?.Invoke(m);
        return m;
    }

    /// <summary>Reads the step's rows and mask from <paramref name="loader"/>; the number of trained targets among them.</summary>
    static long CountTrainedTargets(PackedSequenceLoader loader, int[] ids, byte[] mask, int seq)
    {
        loader.Next(ids, mask);
        long n = 0;
        for (int i = 0; i < mask.Length; i++) if (i % seq != 0 && mask[i] != 0) n++; // the first token of a row is never a target
        return n;
    }

    /// <summary>Mean next-token cross-entropy over the first eval.batches micro-batches of the held-out split (NaN without one).</summary>
    public double Validate()
    {
        _lastValidationStep = Step;
        if (_val is null) return double.NaN;
        var o = Options;
        var loader = new PackedSequenceLoader(_val, o.SequenceLength, o.Seed, shuffle: false);
        long batches = Math.Min(o.EvalBatches, loader.SequencesPerEpoch / o.MicroBatchSize);
        int bs = batches == 0 ? (int)loader.SequencesPerEpoch : o.MicroBatchSize;
        batches = Math.Max(1, batches);
        var ids = bs == o.MicroBatchSize ? _ids : new int[bs * o.SequenceLength];
        // Batch b is evaluated by rank b mod N; the losses are added in batch order on every rank. Chat data: each
        // batch gives its summed loss over trained targets, and the mean is over all trained targets of the batches.
        var mask = _val.HasLossMask ? new byte[ids.Length] : null;
        var losses = _dp.ComputeSpread((int)batches, b =>
        {
            loader.Position = (long)b * bs;   // windows handed out before batch b
            if (mask is null)
            {
                loader.Next(ids);
                return Model.Loss(ids, bs, o.SequenceLength).CrossEntropy;
            }
            loader.Next(ids, mask);
            return Model.Loss(ids, mask, bs, o.SequenceLength, lossTokens: 1).CrossEntropy;
        });
        double sum = 0;
        foreach (var x in losses) sum += x;
        double val;
        if (mask is null) val = sum / batches;
        else
        {
            long trained = 0;   // every rank counts every batch's trained targets (reading a mask is cheap)
            for (int b = 0; b < batches; b++)
            {
                loader.Position = (long)b * bs;
                trained += CountTrainedTargets(loader, ids, mask, o.SequenceLength);
            }
            val = trained == 0 ? double.NaN : sum / trained;
        }
        LastValidationLoss = val;
        WriteLine(w =>
        {
            w.WriteNumber("step", Step);
            Num(w, "val_loss", val);
            w.WriteNumber("val_tokens", batches * bs * o.SequenceLength);
        });
        Validated?.Invoke(Step, val);
        return val;
    }

    /// <summary>Writes a checkpoint of the current state (see <see cref="TrainingCheckpoint"/>).</summary>
    public string SaveCheckpoint()
    {
        var o = Options;
        var state = new TrainerState
        {
            Step = Step, AdamStep = Optimizer.Step, DataPosition = _loader.Position, Tokens = Tokens, Faults = Faults, Seed = o.Seed,
            ModelConfig = Model.Config.ToJson(), SequenceLength = o.SequenceLength, BatchSize = o.BatchSize, MicroBatchSize = o.MicroBatchSize,
            DataTokens = _train.TokenCount, BudgetCounts = Budget.SaveState(),
        };
        string dir = Path.Combine(CheckpointsDir, TrainingCheckpoint.DirectoryName(Step));
        if (Optimizer.IsWhole)
        {
            if (IsWriter)
            {
                _metrics!.Flush(flushToDisk: true);
                dir = TrainingCheckpoint.Save(CheckpointsDir, state, Model.Parameters, Optimizer, _tokenizerDir, o.CheckpointKeep);
            }
        }
        else
        {
            // ZeRO-1: each rank writes its own moment shard, rank 0 the model and the commit (no rank gathers the moments).
            dir = TrainingCheckpoint.SaveSharded(_dp.Comm, CheckpointsDir, state, Model.Parameters, Optimizer, _tokenizerDir, o.CheckpointKeep,
                beforeCommit: () => _metrics!.Flush(flushToDisk: true));
        }
        _lastCheckpointStep = Step;
        CheckpointSaved?.Invoke(dir);
        return dir;
    }

    void WriteMetrics(StepMetrics m)
    {
        WriteLine(w =>
        {
            w.WriteNumber("step", m.Step);
            w.WriteNumber("tokens", m.Tokens);
            Num(w, "loss", m.Loss); Num(w, "ce", m.CrossEntropy); Num(w, "mtp", m.Mtp); Num(w, "lb", m.LoadBalance); Num(w, "z", m.HiddenZ);
            Num(w, "lr", m.LearningRate); Num(w, "grad_norm", m.GradNorm); Num(w, "grad_rms", m.GradRms); Num(w, "adam_eps", m.AdamEpsilon);
            Num(w, "tokens_per_s", m.TokensPerSecond); Num(w, "step_s", m.StepSeconds);
            Arr(w, "experts_mean", m.ExpertsMean); Arr(w, "experts_std", m.ExpertsStd);
            Arr(w, "router_grad_ratio", m.RouterGradRatio); Arr(w, "router_cosine", m.RouterCosine);
            Num(w, "hidden_rms", m.HiddenRms); Num(w, "hidden_max_abs", m.HiddenMaxAbs); Num(w, "budget_rate", m.BudgetRate);
            w.WriteBoolean("skipped", m.Skipped);
            w.WriteNumber("faults", m.Faults);
        });
    }

    void WriteLine(Action<Utf8JsonWriter> body)
    {
        if (_metrics is null) return;
        _line.Clear();
        using (var w = new Utf8JsonWriter(_line))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }
        _metrics.Write(_line.WrittenSpan);
        _metrics.WriteByte((byte)'\n');
        _metrics.Flush();
    }

    static void Num(Utf8JsonWriter w, string name, double v)
    {
        if (double.IsFinite(v)) w.WriteNumber(name, v); else w.WriteNull(name);
    }

    static void Arr(Utf8JsonWriter w, string name, double[] v)
    {
        w.WriteStartArray(name);
        foreach (var x in v) if (double.IsFinite(x)) w.WriteNumberValue(x); else w.WriteNullValue();
        w.WriteEndArray();
    }

    /// <summary>Keeps the metrics lines of steps up to <paramref name="step"/> (a resume rewrites what came after).</summary>
    void TruncateMetrics(long step)
    {
        if (!File.Exists(MetricsPath)) return;
        var keep = new List<string>();
        foreach (var line in File.ReadLines(MetricsPath))
        {
            try
            {
                using var d = JsonDocument.Parse(line);
                if (d.RootElement.TryGetProperty("step", out var s) && s.GetInt64() <= step) keep.Add(line);
            }
            catch (JsonException) { } // a torn last line from a killed run
        }
        TokenDataWriter.AtomicWrite(MetricsPath, System.Text.Encoding.UTF8.GetBytes(string.Concat(keep.Select(l => l + "\n"))));
    }

    public void Dispose()
    {
        _metrics?.Dispose();
        _dp.Dispose();
        Optimizer.Dispose();
        Model.Dispose();
        _train.Dispose();
        _val?.Dispose();
    }
}
