// The W-TALC ActivityNet1.2 pack (CO2-Net wsad_dataset.py:219-290): the ActivityNet-shaped demo set reads
// as that pack (its subsets as training and test, the feature file in its own folder or beside the
// annotations), is scored as CO2-Net's test.py scores it (the 'validation' subset, tIoU literals 0.5 ..
// 0.95), and trains with the ActivityNet rule for the best checkpoint (mean of mAP@0.5:0.95).
using System.Globalization;
using System.Text;
using System.Text.Json;
using NUnit.Framework;
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Eval;
using PvlrKernels.Methods.Co2Net;
using PvlrKernels.Train;

namespace PvlrKernels.Tests;

public sealed class ActivityNetPackTests
{
    static string root;
    static readonly DemoOptions Options = new()
    {
        Benchmark = WtalcPack.ActivityNet12, Videos = 45, Classes = 6, FeatDim = 16, ClipDim = 8, Seed = 3,
    };

    [OneTimeSetUp]
    public void Generate()
    {
        root = Path.Combine(Path.GetTempPath(), "pvlr-anet-" + Guid.NewGuid().ToString("N")[..8]);
        DemoData.Generate(root, Options);
    }

    [OneTimeTearDown]
    public void Remove()
    {
        if (Directory.Exists(root)) Directory.Delete(root, true);
    }

    [Test]
    public void TheDemoReadsAsTheActivityNetPack()
    {
        var ds = WtalDataset.Load(root, clip: false);
        Assert.That(ds.Pack, Is.SameAs(WtalcPack.ActivityNet12));
        Assert.That(ds.Ann.Classes, Has.Length.EqualTo(6));
        Assert.That((ds.Train.Count, ds.Test.Count), Is.EqualTo((30, 15)));
        Assert.That(ds.Train.All(v => v.Subset == "training") && ds.Test.All(v => v.Subset == "validation"));
        Assert.That(ds.Ann.Videos.All(v => v.T is >= 23 and <= 118 && v.Segments.Length is >= 1 and <= 3
            && v.Labels.Length == 1), "ActivityNet's shape: short videos, one class in one to three instances");
        Assert.That(ds.Train.Concat(ds.Test).Select(v => v.Labels[0]).Distinct().Count(), Is.EqualTo(6));

        // CO2-Net's path: the feature file beside the annotation folder, not in a folder of its own
        var flat = Path.Combine(Path.GetTempPath(), "pvlr-anet-flat-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            var ann = Path.Combine(flat, WtalcPack.ActivityNet12.AnnDir);
            Directory.CreateDirectory(ann);
            foreach (var f in Directory.GetFiles(Path.Combine(root, WtalcPack.ActivityNet12.AnnDir)))
                File.Copy(f, Path.Combine(ann, Path.GetFileName(f)));
            File.Copy(WtalcPack.ActivityNet12.FeatFile(root),
                Path.Combine(flat, "ActivityNet1.2-I3D-JOINTFeatures.npy"));
            var again = WtalDataset.Load(flat, clip: false);
            Assert.That(again.Ann.Videos.Select(v => v.ReadFeatures()).SelectMany(x => x),
                Is.EqualTo(ds.Ann.Videos.Select(v => v.ReadFeatures()).SelectMany(x => x)));
        }
        finally { Directory.Delete(flat, true); }
    }

    /// Detections over the validation videos: jittered copies of the GT (some exactly at tIoU 0.9, which
    /// CO2-Net's literal 0.90 counts and ActivityNet's linspace 0.8999999999999999 would not tell apart),
    /// wrong classes, random segments, tied scores, and training videos (no GT in the scored subset).
    static string Predictions(WtalDataset ds, string dir)
    {
        var r = new Random(8);
        var sb = new StringBuilder("video-id,t-start,t-end,label,score\n");
        void Row(string v, double s, double e, int c, double score) => sb.Append(string.Create(
            CultureInfo.InvariantCulture, $"{v},{s},{e},{c},{score}\n"));
        foreach (var v in ds.Test)
            foreach (var (s, e, l) in v.Segments)
            {
                double gs = Math.Round(s * 25 / 16, MidpointRounding.ToEven), ge = Math.Round(e * 25 / 16,
                    MidpointRounding.ToEven);
                int c = ds.Ann.ClassIndex(l);
                Row(v.Name, gs, ge, c, Math.Round(r.NextDouble(), 2));
                if (ge - gs >= 10) Row(v.Name, gs, gs + (ge - gs) * 9 / 10, c, Math.Round(r.NextDouble(), 2));
                for (int k = 0; k < 3; k++)
                {
                    double j = (ge - gs) * 0.3;
                    Row(v.Name, gs + j * (r.NextDouble() * 2 - 1), ge + j * (r.NextDouble() * 2 - 1),
                        r.NextDouble() < 0.15 ? r.Next(6) : c, Math.Round(r.NextDouble(), 2));
                }
            }
        foreach (var v in ds.Train.Take(5)) Row(v.Name, 2, 20, r.Next(6), 0.5);
        var path = Path.Combine(dir, "predictions.csv");
        File.WriteAllText(path, sb.ToString());
        return path;
    }

