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

    public static long Now() => Stopwatch.GetTimestamp();

    public static void Record(string key, long t0, long items) =>
        entries.AddOrUpdate(key, (Stopwatch.GetTimestamp() - t0, 1, items), (_, v) => (v.ticks + Stopwatch.GetTimestamp() - t0, v.calls + 1, v.items + items));

    public static string KernelName(Type t) =>
        t.Name + (t.IsGenericType ? "<" + string.Join(",", t.GetGenericArguments().Select(a => a.Name)) + ">" : "");

    public static string Report()
    {
        double total = entries.Where(kv => !kv.Key.StartsWith("phase ")).Sum(kv => kv.Value.ticks);
        return string.Join("\n", entries.OrderByDescending(kv => kv.Key.StartsWith("phase ")).ThenByDescending(kv => kv.Value.ticks).Select(kv =>
            $"{kv.Value.ticks / (double)Stopwatch.Frequency,9:F3} s {(kv.Key.StartsWith("phase ") ? "      " : $"{100 * kv.Value.ticks / total,5:F1}%")} {kv.Value.calls,7} calls {kv.Value.items,14} items  {kv.Key}"));
    }

    public static void Reset() => entries.Clear();
}
