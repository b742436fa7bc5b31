// ACM-Net on the engine: one training step replayed from our PyTorch restatement
// (benchmarks/reference/acmnet_ref.py, float64) with every loss term and gradient within 1e-4 + 1e-3 |ref|
// and the feature-anchor picks equal to torch's sort; the test-time post-processing equal to a
// restatement of main_thu.py; the original's state_dicts loaded; ACM-Net's sampling; training on the
// tiny demo data.
using NUnit.Framework;
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Methods;
using PvlrKernels.Methods.AcmNet;
using PvlrKernels.Train;

namespace PvlrKernels.Tests;

[TestFixtureSource(typeof(Backends), nameof(Backends.All))]
public sealed class AcmNetTests(string backend)
{
    static string Fixture => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "acmnet_replay");
    static string PostDir => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "acm_post");
    static IMethod Acm => MethodRegistry.Get("acmnet");

    [Test]
    public void ReplayReproducesTheRestatedStep() => MethodChecks.ReplaysTheCommittedDump(Acm, "acmnet_replay", backend,
        "inst", "cont", "back");

    [Test]
    public void ReplayMatchesALiveDumpWhenTorchIsInstalled() =>
        MethodChecks.ReplaysALiveDump(Acm, backend, 29, "inst", "cont", "back");

    [Test]
    public void PostProcessingEqualsTheRestatementOfMainThu()
    {
        if (backend != "cpu") Assert.Ignore("host-side post-processing");
        var cfg = (AcmNetConfig)Acm.Preset("paper");
        void Check(string dir) => PostFixture.AssertMatches(dir, "att", (i, cas, att,
            t) => AcmNetProposals.Generate(cfg, $"v{i}", cas, att, t));
        Check(PostDir);
        ReferencePython.WithFixture("make_acm_post_fixture.py", "--seed 9", Check);
    }

    [Test]
    public void TheOriginalsStateDictLoads()
    {
        if (backend != "cpu") Assert.Ignore("host-side loading");
        ReferencePython.WithFixture("make_state_dict_pth.py", $"\"{Fixture}\"", dir =>
        {
            using var b = new CpuBackend();
            var model = (AcmNetModel)Checkpoint.LoadTorch(Path.Combine(dir, "model.pth"), b, out _, method: Acm);
            using (model.P)
                foreach (var p in model.P.List)
                    Assert.That(model.P.Get(p.Name), Is.EqualTo(Npy.Load(Path.Combine(Fixture, "weights",
                        p.Name + ".npy")).AsFloat()), p.Name);
        });
    }

    /// random_sample (dataset_class.py:24-39): a longer video one index per stratum, in order; a shorter one
    /// sorted draws with replacement; an equal one itself.
    [Test]
    public void RandomSampleIsAcmNets()
    {
        if (backend != "cpu") Assert.Ignore("host-side sampling");
        var r = new Random(3);
        var longer = BatchSampler.AcmRandomSample(1000, 750, r);
        Assert.That(longer, Is.Ordered);
        for (int i = 0; i < 749; i++)
            Assert.That(longer[i], Is.InRange((int)(i * 1000.0 / 750), (int)((i + 1) * 1000.0 / 750)), $"stratum {i}");
        Assert.That(longer[749], Is.InRange(longer[748], 999));
        var shorter = BatchSampler.AcmRandomSample(40, 750, r);
        Assert.That(shorter, Is.Ordered.And.All.InRange(0, 39));
        Assert.That(shorter.Distinct().Count(), Is.LessThanOrEqualTo(40));
        Assert.That(BatchSampler.AcmRandomSample(750, 750, r), Is.EqualTo(Enumerable.Range(0, 750)));
    }

    [Test]
    public void TrainsOnTheTinyDemoAndEvaluatesInSeconds() =>
        MethodChecks.TrainsOnTheTinyDemo<AcmNetConfig>(Acm, backend, (tr, dir) =>
    {
        Assert.That(tr.Model.Evaluation.Seconds, "seconds on UM's and ACM-Net's 210 videos");
        var (model, step, _) = Checkpoint.Load(Path.Combine(dir, "last.safetensors"), new CpuBackend());
        using (model.Parameters) Assert.That((model is AcmNetModel, step), Is.EqualTo((true, 30)));
    });
}
