// The GEMM primitive directly, at ragged shapes that span several tiles and K slabs in every layout
// (NN, NT, TN, TT), batched, with beta accumulation and the overlapping-row view a k=3 conv uses.
// On CUDA a large case also takes the 128x128-tile path (it needs two tiles per multiprocessor).
using NUnit.Framework;
using static PvlrKernels.Tests.TestData;
using PvlrKernels.Engine;
using PvlrKernels.Kernels;

namespace PvlrKernels.Tests;

[TestFixtureSource(typeof(Backends), nameof(Backends.All))]
public sealed class GemmTests(string backendName)
{
    Backend B => Backends.Get(backendName);

    /// C after Backend.Gemm on uploaded copies of a, b and c.
    float[] Gemm(GemmParams p, float[] a, float[] b, float[] c, long offA = 0) => Gemm(B, p, a, b, c, offA);

    internal static float[] Gemm(Backend B, GemmParams p, float[] a, float[] b, float[] c, long offA = 0)
    {
        using var sa = B.Allocate(a.Length);
        using var sb = B.Allocate(b.Length);
        using var sc = B.Allocate(c.Length);
        B.Upload(sa.At(0), a);
        B.Upload(sb.At(0), b);
        B.Upload(sc.At(0), c);
        B.Gemm(sc.At(0), sa.At(offA), sb.At(0), p);
        var got = new float[c.Length];
        B.Download(sc.At(0), got);
        return got;
    }

    /// `batch` row-major (k, n) matrices in the CPU GEMM's B panel layout (CpuGemm.PanelIndex).
    static float[] Panels(float[] b, int batch, int k, int n)
    {
        var packed = new float[b.Length];
        for (int bt = 0; bt < batch; bt++)
            for (int kk = 0; kk < k; kk++)
                for (int j = 0; j < n; j++) packed[bt * k * n + CpuGemm.PanelIndex(kk, j, k,
                    n)] = b[bt * k * n + kk * n + j];
        return packed;
    }

    /// C = alpha A B + beta C through Backend.Gemm against a float64 loop over the same strided views.
    void Run(GemmParams p, int lenA, int lenB, int lenC, long offA = 0) =>
        Run(B, backendName, p, lenA, lenB, lenC, offA);

    internal static void Run(Backend B, string backendName, GemmParams p, int lenA, int lenB, int lenC,
        long offA = 0)
    {
        var a = Rand(lenA, 1);
        var b = Rand(lenB, 2);
        var c = Rand(lenC, 3);
        var got = Gemm(B, p, a, b, c, offA);
        var want = c.Select(v => (double)v).ToArray();
        for (int bt = 0; bt < p.Batch; bt++)
            for (int i = 0; i < p.M; i++)
                for (int j = 0; j < p.N; j++)
                {
                    double s = 0;
                    for (int k = 0; k < p.K; k++)
                        s += (double)a[offA + (long)bt * p.BatchA + (long)i * p.RsA
                            + (long)k * p.CsA] * b[(long)bt * p.BatchB + (long)k * p.RsB + (long)j * p.CsB];
                    long ci = (long)bt * p.BatchC + (long)i * p.Ldc + j;
                    want[ci] = p.Alpha * s + p.Beta * c[ci];
                }
        double tol = 1e-5 * Math.Sqrt(p.K) + 1e-6;
        Check.Close(got, want, tol, 1e-4,
            $"gemm M={p.M} N={p.N} K={p.K} batch={p.Batch} strides A({p.RsA},{p.CsA}) B({p.RsB},{p.CsB}) "
                + $"[{backendName}]");
    }

    [TestCase(false, false)] [TestCase(true, false)] [TestCase(false, true)] [TestCase(true, true)]
    public void Layouts(bool ta, bool tb)
    {
        var (p, la, lb, lc) = LayoutCase(ta, tb, 70, 45, 19);
        Run(p, la, lb, lc);
    }

    /// A batched product of two ragged (m, k) x (k, n) matrices in a layout, with alpha, beta and a C row
    /// stride wider than N; the operand lengths.
    internal static (GemmParams p, int lenA, int lenB, int lenC) LayoutCase(bool ta, bool tb, int m, int n, int k)
    {
        int batch = 2;
        var p = new GemmParams
        {
            Batch = batch, M = m, N = n, K = k, Alpha = 0.75f, Beta = 0.5f,
            BatchA = m * k, RsA = ta ? 1 : k, CsA = ta ? m : 1,
            BatchB = k * n, RsB = tb ? 1 : n, CsB = tb ? k : 1,
            BatchC = m * (n + 1) + 3, Ldc = n + 1,
        };
        return (p, batch * m * k, batch * k * n, batch * (m * (n + 1) + 3));
    }

