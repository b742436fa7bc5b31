// PVLR_PROFILE=1: wall time, calls and items per kernel body type, per GEMM size class and per named
// phase, printed by `pvlr bench` (Report). On a GPU each profiled launch is followed by a synchronize,
// so the times are per kernel rather than per enqueue (and the run is slower than an unprofiled one).
using System.Collections.Concurrent;
using System.Diagnostics;

namespace PvlrKernels.Engine;

public static class Profiler
{
    public static readonly bool Enabled = Environment.GetEnvironmentVariable("PVLR_PROFILE") == "1";
    static readonly ConcurrentDictionary<string, (long ticks, long calls, long items)> entries = new();

    static long Now() => Stopwatch.GetTimestamp();

    static void Record(string key, long t0, long items) =>
        entries.AddOrUpdate(key, (Stopwatch.GetTimestamp() - t0, 1, items), (_, v) => (v.ticks + Stopwatch.GetTimestamp() - t0, v.calls + 1, v.items + items));

    static string KernelName(Type t) =>
        t.Name + (t.IsGenericType ? "<" + string.Join(",", t.GetGenericArguments().Select(a => a.Name)) + ">" : "");

    public static string Report()
    {
        double total = entries.Where(kv => !kv.Key.StartsWith("phase ")).Sum(kv => kv.Value.ticks);
        return string.Join("\n", entries.OrderByDescending(kv => kv.Key.StartsWith("phase ")).ThenByDescending(kv => kv.Value.ticks).Select(kv =>
            $"{kv.Value.ticks / (double)Stopwatch.Frequency,9:F3} s {(kv.Key.StartsWith("phase ") ? "      " : $"{100 * kv.Value.ticks / total,5:F1}%")} {kv.Value.calls,7} calls {kv.Value.items,14} items  {kv.Key}"));
    }

    public static void Reset() => entries.Clear();

    /// `using var _ = Profiler.Time(...)`: records the enclosed work under `key` (or the kernel type's
    /// name, built only when profiling) when the scope ends, after synchronizing `sync` if given (a GPU
    /// backend, so the time is the kernel's and not its enqueue's). Free when profiling is off.
    public static Scope Time(string key, long items, Backend sync = null) => new(key, null, items, sync);
    public static Scope Time(Type kernel, long items, Backend sync = null) => new(null, kernel, items, sync);

    public readonly struct Scope : IDisposable
    {
        readonly string key; readonly Type kernel; readonly long items, t0; readonly Backend sync;
        internal Scope(string key, Type kernel, long items, Backend sync)
        {
            this.key = key; this.kernel = kernel; this.items = items; this.sync = sync; t0 = Enabled ? Now() : 0;
        }
        public void Dispose()
        {
            if (!Enabled) return;
            sync?.Synchronize();
            Record(key ?? KernelName(kernel), t0, items);
        }
    }
}
