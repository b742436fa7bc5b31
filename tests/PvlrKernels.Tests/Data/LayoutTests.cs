// The BaS / UM and ACM-Net / FTCL layouts of THUMOS14 (gt.json + split lists + per-video features) load
// as the same dataset as the W-TALC pack they are written from: videos, splits, labels, segments and
// features, the RGB and flow halves of the UM layout concatenated in that order; a video's labels are its
// segments' (the originals' label vectors come from gt.json's annotations).
using System.Text.Json;
using NUnit.Framework;
using PvlrKernels.Data;

namespace PvlrKernels.Tests;

public sealed class LayoutTests
{
    /// The tiny demo set rewritten in the `um` or `acm` layout under a fresh directory; the test subset
    /// loses its first video (as UM's split drops three).
    static string Write(WtalDataset src, string layout)
    {
        var root = Path.Combine(Path.GetTempPath(), $"pvlr-layout-{layout}-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(root);
        var db = new Dictionary<string, object>();
        var test = src.Test.Skip(1).ToList();
        foreach (var v in src.Train.Concat(test))
        {
            db[v.Name] = new { subset = v.Subset == "validation" ? "validation" : "test", duration = v.Duration,
                annotations = v.Segments.Select(s => new { segment = new[] { s.start, s.end }, label = s.label }) };
            string dir = v.Subset == "validation" ? "train" : "test";
            int f = src.FeatureDim, h = f / 2;
            if (layout == "acm")
            {
                Directory.CreateDirectory(Path.Combine(root, dir));
                Npy.Save(Path.Combine(root, dir, v.Name + ".npy"), v.Features, v.T, f);
                continue;
            }
            foreach (var (part, from) in new[] { ("rgb", 0), ("flow", h) })
            {
                var half = new float[v.T * h];
                for (int k = 0; k < v.T; k++) Array.Copy(v.Features, k * f + from, half, k * h, h);
                Directory.CreateDirectory(Path.Combine(root, "features", dir, part));
                Npy.Save(Path.Combine(root, "features", dir, part, v.Name + ".npy"), half, v.T, h);
            }
        }
        File.WriteAllText(Path.Combine(root, "gt.json"), JsonSerializer.Serialize(new { database = db }));
        File.WriteAllLines(Path.Combine(root, "split_train.txt"), src.Train.Select(v => v.Name));
        File.WriteAllLines(Path.Combine(root, "split_test.txt"), test.Select(v => v.Name));
        return root;
    }

    [TestCase("um")] [TestCase("acm")]
    public void TheSeedMethodsLayoutsLoadAsTheWtalcPack(string layout)
    {
        var src = WtalDataset.Load(TrainingTests.TinyDataDir);
        var root = Write(src, layout);
        try
        {
            var ds = WtalDataset.Load(root);
            Assert.That(ds.FeatureDim, Is.EqualTo(src.FeatureDim));
            Assert.That(ds.Ann.Classes,
                Is.EqualTo(src.Ann.Classes.Where(c => ds.Ann.Videos.Any(v => v.Labels.Contains(c)))));
            Assert.That(ds.Train.Select(v => v.Name), Is.EqualTo(src.Train.Select(v => v.Name)));
            Assert.That(ds.Test.Select(v => v.Name), Is.EqualTo(src.Test.Skip(1).Select(v => v.Name)));
            foreach (var (a, b) in ds.Train.Concat(ds.Test).Zip(src.Train.Concat(src.Test.Skip(1))))
            {
                Assert.That(a.Features, Is.EqualTo(b.Features), a.Name);
                // the video's labels are those of its segments (gt.json has no video-level list)
                Assert.That((a.T, a.Duration, a.Labels.Order().ToArray()), Is.EqualTo((b.T, b.Duration,
                    b.Segments.Select(x => x.label).Distinct().Order().ToArray())), a.Name);
                Assert.That(a.Segments, Is.EqualTo(b.Segments), a.Name);
            }
        }
        finally { Directory.Delete(root, true); }
    }

    [Test]
    public void AVideoOfTheSplitListMissingFromGtJsonIsNamed()
    {
        var src = WtalDataset.Load(TrainingTests.TinyDataDir);
        var root = Write(src, "acm");
        try
        {
            File.AppendAllLines(Path.Combine(root, "split_test.txt"), ["video_test_9999999"]);
            var e = Assert.Throws<DataFormatException>(() => WtalDataset.Load(root));
            Assert.That(e.Message, Does.Contain("gt.json").And.Contain("video_test_9999999"));
            var (rc, err, _) = TestData.RunCli("eval", "--method", "acmnet", "--checkpoint",
                Path.Combine(root, "none.pth"), "--data", root);
            Assert.That(rc, Is.Not.EqualTo(0));
            Assert.That(err, Does.StartWith("pvlr: error:"));
        }
        finally { Directory.Delete(root, true); }
    }
}
