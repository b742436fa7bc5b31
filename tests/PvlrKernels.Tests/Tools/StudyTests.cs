// The efficiency study (Tools/Study.cs, pvlr study): its lengths, its counts on a tiny CO2-Net (the
// multiply-accumulates of a model whose every layer is per snippet grow by the same amount per step of
// T; Winograd runs fewer than the nominal direct convolutions) and the command's three files.
using NUnit.Framework;
using PvlrKernels.Engine;
using PvlrKernels.Methods;
using PvlrKernels.Methods.Co2Net;
using PvlrKernels.Tools;

namespace PvlrKernels.Tests;

public sealed class StudyTests
{
    [Test]
    public void LengthsRunFromTheFirstToTheLastInSteps()
    {
        Assert.That(Study.Lengths(200, 3000, 200), Has.Length.EqualTo(15));
        Assert.That(Study.Lengths(200, 3000, 200)[^1], Is.EqualTo(3000));
        Assert.That(Study.Lengths(5, 12, 4), Is.EqualTo(new[] { 5, 9 }));
        Assert.Throws<ArgumentException>(() => Study.Lengths(10, 5, 1));
        Assert.Throws<ArgumentException>(() => Study.Lengths(0, 5, 1));
    }

    [Test]
    public void CountsGrowWithTheVideoAsTheModelDoes()
    {
        var cfg = Co2NetConfig.Tiny();
        using var backend = new CpuBackend();
        var (rows, paramBytes) = Study.Run(backend, cfg, [16, 32, 48], 2);
        Assert.That(rows.Select(r => r.T), Is.EqualTo(new[] { 16, 32, 48 }));
        var nominal = rows.Select(r => r.NominalMacs).ToArray();
        Assert.That(nominal[1] - nominal[0], Is.EqualTo(nominal[2] - nominal[1]).And.GreaterThan(0),
            "every layer of CO2-Net is per snippet: the same MACs per 16 more snippets");
        Assert.That(rows.All(r => r.Macs > 0 && r.Macs < r.NominalMacs), "Winograd runs fewer than direct convs");
        Assert.That(rows.All(r => r.ActivationBytes > 0 && r.Fastest <= r.Seconds && r.Seconds <= r.Slowest));
        Assert.That(rows[2].ActivationBytes, Is.GreaterThan(rows[0].ActivationBytes));
        var model = MethodRegistry.Get("co2net").Build(cfg, Enumerable.Range(0, cfg.NumClasses).Select(i => $"c{i}")
            .ToArray());
        Assert.That(paramBytes, Is.EqualTo(model.Parameters.List.Sum(p => p.Size) * 4));
    }

    [Test]
    public void TheCommandWritesItsTableDataAndPlot()
    {
        var dir = Path.Combine(Path.GetTempPath(), "pvlr-study-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            var (rc, err, output) = TestData.RunCli("study", "--method", "co2net", "--preset", "tiny", "--lengths",
                "8:24:8", "--repeats", "1", "--device", "cpu", "--out", dir);
            Assert.That(rc, Is.EqualTo(0), err);
            Assert.That(output, Does.Contain("| T | ms (median)").And.Contain("| 24 |"));
            Assert.That(File.ReadAllLines(Path.Combine(dir, "study.csv")), Has.Length.EqualTo(4));
            Assert.That(new FileInfo(Path.Combine(dir, "study.png")).Length, Is.GreaterThan(1000));
            (rc, err, _) = TestData.RunCli("study", "--method", "co2net", "--preset", "tiny", "--lengths", "8:x:8",
                "--out", dir);
            Assert.That(rc, Is.Not.EqualTo(0));
            Assert.That(err, Does.StartWith("pvlr: error: --lengths 8:x:8"));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }
}
