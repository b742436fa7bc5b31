// The CPU's fp32 FMA peak, measured rather than assumed: the same AVX-512 instructions run at 16 FMAs a
// cycle per core on Zen 5 and at 8 on Zen 4 (which splits each 512-bit FMA in two), and clocks differ.
// A thread per core runs a loop of independent FMA chains (12 accumulators: more than the FMA latency
// times the FMA units, so the units never wait) in the widest vectors the GEMM uses, in runs of ~50 ms
// (Measure). Measured once per process, after the benchmarks it divides.
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace PvlrKernels.Engine;

public static class CpuPeak
{
    static readonly Lazy<double> Measured = new(Measure);

    /// GFLOP/s of fp32 FMAs (2 FLOP each) on all cores together.
    public static double Gflops => Measured.Value;

    /// The median of eight runs on every core, leaving out those under 3/4 of the best (a short burst at a
    /// boost clock tops one now and then), but at least the best of three runs on one thread times the
    /// physical cores: when another thread of the process (the JIT, a background collection) holds a core
    /// through every run, the runs on all cores come out halved, while a single thread still finds a free
    /// core.
    static double Measure()
    {
        var runs = Enumerable.Range(0, 8).Select(_ => Run(CpuPool.Width)).ToList();
        double best = runs.Max();
        var kept = runs.Where(r => r >= 0.75 * best).Order().ToArray();
        double one = Enumerable.Range(0, 3).Max(_ => Run(1));
        return Math.Max(kept[kept.Length / 2], one * PhysicalCores());
    }

    /// Logical processors over the threads a core runs (Linux's thread_siblings_list; 1 where unknown).
    static int PhysicalCores()
    {
        int perCore = 1;
        try
        {
            var list = File.ReadAllText("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list").Trim();
            perCore = list.Split(',').Sum(part =>
                part.Split('-') is [var a, var b] ? int.Parse(b) - int.Parse(a) + 1 : 1);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException) { }
        return Math.Max(1, CpuPool.Width / Math.Max(1, perCore));
    }

    const int Iterations = 1 << 23;

    /// One run: a thread per core, released together, the time until the last one is done.
    static double Run(int threads)
    {
        Kernel(1 << 10);                                            // JIT before timing
        using var ready = new Barrier(threads + 1);
        var team = Enumerable.Range(0, threads)
            .Select(_ => new Thread(() => { ready.SignalAndWait(); Kernel(Iterations); })
            { IsBackground = true }).ToArray();
        foreach (var t in team) t.Start();
        ready.SignalAndWait();
        var sw = Stopwatch.StartNew();
        foreach (var t in team) t.Join();
        double lanes = Avx512F.IsSupported ? 16 : Fma.IsSupported ? 8 : 4;
        return threads * (double)Iterations * 12 * lanes * 2 / sw.Elapsed.TotalSeconds / 1e9;
    }

    /// Compiled optimized at once: the first, unoptimized tier keeps the accumulators in memory.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float Kernel(int n)
    {
        if (Avx512F.IsSupported)
        {
            var a = Vector512.Create(1.0000001f);
            var b = Vector512.Create(0.9999999f);
            Vector512<float> c0 = a, c1 = b, c2 = a, c3 = b, c4 = a, c5 = b, c6 = a, c7 = b, c8 = a, c9 = b, c10 = a,
                c11 = b;
            for (int i = 0; i < n; i++)
            {
                c0 = Avx512F.FusedMultiplyAdd(c0, a, b);
                c1 = Avx512F.FusedMultiplyAdd(c1, a, b);
                c2 = Avx512F.FusedMultiplyAdd(c2, a, b);
                c3 = Avx512F.FusedMultiplyAdd(c3, a, b);
                c4 = Avx512F.FusedMultiplyAdd(c4, a, b);
                c5 = Avx512F.FusedMultiplyAdd(c5, a, b);
                c6 = Avx512F.FusedMultiplyAdd(c6, a, b);
                c7 = Avx512F.FusedMultiplyAdd(c7, a, b);
                c8 = Avx512F.FusedMultiplyAdd(c8, a, b);
                c9 = Avx512F.FusedMultiplyAdd(c9, a, b);
                c10 = Avx512F.FusedMultiplyAdd(c10, a, b);
                c11 = Avx512F.FusedMultiplyAdd(c11, a, b);
            }
            return Vector512.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
        }
        if (Fma.IsSupported)
        {
            var a = Vector256.Create(1.0000001f);
            var b = Vector256.Create(0.9999999f);
            Vector256<float> c0 = a, c1 = b, c2 = a, c3 = b, c4 = a, c5 = b, c6 = a, c7 = b, c8 = a, c9 = b, c10 = a,
                c11 = b;
            for (int i = 0; i < n; i++)
            {
                c0 = Fma.MultiplyAdd(c0, a, b);
                c1 = Fma.MultiplyAdd(c1, a, b);
                c2 = Fma.MultiplyAdd(c2, a, b);
                c3 = Fma.MultiplyAdd(c3, a, b);
                c4 = Fma.MultiplyAdd(c4, a, b);
                c5 = Fma.MultiplyAdd(c5, a, b);
                c6 = Fma.MultiplyAdd(c6, a, b);
                c7 = Fma.MultiplyAdd(c7, a, b);
                c8 = Fma.MultiplyAdd(c8, a, b);
                c9 = Fma.MultiplyAdd(c9, a, b);
                c10 = Fma.MultiplyAdd(c10, a, b);
                c11 = Fma.MultiplyAdd(c11, a, b);
            }
            return Vector256.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
        }
        var s = Vector128.Create(1.0000001f);
        var t = Vector128.Create(0.9999999f);
        Vector128<float> d0 = s, d1 = t, d2 = s, d3 = t, d4 = s, d5 = t, d6 = s, d7 = t, d8 = s, d9 = t, d10 = s,
            d11 = t;
        for (int i = 0; i < n; i++)
        {   // no FMA: a multiply and an add count as one FMA
            d0 = d0 * s + t;
            d1 = d1 * s + t;
            d2 = d2 * s + t;
            d3 = d3 * s + t;
            d4 = d4 * s + t;
            d5 = d5 * s + t;
            d6 = d6 * s + t;
            d7 = d7 * s + t;
            d8 = d8 * s + t;
            d9 = d9 * s + t;
            d10 = d10 * s + t;
            d11 = d11 * s + t;
        }
        return Vector128.Sum(d0 + d1 + d2 + d3 + d4 + d5 + d6 + d7 + d8 + d9 + d10 + d11);
    }
}
