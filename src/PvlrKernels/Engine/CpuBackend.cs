// The managed CPU backend: 64-byte aligned native buffers, kernel bodies run over raw pointers in a
// chunked Parallel.For, and the packed Vector512 SGEMM. This is the real CPU path; ILGPU's CPU
// accelerator is an emulator (0.1-0.3 GFLOP/s) and serves only to test the ILGPU kernels.
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
        if (bytes >= HugeMin && OperatingSystem.IsLinux() && (Ptr = (float*)Mmap((nuint)bytes)) != null) mapped = (nuint)bytes;
        else
        {
            try { Ptr = (float*)NativeMemory.AlignedAlloc((nuint)bytes, 64); }
            catch (OutOfMemoryException e) { throw new OutOfMemoryException($"cpu: out of host memory allocating {bytes >> 20} MiB; use a smaller batch or preset", e); }
            NativeMemory.Clear(Ptr, (nuint)bytes);
        }
        GC.AddMemoryPressure(bytes);
    }

    const long HugeMin = 4L << 20;

    static void* Mmap(nuint bytes)
    {
        const int ProtRw = 3, MapPrivateAnonymous = 0x22, MadvHugepage = 14;
        nint p = Native.mmap(0, bytes, ProtRw, MapPrivateAnonymous, -1, 0);
        if (p == -1) throw new OutOfMemoryException($"cpu: out of host memory mapping {bytes >> 20} MiB; use a smaller batch or preset");
        Native.madvise(p, bytes, MadvHugepage);       // advice only: without THP the pages are simply 4 KiB
        return (void*)p;
    }

    static class Native
    {
        [DllImport("libc", SetLastError = true)] public static extern nint mmap(nint addr, nuint length, int prot, int flags, int fd, nint offset);
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
        Free(); GC.RemoveMemoryPressure(Math.Max(Length, 16) * 4);
        GC.SuppressFinalize(this);
    }
    ~CpuStorage() => Free();
}

public sealed unsafe class CpuBackend : Backend<PtrMem>
{
    public override string Name => "cpu";
    public override bool IsGpu => false;
    public int Threads { get; } = Environment.ProcessorCount;

    /// The 16-lane paths (ReLU, top-k, the sigmoid gate, Philox) run in AVX-512, or without it as the two
    /// Vector256 halves the runtime gives Vector512 then; the same bits either way.
    static readonly bool Lanes16 = Avx512DQ.IsSupported || Avx2.IsSupported;
    /// 2 AVX-512 FMA units x 16 lanes x 2 FLOP x ~3.4 GHz per core: ~430 on the 2-core Zen 5 CI machine (docs/ilgpu.md).
    /// Without AVX-512 the GEMM runs 8 lanes (the Vector256 kernel), so half that; without FMA a quarter.
    public override double PeakGflops => (Avx512F.IsSupported ? 215.0 : Fma.IsSupported ? 107.5 : 53.75) * Threads;

    public override Storage Allocate(long n) => new CpuStorage(n);
    /// 1 GiB on Linux: a mapped chunk costs only the pages a step writes, and one chunk keeps the blocks a test-time
    /// forward releases in one range. With chunks of 4, 8, 16, ... MiB the paper inference touched 178 MiB
    /// of arena (a block too large for a chunk's rest skips to the next); in one chunk, 121 MiB.
    public override long ArenaChunkFloats => OperatingSystem.IsLinux() ? 1L << 28 : 1 << 20;   // elsewhere the buffer is cleared when allocated
    static CpuStorage S(Storage s) => (CpuStorage)s;

    public override void Upload(Storage dst, long off, ReadOnlySpan<float> src)
    {
        if (off < 0 || off + src.Length > dst.Length) throw new ShapeException($"upload: [{off}, {off + src.Length}) outside {dst.Length}");
        src.CopyTo(new Span<float>(S(dst).Ptr + off, src.Length));
    }
    public override void UploadColumns(Storage dst, long off, ReadOnlyMemory<float> src, int rows, int srcWidth, int from, int width)
    {
        CheckColumns(dst, off, src, rows, srcWidth, from, width);
        float* d = S(dst).Ptr + off;
        int parts = (long)rows * width >= 1 << 16 ? Threads : 1;             // below 256 KiB one core copies
        CpuPool.For(parts, p =>
        {
            for (int r = (int)((long)rows * p / parts), end = (int)((long)rows * (p + 1) / parts); r < end; r++)
                src.Span.Slice(r * srcWidth + from, width).CopyTo(new Span<float>(d + (long)r * width, width));
        }, parts);
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
        if ((total < 4096 && !(split && total > 1)) || Threads == 1) { for (int i = 0; i < total; i++) body.Execute(i); return; }
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
        if (work < (1 << 16) || Threads == 1 || n == 1) { body(0, n); return; }
        int chunks = (int)Math.Min(n, Threads * 4); long per = (n + chunks - 1) / chunks;
        CpuPool.For(chunks, c => { long s = c * per, e = Math.Min(n, s + per); if (s < e) body(s, e); }, Threads);
    }

    /// Runs body(start, end) over [0, n) in ranges of whole 64K-element blocks, split over the cores.
    void Elements(long n, Action<long, long> body) =>
        Rows((n + 65535) / 65536, n, (a, e) => body(a * 65536, Math.Min(n, e * 65536)));

    public override void Fill(Storage y, long yo, long n, float v)
    {
        using var _ = Profiler.Time("Fill", n);
        if (n <= 0) return;
        M("fill", y, yo, n);
        var p = S(y).Ptr + yo;
        Elements(n, (a, b) => new Span<float>(p + a, (int)(b - a)).Fill(v));
    }

    /// Drops size-1 dims (front-padding back to rank 4), so e.g. (1,T,C,1) copies become row copies.
    static void Canonical(ref Dims4 d, ref Strides4 a, ref Strides4 b)
    {
        int[] n = { d.N0, d.N1, d.N2, d.N3 }, sa = { a.S0, a.S1, a.S2, a.S3 }, sb = { b.S0, b.S1, b.S2, b.S3 };
        int[] on = { 1, 1, 1, 1 }, oa = new int[4], ob = new int[4]; int j = 3;
        for (int k = 3; k >= 0; k--) if (n[k] != 1) { on[j] = n[k]; oa[j] = sa[k]; ob[j] = sb[k]; j--; }
        d = new Dims4 { N0 = on[0], N1 = on[1], N2 = on[2], N3 = on[3] };
        a = new Strides4 { S0 = oa[0], S1 = oa[1], S2 = oa[2], S3 = oa[3] }; b = new Strides4 { S0 = ob[0], S1 = ob[1], S2 = ob[2], S3 = ob[3] };
    }

