// The CPU backend: row operations and reductions (L2-normalize, top-k, pairwise KL, SumTo, Reduce).
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using PvlrKernels.Kernels;
using TP = System.Numerics.Tensors.TensorPrimitives;

namespace PvlrKernels.Engine;

public sealed unsafe partial class CpuBackend
{
    /// Contiguous rows (inner = 1): the sum of squares and the division vectorized per row.
    public override void L2Normalize(Buf y, Buf norm, Buf x, int outer, int n, int inner, float eps)
    {
        if (inner != 1 || n < 16)
        {
            base.L2Normalize(y, norm, x, outer, n, inner, eps);
            return;
        }
        using var _ = Profiler.Time("L2Normalize", (long)outer * n);
        Checked("l2norm", y, (long)outer * n);
        Checked("l2norm", norm, outer);
        Checked("l2norm", x, (long)outer * n);
        float* yp = P(y), np = P(norm), xp = P(x);
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


    /// Top-k indices along an axis, 16 inner columns (a MIL score's classes) at a time: each lane runs the
    /// kernel body's K selection passes (the same comparisons in the same order, NaN and ties included), so
    /// the same indices. A column tail is the last 16 columns again (the overlap is written twice, with the
    /// same values). The scalar passes took 5 ms a call at demo shapes.
    public override void ArgTopK(Buf idx, Buf x, int outer, int n, int inner, int k, bool largest)
    {
        var body = ArgTopKBody(idx, x, outer, n, inner, k, largest);      // checks k and both extents
        long r = (long)outer * inner;
        if (inner < 16 || !Lanes16)
        {
            Launch(r, body);
            return;
        }
        using var _ = Profiler.Time(typeof(ArgTopK<PtrMem>), r);
        float* ip = P(idx), xp = P(x);
        int per = (inner + 15) / 16;
        var sign = Vector512.Create(largest ? 1f : -1f);
        Rows((long)outer * per, r * n * k, (a, e) =>
        {
            for (long u = a; u < e; u++)
            {
                int o = (int)(u / per), j0 = Math.Min((int)(u % per) * 16, inner - 16);
                float* xb = xp + (long)o * n * inner + j0;
                var prevV = Vector512<float>.Zero;
                var prevI = Vector512.Create(-1);
                for (int m = 0; m < k; m++)
                {
                    var bestV = Vector512<float>.Zero;
                    var bestI = Vector512.Create(-1);
                    for (int t = 0; t < n; t++)
                    {
                        var v = sign * Vector512.Load(xb + (long)t * inner);
                        var tv = Vector512.Create(t);
                        var after = Vector512.LessThan(prevI, Vector512<int>.Zero) | Vector512.LessThan(v,
                            prevV).AsInt32()
                                    | (Vector512.Equals(v, prevV).AsInt32() & Vector512.GreaterThan(tv, prevI));
                        var take = after & (Vector512.LessThan(bestI, Vector512<int>.Zero) | Vector512.GreaterThan(v,
                            bestV).AsInt32());
                        bestV = Vector512.ConditionalSelect(take.AsSingle(), v,
                            bestV); bestI = Vector512.ConditionalSelect(take, tv, bestI);
                    }
                    Vector512.Store(Vector512.ConvertToSingle(bestI), ip + ((long)o * k + m) * inner + j0);
                    prevV = bestV;
                    prevI = bestI;
                }
            }
        });
    }

    /// Pairwise KL with log s2 of every distribution and dimension taken once per call, into a table, instead
    /// of twice per pair and dimension; each pair then sums the kernel body's terms (PairwiseKlFwd.Term) in
    /// its order, so the same bits.
    public override void PairwiseKl(Buf kl, Buf muP, Buf varP, Buf muQ, Buf varQ, KlParams k)
    {
        PairwiseKlBody(kl, muP, varP, muQ, varQ, k);     // checks every extent
        long np = (long)k.Bt * k.Np * k.D, nq = (long)k.Bt * k.Nq * k.D, r = (long)k.Bt * k.Np * k.Nq;
        using var _ = Profiler.Time(typeof(PairwiseKlFwd<PtrMem>), r);
        float* kp = P(kl), mp = P(muP), vp = P(varP), mq = P(muQ), vq = P(varQ);
        float* lp = (float*)NativeMemory.Alloc((nuint)(np + nq), sizeof(float)), lq = lp + np;
        try
        {
            float eps = k.VarEps;
            int dim = k.D;
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
                        s += PairwiseKlFwd<PtrMem>.Term(mq[qb + d] - mp[pb + d], vp[pb + d] + eps, vq[qb + d] + eps,
                            lp[pb + d], lq[qb + d]);
                    kp[q] = PairwiseKlFwd<PtrMem>.Finish(s, dim);
                }
            });
        }
        finally { NativeMemory.Free(lp); }
    }


    /// SumTo whose reduced dims, after dropping size-1 dims and merging neighbours, form a
    /// [reduced, kept] (column sums: bias gradients) or [kept, reduced] (row sums) pattern.
    public override void SumTo(Buf dst, Dims4 target, Buf src, Dims4 full, bool accumulate)
    {
        using var _ = Profiler.Time("SumTo", full.Total);
        var segs = SumToRuns(target, full);
        if (segs.TrueForAll(x => !x.red))          // nothing reduced: a (+)= copy
        {
            Copy4(dst, new Strides4 { S3 = 1 }, src, new Strides4 { S3 = 1 }, new Dims4 { N0 = 1, N1 = 1,
                N2 = 1, N3 = full.Total }, 1f, accumulate);
            return;
        }
        bool colSums = segs.Count == 2 && segs[0].red && !segs[1].red,
            rowSums = segs.Count == 2 && !segs[0].red && segs[1].red;
        if (!colSums && !rowSums)
        {
            base.SumTo(dst, target, src, full, accumulate);
            return;
        }
        Checked("sum_to", dst, target.Total);
        Checked("sum_to", src, full.Total);
        float* dp = P(dst), sp = P(src);
        if (rowSums)
        {
            long w = segs[0].n;
            int r = (int)segs[1].n;
            Rows(w, full.Total, (a, b) =>
            {
                for (long i = a; i < b; i++)
                {
                    float v = TP.Sum(new ReadOnlySpan<float>(sp + i * r, r));
                    dp[i] = accumulate ? dp[i] + v : v;
                }
            });
            return;
        }
        long rows = segs[0].n;
        int width = (int)segs[1].n;
        // columns per task: independent outputs, no reduction across threads
        const int Block = 512;
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
    public override void Reduce(Buf y, Buf x, Buf idx, int outer, int n,
        int inner, int mode, float scale, bool accumulate)
    {
        using var _ = Profiler.Time("Reduce", (long)outer * n * inner);
        if (mode == ReduceMode.Sum && inner >= 16)
        {
            ColumnSums(y, x, outer, n, inner, scale, accumulate);
            return;
        }
        if (mode != ReduceMode.Sum || inner != 1 || n < 64)
        {
            base.Reduce(y, x, idx, outer, n, inner, mode, scale, accumulate);
            return;
        }
        Checked("reduce", y, outer);
        Checked("reduce", x, (long)outer * n);
        float* yp = P(y), xp = P(x);
        if (outer >= Threads * 2 || (long)n < (1 << 18))
        {
            Rows(outer, (long)outer * n, (a, b) =>
            {
                for (long o = a; o < b; o++)
                {
                    float v = scale * TP.Sum(new ReadOnlySpan<float>(xp + o * n, n));
                    yp[o] = accumulate ? yp[o] + v : v;
                }
            });
            return;
        }
        for (int o = 0; o < outer; o++)
        {
            const int Part = 1 << 16;
            int parts = (n + Part - 1) / Part;
            var partial = new double[parts];
            float* row = xp + (long)o * n;
            CpuPool.For(parts, k => partial[k] = TP.Sum(new ReadOnlySpan<float>(row + (long)k * Part, Math.Min(Part,
                n - k * Part))), Threads);
            float v = scale * (float)partial.Sum();
            yp[o] = accumulate ? yp[o] + v : v;
        }
    }

    /// Sums over the middle axis with 16 or more kept columns (a Linear's bias gradient: the column sums
    /// of (rows, out)): each block of 256 columns adds the rows in order into a running row, so every
    /// column sums exactly as the kernel body does (0 + x0 + x1 + ..., then scale), but reading rows
    /// instead of one strided column per output. At paper shapes the strided kernel took ~8 ms a call.
    void ColumnSums(Buf y, Buf x, int outer, int n, int inner, float scale, bool accumulate)
    {
        Checked("reduce", y, (long)outer * inner);
        Checked("reduce", x, (long)outer * n * inner);
        float* yp = P(y), xp = P(x);
        const int Block = 256;
        int blocks = (inner + Block - 1) / Block;
        Rows((long)outer * blocks, (long)outer * n * inner, (a, e) =>
        {
            var acc = new float[Block];
            for (long t = a; t < e; t++)
            {
                int o = (int)(t / blocks), j0 = (int)(t % blocks) * Block, w = Math.Min(Block, inner - j0);
                var sum = acc.AsSpan(0, w);
                sum.Clear();
                float* col = xp + (long)o * n * inner + j0;
                for (int k = 0; k < n; k++) TP.Add(sum, new ReadOnlySpan<float>(col + (long)k * inner, w), sum);
                TP.Multiply(sum, scale, sum);
                var dst = new Span<float>(yp + (long)o * inner + j0, w);
                if (accumulate) TP.Add(dst, sum, dst); else sum.CopyTo(dst);
            }
        });
    }
}
