// The data-movement primitives at shapes that reach the CPU backend's fast paths (row copies, tiled
// transposes with negative strides, column/row/identity SumTo, long contiguous sums split in parts),
// against a float64 host reference, on every backend.
using NUnit.Framework;
using static PvlrKernels.Tests.TestData;
using PvlrKernels.Engine;
using PvlrKernels.Kernels;

namespace PvlrKernels.Tests;

[TestFixtureSource(typeof(Backends), nameof(Backends.All))]
public sealed class DataMovementTests(string backendName)
{
    Backend B => Backends.Get(backendName);

    static IEnumerable<TestCaseData> Copies()
    {
        // (dims, dst strides, src strides, src offset): a row copy, a (1,T,C,1) copy, a conv weight repack, a flipped
        // repack
        yield return new TestCaseData(new[] { 1, 3, 5, 40 }, new[] { 0, 200, 40, 1 }, new[] { 0, 400, 80, 1 },
            0).SetName("rows");
        yield return new TestCaseData(new[] { 1, 70, 33, 1 }, new[] { 0, 33, 1, 1 }, new[] { 0, 66, 1, 1 },
            0).SetName("trailing-1");
        yield return new TestCaseData(new[] { 1, 3, 37, 45 }, new[] { 0, 37 * 45, 45, 1 }, new[] { 0, 1, 3, 37 * 3 },
            0).SetName("transpose");
        yield return new TestCaseData(new[] { 1, 3, 45, 37 }, new[] { 0, 45 * 37, 37, 1 }, new[] { 0, -1, 37 * 3, 3 },
            2).SetName("flipped");
        // a conv weight gradient back into (Cout, Cin, K): the taps interleaved on the destination side, tiles past 32
        yield return new TestCaseData(new[] { 1, 3, 45, 70 }, new[] { 0, 1, 3, 45 * 3 }, new[] { 0, 45 * 70, 70, 1 },
            0).SetName("weight-grad");
        // taps folded into the tiles under a leading dim, and six of them (more than a tile takes: one pass each)
        yield return new TestCaseData(new[] { 2, 3, 33, 40 }, new[] { 3 * 33 * 40, 33 * 40, 40, 1 },
            new[] { 3 * 33 * 40, 1, 3, 33 * 3 }, 0).SetName("batched-taps");
        yield return new TestCaseData(new[] { 1, 6, 20, 40 }, new[] { 0, 20 * 40, 40, 1 }, new[] { 0, 1, 6, 20 * 6 },
            0).SetName("six-taps");
    }

