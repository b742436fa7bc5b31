// UM on the engine: one training step replayed from our PyTorch restatement (benchmarks/reference/um_ref.py,
// float64) with every loss term and gradient within 1e-4 + 1e-3 |ref| and the selection's picks equal to
// torch's sort; the test-time post-processing equal to a restatement of test.py; the original's
// state_dicts loaded; training on the tiny demo data through the shared loop.
using System.Text.Json;
using NUnit.Framework;
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Eval;
using PvlrKernels.Methods;
using PvlrKernels.Methods.Um;
using PvlrKernels.Train;

namespace PvlrKernels.Tests;

[TestFixtureSource(typeof(Backends), nameof(Backends.All))]
public sealed class UmTests(string backend)
{
    static string Fixture => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "um_replay");
    static string PostDir => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "um_post");
    static IMethod Um => MethodRegistry.Get("um");

    [Test]
    public void ReplayReproducesTheRestatedStep() => MethodChecks.ReplaysTheCommittedDump(Um, "um_replay", backend,
        "act", "bkg");

    [Test]
    public void ReplayMatchesALiveDumpWhenTorchIsInstalled() =>
        MethodChecks.ReplaysALiveDump(Um, backend, 23, "act", "bkg");

    static void AssertPostProcessingMatches(string dir)
    {
        var cfg = (UmConfig)Um.Preset("paper");
        PostFixture.AssertMatches(dir, "mag", (i, cas, mag, t) => UmProposals.Generate(cfg, $"v{i}", cas, mag, t));
    }

    /// The committed fixture (videos of 19 to 120 sampled snippets, some of longer videos), and a fresh
    /// one where python3 with torch and scipy is installed.
    [Test]
    public void PostProcessingEqualsTheRestatementOfTestPy()
    {
        if (backend != "cpu") Assert.Ignore("host-side post-processing");
        AssertPostProcessingMatches(PostDir);
        ReferencePython.WithFixture("make_um_post_fixture.py", "--seed 7", AssertPostProcessingMatches);
    }

    [Test]
    public void TheOriginalsStateDictLoads()
    {
        if (backend != "cpu") Assert.Ignore("host-side loading");
        ReferencePython.WithFixture("make_state_dict_pth.py", $"\"{Fixture}\"", dir =>
        {
            using var b = new CpuBackend();
            var model = (UmModel)Checkpoint.LoadTorch(Path.Combine(dir, "model.pth"), b, out _, method: Um);
            using (model.P)
            {
                Assert.That((model.Cfg.FeatDim, model.Cfg.Hidden), Is.EqualTo((32, 24)));
                foreach (var p in model.P.List)
                    Assert.That(model.P.Get(p.Name), Is.EqualTo(Npy.Load(Path.Combine(Fixture, "weights",
                        p.Name + ".npy")).AsFloat()), p.Name);
            }
        });
    }

    [Test]
    public void TrainsOnTheTinyDemoAndEvaluatesInSeconds() =>
        MethodChecks.TrainsOnTheTinyDemo<UmConfig>(Um, backend, (tr, dir) =>
    {
        Assert.That(tr.Model.Evaluation.Excluded, Does.Contain("video_test_0000270"));
        using var b = new CpuBackend();
        var (model, step, _) = Checkpoint.Load(Path.Combine(dir, "last.safetensors"), b);
        using (model.Parameters)
        {
            Assert.That((model is UmModel, step), Is.EqualTo((true, 30)));
            // pvlr infer writes UM's detections, already in seconds, as seconds
            var video = WtalDataset.Load(TrainingTests.TinyDataDir).Test.First(v => v.T > 20);
            var feats = video.ReadFeatures();
            var npy = Path.Combine(dir, "v.npy");
            Npy.Save(npy, feats, video.T, tr.Cfg.FeatDim);
            var (rc, err, _) = TestData.RunCli("infer", "--checkpoint", Path.Combine(dir, "last.safetensors"),
                "--features", npy, "--out", Path.Combine(dir, "d.json"), "--device", "cpu");
            Assert.That(rc, Is.EqualTo(0), err);
            using var g = new Graph(b, model.Parameters);
            var (dets, _) = Inference.LocalizeVideo(model, g, "v", feats, video.T, null);
            Assert.That(dets, Is.Not.Empty);
            using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "d.json")));
            var segment = doc.RootElement.GetProperty("results").GetProperty("v")[0].GetProperty("segment");
            Assert.That((segment[0].GetDouble(), segment[1].GetDouble()), Is.EqualTo((dets[0].Start, dets[0].End)),
                "seconds written as seconds");
        }
    });

    /// UM's batches (DataLoader(shuffle=True)): each epoch visits every training video once, in batches of
    /// 16 and a smaller last one, in an order fixed by the seed and the epoch; the trainer runs the small one.
    [Test]
    public void BatchesAreShuffledEpochs()
    {
        if (backend != "cpu") Assert.Ignore("host-side sampling");
        var ds = WtalDataset.Load(TrainingTests.TinyDataDir);
        var sampler = new BatchSampler(ds, 0);
        int n = ds.Train.Count, b = 16, t = 8, perEpoch = (n + b - 1) / b;
        var feats = new float[b * t * ds.FeatureDim];
        var labels = new float[b * ds.Ann.Classes.Length];
        List<string> Epoch(int e) => Enumerable.Range(e * perEpoch, perEpoch).SelectMany(s => sampler.SampleEpoch(s,
            b, t, feats, null, labels).Select(v => v.Name)).ToList();
        var first = Epoch(0);
        Assert.That(first, Is.EquivalentTo(ds.Train.Select(v => v.Name)), "one pass over the training videos");
        Assert.That(sampler.SampleEpoch(perEpoch - 1, b, t, feats, null, labels),
            Has.Count.EqualTo(n - (perEpoch - 1) * b));
        Assert.That(Epoch(1), Is.Not.EqualTo(first), "another order next epoch");
        Assert.That(Epoch(0), Is.EqualTo(first), "the same order for the same epoch");
        var cfg = (UmConfig)Um.Preset("tiny");
        cfg.BatchSize = b;
        using var tr = new Trainer(cfg, ds, new CpuBackend(), TextWriter.Null) { Step = perEpoch - 1 };
        Assert.That(float.IsFinite(tr.TrainStep()["total"]), "the epoch's last, smaller batch trains");
    }
}

