using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace LongCat.Distributed;

/// <summary>
/// MPI_COMM_WORLD through Open MPI's C API (<see cref="MpiNative"/>). Errors return (MPI_ERRORS_RETURN) instead of
/// aborting, and come back as <see cref="MpiException"/> with MPI's error string. MPI is initialised once per
/// process and finalised at <see cref="Dispose"/>.
/// <para>Every collective and message is started non-blocking (MPI_Ialltoallv, ...) and polled with MPI_Test against
/// a deadline (<see cref="Timeout"/>): a rank that stops answering (stuck in a computation, or dead without mpirun
/// noticing) makes the others throw <see cref="MpiTimeoutException"/> naming the call and the silent ranks, instead of
/// waiting forever. The data moved and its order are those of the blocking calls.</para>
/// </summary>
public sealed unsafe class MpiCommunicator : Communicator
{
    /// <summary>The library loaded (unless LONGCAT_MPI_LIBRARY names another).</summary>
    public const string LibraryName = MpiNative.LibraryName;

    /// <summary>Environment variable: seconds a collective may wait for the slowest rank before the job is ended.</summary>
    public const string TimeoutVariable = "LONGCAT_MPI_TIMEOUT_S";
    public const double DefaultTimeoutSeconds = 300;
    /// <summary>Longest wait for the other ranks' answers once a rank has raised the alarm.</summary>
    const double MaxAlarmGraceSeconds = 10;
    /// <summary>The tag of the alarm messages (point to point; collectives use their own context in Open MPI).</summary>
    const int AlarmTag = 31_000;

    static MpiCommunicator? _world;
    readonly nint _comm;
    long _calls;
    bool _finalized;

    /// <summary>
    /// How long one collective (or message) may wait; past it the ranks that stopped answering are named and an
    /// <see cref="MpiTimeoutException"/> is thrown. Covers the time between the first and the last rank entering a
    /// collective, e.g. rank 0 writing a checkpoint's model while the others wait. Default <see cref="TimeoutVariable"/>, else 300 s.
    /// </summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(DefaultTimeoutSeconds);

    public override int Rank { get; }
    public override int Size { get; }

    MpiCommunicator(nint comm)
    {
        _comm = comm;
        int rank, size;
        MpiNative.Check(MpiNative.CommRank(comm, &rank), "MPI_Comm_rank");
        MpiNative.Check(MpiNative.CommSize(comm, &size), "MPI_Comm_size");
        Rank = rank;
        Size = size;
    }

    /// <summary>Initialises MPI (once) and returns MPI_COMM_WORLD with errors returned as exceptions.</summary>
    public static MpiCommunicator InitWorld()
    {
        if (_world is not null) return _world;
        MpiNative.Load();
        int done;
        MpiNative.Check(MpiNative.Initialized(&done), "MPI_Initialized");
        if (done == 0) MpiNative.Check(MpiNative.Init(null, null), "MPI_Init");
        MpiNative.Check(MpiNative.CommSetErrhandler(MpiNative.CommWorld, MpiNative.ErrorsReturn), "MPI_Comm_set_errhandler");
        var world = new MpiCommunicator(MpiNative.CommWorld);
        if (Environment.GetEnvironmentVariable(TimeoutVariable) is { Length: > 0 } t)
            world.Timeout = ParseTimeout(t, TimeoutVariable);
        return _world = world;
    }

