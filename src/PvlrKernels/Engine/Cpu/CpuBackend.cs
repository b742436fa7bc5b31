// The managed CPU backend: 64-byte aligned native buffers, kernel bodies run over raw pointers on the
// cores (CpuPool), and the packed Vector512 SGEMM (CpuGemm). This is the real CPU path; ILGPU's CPU
// accelerator is an emulator (0.1-0.3 GFLOP/s) and serves only to test the ILGPU kernels.
// One class in several files by family (Cpu/CpuBackend.*.cs): this one holds storage transfers and
// the launch of kernel bodies over the cores.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using PvlrKernels.Kernels;
using TP = System.Numerics.Tensors.TensorPrimitives;

namespace PvlrKernels.Engine;

public sealed unsafe class CpuStorage : Storage
{
    public float* Ptr;
    readonly nuint mapped;                  // bytes mapped with mmap (0: NativeMemory)

    /// Buffers of 4 MiB and more are mapped on Linux with transparent huge pages requested: the kernel
    /// hands them out zeroed (no memset), and first touch faults once per 2 MiB instead of per 4 KiB. On
    /// virtualized hosts first-touching 2 GiB took 5.7-7.5 s with 4 KiB pages and 1.3-2.0 s with huge pages.
    public CpuStorage(long n)
    {
        Length = n;
        long bytes = Math.Max(n, 16) * 4;
        if (bytes >= HugeMin && OperatingSystem.IsLinux() && (Ptr = (float*)Mmap((nuint)bytes)) != null)
            mapped = (nuint)bytes;
        else
        {
            try { Ptr = (float*)NativeMemory.AlignedAlloc((nuint)bytes, 64); }
            catch (OutOfMemoryException e) { throw new OutOfMemoryException($"cpu: out of host memory allocating "
                + $"{bytes >> 20} MiB; use a smaller batch or preset", e); }
            NativeMemory.Clear(Ptr, (nuint)bytes);
        }
        GC.AddMemoryPressure(bytes);
    }

    const long HugeMin = 4L << 20;

    static void* Mmap(nuint bytes)
    {
        const int ProtRw = 3, MapPrivateAnonymous = 0x22, MadvHugepage = 14;
        nint p = Native.mmap(0, bytes, ProtRw, MapPrivateAnonymous, -1, 0);
        if (p == -1)
            throw new OutOfMemoryException($"cpu: out of host memory mapping {bytes >> 20} MiB; use a smaller batch "
                + $"or preset");
        Native.madvise(p, bytes, MadvHugepage);       // advice only: without THP the pages are simply 4 KiB
        return (void*)p;
    }

    static class Native
    {
        [DllImport("libc", SetLastError = true)] public static extern nint mmap(nint addr, nuint length, int prot,
            int flags, int fd, nint offset);
        [DllImport("libc")] public static extern int madvise(nint addr, nuint length, int advice);
        [DllImport("libc")] public static extern int munmap(nint addr, nuint length);
    }

    public Span<float> Span(long off, int n) => new(Ptr + off, n);
    void Free()
    {
        if (Ptr == null) return;
        if (mapped != 0) Native.munmap((nint)Ptr, mapped); else NativeMemory.AlignedFree(Ptr);
        Ptr = null;
    }
    public override void Dispose()
    {
        if (Ptr == null) return;
        Free();
        GC.RemoveMemoryPressure(Math.Max(Length, 16) * 4);
        GC.SuppressFinalize(this);
    }
    ~CpuStorage() => Free();
}

public sealed unsafe partial class CpuBackend : Backend<PtrMem>
{
    public override string Name => "cpu";
    public override bool IsGpu => false;
    public int Threads { get; } = Environment.ProcessorCount;

    /// The 16-lane paths (ReLU, top-k, the sigmoid gate, Philox) run in AVX-512, or without it as the two
    /// Vector256 halves the runtime gives Vector512 then; the same bits either way.
    static readonly bool Lanes16 = Avx512DQ.IsSupported || Avx2.IsSupported;
    /// Measured on this machine (CpuPeak): ~430 GFLOP/s on 2 Zen 5 cores, about half that on 2 Zen 4 cores,
    /// whose FMA units take a 512-bit FMA in two halves.
    public override double PeakGflops => CpuPeak.Gflops;

    public override Storage Allocate(long n) => new CpuStorage(n);
    /// 1 GiB on Linux: a mapped chunk costs only the pages a step writes, and one chunk keeps the blocks a test-time
    /// forward releases in one range. With chunks of 4, 8, 16, ... MiB the paper inference touched 178 MiB
    /// of arena (a block too large for a chunk's rest skips to the next); in one chunk, 121 MiB.
    // elsewhere the buffer is cleared when allocated
    public override long ArenaChunkFloats => OperatingSystem.IsLinux() ? 1L << 28 : 1 << 20;
    static CpuStorage S(Storage s) => (CpuStorage)s;
    /// The address of a place in host memory.
    static float* P(Buf b) => S(b.Storage).Ptr + b.Offset;