    /// Fewer than 32 columns of a transposed B against row-major A (the per-video tau, the cosine CAS, a
    /// 1-output conv): on the CPU a dot product per output (CpuGemm.Narrow), K with and without a 16-float
    /// tail, beta 0 and not, C with a row gap; the last case is large enough to be split across cores.
    [TestCase(37, 1, 64, 0.5f)] [TestCase(37, 3, 100, 0f)] [TestCase(37, 4, 1029, 0.5f)] [TestCase(5, 5, 64, 1f)]
    [TestCase(37, 21, 300, 0f)] [TestCase(37, 31, 77, 0.5f)] [TestCase(601, 9, 1024, 0.5f)]
    public void NarrowTransposedB(int m, int n, int k, float beta)
    {
        var p = new GemmParams
        {
            Batch = 1, M = m, N = n, K = k, Alpha = 0.75f, Beta = beta,
            BatchA = m * k, RsA = k, CsA = 1, BatchB = k * n, RsB = 1, CsB = k, BatchC = m * (n + 2), Ldc = n + 2,
        };
        Run(p, m * k, k * n, m * (n + 2));
    }

    [Test]
    public void OverlappingRowsAsInConv()
    {
        // 30 padded rows of 11 channels, k = 3: virtual row r = flat[r*11 .. r*11 + 33).
        int rows = 28, cin = 11, cout = 37;
        var p = new GemmParams { Batch = 1, M = rows, N = cout, K = 3 * cin, RsA = cin, CsA = 1, RsB = cout, CsB = 1,
            Ldc = cout, Alpha = 1, Beta = 0 };
        Run(p, 30 * cin + 5, 3 * cin * cout, rows * cout, offA: 5);
    }

    [Test]
    public void TransposedOverlappingAAsInConvWeightGradient()
    {
        // dW = A^T dy with A the padded input seen by columns (row stride 1, column stride Cin, rows of the
        // transposed view overlapping): on the CPU its 8-row micro-panels are packed a column at a time,
        // over two K slabs, with a row tail (M = 3 * 11 = 33)
        int rows = 300, cin = 11, cout = 37;
        var p = new GemmParams { Batch = 1, M = 3 * cin, N = cout, K = rows, RsA = 1, CsA = cin, RsB = cout, CsB = 1,
            Ldc = cout, Alpha = 1, Beta = 1 };
        Run(p, (rows + 2) * cin, rows * cout, 3 * cin * cout);
    }

    [Test]
    public void ShortMSplitsColumnsAcrossCores()
    {
        // On the CPU: one row block of 100 rows, its 100 columns cut into panel-aligned blocks (the last one
        // partial) so both cores get tasks; two K slabs
        int m = 100, n = 100, k = 300;
        var p = new GemmParams { Batch = 1, M = m, N = n, K = k, RsA = k, CsA = 1, RsB = n, CsB = 1, Ldc = n,
            Alpha = 1, Beta = 1 };
        Run(p, m * k, k * n, m * n);
        if (B.IsGpu) return;
        Assert.That(CpuGemm.Blocks(m, n, 2), Is.EqualTo((104, 32)),
            "100 rows in one block, 4 panels in 4 column tasks");
        Assert.That(CpuGemm.Blocks(273, 512, 2), Is.EqualTo((96, 256)),
            "CLIP's 273 rows: 3 even row blocks x 2 column blocks");
        Assert.That(CpuGemm.Blocks(128, 4096, 2), Is.EqualTo((128, 512)), "column blocks at most NCT wide");
    }

    [Test]
    public void TallRowMajorA()
    {
        // On the CPU: enough rows for tasks that span all columns, A packed by 8x8 register transposes
        // from rows padded to 304 floats, and a K of two slabs with a tail that is not a multiple of 8.
        int m = 1100, n = 70, k = 301, lda = 304;
        var p = new GemmParams { Batch = 1, M = m, N = n, K = k, RsA = lda, CsA = 1, RsB = n, CsB = 1, Ldc = n,
            Alpha = 1, Beta = 1 };
        Run(p, m * lda, k * n, m * n);
        if (!B.IsGpu) Assert.That(CpuGemm.Blocks(m, n, 2), Is.EqualTo((112, 96)),
            "row blocks evened over 2 threads, full-width tasks");
    }

