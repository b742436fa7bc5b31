// The feature file read lazily (Npy.Load(path, lazy: true), WtalDataset.Load's `load`): `pvlr eval`
// reads each test video's features when its batch runs and never the training videos'. The values,
// the errors and the evaluation must be those of the eager load.
using PvlrKernels.Util;
using NUnit.Framework;
using PvlrKernels.Eval;
using PvlrKernels.Data;
using PvlrKernels.Model;
using PvlrKernels.Methods.Pvlr;
using PvlrKernels.Train;

namespace PvlrKernels.Tests;

public sealed class LazyFeaturesTests
{
    /// 24 demo videos at F = 16, a third of them rewritten to 1024 to 1875 snippets: those (from 64 KiB) are
    /// pickled as large payloads and stay in the file when read lazily; the others (at most 40 snippets)
    /// are read with the pickle.
    internal static string MixedDataDir => Root.Value;
    static readonly Lazy<string> Root = new(() =>
    {
        var root = Path.Combine(Path.GetTempPath(), "pvlr-lazy-demo-" + Environment.ProcessId);
        DemoData.Generate(root, new DemoOptions { FeatDim = 16, ClipDim = 8, MaxVideos = 24, MaxLength = 40 });
        var videos = Annotations.Load(Path.Combine(root, WtalDataset.AnnDir)).Videos;
        var r = new Random(11);
        var feats = videos.Select(v =>
        {
            int t = v.Index % 3 == 0 ? 1024 + 37 * v.Index : 1 + v.Index;
            return (new[] { t, 16 }, Enumerable.Range(0,
                t * 16).Select(_ => (float)(r.NextDouble() * 2 - 1)).ToArray());
        }).ToList();
        AtomicFile.Write(Path.Combine(root, WtalDataset.FeatFile), s => NumpyPickle.WriteObjectArrayOfFloat32(s,
            feats));
        return root;
    });

    static string Copy(string from = null)
    {
        from ??= MixedDataDir;
        var dir = Path.Combine(Path.GetTempPath(), "pvlr-lazy-" + Guid.NewGuid().ToString("N")[..8]);
        foreach (var f in Directory.GetFiles(from, "*", SearchOption.AllDirectories))
        {
            var to = Path.Combine(dir, Path.GetRelativePath(from, f));
            Directory.CreateDirectory(Path.GetDirectoryName(to)!);
            File.Copy(f, to);
        }
        return dir;
    }

    [Test]
    public void LazyVideosReadTheValuesOfTheEagerLoad()
    {
        var eager = WtalDataset.Load(MixedDataDir, clip: false);
        var lazy = WtalDataset.Load(MixedDataDir, clip: false, load: _ => false);
        var items = (object[])Npy.Load(Path.Combine(MixedDataDir, WtalDataset.FeatFile), lazy: true).Data;
        var nds = items.Cast<NpyArray>().ToArray();
        Assert.That(nds.Count(n => n.Lazy != null && n.Data == null), Is.GreaterThan(0),
            "some payloads stay in the file");
        Assert.That(nds.Count(n => n.Lazy == null && n.Data is float[]), Is.GreaterThan(0),
            "small payloads are read with the pickle");
        Assert.That(lazy.Ann.Videos.All(v => v.Features == null), Is.True);
        Assert.That(lazy.FeatureDim, Is.EqualTo(eager.FeatureDim));
        var buffer = new float[3 + eager.Ann.Videos.Max(v => v.T) * 16 + 5];
        for (int i = 0; i < eager.Ann.Videos.Count; i++)
        {
            var (e, l) = (eager.Ann.Videos[i], lazy.Ann.Videos[i]);
            Assert.That(l.T, Is.EqualTo(e.T), e.Name);
            Assert.That(l.ReadFeatures(), Is.EqualTo(e.Features), e.Name);
            Array.Fill(buffer, -7f);
            var got = l.ReadFeatures(buffer, 3);
            Assert.That(got.ToArray(), Is.EqualTo(e.Features), e.Name);
            Assert.That(buffer.AsSpan(3, e.Features.Length).ToArray(), Is.EqualTo(e.Features),
                $"{e.Name}: read into the buffer at its offset");
            Assert.That(buffer.Take(3).Concat(buffer.Skip(3 + e.Features.Length)).All(x => x == -7f), Is.True,
                $"{e.Name}: nothing outside its slice");
            Assert.That(e.ReadFeatures(buffer, 3).ToArray(), Is.EqualTo(e.Features),
                "a loaded video gives its own array");
        }
        // a partial load reads only the chosen videos
        var test = WtalDataset.Load(MixedDataDir, clip: false, load: v => v.Subset == "test");
        Assert.That(test.Ann.Videos.All(v => (v.Features != null) == (v.Subset == "test")), Is.True);
    }

