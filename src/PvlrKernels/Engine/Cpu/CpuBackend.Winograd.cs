// The CPU backend: the Winograd transforms, vectorized over channels.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using PvlrKernels.Kernels;

namespace PvlrKernels.Engine;

public sealed unsafe partial class CpuBackend
{
    // ---- Winograd transforms (kernels/Winograd.cs) vectorized over channels: 64 channels of one tile at a
    // time (then 16), the zero coefficients of Bt/At dropped once per call (Terms), FMAs over the rest in
    // row order; the channel tail runs the kernel body itself. With 16 channels each output's sum was one
    // chain of dependent FMAs; four independent sums per term overlap their latency, in the same order, so
    // the bits do not change (WinogradTests.SixtyFourChannelBodiesGiveTheSixteenChannelBits).

    /// The nonzero entries of each row of a rows x cols matrix: row r's terms are idx/coef[start[r] ..
    /// start[r+1]), in column order (the order the kernel body sums in).
    static (int[] start, int[] idx, float[] coef) Terms(float* mat, int rows, int cols)
    {
        var start = new int[rows + 1];
        var idx = new List<int>();
        var coef = new List<float>();
        for (int r = 0; r < rows; r++)
        {
            start[r] = idx.Count;
            for (int j = 0; j < cols; j++) if (mat[r * cols + j] != 0f)
            {
                idx.Add(j);
                coef.Add(mat[r * cols + j]);
            }
        }
        start[rows] = idx.Count;
        return (start, idx.ToArray(), coef.ToArray());
    }