/// Compares a method's post-processing with a fixture written by tests/reference/make_*_post_fixture.py:
/// per video cas<v>.npy, <second><v>.npy and expected.json (detections in order, and the class scores).
public static class PostFixture
{
    public static void AssertMatches(string dir, string second,
        Func<int, float[], float[], int, (List<Detection> dets, float[] scores)> generate)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "expected.json")));
        foreach (var v in doc.RootElement.EnumerateArray())
        {
            int i = v.GetProperty("video").GetInt32(), t = v.GetProperty("t").GetInt32();
            var (dets, scores) = generate(i, Npy.Load(Path.Combine(dir, $"cas{i}.npy")).AsFloat(),
                Npy.Load(Path.Combine(dir, $"{second}{i}.npy")).AsFloat(), t);
            Check.Close(scores, v.GetProperty("scores").EnumerateArray().Select(x => x.GetDouble()).ToArray(), 1e-7,
                1e-6, $"video {i} scores");
            var want = v.GetProperty("detections").EnumerateArray().Select(d =>
                (label: d.GetProperty("label").GetInt32(), score: d.GetProperty("score").GetDouble(),
                start: d.GetProperty("start").GetDouble(), end: d.GetProperty("end").GetDouble())).ToList();
            Assert.That(dets, Has.Count.EqualTo(want.Count), $"video {i}: detections");
            for (int k = 0; k < want.Count; k++)
            {
                Assert.That(dets[k].Label, Is.EqualTo(want[k].label), $"video {i} detection {k}");
                Assert.That(dets[k].Start, Is.EqualTo(want[k].start).Within(1e-9), $"video {i} detection {k} start");
                Assert.That(dets[k].End, Is.EqualTo(want[k].end).Within(1e-9), $"video {i} detection {k} end");
                Assert.That(dets[k].Score, Is.EqualTo(want[k].score).Within(1e-5), $"video {i} detection {k} score");
            }
        }
    }
}
