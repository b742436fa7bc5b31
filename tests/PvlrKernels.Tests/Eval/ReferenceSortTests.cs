// The two unstable sorts the original's results depend on (Util/ReferenceSorts.cs) against what numpy 1.24
// and CPU torch 1.13 returned on tie-heavy rows (Fixtures/sort, from tests/reference/make_sort_fixtures.py),
// and live against a fresh draw where Debian's python3 with numpy and torch is installed.
using NUnit.Framework;
using PvlrKernels.Data;
using PvlrKernels.Util;

namespace PvlrKernels.Tests;

public sealed class ReferenceSortTests
{
    static string Committed => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "sort");

    static void CheckRows(string dir, string lib, string dtype)
    {
        var lengths = Npy.Load(Path.Combine(dir, "lengths.npy")).AsDouble();
        var keys = Npy.Load(Path.Combine(dir, $"keys_{dtype}.npy"));
        var want = Npy.Load(Path.Combine(dir, $"{lib}_{dtype}.npy")).AsDouble();
        double[] k64 = dtype == "float64" ? keys.AsDouble() : null;
        float[] k32 = dtype == "float32" ? keys.AsFloat() : null;
        int at = 0, tiedRows = 0;
        for (int r = 0; r < lengths.Length; r++)
        {
            int n = (int)lengths[r];
            int[] got = (lib, dtype) switch
            {
                ("numpy", "float64") => NumpySort.Argsort<double>(k64.AsSpan(at, n)),
                ("numpy", _) => NumpySort.Argsort<float>(k32.AsSpan(at, n)),
                ("heap", "float64") => NumpySort.ArgsortHeap<double>(k64.AsSpan(at, n)),
                ("heap", _) => NumpySort.ArgsortHeap<float>(k32.AsSpan(at, n)),
                ("torch", "float64") => TorchSort.DescendingOrder<double>(k64.AsSpan(at, n)),
                _ => TorchSort.DescendingOrder<float>(k32.AsSpan(at, n)),
            };
            for (int i = 0; i < n; i++)
                Assert.That(got[i], Is.EqualTo((int)want[at + i]), $"{lib} {dtype} row {r} (length {n}) position {i}");
            if (n > 16) tiedRows++;
            at += n;
        }
        Assert.That(at, Is.EqualTo(want.Length));
        Assert.That(tiedRows, Is.GreaterThan(10), "the fixture must hold rows where the order is not the stable one");
    }

    [TestCase("numpy", "float64")]
    [TestCase("numpy", "float32")]
    [TestCase("heap", "float64")]
    [TestCase("heap", "float32")]
    [TestCase("torch", "float64")]
    [TestCase("torch", "float32")]
    public void OrdersEqualTheCommittedReference(string lib, string dtype) => CheckRows(Committed, lib, dtype);

    [Test]
    public void OrdersEqualTheLiveReferenceWhereTorchIsInstalled()
    {
        ReferencePython.WithFixture("make_sort_fixtures.py", "--seed 12345 --rows 60", tmp =>
        {
            foreach (var lib in new[] { "numpy", "heap", "torch" })
                foreach (var dtype in new[] { "float64", "float32" }) CheckRows(tmp, lib, dtype);
        });
    }

    /// The fact the mining depends on: 32 equal scores, torch 1.13's CPU sort puts index 16 first, then 31, 30.
    [Test]
    public void ThirtyTwoZerosComeOutAsTorchOrdersThem()
    {
        var order = TorchSort.DescendingOrder<float>(new float[32]);
        Assert.That(order.Take(3), Is.EqualTo(new[] { 16, 31, 30 }));
        Assert.That(order.Order(), Is.EqualTo(Enumerable.Range(0, 32)), "a permutation");
    }

    /// numpy: NaN sorts last, so argsort()[::-1] walks it first; short rows (<= 16) are insertion-sorted,
    /// which keeps equal keys in input order, and the reversal walks them from the last.
    [Test]
    public void NumpyPutsNanLastAndReversesShortTies()
    {
        Assert.That(NumpySort.ArgsortReversed<double>(new[] { 0.5, double.NaN, 0.5, 0.2 }), Is.EqualTo(new[] { 1, 2,
            0, 3 }));
        Assert.That(NumpySort.Argsort<double>(Array.Empty<double>()), Is.Empty);
    }
}
