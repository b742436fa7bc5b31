// The ILGPU backend: CUDA when a device exists, else ILGPU's CPU accelerator (an emulator, for tests on
// tiny shapes only). Every IKernel body is compiled once per accelerator through Launcher.Run<TK> and
// the launcher delegate is cached. GEMM is the register-blocked kernel (GemmKernels.Blocked): 128x128
// tiles when they fill the GPU, 64x64 tiles when a product is too small to, 32x32 on the emulator.
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
    public override void Dispose()
    {
        Buffer?.Dispose();
        Buffer = null;
    }
}

public sealed class IlgpuBackend : Backend<ViewMem>
{
    static readonly object ContextLock = new();
    /// ILGPU's optimization level for every kernel (and for `pvlr bench --ptx`): O2 unrolls and inlines
    /// enough that the GEMM's k loop is almost all FFMA (docs/performance.md).
    public const OptimizationLevel Optimization = OptimizationLevel.O2;

    static Context shared;
    readonly Accelerator acc;
    readonly Dictionary<Type, Delegate> kernels = new();
    readonly Dictionary<Type, Action<KernelConfig, GemmParams, ArrayView<float>, ArrayView<float>,
        ArrayView<float>>> gemms = new();

    public override string Name { get; }
    public override bool IsGpu => acc.AcceleratorType == AcceleratorType.Cuda;

    /// fp32 FMA peak: multiprocessors x fp32 lanes per multiprocessor (64 up to sm_80, 128 from sm_86 on)
    /// x 2 FLOP x the boost clock. 0 on the emulator.
    public override double PeakGflops
    {
        get
        {
            if (acc is not CudaAccelerator cu) return 0;
            var arch = cu.Architecture;
            int lanes = arch.Major > 8 || (arch.Major == 8 && arch.Minor >= 6) ? 128 : 64;
            // ClockRate in MHz (1980 on an H100 SXM)
            return (double)cu.NumMultiprocessors * lanes * 2 * cu.ClockRate / 1e3;
        }
    }
    public Accelerator Accelerator => acc;

    IlgpuBackend(Accelerator acc, string name) { this.acc = acc; Name = name; }