    public override void Upload(Buf dst, ReadOnlySpan<float> src)
    {
        CheckRange("upload", dst, src.Length);
        Uploads++;
        src.CopyTo(new Span<float>(P(dst), src.Length));
    }
    public override void UploadColumns(Buf dst, ReadOnlyMemory<float> src, int rows, int srcWidth, int from, int width)
    {
        CheckColumns(dst, src, rows, srcWidth, from, width);
        Uploads++;
        float* d = P(dst);
        int parts = (long)rows * width >= 1 << 16 ? Threads : 1;             // below 256 KiB one core copies
        CpuPool.For(parts, p =>
        {
            for (int r = (int)((long)rows * p / parts), end = (int)((long)rows * (p + 1) / parts); r < end; r++)
                src.Span.Slice(r * srcWidth + from, width).CopyTo(new Span<float>(d + (long)r * width, width));
        }, parts);
    }
    public override void Download(Buf src, Span<float> dst)
    {
        CheckRange("download", src, dst.Length);
        Downloads++;
        new Span<float>(P(src), dst.Length).CopyTo(dst);
    }
    public override void Synchronize() { }
    public override void Dispose() { }

    protected override PtrMem Mem(Buf b, long len) => new(P(b));

    protected override void Launch<TK>(long n, TK body)
    {
        using var _ = Profiler.Time(typeof(TK), n);
        Run(n, body);
    }

    /// Rows of work (attention's query rows, LayerNorm's rows) go over the cores once their work is that of
    /// 64K values, whatever their count: one CLIP attention call is 2184 rows of 13 x 64 x 3 values, which
    /// Launch's count threshold ran on one core. Each row writes only its own outputs: the same bits.
    protected override void LaunchRows<TK>(long rows, long perRow, TK body)
    {
        using var _ = Profiler.Time(typeof(TK), rows);
        Run(rows, body, rows * Math.Max(perRow, 1) >= 1 << 16);
    }

    void Run<TK>(long n, TK body, bool split = false) where TK : struct, IKernel
    {
        if (n <= 0) return;
        int total = (int)n;
        if ((total < 4096 && !(split && total > 1)) || Threads == 1)
        {
            for (int i = 0; i < total; i++) body.Execute(i);
            return;
        }
        int chunks = Math.Min(total, Threads * 8), per = (total + chunks - 1) / chunks;
        CpuPool.For(chunks, c =>
        {
            var k = body;
            int s = c * per, e = Math.Min(total, s + per);
            for (int i = s; i < e; i++) k.Execute(i);
        }, Threads);
    }

    // ---- CPU fast paths for data movement and plain sums: the same results as the generic kernel bodies
    // (which remain the ILGPU path and the fallback), but row-wise with TensorPrimitives instead of one
    // index decomposition per element. At paper shapes the generic Copy4/SumTo/Reduce cost ~2.5 s/step.

    /// Runs body(i) for i in [0, n) in contiguous blocks over the cores when `work` (floats) is large.
    void Rows(long n, long work, Action<long, long> body)
    {
        if (n <= 0) return;
        if (work < (1 << 16) || Threads == 1 || n == 1)
        {
            body(0, n);
            return;
        }
        int chunks = (int)Math.Min(n, Threads * 4);
        long per = (n + chunks - 1) / chunks;
        CpuPool.For(chunks, c => { long s = c * per, e = Math.Min(n, s + per); if (s < e) body(s, e); }, Threads);
    }

    /// Runs body(start, end) over [0, n) in ranges of whole 64K-element blocks, split over the cores.
    void Elements(long n, Action<long, long> body) =>
        Rows((n + 65535) / 65536, n, (a, e) => body(a * 65536, Math.Min(n, e * 65536)));

    /// The packed SGEMM (CpuGemm) for every product, batched.
    public override void Gemm(Buf c, Buf a, Buf b, GemmParams p)
    {
        CheckGemm(p, c, a, b);
        long flops = 2L * p.M * p.N * p.K * p.Batch;
        using var _ = Profiler.Time(flops > 200_000_000 ? "Gemm large" : "Gemm small", flops);
        CpuGemm.SgemmBatch(p.Batch, p.M, p.N, p.K, p.Alpha, P(a), p.BatchA, p.RsA, p.CsA,
            P(b), p.BatchB, p.RsB, p.CsB, p.Beta, P(c), p.BatchC, p.Ldc, panelB: p.PanelB != 0);
    }
}
