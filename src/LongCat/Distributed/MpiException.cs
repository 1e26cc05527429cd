namespace LongCat.Distributed;

/// <summary>An MPI call failed (the text is MPI's own error string), or MPI could not be loaded or started.</summary>
public sealed class MpiException(string message, int errorCode = 0, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>MPI's error code (0 when the failure was not an MPI return code).</summary>
    public int ErrorCode { get; } = errorCode;
}

/// <summary>
/// A collective (or message) did not complete within <see cref="MpiCommunicator.Timeout"/>: some rank stopped answering.
/// The job cannot go on (the others wait in the same call), so the caller ends it with <see cref="MpiCommunicator.Abort"/>.
/// </summary>
public sealed class MpiTimeoutException(string message, string call, int[] silentRanks) : Exception(message)
{
    /// <summary>The MPI call that did not complete (e.g. MPI_Alltoallv).</summary>
    public string Call { get; } = call;
    /// <summary>The ranks that did not answer this rank's alarm within the grace period (stuck, dead or late).</summary>
    public int[] SilentRanks { get; } = silentRanks;
}