    public override void Copy4(Storage dst, long dOff, Strides4 sd, Storage src, long sOff, Strides4 ss, Dims4 d, float scale, bool accumulate)
    {
        using var _ = Profiler.Time("Copy4", d.Total);
        if (d.Total == 0) return;
        var (dlo, dhi) = Range(d, sd); var (slo, shi) = Range(d, ss);
        M("copy", dst, dOff + dlo, dhi - dlo + 1); M("copy", src, sOff + slo, shi - slo + 1);   // extent checks
        Canonical(ref d, ref sd, ref ss);
        float* dp = S(dst).Ptr + dOff, sp = S(src).Ptr + sOff;
        if (sd.S3 == 1 && ss.S3 == 1 && d.N3 >= 16)
        {
            int w = d.N3;
            Rows((long)d.N0 * d.N1 * d.N2, d.Total, (r0, r1) =>
            {
                for (long r = r0; r < r1; r++)
                {
                    int i2 = (int)(r % d.N2), i1 = (int)(r / d.N2 % d.N1), i0 = (int)(r / d.N2 / d.N1);
                    var o = new Span<float>(dp + sd.At(i0, i1, i2, 0), w); var x = new ReadOnlySpan<float>(sp + ss.At(i0, i1, i2, 0), w);
                    if (!accumulate) { if (scale == 1f) x.CopyTo(o); else TP.Multiply(x, scale, o); }
                    else if (scale == 1f) TP.Add(o, x, o);
                    else TP.MultiplyAdd(x, scale, o, o);
                }
            });
            return;
        }
        // transposes and other strided copies: tiles of 32 x 32 over the last two dims (times all of a short
        // N1, e.g. a conv weight's K = 3 interleaved taps), each read in the source's memory order into a
        // dense buffer and written from it in the destination's memory order. Walking one side along a
        // large stride instead (the conv weight gradient's 24 KB, a multiple of 4 KB) kept 32 lines in one
        // L1 set: the conv weight re-layouts of a paper step took 0.33 s that way.
        const int Tile = 32;
        int tiles2 = (d.N2 + Tile - 1) / Tile;
        int fold = d.N1 <= 4 ? d.N1 : 1, outer1 = d.N1 / fold;
        Rows((long)d.N0 * outer1 * tiles2, d.Total, (u0, u1) =>
        {
            float* buf = stackalloc float[4 * Tile * Tile];
            for (long u = u0; u < u1; u++)
            {
                int t2 = (int)(u % tiles2), i1 = (int)(u / tiles2 % outer1) * fold, i0 = (int)(u / tiles2 / outer1);
                int a2 = t2 * Tile, n2 = Math.Min(d.N2 - a2, Tile);
                for (int a3 = 0; a3 < d.N3; a3 += Tile)
                {
                    int n3 = Math.Min(d.N3 - a3, Tile);
                    Box(sp + ss.At(i0, i1, a2, a3), ss.S1, ss.S2, ss.S3, buf, fold, n2, n3, true, 1f, false);
                    Box(dp + sd.At(i0, i1, a2, a3), sd.S1, sd.S2, sd.S3, buf, fold, n2, n3, false, scale, accumulate);
                }
            }
        });
    }

    /// Moves an n1 x n2 x n3 box between p (strides s1, s2, s3) and buf (dense, strides 32*32, 32, 1), the
    /// loops nested by p's strides, largest outside, so p is walked in its memory order (but for a short
    /// innermost run, which goes one loop out: a long inner loop over lines already in L1). toBuf: buf = p;
    /// else p = scale * buf, or p += scale * buf (accumulate).
    static void Box(float* p, long s1, long s2, long s3, float* buf, int n1, int n2, int n3, bool toBuf, float scale, bool accumulate)
    {
        Span<(long sp, int sb, int n)> ax = stackalloc (long, int, int)[3];
        ax[0] = (s1, 32 * 32, n1); ax[1] = (s2, 32, n2); ax[2] = (s3, 1, n3);
        for (int a = 0; a < 2; a++)             // sort by |stride| descending (three elements)
            for (int b = a + 1; b < 3; b++)
                if (Math.Abs(ax[b].sp) > Math.Abs(ax[a].sp)) (ax[a], ax[b]) = (ax[b], ax[a]);
        if (ax[2].n < 8) (ax[1], ax[2]) = (ax[2], ax[1]);     // the 3 taps inside: the inner loop runs over the 32 instead
        var (pa, ba, na) = ax[0]; var (pb, bb, nb) = ax[1]; var (pc, bc, nc) = ax[2];
        for (int i = 0; i < na; i++)
            for (int j = 0; j < nb; j++)
            {
                float* q = p + i * pa + j * pb; float* r = buf + i * ba + j * bb;
                if (toBuf) for (int l = 0; l < nc; l++) r[l * bc] = q[l * pc];
                else if (accumulate) for (int l = 0; l < nc; l++) q[l * pc] += scale * r[l * bc];
                else for (int l = 0; l < nc; l++) q[l * pc] = scale * r[l * bc];
            }
    }

    /// Contiguous rows (inner = 1): the sum of squares and the division vectorized per row.
    public override void L2Normalize(Storage y, long yo, Storage norm, long no, Storage x, long xo, int outer, int n, int inner, float eps)
    {
        if (inner != 1 || n < 16) { base.L2Normalize(y, yo, norm, no, x, xo, outer, n, inner, eps); return; }
        using var _ = Profiler.Time("L2Normalize", (long)outer * n);
        M("l2norm", y, yo, (long)outer * n); M("l2norm", norm, no, outer); M("l2norm", x, xo, (long)outer * n);
        float* yp = S(y).Ptr + yo, np = S(norm).Ptr + no, xp = S(x).Ptr + xo;
        Rows(outer, (long)outer * n, (a, e) =>
        {
            for (long r = a; r < e; r++)
            {
                var row = new ReadOnlySpan<float>(xp + r * n, n);
                float nr = MathF.Sqrt(TP.SumOfSquares(row));
                TP.Divide(row, MathF.Max(nr, eps), new Span<float>(yp + r * n, n));
                np[r] = nr;
            }
        });
    }

    /// The sigmoid (Sigmoid512), ReLU and leaky ReLU (IUnaryOp512) of long vectors 16 lanes at a time;
    /// other unary ops take the kernel body.
    public override void Unary<TOp>(Storage y, long yo, Storage x, long xo, long n, float p)
    {
        if (n >= 4096 && Lanes16)
        {
            if (typeof(TOp) == typeof(LeakyReluOp)) { Unary512<LeakyReluOp>(y, yo, x, xo, n, p); return; }
            if (typeof(TOp) == typeof(ReluOp)) { Unary512<ReluOp>(y, yo, x, xo, n, p); return; }
        }
        if (typeof(TOp) != typeof(SigmoidOp) || n < 4096) { base.Unary<TOp>(y, yo, x, xo, n, p); return; }
        using var _ = Profiler.Time("Sigmoid", n);
        M("sigmoid", y, yo, n); M("sigmoid", x, xo, n);
        float* yp = S(y).Ptr + yo, xp = S(x).Ptr + xo;
        Elements(n, (s0, s1) =>
        {
            if (!Vector512.IsHardwareAccelerated) { TP.Sigmoid(new ReadOnlySpan<float>(xp + s0, (int)(s1 - s0)), new Span<float>(yp + s0, (int)(s1 - s0))); return; }
            long i = s0;
            for (; i + 16 <= s1; i += 16) Vector512.Store(Sigmoid512(Vector512.Load(xp + i)), yp + i);
            for (; i < s1; i++) yp[i] = SigmoidOp.Forward(xp[i], 0f);
        });
    }

