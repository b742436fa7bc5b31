// CpuPool: the CPU backend's parallel loops (Engine/Cpu/CpuPool.cs). Every item runs once, on more than one
// thread, exceptions come back, loops inside loops and loops from two threads at once complete, and the
// pool's spin-waiting is kept out of the profiler's busy column.
using System.Collections.Concurrent;
using NUnit.Framework;
using PvlrKernels.Tools;
using PvlrKernels.Engine;

namespace PvlrKernels.Tests;

[NonParallelizable]
public sealed class CpuPoolTests
{
    double spin;
    [SetUp] public void KeepSpin() => spin = CpuPool.SpinMicroseconds;
    [TearDown] public void RestoreSpin() => CpuPool.SpinMicroseconds = spin;

    [TestCase(0)] [TestCase(1)] [TestCase(2)] [TestCase(3)] [TestCase(7)] [TestCase(1000)] [TestCase(100_000)]
    public void EveryItemRunsOnce(int n)
    {
        var runs = new int[n];
        CpuPool.For(n, i => Interlocked.Increment(ref runs[i]));
        Assert.That(runs, Is.All.EqualTo(1));
        Array.Clear(runs);
        int caller = Environment.CurrentManagedThreadId;
        var threads = new ConcurrentDictionary<int, bool>();
        CpuPool.For(n, i => { Interlocked.Increment(ref runs[i]); threads[Environment.CurrentManagedThreadId] = true; },
            threads: 1);
        Assert.That(runs, Is.All.EqualTo(1));
        if (n > 0) Assert.That(threads.Keys, Is.EqualTo(new[] { caller }), "one thread: the caller runs every item");
    }

    /// Each item waits until another thread has entered the loop too, so a pool that ran its items on the
    /// caller alone would fail here (after 10 s, not hang). Also with workers that block at once (spin 0)
    /// and after they have gone to sleep.
    [TestCase(2000.0, 0)]
    [TestCase(0.0, 0)]
    [TestCase(0.0, 30)]
    public void ItemsRunOnTwoThreadsAtOnce(double spinUs, int idleMs)
    {
        if (CpuPool.Width < 2) Assert.Ignore("one core");
        CpuPool.SpinMicroseconds = spinUs;
        CpuPool.For(2, _ => { });
        Thread.Sleep(idleMs);
        for (int rep = 0; rep < 20; rep++)
        {
            var entered = new CountdownEvent(2);
            var threads = new ConcurrentDictionary<int, bool>();
            CpuPool.For(2, _ =>
            {
                threads[Environment.CurrentManagedThreadId] = true;
                entered.Signal();
                if (!entered.Wait(TimeSpan.FromSeconds(10))) throw new TimeoutException("the other item never started");
            });
            Assert.That(threads.Count, Is.EqualTo(2));
        }
    }

    [Test]
    public void ExceptionsComeBackAndThePoolStillWorks()
    {
        // one item's exception as it was (the CLI catches ShapeException and the like by type), several
        // as an AggregateException; a loop inside an item (Parallel.For underneath) alike
        var e = Assert.Throws<ShapeException>(() => CpuPool.For(64,
            i => { if (i == 5) throw new ShapeException("item 5"); }));
        Assert.That(e!.Message, Is.EqualTo("item 5"));
        Assert.Throws<ShapeException>(() => CpuPool.For(2, i => CpuPool.For(8,
            j => { if (i == 0 && j == 3) throw new ShapeException("inner item 3"); })));
        Assert.Throws<ShapeException>(() => CpuPool.For(4, i => { if (i == 2) throw new ShapeException("item 2"); },
            threads: 1));
        if (CpuPool.Width >= 2)
        {
            var started = new CountdownEvent(2);                  // both items under way before either throws
            var all = Assert.Throws<AggregateException>(() => CpuPool.For(2,
                i =>
                {
                    started.Signal();
                    started.Wait(TimeSpan.FromSeconds(10));
                    throw new InvalidOperationException($"item {i}");
                }));
            Assert.That(all!.InnerExceptions.Select(x => x.Message), Is.EquivalentTo(new[] { "item 0", "item 1" }));
        }
        var runs = new int[64];
        CpuPool.For(64, i => Interlocked.Increment(ref runs[i]));
        Assert.That(runs, Is.All.EqualTo(1));
    }

