// Every op: forward against a naive float64 reference at ragged shapes, backward against central
// finite differences of that float64 reference. loss = sum(R * y) with a fixed random R, so every
// output element's gradient path is exercised. Run on every backend.
using NUnit.Framework;
using PvlrKernels.Engine;
using PvlrKernels.Kernels;

namespace PvlrKernels.Tests;

[TestFixtureSource(typeof(Backends), nameof(Backends.All))]
public sealed class OpTests(string backendName)
{
    // Tolerances: float32 forward against float64 reference; gradients against FD with h = 1e-5 in
    // float64 (FD truncation error ~1e-9), so the float32 accumulation error dominates.
    const double FwdAtol = 2e-5, FwdRtol = 2e-4, GradAtol = 5e-4, GradRtol = 5e-3;

    Backend B => Backends.Get(backendName);

    delegate Tensor OursFn(Graph g, Tensor[] x);
    delegate double[] RefFn(double[][] x);

    static float[] Rand(Random r, long n, double lo = -1, double hi = 1)
    { var a = new float[n]; for (long i = 0; i < n; i++) a[i] = (float)(lo + (hi - lo) * r.NextDouble()); return a; }

    void CheckOp(string name, int[][] shapes, OursFn ours, RefFn reference, int seed = 1,
        Func<Random, int, long, float[]> init = null,
                 bool[] differentiable = null, double gradAtol = GradAtol, double gradRtol = GradRtol,
                 int trainWinograd = 0)
    {
        var rnd = new Random(seed);
        var ps = new ParameterStore();
        for (int i = 0; i < shapes.Length; i++) ps.Add("x" + i, shapes[i],
            trainable: differentiable == null || differentiable[i]);
        ps.Allocate(B);
        var data = new float[shapes.Length][];
        for (int i = 0; i < shapes.Length; i++)
        {
            data[i] = init != null ? init(rnd, i, Tensor.Numel(shapes[i])) : Rand(rnd, Tensor.Numel(shapes[i]));
            ps.Set("x" + i, data[i]);
        }
        using var g = new Graph(B, ps) { TrainWinogradTile = trainWinograd };
        var inputs = ps.List.Select(p => p.Value).ToArray();
        var y = ours(g, inputs);
        var got = g.ToHost(y);
        var xd = data.Select(a => a.Select(v => (double)v).ToArray()).ToArray();
        var want = reference(xd);
        Check.Close(got, want, FwdAtol, FwdRtol, $"{name} forward [{backendName}]");

        var R = Rand(rnd, y.Size);
        ps.ZeroGrad();
        var loss = g.SumAll(g.Mul(y, g.FromHost(R, y.Shape)));
        g.Backward(loss);
        for (int i = 0; i < shapes.Length; i++)
        {
            if (differentiable != null && !differentiable[i]) continue;
            var grad = ps.GetGrad("x" + i);
            var fd = new double[grad.Length];
            const double h = 1e-5;
            for (int k = 0; k < fd.Length; k++)
            {
                double keep = xd[i][k];
                xd[i][k] = keep + h;
                double fp = Dot(reference(xd), R);
                xd[i][k] = keep - h;
                double fm = Dot(reference(xd), R);
                xd[i][k] = keep;
                fd[k] = (fp - fm) / (2 * h);
            }
            Check.Close(grad, fd, gradAtol, gradRtol, $"{name} d(input {i}) [{backendName}]");
        }
        ps.Dispose();
    }