    void Unary512<TOp>(Storage y, long yo, Storage x, long xo, long n, float p) where TOp : struct, IUnaryOp512
    {
        using var _ = Profiler.Time(typeof(UnaryFwd<TOp, PtrMem>), n);
        string op = typeof(TOp).Name;
        M(op, y, yo, n); M(op, x, xo, n);
        float* yp = S(y).Ptr + yo, xp = S(x).Ptr + xo;
        Elements(n, (i, end) =>
        {
            for (; i + 16 <= end; i += 16) Vector512.Store(TOp.Forward(Vector512.Load(xp + i), p), yp + i);
            for (; i < end; i++) yp[i] = TOp.Forward(xp[i], p);
        });
    }

    /// ReLU's and leaky ReLU's gradients of long vectors 16 lanes at a time (IUnaryOp512), dx = g or dx + g
    /// as in UnaryBwd; other ops take the kernel body.
    public override void UnaryBackward<TOp>(Storage dx, long dxo, Storage x, long xo, Storage y, long yo, Storage dy, long dyo, long n, float p, bool accumulate)
    {
        if (n >= 4096 && Lanes16)
        {
            if (typeof(TOp) == typeof(LeakyReluOp)) { UnaryBackward512<LeakyReluOp>(dx, dxo, x, xo, dy, dyo, n, p, accumulate); return; }
            if (typeof(TOp) == typeof(ReluOp)) { UnaryBackward512<ReluOp>(dx, dxo, x, xo, dy, dyo, n, p, accumulate); return; }
        }
        base.UnaryBackward<TOp>(dx, dxo, x, xo, y, yo, dy, dyo, n, p, accumulate);
    }

    void UnaryBackward512<TOp>(Storage dx, long dxo, Storage x, long xo, Storage dy, long dyo, long n, float p, bool accumulate) where TOp : struct, IUnaryOp512
    {
        using var _ = Profiler.Time(typeof(UnaryBwd<TOp, PtrMem>), n);
        string op = typeof(TOp).Name + ".backward";
        M(op, dx, dxo, n); M(op, x, xo, n); M(op, dy, dyo, n);
        float* dxp = S(dx).Ptr + dxo, xp = S(x).Ptr + xo, dyp = S(dy).Ptr + dyo;
        Elements(n, (i, end) =>
        {
            for (; i + 16 <= end; i += 16)
            {
                var g = TOp.Backward(Vector512.Load(xp + i), Vector512.Load(dyp + i), p);
                Vector512.Store(accumulate ? Vector512.Load(dxp + i) + g : g, dxp + i);
            }
            for (; i < end; i++) { float g = TOp.Backward(xp[i], 0f, dyp[i], p); dxp[i] = accumulate ? dxp[i] + g : g; }
        });
    }

    /// Top-k indices along an axis, 16 inner columns (a MIL score's classes) at a time: each lane runs the
    /// kernel body's K selection passes (the same comparisons in the same order, NaN and ties included), so
    /// the same indices. A column tail is the last 16 columns again (the overlap is written twice, with the
    /// same values). The scalar passes took 5 ms a call at demo shapes.
    public override void ArgTopK(Storage idx, long io, Storage x, long xo, int outer, int n, int inner, int k, bool largest)
    {
        var body = ArgTopKBody(idx, io, x, xo, outer, n, inner, k, largest);      // checks k and both extents
        long r = (long)outer * inner;
        if (inner < 16 || !Lanes16) { Launch(r, body); return; }
        using var _ = Profiler.Time(typeof(ArgTopK<PtrMem>), r);
        float* ip = S(idx).Ptr + io, xp = S(x).Ptr + xo;
        int per = (inner + 15) / 16;
        var sign = Vector512.Create(largest ? 1f : -1f);
        Rows((long)outer * per, r * n * k, (a, e) =>
        {
            for (long u = a; u < e; u++)
            {
                int o = (int)(u / per), j0 = Math.Min((int)(u % per) * 16, inner - 16);
                float* xb = xp + (long)o * n * inner + j0;
                var prevV = Vector512<float>.Zero; var prevI = Vector512.Create(-1);
                for (int m = 0; m < k; m++)
                {
                    var bestV = Vector512<float>.Zero; var bestI = Vector512.Create(-1);
                    for (int t = 0; t < n; t++)
                    {
                        var v = sign * Vector512.Load(xb + (long)t * inner); var tv = Vector512.Create(t);
                        var after = Vector512.LessThan(prevI, Vector512<int>.Zero) | Vector512.LessThan(v, prevV).AsInt32()
                                    | (Vector512.Equals(v, prevV).AsInt32() & Vector512.GreaterThan(tv, prevI));
                        var take = after & (Vector512.LessThan(bestI, Vector512<int>.Zero) | Vector512.GreaterThan(v, bestV).AsInt32());
                        bestV = Vector512.ConditionalSelect(take.AsSingle(), v, bestV); bestI = Vector512.ConditionalSelect(take, tv, bestI);
                    }
                    Vector512.Store(Vector512.ConvertToSingle(bestI), ip + ((long)o * k + m) * inner + j0);
                    prevV = bestV; prevI = bestI;
                }
            }
        });
    }

    /// Pairwise KL with log s2 of every distribution and dimension taken once per call, into a table, instead
    /// of twice per pair and dimension; each pair then sums the kernel body's terms (PairwiseKlFwd.Term) in
    /// its order, so the same bits.
    public override void PairwiseKl(Storage kl, long ko, Storage muP, long mpo, Storage varP, long vpo, Storage muQ, long mqo, Storage varQ, long vqo, KlParams k)
    {
        PairwiseKlBody(kl, ko, muP, mpo, varP, vpo, muQ, mqo, varQ, vqo, k);     // checks every extent
        long np = (long)k.Bt * k.Np * k.D, nq = (long)k.Bt * k.Nq * k.D, r = (long)k.Bt * k.Np * k.Nq;
        using var _ = Profiler.Time(typeof(PairwiseKlFwd<PtrMem>), r);
        float* kp = S(kl).Ptr + ko, mp = S(muP).Ptr + mpo, vp = S(varP).Ptr + vpo, mq = S(muQ).Ptr + mqo, vq = S(varQ).Ptr + vqo;
        float* lp = (float*)NativeMemory.Alloc((nuint)(np + nq), sizeof(float)), lq = lp + np;
        try
        {
            float eps = k.VarEps; int dim = k.D;
            Rows(np + nq, np + nq, (a, e) =>
            {
                for (long i = a; i < e; i++) lp[i] = ILGPU.Algorithms.XMath.Log((i < np ? vp[i] : vq[i - np]) + eps);
            });
            Rows(r, r * dim, (a, e) =>
            {
                for (long q = a; q < e; q++)
                {
                    long j = q % k.Nq, bi = q / k.Nq, b = bi / k.Np, pb = bi * dim, qb = (b * k.Nq + j) * dim;
                    float s = 0f;
                    for (int d = 0; d < dim; d++)
                        s += PairwiseKlFwd<PtrMem>.Term(mq[qb + d] - mp[pb + d], vp[pb + d] + eps, vq[qb + d] + eps, lp[pb + d], lq[qb + d]);
                    kp[q] = PairwiseKlFwd<PtrMem>.Finish(s, dim);
                }
            });
        }
        finally { NativeMemory.Free(lp); }
    }

