// BenchmarkDotNet benchmarks at PVLR's hot shapes. GFLOP/s = FLOPs / mean time, printed by the
// GFlops column; the FMA peak of the 2-core AVX-512 machine is ~430 GFLOP/s (docs/ilgpu.md §13).
//   dotnet run -c Release --project benchmarks/PvlrKernels.Benchmarks -- --filter '*'
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
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args,
        DefaultConfig.Instance.AddJob(Job.ShortRun.WithWarmupCount(2).WithIterationCount(5)).AddColumn(new GflopsColumn()));
}

public interface IFlops { double Flops(string method); }

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
        return $"{gf:F1} ({100 * gf / 430:F0}%)";
    }
}

/// The Conv1d 2048->2048 k=3 over B=10, T=320 as one GEMM: (3200 x 6144) . (6144 x 2048).
public class GemmHotShape : IFlops
{
    const int M = 3200, K = 6144, N = 2048;
    CpuBackend b; Storage a, w, c;
    public double Flops(string m) => 2.0 * M * N * K;
    [GlobalSetup] public void Setup()
    {
        b = new CpuBackend(); a = b.Allocate((long)M * K); w = b.Allocate((long)K * N); c = b.Allocate((long)M * N);
        var r = new Random(1); var h = new float[(long)K * N]; for (int i = 0; i < h.Length; i++) h[i] = (float)r.NextDouble() - 0.5f;
        b.Upload(w, 0, h); b.Upload(a, 0, h.AsSpan(0, M * K > h.Length ? h.Length : M * K));
    }
    [Benchmark] public void Sgemm() => b.Gemm(c, 0, a, 0, w, 0, new GemmParams { Batch = 1, M = M, N = N, K = K, RsA = K, CsA = 1, RsB = N, CsB = 1, Ldc = N, Alpha = 1, Beta = 0 });
}

/// fusion Conv1d 2048->2048, k=3, B=10, T=320, forward and forward+backward through the tape.
public class Conv1dHotShape : IFlops
{
    const int Bt = 10, T = 320, C = 2048;
    CpuBackend b; ParameterStore ps; Graph g; float[] x;
    public double Flops(string m) => (m == nameof(Forward) ? 1 : 3) * 2.0 * Bt * T * C * C * 3;
    [GlobalSetup] public void Setup()
    {
        b = new CpuBackend(); ps = new ParameterStore(); ps.Add("w", new[] { C, C, 3 }); ps.Add("b", new[] { C }); ps.Allocate(b);
        g = new Graph(b, ps); x = new float[Bt * T * C]; var r = new Random(2); for (int i = 0; i < x.Length; i++) x[i] = (float)r.NextDouble();
    }
    [Benchmark] public void Forward() { g.Reset(); using (g.NoGrad()) g.Conv1d(g.FromHost(x, Bt, T, C), ps["w"].Value, ps["b"].Value); }
    [Benchmark] public void ForwardBackward()
    {
        g.Reset(); ps.ZeroGrad();
        var xt = g.FromHost(x, Bt, T, C); xt.RequiresGrad = true;
        var y = g.Conv1d(xt, ps["w"].Value, ps["b"].Value);
        g.Backward(g.MeanAll(y));
    }
}
