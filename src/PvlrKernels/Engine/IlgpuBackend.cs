// The ILGPU backend: CUDA when a device exists, else ILGPU's CPU accelerator (an emulator, for tests on
// tiny shapes only). Every IKernel body is compiled once per accelerator through Launcher.Run<TK> and
// the launcher delegate is cached; GEMM is the shared-memory tiled kernel.
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using PvlrKernels.Kernels;

namespace PvlrKernels.Engine;

public sealed class IlgpuStorage : Storage
{
    public MemoryBuffer1D<float, Stride1D.Dense> Buffer;
    public IlgpuStorage(Accelerator acc, long n)
    {
        Length = n;
        Buffer = acc.Allocate1D<float>(Math.Max(n, 1));
        Buffer.MemSetToZero();
    }
    public override void Dispose() { Buffer?.Dispose(); Buffer = null; }
}

public sealed class IlgpuBackend : Backend<ViewMem>
{
    static readonly object ContextLock = new();
    static Context shared;
    readonly Accelerator acc;
    readonly Dictionary<Type, Delegate> kernels = new();
    readonly bool tile16;
    Action<KernelConfig, GemmParams, ArrayView<float>, ArrayView<float>, ArrayView<float>> gemm;

    public override string Name { get; }
    public override bool IsGpu => acc.AcceleratorType == AcceleratorType.Cuda;
    public Accelerator Accelerator => acc;

    IlgpuBackend(Accelerator acc, string name) { this.acc = acc; Name = name; tile16 = acc.MaxNumThreadsPerGroup >= 256; }

    static Context Ctx()
    {
        lock (ContextLock) return shared ??= Context.Create(b => b.CPU().Cuda().EnableAlgorithms());
    }

    public static bool CudaAvailable()
    {
        try { return Ctx().GetCudaDevices().Count > 0; } catch { return false; }
    }

    public static IlgpuBackend CreateCuda()
    {
        var devs = Ctx().GetCudaDevices();
        if (devs.Count == 0) throw new InvalidOperationException("no CUDA device found");
        return new IlgpuBackend(devs[0].CreateAccelerator(Ctx()), "cuda:" + devs[0].Name);
    }

    /// The emulator: 4 threads/warp x 4 warps = 16-thread groups (enough for Tile4 GEMM), one multiprocessor.
    public static IlgpuBackend CreateCpuEmulator()
    {
        var dev = new CPUDevice(4, 4, 1);
        return new IlgpuBackend(dev.CreateCPUAccelerator(Ctx(), CPUAcceleratorMode.Parallel), "ilgpu-cpu");
    }

    public override Storage Allocate(long n)
    {
        try { return new IlgpuStorage(acc, n); }
        catch (Exception e) when (e is AcceleratorException || e is OutOfMemoryException || e.GetType().Name.Contains("OutOfMemory"))
        {
            throw new OutOfMemoryException($"{Name}: out of device memory allocating {n * 4L / (1 << 20)} MiB; use a smaller batch or --device cpu", e);
        }
    }
    static IlgpuStorage S(Storage s) => (IlgpuStorage)s;

    public override void Upload(Storage dst, long off, ReadOnlySpan<float> src)
    {
        if (off < 0 || off + src.Length > dst.Length) throw new ShapeException($"upload: [{off}, {off + src.Length}) outside {dst.Length}");
        if (src.Length == 0) return;
        S(dst).Buffer.View.BaseView.SubView(off, src.Length).CopyFromCPU(src);
    }
    public override void Download(Storage src, long off, Span<float> dst)
    {
        if (off < 0 || off + dst.Length > src.Length) throw new ShapeException($"download: [{off}, {off + dst.Length}) outside {src.Length}");
        if (dst.Length == 0) return;
        acc.Synchronize();
        S(src).Buffer.View.BaseView.SubView(off, dst.Length).CopyToCPU(dst);
    }
    public override void Synchronize() => acc.Synchronize();
    public override void Dispose() { acc.Dispose(); }

    protected override ViewMem Mem(Storage s, long off, long len) => new(S(s).Buffer.View.SubView(off, len));

    protected override void Launch<TK>(long n, TK body)
    {
        if (n <= 0) return;
        if (!kernels.TryGetValue(typeof(TK), out var d))
            kernels[typeof(TK)] = d = acc.LoadAutoGroupedStreamKernel<Index1D, TK>(Launcher.Run);
        ((Action<Index1D, TK>)d)((int)n, body);
    }

    public override void Gemm(Storage c, long co, Storage a, long ao, Storage b, long bo, GemmParams p)
    {
        CheckGemm(p, c, co, a, ao, b, bo);
        if (p.M == 0 || p.N == 0) return;
        int t = tile16 ? 16 : 4;
        gemm ??= tile16
            ? acc.LoadStreamKernel<GemmParams, ArrayView<float>, ArrayView<float>, ArrayView<float>>(GemmKernels.Tiled<Tile16>)
            : acc.LoadStreamKernel<GemmParams, ArrayView<float>, ArrayView<float>, ArrayView<float>>(GemmKernels.Tiled<Tile4>);
        var grid = new Index3D((p.N + t - 1) / t, (p.M + t - 1) / t, p.Batch);
        var view = (Storage s, long o) => S(s).Buffer.View.SubView(o, s.Length - o);
        gemm(new KernelConfig(grid, new Index3D(t, t, 1)), p, view(a, ao), view(b, bo), view(c, co));
    }
}
