// The classification scores CO2-Net's and PVLR's test loops give the classification mAP (CO2-Net
// test.py:69, PVLR eval/inference.py:72): softmax over C+1 of the mean of the top ceil(T/8) raw CAS values.
using NUnit.Framework;
using PvlrKernels.Methods;

namespace PvlrKernels.Tests;

public sealed class MilLossesTests
{
    [TestCase(1)] [TestCase(8)] [TestCase(9)] [TestCase(17)] [TestCase(300)]
    public void ClassificationScoresAreTheTestLoopsSoftmaxOfTheTopEighth(int t)
    {
        const int c1 = 6;
        var r = new Random(t);
        var cas = Enumerable.Range(0, t * c1).Select(_ => (float)(r.NextDouble() * 8 - 4)).ToArray();
        int k = (int)Math.Ceiling(t / 8.0);
        var mean = Enumerable.Range(0, c1).Select(c => Enumerable.Range(0,
            t).Select(i => (double)cas[i * c1 + c]).OrderDescending().Take(k).Average()).ToArray();
        double z = mean.Sum(v => Math.Exp(v - mean.Max()));
        var want = mean.Take(c1 - 1).Select(v => Math.Exp(v - mean.Max()) / z).ToArray();
        Check.Close(MilLosses.ClassificationScores(cas, t, c1), want, 1e-6, 1e-5, $"T={t}");
    }
}
