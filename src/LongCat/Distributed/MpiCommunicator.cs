using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace LongCat.Distributed;

/// <summary>
/// MPI_COMM_WORLD through Open MPI's C API (<see cref="MpiNative"/>). Errors return (MPI_ERRORS_RETURN) instead of
/// aborting, and come back as <see cref="MpiException"/> with MPI's error string. MPI is initialised once per
/// process and finalised at <see cref="Dispose"/>.
/// </summary>
public sealed unsafe class MpiCommunicator : Communicator
{
    /// <summary>The library loaded (unless LONGCAT_MPI_LIBRARY names another).</summary>
    public const string LibraryName = MpiNative.LibraryName;

    static MpiCommunicator? _world;
    readonly nint _comm;
    bool _finalized;

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
        return _world = new MpiCommunicator(MpiNative.CommWorld);
    }

    /// <summary>Ends the whole job (every rank) with <paramref name="code"/>: for a rank that cannot go on while others wait in a collective.</summary>
    public void Abort(int code) => MpiNative.Abort(_comm, code);

    public override void Barrier() => MpiNative.Check(MpiNative.Barrier(_comm), "MPI_Barrier");

    public override void Broadcast<T>(Span<T> data, int root)
    {
        fixed (T* p = data)
            MpiNative.Check(MpiNative.Bcast(p, Bytes<T>(data.Length), MpiNative.Byte, root, _comm), "MPI_Bcast");
        if (Rank == root) BytesSent += (long)data.Length * sizeof(T) * (Size - 1);
    }

    public override void Allgather<T>(ReadOnlySpan<T> send, Span<T> receive)
    {
        if (receive.Length < (long)send.Length * Size) throw new ArgumentException($"Allgather: receive holds {receive.Length}, needs {(long)send.Length * Size}");
        int n = Bytes<T>(send.Length);
        fixed (T* s = send) fixed (T* r = receive)
            MpiNative.Check(MpiNative.Allgather(s, n, MpiNative.Byte, r, n, MpiNative.Byte, _comm), "MPI_Allgather");
        BytesSent += (long)n * (Size - 1);
    }

    public override void Allgatherv(ReadOnlySpan<float> send, Span<float> receive, ReadOnlySpan<int> counts)
    {
        Span<int> displs = stackalloc int[Size];
        long at = 0;
        for (int k = 0; k < Size; k++) { displs[k] = checked((int)at); at += counts[k]; }
        if (receive.Length < at) throw new ArgumentException($"Allgatherv: receive holds {receive.Length}, needs {at}");
        fixed (float* s = send) fixed (float* r = receive) fixed (int* c = counts) fixed (int* d = displs)
            MpiNative.Check(MpiNative.Allgatherv(s, counts[Rank], MpiNative.Float, r, c, d, MpiNative.Float, _comm), "MPI_Allgatherv");
        BytesSent += (long)counts[Rank] * sizeof(float) * (Size - 1);
    }

    public override void Gatherv(ReadOnlySpan<float> send, Span<float> receive, ReadOnlySpan<int> counts, int root)
    {
        Span<int> displs = stackalloc int[Size];
        long at = 0;
        for (int k = 0; k < Size; k++) { displs[k] = checked((int)at); at += counts[k]; }
        if (Rank == root && receive.Length < at) throw new ArgumentException($"Gatherv: receive holds {receive.Length}, needs {at}");
        fixed (float* s = send) fixed (float* r = receive) fixed (int* c = counts) fixed (int* d = displs)
            MpiNative.Check(MpiNative.Gatherv(s, counts[Rank], MpiNative.Float, r, c, d, MpiNative.Float, root, _comm), "MPI_Gatherv");
        if (Rank != root) BytesSent += (long)counts[Rank] * sizeof(float);
    }

    public override void Alltoallv(ReadOnlySpan<float> send, ReadOnlySpan<int> sendCounts, ReadOnlySpan<int> sendOffsets,
        Span<float> receive, ReadOnlySpan<int> receiveCounts, ReadOnlySpan<int> receiveOffsets)
    {
        fixed (float* s = send) fixed (float* r = receive)
        fixed (int* sc = sendCounts) fixed (int* so = sendOffsets) fixed (int* rc = receiveCounts) fixed (int* ro = receiveOffsets)
            MpiNative.Check(MpiNative.Alltoallv(s, sc, so, MpiNative.Float, r, rc, ro, MpiNative.Float, _comm), "MPI_Alltoallv");
        for (int k = 0; k < Size; k++) if (k != Rank) BytesSent += (long)sendCounts[k] * sizeof(float);
    }

    public override void Send<T>(ReadOnlySpan<T> data, int dest, int tag)
    {
        fixed (T* p = data) MpiNative.Check(MpiNative.Send(p, Bytes<T>(data.Length), MpiNative.Byte, dest, tag, _comm), "MPI_Send");
        BytesSent += (long)data.Length * sizeof(T);
    }

    public override void Receive<T>(Span<T> data, int source, int tag)
    {
        // MPI_STATUS_IGNORE is a null pointer in Open MPI.
        fixed (T* p = data) MpiNative.Check(MpiNative.Recv(p, Bytes<T>(data.Length), MpiNative.Byte, source, tag, _comm, null), "MPI_Recv");
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