    [Test]
    public void BatchOfLargeProducts()
    {
        // Four products above the one-core-per-product threshold, with beta accumulation and padded C rows.
        int m = 150, n = 130, k = 300, ldc = 133, batch = 4;
        var p = new GemmParams
        {
            Batch = batch, M = m, N = n, K = k, Alpha = 1.5f, Beta = 0.5f, BatchA = m * k, RsA = k, CsA = 1,
            BatchB = k * n, RsB = n, CsB = 1, BatchC = m * ldc, Ldc = ldc,
        };
        Run(p, batch * m * k, batch * k * n, batch * m * ldc);
        if (B.IsGpu || backendName != "cpu") return;
        // on the CPU, the cores-take-whole-products schedule must give bitwise the one-product-at-a-time
        // result: B row-major, transposed (a Linear's weight) and in the panel layout (the Winograd weights);
        // 2 and 3 cores; beta 0, 1 and other
        foreach (var (bn, layout, threads, beta, bb) in new[] { (130, "row-major", 2, 0.5f, 4), (130, "transposed", 2,
            0f, 4), (128, "panels", 2, 0.5f, 4),
                                                             (128, "panels", 3, 0f, 6), (130, "row-major", 3, 1f, 6) })
        {
            var a = Rand(bb * m * k, 4);
            var b = Rand(bb * k * bn, 5);
            var c0 = Rand(bb * m * ldc, 6);
            var split = (float[])c0.Clone();
            var serial = (float[])c0.Clone();
            var stored = layout == "panels" ? Panels(b, bb, k, bn) : b;
            long rsB = layout == "transposed" ? 1 : bn, csB = layout == "transposed" ? k : 1;
            unsafe
            {
                fixed (float* pa = a, pb = b, pp = stored, ps = split, pq = serial)
                {
                    CpuGemm.SgemmBatch(bb, m, bn, k, 1.5f, pa, m * k, k, 1, pp, k * bn, rsB, csB, beta, ps, m * ldc,
                        ldc, threads, panelB: layout == "panels");
                    for (int i = 0; i < bb; i++)
                        CpuGemm.Sgemm(m, bn, k, 1.5f, pa + i * m * k, k, 1, pb + i * k * bn, rsB, csB, beta,
                            pq + i * m * ldc, ldc);
                }
            }
            Assert.That(split.Select(BitConverter.SingleToInt32Bits),
                Is.EqualTo(serial.Select(BitConverter.SingleToInt32Bits)),
                $"batch-parallel and per-product GEMM differ: B {layout}, {threads} cores, beta {beta}");
        }
    }