    /// The test-time gate row by row, 16 lanes at a time with Sigmoid512 (the same products and sigmoid as
    /// the unfused Mul, Sigmoid, Mul of long vectors); column tails run the kernel body.
    public override void SigmoidGate(Storage y, long yo, Storage a, long ao, Storage s, long so, Storage v, long vo, int rows, int cols)
    {
        var body = SigmoidGateBody(y, yo, a, ao, s, so, v, vo, rows, cols);     // checks every extent
        using var _ = Profiler.Time("SigmoidGate", (long)rows * cols);
        float* yp = S(y).Ptr + yo, ap = S(a).Ptr + ao, sp = S(s).Ptr + so, vp = S(v).Ptr + vo;
        bool wide = Lanes16;
        Rows(rows, (long)rows * cols, (r0, r1) =>
        {
            for (long r = r0; r < r1; r++)
            {
                long o = r * cols; int j = 0;
                if (wide)
                {
                    var sv = Vector512.Create(sp[r]);
                    for (; j + 16 <= cols; j += 16)
                        Vector512.Store(Sigmoid512(Vector512.Load(ap + o + j) * sv) * Vector512.Load(vp + o + j), yp + o + j);
                }
                for (; j < cols; j++) body.Execute((int)(o + j));
            }
        });
    }

    /// 1 / (1 + e^-x) with e^t = 2^k e^r, k = round(t log2 e), r = t - k ln 2 (ln 2 split in two for an
    /// exact product) and e^r a degree-6 Taylor polynomial (|r| <= ln2/2: relative error ~2e-8).
    /// TensorPrimitives.Sigmoid ran at 0.2-0.3 G values/s here: the 147M sigmoids of a paper-shape
    /// inference run took 0.35 s with it and 0.07 s with this (PVLR_PROFILE).
    /// t is clamped to +-87 so 2^k stays a normal float; sigmoid(-87) ~ 1.6e-38 instead of smaller.
    static Vector512<float> Sigmoid512(Vector512<float> x)
    {
        var t = Vector512.Min(Vector512.Max(-x, Vector512.Create(-87f)), Vector512.Create(87f));
        var k = Vector512.Round(t * Vector512.Create(1.44269504f));
        var r = Vector512.FusedMultiplyAdd(k, Vector512.Create(-0.693145752f), t);
        r = Vector512.FusedMultiplyAdd(k, Vector512.Create(-1.42860677e-6f), r);
        var q = Vector512.Create(1f / 720);
        q = Vector512.FusedMultiplyAdd(q, r, Vector512.Create(1f / 120));
        q = Vector512.FusedMultiplyAdd(q, r, Vector512.Create(1f / 24));
        q = Vector512.FusedMultiplyAdd(q, r, Vector512.Create(1f / 6));
        q = Vector512.FusedMultiplyAdd(q, r, Vector512.Create(0.5f));
        q = Vector512.FusedMultiplyAdd(q, r, Vector512<float>.One);
        q = Vector512.FusedMultiplyAdd(q, r, Vector512<float>.One);
        var scale = Vector512.ShiftLeft(Vector512.ConvertToInt32(k) + Vector512.Create(127), 23).AsSingle();
        return Vector512<float>.One / (Vector512<float>.One + q * scale);
    }

    /// The row-wise shape of an elementwise op with a dense output: after dropping size-1 dims and merging
    /// neighbours, each output row of the last dim (width w, at r * w) reads a row (stride 1) or one value
    /// (stride 0) of each operand. False where the strides do not fit; the generic kernel runs then.
    static bool Rowwise(Dims4 d, ref Strides4 sa, ref Strides4 sb, out Dims4 dc)
    {
        dc = d; Canonical(ref dc, ref sa, ref sb);
        return !(sa.S3 > 1 || sb.S3 > 1 || sa.S3 < 0 || sb.S3 < 0 || (sa.S3 == 0 && sb.S3 == 0) || dc.N3 < 16);
    }

    /// body(row start in the output, width, A's row or value, A is a row, B's row or value, B is a row) over
    /// the rows of Rowwise, split over the cores.
    void EachRow(Dims4 dc, Strides4 ca, Strides4 cb, long work, float* ap, float* bp, Action<long, int, nint, bool, nint, bool> body)
    {
        int w = dc.N3;
        Rows((long)dc.N0 * dc.N1 * dc.N2, work, (r0, r1) =>
        {
            for (long r = r0; r < r1; r++)
            {
                int i2 = (int)(r % dc.N2), i1 = (int)(r / dc.N2 % dc.N1), i0 = (int)(r / dc.N2 / dc.N1);
                body(r * w, w, (nint)(ap + ca.At(i0, i1, i2, 0)), ca.S3 == 1, (nint)(bp + cb.At(i0, i1, i2, 0)), cb.S3 == 1);
            }
        });
    }

    static int Kind<TOp>() => typeof(TOp) == typeof(AddOp) ? 0 : typeof(TOp) == typeof(SubOp) ? 1 : typeof(TOp) == typeof(MulOp) ? 2 : typeof(TOp) == typeof(DivOp) ? 3 : -1;

    /// Broadcasting binary ops whose last dimension (after dropping size-1 dims) is contiguous or broadcast
    /// in both inputs: one TensorPrimitives call per output row (span op span, span op scalar, scalar op
    /// span). Other stride patterns take the generic kernel body.
    public override void Binary<TOp>(Storage o, long oo, Storage a, long ao, Strides4 sa, Storage b, long bo, Strides4 sb, Dims4 d)
    {
        var ca = sa; var cb = sb; int kind = Kind<TOp>();
        if (kind < 0 || !Rowwise(d, ref ca, ref cb, out var dc)) { base.Binary<TOp>(o, oo, a, ao, sa, b, bo, sb, d); return; }
        using var _ = Profiler.Time(typeof(TOp).Name, d.Total);
        string op = typeof(TOp).Name;
        M(op, o, oo, d.Total); M(op, a, ao, Range(d, sa).hi + 1); M(op, b, bo, Range(d, sb).hi + 1);
        float* op0 = S(o).Ptr + oo;
        EachRow(dc, ca, cb, d.Total, S(a).Ptr + ao, S(b).Ptr + bo, (at, w, xa, xRow, ya, yRow) =>
        {
            float* x = (float*)xa, y = (float*)ya;
            var dst = new Span<float>(op0 + at, w);
            if (xRow && yRow)
            {
                var xs = new ReadOnlySpan<float>(x, w); var ys = new ReadOnlySpan<float>(y, w);
                switch (kind) { case 0: TP.Add(xs, ys, dst); break; case 1: TP.Subtract(xs, ys, dst); break; case 2: TP.Multiply(xs, ys, dst); break; default: TP.Divide(xs, ys, dst); break; }
            }
            else if (xRow)
            {
                var xs = new ReadOnlySpan<float>(x, w); float ys = *y;
                switch (kind) { case 0: TP.Add(xs, ys, dst); break; case 1: TP.Subtract(xs, ys, dst); break; case 2: TP.Multiply(xs, ys, dst); break; default: TP.Divide(xs, ys, dst); break; }
            }
            else
            {
                float xs = *x; var ys = new ReadOnlySpan<float>(y, w);
                switch (kind) { case 0: TP.Add(ys, xs, dst); break; case 1: TP.Subtract(xs, ys, dst); break; case 2: TP.Multiply(ys, xs, dst); break; default: TP.Divide(xs, ys, dst); break; }
            }
        });
    }

