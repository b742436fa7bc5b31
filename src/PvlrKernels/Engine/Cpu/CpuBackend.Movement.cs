// The CPU backend: copies, fills and re-layouts, row-wise instead of per-element index arithmetic.
using PvlrKernels.Kernels;
using TP = System.Numerics.Tensors.TensorPrimitives;

namespace PvlrKernels.Engine;

public sealed unsafe partial class CpuBackend
{
    public override void Fill(Buf y, long n, float v)
    {
        using var _ = Profiler.Time("Fill", n);
        if (n <= 0) return;
        Checked("fill", y, n);
        var p = P(y);
        Elements(n, (a, b) => new Span<float>(p + a, (int)(b - a)).Fill(v));
    }

    /// Drops size-1 dims (front-padding back to rank 4), so e.g. (1,T,C,1) copies become row copies.
    static void Canonical(ref Dims4 d, ref Strides4 a, ref Strides4 b)
    {
        int[] n = { d.N0, d.N1, d.N2, d.N3 }, sa = { a.S0, a.S1, a.S2, a.S3 }, sb = { b.S0, b.S1, b.S2, b.S3 };
        int[] on = { 1, 1, 1, 1 }, oa = new int[4], ob = new int[4]; int j = 3;
        for (int k = 3; k >= 0; k--) if (n[k] != 1)
        {
            on[j] = n[k];
            oa[j] = sa[k];
            ob[j] = sb[k];
            j--;
        }
        d = new Dims4 { N0 = on[0], N1 = on[1], N2 = on[2], N3 = on[3] };
        a = new Strides4 { S0 = oa[0], S1 = oa[1], S2 = oa[2], S3 = oa[3] }; b = new Strides4 { S0 = ob[0],
            S1 = ob[1], S2 = ob[2], S3 = ob[3] };
    }

    public override void Copy4(Buf dst, Strides4 sd, Buf src, Strides4 ss, Dims4 d, float scale, bool accumulate)
    {
        using var _ = Profiler.Time("Copy4", d.Total);
        if (d.Total == 0) return;
        var (dlo, dhi) = Range(d, sd);
        var (slo, shi) = Range(d, ss);
        Checked("copy", dst + dlo, dhi - dlo + 1); Checked("copy", src + slo, shi - slo + 1);   // extent checks
        Canonical(ref d, ref sd, ref ss);
        float* dp = P(dst), sp = P(src);
        if (sd.S3 == 1 && ss.S3 == 1 && d.N3 >= 16)
        {
            int w = d.N3;
            Rows((long)d.N0 * d.N1 * d.N2, d.Total, (r0, r1) =>
            {
                for (long r = r0; r < r1; r++)
                {
                    int i2 = (int)(r % d.N2), i1 = (int)(r / d.N2 % d.N1), i0 = (int)(r / d.N2 / d.N1);
                    var o = new Span<float>(dp + sd.At(i0, i1, i2, 0),
                        w); var x = new ReadOnlySpan<float>(sp + ss.At(i0, i1, i2, 0), w);
                    if (!accumulate)
                    {
                        if (scale == 1f) x.CopyTo(o);
                        else TP.Multiply(x, scale, o);
                    }
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
    static void Box(float* p, long s1, long s2, long s3, float* buf, int n1, int n2, int n3, bool toBuf, float scale,
        bool accumulate)
    {
        Span<(long sp, int sb, int n)> ax = stackalloc (long, int, int)[3];
        ax[0] = (s1, 32 * 32, n1);
        ax[1] = (s2, 32, n2);
        ax[2] = (s3, 1, n3);
        for (int a = 0; a < 2; a++)             // sort by |stride| descending (three elements)
            for (int b = a + 1; b < 3; b++)
                if (Math.Abs(ax[b].sp) > Math.Abs(ax[a].sp)) (ax[a], ax[b]) = (ax[b], ax[a]);
        if (ax[2].n < 8) (ax[1], ax[2]) = (ax[2],
            ax[1]);     // the 3 taps inside: the inner loop runs over the 32 instead
        var (pa, ba, na) = ax[0];
        var (pb, bb, nb) = ax[1];
        var (pc, bc, nc) = ax[2];
        for (int i = 0; i < na; i++)
            for (int j = 0; j < nb; j++)
            {
                float* q = p + i * pa + j * pb;
                float* r = buf + i * ba + j * bb;
                if (toBuf) for (int l = 0; l < nc; l++) r[l * bc] = q[l * pc];
                else if (accumulate) for (int l = 0; l < nc; l++) q[l * pc] += scale * r[l * bc];
                else for (int l = 0; l < nc; l++) q[l * pc] = scale * r[l * bc];
            }
    }
}
