// Adam against a hand-computed trajectory, the RNG across backends, arena reuse, and the tiny PVLR
// training trajectory (the loss falls; the same seed gives the same numbers).
using NUnit.Framework;
using PvlrKernels.Engine;
using PvlrKernels.Kernels;

namespace PvlrKernels.Tests;

[TestFixtureSource(typeof(Backends), nameof(Backends.All))]
public sealed class EngineTests(string backendName)
{
    Backend B => Backends.Get(backendName);

    [Test]
    public void AdamMatchesHandComputedThreeSteps()
    {
        var ps = new ParameterStore();
        ps.Add("w", new[] { 2 });
        ps.Add("frozen", new[] { 1 });
        ps.Allocate(B);
        ps.Set("w", new[] { 1f, -2f });
        ps.Set("frozen", new[] { 5f });
        var adam = new AdamOptimizer(ps, B, lr: 0.1f, weightDecay: 0.01f);
        double[] th = { 1, -2 }, m = { 0, 0 }, v = { 0, 0 };
        float[][] grads = { new[] { 0.5f, -1f }, new[] { 0.2f, 0.3f }, new[] { -0.4f, 0.1f } };
        for (int s = 1; s <= 3; s++)
        {
            ps.ZeroGrad();
            B.Upload(ps.Grads.At(ps["w"].Offset), grads[s - 1]);
            ps["w"].GotGrad = true;                         // "frozen" gets no gradient: Adam must skip it
            adam.Step();
            for (int i = 0; i < 2; i++)
            {
                double g = grads[s - 1][i] + 0.01 * th[i];
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                double mh = m[i] / (1 - Math.Pow(0.9, s)), vh = v[i] / (1 - Math.Pow(0.999, s));
                th[i] -= 0.1 * mh / (Math.Sqrt(vh) + 1e-8);
            }
        }
        Check.Close(ps.Get("w"), th, 1e-6, 1e-5, "adam");
        Assert.That(ps.Get("frozen")[0], Is.EqualTo(5f));
        Assert.That(ps["frozen"].Step, Is.EqualTo(0));
    }

    /// The CPU's 16-lane Adam (and its tail) gives the kernel body's bits at every element: values of all
    /// magnitudes, zero gradients and moments, a ragged length.
    [Test]
    public unsafe void AdamLanesHaveTheKernelBodysBits()
    {
        int n = 70_000 + 13, off = 5;                   // a range that starts inside the arenas
        var r = new Random(5);
        float Draw() => (float)((r.NextDouble() * 2 - 1) * Math.Pow(10, r.Next(-6, 3)));
        var th = Enumerable.Range(0, n).Select(_ => Draw()).ToArray();
        var g = Enumerable.Range(0, n).Select(i => i % 17 == 0 ? 0f : Draw()).ToArray();
        var m = Enumerable.Range(0, n).Select(i => i % 5 == 0 ? 0f : Draw()).ToArray();
        var v = Enumerable.Range(0, n).Select(i => i % 7 == 0 ? 0f : Math.Abs(Draw())).ToArray();
        var a = new AdamParams { Beta1 = 0.9f, Beta2 = 0.999f, Eps = 1e-8f, WeightDecay = 5e-4f,
            StepSize = 1e-4f / 0.19f,
            Bc2Sqrt = MathF.Sqrt(1 - 0.998001f) };
        var (wt, wm, wv) = ((float[])th.Clone(), (float[])m.Clone(), (float[])v.Clone());
        fixed (float* pt = wt, pg = g, pm = wm, pv = wv)
        {
            var body = new AdamStep<PtrMem> { Theta = new PtrMem(pt), Grad = new PtrMem(pg), M = new PtrMem(pm),
                V = new PtrMem(pv), A = a };
            for (int i = off; i < n; i++) body.Execute(i);
        }
        Storage Up(float[] x)
        {
            var s = B.Allocate(n);
            B.Upload(s.At(0), x);
            return s;
        }
        using var st = Up(th);
        using var sg = Up(g);
        using var sm = Up(m);
        using var sv = Up(v);
        B.Adam(st, sg, sm, sv, off, n - off, a);
        float[] Down(Storage s)
        {
            var x = new float[n];
            B.Download(s.At(0), x);
            return x;
        }
        if (B.IsGpu)
        {
            Check.Close(Down(st), wt.Select(x => (double)x).ToArray(), 1e-6, 1e-5, "theta");
            return;
        }
        Check.SameBits(Down(st), wt, "theta");
        Check.SameBits(Down(sm), wm, "m");
        Check.SameBits(Down(sv), wv, "v");
    }

