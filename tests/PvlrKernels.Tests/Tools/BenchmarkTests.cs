// The BenchmarkDotNet classes (benchmarks/) run pvlr bench's workloads: each benchmark method issues the
// GEMM work its GFLOP/s column counts, or, for the model benchmarks, the same work as the bench row.
using NUnit.Framework;
using PvlrKernels.Tools;
using PvlrKernels.Benchmarks;
using PvlrKernels.Engine;
using PvlrKernels.Model;
using PvlrKernels.Methods.Pvlr;
using PvlrKernels.Train;

namespace PvlrKernels.Tests;

public sealed class BenchmarkTests
{
    /// The GEMM FLOPs one call of `method` issues after `setup` (the class's [GlobalSetup]).
    static long FlopsOfOneCall(OnDevices bench, Action setup, Action method)
    {
        setup();
        try
        {
            long f0 = bench.GemmFlops;
            method();
            return bench.GemmFlops - f0;
        }
        finally { bench.Close(); }
    }

    /// The "% of peak" column divides by a measured FMA peak: no GEMM can beat it (a 10 % margin for a clock
    /// that rises between the two); a measurement that lost a core to the host would fail here.
    [Test]
    public void TheMeasuredCpuPeakBoundsTheGemm()
    {
        using var b = new CpuBackend();
        double peak = b.PeakGflops;
        var row = Bench.Gemm(b, 1024, 1024, 1024, reps: 3);
        TestContext.Out.WriteLine($"peak {peak:F0} GFLOP/s, 1024^3 GEMM {row.Flops / row.Seconds / 1e9:F0} GFLOP/s");
        Assert.That(peak, Is.GreaterThan(0));
        Assert.That(row.Flops / row.Seconds / 1e9, Is.LessThan(1.1 * peak));
        Assert.That(CpuPeak.Gflops, Is.EqualTo(peak), "measured once per process");
    }

    [Test]
    public void HotShapesDoTheWorkTheirColumnCounts()
    {
        // the paper shapes (fixed in the classes): about 400 GFLOP, under 2 s on the 2 cores
        var gemm = new GemmHotShape();
        Assert.That(FlopsOfOneCall(gemm, gemm.Setup, gemm.Sgemm), Is.EqualTo(gemm.Flops(nameof(gemm.Sgemm))));
        var conv = new Conv1dHotShape();
        Assert.That(FlopsOfOneCall(conv, conv.SetupForward, conv.Forward),
            Is.EqualTo(conv.Flops(nameof(conv.Forward))));
        Assert.That(FlopsOfOneCall(conv, conv.SetupForwardBackward, conv.ForwardBackward),
            Is.EqualTo(conv.Flops(nameof(conv.ForwardBackward))));
        Assert.That(conv.GemmFlops, Is.Zero, "Close hands the backend back");
    }

    [Test]
    public void ModelBenchmarksDoWhatPvlrBenchTimes()
    {
        // the CLIP tower, the training step and test-set inference at the tiny preset, against the rows
        // pvlr bench gives for the same preset (GEMM FLOPs per step or pass)
        var cfg = PvlrConfig.Tiny();
        using var cpu = new CpuBackend();
        var clip = new ClipTextTower { Preset = "tiny" };
        Assert.That(FlopsOfOneCall(clip, clip.Setup, clip.ForwardBackward),
            Is.GreaterThan(0).And.EqualTo(Bench.ClipTower(cpu, cfg, 1)[0].Flops));
        var step = new TrainingStep { Preset = "tiny" };
        Assert.That(FlopsOfOneCall(step, step.Setup, step.Step), Is.GreaterThan(0).And.EqualTo(Bench.TrainStep(cpu,
            cfg, 1).Flops));
        var infer = new TestSetInference { Preset = "tiny" };
        Assert.That(FlopsOfOneCall(infer, infer.Setup, infer.InferenceAndEvaluation),
            Is.GreaterThan(0).And.EqualTo(Bench.TestSetInference(cpu, cfg)[1].Flops));
    }

    [Test]
    public void InferenceAlsoRunsColdInFreshProcesses()
    {
        // the inference benchmark's extra job: the first pass alone in 3 fresh processes, under the CLI's
        // JIT settings (as the ShortRun job): full optimization on first use, and a multicore JIT profile
        var job = new ColdStartConfig().GetJobs().Single();
        Assert.That(job.Run.RunStrategy, Is.EqualTo(BenchmarkDotNet.Engines.RunStrategy.ColdStart));
        Assert.That((job.Run.LaunchCount, job.Run.WarmupCount, job.Run.IterationCount), Is.EqualTo((3, 0, 1)));
        Assert.That(job.Environment.EnvironmentVariables, Is.SupersetOf(PvlrKernels.Benchmarks.Program.AsTheCli));
        Assert.That(PvlrKernels.Benchmarks.Program.AsTheCli.Select(v => (v.Key, v.Value)),
            Is.EquivalentTo(new[] { ("DOTNET_TC_QuickJit", "0"), (PvlrKernels.Benchmarks.Program.JitVariable, "1") }));
        Assert.That(typeof(TestSetInference).GetCustomAttributes(typeof(BenchmarkDotNet.Attributes.ConfigAttribute),
            false), Has.Length.EqualTo(1));
    }

    /// BenchmarkDotNet runs a generated subclass of each benchmark class; its JIT profile is named after ours.
    sealed class Runnable_0 : TestSetInference { }

