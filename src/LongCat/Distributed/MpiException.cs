namespace LongCat.Distributed;

/// <summary>An MPI call failed (the text is MPI's own error string), or MPI could not be loaded or started.</summary>
public sealed class MpiException(string message, int errorCode = 0, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>MPI's error code (0 when the failure was not an MPI return code).</summary>
    public int ErrorCode { get; } = errorCode;
}
