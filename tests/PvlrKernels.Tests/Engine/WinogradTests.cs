// The fused test-time convolution (Graph.ConvAct): Winograd F(m,3) against a float64 direct convolution
// with bias, LeakyReLU and a row mask, on every backend, at ragged T and channel counts (vector bodies
// plus scalar tails on the CPU); the FLOP count proves which path ran; the rounding error at a paper-like
// width stays within a small factor of the direct convolution's.
using NUnit.Framework;
using static PvlrKernels.Tests.TestData;
using PvlrKernels.Engine;
using PvlrKernels.Kernels;

namespace PvlrKernels.Tests;

[TestFixtureSource(typeof(Backends), nameof(Backends.All))]
public sealed class WinogradTests(string backendName)
{
    Backend B => Backends.Get(backendName);

    /// float64 act(conv1d(x, w) + b) * mask, padding 1, x (b, t, cin), w (cout, cin, 3).
    static double[] Reference(float[] x, float[] w, float[] bias, float[] mask, int b, int t, int cin, int cout,
        float slope)
    {
        var y = new double[b * t * cout];
        for (int bi = 0; bi < b; bi++)
            for (int ti = 0; ti < t; ti++)
                for (int co = 0; co < cout; co++)
                {
                    double s = bias?[co] ?? 0;
                    for (int k = 0; k < 3; k++)
                    {
                        int tt = ti + k - 1;
                        if (tt < 0 || tt >= t) continue;
                        for (int ci = 0; ci < cin; ci++)
                            s += (double)w[(co * cin + ci) * 3 + k] * x[(bi * t + tt) * cin + ci];
                    }
                    if (!(s > 0)) s *= slope;
                    y[(bi * t + ti) * cout + co] = s * (mask?[bi * t + ti] ?? 1);
                }
        return y;
    }

    (float[] y, long flops) Run(int m, float[] x, float[] w, float[] bias, float[] mask, int b, int t, int cin,
        int cout, float slope, bool frozen = false)
    {
        var ps = new ParameterStore();
        ps.Add("w", new[] { cout, cin, 3 });
        ps.Add("b", new[] { cout });
        ps.Allocate(B);
        using var _ = ps;
        ps.Set("w", w);
        if (bias != null) ps.Set("b", bias);
        using var g = new Graph(B, ps) { WinogradTile = m };
        using var scope = frozen ? g.FrozenWeights() : null;
        using var ng = g.NoGrad();
        var xt = g.FromHost(x, b, t, cin);
        var mt = mask != null ? g.FromHost(mask, b, t, 1) : null;
        long f0 = B.GemmFlops;
        var y = g.ConvAct(xt, ps["w"].Value, bias != null ? ps["b"].Value : null, slope, mt);
        long flops = B.GemmFlops - f0;
        if (frozen)
        {
            // a second call in the scope reuses U = G w: only the n channel GEMMs run
            f0 = B.GemmFlops;
            var y2 = g.ConvAct(xt, ps["w"].Value, bias != null ? ps["b"].Value : null, slope, mt);
            Assert.That(g.ToHost(y2), Is.EqualTo(g.ToHost(y)), "cached U gives the same output");
            flops = B.GemmFlops - f0;
        }
        return (g.ToHost(y), flops);
    }

    [TestCase(2, true, true, 0.2f)]
    [TestCase(4, false, true, 0.2f)]
    [TestCase(6, true, false, 1f)]
    [TestCase(6, true, true, 0.2f)]
    [TestCase(0, true, true, 0.2f)]
    [TestCase(6, true, true, 0.2f, 64)]         // on the CPU: U in the GEMM's panel layout
    public void MatchesFloat64DirectConvolution(int m, bool withBias, bool withMask, float slope, int cout = 21)
    {
        int b = 2, t = 13, cin = 37;
        var x = Rand(b * t * cin, 1);
        var w = Rand(cout * cin * 3, 2, 1 / Math.Sqrt(3 * cin));
        var bias = withBias ? Rand(cout, 3) : null;
        var mask = withMask ? Enumerable.Range(0, b * t).Select(i => i % 5 == 4 ? 0f : 1f).ToArray() : null;
        var (y, flops) = Run(m, x, w, bias, mask, b, t, cin, cout, slope);
        Check.Close(y, Reference(x, w, bias, mask, b, t, cin, cout, slope), 2e-6, 2e-5,
            $"conv_act m={m} [{backendName}]");
        long expect = m == 0 ? 2L * (b * (t + 2) - 2) * cout * 3 * cin : 2L * (m
            + 2) * b * ((t + m - 1) / m) * cin * cout;
        Assert.That(flops, Is.EqualTo(expect),
            m == 0 ? "direct conv GEMM" : "Winograd: the n channel GEMMs (the weight transform is its own kernel)");
    }

