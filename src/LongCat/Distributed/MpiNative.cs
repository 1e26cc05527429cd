using System.Runtime.InteropServices;

namespace LongCat.Distributed;

/// <summary>
/// The few functions and predefined handles of Open MPI's C API (libmpi.so.40) that <see cref="MpiCommunicator"/> needs,
/// bound at run time with <see cref="NativeLibrary"/>: nothing here is loaded unless a process was started by mpirun.
/// In Open MPI the predefined handles (MPI_COMM_WORLD, MPI_FLOAT, ...) are the addresses of exported globals
/// (ompi_mpi_comm_world, ompi_mpi_float, ...), so a handle is a pointer.
/// </summary>
internal static unsafe class MpiNative
{
    public const string LibraryName = "libmpi.so.40";
    /// <summary>Environment variable naming another libmpi to load (a full path), for an Open MPI outside the loader's path.</summary>
    public const string LibraryVariable = "LONGCAT_MPI_LIBRARY";
    public const int MaxErrorString = 256;   // MPI_MAX_ERROR_STRING in Open MPI

    static nint _lib;
    public static nint CommWorld, Float, Double, Byte, ErrorsReturn;

    public static delegate* unmanaged<int*, nint*, int> Init;
    public static delegate* unmanaged<int*, int> Initialized;
    public static delegate* unmanaged<int*, int> Finalized;
    public static delegate* unmanaged<int> Finalize;
    public static delegate* unmanaged<nint, int, int> Abort;
    public static delegate* unmanaged<nint, int*, int> CommRank;
    public static delegate* unmanaged<nint, int*, int> CommSize;
    public static delegate* unmanaged<nint, nint, int> CommSetErrhandler;
    public static delegate* unmanaged<int, byte*, int*, int> ErrorString;
    // Non-blocking collectives and point to point (the last argument is the MPI_Request* out), completed by polling
    // Test: MpiCommunicator's own timeout.
    public static delegate* unmanaged<nint, nint*, int> Ibarrier;
    public static delegate* unmanaged<void*, int, nint, int, nint, nint*, int> Ibcast;
    public static delegate* unmanaged<void*, int, nint, void*, int, nint, nint, nint*, int> Iallgather;
    public static delegate* unmanaged<void*, int, nint, void*, int*, int*, nint, nint, nint*, int> Iallgatherv;
    public static delegate* unmanaged<void*, int*, int*, nint, void*, int*, int*, nint, nint, nint*, int> Ialltoallv;
    public static delegate* unmanaged<void*, int, nint, void*, int*, int*, nint, int, nint, nint*, int> Igatherv;
    public static delegate* unmanaged<void*, int, nint, int, int, nint, nint*, int> Isend;
    public static delegate* unmanaged<void*, int, nint, int, int, nint, nint*, int> Irecv;
    public static delegate* unmanaged<nint*, int*, void*, int> Test;
    public static delegate* unmanaged<int, int, nint, int*, void*, int> Iprobe;

    /// <summary>MPI_ANY_SOURCE in Open MPI.</summary>
    public const int AnySource = -1;

    /// <summary>Loads libmpi and binds every symbol; a clear <see cref="MpiException"/> when it is not installed.</summary>
    public static void Load()
    {
        if (_lib != 0) return;
        nint lib;
        string path = Environment.GetEnvironmentVariable(LibraryVariable) is { Length: > 0 } v ? v : LibraryName;
        try { lib = NativeLibrary.Load(path); }
        catch (DllNotFoundException e)
        {
            throw new MpiException($"this process was started by mpirun but Open MPI's {path} cannot be loaded ({e.Message.Trim()}); " +
                "install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev)", inner: e);
        }
        nint Sym(string name)
        {
            try { return NativeLibrary.GetExport(lib, name); }
            catch (EntryPointNotFoundException e)
            {
                throw new MpiException($"{LibraryName} has no symbol '{name}': it is not Open MPI 4 or later (MPICH and others are not supported)", inner: e);
            }
        }
        CommWorld = Sym("ompi_mpi_comm_world");
        Float = Sym("ompi_mpi_float");
        Double = Sym("ompi_mpi_double");
        Byte = Sym("ompi_mpi_byte");
        ErrorsReturn = Sym("ompi_mpi_errors_return");
        Init = (delegate* unmanaged<int*, nint*, int>)Sym("MPI_Init");
        Initialized = (delegate* unmanaged<int*, int>)Sym("MPI_Initialized");
        Finalized = (delegate* unmanaged<int*, int>)Sym("MPI_Finalized");
        Finalize = (delegate* unmanaged<int>)Sym("MPI_Finalize");
        Abort = (delegate* unmanaged<nint, int, int>)Sym("MPI_Abort");
        CommRank = (delegate* unmanaged<nint, int*, int>)Sym("MPI_Comm_rank");
        CommSize = (delegate* unmanaged<nint, int*, int>)Sym("MPI_Comm_size");
        CommSetErrhandler = (delegate* unmanaged<nint, nint, int>)Sym("MPI_Comm_set_errhandler");
        ErrorString = (delegate* unmanaged<int, byte*, int*, int>)Sym("MPI_Error_string");
        Ibarrier = (delegate* unmanaged<nint, nint*, int>)Sym("MPI_Ibarrier");
        Ibcast = (delegate* unmanaged<void*, int, nint, int, nint, nint*, int>)Sym("MPI_Ibcast");
        Iallgather = (delegate* unmanaged<void*, int, nint, void*, int, nint, nint, nint*, int>)Sym("MPI_Iallgather");
        Iallgatherv = (delegate* unmanaged<void*, int, nint, void*, int*, int*, nint, nint, nint*, int>)Sym("MPI_Iallgatherv");
        Ialltoallv = (delegate* unmanaged<void*, int*, int*, nint, void*, int*, int*, nint, nint, nint*, int>)Sym("MPI_Ialltoallv");
        Igatherv = (delegate* unmanaged<void*, int, nint, void*, int*, int*, nint, int, nint, nint*, int>)Sym("MPI_Igatherv");
        Isend = (delegate* unmanaged<void*, int, nint, int, int, nint, nint*, int>)Sym("MPI_Isend");
        Irecv = (delegate* unmanaged<void*, int, nint, int, int, nint, nint*, int>)Sym("MPI_Irecv");
        Test = (delegate* unmanaged<nint*, int*, void*, int>)Sym("MPI_Test");
        Iprobe = (delegate* unmanaged<int, int, nint, int*, void*, int>)Sym("MPI_Iprobe");
        _lib = lib;
    }

    /// <summary>Throws an <see cref="MpiException"/> with MPI's error string when <paramref name="rc"/> is not MPI_SUCCESS.</summary>
    public static void Check(int rc, string call)
    {
        if (rc == 0) return;
        string text = $"error code {rc}";
        if (ErrorString != null)
        {
            byte* buf = stackalloc byte[MaxErrorString + 1];
            int len = 0;
            if (ErrorString(rc, buf, &len) == 0 && len > 0) text = System.Text.Encoding.ASCII.GetString(buf, Math.Min(len, MaxErrorString));
        }
        throw new MpiException($"{call} failed: {text}", rc);
    }
}
