// BenchmarkDotNet benchmarks at PVLR's hot shapes, on the CPU and (where a device exists) on CUDA: the
// SGEMM and fusion Conv1d, the CLIP text tower fwd+bwd, one paper training step, and test-set inference
// plus evaluation. Each times the same Bench.Workload as the matching `pvlr bench` row.
// GFLOP/s = FLOPs / mean time, printed by the GFlops column with the % of the backend's fp32 FMA peak
// (Backend.PeakGflops: ~430 on the 2-core AVX-512 machine, ~66,900 on an H100 SXM).
//   dotnet run -c Release --project benchmarks/PvlrKernels.Benchmarks -- --filter '*'
// --inprocess runs the benchmarks in this process (BenchmarkDotNet's in-process toolchain), which is how
// the self-contained build runs them on a GPU machine that has no .NET SDK (benchmarks/device/run.sh).
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using PvlrKernels.Tools;
using PvlrKernels.Engine;
using PvlrKernels.Kernels;
using PvlrKernels.Model;
using PvlrKernels.Methods.Pvlr;
using PvlrKernels.Train;

namespace PvlrKernels.Benchmarks;

public static class Program
{
    /// --inprocess: the benchmarks run in this process (no fresh process per launch, so no cold-start job).
    public static bool InProcess { get; private set; }

    /// The benchmark processes run under the CLI's JIT settings: TieredCompilationQuickJit false (set in both
    /// csproj files), so methods are compiled fully optimized on first use, as `pvlr eval` runs them; and a
    /// multicore JIT profile per benchmark class (JitProfile), as each CLI command keeps one. BenchmarkDotNet
    /// runs its own entry point in these processes, so OnDevices starts the profile when it sees JitVariable.
    public const string JitVariable = "PVLR_BENCH_JIT_PROFILE";
    public static readonly EnvironmentVariable[] AsTheCli = { new("DOTNET_TC_QuickJit", "0"), new(JitVariable, "1") };

    public static void Main(string[] args)
    {
        InProcess = args.Contains("--inprocess");
        var job = Job.ShortRun.WithWarmupCount(2).WithIterationCount(5).WithEnvironmentVariables(AsTheCli);
        if (InProcess)
            job = job.WithToolchain(BenchmarkDotNet.Toolchains.InProcess.Emit.InProcessEmitToolchain.Instance);
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args.Where(a => a != "--inprocess").ToArray(),
            DefaultConfig.Instance.AddJob(job).AddColumn(new GflopsColumn()));
    }
}

public interface IFlops { double Flops(string method); }

/// The devices a benchmark runs on (the CPU, and CUDA where ILGPU finds a device), and the workload it
/// times: one of `pvlr bench`'s (Bench.Workload), set up once per device; each [Benchmark] is one Run.
public abstract class OnDevices
{
    public static IEnumerable<string> Devices => IlgpuBackend.CudaAvailable() ? new[] { "cpu",
        "cuda" } : new[] { "cpu" };
    [ParamsSource(nameof(Devices))] public string Device { get; set; } = "cpu";
    /// The PVLR shapes of the model benchmarks; not a BenchmarkDotNet parameter (the tests set "tiny").
    public string Preset { get; set; } = "paper";
    protected Backend b;
    readonly List<Bench.Workload> work = new();
    static bool profiled;

    protected Bench.Workload Open(Func<Backend, PvlrConfig, Bench.Workload> make)
    {
        if (!profiled && Environment.GetEnvironmentVariable(Program.JitVariable) == "1")
        {
            JitProfile.Start("bdn-" + BenchmarkName(GetType()));
            profiled = true;
        }
        b ??= Device == "cuda" ? IlgpuBackend.CreateCuda() : new CpuBackend();
        var w = make(b, PvlrConfig.FromPreset(Preset));
        work.Add(w);
        return w;
    }

    /// The benchmark class itself, not the Runnable_N class that BenchmarkDotNet generates from it.
    public static string BenchmarkName(Type t)
    {
        while (t.Assembly != typeof(OnDevices).Assembly) t = t.BaseType;
        return t.Name;
    }

    protected void Run(Bench.Workload w)
    {
        w.Run();
        b.Synchronize();
    }

    /// GEMM FLOPs issued on this benchmark's device so far: the tests check with it that each benchmark
    /// does the work its GFLOP/s column counts, and the same work as `pvlr bench`'s row.
    public long GemmFlops => b?.GemmFlops ?? 0;

    [GlobalCleanup] public void Close()
    {
        foreach (var w in work) w.Dispose();
        work.Clear();
        b?.Dispose();
        b = null;
    }
}