    [TestCase(6)]
    [TestCase(0)]
    public void PartsOfAChannelConcat(int m)
    {
        // x = [x1 | x2] along channels (20 + 17: a vector block and tails on the CPU) given as two tensors:
        // Winograd writes each part into its columns of V; the direct path (m = 0) concatenates
        int b = 2, t = 13, c1 = 20, c2 = 17, cin = c1 + c2, cout = 21;
        var x = Rand(b * t * cin, 4);
        var w = Rand(cout * cin * 3, 5, 1 / Math.Sqrt(3 * cin));
        var bias = Rand(cout, 6);
        var mask = Enumerable.Range(0, b * t).Select(i => i % 4 == 3 ? 0f : 1f).ToArray();
        float[] Part(int from, int n) => Enumerable.Range(0,
            b * t * n).Select(i => x[i / n * cin + from + i % n]).ToArray();
        var ps = new ParameterStore();
        ps.Add("w", new[] { cout, cin, 3 });
        ps.Add("b", new[] { cout });
        ps.Allocate(B);
        using var _ = ps;
        ps.Set("w", w);
        ps.Set("b", bias);
        using var g = new Graph(B, ps) { WinogradTile = m };
        using var ng = g.NoGrad();
        long f0 = B.GemmFlops;
        var y = g.ConvAct(new[] { g.FromHost(Part(0, c1), b, t, c1), g.FromHost(Part(c1, c2), b, t, c2) },
            ps["w"].Value, ps["b"].Value, 0.2f, g.FromHost(mask, b, t, 1));
        Check.Close(g.ToHost(y), Reference(x, w, bias, mask, b, t, cin, cout, 0.2f), 2e-6, 2e-5,
            $"conv_act of two parts m={m} [{backendName}]");
        long expect = m == 0 ? 2L * (b * (t + 2) - 2) * cout * 3 * cin : 2L * (m
            + 2) * b * ((t + m - 1) / m) * cin * cout;
        Assert.That(B.GemmFlops - f0, Is.EqualTo(expect),
            m == 0 ? "direct conv GEMM" : "one set of Winograd GEMMs over all the channels");
        Assert.Throws<ShapeException>(() => g.ConvAct(new[] { g.FromHost(Part(0, c1), b, t, c1), g.FromHost(Part(0,
            c1), b, t, c1) }, ps["w"].Value, ps["b"].Value, 0.2f),
            "parts whose channels do not add up to the weight's Cin");
    }

    /// U (n, Cin, Cout) = G w: 40 output channels are two 16-wide gathered blocks and an 8-channel tail on the
    /// CPU; every value matches the float64 product (a GPU compiler may contract the sum into FMAs).
    /// With panels (CPU), 64 output channels of 300 input channels: two K slabs of the GEMM's panel layout.
    [TestCase(2, false)]
    [TestCase(6, false)]
    [TestCase(6, true)]
    public void WeightTransformIsGTimesW(int m, bool panels)
    {
        if (panels && B.WeightPanel == 0)
        {
            using var s = B.Allocate(64);
            Assert.Throws<NotSupportedException>(() =>
                B.WinogradWeight(s.At(0), s.At(0), s.At(0), 1, 1, 3, panels: true));
            return;
        }
        int cin = panels ? 300 : 5, cout = panels ? 2 * B.WeightPanel : 40, n = m + 2;
        var w = Rand(cout * cin * 3, 4);
        var (_, g) = Winograd.Matrices(m);
        using var ws = B.Allocate(w.Length);
        using var gs = B.Allocate(g.Length);
        using var us = B.Allocate((long)n * cin * cout + 1);
        B.Upload(ws.At(0), w);
        B.Upload(gs.At(0), g);
        B.WinogradWeight(us.At(1), ws.At(0), gs.At(0), cin, cout, n, panels);
        var u = new float[n * cin * cout];
        B.Download(us.At(1), u);
        long At(int ci, int co) => panels ? CpuGemm.PanelIndex(ci, co, cin, cout) : (long)ci * cout + co;
        var want = new double[u.Length];
        for (int xi = 0; xi < n; xi++)
            for (int ci = 0; ci < cin; ci++)
                for (int co = 0; co < cout; co++)
                {
                    int wi = (co * cin + ci) * 3;
                    want[(long)xi * cin * cout + At(ci,
                        co)] = (double)g[xi * 3] * w[wi] + (double)g[xi * 3 + 1] * w[wi + 1]
                            + (double)g[xi * 3 + 2] * w[wi + 2];
                }
        Check.Close(u, want, 1e-6, 1e-6, $"winograd U m={m} panels={panels} [{backendName}]");
        Assert.Throws<ShapeException>(() => B.WinogradWeight(us.At(2), ws.At(0), gs.At(0), cin, cout, n),
            "U one float past its buffer");
    }