    /// Row kernels (attention, LayerNorm) at sizes whose work splits them over the CPU's cores though their
    /// row counts are below Launch's threshold (CpuBackend.LaunchRows), against the kernel bodies run row
    /// after row on the host: the same bits on the CPU (each row writes only its own outputs).
    [TestCase(true)] [TestCase(false)]
    public unsafe void RowKernelsGiveTheBodiesResults(bool causal)
    {
        void Same(float[] got, float[] want, string what)
        {
            if (backendName == "cpu") Assert.That(got, Is.EqualTo(want), what);
            else Check.Close(got, want.Select(v => (double)v).ToArray(), 1e-5, 1e-5, $"{what} [{backendName}]");
        }
        float[] Get(Storage s, int n)
        {
            var h = new float[n];
            B.Download(s.At(0), h);
            return h;
        }
        Storage Put(float[] h)
        {
            var s = B.Allocate(h.Length);
            B.Upload(s.At(0), h);
            return s;
        }

        var a = new AttnParams { Nb = 2, L = 13, W = 128, H = 2, Causal = causal ? 1 : 0,
            Scale = 0.125f };   // 52 rows of 13 x 64 x 3
        int rows = a.Nb * a.H * a.L, nq = a.Nb * a.L * 3 * a.W, no = a.Nb * a.L * a.W, np = rows * a.L;
        var qkv = Rand(nq, 21);
        var dout = Rand(no, 22);
        var dq0 = Rand(nq, 23);
        var o = new float[no];
        var p = new float[np];
        var ds = new float[np];
        var dq = (float[])dq0.Clone();
        fixed (float* po = o, pp = p, pq = qkv, pd = dout, pds = ds, pdq = dq)
        {
            var f = new AttentionFwd<PtrMem> { Out = new(po), P = new(pp), Qkv = new(pq), A = a };
            for (int r = 0; r < rows; r++) f.Execute(r);
            var bq = new AttentionBwdQ<PtrMem> { DQkv = new(pdq), DS = new(pds), DOut = new(pd), P = new(pp),
                Qkv = new(pq), A = a };
            for (int r = 0; r < rows; r++) bq.Execute(r);
            var bkv = new AttentionBwdKV<PtrMem> { DQkv = new(pdq), DS = new(pds), DOut = new(pd), P = new(pp),
                Qkv = new(pq), A = a };
            for (int r = 0; r < rows; r++) bkv.Execute(r);
        }
        using (var sq = Put(qkv))
            using (var so = B.Allocate(no))
                using (var sp = B.Allocate(np))
                    using (var sd = Put(dout)) using (var sds = B.Allocate(np)) using (var sdq = Put(dq0))
        {
            B.Attention(so.At(0), sp.At(0), sq.At(0), a);
            B.AttentionBackward(sdq.At(0), sds.At(0), sd.At(0), sp.At(0), sq.At(0), a);
            Same(Get(so, no), o, "attention out"); Same(Get(sp, np), p, "attention P"); Same(Get(sdq, nq), dq,
                "attention dqkv");
        }

        // 100 rows of 1024; 1024 columns of 100
        int lr = 100, n = 1024;
        var x = Rand(lr * n, 24);
        var gamma = Rand(n, 25);
        var beta = Rand(n, 26);
        var dy = Rand(lr * n, 27);
        var y = new float[lr * n];
        var mean = new float[lr];
        var rstd = new float[lr];
        var dx = new float[lr * n];
        var dg = new float[n];
        var db = new float[n];
        fixed (float* px = x, pg = gamma, pb = beta, pdy = dy, py = y, pm = mean, pr = rstd, pdx = dx, pdg = dg,
            pdb = db)
        {
            var f = new LayerNormFwd<PtrMem> { Y = new(py), Mean = new(pm), Rstd = new(pr), X = new(px),
                Gamma = new(pg), Beta = new(pb), N = n, Eps = 1e-5f };
            for (int r = 0; r < lr; r++) f.Execute(r);
            var bx = new LayerNormBwdX<PtrMem> { DX = new(pdx), DY = new(pdy), X = new(px), Gamma = new(pg),
                Mean = new(pm), Rstd = new(pr), N = n };
            for (int r = 0; r < lr; r++) bx.Execute(r);
            var bp = new LayerNormBwdParams<PtrMem> { DGamma = new(pdg), DBeta = new(pdb), DY = new(pdy), X = new(px),
                Mean = new(pm), Rstd = new(pr), N = n, Rows = lr };
            for (int c = 0; c < n; c++) bp.Execute(c);
        }
        using (var sx = Put(x)) using (var sg = Put(gamma)) using (var sb = Put(beta)) using (var sdy = Put(dy))
        using (var sy = B.Allocate(lr * n))
            using (var sm = B.Allocate(lr))
                using (var sr = B.Allocate(lr))
                    using (var sdx = B.Allocate(lr * n)) using (var sdg = B.Allocate(n)) using (var sdb = B.Allocate(n))
        {
            B.LayerNorm(sy.At(0), sm.At(0), sr.At(0), sx.At(0), sg.At(0), sb.At(0), lr, n, 1e-5f);
            B.LayerNormBackward(sdx.At(0), sdg.At(0), sdb.At(0), sdy.At(0), sx.At(0), sg.At(0), sm.At(0), sr.At(0), lr,
                n, true, true);
            Same(Get(sy, lr * n), y, "layernorm y"); Same(Get(sm, lr), mean, "layernorm mean"); Same(Get(sr, lr),
                rstd, "layernorm rstd");
            Same(Get(sdx, lr * n), dx, "layernorm dx"); Same(Get(sdg, n), dg, "layernorm dgamma"); Same(Get(sdb, n),
                db, "layernorm dbeta");
        }

        int co = 4, cn = 50, cm = 300,
            ci = 64;                                        // 256 columns of 300 scattered values
        var sdy0 = Rand(co * cm * ci, 28);
        var dx0 = Rand(co * cn * ci, 29);
        var idx = Enumerable.Range(0, co * cm).Select(i => (float)((i * 7919) % cn)).ToArray();
        var sdx0 = (float[])dx0.Clone();
        fixed (float* pdx = sdx0, pdy = sdy0, pi = idx)
        {
            var sc = new ScatterAxis<PtrMem> { DX = new(pdx), DY = new(pdy), Idx = new(pi), N = cn, M = cm,
                Inner = ci, PerInner = 0 };
            for (int c = 0; c < co * ci; c++) sc.Execute(c);
        }
        using (var sdx = Put(dx0)) using (var sdy = Put(sdy0)) using (var cidx = Put(idx))
        {
            B.Scatter(sdx.At(0), sdy.At(0), cidx.At(0), co, cn, cm, ci, false);
            Same(Get(sdx, co * cn * ci), sdx0, "scatter");
        }
    }