    [Test]
    public void PanelLayoutB()
    {
        // B written in the CPU GEMM's panel layout (two K slabs, the second a partial one) is read in place;
        // a backend without panels refuses it
        int m = 70, n = 64, k = 300, batch = 2;
        var p = new GemmParams
        {
            Batch = batch, M = m, N = n, K = k, Alpha = 1f, Beta = 0.5f, BatchA = m * k, RsA = k, CsA = 1,
            BatchB = k * n, RsB = n, CsB = 1, BatchC = m * n, Ldc = n, PanelB = 1,
        };
        using var sa = B.Allocate(batch * m * k);
        using var sb = B.Allocate(batch * k * n);
        using var sc = B.Allocate(batch * m * n);
        if (!B.PanelsFit(n))
        {
            Assert.Throws<ShapeException>(() => B.Gemm(sc.At(0), sa.At(0), sb.At(0), p));
            return;
        }
        var a = Rand(batch * m * k, 7);
        var b = Rand(batch * k * n, 8);
        var c = Rand(batch * m * n, 9);
        var got = Gemm(p, a, Panels(b, batch, k, n), c);
        var want = new double[c.Length];
        for (int bt = 0; bt < batch; bt++)
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    double s = 0;
                    for (int kk = 0; kk < k; kk++) s += (double)a[bt * m * k + i * k + kk] * b[bt * k * n + kk * n + j];
                    want[bt * m * n + i * n + j] = s + 0.5 * c[bt * m * n + i * n + j];
                }
        Check.Close(got, want, 1e-5 * Math.Sqrt(k) + 1e-6, 1e-4, $"gemm with a panel-layout B [{backendName}]");
    }

    [Test]
    public void LargeTilesOnGpu()
    {
        if (!B.IsGpu) Assert.Ignore("the 128x128-tile path runs only on a GPU");
        int m = 2100, n = 2090, k = 70;
        var p = new GemmParams { Batch = 1, M = m, N = n, K = k, RsA = k, CsA = 1, RsB = 1, CsB = k, Ldc = n,
            Alpha = 1, Beta = 0 };
        Run(p, m * k, k * n, m * n);
    }

    [Test]
    public void TransposedBAcrossSlabs()
    {
        // a Linear's weight as B (column stride K): on the CPU full 32-column panels are packed by register
        // transposes, over two K slabs (the second with a tail that is not a multiple of 8) and a column tail
        int m = 40, n = 100, k = 301;
        var p = new GemmParams { Batch = 1, M = m, N = n, K = k, RsA = k, CsA = 1, RsB = 1, CsB = k, Ldc = n,
            Alpha = 1f, Beta = 1f };
        Run(p, m * k, k * n, m * n);
    }

    [TestCase(false)] [TestCase(true)]
    public void BetaZeroIgnoresWhatCHeld(bool panelB)
    {
        // beta = 0 over a C full of NaN: every slab after the first adds to what the first stored, edge tiles
        // included (M, N not multiples of the tile), and the padding between C's rows keeps its values
        int m = 70, n = panelB ? 64 : 45, k = 300, ldc = n + 3;
        var p = new GemmParams { Batch = 1, M = m, N = n, K = k, RsA = k, CsA = 1, RsB = n, CsB = 1, Ldc = ldc,
            Alpha = 0.5f, Beta = 0f, PanelB = panelB ? 1 : 0 };
        if (panelB && !B.PanelsFit(n)) Assert.Ignore("this backend has no panel layout");
        var a = Rand(m * k, 10);
        var b = Rand(k * n, 11);
        var c = new float[m * ldc];
        for (int i = 0; i < m; i++) for (int j = 0; j < ldc; j++) c[i * ldc + j] = j < n ? float.NaN : 7f;
        var got = Gemm(p, a, panelB ? Panels(b, 1, k, n) : b, c);
        var want = new double[c.Length];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < ldc; j++)
            {
                if (j >= n)
                {
                    want[i * ldc + j] = 7;
                    continue;
                }
                double s = 0;
                for (int kk = 0; kk < k; kk++) s += (double)a[i * k + kk] * b[kk * n + j];
                want[i * ldc + j] = 0.5 * s;
            }
        Check.Close(got, want, 1e-5 * Math.Sqrt(k) + 1e-6, 1e-4,
            $"gemm beta = 0 over NaN, panel B {panelB} [{backendName}]");
    }

    [Test]
    public void ZeroK()
    {
        var p = new GemmParams { Batch = 1, M = 9, N = 5, K = 0, RsA = 1, CsA = 1, RsB = 5, CsB = 1, Ldc = 5,
            Alpha = 1, Beta = 0.5f };
        Run(p, 1, 1, 45);
    }
}

/// The Vector256 microkernel (what machines without AVX-512 run) against the Vector512 one and a float64
/// loop, on the CPU GEMM directly: ragged M, N and K over several slabs, each operand layout, a panel-layout
/// B. Both kernels sum each C value's K products in the same order with FMAs, so C is bitwise the same.
public sealed unsafe class CpuGemmVector256Tests
{
    [TestCase(70, 45, 300, false, false, false)]
    [TestCase(70, 45, 300, true, false, false)]
    [TestCase(70, 45, 300, false, true, false)]
    [TestCase(133, 96, 520, false, false, true)]
    [TestCase(9, 1000, 64, false, false, false)]
    public void GivesTheVector512KernelsBits(int m, int n, int k, bool ta, bool tb, bool panel)
    {
        var a = TestData.Rand(m * k, 1);
        var b = TestData.Rand(k * n, 2);
        var c0 = TestData.Rand(m * n, 3);
        var bp = b;
        if (panel)
        {
            bp = new float[b.Length];
            for (int kk = 0; kk < k; kk++)
                for (int j = 0; j < n; j++) bp[CpuGemm.PanelIndex(kk, j, k, n)] = b[kk * n + j];
        }
        long rsA = ta ? 1 : k, csA = ta ? m : 1, rsB = tb ? 1 : n, csB = tb ? k : 1;
        float[] Run(bool v256)
        {
            var c = (float[])c0.Clone();
            bool was = CpuGemm.Vector256Only;
            CpuGemm.Vector256Only = v256;
            try
            {
                fixed (float* pa = a, pb = bp, pc = c)
                    if (panel) CpuGemm.SgemmBatch(1, m, n, k, 0.5f, pa, 0, rsA, csA, pb, 0, n, 1, 1f, pc, 0, n,
                        panelB: true);
                    else CpuGemm.Sgemm(m, n, k, 0.5f, pa, rsA, csA, pb, rsB, csB, 1f, pc, n);
            }
            finally { CpuGemm.Vector256Only = was; }
            return c;
        }
        var v256 = Run(true);
        Assert.That(v256, Is.EqualTo(Run(false)), "the Vector256 kernel gives the Vector512 kernel's bits");
        var want = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int kk = 0; kk < k; kk++) s += (double)a[i * rsA + kk * csA] * b[tb ? j * k + kk : kk * n + j];
                want[i * n + j] = 0.5 * s + c0[i * n + j];
            }
        Check.Close(v256, want, 1e-5 * Math.Sqrt(k) + 1e-6, 1e-4, $"vector256 gemm M={m} N={n} K={k}");
    }
}