public sealed class GflopsColumn : IColumn
{
    public string Id => "GFlops";
    public string ColumnName => "GFLOP/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "achieved GFLOP/s (and % of the 430 GFLOP/s 2-core FMA peak)";
    public bool IsAvailable(Summary s) => true; public bool IsDefault(Summary s,
        BenchmarkDotNet.Running.BenchmarkCase b) => false;
    public string GetValue(Summary s, BenchmarkDotNet.Running.BenchmarkCase b) => GetValue(s, b, SummaryStyle.Default);
    public string GetValue(Summary s, BenchmarkDotNet.Running.BenchmarkCase b, SummaryStyle st)
    {
        var r = s[b];
        if (r?.ResultStatistics == null) return "-";
        var inst = (IFlops)Activator.CreateInstance(b.Descriptor.Type)!;
        double flops = inst.Flops(b.Descriptor.WorkloadMethod.Name);
        // a whole step or pass: see Mean
        if (flops <= 0) return "-";
        double gf = flops / r.ResultStatistics.Mean;                                       // ns -> GFLOP/s
        bool cuda = b.Parameters.Items.Any(p => p.Name == "Device" && (string)p.Value == "cuda");
        double peak = cuda ? GpuPeak.Value : new CpuBackend().PeakGflops;
        return peak > 0 ? $"{gf:F1} ({100 * gf / peak:F0}%)" : $"{gf:F1}";
    }

    static readonly Lazy<double> GpuPeak = new(() => { using var g = IlgpuBackend.CreateCuda(); return g.PeakGflops; });
}

/// The Conv1d 2048->2048 k=3 over B=10, T=320 as one GEMM: (3200 x 6144) . (6144 x 2048).
public class GemmHotShape : OnDevices, IFlops
{
    const int M = 3200, K = 6144, N = 2048;
    Bench.Workload gemm;
    public double Flops(string m) => 2.0 * M * N * K;
    [GlobalSetup] public void Setup() => gemm = Open((b, _) => Bench.GemmWork(b, M, K, N));
    [Benchmark] public void Sgemm() => Run(gemm);
}

/// fusion Conv1d 2048->2048, k=3, B=10, T=320, forward and forward+backward through the tape. The GEMMs
/// run over the zero-padded batch as one sequence, B (T + 2) - 2 rows (the 18 rows that straddle two
/// videos are computed and dropped), and GFLOP/s counts that issued work, as `pvlr bench` does.
public class Conv1dHotShape : OnDevices, IFlops
{
    const int Bt = 10, T = 320, C = 2048;
    Bench.Workload fwd, fwdBwd;
    public double Flops(string m) => (m == nameof(Forward) ? 1 : 3) * 2.0 * (Bt * (T + 2) - 2) * C * C * 3;
    // each benchmark process sets up only the workload its method runs
    [GlobalSetup(Target = nameof(Forward))] public void SetupForward() => fwd = Open((b, _) => Bench.ConvWork(b, Bt,
        T, C, backward: false));
    [GlobalSetup(Target = nameof(ForwardBackward))] public void SetupForwardBackward() => fwdBwd = Open((b,
        _) => Bench.ConvWork(b, Bt, T, C));
    [Benchmark] public void Forward() => Run(fwd);
    [Benchmark] public void ForwardBackward() => Run(fwdBwd);
}

/// A benchmark of one whole model workload of the preset (a tower pass, a step, a test-set pass). Its
/// GFLOP/s is left to `pvlr bench`, which counts the GEMM work issued; BenchmarkDotNet's Mean is the figure.
public abstract class ModelWorkload : OnDevices, IFlops
{
    protected Bench.Workload work;
    protected abstract Bench.Workload Make(Backend b, PvlrConfig cfg);
    public double Flops(string m) => 0;
    [GlobalSetup] public void Setup() => work = Open(Make);
}

/// The CLIP text tower on the learnable prompt (21 prompts up to 13 tokens, run as 144 shared-prefix token rows; 12
/// layers x 512), forward and backward.
public class ClipTextTower : ModelWorkload
{
    protected override Bench.Workload Make(Backend b, PvlrConfig cfg) => Bench.ClipTowerWork(b, cfg);
    [Benchmark] public void ForwardBackward() => Run(work);
}

/// One full PVLR training step at the paper shapes (B=10, T=320): forward, every loss, backward, Adam.
/// Mean = s/step.
public class TrainingStep : ModelWorkload
{
    protected override Bench.Workload Make(Backend b, PvlrConfig cfg) => Bench.TrainStepWork(b, cfg);
    [Benchmark] public void Step() => Run(work);
}

/// Test-set inference over 212 videos of the real THUMOS14 test lengths, plus the THUMOS evaluation
/// against the real ground truth. The ShortRun job's Mean is seconds per pass after BenchmarkDotNet's
/// warm-up (a steady pass: a trainer's periodic evaluation, a service); the ColdStart job times the first
/// pass alone in each of 3 fresh processes (a one-shot `pvlr eval`: JIT, the first writes of the
/// transformed weights and the arena).
[Config(typeof(ColdStartConfig))]
public class TestSetInference : ModelWorkload
{
    protected override Bench.Workload Make(Backend b, PvlrConfig cfg) => Bench.InferenceWork(b, cfg);
    [Benchmark] public void InferenceAndEvaluation() => Run(work);
}

/// The cold-start job: 3 fresh processes, one call each, no warm-up. Left out with --inprocess, where no
/// call after the first is cold.
public sealed class ColdStartConfig : ManualConfig
{
    public ColdStartConfig()
    {
        if (!Program.InProcess)
            AddJob(Job.Default.WithStrategy(BenchmarkDotNet.Engines.RunStrategy.ColdStart)
                .WithLaunchCount(3).WithWarmupCount(0).WithIterationCount(1)
                .WithEnvironmentVariables(Program.AsTheCli).WithId("ColdStart"));
    }
}