    /// The 64 channels at s as four vectors at d.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Load4(float* s, Vector512<float>* d)
    {
        d[0] = Vector512.Load(s);
        d[1] = Vector512.Load(s + 16);
        d[2] = Vector512.Load(s + 32);
        d[3] = Vector512.Load(s + 48);
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
            var cf = Vector512.Create(coef[k]);
            var x4 = x + 4 * idx[k];
            s0 = Vector512.FusedMultiplyAdd(cf, x4[0], s0);
            s1 = Vector512.FusedMultiplyAdd(cf, x4[1], s1);
            s2 = Vector512.FusedMultiplyAdd(cf, x4[2], s2);
            s3 = Vector512.FusedMultiplyAdd(cf, x4[3], s3);
        }
    }

    public override void WinogradIn(Buf v, Buf x, Buf mat, WinoParams p)
    {
        var body = WinogradInBody(v, x, mat, p);      // checks every extent
        int n = p.N, c = p.C, total = p.TotalTiles;
        long work = (long)total * c;
        using var _ = Profiler.Time("WinogradIn", work * n);
        float* vp = P(v), xp = P(x);
        var (start, idx, coef) = Terms(P(mat), n, n);
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
                    if (t >= 0 && t < p.T)
                        rows[j] = xp + ((long)b * p.T + t) * c; else { rows[j] = null; inner = false; }
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
                        TermSums4(dw, start[xi], start[xi + 1], idx, coef, out var s0, out var s1, out var s2,
                            out var s3);
                        float* o = dst + (long)xi * total * vw + ch;
                        if (nt)
                        {
                            Avx512F.StoreAlignedNonTemporal(o, s0);
                            Avx512F.StoreAlignedNonTemporal(o + 16, s1);
                            Avx512F.StoreAlignedNonTemporal(o + 32, s2);
                            Avx512F.StoreAlignedNonTemporal(o + 48, s3);
                        }
                        else
                        {
                            Vector512.Store(s0, o);
                            Vector512.Store(s1, o + 16);
                            Vector512.Store(s2, o + 32);
                            Vector512.Store(s3, o + 48);
                        }
                    }
                }
                for (; ch + 16 <= c; ch += 16)
                {
                    if (inner) for (int j = 0; j < n; j++) d[j] = Vector512.Load(rows[j] + ch);
                    else for (int j = 0; j < n; j++) d[j] = rows[j] != null
                        ? Vector512.Load(rows[j] + ch) : Vector512<float>.Zero;
                    for (int xi = 0, k = 0; xi < n; xi++)
                    {
                        var sum = Vector512<float>.Zero;
                        for (int end = start[xi + 1]; k < end; k++)
                            sum = Vector512.FusedMultiplyAdd(Vector512.Create(coef[k]), d[idx[k]], sum);
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

    public override void WinogradWeight(Buf u, Buf w, Buf g, int cin, int cout, int n, bool panels = false)
    {
        var body = WinogradWeightBody(u, w, g, cin, cout, n);      // checks every extent
        long plane = (long)cin * cout;
        if (panels && WeightPanel == 0)
            throw new NotSupportedException($"{Name}: no panel-layout weights without AVX2 (WeightPanel is 0)");
        if (panels && !PanelsFit(cout))
            throw new ShapeException($"winograd: panel-layout U needs Cout a multiple of {CpuGemm.PanelWidth}, got "
                + $"{cout}");
        using var _ = Profiler.Time("WinogradWeight", plane * n);
        float* up = P(u), wp = P(w), gp = P(g);
        int blocks = Avx2.IsSupported ? cout / 16 : 0;
        // 16 output channels of one input channel at a time: w[co.., ci, k] gathered (stride Cin*3), each U
        // row (or 16 columns of a panel row) written 64 bytes at a time; the co tail runs the kernel body
        var idx = Vector256.Create(0, 3 * cin, 6 * cin, 9 * cin, 12 * cin, 15 * cin, 18 * cin, 21 * cin);
        Rows(blocks + 1, plane * n, (a, e) =>
        {
            for (long blk = a; blk < e; blk++)
            {
                if (blk == blocks)
                {
                    for (int ci = 0; ci < cin; ci++)
                        for (int co = blocks * 16; co < cout; co++) body.Execute(ci * cout + co);
                    continue;
                }
                int co0 = (int)blk * 16;
                for (int ci = 0; ci < cin; ci++)
                {
                    float* src = wp + ((long)co0 * cin + ci) * 3, src8 = src + 24L * cin;
                    var w0 = Vector512.Create(Avx2.GatherVector256(src, idx, 4), Avx2.GatherVector256(src8, idx, 4));
                    var w1 = Vector512.Create(Avx2.GatherVector256(src + 1, idx, 4), Avx2.GatherVector256(src8 + 1,
                        idx, 4));
                    var w2 = Vector512.Create(Avx2.GatherVector256(src + 2, idx, 4), Avx2.GatherVector256(src8 + 2,
                        idx, 4));
                    long at = panels ? CpuGemm.PanelIndex(ci, co0, cin, cout) : (long)ci * cout + co0;
                    for (int xi = 0; xi < n; xi++)
                        Vector512.Store(Vector512.Create(gp[xi * 3]) * w0 + Vector512.Create(gp[xi * 3 + 1]) * w1
                        + Vector512.Create(gp[xi * 3 + 2]) * w2, up + xi * plane + at);
                }
            }
        });
    }

    public override void WinogradOut(Buf y, Buf mm, Buf mat, Buf bias, Buf mask, WinoParams p)
    {
        var body = WinogradOutBody(y, mm, mat, bias, mask, p);      // checks every extent
        int n = p.N, m = p.M, c = p.C, total = p.TotalTiles;
        long work = (long)total * c;
        using var _ = Profiler.Time("WinogradOut", work * n);
        float* yp = P(y), mp = P(mm);
        float* bp = !bias.IsNone ? P(bias) : null, kp = !mask.IsNone ? P(mask) : null;
        var (start, idx, coef) = Terms(P(mat) + n * n, m, n);
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
                    if (bp != null)
                    {
                        b0 = Vector512.Load(bp + ch);
                        b1 = Vector512.Load(bp + ch + 16);
                        b2 = Vector512.Load(bp + ch + 32);
                        b3 = Vector512.Load(bp + ch + 48);
                    }
                    for (int r = 0; r < count; r++)
                    {
                        TermSums4(mw, start[r], start[r + 1], idx, coef, out var s0, out var s1, out var s2,
                            out var s3);
                        if (bp != null)
                        {
                            s0 += b0;
                            s1 += b1;
                            s2 += b2;
                            s3 += b3;
                        }
                        s0 = Vector512.ConditionalSelect(Vector512.GreaterThan(s0, Vector512<float>.Zero), s0,
                            s0 * vslope);
                        s1 = Vector512.ConditionalSelect(Vector512.GreaterThan(s1, Vector512<float>.Zero), s1,
                            s1 * vslope);
                        s2 = Vector512.ConditionalSelect(Vector512.GreaterThan(s2, Vector512<float>.Zero), s2,
                            s2 * vslope);
                        s3 = Vector512.ConditionalSelect(Vector512.GreaterThan(s3, Vector512<float>.Zero), s3,
                            s3 * vslope);
                        if (kp != null)
                        {
                            var kv = Vector512.Create(kp[(long)b * p.T + t0 + r]);
                            s0 *= kv;
                            s1 *= kv;
                            s2 *= kv;
                            s3 *= kv;
                        }
                        float* o = dst + (long)r * c + ch;
                        Vector512.Store(s0, o); Vector512.Store(s1, o + 16); Vector512.Store(s2,
                            o + 32); Vector512.Store(s3, o + 48);
                    }
                }
                for (; ch + 16 <= c; ch += 16)
                {
                    for (int xi = 0; xi < n; xi++) mv[xi] = Vector512.Load(src + (long)xi * total * c + ch);
                    var bv = bp != null ? Vector512.Load(bp + ch) : Vector512<float>.Zero;
                    for (int r = 0, k = 0; r < count; r++)
                    {
                        var sum = Vector512<float>.Zero;
                        for (int end = start[r + 1]; k < end; k++)
                            sum = Vector512.FusedMultiplyAdd(Vector512.Create(coef[k]), mv[idx[k]], sum);
                        if (bp != null) sum += bv;
                        sum = Vector512.ConditionalSelect(Vector512.GreaterThan(sum, Vector512<float>.Zero), sum,
                            sum * vslope);
                        if (kp != null) sum *= Vector512.Create(kp[(long)b * p.T + t0 + r]);
                        Vector512.Store(sum, dst + (long)r * c + ch);
                    }
                }
                for (; ch < c; ch++) body.Execute((int)(tile * c + ch));
            }
        });
    }
}
