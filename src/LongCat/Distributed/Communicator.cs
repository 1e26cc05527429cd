namespace LongCat.Distributed;

/// <summary>
/// The collectives data-parallel training needs, over a group of <see cref="Size"/> processes. <see cref="Single"/> is
/// the group of one (no MPI: every collective is a copy); <see cref="MpiCommunicator"/> is MPI_COMM_WORLD of a job
/// started by mpirun. Every call is collective unless it says otherwise: all ranks call it, in the same order, with
/// matching sizes. Counts are elements, not bytes.
/// </summary>
public abstract unsafe class Communicator : IDisposable
{
    /// <summary>This process's index in the group, 0 ≤ Rank &lt; Size.</summary>
    public abstract int Rank { get; }
    public abstract int Size { get; }

    /// <summary>Bytes this process has handed to the network (what it sends to other ranks; copies to itself excluded).</summary>
    public long BytesSent { get; protected set; }

    /// <summary>Waits until every rank has called it.</summary>
    public abstract void Barrier();

    /// <summary>Rank <paramref name="root"/>'s <paramref name="data"/> replaces every other rank's.</summary>
    public abstract void Broadcast<T>(Span<T> data, int root) where T : unmanaged;

    /// <summary>Every rank sends <paramref name="send"/> (the same length everywhere); <paramref name="receive"/> gets rank r's at r·length.</summary>
    public abstract void Allgather<T>(ReadOnlySpan<T> send, Span<T> receive) where T : unmanaged;

    /// <summary>Rank r sends counts[r] elements; <paramref name="receive"/> gets them one after the other, rank order.</summary>
    public abstract void Allgatherv(ReadOnlySpan<float> send, Span<float> receive, ReadOnlySpan<int> counts);

    /// <summary>Rank r sends counts[r] elements; rank <paramref name="root"/>'s <paramref name="receive"/> gets them one after the other (others pass an empty span).</summary>
    public abstract void Gatherv(ReadOnlySpan<float> send, Span<float> receive, ReadOnlySpan<int> counts, int root);

    /// <summary>
    /// Personalised exchange: this rank sends send[sendOffsets[k] .. + sendCounts[k]) to rank k and receives rank k's
    /// block for it at receive[receiveOffsets[k] ..  + receiveCounts[k]).
    /// </summary>
    public abstract void Alltoallv(ReadOnlySpan<float> send, ReadOnlySpan<int> sendCounts, ReadOnlySpan<int> sendOffsets,
        Span<float> receive, ReadOnlySpan<int> receiveCounts, ReadOnlySpan<int> receiveOffsets);

    /// <summary>
    /// Starts <see cref="Alltoallv"/> and returns at once (MPI_Ialltoallv): <paramref name="send"/>, <paramref name="receive"/>
    /// and the four count arrays must stay in place and untouched until <see cref="Wait"/> returns. Every rank starts
    /// its exchanges in the same order.
    /// </summary>
    public abstract Request StartAlltoallv(float* send, int[] sendCounts, int[] sendOffsets, float* receive, int[] receiveCounts, int[] receiveOffsets);

    /// <summary>Lets started exchanges move on without waiting (MPI moves them only inside MPI calls); true when <paramref name="request"/> is complete.</summary>
    public abstract bool Test(Request request);

    /// <summary>Waits until <paramref name="request"/> completes.</summary>
    public abstract void Wait(Request request);

    /// <summary>A started exchange (<see cref="StartAlltoallv"/>).</summary>
    public sealed class Request
    {
        internal nint Handle;
        internal bool Done;
        internal string Call = "";
    }

    /// <summary>Point to point (not collective): blocks until <paramref name="dest"/> receives it with the same tag.</summary>
    public abstract void Send<T>(ReadOnlySpan<T> data, int dest, int tag) where T : unmanaged;
    public abstract void Receive<T>(Span<T> data, int source, int tag) where T : unmanaged;

    public virtual void Dispose() { }

    /// <summary>The group of this process alone.</summary>
    public static Communicator Single { get; } = new SingleProcess();

    /// <summary>True when this process was started by Open MPI's mpirun (OMPI_COMM_WORLD_SIZE is set); libmpi is not touched.</summary>
    public static bool LaunchedByMpirun => Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is { Length: > 0 };

    /// <summary>MPI_COMM_WORLD when started by mpirun (MPI is initialised here), else <see cref="Single"/>.</summary>
    public static Communicator FromEnvironment() => LaunchedByMpirun ? MpiCommunicator.InitWorld() : Single;

    sealed class SingleProcess : Communicator
    {
        public override int Rank => 0;
        public override int Size => 1;
        public override void Barrier() { }
        public override void Broadcast<T>(Span<T> data, int root) => CheckRoot(root);
        public override void Allgather<T>(ReadOnlySpan<T> send, Span<T> receive) => send.CopyTo(receive);
        public override void Allgatherv(ReadOnlySpan<float> send, Span<float> receive, ReadOnlySpan<int> counts) => send[..counts[0]].CopyTo(receive);
        public override void Gatherv(ReadOnlySpan<float> send, Span<float> receive, ReadOnlySpan<int> counts, int root)
        {
            CheckRoot(root);
            send[..counts[0]].CopyTo(receive);
        }

        public override void Alltoallv(ReadOnlySpan<float> send, ReadOnlySpan<int> sendCounts, ReadOnlySpan<int> sendOffsets,
            Span<float> receive, ReadOnlySpan<int> receiveCounts, ReadOnlySpan<int> receiveOffsets) =>
            send.Slice(sendOffsets[0], sendCounts[0]).CopyTo(receive[receiveOffsets[0]..]);

        public override Request StartAlltoallv(float* send, int[] sendCounts, int[] sendOffsets, float* receive, int[] receiveCounts, int[] receiveOffsets)
        {
            new ReadOnlySpan<float>(send + sendOffsets[0], sendCounts[0]).CopyTo(new Span<float>(receive + receiveOffsets[0], sendCounts[0]));
            return new Request { Done = true };
        }

        public override bool Test(Request request) => true;
        public override void Wait(Request request) { }

        public override void Send<T>(ReadOnlySpan<T> data, int dest, int tag) => throw new InvalidOperationException("a single process has no other rank to send to");
        public override void Receive<T>(Span<T> data, int source, int tag) => throw new InvalidOperationException("a single process has no other rank to receive from");

        static void CheckRoot(int root)
        {
            if (root != 0) throw new ArgumentOutOfRangeException(nameof(root), root, "a single process has only rank 0");
        }
    }
}