    /// V = Bt d for 48 channels (three 16-wide blocks) over two batch elements with a partial last tile,
    /// written at offset 0 (64-byte aligned: the CPU streams the stores past the cache) and at offset 1
    /// (plain stores): both give the same bits and match the float64 transform.
    [Test]
    public void InputTransformIsBtTimesD()
    {
        int m = 6, n = m + 2, b = 2, t = 17, c = 48, tiles = (t + m - 1) / m, total = b * tiles;
        var x = Rand(b * t * c, 12);
        var (mat, _) = Winograd.Matrices(m);
        var p = new WinoParams { Batch = b, T = t, C = c, M = m, N = n, Tiles = tiles, Slope = 1f };
        using var xs = B.Allocate(x.Length);
        using var ms = B.Allocate(mat.Length);
        using var vs = B.Allocate((long)n * total * c + 1);
        B.Upload(xs.At(0), x);
        B.Upload(ms.At(0), mat);
        float[] At(long offset)
        {
            B.Fill(vs.At(0), vs.Length, float.NaN);
            B.WinogradIn(vs.At(offset), xs.At(0), ms.At(0), p);
            var v = new float[n * total * c];
            B.Download(vs.At(offset), v);
            return v;
        }
        var aligned = At(0);
        Check.SameBits(At(1), aligned);
        var want = new double[aligned.Length];
        for (int xi = 0; xi < n; xi++)
            for (int tile = 0; tile < total; tile++)
                for (int ch = 0; ch < c; ch++)
                {
                    int bi = tile / tiles, t0 = tile % tiles * m - 1;
                    double s = 0;
                    for (int j = 0; j < n; j++)
                        if (t0 + j >= 0 && t0 + j < t) s += (double)mat[xi * n + j] * x[(bi * t + t0 + j) * c + ch];
                    want[((long)xi * total + tile) * c + ch] = s;
                }
        Check.Close(aligned, want, 1e-5, 1e-5, $"winograd V [{backendName}]");
    }

    /// Each channel of the transforms is its own computation, so a run of channels must get the same bits
    /// whichever body the CPU gives it: 83 = 64 + 16 + 3 channels run the 64-channel body (four sums per
    /// term) on [0, 64), the 16-channel body on [64, 80) and the scalar kernel body on the tail; each slice
    /// is checked against the same channels transformed alone, at a width (16, or 3) that runs them in the
    /// 16-channel body (or the tail). Other backends run one body for all and must agree the same way.
    [Test]
    public void SixtyFourChannelBodiesGiveTheSixteenChannelBits()
    {
        int m = 6, n = m + 2, b = 2, t = 17, c = 83, tiles = (t + m - 1) / m, total = b * tiles;
        var (mat, _) = Winograd.Matrices(m);
        var x = Rand(b * t * c, 31); var mm = Rand(n * total * c, 32); var bias = Rand(c, 33); var mask = Rand(b * t,
            34);
        using var ms = B.Allocate(mat.Length);
        B.Upload(ms.At(0), mat);
        float[] In(float[] xs, int ch)
        {
            var p = new WinoParams { Batch = b, T = t, C = ch, M = m, N = n, Tiles = tiles, Slope = 1f };
            using var xd = B.Allocate(xs.Length);
            using var vd = B.Allocate((long)n * total * ch);
            B.Upload(xd.At(0), xs);
            B.WinogradIn(vd.At(0), xd.At(0), ms.At(0), p);
            var v = new float[n * total * ch];
            B.Download(vd.At(0), v);
            return v;
        }
        float[] Out(float[] ms2, float[] bs, int ch)
        {
            var p = new WinoParams { Batch = b, T = t, C = ch, M = m, N = n, Tiles = tiles, Slope = 0.2f };
            using var md = B.Allocate(ms2.Length);
            using var bd = B.Allocate(bs.Length);
            using var kd = B.Allocate(mask.Length);
            using var yd = B.Allocate((long)b * t * ch);
            B.Upload(md.At(0), ms2);
            B.Upload(bd.At(0), bs);
            B.Upload(kd.At(0), mask);
            B.WinogradOut(yd.At(0), md.At(0), ms.At(0), bd.At(0), kd.At(0), p);
            var y = new float[b * t * ch];
            B.Download(yd.At(0), y);
            return y;
        }
        static float[] Slice(float[] a, int rows, int width, int from, int count) =>
            Enumerable.Range(0, rows * count).Select(i => a[i / count * width + from + i % count]).ToArray();
        var v = In(x, c);
        var y = Out(mm, bias, c);
        foreach (var (from, count) in new[] { (0, 16), (16, 16), (32, 16), (48, 16), (64, 16), (80, 3) })
        {
            Check.SameBits(In(Slice(x, b * t, c, from, count), count), Slice(v, n * total, c, from, count),
                $"V, channels {from}+{count} [{backendName}]");
            Check.SameBits(Out(Slice(mm, n * total, c, from, count), bias[from..(from + count)], count), Slice(y,
                b * t, c, from, count), $"y, channels {from}+{count} [{backendName}]");
        }
    }