/// Every CPU test case again in a child process with AVX-512 turned off (DOTNET_EnableAVX512=0), as on a
/// machine that has only AVX2: the Vector256 GEMM microkernel, the Vector256 C update and the software
/// Vector512 of the other kernels; and with AVX2 off too (DOTNET_EnableAVX2=0, AVX without FMA): the
/// kernel without FMA, no panel-layout weights, the scalar kernel bodies. The child is this assembly as a
/// program (DeviceRunner), which prints what the runtime reports.
public sealed class CpuWithoutAvx512Tests
{
    [TestCase("DOTNET_EnableAVX512")]
    [TestCase("DOTNET_EnableAVX2")]
    public void TheCpuCasesPassWithoutAvx512(string knob)
    {
        // what the child must report: no Vector512, and AVX2 where this process has it and the knob leaves it
        string reported = $"Vector512 hardware-accelerated: False, AVX2: "
            + $"{System.Runtime.Intrinsics.X86.Avx2.IsSupported && knob != "DOTNET_EnableAVX2"}";
        // as a program (DeviceRunner) this process is the host; under a test host (testhost.dll, or testhost.exe
        // on Windows) the dotnet muxer runs this assembly
        string self = typeof(DeviceRunner).Assembly.Location;
        bool asProgram = System.Reflection.Assembly.GetEntryAssembly() == typeof(DeviceRunner).Assembly;
        string host = asProgram ? Environment.ProcessPath! : Environment.GetEnvironmentVariable("DOTNET_HOST_PATH")
            ?? "dotnet";
        var psi = new System.Diagnostics.ProcessStartInfo(host) { RedirectStandardOutput = true,
            RedirectStandardError = true, UseShellExecute = false };
        // else the self-contained test program itself
        if (Path.GetFileNameWithoutExtension(host) == "dotnet") psi.ArgumentList.Add(self);
        // not this test: no recursion
        psi.ArgumentList.Add(@"\(""cpu""\)|CpuGemmVector256Tests");
        psi.Environment[knob] = "0";
        using var p = System.Diagnostics.Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        Assert.That(p.WaitForExit(TimeSpan.FromMinutes(5)), Is.True, "the child run took over 5 minutes");
        string failures = string.Join("\n",
            output.Split('\n').Where(l => l.Contains("FAIL") || l.StartsWith("        ")).Take(40));
        Assert.That(output, Does.Contain(reported), $"the child ran with {knob}=0\n" + output[..Math.Min(2000,
            output.Length)] + err.Result);
        var summary = System.Text.RegularExpressions.Regex.Match(output, @"(\d+) passed, (\d+) failed");
        Assert.That(summary.Success, Is.True, output + err.Result);
        Assert.That(int.Parse(summary.Groups[2].Value), Is.EqualTo(0), failures);
        Assert.That(int.Parse(summary.Groups[1].Value), Is.GreaterThan(100), "the child ran the CPU cases");
        Assert.That(p.ExitCode, Is.EqualTo(0));
    }
}

/// Every GPU GEMM variant (tile shape) on ILGPU's CPU emulator with 32-thread warps and 256-thread groups,
/// in every layout, at sizes that leave ragged tiles and K slabs: the suite's other emulator cases run the
/// 32x32 tiles only.
public sealed class GemmTileTests
{
    static IlgpuBackend emulator;

    [OneTimeSetUp]
    public void Start() => emulator = IlgpuBackend.CreateCpuEmulator(32, 8);

    [OneTimeTearDown]
    public void Stop() => emulator?.Dispose();

    [Test]
    public void EachTileShapeInEachLayout(
        [Values("32", "64", "128", "128k16")] string tile, [Values(false, true)] bool ta, [Values(false, true)] bool tb)
    {
        emulator.GemmTile = tile;
        var (p, la, lb, lc) = GemmTests.LayoutCase(ta, tb, 137, 150, 37);
        GemmTests.Run(emulator, $"ilgpu-cpu, {tile} tiles", p, la, lb, lc);
    }
}