    /// <summary>A timeout in seconds (positive, finite) from <paramref name="text"/>; a clear error naming <paramref name="what"/>.</summary>
    public static TimeSpan ParseTimeout(string text, string what) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var s) && s > 0 && s <= 1e7
            ? TimeSpan.FromSeconds(s)
            : throw new ArgumentException($"{what}: '{text}' is not a timeout in seconds (a number > 0)");

    /// <summary>Ends the whole job (every rank) with <paramref name="code"/>: for a rank that cannot go on while others wait in a collective.</summary>
    public void Abort(int code) => MpiNative.Abort(_comm, code);

    public override void Barrier()
    {
        nint req;
        MpiNative.Check(MpiNative.Ibarrier(_comm, &req), "MPI_Barrier");
        Wait(&req, "MPI_Barrier");
    }

    public override void Broadcast<T>(Span<T> data, int root)
    {
        nint req;
        fixed (T* p = data)
        {
            MpiNative.Check(MpiNative.Ibcast(p, Bytes<T>(data.Length), MpiNative.Byte, root, _comm, &req), "MPI_Bcast");
            Wait(&req, "MPI_Bcast");
        }
        if (Rank == root) BytesSent += (long)data.Length * sizeof(T) * (Size - 1);
    }

    public override void Allgather<T>(ReadOnlySpan<T> send, Span<T> receive)
    {
        if (receive.Length < (long)send.Length * Size) throw new ArgumentException($"Allgather: receive holds {receive.Length}, needs {(long)send.Length * Size}");
        int n = Bytes<T>(send.Length);
        nint req;
        fixed (T* s = send) fixed (T* r = receive)
        {
            MpiNative.Check(MpiNative.Iallgather(s, n, MpiNative.Byte, r, n, MpiNative.Byte, _comm, &req), "MPI_Allgather");
            Wait(&req, "MPI_Allgather");
        }
        BytesSent += (long)n * (Size - 1);
    }

    public override void Allgatherv(ReadOnlySpan<float> send, Span<float> receive, ReadOnlySpan<int> counts)
    {
        Span<int> displs = stackalloc int[Size];
        long at = 0;
        for (int k = 0; k < Size; k++) { displs[k] = checked((int)at); at += counts[k]; }
        if (receive.Length < at) throw new ArgumentException($"Allgatherv: receive holds {receive.Length}, needs {at}");
        nint req;
        fixed (float* s = send) fixed (float* r = receive) fixed (int* c = counts) fixed (int* d = displs)
        {
            MpiNative.Check(MpiNative.Iallgatherv(s, counts[Rank], MpiNative.Float, r, c, d, MpiNative.Float, _comm, &req), "MPI_Allgatherv");
            Wait(&req, "MPI_Allgatherv");
        }
        BytesSent += (long)counts[Rank] * sizeof(float) * (Size - 1);
    }

    public override void Gatherv(ReadOnlySpan<float> send, Span<float> receive, ReadOnlySpan<int> counts, int root)
    {
        Span<int> displs = stackalloc int[Size];
        long at = 0;
        for (int k = 0; k < Size; k++) { displs[k] = checked((int)at); at += counts[k]; }
        if (Rank == root && receive.Length < at) throw new ArgumentException($"Gatherv: receive holds {receive.Length}, needs {at}");
        nint req;
        fixed (float* s = send) fixed (float* r = receive) fixed (int* c = counts) fixed (int* d = displs)
        {
            MpiNative.Check(MpiNative.Igatherv(s, counts[Rank], MpiNative.Float, r, c, d, MpiNative.Float, root, _comm, &req), "MPI_Gatherv");
            Wait(&req, "MPI_Gatherv");
        }
        if (Rank != root) BytesSent += (long)counts[Rank] * sizeof(float);
    }

    public override void Alltoallv(ReadOnlySpan<float> send, ReadOnlySpan<int> sendCounts, ReadOnlySpan<int> sendOffsets,
        Span<float> receive, ReadOnlySpan<int> receiveCounts, ReadOnlySpan<int> receiveOffsets)
    {
        nint req;
        fixed (float* s = send) fixed (float* r = receive)
        fixed (int* sc = sendCounts) fixed (int* so = sendOffsets) fixed (int* rc = receiveCounts) fixed (int* ro = receiveOffsets)
        {
            MpiNative.Check(MpiNative.Ialltoallv(s, sc, so, MpiNative.Float, r, rc, ro, MpiNative.Float, _comm, &req), "MPI_Alltoallv");
            Wait(&req, "MPI_Alltoallv");
        }
        for (int k = 0; k < Size; k++) if (k != Rank) BytesSent += (long)sendCounts[k] * sizeof(float);
    }

    public override Request StartAlltoallv(float* send, int[] sendCounts, int[] sendOffsets, float* receive, int[] receiveCounts, int[] receiveOffsets)
    {
        var r = new Request { Call = "MPI_Alltoallv" };
        nint req;
        // The count arrays are pinned by the caller for the exchange's life (GC.AllocateArray(pinned: true)).
        fixed (int* sc = sendCounts) fixed (int* so = sendOffsets) fixed (int* rc = receiveCounts) fixed (int* ro = receiveOffsets)
            MpiNative.Check(MpiNative.Ialltoallv(send, sc, so, MpiNative.Float, receive, rc, ro, MpiNative.Float, _comm, &req), r.Call);
        r.Handle = req;
        for (int k = 0; k < Size; k++) if (k != Rank) BytesSent += (long)sendCounts[k] * sizeof(float);
        return r;
    }

    public override bool Test(Request request)
    {
        if (request.Done) return true;
        int done = 0;
        fixed (nint* h = &request.Handle) MpiNative.Check(MpiNative.Test(h, &done, null), request.Call);
        return request.Done = done != 0;
    }

    public override void Wait(Request request)
    {
        if (request.Done) return;
        fixed (nint* h = &request.Handle) Wait(h, request.Call);
        request.Done = true;
    }

    public override void Send<T>(ReadOnlySpan<T> data, int dest, int tag)
    {
        nint req;
        fixed (T* p = data)
        {
            MpiNative.Check(MpiNative.Isend(p, Bytes<T>(data.Length), MpiNative.Byte, dest, tag, _comm, &req), "MPI_Send");
            Wait(&req, $"MPI_Send to rank {dest}");
        }
        BytesSent += (long)data.Length * sizeof(T);
    }

    public override void Receive<T>(Span<T> data, int source, int tag)
    {
        nint req;
        fixed (T* p = data)
        {
            MpiNative.Check(MpiNative.Irecv(p, Bytes<T>(data.Length), MpiNative.Byte, source, tag, _comm, &req), "MPI_Recv");
            Wait(&req, $"MPI_Recv from rank {source}");
        }
    }

    /// <summary>
    /// Polls <paramref name="req"/> until it completes. Past <see cref="Timeout"/> (or when another rank's alarm arrives)
    /// this rank raises the alarm: it tells every other rank and listens for theirs for a grace period; the ranks that
    /// do not answer are the ones that stopped (stuck in a computation, or dead without mpirun noticing), and the
    /// <see cref="MpiTimeoutException"/> names them with the call.
    /// </summary>
    void Wait(nint* req, string call)
    {
        _calls++;
        int done = 0;
        MpiNative.Check(MpiNative.Test(req, &done, null), call);
        if (done != 0) return;
        long start = Stopwatch.GetTimestamp(), nextAlarmCheck = start + Stopwatch.Frequency / 20;
        long deadline = start + (long)(Timeout.TotalSeconds * Stopwatch.Frequency);
        for (int polls = 1; ; polls++)
        {
            MpiNative.Check(MpiNative.Test(req, &done, null), call);
            if (done != 0) return;
            // Spin briefly (a collective usually completes within microseconds), then yield the core, then sleep.
            if (polls < 1000) continue;
            long now = Stopwatch.GetTimestamp();
            if (now - start < Stopwatch.Frequency / 100) Thread.Yield();
            else Thread.Sleep(1);
            if (now >= nextAlarmCheck)
            {
                nextAlarmCheck = now + Stopwatch.Frequency / 20;
                int alarm = 0;
                MpiNative.Check(MpiNative.Iprobe(MpiNative.AnySource, AlarmTag, _comm, &alarm, null), "MPI_Iprobe");
                if (alarm != 0 || now >= deadline) throw RaiseAlarm(call, alarm != 0);
            }
        }
    }

    /// <summary>Tells every other rank that this one is stuck in <paramref name="call"/>; names the ranks that do not say the same in time.</summary>
    MpiTimeoutException RaiseAlarm(string call, bool heardFirst)
    {
        int n = Size;
        // Buffers and requests the alarm's sends use stay allocated: the job is about to end.
        var buf = (long*)NativeMemory.Alloc((nuint)(n + 1) * sizeof(long));
        buf[n] = _calls;
        var reqs = (nint*)NativeMemory.Alloc((nuint)(2 * n) * (nuint)sizeof(nint));
        for (int k = 0; k < n; k++)
        {
            if (k == Rank) continue;
            MpiNative.Check(MpiNative.Isend(buf + n, sizeof(long), MpiNative.Byte, k, AlarmTag, _comm, reqs + n + k), "MPI_Isend (alarm)");
            MpiNative.Check(MpiNative.Irecv(buf + k, sizeof(long), MpiNative.Byte, k, AlarmTag, _comm, reqs + k), "MPI_Irecv (alarm)");
        }
        var answered = new bool[n];
        answered[Rank] = true;
        double grace = Math.Min(Timeout.TotalSeconds, MaxAlarmGraceSeconds);
        long end = Stopwatch.GetTimestamp() + (long)(grace * Stopwatch.Frequency);
        while (answered.Contains(false) && Stopwatch.GetTimestamp() < end)
        {
            for (int k = 0; k < n; k++)
            {
                if (answered[k]) continue;
                int done = 0;
                MpiNative.Check(MpiNative.Test(reqs + k, &done, null), "MPI_Test (alarm)");
                answered[k] = done != 0;
            }
            Thread.Sleep(10);
        }
        var silent = Enumerable.Range(0, n).Where(k => !answered[k]).ToArray();
        var waiting = Enumerable.Range(0, n).Where(k => k != Rank && answered[k]).ToArray();
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        string how = heardFirst ? "another rank's alarm came" : string.Create(inv, $"it did not complete within {Timeout.TotalSeconds:0.###} s");
        string who = silent.Length > 0
            ? string.Create(inv, $"rank(s) {string.Join(", ", silent)} did not answer within {grace:0.###} s (stuck or dead)")
            : "every rank answered (all were waiting)";
        string also = waiting.Length > 0 ? $", rank(s) {string.Join(", ", waiting)} were waiting too" : "";
        string message = string.Create(inv, $"rank {Rank}: {call} (this rank's MPI call #{_calls}) was abandoned: {how}; ") + who + also +
            string.Create(inv, $". The job ends; the timeout is {TimeoutVariable} (seconds, default {DefaultTimeoutSeconds}) or train --mpi-timeout.");
        return new MpiTimeoutException(message, call, silent);
    }

    static int Bytes<T>(long count) where T : unmanaged
    {
        long b = count * Unsafe.SizeOf<T>();
        return b <= int.MaxValue ? (int)b : throw new MpiException($"one MPI message of {b} bytes is over MPI's 2 GiB count limit");
    }

    /// <summary>MPI_Finalize (once; the communicator is unusable after).</summary>
    public override void Dispose()
    {
        if (_finalized) return;
        _finalized = true;
        int done;
        if (MpiNative.Finalized(&done) == 0 && done == 0) MpiNative.Check(MpiNative.Finalize(), "MPI_Finalize");
    }
}