    static double Dot(double[] a, float[] r)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++) s += a[i] * r[i];
        return s;
    }
    static double[] Map(double[] x, Func<double, double> f) => x.Select(f).ToArray();

    // ---------------- unary: one line per op ----------------
    /// An op's forward through the tape, its float64 reference, the lane check and the domain of x.
    public sealed record UnaryCase(string Name, float P, bool PositiveDomain, Func<Graph, Tensor, Tensor> Forward,
        Func<double, double, double> Reference, Action<Backend, float[], float> LanesMatchScalar)
    {
        public override string ToString() => Name;
    }

    static UnaryCase Case<TOp>(float p, Func<double, double, double> reference,
        bool positiveDomain = false) where TOp : struct, IUnaryOp =>
        new(typeof(TOp).Name, p, positiveDomain, (g, x) => g.Unary<TOp>(x, p), reference, LanesMatchScalar<TOp>);

    static IEnumerable<UnaryCase> UnaryCases()
    {
        yield return Case<ScaleOp>(1.7f, (x, p) => p * x);
        yield return Case<AddScalarOp>(-0.3f, (x, p) => x + p);
        yield return Case<SigmoidOp>(0f, (x, p) => 1 / (1 + Math.Exp(-x)));
        yield return Case<ReluOp>(0f, (x, p) => Math.Max(x, 0));
        yield return Case<LeakyReluOp>(0.2f, (x, p) => x > 0 ? x : p * x);
        yield return Case<ExpOp>(0.5f, (x, p) => Math.Exp(p * x));
        yield return Case<LogOp>(0f, (x, p) => Math.Log(x), positiveDomain: true);
        yield return Case<AbsOp>(0f, (x, p) => Math.Abs(x));
        yield return Case<QuickGeluOp>(0f, (x, p) => x / (1 + Math.Exp(-1.702 * x)));
        yield return Case<SqrtOp>(0f, (x, p) => Math.Sqrt(x), positiveDomain: true);
        yield return Case<ReciprocalOp>(0f, (x, p) => 1 / x, positiveDomain: true);
        yield return Case<SquareOp>(0f, (x, p) => x * x);
    }

    [TestCaseSource(nameof(UnaryCases))]
    public void Unary(UnaryCase op)
    {
        // keep |x| away from kinks (0) so finite differences are valid; positive domain for log/sqrt/1/x
        CheckOp(op.Name, new[] { new[] { 3, 7 } }, (g, x) => op.Forward(g, x[0]), x => Map(x[0], v => op.Reference(v,
            op.P)),
            init: (r, _, n) => Enumerable.Range(0, (int)n).Select(_ => (float)(op.PositiveDomain ? 0.5 + r.NextDouble()
                : (r.NextDouble() < 0.5 ? -1 : 1) * (0.05 + r.NextDouble()))).ToArray());
    }

    /// 5003 values (on the CPU the 16-lane path beyond 4096 values, then a scalar tail) with signed zeros,
    /// infinities, NaN and denormals: forward and gradient, set and accumulated, give the scalar form's bits.
    [TestCaseSource(nameof(UnaryCases))]
    public void UnaryOfLongVectorsHasTheScalarFormsBits(UnaryCase op)
    {
        if (B.IsGpu) Assert.Ignore("GPU kernels may contract products into fused multiply-adds");
        const int n = 5003;
        var r = new Random(21);
        var x = Rand(r, n, op.PositiveDomain ? 0.01 : -100, 100);
        float[] special = { 0f, -0f, float.NaN, float.PositiveInfinity, float.NegativeInfinity, 1e-45f, -1e-45f, 87f,
            -87f, 88.7f, -88.7f };
        for (int i = 0; i < special.Length; i++)
        {
            x[i * 401] = special[i];
            x[n - 1 - i] = special[i];
        }
        op.LanesMatchScalar(B, x, op.P);
    }

    static void LanesMatchScalar<TOp>(Backend b, float[] x, float p) where TOp : struct, IUnaryOp
    {
        int n = x.Length;
        var r = new Random(22);
        var dy = Rand(r, n);
        var dx0 = Rand(r, n);
        using var xs = b.Allocate(n);
        using var ys = b.Allocate(n);
        using var ds = b.Allocate(n);
        using var gs = b.Allocate(n);
        b.Upload(xs.At(0), x);
        b.Upload(ds.At(0), dy);
        b.Unary<TOp>(ys.At(0), xs.At(0), n, p);
        var y = new float[n];
        b.Download(ys.At(0), y);
        Check.SameBits(y, x.Select(v => TOp.Forward(v, p)).ToArray(), typeof(TOp).Name);
        foreach (bool acc in new[] { false, true })
        {
            b.Upload(gs.At(0), dx0);
            b.UnaryBackward<TOp>(gs.At(0), xs.At(0), ys.At(0), ds.At(0), n, p, acc);
            var got = new float[n];
            b.Download(gs.At(0), got);
            var want = new float[n];
            for (int i = 0; i < n; i++)
            {
                float g = TOp.Backward(x[i], y[i], dy[i], p);
                want[i] = acc ? dx0[i] + g : g;
            }
            Check.SameBits(got, want, $"{typeof(TOp).Name} backward, accumulate={acc}");
        }
    }

    [Test]
    public void SigmoidOfLongVectors()
    {
        // 5003 values over [-100, 100]: on the CPU the 16-lane path (n >= 4096), its scalar tail, both
        // saturated ends, and relative accuracy where sigmoid is tiny (down to the clamp at -87)
        int n = 5003;
        var x = Enumerable.Range(0, n).Select(i => (float)(-100 + 200.0 * i / (n - 1))).ToArray();
        var ps = new ParameterStore();
        ps.Allocate(B);
        using var g = new Graph(B, ps);
        var got = g.ToHost(g.Sigmoid(g.FromHost(x, n)));
        // on CUDA, ILGPU lowers Exp to ex2.approx of x * log2(e): the rounding of that product alone is up
        // to ~5e-6 relative at |x| = 87, and denormal results flush to zero (inside the 2e-38 floor)
        double rel = backendName == "cuda" ? 1e-5 : 3e-7;
        for (int i = 0; i < n; i++)
        {
            double want = 1 / (1 + Math.Exp(-(double)x[i]));
            Assert.That(Math.Abs(got[i] - want), Is.LessThanOrEqualTo(rel * want + 2e-38),
                $"sigmoid({x[i]}) [{backendName}]");
        }
        ps.Dispose();
    }

    [TestCase(300, 37)]     // column tails on the CPU path
    [TestCase(40, 64)]      // whole 16-lane blocks
    public void SigmoidGateWithoutGradientIsOnePass(int rows, int cols)
    {
        // sigmoid(a * s[row]) * v: without gradient one fused kernel against float64; with a gradient the
        // recorded Mul, Sigmoid, Mul (checked against finite differences like every op)
        var r = new Random(3);
        var a = Rand(r, rows * cols, -3, 3);
        var sc = Rand(r, rows, -2, 2);
        var v = Rand(r, rows * cols);
        var ps = new ParameterStore();
        ps.Allocate(B);
        using var g = new Graph(B, ps);
        float[] got;
        using (g.NoGrad()) got = g.ToHost(g.SigmoidGate(g.FromHost(a, 1, rows, cols), g.FromHost(sc, 1, rows, 1),
            g.FromHost(v, 1, rows, cols)));
        var want = new double[got.Length];
        for (int i = 0; i < got.Length; i++) want[i] = v[i] / (1 + Math.Exp(-(double)a[i] * sc[i / cols]));
        Check.Close(got, want, 1e-6, 1e-5, $"sigmoid_gate {rows}x{cols} [{backendName}]");
        Assert.Throws<ShapeException>(() => { using (g.NoGrad()) g.SigmoidGate(g.FromHost(a, 1, rows, cols),
            g.FromHost(sc, 1, rows, 1), g.FromHost(v, rows, cols, 1)); });
        ps.Dispose();
        CheckOp("sigmoid_gate", new[] { new[] { 3, 20 }, new[] { 3, 1 }, new[] { 3, 20 } }, (gg,
            x) => gg.SigmoidGate(x[0], x[1], x[2]),
            x => Enumerable.Range(0, 60).Select(i => x[2][i] / (1 + Math.Exp(-x[0][i] * x[1][i / 20]))).ToArray());
    }

    // ---------------- binary with broadcasting: one line per op ----------------
    /// Probabilities: both operands in (0.05, 0.95) and the second one a constant target (no gradient).
    public sealed record BinaryCase(string Name, bool PositiveB, Func<Graph, Tensor, Tensor, Tensor> Forward,
        Func<double, double, double> Reference, Action<Backend> RowsMatchScalar, bool Probabilities = false)
    {
        public override string ToString() => Name;
    }

    static BinaryCase Case<TOp>(Func<double, double, double> reference, bool positiveB = false,
        bool probabilities = false) where TOp : struct, IBinaryOp =>
        new(typeof(TOp).Name, positiveB, (g, a, b) => g.Binary<TOp>(a, b), reference, RowsMatchScalar<TOp>,
        probabilities);

    static IEnumerable<BinaryCase> BinaryOps()
    {
        yield return Case<AddOp>((a, b) => a + b);
        yield return Case<SubOp>((a, b) => a - b);
        yield return Case<MulOp>((a, b) => a * b);
        yield return Case<DivOp>((a, b) => a / b, positiveB: true);
        yield return Case<BceOp>((p, y) => (y - 1) * Math.Log(1 - p) - y * Math.Log(p), probabilities: true);
    }

    static IEnumerable<TestCaseData> BinaryCases()
    {
        foreach (var op in BinaryOps())
        {
            yield return new TestCaseData(op, new[] { 2, 3, 5 }, new[] { 2, 3, 5 });
            yield return new TestCaseData(op, new[] { 2, 3, 5 }, new[] { 2, 3, 1 });
            yield return new TestCaseData(op, new[] { 2, 1, 5 }, new[] { 3, 1 });
            yield return new TestCaseData(op, new[] { 1 }, new[] { 4, 3 });
            // rows of >= 16: the CPU's row-wise path (row op row, row op value, value op row)
            yield return new TestCaseData(op, new[] { 3, 20 }, new[] { 3, 20 });
            yield return new TestCaseData(op, new[] { 1, 3, 20 }, new[] { 1, 3, 1 });
            yield return new TestCaseData(op, new[] { 3, 1 }, new[] { 2, 3, 17 });
            yield return new TestCaseData(op, new[] { 4, 1, 18 }, new[] { 3, 18 });
        }
    }

    [TestCaseSource(nameof(BinaryCases))]
    public void Binary(BinaryCase op, int[] sa, int[] sb)
    {
        int rank = Math.Max(sa.Length, sb.Length);
        int[] Pad(int[] s) => Enumerable.Repeat(1, rank - s.Length).Concat(s).ToArray();
        int[] pa = Pad(sa), pb = Pad(sb), po = pa.Zip(pb, Math.Max).ToArray();
        double[] Ref(double[][] x)
        {
            long n = Tensor.Numel(po);
            var y = new double[n];
            for (long i = 0; i < n; i++)
            {
                long rem = i, ia = 0, ib = 0, ma = 1, mb = 1;
                for (int d = rank - 1; d >= 0; d--)
                {
                    long c = rem % po[d];
                    rem /= po[d];
                    ia += (pa[d] == 1 ? 0 : c) * ma;
                    ma *= pa[d];
                    ib += (pb[d] == 1 ? 0 : c) * mb;
                    mb *= pb[d];
                }
                y[i] = op.Reference(x[0][ia], x[1][ib]);
            }
            return y;
        }
        CheckOp($"{op.Name}{Tensor.ShapeStr(sa)}{Tensor.ShapeStr(sb)}", new[] { sa, sb }, (g, x) => op.Forward(g,
            x[0], x[1]), Ref,
            init: (r, i, n) => op.Probabilities ? Rand(r, n, 0.05, 0.95) : Rand(r, n,
                i == 1 && op.PositiveB ? 0.5 : -1, i == 1 && op.PositiveB ? 1.5 : 1),
            differentiable: op.Probabilities ? [true, false] : null);
    }

    /// Row op row, row op value and value op row (the CPU's 16-lane rows, then tails): forward and both
    /// gradients give the scalar forms' bits, with zeros, infinities and NaN among the values.
    [TestCaseSource(nameof(BinaryOps))]
    public void BinaryRowsHaveTheScalarFormsBits(BinaryCase op)
    {
        if (B.IsGpu) Assert.Ignore("GPU kernels may contract products into fused multiply-adds");
        op.RowsMatchScalar(B);
    }

    static void RowsMatchScalar<TOp>(Backend be) where TOp : struct, IBinaryOp
    {
        const int rows = 3, cols = 37, n = rows * cols;
        var r = new Random(5);
        var a = Rand(r, n, -3, 3);
        var b = Rand(r, n, -3, 3);
        var dy = Rand(r, n);
        float[] special = { 0f, -0f, float.NaN, float.PositiveInfinity, float.NegativeInfinity, 1e-45f };
        for (int i = 0; i < special.Length; i++)
        {
            a[i * 17] = special[i];
            b[i * 19 + 1] = special[i];
        }
        using var sa = be.Allocate(n);
        using var sb = be.Allocate(n);
        using var sdy = be.Allocate(n);
        using var sy = be.Allocate(n);
        be.Upload(sa.At(0), a);
        be.Upload(sb.At(0), b);
        be.Upload(sdy.At(0), dy);
        var d = new Dims4 { N0 = 1, N1 = 1, N2 = rows, N3 = cols };
        var row = new Strides4 { S2 = cols, S3 = 1 }; var value = new Strides4 { S2 = 1, S3 = 0 };
        foreach (var (stA, stB) in new[] { (row, row), (row, value), (value, row) })
        {
            float At(float[] v, Strides4 st, int i, int j) => v[i * st.S2 + j * st.S3];
            var got = new float[n];
            be.Binary<TOp>(sy.At(0), sa.At(0), stA, sb.At(0), stB, d);
            be.Download(sy.At(0), got);
            var want = new float[n];
            for (int i = 0; i < rows; i++) for (int j = 0; j < cols; j++) want[i * cols + j] = TOp.Forward(At(a, stA,
                i, j), At(b, stB, i, j));
            Check.SameBits(got, want, $"{typeof(TOp).Name} a {stA.S3} b {stB.S3}");
            for (int which = 0; which < 2; which++)
            {
                be.BinaryGrad<TOp>(sy.At(0), sa.At(0), stA, sb.At(0), stB, sdy.At(0), d, which);
                be.Download(sy.At(0), got);
                for (int i = 0; i < rows; i++)
                    for (int j = 0; j < cols; j++)
                    {
                        float x = At(a, stA, i, j), z = At(b, stB, i, j), g = dy[i * cols + j];
                        want[i * cols + j] = which == 0 ? TOp.GradA(x, z, g) : TOp.GradB(x, z, g);
                    }
                Check.SameBits(got, want, $"{typeof(TOp).Name} gradient {which}, a {stA.S3} b {stB.S3}");
            }
        }
    }

    // ---------------- reductions ----------------
    static double[] RefReduce(double[] x, int outer, int n, int inner, Func<IEnumerable<double>, double> f)
    {
        var y = new double[outer * inner];
        for (int o = 0; o < outer; o++) for (int j = 0; j < inner; j++) y[o * inner + j] = f(Enumerable.Range(0,
            n).Select(k => x[(o * n + k) * inner + j]));
        return y;
    }

    // the cases over rows of 70 take the GPU's one-warp-per-row sum (contiguous rows, n >= 64)
    [TestCase("sum", 0, 4)] [TestCase("sum", 1, 4)] [TestCase("sum", 2, 4)] [TestCase("mean", 1, 4)]
    [TestCase("max", 1, 4)] [TestCase("min", 2, 4)] [TestCase("max", 0, 4)]
    [TestCase("sum", 2, 70)] [TestCase("mean", 2, 70)] [TestCase("max", 2, 70)] [TestCase("min", 2, 70)]
    public void Reduce(string kind, int axis, int last)
    {
        int[] s = { 3, 5, last };
        int outer = s.Take(axis).Aggregate(1, (a, b) => a * b), n = s[axis], inner = s.Skip(axis + 1).Aggregate(1, (a,
            b) => a * b);
        Func<IEnumerable<double>, double> f = kind switch { "sum" => v => v.Sum(), "mean" => v => v.Average(),
            "max" => v => v.Max(), _ => v => v.Min() };
        CheckOp($"{kind}@{axis}", new[] { s }, (g, x) => kind switch { "sum" => g.Sum(x[0], axis),
            "mean" => g.Mean(x[0], axis), "max" => g.Max(x[0], axis), _ => g.Min(x[0], axis) },
            x => RefReduce(x[0], outer, n, inner, f));
    }

    /// Sums of many contiguous rows, scaled and accumulated: one warp per row on a GPU.
    [TestCase(37, 70)] [TestCase(5, 1000)]
    public void RowSums(int rows, int n)
    {
        var r = new Random(7);
        var x = new float[(long)rows * n];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(r.NextDouble() * 2 - 0.5);
        using var sx = B.Allocate(x.Length);
        using var sy = B.Allocate(rows + 1);
        B.Upload(sx.At(0), x);
        B.Upload(sy.At(0), Enumerable.Repeat(2f, rows + 1).ToArray());
        B.Reduce(sy.At(1), sx.At(0), default, rows, n, 1, ReduceMode.Sum, 0.25f, true);
        var got = new float[rows + 1];
        B.Download(sy.At(0), got);
        var want = new double[rows + 1];
        want[0] = 2;                                               // before the output: untouched
        for (int i = 0; i < rows; i++) want[i + 1] = 2 + 0.25 * x.Skip(i * n).Take(n).Sum(v => (double)v);
        Check.Close(got, want, 1e-5 * n, 1e-5, $"sums of {rows} rows of {n} [{backendName}]");
    }

    /// Long sums over few columns (a loss's mean over every element; a bias gradient): the GPU splits
    /// these into partial sums, including a ragged tail, with scale and accumulation applied once.
    [TestCase(100_003, 1)] [TestCase(20_011, 3)] [TestCase(4_096, 2)]
    public void LongSum(int n, int inner)
    {
        var r = new Random(5);
        var x = new float[(long)n * inner];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(r.NextDouble() * 2 - 0.5);
        using var sx = B.Allocate(x.Length);
        using var sy = B.Allocate(inner);
        B.Upload(sx.At(0), x);
        B.Upload(sy.At(0), Enumerable.Repeat(1f, inner).ToArray());
        B.Reduce(sy.At(0), sx.At(0), default, 1, n, inner, ReduceMode.Sum, 0.5f, true);
        var got = new float[inner];
        B.Download(sy.At(0), got);
        var want = new double[inner];
        for (int j = 0; j < inner; j++)
        {
            double s = 0;
            for (int i = 0; i < n; i++) s += x[(long)i * inner + j];
            want[j] = 1 + 0.5 * s;
        }
        Check.Close(got, want, 1e-5 * n, 1e-5, $"sum of {n} x {inner} [{backendName}]");
    }

    [Test]
    public void TopKValuesAndTieBreak()
    {
        // (2, 6, 3) top-3 along axis 1; distinct values for the gradient check
        int[] s = { 2, 6, 3 };
        CheckOp("topk", new[] { s }, (g, x) => g.TopK(x[0], 1, 3).values, x =>
        {
            var y = new double[2 * 3 * 3];
            for (int o = 0; o < 2; o++) for (int j = 0; j < 3; j++)
            {
                var col = Enumerable.Range(0,
                    6).Select(k => x[0][(o * 6 + k) * 3 + j]).OrderByDescending(v => v).ToArray();
                for (int m = 0; m < 3; m++) y[(o * 3 + m) * 3 + j] = col[m];
            }
            return y;
        });
        // ties: equal values are taken in ascending index order
        var ps = new ParameterStore();
        ps.Allocate(B);
        using var gr = new Graph(B, ps);
        var t = gr.FromHost(new float[] { 1, 3, 3, 0, 3, 2 }, 1, 6, 1);
        var idx = gr.ToHost(gr.TopKIndices(t, 1, 4));
        Assert.That(idx, Is.EqualTo(new float[] { 1, 2, 4, 5 }));
        var low = gr.ToHost(gr.TopKIndices(t, 1, 2, largest: false));
        Assert.That(low, Is.EqualTo(new float[] { 3, 0 }));
    }

    /// Top-k indices over 21 columns (the CPU's 16-lane path and its tail) with ties, signed zeros, infinities
    /// and NaN, largest and smallest: the kernel body's indices, run here on host memory.
    [TestCase(true)] [TestCase(false)]
    public unsafe void TopKIndicesMatchTheKernelBody(bool largest)
    {
        int outer = 2, n = 30, inner = 21, k = 7;
        var x = Rand(new Random(31), outer * n * inner).Select(v => MathF.Round(v * 4) / 4).ToArray();   // many ties
        float[] special = { float.NaN, -0f, 0f, float.PositiveInfinity, float.NegativeInfinity };
        for (int i = 0; i < 40; i++) x[(i * 97) % x.Length] = special[i % special.Length];
        var want = new float[outer * k * inner];
        fixed (float* xp = x, wp = want)
        {
            var body = new ArgTopK<PtrMem> { Idx = new PtrMem(wp), X = new PtrMem(xp), N = n, Inner = inner, K = k,
                Largest = largest ? 1 : 0 };
            for (int i = 0; i < outer * inner; i++) body.Execute(i);
        }
        using var xs = B.Allocate(x.Length);
        using var ix = B.Allocate(want.Length);
        B.Upload(xs.At(0), x);
        B.ArgTopK(ix.At(0), xs.At(0), outer, n, inner, k, largest);
        var got = new float[want.Length];
        B.Download(ix.At(0), got);
        Assert.That(got, Is.EqualTo(want));
        Assert.That(want.Count(v => v < 0), Is.GreaterThan(0),
            "the NaN cases reach the body's unselected (-1) outcome");
    }

    /// Max and min with their indices over contiguous rows of 70 (the GPU's one-warp-per-row form) with ties,
    /// signed zeros, infinities and NaN, one row all NaN after its first value: the kernel body's answers.
    [TestCase(true)] [TestCase(false)]
    public unsafe void ExtremesMatchTheKernelBody(bool max)
    {
        int rows = 9, n = 70;
        var x = Rand(new Random(33), rows * n).Select(v => MathF.Round(v * 4) / 4).ToArray();
        float[] special = { float.NaN, -0f, 0f, float.PositiveInfinity, float.NegativeInfinity };
        for (int i = 0; i < 60; i++) x[(i * 89) % x.Length] = special[i % special.Length];
        x[2 * n] = float.NaN;                                          // a row whose first value is NaN
        for (int i = 1; i < n; i++) x[3 * n + i] = float.NaN;          // a row of NaN after a number
        var want = new float[rows];
        var wantIdx = new float[rows];
        int mode = max ? ReduceMode.Max : ReduceMode.Min;
        fixed (float* xp = x, wp = want, ip = wantIdx)
        {
            var body = new ReduceAxis<PtrMem> { Y = new PtrMem(wp), X = new PtrMem(xp), Idx = new PtrMem(ip), N = n,
                Inner = 1, Mode = mode, WriteIdx = 1 };
            for (int i = 0; i < rows; i++) body.Execute(i);
        }
        using var xs = B.Allocate(x.Length);
        using var ys = B.Allocate(rows);
        using var ix = B.Allocate(rows);
        B.Upload(xs.At(0), x);
        B.Reduce(ys.At(0), xs.At(0), ix.At(0), rows, n, 1, mode, 1f, false);
        var got = new float[rows];
        var gotIdx = new float[rows];
        B.Download(ys.At(0), got);
        B.Download(ix.At(0), gotIdx);
        Check.SameBits(got, want, $"{(max ? "max" : "min")} values [{backendName}]");
        Assert.That(gotIdx, Is.EqualTo(wantIdx));
        Assert.That(float.IsNaN(want[2]) && wantIdx[2] == 0 && !float.IsNaN(want[3]), "the NaN rules are reached");
    }

    /// Pairwise KL (the CPU's log table) against the kernel body run on host memory, bit for bit: two sets,
    /// and one set against itself as the video-level contrast uses it.
    [TestCase(false)] [TestCase(true)]
    public unsafe void PairwiseKlMatchesTheKernelBody(bool self)
    {
        var k = new KlParams { Bt = 3, Np = 4, Nq = self ? 4 : 5, D = 37, VarEps = 1e-5f };
        var r = new Random(41);
        var mp = Rand(r, k.Bt * k.Np * k.D);
        var vp = Rand(r, k.Bt * k.Np * k.D, 0, 2);
        var mq = self ? mp : Rand(r, k.Bt * k.Nq * k.D);
        var vq = self ? vp : Rand(r, k.Bt * k.Nq * k.D, 0, 2);
        vp[5] = 0f; vq[7] = 0f;                                   // s2 = eps
        var want = new float[k.Bt * k.Np * k.Nq];
        fixed (float* a = mp, b = vp, c = mq, d = vq, w = want)
        {
            var body = new PairwiseKlFwd<PtrMem> { Kl = new PtrMem(w), MuP = new PtrMem(a), VarP = new PtrMem(b),
                MuQ = new PtrMem(c), VarQ = new PtrMem(d), K = k };
            for (int i = 0; i < want.Length; i++) body.Execute(i);
        }
        using var smp = B.Allocate(mp.Length);
        using var svp = B.Allocate(vp.Length);
        using var smq = B.Allocate(mq.Length);
        using var svq = B.Allocate(vq.Length);
        using var skl = B.Allocate(want.Length);
        B.Upload(smp.At(0), mp);
        B.Upload(svp.At(0), vp);
        B.Upload(smq.At(0), mq);
        B.Upload(svq.At(0), vq);
        if (self) B.PairwiseKl(skl.At(0), smp.At(0), svp.At(0), smp.At(0), svp.At(0), k);
        else B.PairwiseKl(skl.At(0), smp.At(0), svp.At(0), smq.At(0), svq.At(0), k);
        var got = new float[want.Length];
        B.Download(skl.At(0), got);
        if (B.IsGpu)
        {
            Check.Close(got, want.Select(v => (double)v).ToArray(), 1e-4, 1e-5, "kl");
            return;
        }
        Check.SameBits(got, want);
        if (self)
            for (int b = 0; b < k.Bt; b++)
                for (int i = 0; i < k.Np; i++)
                    Assert.That(got[(b * k.Np + i) * k.Nq + i], Is.EqualTo(0f).Within(1e-4f), "KL(p||p) = 0");
    }

    [Test]
    public void GatherRowsWithRepeats()
    {
        var idx = new float[] { 2, 0, 2, 1, 1, 1 };   // (2 outer, 3 picks) with repeated indices
        CheckOp("gather", new[] { new[] { 2, 3, 4 }, new[] { 2, 3 } }, (g, x) => g.Gather(x[0], 1,
            g.Detach(g.Reshape(x[1], 2, 3, 1)), perInner: false),
            x =>
            {
                var y = new double[2 * 3 * 4];
                for (int o = 0; o < 2; o++)
                    for (int m = 0; m < 3; m++)
                        for (int j = 0; j < 4; j++)
                            y[(o * 3 + m) * 4 + j] = x[0][(o * 3 + (int)x[1][o * 3 + m]) * 4 + j];
                return y;
            }, init: (r, i, n) => i == 1 ? idx : Rand(r, n), differentiable: new[] { true, false });
    }

    // ---------------- softmax / norms ----------------
    // the last two cases have contiguous rows of 70: the GPU's one-warp-per-row path (n >= 64)
    [TestCase(false, 1, 4)] [TestCase(true, 1, 4)] [TestCase(false, 2, 4)] [TestCase(true, 0, 4)]
    [TestCase(false, 2, 70)] [TestCase(true, 2, 70)]
    public void Softmax(bool log, int axis, int last)
    {
        int[] s = { 3, 5, last };
        int outer = s.Take(axis).Aggregate(1, (a, b) => a * b), n = s[axis], inner = s.Skip(axis + 1).Aggregate(1, (a,
            b) => a * b);
        CheckOp($"softmax(log={log})@{axis}", new[] { s }, (g, x) => log ? g.LogSoftmax(x[0], axis) : g.Softmax(x[0],
            axis), x =>
        {
            var y = new double[x[0].Length];
            for (int o = 0; o < outer; o++) for (int j = 0; j < inner; j++)
            {
                double mx = double.MinValue, sum = 0;
                for (int k = 0; k < n; k++) mx = Math.Max(mx, x[0][(o * n + k) * inner + j]);
                for (int k = 0; k < n; k++) sum += Math.Exp(x[0][(o * n + k) * inner + j] - mx);
                for (int k = 0; k < n; k++)
                {
                    int a = (o * n + k) * inner + j;
                    y[a] = log ? x[0][a] - mx - Math.Log(sum) : Math.Exp(x[0][a] - mx) / sum;
                }
            }
            return y;
        });
    }

    // rows of 70: the GPU's one-warp-per-row path (n >= 64)
    [TestCase(7)] [TestCase(70)]
    public void LayerNorm(int w)
    {
        CheckOp("layernorm", new[] { new[] { 5, w }, new[] { w }, new[] { w } }, (g, x) => g.LayerNorm(x[0], x[1],
            x[2]), x =>
        {
            var y = new double[5 * w];
            for (int r = 0; r < 5; r++)
            {
                double m = 0, v = 0;
                for (int n = 0; n < w; n++) m += x[0][r * w + n];
                m /= w;
                for (int n = 0; n < w; n++) v += Math.Pow(x[0][r * w + n] - m, 2);
                double rs = 1 / Math.Sqrt(v / w + 1e-5);
                for (int n = 0; n < w; n++) y[r * w + n] = (x[0][r * w + n] - m) * rs * x[1][n] + x[2][n];
            }
            return y;
        });
    }

    // the last case has contiguous rows of 70: the GPU's one-warp-per-row path (n >= 64)
    [TestCase(2, 1e-12f, 5)] [TestCase(1, 0f, 5)] [TestCase(2, 1e-12f, 70)]
    public void L2Normalize(int axis, float eps, int last)
    {
        int[] s = { 3, 4, last };
        int outer = s.Take(axis).Aggregate(1, (a, b) => a * b), n = s[axis], inner = s.Skip(axis + 1).Aggregate(1, (a,
            b) => a * b);
        CheckOp($"l2norm@{axis}", new[] { s }, (g, x) => g.L2Normalize(x[0], axis, eps), x =>
        {
            var y = new double[x[0].Length];
            for (int o = 0; o < outer; o++) for (int j = 0; j < inner; j++)
            {
                double ss = 0;
                for (int k = 0; k < n; k++) ss += Math.Pow(x[0][(o * n + k) * inner + j], 2);
                double d = Math.Max(Math.Sqrt(ss), eps);
                for (int k = 0; k < n; k++) y[(o * n + k) * inner + j] = x[0][(o * n + k) * inner + j] / d;
            }
            return y;
        });
    }

    // ---------------- attention ----------------
    // heads of 3 values run one thread per row on a GPU; heads of 32 (and rows longer than a warp of the
    // emulator's 4 lanes) the one-warp-per-row form
    [TestCase(true, 5, 6)] [TestCase(false, 5, 6)] [TestCase(true, 9, 64)] [TestCase(false, 9, 64)]
    public void Attention(bool causal, int l, int w)
    {
        int nb = 2, h = 2, hd = w / h;
        CheckOp($"attention(causal={causal})", new[] { new[] { nb, l, 3 * w } }, (g, x) => g.Attention(x[0], h,
            causal), x =>
        {
            var q = x[0];
            var y = new double[nb * l * w];
            for (int n = 0; n < nb; n++) for (int hh = 0; hh < h; hh++) for (int i = 0; i < l; i++)
            {
                int jEnd = causal ? i + 1 : l;
                var s = new double[jEnd];
                for (int j = 0; j < jEnd; j++)
                {
                    double d = 0;
                    for (int c = 0; c < hd; c++)
                        d += q[(n * l + i) * 3 * w + hh * hd + c] * q[(n * l + j) * 3 * w + w + hh * hd + c];
                    s[j] = d / Math.Sqrt(hd);
                }
                double mx = s.Max(), sum = s.Sum(v => Math.Exp(v - mx));
                for (int c = 0; c < hd; c++)
                {
                    double acc = 0;
                    for (int j = 0; j < jEnd; j++)
                        acc += Math.Exp(s[j] - mx) / sum * q[(n * l + j) * 3 * w + 2 * w + hh * hd + c];
                    y[(n * l + i) * w + hh * hd + c] = acc;
                }
            }
            return y;
        });
    }

    // ---------------- sequence alignment (FTCL) ----------------
    /// FTCL's FSD per cell as ftcl_criterion.py:100-117 writes it (maxGamma with the max subtracted), in
    /// float64: pairs of (L, L) m and g.
    static double[] FsdReference(double[] m, double[] g, int pairs, int l, double gamma)
    {
        var y = new double[pairs];
        for (int p = 0; p < pairs; p++)
        {
            var c = new double[l + 1, l + 1];
            for (int i = 1; i <= l; i++)
                for (int j = 1; j <= l; j++)
                {
                    int x = (p * l + i - 1) * l + j - 1;
                    double[] z = [c[i - 1, j - 1] / gamma, (g[x] + c[i - 1, j]) / gamma, (g[x] + c[i, j - 1]) / gamma];
                    double mx = z.Max();
                    c[i, j] = m[x] + gamma * (mx + Math.Log(z.Sum(v => Math.Exp(v - mx))));
                }
            y[p] = c[l, l];
        }
        return y;
    }

    /// FTCL's LCS per cell (ftcl_criterion.py:128-146): Python's max(up, left) keeps up on a tie.
    static double[] LcsReference(double[] s, int pairs, int l, double threshold)
    {
        var y = new double[pairs];
        for (int p = 0; p < pairs; p++)
        {
            var c = new double[l + 1, l + 1];
            for (int i = 1; i <= l; i++)
                for (int j = 1; j <= l; j++)
                {
                    double v = s[(p * l + i - 1) * l + j - 1];
                    c[i, j] = v > threshold ? c[i - 1, j - 1] + v
                        : (c[i, j - 1] > c[i - 1, j] ? c[i, j - 1] : c[i - 1, j]);
                }
            y[p] = c[l, l];
        }
        return y;
    }

    /// L = 20 is wider than the emulator's 16-thread groups: a thread then sweeps two rows per diagonal.
    [TestCase(3, 5)] [TestCase(2, 20)] [TestCase(1, 1)]
    public void Fsd(int pairs, int l) =>
        CheckOp($"fsd L={l}", [[pairs, l, l], [pairs, l, l]], (g, x) => g.Fsd(x[0], x[1], 0.1f),
            x => FsdReference(x[0], x[1], pairs, l, 0.1));

    [TestCase(3, 20)] [TestCase(2, 5)]
    public void Lcs(int pairs, int l) =>
        CheckOp($"lcs L={l}", [[pairs, l, l]], (g, x) => g.Lcs(x[0], 0.5f), x => LcsReference(x[0], pairs, l, 0.5));

    /// The group-per-pair form (the ILGPU backends) writes the tables, weights and choices the
    /// one-thread-per-pair form (the CPU) does.
    [Test]
    public void AlignmentTablesEqualTheCpuForm()
    {
        if (backendName == "cpu") Assert.Ignore("the reference form itself");
        var cpu = Backends.Get("cpu");
        int pairs = 4, l = 30;
        var r = new Random(7);
        var m = Rand(r, pairs * l * l);
        var gg = Rand(r, pairs * l * l);
        float[] Run(Backend b, bool fsd)
        {
            var ps = new ParameterStore();
            using var g = new Graph(b, ps);
            var tm = g.FromHost(m, pairs, l, l);
            var tg = g.FromHost(gg, pairs, l, l);
            var table = g.New([pairs, l + 1, l + 1]);
            var y = fsd ? g.Fsd(tm, tg, 0.1f, table) : g.Lcs(tm, 0.5f, table);
            return [.. g.ToHost(y), .. g.ToHost(table)];
        }
        foreach (bool fsd in new[] { true, false })
        {
            var want = Run(cpu, fsd);
            var got = Run(B, fsd);
            if (B.IsGpu) Check.Close(got, want.Select(v => (double)v).ToArray(), 1e-4, 1e-5, fsd ? "fsd" : "lcs");
            else Check.SameBits(got, want, fsd ? "fsd" : "lcs");
        }
    }

    /// Two paths of equal length meet at (2, 2): Python's max keeps the upper one, so only S[0, 1]
    /// takes the gradient; a similarity equal to the threshold is not counted (strict >).
    [Test]
    public void LcsTieKeepsTheUpperPathAndTheThresholdIsStrict()
    {
        var ps = new ParameterStore();
        ps.Add("s", [2, 2, 2]);
        ps.Allocate(B);
        ps.Set("s", [0f, 0.9f, 0.9f, 0f, 0.5f, 0.5f, 0.5f, 0.5f]);
        using var g = new Graph(B, ps);
        var y = g.Lcs(ps["s"].Value, 0.5f);
        Assert.That(g.ToHost(y), Is.EqualTo(new[] { 0.9f, 0f }));
        g.Backward(g.SumAll(y));
        Assert.That(ps.GetGrad("s"), Is.EqualTo(new[] { 0f, 1f, 0f, 0f, 0f, 0f, 0f, 0f }));
        ps.Dispose();
    }

    [Test]
    public void AlignmentRefusesBadSides()
    {
        var ps = new ParameterStore();
        using var g = new Graph(B, ps);
        Assert.Throws<ShapeException>(() => g.Fsd(g.New([2, 3, 4]), g.New([2, 3, 4]), 0.1f));
        Assert.Throws<ShapeException>(() => g.Lcs(g.New([1, 65, 65]), 0.5f));
        Assert.Throws<ShapeException>(() => g.Fsd(g.New([2, 3, 3]), g.New([2, 4, 4]), 0.1f));
    }

    // ---------------- pairwise KL ----------------
    [Test]
    public void PairwiseKl()
    {
        int bt = 2, np = 3, nq = 4, d = 5;
        CheckOp("kl", new[] { new[] { bt, np, d }, new[] { bt, np, d }, new[] { bt, nq, d }, new[] { bt, nq, d } },
            (g, x) => g.PairwiseKl(x[0], x[1], x[2], x[3]), x =>
            {
                var y = new double[bt * np * nq];
                for (int b = 0; b < bt; b++) for (int i = 0; i < np; i++) for (int j = 0; j < nq; j++)
                {
                    double s = 0;
                    for (int c = 0; c < d; c++)
                    {
                        double mp = x[0][(b * np + i) * d + c], sp = x[1][(b * np + i) * d + c] + 1e-5,
                            mq = x[2][(b * nq + j) * d + c], sq = x[3][(b * nq + j) * d + c] + 1e-5;
                        s += (mq - mp) * (mq - mp) / sq + Math.Log(sq) - Math.Log(sp) + sp / sq;
                    }
                    y[(b * np + i) * nq + j] = 0.5 * s - 0.5 * d;
                }
                return y;
            }, init: (r, i, n) => Rand(r, n, i % 2 == 1 ? 0.3 : -1, i % 2 == 1 ? 1.2 : 1));
    }

    // ---------------- matmul / linear / conv ----------------
    [TestCase(false, false, 1)] [TestCase(true, false, 1)] [TestCase(false, true, 1)] [TestCase(true, true,
        1)] [TestCase(false, false, 3)] [TestCase(true, true, 2)]
    public void MatMul(bool ta, bool tb, int batch)
    {
        int m = 5, k = 7, n = 3;
        int[] sa = ta ? new[] { k, m } : new[] { m, k }, sb = tb ? new[] { n, k } : new[] { k, n };
        if (batch > 1)
        {
            sa = new[] { batch }
            .Concat(sa).ToArray();
            sb = new[] { batch }
            .Concat(sb).ToArray();
        }
        CheckOp($"matmul(ta={ta},tb={tb},b={batch})", new[] { sa, sb }, (g, x) => g.MatMul(x[0], x[1], ta, tb), x =>
        {
            var y = new double[batch * m * n];
            for (int bt = 0; bt < batch; bt++) for (int i = 0; i < m; i++) for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++)
                    s += x[0][bt * m * k + (ta ? p * m + i : i * k + p)] * x[1][bt * k * n
                        + (tb ? j * k + p : p * n + j)];
                y[(bt * m + i) * n + j] = s;
            }
            return y;
        });
    }

    [Test]
    public void Linear()
    {
        CheckOp("linear", new[] { new[] { 2, 3, 5 }, new[] { 4, 5 }, new[] { 4 } }, (g, x) => g.Linear(x[0], x[1],
            x[2]), x =>
        {
            var y = new double[6 * 4];
            for (int r = 0; r < 6; r++) for (int o = 0; o < 4; o++)
            { double s = x[2][o]; for (int i = 0; i < 5; i++) s += x[0][r * 5 + i] * x[1][o * 5 + i]; y[r * 4
                + o] = s; }
            return y;
        });
    }

    [TestCase(3, 5, 1)] [TestCase(1, 4, 3)] [TestCase(3, 1, 2)] [TestCase(3, 6, 3)]
    public void Conv1d(int k, int t, int b)
    {
        int cin = 3, cout = 4;
        CheckOp($"conv1d(k={k},T={t},B={b})", new[] { new[] { b, t, cin }, new[] { cout, cin, k }, new[] { cout } },
            (g, x) => g.Conv1d(x[0], x[1], x[2]), x => ConvReference(x, b, t, cin, cout, k));
    }

    /// The recorded k = 3 convolution by Winograd F(m,3) (forward, and the input gradient as the k = 3
    /// convolution of dy with the flipped, transposed weight): the same float64 reference and finite
    /// differences as the direct one; T = 13 leaves a ragged last tile, T = 4 < m goes direct.
    [TestCase(6, 13, 2)] [TestCase(4, 13, 1)] [TestCase(2, 7, 2)] [TestCase(6, 4, 2)]
    public void Conv1dByWinogradInTraining(int m, int t, int b)
    {
        int cin = 5, cout = 3;
        CheckOp($"conv1d F({m},3) (T={t},B={b})", new[] { new[] { b, t, cin }, new[] { cout, cin, 3 }, new[] { cout } },
            (g, x) => g.Conv1d(x[0], x[1], x[2]), x => ConvReference(x, b, t, cin, cout, 3), trainWinograd: m);
    }

    /// The weight and input used twice: both Winograd gradients add to what is there (+=).
    [Test]
    public void Conv1dByWinogradAccumulatesItsGradients()
    {
        int b = 2, t = 13, cin = 4, cout = 3;
        CheckOp("conv1d F(6,3) twice", new[] { new[] { b, t, cin }, new[] { cout, cin, 3 }, new[] { cout } },
            (g, x) => g.Add(g.Conv1d(x[0], x[1], x[2]), g.Scale(g.Conv1d(x[0], x[1], x[2]), 2f)),
            x => ConvReference(x, b, t, cin, cout, 3).Select(v => 3 * v).ToArray(), trainWinograd: 6);
    }

    static double[] ConvReference(double[][] x, int b, int t, int cin, int cout, int k)
    {
        int pad = (k - 1) / 2;
        var y = new double[b * t * cout];
        for (int bb = 0; bb < b; bb++) for (int tt = 0; tt < t; tt++) for (int co = 0; co < cout; co++)
        {
            double s = x[2][co];
            for (int kk = 0; kk < k; kk++)
            {
                int src = tt + kk - pad;
                if (src < 0 || src >= t) continue;
                for (int ci = 0; ci < cin; ci++) s += x[1][(co * cin + ci) * k + kk] * x[0][(bb * t + src) * cin + ci];
            }
            y[(bb * t + tt) * cout + co] = s;
        }
        return y;
    }

    // ---------------- data movement ----------------
    [Test]
    public void TransposeSliceConcatPad()
    {
        CheckOp("transpose", new[] { new[] { 2, 3, 4 } }, (g, x) => g.Transpose(x[0], 1, 2), x =>
        {
            var y = new double[24];
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 3; b++)
                    for (int c = 0; c < 4; c++) y[(a * 4 + c) * 3 + b] = x[0][(a * 3 + b) * 4 + c];
            return y;
        });
        CheckOp("slice", new[] { new[] { 2, 3, 5 } }, (g, x) => g.Slice(x[0], 2, 1, 3), x =>
        {
            var y = new double[18];
            for (int r = 0; r < 6; r++) for (int c = 0; c < 3; c++) y[r * 3 + c] = x[0][r * 5 + 1 + c];
            return y;
        });
        CheckOp("concat", new[] { new[] { 2, 2 }, new[] { 2, 3 } }, (g, x) => g.Concat(1, x[0], x[1]), x =>
        {
            var y = new double[10];
            for (int r = 0; r < 2; r++)
            {
                for (int c = 0; c < 2; c++) y[r * 5 + c] = x[0][r * 2 + c];
                for (int c = 0; c < 3; c++) y[r * 5 + 2 + c] = x[1][r * 3 + c];
            }
            return y;
        });
        CheckOp("pad", new[] { new[] { 2, 3 } }, (g, x) => g.Pad(x[0], 0, 1, 2), x =>
        {
            var y = new double[15];
            for (int r = 0; r < 2; r++) for (int c = 0; c < 3; c++) y[(r + 1) * 3 + c] = x[0][r * 3 + c];
            return y;
        });
    }

    [Test]
    public void ShapeMismatchIsAClearException()
    {
        var ps = new ParameterStore();
        ps.Allocate(B);
        using var g = new Graph(B, ps);
        var a = g.New(new[] { 2, 3 });
        var b = g.New(new[] { 4, 5 });
        var ex = Assert.Throws<ShapeException>(() => g.MatMul(a, b));
        Assert.That(ex.Message, Does.Contain("matmul").And.Contain("(2,3)").And.Contain("(4,5)"));
        Assert.Throws<ShapeException>(() => g.Add(a, b));
        Assert.Throws<ShapeException>(() => g.Conv1d(g.New(new[] { 1, 4, 3 }), g.New(new[] { 2, 5, 3 }), null));
        Assert.Throws<ShapeException>(() => B.Fill(a.Data.At(a.Data.Length - 2), 5, 0f));
    }
}