    /// The gradients of Add, Sub, Mul and of Div's numerator row-wise, as the kernel bodies compute them
    /// (dy, -dy, dy * other, dy / b): at demo shapes the generic kernel's index arithmetic made the
    /// dropout and gating gradients the largest kernel of a training step.
    public override void BinaryGrad<TOp>(Storage tmp, long to, Storage a, long ao, Strides4 sa, Storage b, long bo, Strides4 sb, Storage dy, long dyo, Dims4 d, int which)
    {
        var ca = sa; var cb = sb; int kind = Kind<TOp>();
        if (kind < 0 || (kind == 3 && which == 1) || !Rowwise(d, ref ca, ref cb, out var dc)) { base.BinaryGrad<TOp>(tmp, to, a, ao, sa, b, bo, sb, dy, dyo, d, which); return; }
        using var _ = Profiler.Time(typeof(TOp).Name + ".backward", d.Total);
        string op = typeof(TOp).Name + ".backward";
        M(op, tmp, to, d.Total); M(op, dy, dyo, d.Total); M(op, a, ao, Range(d, sa).hi + 1); M(op, b, bo, Range(d, sb).hi + 1);
        float* tp = S(tmp).Ptr + to, dp = S(dy).Ptr + dyo;
        EachRow(dc, ca, cb, d.Total, S(a).Ptr + ao, S(b).Ptr + bo, (at, w, xa, xRow, ya, yRow) =>
        {
            var g = new ReadOnlySpan<float>(dp + at, w); var dst = new Span<float>(tp + at, w);
            float* other = (float*)(which == 0 ? ya : xa); bool otherRow = which == 0 ? yRow : xRow;
            switch (kind)
            {
                case 0: g.CopyTo(dst); break;
                case 1: if (which == 0) g.CopyTo(dst); else TP.Negate(g, dst); break;
                case 2: if (otherRow) TP.Multiply(g, new ReadOnlySpan<float>(other, w), dst); else TP.Multiply(g, *other, dst); break;
                default: if (yRow) TP.Divide(g, new ReadOnlySpan<float>((float*)ya, w), dst); else TP.Divide(g, *(float*)ya, dst); break;
            }
        });
    }

    /// SumTo whose reduced dims, after dropping size-1 dims and merging neighbours, form a
    /// [reduced, kept] (column sums: bias gradients) or [kept, reduced] (row sums) pattern.
    public override void SumTo(Storage dst, long dOff, Dims4 target, Storage src, long sOff, Dims4 full, bool accumulate)
    {
        using var _ = Profiler.Time("SumTo", full.Total);
        var segs = new List<(long n, bool red)>();
        int[] fd = { full.N0, full.N1, full.N2, full.N3 }, td = { target.N0, target.N1, target.N2, target.N3 };
        for (int k = 0; k < 4; k++)
        {
            if (fd[k] == 1) continue;
            bool red = td[k] == 1;
            if (segs.Count > 0 && segs[^1].red == red) segs[^1] = (segs[^1].n * fd[k], red); else segs.Add((fd[k], red));
        }
        if (segs.TrueForAll(x => !x.red))          // nothing reduced: a (+)= copy
        {
            Copy4(dst, dOff, new Strides4 { S3 = 1 }, src, sOff, new Strides4 { S3 = 1 }, new Dims4 { N0 = 1, N1 = 1, N2 = 1, N3 = full.Total }, 1f, accumulate);
            return;
        }
        bool colSums = segs.Count == 2 && segs[0].red && !segs[1].red, rowSums = segs.Count == 2 && !segs[0].red && segs[1].red;
        if (!colSums && !rowSums) { base.SumTo(dst, dOff, target, src, sOff, full, accumulate); return; }
        M("sum_to", dst, dOff, target.Total); M("sum_to", src, sOff, full.Total);
        float* dp = S(dst).Ptr + dOff, sp = S(src).Ptr + sOff;
        if (rowSums)
        {
            long w = segs[0].n; int r = (int)segs[1].n;
            Rows(w, full.Total, (a, b) =>
            {
                for (long i = a; i < b; i++) { float v = TP.Sum(new ReadOnlySpan<float>(sp + i * r, r)); dp[i] = accumulate ? dp[i] + v : v; }
            });
            return;
        }
        long rows = segs[0].n; int width = (int)segs[1].n;
        const int Block = 512;                      // columns per task: independent outputs, no reduction across threads
        Rows((width + Block - 1) / Block, full.Total, (a, b) =>
        {
            for (long blk = a; blk < b; blk++)
            {
                int c0 = (int)blk * Block, cw = Math.Min(Block, width - c0);
                var o = new Span<float>(dp + c0, cw);
                if (!accumulate) o.Clear();
                for (long r = 0; r < rows; r++) TP.Add(o, new ReadOnlySpan<float>(sp + r * width + c0, cw), o);
            }
        });
    }

    /// Sums over a contiguous axis (inner = 1) row by row, vectorized; long single rows in parallel parts.
    public override void Reduce(Storage y, long yo, Storage x, long xo, Storage idx, long io, int outer, int n, int inner, int mode, float scale, bool accumulate)
    {
        using var _ = Profiler.Time("Reduce", (long)outer * n * inner);
        if (mode == ReduceMode.Sum && inner >= 16) { ColumnSums(y, yo, x, xo, outer, n, inner, scale, accumulate); return; }
        if (mode != ReduceMode.Sum || inner != 1 || n < 64) { base.Reduce(y, yo, x, xo, idx, io, outer, n, inner, mode, scale, accumulate); return; }
        M("reduce", y, yo, outer); M("reduce", x, xo, (long)outer * n);
        float* yp = S(y).Ptr + yo, xp = S(x).Ptr + xo;
        if (outer >= Threads * 2 || (long)n < (1 << 18))
        {
            Rows(outer, (long)outer * n, (a, b) =>
            {
                for (long o = a; o < b; o++) { float v = scale * TP.Sum(new ReadOnlySpan<float>(xp + o * n, n)); yp[o] = accumulate ? yp[o] + v : v; }
            });
            return;
        }
        for (int o = 0; o < outer; o++)
        {
            const int Part = 1 << 16; int parts = (n + Part - 1) / Part; var partial = new double[parts];
            float* row = xp + (long)o * n;
            CpuPool.For(parts, k => partial[k] = TP.Sum(new ReadOnlySpan<float>(row + (long)k * Part, Math.Min(Part, n - k * Part))), Threads);
            float v = scale * (float)partial.Sum();
            yp[o] = accumulate ? yp[o] + v : v;
        }
    }

