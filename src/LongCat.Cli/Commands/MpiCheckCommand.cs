using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using LongCat.Distributed;

namespace LongCat.Cli.Commands;

/// <summary>
/// <c>mpirun -n N longcat mpi-check</c>: checks every collective the data-parallel trainer uses against known
/// answers, shows that an MPI error comes back as an error with MPI's text, and measures the all-to-all bandwidth
/// between the ranks. Rank 0 prints.
/// </summary>
public static class MpiCheckCommand
{
    public static Command Create()
    {
        var mib = new Option<int>("--mib") { Description = "Size of the bandwidth test's all-to-all buffer per rank, in MiB.", DefaultValueFactory = _ => 16 };
        var cmd = new Command("mpi-check",
            "Under mpirun: checks barrier, broadcast, allgather(v), gatherv, all-to-all(v) and send/receive between the ranks, " +
            "that an MPI error is reported with MPI's own text, and measures all-to-all bandwidth.") { mib };
        cmd.SetAction(p => CliSupport.Run(p, () => Run(Math.Max(1, p.GetValue(mib)))));
        return cmd;
    }

    static int Run(int mib)
    {
        if (!Communicator.LaunchedByMpirun)
            throw new CliException("mpi-check runs under Open MPI: mpirun -n 2 longcat mpi-check");
        var c = MpiCommunicator.InitWorld();
        int r = c.Rank, n = c.Size;
        var inv = CultureInfo.InvariantCulture;
        var lines = new List<string>();
        void Check(string what, bool ok)
        {
            if (!ok) throw new InvalidOperationException($"rank {r}: {what} gave a wrong answer");
            lines.Add($"{what}: ok");
        }

        c.Barrier();
        Check("barrier", true);
        Span<long> b = [r == n - 1 ? 42 : -1, r];
        c.Broadcast(b, n - 1);
        Check($"broadcast from rank {n - 1}", b[0] == 42 && b[1] == n - 1);
        var all = new int[n];
        c.Allgather<int>([r * 10], all);
        Check("allgather", all.Select((x, k) => x == k * 10).All(x => x));
        // Rank k contributes k+1 floats of value k.
        var counts = Enumerable.Range(0, n).Select(k => k + 1).ToArray();
        var mine = Enumerable.Repeat((float)r, r + 1).ToArray();
        var gathered = new float[counts.Sum()];
        c.Allgatherv(mine, gathered, counts);
        var expect = Enumerable.Range(0, n).SelectMany(k => Enumerable.Repeat((float)k, k + 1)).ToArray();
        Check("allgatherv", gathered.AsSpan().SequenceEqual(expect));
        var root = new float[r == 0 ? expect.Length : 0];
        c.Gatherv(mine, root, counts, 0);
        Check("gatherv to rank 0", r != 0 || root.AsSpan().SequenceEqual(expect));
        // All-to-all: rank r sends k+1 values r*100+k to rank k.
        var send = new List<float>();
        var sendCounts = new int[n]; var sendOffsets = new int[n]; var receiveCounts = new int[n]; var receiveOffsets = new int[n];
        for (int k = 0; k < n; k++)
        {
            sendOffsets[k] = send.Count;
            sendCounts[k] = k + 1;
            for (int j = 0; j <= k; j++) send.Add(r * 100 + k);
            receiveCounts[k] = r + 1;
            receiveOffsets[k] = k * (r + 1);
        }
        var receive = new float[n * (r + 1)];
        c.Alltoallv(send.ToArray(), sendCounts, sendOffsets, receive, receiveCounts, receiveOffsets);
        Check("alltoallv", Enumerable.Range(0, receive.Length).All(i => receive[i] == i / (r + 1) * 100 + r));
        // A ring of point-to-point messages.
        if (n > 1)
        {
            var got = new int[1];
            if (r % 2 == 0) { c.Send<int>([r], (r + 1) % n, 7); c.Receive<int>(got, (r + n - 1) % n, 7); }
            else { c.Receive<int>(got, (r + n - 1) % n, 7); c.Send<int>([r], (r + 1) % n, 7); }
            Check("send/receive ring", got[0] == (r + n - 1) % n);
        }
        // An invalid destination: MPI_ERRORS_RETURN turns it into an exception with MPI's text.
        try
        {
            c.Send<int>([0], n + 5, 7);
            throw new InvalidOperationException("sending to a rank that does not exist did not fail");
        }
        catch (MpiException e) { lines.Add($"send to rank {n + 5} (no such rank) fails with: {e.Message}"); }

        // Bandwidth: an all-to-all of `mib` MiB per rank, median of 5.
        int floats = mib * 262144, part = floats / n;
        var big = new float[part * n];
        var into = new float[part * n];
        var eq = Enumerable.Repeat(part, n).ToArray();
        var offs = Enumerable.Range(0, n).Select(k => k * part).ToArray();
        var times = new double[5];
        for (int i = 0; i < times.Length; i++)
        {
            c.Barrier();
            long t0 = Stopwatch.GetTimestamp();
            c.Alltoallv(big, eq, offs, into, eq, offs);
            c.Barrier();
            times[i] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        }
        Array.Sort(times);
        double sent = 4.0 * part * (n - 1);
        lines.Add(string.Create(inv, $"all-to-all of {mib} MiB per rank: median {times[2] * 1e3:F2} ms, {sent / times[2] / 1e9:F2} GB/s sent per rank"));
        if (r == 0)
        {
            Console.WriteLine($"mpi-check: {n} rank(s), Open MPI through {MpiCommunicator.LibraryName}");
            foreach (var l in lines) Console.WriteLine("  " + l);
        }
        c.Dispose();
        return 0;
    }
}