    [Test]
    public void ALazyVideoIsCheckedWhenItIsRead()
    {
        var root = Copy();
        var ds = WtalDataset.Load(root, clip: false);
        var big = ds.Ann.Videos.First(v => v.T * 16 * 4 >= 1 << 16);
        var feats = ds.Ann.Videos.Select(x => (new[] { x.T, 16 }, x.Features)).ToList();
        feats[big.Index].Features[big.T * 16 - 3] = float.PositiveInfinity;
        var path = Path.Combine(root, WtalDataset.FeatFile);
        AtomicFile.Write(path, s => NumpyPickle.WriteObjectArrayOfFloat32(s, feats));
        Assert.That(Assert.Throws<DataFormatException>(() => WtalDataset.Load(root, clip: false)).Message,
            Does.Contain(big.Name).And.Contain("non-finite"));
        var lazy = WtalDataset.Load(root, clip: false, load: _ => false);             // not read yet: no error
        var v = lazy.Ann.Videos[big.Index];
        var e = Assert.Throws<DataFormatException>(() => v.ReadFeatures());
        Assert.That(e.Message,
            Does.Contain(path).And.Contain(big.Name).And.Contain("non-finite")
                .And.Contain($"element {big.T * 16 - 3}"));
        // the file cut short after it was indexed: the read names the file instead of returning short data
        using (var f = new FileStream(path, FileMode.Open)) f.SetLength(f.Length / 2);
        var last = lazy.Ann.Videos.Last(x => x.T * 16 * 4 >= 1 << 16);
        Assert.That(Assert.Throws<DataFormatException>(() => last.ReadFeatures()).Message,
            Does.Contain(path).And.Contain(last.Name).And.Contain("ends before"));
    }

    /// A non-finite value met during the evaluation (`pvlr eval` reads each batch then, on every core) is the
    /// reader's own error, naming the file and the first bad video of the batch, not an AggregateException
    /// of the parallel reads, which the CLI would not report as a data error.
    [Test]
    public void ANonFiniteValueMetDuringTheEvaluationIsNamed()
    {
        var root = Copy();
        var ds = WtalDataset.Load(root, clip: false);
        var cfg = PvlrConfig.Tiny();
        cfg.InferRows = 4000;
        var batch = Inference.Batches(ds.Test, cfg.InferRows).First(b => b.Count >= 3);
        var feats = ds.Ann.Videos.Select(x => (new[] { x.T, 16 }, x.Features)).ToList();
        foreach (var v in new[] { batch[2], batch[1] }) feats[v.Index].Features[v.T * 16 - 1] = float.NaN;
        var path = Path.Combine(root, WtalDataset.FeatFile);
        AtomicFile.Write(path, s => NumpyPickle.WriteObjectArrayOfFloat32(s, feats));
        var lazy = WtalDataset.Load(root, clip: false, load: _ => false);
        using var tr = new Trainer(cfg, WtalDataset.Load(TrainingTests.TinyDataDir), new Engine.CpuBackend(),
            TextWriter.Null);
        for (int rep = 0; rep < 3; rep++)
        {
            var e = Assert.Throws<DataFormatException>(() => Inference.Evaluate(tr.Model, tr.G, lazy.Ann, lazy.Test));
            Assert.That(e!.Message, Does.Contain($"{path}: video {batch[1].Name}:").And.Contain("non-finite"));
        }
    }

    /// The features and the CLIP files are read on every core; an error still names the first bad video
    /// in file order, as the one-by-one load did.
    [Test]
    public void ParallelLoadsNameTheFirstBadVideo()
    {
        var root = Copy(TrainingTests.TinyDataDir);
        var ds = WtalDataset.Load(root);
        var feats = ds.Ann.Videos.Select(x => (new[] { x.T, 16 }, x.Features)).ToList();
        foreach (int i in new[] { 20, 2, 13 }) feats[i].Features[1] = float.NaN;
        AtomicFile.Write(Path.Combine(root, WtalDataset.FeatFile), s => NumpyPickle.WriteObjectArrayOfFloat32(s,
            feats));
        for (int rep = 0; rep < 5; rep++)
            Assert.That(Assert.Throws<DataFormatException>(() => WtalDataset.Load(root)).Message,
                Does.Contain(ds.Ann.Videos[2].Name + ":"));
        foreach (int i in new[] { 20, 2, 13 }) feats[i].Features[1] = 0f;
        AtomicFile.Write(Path.Combine(root, WtalDataset.FeatFile), s => NumpyPickle.WriteObjectArrayOfFloat32(s,
            feats));
        var clips = ds.Ann.Videos.Where(v => v.Clip != null).ToList();
        foreach (int i in new[] { 9, 3, 7 })
            File.WriteAllBytes(Path.Combine(root, "Thumos14_CLIP", clips[i].Subset == "validation" ? "train" : "test",
                clips[i].Name + ".npy"), new byte[] { 1, 2, 3 });
        for (int rep = 0; rep < 5; rep++)
            Assert.That(Assert.Throws<DataFormatException>(() => WtalDataset.Load(root)).Message,
                Does.Contain(clips[3].Name + ".npy"));
        Assert.That(WtalDataset.Load(root, clip: false).Ann.Videos.All(v => v.Features != null), Is.True,
            "without CLIP the load succeeds");
    }

    [Test]
    public void NonFiniteValuesAreFoundAtEveryPosition()
    {
        foreach (var n in new[] { 1, 7, 16, 33, 100 })
            for (int at = 0; at < n; at++)
                foreach (var bad in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity })
                {
                    var a = Enumerable.Range(0, n).Select(i => i % 3 == 0 ? -0f : (float)(-3e38 * i / n)).ToArray();
                    Assert.DoesNotThrow(() => WtalDataset.CheckFinite(a, "x"));
                    a[at] = bad;
                    var e = Assert.Throws<DataFormatException>(() => WtalDataset.CheckFinite(a, "x"));
                    Assert.That(e.Message, Does.Contain($"element {at}"), $"n {n}, {bad} at {at}");
                }
    }
}