    [Test]
    public void LoopsInsideLoopsAndFromTwoThreadsComplete()
    {
        var runs = new int[16 * 16];
        CpuPool.For(16, i => CpuPool.For(16, j => Interlocked.Increment(ref runs[i * 16 + j])));
        Assert.That(runs, Is.All.EqualTo(1), "a loop inside an item");
        var both = new int[2, 200 * 50];
        var callers = Enumerable.Range(0, 2).Select(c => Task.Run(() =>
        {
            for (int l = 0; l < 200; l++) CpuPool.For(50, i => Interlocked.Increment(ref both[c, l * 50 + i]));
        })).ToArray();
        Assert.That(Task.WaitAll(callers, TimeSpan.FromSeconds(60)), Is.True, "two callers at once finished");
        Assert.That(both.Cast<int>(), Is.All.EqualTo(1), "two callers at once");
    }

    /// A worker left spinning after a loop burns CPU time that did no work: SpinNanoseconds counts it while
    /// it happens, and Profiler.WorkNanoseconds (the busy column) leaves it out. A worker that blocks
    /// at once (spin 0) adds nothing.
    [Test]
    public void SpinWaitingIsNotCountedAsWork()
    {
        if (CpuPool.Width < 2) Assert.Ignore("one core");
        CpuPool.SpinMicroseconds = 1_000_000;
        CpuPool.For(2, _ => { });
        long s0 = CpuPool.SpinNanoseconds, c0 = Profiler.CpuNanoseconds(), w0 = Profiler.WorkNanoseconds();
        Thread.Sleep(200);
        long spun = CpuPool.SpinNanoseconds - s0, cpu = Profiler.CpuNanoseconds() - c0,
            work = Profiler.WorkNanoseconds() - w0;
        CpuPool.SpinMicroseconds = 0;
        CpuPool.For(2, _ => { });                               // the worker goes back to the loop and blocks
        Assert.That(spun, Is.GreaterThan(150_000_000L),
            $"a worker spinning through a 200 ms sleep counted {spun / 1e6:F1} ms");
        // (a preempted worker spins in wall time without CPU time, hence the margins)
        Assert.That(cpu, Is.GreaterThan(60_000_000L), $"the process's CPU time grew by {cpu / 1e6:F1} ms");
        Assert.That(work, Is.LessThan(cpu - 50_000_000L), $"work {work / 1e6:F1} ms of {cpu / 1e6:F1} ms CPU time");
        Thread.Sleep(20);
        s0 = CpuPool.SpinNanoseconds;
        Thread.Sleep(100);
        Assert.That(CpuPool.SpinNanoseconds - s0, Is.LessThan(10_000_000L), "a blocked worker does not spin");
    }

    /// `pvlr bench --only pool`: a row per way, each the mean time a loop took beyond its items' own
    /// (at least the time to hand out two items, never the items themselves).
    [Test]
    public void LoopOverheadRowsTimeBothWays()
    {
        var rows = PvlrKernels.Tools.Bench.LoopOverhead(loops: 8, workUs: 200, gapUs: 100);
        Assert.That(rows.Select(r => r.Name), Is.EqualTo(new[] { "parallel loop overhead, CpuPool",
            "parallel loop overhead, Parallel.For" }));
        Assert.That(rows.Select(r => r.Shape),
            Is.All.EqualTo($"{CpuPool.Width} items of 0.2 ms after 0.1 ms serial, 8 loops"));
        foreach (var r in rows)
        {
            Assert.That(r.Seconds, Is.GreaterThanOrEqualTo(-1e-9).And.LessThan(0.1),
                r.Name);   // the items spin their 0.2 ms in full
            Assert.That(r.Rate, Is.EqualTo($"{r.Seconds * 1e6:F1} us per loop"));
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => PvlrKernels.Tools.Bench.LoopOverhead(loops: 0));
    }
}