    /// Sums over the middle axis with 16 or more kept columns (a Linear's bias gradient: the column sums
    /// of (rows, out)): each block of 256 columns adds the rows in order into a running row, so every
    /// column sums exactly as the kernel body does (0 + x0 + x1 + ..., then scale), but reading rows
    /// instead of one strided column per output. At paper shapes the strided kernel took ~8 ms a call.
    void ColumnSums(Storage y, long yo, Storage x, long xo, int outer, int n, int inner, float scale, bool accumulate)
    {
        M("reduce", y, yo, (long)outer * inner); M("reduce", x, xo, (long)outer * n * inner);
        float* yp = S(y).Ptr + yo, xp = S(x).Ptr + xo;
        const int Block = 256; int blocks = (inner + Block - 1) / Block;
        Rows((long)outer * blocks, (long)outer * n * inner, (a, e) =>
        {
            var acc = new float[Block];
            for (long t = a; t < e; t++)
            {
                int o = (int)(t / blocks), j0 = (int)(t % blocks) * Block, w = Math.Min(Block, inner - j0);
                var sum = acc.AsSpan(0, w); sum.Clear();
                float* col = xp + (long)o * n * inner + j0;
                for (int k = 0; k < n; k++) TP.Add(sum, new ReadOnlySpan<float>(col + (long)k * inner, w), sum);
                TP.Multiply(sum, scale, sum);
                var dst = new Span<float>(yp + (long)o * inner + j0, w);
                if (accumulate) TP.Add(dst, sum, dst); else sum.CopyTo(dst);
            }
        });
    }

    /// Dropout masks 16 elements at a time: Philox4x32-10 (kernels/Philox.cs) on 16 counters in two
    /// Vector512<ulong> of 8 (each 32-bit word in a 64-bit lane, so the 32x32->64 products are plain
    /// multiplies), the same words as the kernel body's Next2; the tail runs the body. At paper shapes the
    /// scalar kernel took 0.32 s of a training step.
    public override void DropoutMask(Storage y, long yo, long n, float p, RngKey key)
    {
        var body = DropoutMaskBody(y, yo, n, p, key);                       // checks p and the extent
        if (!Lanes16) { Launch(n, body); return; }
        using var _ = Profiler.Time("DropoutMask", n);
        float* yp = S(y).Ptr + yo;
        var threshold = Vector512.Create(body.Threshold); var keep = Vector512.Create(body.KeepScale);
        PhiloxBlocks(n, key, body, (at, r0, _) =>
            Vector512.ConditionalSelect(Vector512.LessThan(r0, threshold).AsSingle(), Vector512<float>.Zero, keep).Store(yp + at));
    }

    /// block(at, r0, r1) with the Philox words of counters at .. at + 15 (PhiloxWords) for every whole 16
    /// below n, over the cores; the kernel body for the tail.
    void PhiloxBlocks<TK>(long n, RngKey key, TK body, Action<long, Vector512<uint>, Vector512<uint>> block) where TK : struct, IKernel
    {
        long blocks = n / 16;
        Rows(blocks + 1, n * 32, (a, e) =>
        {
            for (long blk = a; blk < e; blk++)
            {
                if (blk == blocks) { for (long i = blocks * 16; i < n; i++) body.Execute((int)i); continue; }
                var (r0, r1) = PhiloxWords(key, (uint)(blk * 16));
                block(blk * 16, r0, r1);
            }
        });
    }

    /// Single-sample normal draws (the model's NormalMean): Philox for 16 counters at once (PhiloxWords),
    /// then the kernel's own Box-Muller (Philox.BoxMuller) and scaling per lane, so the same bits as
    /// NormalKernel; several samples per value and the tail run the kernel body.
    public override void Normal(Storage y, long yo, long n, float std, int samples, RngKey key)
    {
        var body = NormalBody(y, yo, n, std, samples, key);                       // checks the extent
        if (samples != 1 || !Lanes16) { Launch(n, body); return; }
        using var _ = Profiler.Time(typeof(NormalKernel<PtrMem>), n);
        float* yp = S(y).Ptr + yo;
        PhiloxBlocks(n, key, body, (at, r0, r1) =>
        {
            uint* w = stackalloc uint[32];                  // the words as scalars (GetElement per lane was slower)
            r0.Store(w); r1.Store(w + 16);
            for (int l = 0; l < 16; l++)
            {
                float s = 0f;
                s += Philox.BoxMuller(w[l], w[16 + l]);
                yp[at + l] = std * s / samples;            // NormalKernel's mean of one sample
            }
        });
    }

    /// The first two output words of Philox4x32-10 at counters (c0 + lane, S0, S1, 0) for 16 lanes.
    static (Vector512<uint> r0, Vector512<uint> r1) PhiloxWords(RngKey key, uint c0)
    {
        var mask = Vector512.Create(0xFFFFFFFFul); var m0 = Vector512.Create((ulong)Philox.M0); var m1 = Vector512.Create((ulong)Philox.M1);
        var lane = Vector512.Create(0ul, 1, 2, 3, 4, 5, 6, 7);
        Vector512<ulong> a0 = (Vector512.Create((ulong)c0) + lane) & mask, b0 = (Vector512.Create((ulong)c0 + 8) + lane) & mask;
        Vector512<ulong> a1 = Vector512.Create((ulong)key.S0), a2 = Vector512.Create((ulong)key.S1), a3 = Vector512<ulong>.Zero;
        Vector512<ulong> b1 = a1, b2 = a2, b3 = a3;
        uint k0 = key.K0, k1 = key.K1;
        for (int round = 0; round < 10; round++)
        {
            var kv0 = Vector512.Create((ulong)k0); var kv1 = Vector512.Create((ulong)k1);
            var pa0 = a0 * m0; var pa1 = a2 * m1; var pb0 = b0 * m0; var pb1 = b2 * m1;
            a0 = (pa1 >> 32) ^ a1 ^ kv0; a1 = pa1 & mask; a2 = (pa0 >> 32) ^ a3 ^ kv1; a3 = pa0 & mask;
            b0 = (pb1 >> 32) ^ b1 ^ kv0; b1 = pb1 & mask; b2 = (pb0 >> 32) ^ b3 ^ kv1; b3 = pb0 & mask;
            k0 += Philox.W0; k1 += Philox.W1;
        }
        return (Vector512.Narrow(a0, b0), Vector512.Narrow(a1, b1));
    }