    [Test]
    public void RngStreamsAreIdenticalAcrossBackends()
    {
        var cpu = new CpuBackend();
        var key = new RngKey { K0 = 123, K1 = 0, S0 = 7, S1 = 0 };
        float[] Draw(Backend b, bool normal)
        {
            var s = b.Allocate(1000);
            if (normal) b.Normal(s.At(0), 1000, 1f, 1, key); else b.DropoutMask(s.At(0), 1000, 0.3f, key);
            var a = new float[1000];
            b.Download(s.At(0), a);
            s.Dispose();
            return a;
        }
        var m1 = Draw(cpu, false);
        var m2 = Draw(B, false);
        Assert.That(m2, Is.EqualTo(m1));                                        // masks: bit-identical
        Assert.That(m1.Count(x => x == 0) / 1000.0, Is.EqualTo(0.3).Within(0.05));
        Assert.That(m1.Where(x => x != 0), Is.All.EqualTo(1f / 0.7f));
        var n1 = Draw(cpu, true);
        var n2 = Draw(B, true);
        Check.Close(n2, n1, 1e-5, 1e-5, "normal");                              // transcendental ulps may differ
        Assert.That(n1.Average(), Is.EqualTo(0).Within(0.1));
        Assert.That(Math.Sqrt(n1.Select(x => x * x).Average()), Is.EqualTo(1).Within(0.1));
    }

    /// Normal draws of one sample per value (the CPU draws Philox 16 counters at a time) and of several
    /// (the kernel body on every backend) against the body run on host memory: the same bits on the CPU.
    [TestCase(1)] [TestCase(3)]
    public unsafe void NormalDrawsMatchTheKernelBody(int samples)
    {
        const int n = 1003;
        var key = new RngKey { K0 = 99, K1 = 5, S0 = 11, S1 = 2 };
        var want = new float[n];
        fixed (float* w = want)
        {
            var body = new NormalKernel<PtrMem> { Y = new PtrMem(w), Key = key, Std = 0.5f, Samples = samples, N = n };
            for (int i = 0; i < n; i++) body.Execute(i);
        }
        using var s = B.Allocate(n);
        B.Normal(s.At(0), n, 0.5f, samples, key);
        var got = new float[n];
        B.Download(s.At(0), got);
        if (B.IsGpu)
        {
            Check.Close(got, want.Select(v => (double)v).ToArray(), 1e-5, 1e-5, "normal");
            return;
        }
        Check.SameBits(got, want);
    }

    [Test]
    public void SteadyStateStepAllocatesNothing()
    {
        var ps = new ParameterStore();
        ps.Add("w", new[] { 8, 8 });
        ps.Allocate(B);
        using var g = new Graph(B, ps, new PhiloxSource(1), arenaFloats: 64);
        long after = 0;
        for (int step = 0; step < 4; step++)
        {
            g.Reset();
            ps.ZeroGrad();
            var x = g.FromHost(new float[16 * 8], 16, 8);
            var y = g.Dropout(g.Sigmoid(g.Linear(x, ps["w"].Value)), 0.5f, "d");
            g.Backward(g.MeanAll(y));
            if (step == 1) after = g.Act.Allocations;
        }
        Assert.That(g.Act.Allocations, Is.EqualTo(after), "steps after the first grew the arena");
    }
    /// Inside FrozenWeights, Conv1d derives its GEMM layout of a weight once and reuses it across Reset()
    /// (a changed weight is not seen until the scope ends, which is the scope's contract); outside it,
    /// and while recording a tape, every call reads the weight afresh.
    [Test]
    public void FrozenWeightsCachesConvLayoutForTheScope()
    {
        var ps = new ParameterStore();
        ps.Add("w", new[] { 4, 3, 3 });
        ps.Add("b", new[] { 4 });
        ps.Allocate(B);
        var r = new Random(3); float[] R(int n) => Enumerable.Range(0,
            n).Select(_ => (float)r.NextDouble() - 0.5f).ToArray();
        var w0 = R(36);
        ps.Set("w", w0);
        ps.Set("b", R(4));
        var x = R(2 * 5 * 3);
        using var g = new Graph(B, ps);
        float[] Conv() { g.Reset(); using (g.NoGrad()) return g.ToHost(g.Conv1d(g.FromHost(x, 2, 5, 3), ps["w"].Value,
            ps["b"].Value)); }
        var before = Conv();
        float[] inScope, stale;
        using (g.FrozenWeights())
        {
            inScope = Conv();
            ps.Set("w", w0.Select(v => v * 2).ToArray());
            stale = Conv();
        }
        var after = Conv();
        Assert.That(inScope, Is.EqualTo(before));
        Assert.That(stale, Is.EqualTo(before), "the cached layout is reused within the scope");
        Assert.That(after, Is.Not.EqualTo(before), "the scope's end drops the cache");
    }
}
