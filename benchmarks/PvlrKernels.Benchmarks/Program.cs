// BenchmarkDotNet benchmarks at PVLR's hot shapes, on the CPU and (where a device exists) on CUDA.
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
using PvlrKernels.Engine;
using PvlrKernels.Kernels;

namespace PvlrKernels.Benchmarks;

public static class Program
{
    public static void Main(string[] args)
    {
        bool inProcess = args.Contains("--inprocess");
        var job = Job.ShortRun.WithWarmupCount(2).WithIterationCount(5);
        if (inProcess) job = job.WithToolchain(BenchmarkDotNet.Toolchains.InProcess.Emit.InProcessEmitToolchain.Instance);
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args.Where(a => a != "--inprocess").ToArray(),
            DefaultConfig.Instance.AddJob(job).AddColumn(new GflopsColumn()));
    }
}

public interface IFlops { double Flops(string method); }

/// The devices a benchmark runs on: the CPU, and CUDA where ILGPU finds a device.
public abstract class OnDevices
{
    public static IEnumerable<string> Devices => IlgpuBackend.CudaAvailable() ? new[] { "cpu", "cuda" } : new[] { "cpu" };
    [ParamsSource(nameof(Devices))] public string Device { get; set; } = "cpu";
    protected Backend b;
    protected void Open() => b = Device == "cuda" ? IlgpuBackend.CreateCuda() : new CpuBackend();
    [GlobalCleanup] public void Close() => b?.Dispose();
}

public sealed class GflopsColumn : IColumn
{
    public string Id => "GFlops"; public string ColumnName => "GFLOP/s";
    public bool AlwaysShow => true; public ColumnCategory Category => ColumnCategory.Custom; public int PriorityInCategory => 0;
    public bool IsNumeric => true; public UnitType UnitType => UnitType.Dimensionless; public string Legend => "achieved GFLOP/s (and % of the 430 GFLOP/s 2-core FMA peak)";
    public bool IsAvailable(Summary s) => true; public bool IsDefault(Summary s, BenchmarkDotNet.Running.BenchmarkCase b) => false;
    public string GetValue(Summary s, BenchmarkDotNet.Running.BenchmarkCase b) => GetValue(s, b, SummaryStyle.Default);
    public string GetValue(Summary s, BenchmarkDotNet.Running.BenchmarkCase b, SummaryStyle st)
    {
        var r = s[b]; if (r?.ResultStatistics == null) return "-";
        var inst = (IFlops)Activator.CreateInstance(b.Descriptor.Type)!;
        double gf = inst.Flops(b.Descriptor.WorkloadMethod.Name) / r.ResultStatistics.Mean;   // ns -> GFLOP/s
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
    Storage a, w, c;
    public double Flops(string m) => 2.0 * M * N * K;
    [GlobalSetup] public void Setup()
    {
        Open(); a = b.Allocate((long)M * K); w = b.Allocate((long)K * N); c = b.Allocate((long)M * N);
        var r = new Random(1); var h = new float[(long)K * N]; for (int i = 0; i < h.Length; i++) h[i] = (float)r.NextDouble() - 0.5f;
        b.Upload(w, 0, h); b.Upload(a, 0, h.AsSpan(0, M * K > h.Length ? h.Length : M * K));
    }
    [Benchmark] public void Sgemm()
    {
        b.Gemm(c, 0, a, 0, w, 0, new GemmParams { Batch = 1, M = M, N = N, K = K, RsA = K, CsA = 1, RsB = N, CsB = 1, Ldc = N, Alpha = 1, Beta = 0 });
        b.Synchronize();
    }
}

/// fusion Conv1d 2048->2048, k=3, B=10, T=320, forward and forward+backward through the tape.
public class Conv1dHotShape : OnDevices, IFlops
{
    const int Bt = 10, T = 320, C = 2048;
    ParameterStore ps; Graph g; float[] x;
    public double Flops(string m) => (m == nameof(Forward) ? 1 : 3) * 2.0 * Bt * T * C * C * 3;
    [GlobalSetup] public void Setup()
    {
        Open(); ps = new ParameterStore(); ps.Add("w", new[] { C, C, 3 }); ps.Add("b", new[] { C }); ps.Allocate(b);
        g = new Graph(b, ps); x = new float[Bt * T * C]; var r = new Random(2); for (int i = 0; i < x.Length; i++) x[i] = (float)r.NextDouble();
    }
    [Benchmark] public void Forward() { g.Reset(); using (g.NoGrad()) g.Conv1d(g.FromHost(x, Bt, T, C), ps["w"].Value, ps["b"].Value); b.Synchronize(); }
    [Benchmark] public void ForwardBackward()
    {
        g.Reset(); ps.ZeroGrad();
        var xt = g.FromHost(x, Bt, T, C); xt.RequiresGrad = true;
        var y = g.Conv1d(xt, ps["w"].Value, ps["b"].Value);
        g.Backward(g.MeanAll(y));
        b.Synchronize();
    }
}