    // ---- Winograd transforms (kernels/Winograd.cs) vectorized over channels: 64 channels of one tile at a
    // time (then 16), the zero coefficients of Bt/At dropped once per call (Terms), FMAs over the rest in
    // row order; the channel tail runs the kernel body itself. With 16 channels each output's sum was one
    // chain of dependent FMAs; four independent sums per term overlap their latency, in the same order, so
    // the bits do not change (WinogradTests.SixtyFourChannelBodiesGiveTheSixteenChannelBits).

    /// The nonzero entries of each row of a rows x cols matrix: row r's terms are idx/coef[start[r] ..
    /// start[r+1]), in column order (the order the kernel body sums in).
    static (int[] start, int[] idx, float[] coef) Terms(float* mat, int rows, int cols)
    {
        var start = new int[rows + 1]; var idx = new List<int>(); var coef = new List<float>();
        for (int r = 0; r < rows; r++)
        {
            start[r] = idx.Count;
            for (int j = 0; j < cols; j++) if (mat[r * cols + j] != 0f) { idx.Add(j); coef.Add(mat[r * cols + j]); }
        }
        start[rows] = idx.Count;
        return (start, idx.ToArray(), coef.ToArray());
    }

    /// The 64 channels at s as four vectors at d.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Load4(float* s, Vector512<float>* d)
    {
        d[0] = Vector512.Load(s); d[1] = Vector512.Load(s + 16); d[2] = Vector512.Load(s + 32); d[3] = Vector512.Load(s + 48);
    }