    /// Columns of a host matrix into contiguous rows (the feature halves of a ragged batch): 200 rows of
    /// 96 reach the CPU backend's split over cores; the values around the target stay untouched.
    [TestCase(3, 5, 1, 3)] [TestCase(200, 96, 40, 56)] [TestCase(0, 4, 0, 4)]
    public void UploadColumnsCopiesTheBlock(int rows, int srcWidth, int from, int width)
    {
        var src = Rand(rows * srcWidth, 3);
        long off = 7, n = off + (long)rows * width + 5;
        using var dst = B.Allocate(n);
        B.Fill(dst.At(0), n, -1f);
        B.UploadColumns(dst.At(off), src, rows, srcWidth, from, width);
        var got = new float[n];
        B.Download(dst.At(0), got);
        var want = Enumerable.Repeat(-1f, (int)n).ToArray();
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < width; c++) want[off + r * width + c] = src[r * srcWidth + from + c];
        Assert.That(got, Is.EqualTo(want));
        var e = Assert.Throws<ShapeException>(() => B.UploadColumns(dst.At(off), src, rows + 1, srcWidth, from, width));
        Assert.That(e.Message, Does.Contain("upload columns"));
        Assert.Throws<ShapeException>(() => B.UploadColumns(dst.At(off), src, rows, srcWidth, srcWidth - width + 1,
            width));
    }

    [TestCaseSource(nameof(Copies))]
    public void Copy4MatchesReference(int[] d, int[] sd, int[] ss, int srcOff)
    {
        if (backendName == "ilgpu-cpu" && d.Aggregate(1, (a,
            b) => a * b) > 20000) Assert.Ignore("emulator: tiny shapes only");
        var dims = new Dims4 { N0 = d[0], N1 = d[1], N2 = d[2], N3 = d[3] };
        var sD = new Strides4 { S0 = sd[0], S1 = sd[1], S2 = sd[2], S3 = sd[3] }; var sS = new Strides4 { S0 = ss[0],
            S1 = ss[1], S2 = ss[2], S3 = ss[3] };
        int nSrc = 3 * dims.Total + 16, nDst = dims.Total * 2 + 16;
        var src = Rand(nSrc, 1);
        var dst0 = Rand(nDst, 2);
        foreach (bool acc in new[] { false, true })
        {
            var expect = dst0.Select(v => (double)v).ToArray();
            for (int a = 0; a < d[0]; a++)
                for (int b = 0; b < d[1]; b++) for (int c = 0; c < d[2]; c++) for (int e = 0; e < d[3]; e++)
            {
                int o = sD.At(a, b, c, e), i = srcOff + sS.At(a, b, c, e);
                expect[o] = (acc ? expect[o] : 0) + 0.5 * src[i];
            }
            using var s = B.Allocate(nSrc);
            using var t = B.Allocate(nDst);
            B.Upload(s.At(0), src);
            B.Upload(t.At(0), dst0);
            B.Copy4(t.At(0), sD, s.At(srcOff), sS, dims, 0.5f, acc);
            var got = new float[nDst];
            B.Download(t.At(0), got);
            Check.Close(got, expect, 1e-6, 1e-6, $"copy4 acc={acc}");
        }
    }

    [TestCase(new[] { 1, 6, 50, 40 }, new[] { 1, 1, 1, 40 }, TestName = "column sums (bias grad)")]
    [TestCase(new[] { 1, 6, 50, 40 }, new[] { 1, 6, 50, 1 }, TestName = "row sums")]
    [TestCase(new[] { 1, 6, 50, 40 }, new[] { 1, 6, 50, 40 }, TestName = "identity")]
    [TestCase(new[] { 4, 6, 5, 40 }, new[] { 4, 1, 5, 1 }, TestName = "mixed (generic)")]
    // on a GPU: rows of 80 one warp per row, 6,000 values into one in two passes, long columns in parts
    [TestCase(new[] { 1, 6, 5, 80 }, new[] { 1, 6, 5, 1 }, TestName = "long row sums")]
    [TestCase(new[] { 1, 3, 50, 40 }, new[] { 1, 1, 1, 1 }, TestName = "sum of everything")]
    [TestCase(new[] { 1, 2, 2500, 3 }, new[] { 1, 1, 1, 3 }, TestName = "long column sums")]
    public void SumToMatchesReference(int[] f, int[] t)
    {
        var full = new Dims4 { N0 = f[0], N1 = f[1], N2 = f[2], N3 = f[3] }; var tg = new Dims4 { N0 = t[0],
            N1 = t[1], N2 = t[2], N3 = t[3] };
        var x = Rand(full.Total, 3);
        var y0 = Rand(tg.Total, 4);
        var expect = y0.Select(v => (double)v).ToArray();
        for (int a = 0; a < f[0]; a++)
            for (int b = 0; b < f[1]; b++) for (int c = 0; c < f[2]; c++) for (int e = 0; e < f[3]; e++)
        {
            int o = ((Math.Min(a, t[0] - 1) * t[1] + Math.Min(b, t[1] - 1)) * t[2] + Math.Min(c,
                t[2] - 1)) * t[3] + Math.Min(e, t[3] - 1);
            expect[o] += x[((a * f[1] + b) * f[2] + c) * f[3] + e];
        }
        using var xs = B.Allocate(x.Length);
        using var ys = B.Allocate(y0.Length);
        B.Upload(xs.At(0), x);
        B.Upload(ys.At(0), y0);
        B.SumTo(ys.At(0), tg, xs.At(0), full, true);
        var got = new float[y0.Length];
        B.Download(ys.At(0), got);
        Check.Close(got, expect, 1e-5, 1e-5, "sum_to");
    }

    /// The gradient kernels of the binary ops at shapes that reach the CPU's row-wise path (a row or one
    /// value of each operand per output row) give exactly the kernel bodies' values (GradA/GradB).
    static IEnumerable<TestCaseData> GradRows()
    {
        var full = new Strides4 { S2 = 20, S3 = 1 }; var perRow = new Strides4 { S2 = 1,
            S3 = 0 }; var perCol = new Strides4 { S2 = 0, S3 = 1 };
        foreach (var (sa, sb, name) in new[] { (full, full, "rows"), (full, perRow, "row by value"), (perRow, full,
            "value by row"), (perCol, full, "shared row") })
            for (int which = 0; which < 2; which++) yield return new TestCaseData(sa, sb,
                which).SetName($"binary grad {name}, operand {which}");
    }

    [TestCaseSource(nameof(GradRows))]
    public void BinaryGradMatchesTheKernelBodies(Strides4 sa, Strides4 sb, int which)
    {
        var d = new Dims4 { N0 = 1, N1 = 1, N2 = 3, N3 = 20 };
        var a = Rand(60, 7).Select(v => v + 2f).ToArray(); var b = Rand(60,
            8).Select(v => v - 2f).ToArray(); var dy = Rand(60, 9);
        using var sA = B.Allocate(60);
        using var sB = B.Allocate(60);
        using var sD = B.Allocate(60);
        using var t = B.Allocate(60);
        B.Upload(sA.At(0), a);
        B.Upload(sB.At(0), b);
        B.Upload(sD.At(0), dy);
        void Check<TOp>() where TOp : struct, IBinaryOp
        {
            B.BinaryGrad<TOp>(t.At(0), sA.At(0), sa, sB.At(0), sb, sD.At(0), d, which);
            var got = new float[60];
            B.Download(t.At(0), got);
            var expect = new float[60];
            for (int i = 0; i < 60; i++)
            {
                float x = a[sa.At(0, 0, i / 20, i % 20)], y = b[sb.At(0, 0, i / 20, i % 20)];
                expect[i] = which == 0 ? TOp.GradA(x, y, dy[i]) : TOp.GradB(x, y, dy[i]);
            }
            Assert.That(got, Is.EqualTo(expect), typeof(TOp).Name);
        }
        Check<AddOp>();
        Check<SubOp>();
        Check<MulOp>();
        Check<DivOp>();
    }

    /// Sums over a middle axis that keep 16 or more columns (bias gradients; a row-wise path on the CPU)
    /// give exactly the kernel body's sequential sums, scaled and accumulated alike.
    [TestCase(1, 300, 40, false)]
    [TestCase(2, 50, 600, true)]        // 600 columns: three blocks of 256 on the CPU
    public void ColumnSumsMatchTheKernelBody(int outer, int n, int inner, bool accumulate)
    {
        var x = Rand(outer * n * inner, 11);
        var y0 = Rand(outer * inner, 12);
        var expect = new float[outer * inner];
        for (int o = 0; o < outer; o++)
            for (int j = 0; j < inner; j++)
            {
                float s = 0f;
                for (int k = 0; k < n; k++) s += x[(o * n + k) * inner + j];
                s *= 0.25f;
                expect[o * inner + j] = accumulate ? y0[o * inner + j] + s : s;
            }
        using var xs = B.Allocate(x.Length);
        using var ys = B.Allocate(y0.Length);
        B.Upload(xs.At(0), x);
        B.Upload(ys.At(0), y0);
        B.Reduce(ys.At(0), xs.At(0), default, outer, n, inner, ReduceMode.Sum, 0.25f, accumulate);
        var got = new float[y0.Length];
        B.Download(ys.At(0), got);
        Assert.That(got, Is.EqualTo(expect));
    }

    [TestCase(3, 1000)]
    [TestCase(1, 600_000)]          // one long row: summed in parallel parts on the CPU
    public void ContiguousSumMatchesReference(int outer, int n)
    {
        if (backendName == "ilgpu-cpu" && n > 10000) Assert.Ignore("emulator: tiny shapes only");
        var x = Rand(outer * n, 5);
        var expect = Enumerable.Range(0, outer).Select(o => 0.25 * x.Skip(o * n).Take(n).Sum(v => (double)v)).ToArray();
        using var xs = B.Allocate(x.Length);
        using var ys = B.Allocate(outer);
        B.Upload(xs.At(0), x);
        B.Reduce(ys.At(0), xs.At(0), default, outer, n, 1, ReduceMode.Sum, 0.25f, false);
        var got = new float[outer];
        B.Download(ys.At(0), got);
        Check.Close(got, expect, 1e-3, 1e-4, "sum");
    }
}
