// The CPU backend's parallel loops: the calling thread and ProcessorCount - 1 workers of our own, which
// spin for the next loop before they block (as an OpenMP runtime's threads do).
// Why not Parallel.For: on virtualized hosts a core that has gone idle takes ~0.3 ms to wake (the guest halts it,
// and the host must schedule it again), and the thread pool's workers block almost at once. A paper
// inference pass runs thousands of parallel loops, many right after a stretch of serial work, so the
// second core started late in most of them. `pvlr bench --device cpu --only pool` measures one loop's
// overhead after a serial gap both ways.
// Items are handed out one at a time from a shared counter, and each item is the same computation
// whichever thread runs it, so results are the bits Parallel.For gave. A loop started inside another
// (or while another thread holds the workers) runs on Parallel.For instead, so loops never wait on
// each other.
using System.Diagnostics;
using System.Runtime.ExceptionServices;

namespace PvlrKernels.Engine;

public static class CpuPool
{
    /// How long an idle worker spins for the next loop before it blocks; 0 blocks at once. Spinning
    /// costs a core only while this process has nothing for it to do.
    public static double SpinMicroseconds { get; set; } =
        double.TryParse(Environment.GetEnvironmentVariable("PVLR_SPIN_US"), System.Globalization.NumberStyles.Float,
            System.Globalization.CultureInfo.InvariantCulture, out var us) && us >= 0 ? us : 2000;

    static readonly object start = new();         // held by the thread whose loop the workers run
    static readonly object sleep = new();         // blocked workers wait on it
    static Thread[]? workers;
    static long generation;                       // bumped once per loop; a worker runs each generation once
    static int sleepers, pending, next, count, width;
    static Action<int>? job;
    static List<Exception>? errors;
    static readonly object errorsLock = new();
    [ThreadStatic] static bool inLoop;

    /// The number of threads that run a loop: the caller and the workers.
    public static int Width => Environment.ProcessorCount;

    /// body(i) for every i in [0, n), on up to `threads` cores (0: all). Once every started item has
    /// finished, an item's exception is thrown as it was (a ShapeException stays one, for the CLI's
    /// error line), or an AggregateException when several items threw.
    /// As For, but every item runs even when some throw, and the failure is the lowest failing item's own
    /// exception, not whichever came first: an error names the first bad item (a video) in file order.
    public static void ForOrdered(int n, Action<int> body)
    {
        var failed = new Exception[Math.Max(0, n)];
        For(n, i => { try { body(i); } catch (Exception e) { failed[i] = e; } });
        foreach (var e in failed) if (e != null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e);
    }

    public static void For(int n, Action<int> body, int threads = 0)
    {
        if (n <= 0) return;
        if (threads <= 0 || threads > Width) threads = Width;
        if (n == 1 || threads == 1)
        {
            for (int i = 0; i < n; i++) body(i);
            return;
        }
        if (inLoop || !Monitor.TryEnter(start))
        {
            try
            {
                Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = threads }, body);
            }
            catch (AggregateException e) when (e.InnerExceptions.Count == 1)
            {
                ExceptionDispatchInfo.Throw(e.InnerExceptions[0]);
            }
            return;
        }
        try
        {
            workers ??= StartWorkers();
            job = body;
            count = n;
            next = 0;
            errors = null;
            width = threads;                            // workers from this seat on count themselves done at once
            Volatile.Write(ref pending, workers.Length);
            Interlocked.Increment(ref generation);
            if (Volatile.Read(ref sleepers) > 0) lock (sleep) Monitor.PulseAll(sleep);
            inLoop = true;
            try { Work(); } finally { inLoop = false; }
            var wait = new SpinWait();
            SpinStart(0);
            while (Volatile.Read(ref pending) > 0) wait.SpinOnce(-1);
            SpinEnd(0);
            job = null;
            if (errors is [var one]) ExceptionDispatchInfo.Throw(one);
            if (errors != null) throw new AggregateException(errors);
        }
        finally { Monitor.Exit(start); }
    }

    // Items until none are left.
    static void Work()
    {
        var body = job!;
        while (true)
        {
            int i = Interlocked.Increment(ref next) - 1;
            if (i >= count) return;
            try { body(i); }
            catch (Exception e)
            {
                lock (errorsLock) (errors ??= new()).Add(e);
                Volatile.Write(ref next, count);        // no new items: finish the loop as Parallel.For does
            }
        }
    }

    static Thread[] StartWorkers()
    {
        var ts = new Thread[Width - 1];
        for (int w = 0; w < ts.Length; w++)
        {
            int seat = w + 1;
            ts[w] = new Thread(() => Worker(seat)) { IsBackground = true, Name = $"pvlr-cpu-{seat}" };
            ts[w].Start();
        }
        return ts;
    }

    static void Worker(int seat)
    {
        inLoop = true;                                  // a loop inside an item runs on Parallel.For
        long seen = 0;
        while (true)
        {
            long t0 = SpinStart(seat), spinUntil = t0 + (long)(SpinMicroseconds * Stopwatch.Frequency / 1e6);
            while (Volatile.Read(ref generation) == seen)
            {
                if (Stopwatch.GetTimestamp() < spinUntil)
                {
                    Thread.SpinWait(16);
                    continue;
                }
                SpinEnd(seat);                          // a blocked thread uses no CPU time
                lock (sleep)
                {
                    Interlocked.Increment(ref sleepers);
                    while (Volatile.Read(ref generation) == seen) Monitor.Wait(sleep);
                    Interlocked.Decrement(ref sleepers);
                }
            }
            SpinEnd(seat);
            seen = Volatile.Read(ref generation);
            if (seat < width) Work();
            Interlocked.Decrement(ref pending);
        }
    }

    // Spin accounting: each thread's seat holds the time its current spin began (0: not spinning), so a
    // reading taken mid-spin counts the spin so far.
    static readonly long[] spinningSince = new long[Math.Max(1, Environment.ProcessorCount)];
    static long spinTicks;

    static long SpinStart(int seat)
    {
        long t = Stopwatch.GetTimestamp();
        Volatile.Write(ref spinningSince[seat], t);
        return t;
    }

    static void SpinEnd(int seat)
    {
        long t0 = Interlocked.Exchange(ref spinningSince[seat], 0);
        if (t0 != 0) Interlocked.Add(ref spinTicks, Stopwatch.GetTimestamp() - t0);
    }

    /// Wall time the pool's threads have spent spinning (waiting for a loop, or for a loop's last items)
    /// since the process began, in ns: CPU time that did no work. Profiler's busy column leaves it out.
    public static long SpinNanoseconds
    {
        get
        {
            long ticks = Volatile.Read(ref spinTicks), now = Stopwatch.GetTimestamp();
            foreach (ref long since in spinningSince.AsSpan())
            {
                long t = Volatile.Read(ref since);
                if (t != 0 && now > t) ticks += now - t;
            }
            return (long)(ticks * (1e9 / Stopwatch.Frequency));
        }
    }
}