    /// One output row of a transform over a 64-channel block (x: four vectors per input row): its terms
    /// [from, end) summed into four independent FMA chains, in the terms' order as the 16-channel body sums.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void TermSums4(Vector512<float>* x, int from, int end, int[] idx, float[] coef,
        out Vector512<float> s0, out Vector512<float> s1, out Vector512<float> s2, out Vector512<float> s3)
    {
        s0 = s1 = s2 = s3 = Vector512<float>.Zero;
        for (int k = from; k < end; k++)
        {
            var cf = Vector512.Create(coef[k]); var x4 = x + 4 * idx[k];
            s0 = Vector512.FusedMultiplyAdd(cf, x4[0], s0); s1 = Vector512.FusedMultiplyAdd(cf, x4[1], s1);
            s2 = Vector512.FusedMultiplyAdd(cf, x4[2], s2); s3 = Vector512.FusedMultiplyAdd(cf, x4[3], s3);
        }
    }

    public override void WinogradIn(Storage v, long vo, Storage x, long xo, Storage mat, long mo, WinoParams p)
    {
        var body = WinogradInBody(v, vo, x, xo, mat, mo, p);      // checks every extent
        int n = p.N, c = p.C, total = p.TotalTiles;
        long work = (long)total * c;
        using var _ = Profiler.Time("WinogradIn", work * n);
        float* vp = S(v).Ptr + vo, xp = S(x).Ptr + xo;
        var (start, idx, coef) = Terms(S(mat).Ptr + mo, n, n);
        long vw = p.VRow;
        // V is read back only by the GEMMs after the whole transform (MBs later): streaming stores skip the
        // read-for-ownership of every line, where V's planes are 64-byte aligned
        bool nt = Avx512F.IsSupported && (nint)vp % 64 == 0 && vw % 16 == 0;
        Rows(total, work * n, (a, e) =>
        {
            float** rows = stackalloc float*[n];
            Vector512<float>* d = stackalloc Vector512<float>[n], dw = stackalloc Vector512<float>[4 * n];
            for (long tile = a; tile < e; tile++)
            {
                int b = (int)(tile / p.Tiles), t0 = (int)(tile % p.Tiles) * p.M - 1;
                bool inner = true;
                for (int j = 0; j < n; j++)
                {
                    int t = t0 + j;
                    if (t >= 0 && t < p.T) rows[j] = xp + ((long)b * p.T + t) * c; else { rows[j] = null; inner = false; }
                }
                float* dst = vp + tile * vw;
                int ch = 0;
                // 64 channels at a time: four independent sums per term, as in WinogradOut
                for (; ch + 64 <= c; ch += 64)
                {
                    for (int j = 0; j < n; j++)
                        if (rows[j] != null) Load4(rows[j] + ch, dw + 4 * j);
                        else dw[4 * j] = dw[4 * j + 1] = dw[4 * j + 2] = dw[4 * j + 3] = Vector512<float>.Zero;
                    for (int xi = 0; xi < n; xi++)
                    {
                        TermSums4(dw, start[xi], start[xi + 1], idx, coef, out var s0, out var s1, out var s2, out var s3);
                        float* o = dst + (long)xi * total * vw + ch;
                        if (nt)
                        {
                            Avx512F.StoreAlignedNonTemporal(o, s0); Avx512F.StoreAlignedNonTemporal(o + 16, s1);
                            Avx512F.StoreAlignedNonTemporal(o + 32, s2); Avx512F.StoreAlignedNonTemporal(o + 48, s3);
                        }
                        else { Vector512.Store(s0, o); Vector512.Store(s1, o + 16); Vector512.Store(s2, o + 32); Vector512.Store(s3, o + 48); }
                    }
                }
                for (; ch + 16 <= c; ch += 16)
                {
                    if (inner) for (int j = 0; j < n; j++) d[j] = Vector512.Load(rows[j] + ch);
                    else for (int j = 0; j < n; j++) d[j] = rows[j] != null ? Vector512.Load(rows[j] + ch) : Vector512<float>.Zero;
                    for (int xi = 0, k = 0; xi < n; xi++)
                    {
                        var sum = Vector512<float>.Zero;
                        for (int end = start[xi + 1]; k < end; k++) sum = Vector512.FusedMultiplyAdd(Vector512.Create(coef[k]), d[idx[k]], sum);
                        if (nt) Avx512F.StoreAlignedNonTemporal(dst + (long)xi * total * vw + ch, sum);
                        else Vector512.Store(sum, dst + (long)xi * total * vw + ch);
                    }
                }
                for (; ch < c; ch++) body.Execute((int)(tile * c + ch));
            }
            if (nt) Sse.StoreFence();
        });
    }

    /// B panels of the packed GEMM: a Winograd weight written in them (cout a multiple of 32) skips B packing
    /// (written by the gathered path, so only where AVX2 is).
    public override int WeightPanel => Avx2.IsSupported ? CpuGemm.PanelWidth : 0;

    public override void WinogradWeight(Storage u, long uo, Storage w, long wo, Storage g, long go, int cin, int cout, int n, bool panels = false)
    {
        var body = WinogradWeightBody(u, uo, w, wo, g, go, cin, cout, n);      // checks every extent
        long plane = (long)cin * cout;
        if (panels && WeightPanel == 0) throw new NotSupportedException($"{Name}: no panel-layout weights without AVX2 (WeightPanel is 0)");
        if (panels && !PanelsFit(cout)) throw new ShapeException($"winograd: panel-layout U needs Cout a multiple of {CpuGemm.PanelWidth}, got {cout}");
        using var _ = Profiler.Time("WinogradWeight", plane * n);
        float* up = S(u).Ptr + uo, wp = S(w).Ptr + wo, gp = S(g).Ptr + go;
        int blocks = Avx2.IsSupported ? cout / 16 : 0;
        // 16 output channels of one input channel at a time: w[co.., ci, k] gathered (stride Cin*3), each U
        // row (or 16 columns of a panel row) written 64 bytes at a time; the co tail runs the kernel body
        var idx = Vector256.Create(0, 3 * cin, 6 * cin, 9 * cin, 12 * cin, 15 * cin, 18 * cin, 21 * cin);
        Rows(blocks + 1, plane * n, (a, e) =>
        {
            for (long blk = a; blk < e; blk++)
            {
                if (blk == blocks) { for (int ci = 0; ci < cin; ci++) for (int co = blocks * 16; co < cout; co++) body.Execute(ci * cout + co); continue; }
                int co0 = (int)blk * 16;
                for (int ci = 0; ci < cin; ci++)
                {
                    float* src = wp + ((long)co0 * cin + ci) * 3, src8 = src + 24L * cin;
                    var w0 = Vector512.Create(Avx2.GatherVector256(src, idx, 4), Avx2.GatherVector256(src8, idx, 4));
                    var w1 = Vector512.Create(Avx2.GatherVector256(src + 1, idx, 4), Avx2.GatherVector256(src8 + 1, idx, 4));
                    var w2 = Vector512.Create(Avx2.GatherVector256(src + 2, idx, 4), Avx2.GatherVector256(src8 + 2, idx, 4));
                    long at = panels ? CpuGemm.PanelIndex(ci, co0, cin, cout) : (long)ci * cout + co0;
                    for (int xi = 0; xi < n; xi++)
                        Vector512.Store(Vector512.Create(gp[xi * 3]) * w0 + Vector512.Create(gp[xi * 3 + 1]) * w1 + Vector512.Create(gp[xi * 3 + 2]) * w2,
                            up + xi * plane + at);
                }
            }
        });
    }

    public override void WinogradOut(Storage y, long yo, Storage mm, long mmo, Storage mat, long mo, Storage bias, long bo, Storage mask, long mko, WinoParams p)
    {
        var body = WinogradOutBody(y, yo, mm, mmo, mat, mo, bias, bo, mask, mko, p);      // checks every extent
        int n = p.N, m = p.M, c = p.C, total = p.TotalTiles;
        long work = (long)total * c;
        using var _ = Profiler.Time("WinogradOut", work * n);
        float* yp = S(y).Ptr + yo, mp = S(mm).Ptr + mmo;
        float* bp = bias != null ? S(bias).Ptr + bo : null, kp = mask != null ? S(mask).Ptr + mko : null;
        var (start, idx, coef) = Terms(S(mat).Ptr + mo + n * n, m, n);
        var vslope = Vector512.Create(p.Slope);
        Rows(total, work * n, (a, e) =>
        {
            Vector512<float>* mv = stackalloc Vector512<float>[n], mw = stackalloc Vector512<float>[4 * n];
            for (long tile = a; tile < e; tile++)
            {
                int b = (int)(tile / p.Tiles), t0 = (int)(tile % p.Tiles) * m, count = Math.Min(m, p.T - t0);
                float* src = mp + tile * c, dst = yp + ((long)b * p.T + t0) * c;
                int ch = 0;
                // 64 channels at a time: each term's FMA feeds four independent sums, so the sums' FMA latency
                // overlaps (16 at a time, each output's sum was one dependent chain of its At terms)
                for (; ch + 64 <= c; ch += 64)
                {
                    for (int xi = 0; xi < n; xi++) Load4(src + (long)xi * total * c + ch, mw + 4 * xi);
                    Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default;
                    if (bp != null) { b0 = Vector512.Load(bp + ch); b1 = Vector512.Load(bp + ch + 16); b2 = Vector512.Load(bp + ch + 32); b3 = Vector512.Load(bp + ch + 48); }
                    for (int r = 0; r < count; r++)
                    {
                        TermSums4(mw, start[r], start[r + 1], idx, coef, out var s0, out var s1, out var s2, out var s3);
                        if (bp != null) { s0 += b0; s1 += b1; s2 += b2; s3 += b3; }
                        s0 = Vector512.ConditionalSelect(Vector512.GreaterThan(s0, Vector512<float>.Zero), s0, s0 * vslope);
                        s1 = Vector512.ConditionalSelect(Vector512.GreaterThan(s1, Vector512<float>.Zero), s1, s1 * vslope);
                        s2 = Vector512.ConditionalSelect(Vector512.GreaterThan(s2, Vector512<float>.Zero), s2, s2 * vslope);
                        s3 = Vector512.ConditionalSelect(Vector512.GreaterThan(s3, Vector512<float>.Zero), s3, s3 * vslope);
                        if (kp != null) { var kv = Vector512.Create(kp[(long)b * p.T + t0 + r]); s0 *= kv; s1 *= kv; s2 *= kv; s3 *= kv; }
                        float* o = dst + (long)r * c + ch;
                        Vector512.Store(s0, o); Vector512.Store(s1, o + 16); Vector512.Store(s2, o + 32); Vector512.Store(s3, o + 48);
                    }
                }
                for (; ch + 16 <= c; ch += 16)
                {
                    for (int xi = 0; xi < n; xi++) mv[xi] = Vector512.Load(src + (long)xi * total * c + ch);
                    var bv = bp != null ? Vector512.Load(bp + ch) : Vector512<float>.Zero;
                    for (int r = 0, k = 0; r < count; r++)
                    {
                        var sum = Vector512<float>.Zero;
                        for (int end = start[r + 1]; k < end; k++) sum = Vector512.FusedMultiplyAdd(Vector512.Create(coef[k]), mv[idx[k]], sum);
                        if (bp != null) sum += bv;
                        sum = Vector512.ConditionalSelect(Vector512.GreaterThan(sum, Vector512<float>.Zero), sum, sum * vslope);
                        if (kp != null) sum *= Vector512.Create(kp[(long)b * p.T + t0 + r]);
                        Vector512.Store(sum, dst + (long)r * c + ch);
                    }
                }
                for (; ch < c; ch++) body.Execute((int)(tile * c + ch));
            }
        });
    }

    public override void Gemm(Storage c, long co, Storage a, long ao, Storage b, long bo, GemmParams p)
    {
        CheckGemm(p, c, co, a, ao, b, bo);
        long flops = 2L * p.M * p.N * p.K * p.Batch;
        using var _ = Profiler.Time(flops > 200_000_000 ? "Gemm large" : "Gemm small", flops);
        CpuGemm.SgemmBatch(p.Batch, p.M, p.N, p.K, p.Alpha, S(a).Ptr + ao, p.BatchA, p.RsA, p.CsA,
            S(b).Ptr + bo, p.BatchB, p.RsB, p.CsB, p.Beta, S(c).Ptr + co, p.BatchC, p.Ldc, panelB: p.PanelB != 0);
    }
}
