// The managed CPU backend: 64-byte aligned native buffers, kernel bodies run over raw pointers in a
// chunked Parallel.For, and the packed Vector512 SGEMM. This is the real CPU path; ILGPU's CPU
// accelerator is an emulator (0.1-0.3 GFLOP/s) and serves only to test the ILGPU kernels.
using System.Runtime.InteropServices;
using PvlrKernels.Kernels;

namespace PvlrKernels.Engine;

public sealed unsafe class CpuStorage : Storage
{
    public float* Ptr;
    public CpuStorage(long n)
    {
        Length = n;
        Ptr = (float*)NativeMemory.AlignedAlloc((nuint)(Math.Max(n, 16) * 4), 64);
        NativeMemory.Clear(Ptr, (nuint)(Math.Max(n, 16) * 4));
        GC.AddMemoryPressure(Math.Max(n, 16) * 4);
    }
    public Span<float> Span(long off, int n) => new(Ptr + off, n);
    public override void Dispose()
    {
        if (Ptr == null) return;
        NativeMemory.AlignedFree(Ptr); Ptr = null; GC.RemoveMemoryPressure(Math.Max(Length, 16) * 4);
        GC.SuppressFinalize(this);
    }
    ~CpuStorage() { if (Ptr != null) NativeMemory.AlignedFree(Ptr); }
}

public sealed unsafe class CpuBackend : Backend<PtrMem>
{
    public override string Name => "cpu";
    public override bool IsGpu => false;
    public int Threads { get; } = Environment.ProcessorCount;

    public override Storage Allocate(long n) => new CpuStorage(n);
    static CpuStorage S(Storage s) => (CpuStorage)s;

    public override void Upload(Storage dst, long off, ReadOnlySpan<float> src)
    {
        if (off < 0 || off + src.Length > dst.Length) throw new ShapeException($"upload: [{off}, {off + src.Length}) outside {dst.Length}");
        src.CopyTo(new Span<float>(S(dst).Ptr + off, src.Length));
    }
    public override void Download(Storage src, long off, Span<float> dst)
    {
        if (off < 0 || off + dst.Length > src.Length) throw new ShapeException($"download: [{off}, {off + dst.Length}) outside {src.Length}");
        new Span<float>(S(src).Ptr + off, dst.Length).CopyTo(dst);
    }
    public override void Synchronize() { }
    public override void Dispose() { }

    protected override PtrMem Mem(Storage s, long off, long len) => new(S(s).Ptr + off);

    protected override void Launch<TK>(long n, TK body)
    {
        if (n <= 0) return;
        int total = (int)n;
        if (total < 4096 || Threads == 1) { for (int i = 0; i < total; i++) body.Execute(i); return; }
        int chunks = Math.Min(total, Threads * 8), per = (total + chunks - 1) / chunks;
        Parallel.For(0, chunks, c =>
        {
            var k = body;
            int s = c * per, e = Math.Min(total, s + per);
            for (int i = s; i < e; i++) k.Execute(i);
        });
    }

    public override void Gemm(Storage c, long co, Storage a, long ao, Storage b, long bo, GemmParams p)
    {
        CheckGemm(p, c, co, a, ao, b, bo);
        for (int bt = 0; bt < p.Batch; bt++)
            CpuGemm.Sgemm(p.M, p.N, p.K, p.Alpha, S(a).Ptr + ao + (long)bt * p.BatchA, p.RsA, p.CsA,
                S(b).Ptr + bo + (long)bt * p.BatchB, p.RsB, p.CsB, p.Beta, S(c).Ptr + co + (long)bt * p.BatchC, p.Ldc);
    }
}