    [Test]
    public void JitProfileIsNamedAfterTheBenchmarkClass()
    {
        Assert.That(OnDevices.BenchmarkName(typeof(Runnable_0)), Is.EqualTo("TestSetInference"));
        Assert.That(OnDevices.BenchmarkName(typeof(GemmHotShape)), Is.EqualTo("GemmHotShape"));
    }

    sealed class Owned(List<string> freed, string name) : IDisposable { public void Dispose() => freed.Add(name); }

    [Test]
    public void WorkloadsRunTheirBodyAndFreeWhatTheyOwn()
    {
        // Run is the body, once per call; Dispose frees what the setup made, the last made first
        var freed = new List<string>();
        int runs = 0;
        using (var w = new Bench.Workload("n", "s", () => runs++, new Owned(freed, "store"), new Owned(freed, "graph")))
        {
            w.Run();
            w.Run();
            Assert.That(runs, Is.EqualTo(2));
            Assert.That(freed, Is.Empty);
        }
        Assert.That(freed, Is.EqualTo(new[] { "graph", "store" }));

        using var cpu = new CpuBackend();
        var log = new StringWriter();
        using (var step = Bench.TrainStepWork(cpu, PvlrConfig.Tiny(), log))
        {
            step.Run();
            step.Run();
        }
        Assert.That(log.ToString(),
            Is.EqualTo("  step 1 done" + Environment.NewLine + "  step 2 done" + Environment.NewLine));
        using var gemm = Bench.GemmWork(cpu, 8, 16, 32);
        long f0 = cpu.GemmFlops;
        gemm.Run();
        Assert.That(cpu.GemmFlops - f0, Is.EqualTo(2L * 8 * 16 * 32));
        Assert.That((gemm.Name, gemm.Shape), Is.EqualTo(("SGEMM", "(8x16)·(16x32)")));
    }

    [Test]
    public void ProcessCpuTimeCountsWorkNotSleep()
    {
        // the profiler's and the inference row's "busy": CPU time of the process, so 150 ms of spinning on
        // one thread counts (at least 100 ms of it, allowing for a preempted thread) and 150 ms of sleep
        // does not. Other threads of the test process (the JIT's background tier, the GC, work an earlier
        // test left) also count, so the sleep is tried up to 5 times and its quietest try must count under
        // 50 ms; a wall clock would count 150 ms every time. Busy is CPU time over wall x cores.
        long c0 = Profiler.CpuNanoseconds();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        double x = 0;
        while (sw.ElapsedMilliseconds < 150) x += Math.Sqrt(x + 1);
        long spun = Profiler.CpuNanoseconds() - c0;
        Assert.That(spun, Is.GreaterThan(100_000_000L), $"spinning 150 ms counted {spun / 1e6:F1} ms ({x:F0})");
        long quietest = long.MaxValue;
        for (int i = 0; i < 5 && quietest >= 50_000_000L; i++)
        {
            c0 = Profiler.CpuNanoseconds();
            Thread.Sleep(150);
            quietest = Math.Min(quietest, Profiler.CpuNanoseconds() - c0);
        }
        Assert.That(quietest, Is.GreaterThanOrEqualTo(0).And.LessThan(50_000_000L),
            $"sleeping 150 ms counted {quietest / 1e6:F1} ms at the least");
        Assert.That(Profiler.Busy(2.0, (long)(1e9 * Environment.ProcessorCount)), Is.EqualTo(0.5).Within(1e-12));
        Assert.That(Profiler.Busy(0, 123), Is.EqualTo(0));
    }

    /// Which BLAS torch ran on decides whether a ratio is printed: Debian's reference BLAS (one thread, what
    /// a torch without libopenblas0-pthread gets) gives none.
    [Test]
    public void TorchRatioNeedsARealBlas()
    {
        Assert.That(Cli.Program.TorchBlasIsReference("/usr/lib/x86_64-linux-gnu/blas/libblas.so.3", double.NaN),
            Is.True);
        Assert.That(Cli.Program.TorchBlasIsReference("/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3, "
            + "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so", double.NaN), Is.False);
        Assert.That(Cli.Program.TorchBlasIsReference("none mapped", double.NaN), Is.False);
        // a preloaded reference libblas beside OpenBLAS: the names mislead, the rate does not
        Assert.That(Cli.Program.TorchBlasIsReference("/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0, "
            + "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so", 3.1), Is.True);
        Assert.That(Cli.Program.TorchBlasIsReference("/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3", 140),
            Is.False);
    }

    /// `bench --torch` (demo shapes) names torch's BLAS and prints a ratio only against a real one.
    [Test]
    public void BenchTorchNamesTheBlasWhereTorchIsInstalled()
    {
        var (rc0, _, _) = ReferencePython.Run("-c \"import torch, scipy\"");
        Assert.That(rc0, Is.EqualTo(0));
        var (rc, err, output) = TestData.RunCli("bench", "--device", "cpu", "--preset", "demo", "--only", "step",
            "--steps", "1", "--torch", "--torch-steps", "1",
            "--torch-script", ReferencePython.RepoPath("benchmarks", "reference", "pvlr_ref.py"));
        Assert.That(rc, Is.EqualTo(0), err);
        Assert.That(output, Does.Contain("torch's BLAS: /"));
        bool reference = output.Contains("speed of Debian's reference BLAS");
        Assert.That(output, reference ? Does.Contain("| — |") : Does.Match(@"\| \d+\.\dx \|"));
    }
}