    [Test]
    public void ScoringMatchesTheReferenceAtCo2NetsThresholds()
    {
        var ds = WtalDataset.Load(root, clip: false);
        var csv = Predictions(ds, root);
        var ann = Path.Combine(root, WtalcPack.ActivityNet12.AnnDir);
        var (rc, err, ours) = TestData.RunCli("score", "--annotations", ann, "--predictions", csv, "--json");
        Assert.That(rc, Is.EqualTo(0), err);
        var (prc, so, se) = ReferencePython.Run($"\"{ReferencePython.RepoPath("tests", "reference",
            "eval_ref.py")}\" --annotations \"{ann}\" --predictions \"{csv}\" --activitynet");
        Assert.That(prc, Is.EqualTo(0), so + se);
        using var a = JsonDocument.Parse(ours);
        using var b = JsonDocument.Parse(so);
        var m = a.RootElement.GetProperty("map");
        var rm = b.RootElement.GetProperty("map");
        Assert.That(m.EnumerateObject().Select(p => p.Name), Is.EqualTo(rm.EnumerateObject().Select(p => p.Name)));
        foreach (var p in rm.EnumerateObject())
            Assert.That(m.GetProperty(p.Name).GetDouble(), Is.EqualTo(p.Value.GetDouble()).Within(1e-9),
                $"mAP@{p.Name}");
        Assert.That(rm.GetProperty("0.90").GetDouble(), Is.GreaterThan(rm.GetProperty("0.95").GetDouble()),
            "hits at exactly 0.9");
        Assert.That(a.RootElement.GetProperty("avg_0.5_0.95").GetDouble(),
            Is.EqualTo(b.RootElement.GetProperty("avg_0.5_0.95").GetDouble()).Within(1e-9));
        var (wrc, werr, _) = TestData.RunCli("score", "--annotations", ann, "--predictions", csv, "--ap", "wtalc");
        Assert.That((wrc, werr), Is.Not.EqualTo((0, "")));
        Assert.That(werr, Does.StartWith("pvlr: error: --ap wtalc").And.Contain("ActivityNet1.2"));
    }

    [Test]
    public void TrainingEvaluatesAndKeepsTheBestByActivityNetsMean()
    {
        var ds = WtalDataset.Load(root, clip: false);
        var cfg = Co2NetConfig.Tiny();
        cfg.NumClasses = ds.Ann.Classes.Length;
        cfg.MaxIter = 3;
        cfg.Interval = 2;
        cfg.WarmupIter = 0;
        var outDir = Path.Combine(root, "run");
        using var backend = new CpuBackend();
        using var tr = new Trainer(cfg, ds, backend, TextWriter.Null);
        var r = tr.Run(outDir, cfg.MaxIter);
        Assert.That(r.Thresholds, Is.EqualTo(WtalcPack.ActivityNet12.Thresholds));
        Assert.That(r.Headline.name, Is.EqualTo("AVG mAP@0.5:0.95"));
        Assert.That(r.Table(), Does.StartWith("| mAP@0.5 | mAP@0.75 | mAP@0.95 | AVG(0.5:0.95) |"));
        var best = JsonSerializer.Deserialize<Dictionary<string, double>>(File.ReadAllText(Path.Combine(outDir,
            "best.json")));
        Assert.That(best.Keys, Is.EquivalentTo(new[] { "best_avg_map_0.5_0.95", "best_step" }));
        Assert.That(best["best_avg_map_0.5_0.95"], Is.EqualTo(tr.BestSum));
        Assert.That(File.ReadAllText(Path.Combine(outDir, "Performance.txt")), Does.Contain("AVG(0.5:0.95)"));
    }

    /// AntSampleDataset.filter (CO2-Net wsad_dataset.py:264-281): videos of at most ShortVideo snippets are
    /// never drawn for training and not run at test, while ANETdetection still scores their ground truth.
    [Test]
    public void ShortVideosAreNeitherDrawnNorRunButTheirGroundTruthCounts()
    {
        var ds = WtalDataset.Load(root, clip: false);
        int cut = ds.Train.Select(v => v.T).Order().ElementAt(10);
        var sampler = new BatchSampler(ds, 1, cut);
        var drawn = Enumerable.Range(0, 40).SelectMany(s => sampler.Pick(sampler.ForStep(s), 10)).ToList();
        Assert.That(drawn.Min(v => v.T), Is.GreaterThan(cut));
        Assert.That(drawn.Select(v => v.Name).Distinct().Count(), Is.GreaterThan(10));
        int testCut = ds.Test.Select(v => v.T).Order().ElementAt(4);
        var (run, scored) = Inference.Scored(ds.Test, Methods.EvaluationProtocol.Snippets, testCut);
        Assert.That(run.Select(v => v.Name), Is.EquivalentTo(ds.Test.Where(v => v.T > testCut).Select(v => v.Name)));
        Assert.That(scored, Is.EquivalentTo(ds.Test.Select(v => v.Name)));
        Assert.That(Co2NetConfig.ActivityNet().ShortVideo, Is.EqualTo(10));
    }

    /// PVLR's ActivityNet 1.3 (src/anet/wsad_dataset.py): subsets 'train' and 'val', per-video features in
    /// {train,test}/, the CLIP features in one folder; features left on disk until a video needs them.
    [Test]
    public void TheActivityNet13LayoutReadsPerVideoFiles()
    {
        var dir = Path.Combine(Path.GetTempPath(), "pvlr-anet13-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            DemoData.Generate(dir, new DemoOptions
            {
                Benchmark = WtalcPack.ActivityNet13, Videos = 30, Classes = 4, FeatDim = 8, ClipDim = 4, Seed = 9,
            });
            var ds = WtalDataset.Load(dir, load: v => v.IsTest);
            Assert.That(ds.Pack, Is.SameAs(WtalcPack.ActivityNet13));
            Assert.That((ds.Train.Count, ds.Test.Count), Is.EqualTo((20, 10)));
            Assert.That(ds.Train.All(v => v.Subset == "train") && ds.Test.All(v => v.Subset == "val"));
            Assert.That(ds.Train.All(v => v.Features == null) && ds.Test.All(v => v.Features != null),
                "only the videos asked for are read now");
            var v0 = ds.Train[0];
            Assert.That(v0.ReadFeatures(),
                Is.EqualTo(Npy.Load(Path.Combine(dir, "train", v0.Name + ".npy")).AsFloat()));
            Assert.That(ds.Train.Concat(ds.Test).All(v => v.Clip != null && v.ClipT == v.T), "the flat Anet_CLIP");
            File.Delete(Path.Combine(dir, "test", ds.Test[3].Name + ".npy"));
            var e = Assert.Throws<FileNotFoundException>(() => WtalDataset.Load(dir, clip: false));
            Assert.That(e!.Message, Does.Contain(ds.Test[3].Name).And.Contain("test video"));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }

    [Test]
    public void GenDemoNamesABadBenchmarkAndClassesOnThumos()
    {
        var (rc, err, _) = TestData.RunCli("gen-demo", "--benchmark", "anet", "--out", Path.Combine(root, "x"));
        Assert.That(rc, Is.Not.EqualTo(0));
        Assert.That(err, Does.StartWith("pvlr: error: --benchmark anet"));
        (rc, err, _) = TestData.RunCli("gen-demo", "--classes", "5", "--out", Path.Combine(root, "y"));
        Assert.That(rc, Is.Not.EqualTo(0));
        Assert.That(err, Does.StartWith("pvlr: error: --classes"));
    }
}
