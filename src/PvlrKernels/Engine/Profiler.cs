// PVLR_PROFILE=1: wall time, calls and items per kernel body type, per GEMM size class and per named
// phase, printed by `pvlr bench` (Report). On a GPU each profiled launch is followed by a synchronize,
// so the times are per kernel rather than per enqueue (and the run is slower than an unprofiled one).
// Each line also gives how busy the process kept the cores while that work ran (the process's CPU time
// over the wall time times the cores): for a scope on the calling thread that runs parallel work, the
// share of the cores its parallel loops used. A thread that sleeps or spin-waits in CpuPool counts as
// idle (WorkNanoseconds); other spinning counts as busy.
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;

namespace PvlrKernels.Engine;

public static class Profiler
{
    public static readonly bool Enabled = Environment.GetEnvironmentVariable("PVLR_PROFILE") == "1";
    static readonly ConcurrentDictionary<string, (long ticks, long cpuNs, long calls, long items)> entries = new();

    static long Now() => Stopwatch.GetTimestamp();

    static void Record(string key, long t0, long cpu0, long items)
    {
        long ticks = Stopwatch.GetTimestamp() - t0, cpu = WorkNanoseconds() - cpu0;
        entries.AddOrUpdate(key, (ticks, cpu, 1, items), (_, v) => (v.ticks + ticks, v.cpuNs + cpu, v.calls + 1,
            v.items + items));
    }

    [StructLayout(LayoutKind.Sequential)] struct Timespec { public long Sec, Nsec; }
    [DllImport("libc", EntryPoint = "clock_gettime")] static extern int ClockGettime(int clock, out Timespec t);
    const int ClockProcessCputimeId = 2;

    /// CPU time of the whole process (all threads) in ns: clock_gettime on 64-bit Linux (two 64-bit fields), else
    /// Process's.
    public static long CpuNanoseconds()
    {
        if (OperatingSystem.IsLinux() && Environment.Is64BitProcess && ClockGettime(ClockProcessCputimeId,
            out var t) == 0) return t.Sec * 1_000_000_000 + t.Nsec;
        return Process.GetCurrentProcess().TotalProcessorTime.Ticks * 100;
    }

    /// CPU time that did work: the process's, less the time CpuPool's threads spent spin-waiting.
    public static long WorkNanoseconds() => CpuNanoseconds() - CpuPool.SpinNanoseconds;

    /// The share of the cores the process kept busy: `cpuNs` of CPU time over `wallSeconds` on every core
    /// (0 for no wall time). Other threads' CPU time is counted at the scheduler's granularity, so a scope
    /// of a few milliseconds can read above 1.
    public static double Busy(double wallSeconds,
        long cpuNs) => wallSeconds > 0 ? cpuNs * 1e-9 / (wallSeconds * Environment.ProcessorCount) : 0;

    static string KernelName(Type t) =>
        t.Name + (t.IsGenericType ? "<" + string.Join(",", t.GetGenericArguments().Select(a => a.Name)) + ">" : "");

    public static string Report()
    {
        double total = entries.Where(kv => !kv.Key.StartsWith("phase ")).Sum(kv => kv.Value.ticks);
        return string.Join("\n",
            entries.OrderByDescending(kv => kv.Key.StartsWith("phase ")).ThenByDescending(kv =>
                kv.Value.ticks).Select(kv =>
        {
            double s = kv.Value.ticks / (double)Stopwatch.Frequency;
            return $"{s,9:F3} s {(kv.Key.StartsWith("phase ") ? "      " : $"{100 * kv.Value.ticks / total,5:F1}%")} "
                + $"{kv.Value.calls,7} calls {kv.Value.items,14} items "
                + $"{100 * Busy(s, kv.Value.cpuNs),4:F0}% busy  {kv.Key}";
        }));
    }

    public static void Reset() => entries.Clear();

    /// `using var _ = Profiler.Time(...)`: records the enclosed work under `key` (or the kernel type's
    /// name, built only when profiling) when the scope ends, after synchronizing `sync` if given (a GPU
    /// backend, so the time is the kernel's and not its enqueue's). Free when profiling is off.
    public static Scope Time(string key, long items, Backend sync = null) => new(key, null, items, sync);
    public static Scope Time(Type kernel, long items, Backend sync = null) => new(null, kernel, items, sync);

    public readonly struct Scope : IDisposable
    {
        readonly string key;
        readonly Type kernel;
        readonly long items, t0, cpu0;
        readonly Backend sync;
        internal Scope(string key, Type kernel, long items, Backend sync)
        {
            this.key = key;
            this.kernel = kernel;
            this.items = items;
            this.sync = sync;
            t0 = Enabled ? Now() : 0;
            cpu0 = Enabled ? WorkNanoseconds() : 0;
        }
        public void Dispose()
        {
            if (!Enabled) return;
            sync?.Synchronize();
            Record(key ?? KernelName(kernel), t0, cpu0, items);
        }
    }
}