    /// T = 3 < m goes direct; T = 1 (the pooled channel_conv input) multiplies by the centre tap alone,
    /// cached in a frozen scope (at 64 output channels in the CPU GEMM's panel layout).
    [TestCase(3, 17, false)]
    [TestCase(1, 17, false)]
    [TestCase(1, 64, true)]
    public void SequencesShorterThanATileGoDirect(int t, int cout, bool frozen)
    {
        int b = 3, cin = 20;
        var x = Rand(b * t * cin, 9);
        var w = Rand(cout * cin * 3, 10, 0.2);
        var bias = Rand(cout, 11);
        var mask = Enumerable.Range(0, b * t).Select(i => i == 1 ? 0f : 1f).ToArray();
        var (y, flops) = Run(6, x, w, bias, mask, b, t, cin, cout, 0.2f, frozen);
        Check.Close(y, Reference(x, w, bias, mask, b, t, cin, cout, 0.2f), 2e-6, 2e-5,
            $"conv_act T={t} [{backendName}]");
        Assert.That(flops, Is.EqualTo(t == 1 ? 2L * b * cin * cout : 2L * (b * (t + 2) - 2) * cout * 3 * cin),
            t == 1 ? "the centre tap's GEMM" : "the direct conv's one GEMM");
    }

    [Test]
    public void FrozenScopeDerivesTheWeightTransformOnce()
    {
        int b = 1, t = 20, cin = 16, cout = 8, m = 4;
        var x = Rand(b * t * cin, 4);
        var w = Rand(cout * cin * 3, 5, 0.2);
        var (y, flops) = Run(m, x, w, null, null, b, t, cin, cout, 0.2f, frozen: true);
        Check.Close(y, Reference(x, w, null, null, b, t, cin, cout, 0.2f), 2e-6, 2e-5,
            $"conv_act frozen [{backendName}]");
        Assert.That(flops, Is.EqualTo(2L * (m + 2) * ((t + m - 1) / m) * cin * cout));
    }

    [Test]
    public void RoundingStaysNearTheDirectConvolution()
    {
        // a fusion-like width: 1024 input channels of O(1) features. Against float64, the worst error of
        // F(4,3) and F(6,3) stays below 1e-5 of the outputs' RMS, and within 16x the direct fp32 error.
        if (!B.IsGpu && B is not CpuBackend) Assert.Ignore("a 1024-channel product is too slow on the ILGPU emulator");
        int b = 1, t = 60, cin = 1024, cout = 48;
        var x = Rand(b * t * cin, 6); var w = Rand(cout * cin * 3, 7, 1 / Math.Sqrt(3 * cin)); var bias = Rand(cout,
            8, 0.1);
        var want = Reference(x, w, bias, null, b, t, cin, cout, 1f);
        double rms = Math.Sqrt(want.Select(v => v * v).Average());
        double Worst(int m) { var y = Run(m, x, w, bias, null, b, t, cin, cout, 1f).y; return y.Select((v,
            i) => Math.Abs(v - want[i])).Max() / rms; }
        double direct = Worst(0), f4 = Worst(4), f6 = Worst(6);
        TestContext.Out.WriteLine($"worst |error| / rms: direct {direct:G3}, F(4,3) {f4:G3}, F(6,3) {f6:G3}");
        Assert.That(f4, Is.LessThan(Math.Min(1e-5, 16 * direct)));
        Assert.That(f6, Is.LessThan(Math.Min(1e-5, 16 * direct)));
    }
}