    static Context Ctx()
    {
        lock (ContextLock) return shared ??= Context.Create(b => b.CPU().Cuda().EnableAlgorithms()
            .Optimize(Optimization));
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

    /// The emulator: 4 threads/warp x 4 warps = 16-thread groups (enough for the Gemm4 shape), one multiprocessor.
    /// ILGPU's CPU emulator with warps of `warpSize` threads and groups of up to `warpsPerGroup` warps
    /// (the default, 16 threads a group, runs the 32x32 GEMM tiles; 32 x 8 runs the GPU's 128x128 ones).
    public static IlgpuBackend CreateCpuEmulator(int warpSize = 4, int warpsPerGroup = 4)
    {
        var dev = new CPUDevice(warpSize, warpsPerGroup, 1);
        return new IlgpuBackend(dev.CreateCPUAccelerator(Ctx(), CPUAcceleratorMode.Parallel), "ilgpu-cpu");
    }

    public override Storage Allocate(long n)
    {
        try { return new IlgpuStorage(acc, n); }
        catch (Exception e) when (e is AcceleratorException || e is OutOfMemoryException
            || e.GetType().Name.Contains("OutOfMemory"))
        {
            throw new OutOfMemoryException($"{Name}: out of device memory allocating {n * 4L / (1 << 20)} MiB; use a "
                + $"smaller batch or --device cpu", e);
        }
    }
    static IlgpuStorage S(Storage s) => (IlgpuStorage)s;
    /// The n floats at a place, as a device view.
    static ArrayView<float> View(Buf b, long n) => S(b.Storage).Buffer.View.BaseView.SubView(b.Offset, n);

    public override void Upload(Buf dst, ReadOnlySpan<float> src)
    {
        CheckRange("upload", dst, src.Length);
        if (src.Length == 0) return;
        Uploads++;
        View(dst, src.Length).CopyFromCPU(src);
    }
    public override void Download(Buf src, Span<float> dst)
    {
        CheckRange("download", src, dst.Length);
        if (dst.Length == 0) return;
        Downloads++;
        acc.Synchronize();
        View(src, dst.Length).CopyToCPU(dst);
    }
    public override void Synchronize() => acc.Synchronize();
    public override void Dispose()
    {
        scratch?.Dispose();
        acc.Dispose();
    }

    protected override ViewMem Mem(Buf b, long len) => new(View(b, len));

    protected override void Launch<TK>(long n, TK body)
    {
        if (n <= 0) return;
        if (!kernels.TryGetValue(typeof(TK), out var d))
            kernels[typeof(TK)] = d = acc.LoadAutoGroupedStreamKernel<Index1D, TK>(Launcher.Run);
        using var _ = Profiler.Time(typeof(TK), n, this);
        ((Action<Index1D, TK>)d)((int)n, body);
    }

    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, float> l2rows;

    /// Contiguous rows (inner = 1) go one warp per row (L2NormWarp); strided ones one thread per column.
    public override void L2Normalize(Buf y, Buf norm, Buf x, int outer, int n, int inner, float eps)
    {
        if (inner != 1 || n < WarpRowMin)
        {
            base.L2Normalize(y, norm, x, outer, n, inner, eps);
            return;
        }
        long t = (long)outer * n;
        const string op = "l2norm";
        l2rows ??= acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int,
            float>(L2NormWarp.Rows);
        using var _ = Profiler.Time("L2NormWarp", outer, this);
        l2rows(WarpRows(outer), V(op, y, t), V(op, norm, outer), V(op, x, t), outer, n, eps);
    }

    /// Rows at least this long, stored contiguously, go one warp per row (the row kernels' GPU form).
    public const int WarpRowMin = 64;

    /// The launch of one warp per row: groups of (warp, up to 8) threads, each warp one row.
    KernelConfig WarpRows(long rows)
    {
        int warp = acc.WarpSize, per = Math.Max(1, Math.Min(8, acc.MaxNumThreadsPerGroup / warp));
        return new KernelConfig(new Index2D((int)((rows + per - 1) / per), 1), new Index2D(warp, per));
    }

    Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int, int> softmaxRows;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int> softmaxRowsBackward;

    /// Softmax over contiguous rows (inner = 1) of at least WarpRowMin: one warp per row (SoftmaxWarp).
    public override void Softmax(Buf y, Buf x, int outer, int n, int inner, bool log)
    {
        if (inner != 1 || n < WarpRowMin)
        {
            base.Softmax(y, x, outer, n, inner, log);
            return;
        }
        long t = (long)outer * n;
        const string op = "softmax";
        softmaxRows ??= acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int, int>(SoftmaxWarp.Forward);
        using var _ = Profiler.Time("SoftmaxWarp", outer, this);
        softmaxRows(WarpRows(outer), V(op, y, t), V(op, x, t), outer, n, log ? 1 : 0);
    }

    public override void SoftmaxBackward(Buf dx, Buf y, Buf dy, int outer, int n, int inner, bool log)
    {
        if (inner != 1 || n < WarpRowMin)
        {
            base.SoftmaxBackward(dx, y, dy, outer, n, inner, log);
            return;
        }
        long t = (long)outer * n;
        const string op = "softmax.backward";
        softmaxRowsBackward ??= acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int,
            int>(SoftmaxWarp.Backward);
        using var _ = Profiler.Time("SoftmaxWarp.Backward", outer, this);
        softmaxRowsBackward(WarpRows(outer), V(op, dx, t), V(op, y, t), V(op, dy, t), outer, n, log ? 1 : 0);
    }

    /// Heads of at least this many values go one warp per attention row (AttentionWarp).
    public const int WarpHeadMin = 16;

    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttnParams> attentionRows;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        AttnParams> attentionRowsQ, attentionRowsKV;

    /// Attention one warp per (n, h, i) row where the head has at least WarpHeadMin values.
    public override void Attention(Buf o, Buf p, Buf qkv, AttnParams a)
    {
        CheckAttn(a);
        if (a.W / a.H < WarpHeadMin)
        {
            base.Attention(o, p, qkv, a);
            return;
        }
        const string op = "attention";
        long rows = (long)a.Nb * a.H * a.L, nq = (long)a.Nb * a.L * 3 * a.W, no = (long)a.Nb * a.L * a.W;
        attentionRows ??= acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, AttnParams>(
            AttentionWarp.Forward);
        using var _ = Profiler.Time("AttentionWarp", rows, this);
        attentionRows(WarpRows(rows), V(op, o, no), V(op, p, rows * a.L), V(op, qkv, nq), a);
    }

    public override void AttentionBackward(Buf dqkv, Buf ds, Buf dout, Buf p, Buf qkv, AttnParams a)
    {
        CheckAttn(a);
        if (a.W / a.H < WarpHeadMin)
        {
            base.AttentionBackward(dqkv, ds, dout, p, qkv, a);
            return;
        }
        const string op = "attention.backward";
        long rows = (long)a.Nb * a.H * a.L, nq = (long)a.Nb * a.L * 3 * a.W, no = (long)a.Nb * a.L * a.W;
        attentionRowsQ ??= acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, AttnParams>(AttentionWarp.BackwardQ);
        attentionRowsKV ??= acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, AttnParams>(AttentionWarp.BackwardKV);
        using var _ = Profiler.Time("AttentionWarp.Backward", rows, this);
        var (vdq, vds, vdo, vp, vq) = (V(op, dqkv, nq), V(op, ds, rows * a.L), V(op, dout, no),
            V(op, p, rows * a.L), V(op, qkv, nq));
        attentionRowsQ(WarpRows(rows), vdq, vds, vdo, vp, vq, a);
        attentionRowsKV(WarpRows(rows), vdq, vds, vdo, vp, vq, a);
    }

    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        ArrayView<float>, int, int, float> layerNormRows;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        ArrayView<float>, int, int> layerNormRowsBackward;

    /// LayerNorm rows of at least WarpRowMin: one warp per row (LayerNormWarp).
    public override void LayerNorm(Buf y, Buf mean, Buf rstd, Buf x, Buf g, Buf b, int rows, int n, float eps)
    {
        if (n < WarpRowMin)
        {
            base.LayerNorm(y, mean, rstd, x, g, b, rows, n, eps);
            return;
        }
        long t = (long)rows * n;
        const string op = "layernorm";
        layerNormRows ??= acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, int, int, float>(LayerNormWarp.Forward);
        using var _ = Profiler.Time("LayerNormWarp", rows, this);
        layerNormRows(WarpRows(rows), V(op, y, t), V(op, mean, rows), V(op, rstd, rows), V(op, x, t), V(op, g, n),
            V(op, b, n), rows, n, eps);
    }

    /// The input gradient one warp per row (LayerNormWarp.BackwardX); gamma's and beta's as the base does.
    public override void LayerNormBackward(Buf dx, Buf dg, Buf db, Buf dy, Buf x, Buf g, Buf mean, Buf rstd, int rows,
        int n, bool needDx, bool needParams)
    {
        if (n < WarpRowMin || !needDx)
        {
            base.LayerNormBackward(dx, dg, db, dy, x, g, mean, rstd, rows, n, needDx, needParams);
            return;
        }
        long t = (long)rows * n;
        const string op = "layernorm.backward";
        layerNormRowsBackward ??= acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int>(LayerNormWarp.BackwardX);
        using (Profiler.Time("LayerNormWarp.BackwardX", rows, this))
            layerNormRowsBackward(WarpRows(rows), V(op, dx, t), V(op, dy, t), V(op, x, t), V(op, g, n),
                V(op, mean, rows), V(op, rstd, rows), rows, n);
        if (needParams) base.LayerNormBackward(dx, dg, db, dy, x, g, mean, rstd, rows, n, false, true);
    }

    readonly Dictionary<Type, Action<KernelConfig, AlignParams, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        ArrayView<float>, ArrayView<float>>> alignForward = new();
    Action<KernelConfig, AlignParams, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        ArrayView<float>> fsdBackward;

    /// One group per pair, one thread per row of the table up to the group size (SequenceAlignmentGroups).
    KernelConfig AlignGroups(AlignParams a) => new(new Index1D(a.Pairs), new Index1D(Math.Min(a.L,
        acc.MaxNumThreadsPerGroup)));

    ArrayView<float> V(string op, Buf s, long len) => Checked(op, s, len).V;

    public override void AlignForward<TCell>(Buf value, Buf table, Buf aux, Buf p, Buf q, AlignParams a)
    {
        var (cells, tables) = AlignExtents("align", a);
        if (a.Pairs == 0) return;
        if (!alignForward.TryGetValue(typeof(TCell), out var run))
            alignForward[typeof(TCell)] = run = acc.LoadStreamKernel<AlignParams, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, ArrayView<float>>(SequenceAlignmentGroups.Forward<TCell>);
        using var _ = Profiler.Time($"Align<{typeof(TCell).Name}> groups", a.Pairs, this);
        run(AlignGroups(a), a, V("align", value, a.Pairs), V("align", table, tables), V("align", aux,
            TCell.AuxPerCell * cells), V("align", p, cells), V("align", q, cells));
    }

    public override void FsdBackward(Buf dm, Buf dg, Buf adjoint, Buf dValue, Buf weights, AlignParams a)
    {
        const string op = "fsd.backward";
        var (cells, _) = AlignExtents(op, a);
        if (a.Pairs == 0) return;
        fsdBackward ??= acc.LoadStreamKernel<AlignParams, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>>(SequenceAlignmentGroups.FsdBackward);
        using var _ = Profiler.Time("FsdBackward groups", a.Pairs, this);
        fsdBackward(AlignGroups(a), a, V(op, dm, cells), V(op, dg, cells), V(op, dValue, a.Pairs),
            V(op, weights, 3 * cells));
    }

    Storage scratch;
    Storage Scratch(long n)
    {
        if (scratch == null || scratch.Length < n)
        {
            scratch?.Dispose();
            scratch = Allocate(Math.Max(n, 1 << 16));
        }
        return scratch;
    }

    /// One thread per output column sums n values serially, which leaves a GPU idle when there are few
    /// columns (a loss's mean over every element: one thread). A long sum over few columns goes in two
    /// passes instead: P partial sums per column over contiguous slices (plus the ragged tail), then the
    /// P partials. The scratch buffer grows once and is kept (no allocation per step).
    /// A SumTo that reduces everything, leading dims (column sums: a bias gradient) or trailing dims (row
    /// sums) is a Reduce, which has the GPU's forms for long sums; other patterns one thread per output.
    public override void SumTo(Buf dst, Dims4 target, Buf src, Dims4 full, bool accumulate)
    {
        var runs = SumToRuns(target, full);
        if (full.Total > int.MaxValue || runs.Count == 0 || runs.Count > 2 || runs.TrueForAll(r => !r.red))
        {
            base.SumTo(dst, target, src, full, accumulate);
            return;
        }
        Checked("sum_to", dst, target.Total);
        Checked("sum_to", src, full.Total);
        if (runs.Count == 1) Reduce(dst, src, default, 1, (int)runs[0].n, 1, ReduceMode.Sum, 1f, accumulate);
        else if (runs[0].red)
            Reduce(dst, src, default, 1, (int)runs[0].n, (int)runs[1].n, ReduceMode.Sum, 1f, accumulate);
        else Reduce(dst, src, default, (int)runs[0].n, (int)runs[1].n, 1, ReduceMode.Sum, 1f, accumulate);
    }

    Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int, int, int, int> topkColumns;

    /// Top-k over columns of at least 16 values one warp per column (ArgTopKWarp: the body's picks).
    public override void ArgTopK(Buf idx, Buf x, int outer, int n, int inner, int k, bool largest)
    {
        if (n < 16)
        {
            base.ArgTopK(idx, x, outer, n, inner, k, largest);
            return;
        }
        ArgTopKBody(idx, x, outer, n, inner, k, largest);                 // the extent and k checks
        long cols = (long)outer * inner;
        topkColumns ??= acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int, int, int, int>(
            ArgTopKWarp.Columns);
        using var _ = Profiler.Time("ArgTopKWarp", cols, this);
        topkColumns(WarpRows(cols), V("topk", idx, cols * k), V("topk", x, cols * n), outer, n, inner, k,
            largest ? 1 : 0);
    }

    Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int, float, int> sumRows;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int> extremeRows;

    /// Sums, maxima and minima of contiguous rows of at least WarpRowMin go one warp per row (ReduceWarp).
    public override void Reduce(Buf y, Buf x, Buf idx, int outer, int n,
        int inner, int mode, float scale, bool accumulate)
    {
        long cols = (long)outer * inner;
        if (mode == ReduceMode.Sum && inner == 1 && n >= WarpRowMin && !(outer == 1 && n >= 4096))
        {
            sumRows ??= acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int, float, int>(
                ReduceWarp.SumRows);
            using var _ = Profiler.Time("ReduceWarp.SumRows", outer, this);
            sumRows(WarpRows(outer), V("reduce", y, outer), V("reduce", x, (long)outer * n), outer, n, scale,
                accumulate ? 1 : 0);
            return;
        }
        if (mode != ReduceMode.Sum && inner == 1 && n >= WarpRowMin)
        {
            const string op = "reduce";
            extremeRows ??= acc.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int,
                int>(ReduceWarp.ExtremeRows);
            using var _ = Profiler.Time("ReduceWarp.ExtremeRows", outer, this);
            var yv = V(op, y, outer);
            extremeRows(WarpRows(outer), yv, idx.IsNone ? yv : V(op, idx, outer), V(op, x, (long)outer * n), outer, n,
                mode, idx.IsNone ? 0 : 1);
            return;
        }
        if (mode != ReduceMode.Sum || outer != 1 || cols >= 8192 || n < 4096)
        {
            base.Reduce(y, x, idx, outer, n, inner, mode, scale, accumulate);
            return;
        }
        Checked("reduce", x, (long)n * inner);
        Checked("reduce", y, inner);
        int parts = (int)Math.Clamp(65536 / cols, 2, n / 64), len = n / parts, tail = n - parts * len;
        var tmp = Scratch((long)(parts + 1) * inner).At(0);
        base.Reduce(tmp, x, default, parts, len, inner, mode, 1f, false);
        if (tail > 0) base.Reduce(tmp + (long)parts * inner, x + (long)parts * len * inner, default, 1, tail,
            inner, mode, 1f, false);
        base.Reduce(y, tmp, default, 1, parts + (tail > 0 ? 1 : 0), inner, mode, scale, accumulate);
    }

    public override void Gemm(Buf c, Buf a, Buf b, GemmParams p)
    {
        var (ea, eb, ec) = CheckGemm(p, c, a, b);
        if (p.M == 0 || p.N == 0) return;
        if (Math.Max(ea, Math.Max(eb, ec)) > int.MaxValue)
            throw new ShapeException($"gemm: an operand spans over 2^31 floats (A {ea}, B {eb}, C {ec}); the kernel "
                + "indexes in 32 bits");
        var view = (Buf b, long extent) => View(b, Math.Max(extent, 1));
        var (run, tx, ty) = PickGemm(p);
        var grid = new Index3D((p.N + 8 * tx - 1) / (8 * tx), (p.M + 8 * ty - 1) / (8 * ty), p.Batch);
        using var _ = Profiler.Time(Profiler.Enabled ? $"Gemm {8 * tx}x{8 * ty} tiles" : null,
            2L * p.M * p.N * p.K * p.Batch, this);
        run(new KernelConfig(grid, new Index3D(tx, ty, 1)), p, view(a, ea), view(b, eb), view(c, ec));
    }

    /// The blocked GEMM for one thread-group shape, compiled on first use, with its group size.
    (Action<KernelConfig, GemmParams, ArrayView<float>, ArrayView<float>, ArrayView<float>>, int,
        int) Use<TS>() where TS : struct, IGemmShape
    {
        if (!gemms.TryGetValue(typeof(TS), out var k))
        {
            // each thread stages BK x 8 TY / (TX TY) values of A and BK x 8 TX / (TX TY) of B per slab
            int nt = TS.TX * TS.TY, perA = TS.BK * 8 * TS.TY, perB = TS.BK * 8 * TS.TX;
            if (perA % nt != 0 || perB % nt != 0 || perA / nt > 8 || perB / nt > 8
                || TS.BK * (8 * Math.Max(TS.TX, TS.TY) + GemmKernels.Pad) > GemmKernels.SlabFloats || TS.BK % 4 != 0)
                throw new InvalidOperationException($"{typeof(TS).Name}: a slab must stage a whole number of at most "
                    + $"8 values per thread, fit {GemmKernels.SlabFloats} floats and have BK a multiple of 4");
            gemms[typeof(TS)] = k = acc.LoadStreamKernel<GemmParams, ArrayView<float>, ArrayView<float>,
                ArrayView<float>>(GemmKernels.Blocked<TS>);
        }
        return (k, TS.TX, TS.TY);
    }

    /// 128 | 128k16 | 64 | 32 forces one GEMM variant (the tests of each variant on the emulator); null:
    /// automatic, or on a GPU what PVLR_GEMM_TILE says (tuning sweeps).
    public string GemmTile;
    static readonly string EnvTile = Environment.GetEnvironmentVariable("PVLR_GEMM_TILE");

    /// 32x32 tiles on the emulator; on a GPU 128x128 tiles when there are at least two per multiprocessor,
    /// else 64x64 (more groups in flight).
    (Action<KernelConfig, GemmParams, ArrayView<float>, ArrayView<float>, ArrayView<float>>, int,
        int) PickGemm(GemmParams p)
    {
        switch (GemmTile ?? (IsGpu ? EnvTile : null))
        {
            case "128": return Use<Gemm16>();
            case "128k16": return Use<Gemm16K16>();
            case "64": return Use<Gemm8>();
            case "32": return Use<Gemm4>();
        }
        if (!IsGpu) return Use<Gemm4>();
        long tiles = (long)((p.M + 127) / 128) * ((p.N + 127) / 128) * p.Batch;
        return tiles >= 2L * acc.NumMultiprocessors ? Use<Gemm16>() : Use<Gemm8>();
    }
}
