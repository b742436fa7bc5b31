// FTCL on the engine: one training step replayed from our PyTorch restatement
// (benchmarks/reference/ftcl_ref.py, float64, the contrasts computed cell by cell as the original does)
// with every loss term and gradient within 1e-4 + 1e-3 |ref| and every host pick equal to torch's sort;
// the original's checkpoints (FTCL's, and ACM-Net's for stage 2) loaded; the pair batches; training on
// the tiny demo data. The alignment kernels themselves are in OpTests (finite differences, both launch
// forms).
using NUnit.Framework;
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Methods;
using PvlrKernels.Methods.Ftcl;
using PvlrKernels.Train;

namespace PvlrKernels.Tests;

[TestFixtureSource(typeof(Backends), nameof(Backends.All))]
public sealed class FtclTests(string backend)
{
    static string Fixture => MethodChecks.Fixture("ftcl_replay");
    static IMethod Ftcl => MethodRegistry.Get("ftcl");
    static readonly string[] Picks = [.. new[] { "v0", "v1" }.SelectMany(h => new[] { "inst", "cont", "back", "lcs",
        "fsd_act", "fsd_bak" }.Select(s => $"{h}_{s}"))];

    [Test]
    public void ReplayReproducesTheRestatedStep()
    {
        var r = MethodChecks.ReplaysTheCommittedDump(Ftcl, "ftcl_replay", backend, Picks);
        Assert.That(Math.Abs(r.Losses["lcs_loss"]), Is.GreaterThan(0.01), "the dump's LCS counts some cells");
    }

    [Test]
    public void ReplayMatchesALiveDumpWhenTorchIsInstalled() => MethodChecks.ReplaysALiveDump(Ftcl, backend, 31, Picks);

    /// FTCL's own checkpoint loads whole; ACM-Net's (stage 1, no feature_trans) loads with feature_trans
    /// left at our init and named in the report, as load_state_dict(strict=False) leaves it.
    [Test]
    public void TheOriginalsCheckpointsLoad()
    {
        if (backend != "cpu") Assert.Ignore("host-side loading");
        ReferencePython.WithFixture("make_state_dict_pth.py", $"\"{Fixture}\"", dir =>
        {
            using var b = new CpuBackend();
            var model = (FtclModel)Checkpoint.LoadTorch(Path.Combine(dir, "model.pth"), b, out var report,
                method: Ftcl);
            using (model.P)
                foreach (var p in model.P.List)
                    Assert.That(model.P.Get(p.Name), Is.EqualTo(Npy.Load(Path.Combine(Fixture, "weights",
                        p.Name + ".npy")).AsFloat()), p.Name);
            Assert.That(report, Does.Not.Contain("missing"));
        });
        ReferencePython.WithFixture("make_state_dict_pth.py", $"\"{MethodChecks.Fixture("acmnet_replay")}\"", dir =>
        {
            using var b = new CpuBackend();
            var model = (FtclModel)Checkpoint.LoadTorch(Path.Combine(dir, "model.pth"), b, out var report,
                method: Ftcl);
            using (model.P) Assert.That(model.P.Get("snippet_cls.bias"), Is.EqualTo(Npy.Load(Path.Combine(
                MethodChecks.Fixture("acmnet_replay"), "weights", "snippet_cls.bias.npy")).AsFloat()));
            Assert.That(report, Does.Contain("missing (kept at our init): feature_trans.weight, feature_trans.bias"));
        });
    }

    /// FTCLDataset's pairs (dataset_class.py:190-215): every pair of equal label vectors and as many with
    /// disjoint labels, in shuffled epochs of B pairs (v0s in rows 0..B-1, v1s in rows B..2B-1), each video
    /// resampled once for the whole run.
    [Test]
    public void BatchesArePairsOfEqualAndDisjointLabels()
    {
        if (backend != "cpu") Assert.Ignore("host-side sampling");
        var ds = WtalDataset.Load(TrainingTests.TinyDataDir);
        var sampler = new BatchSampler(ds, 0);
        var labels = ds.Train.Select(v => ds.Labels(v)).ToArray();
        var pairs = sampler.LabelPairs();
        bool Disjoint(int i, int j) => !labels[i].Zip(labels[j]).Any(z => z.First * z.Second > 0);
        int same = 0, disjoint = 0;
        for (int i = 0; i < labels.Length; i++)
            for (int j = i + 1; j < labels.Length; j++)
                if (labels[i].SequenceEqual(labels[j])) same++;
                else if (Disjoint(i, j)) disjoint++;
        Assert.That(same, Is.GreaterThan(0));
        Assert.That(pairs.Count(p => labels[p.first].SequenceEqual(labels[p.second])), Is.EqualTo(same));
        Assert.That(pairs.Count(p => Disjoint(p.first, p.second)), Is.EqualTo(Math.Min(same, disjoint)));
        Assert.That(pairs.Distinct().Count(), Is.EqualTo(pairs.Count));
        int b = 4, t = 8, f = ds.FeatureDim, c = ds.Ann.Classes.Length, perEpoch = (pairs.Count + b - 1) / b;
        var feats = new float[2 * b * t * f];
        var lab = new float[2 * b * c];
        var rows = sampler.SamplePairs(0, b, t, feats, null, lab);
        Assert.That(rows, Has.Count.EqualTo(2 * b));
        for (int i = 0; i < b; i++)
            Assert.That(pairs, Does.Contain((ds.Train.IndexOf(rows[i]), ds.Train.IndexOf(rows[b + i]))), "pair rows");
        Assert.That(lab[..c], Is.EqualTo(ds.Labels(rows[0])));
        // the same video gives the same rows in every batch it is in (sampled once)
        var seen = new Dictionary<string, float[]>();
        for (int s = 0; s < 2 * perEpoch; s++)
        {
            var got = sampler.SamplePairs(s, b, t, feats, null, lab);
            for (int r = 0; r < got.Count; r++)
            {
                var x = feats.AsSpan(r * t * f, t * f).ToArray();
                if (seen.TryGetValue(got[r].Name, out var before)) Assert.That(x, Is.EqualTo(before), got[r].Name);
                else seen[got[r].Name] = x;
            }
        }
        Assert.That(seen.Count, Is.GreaterThan(b));
    }

    [Test]
    public void AMissingInitIsRefusedBeforeAnyWork()
    {
        if (backend != "cpu") Assert.Ignore("the command line");
        var dir = Path.Combine(Path.GetTempPath(), "pvlr-ftclcli-" + Guid.NewGuid().ToString("N")[..8]);
        var (rc, err, _) = TestData.RunCli("train", "--method", "ftcl", "--preset", "tiny", "--data",
            TrainingTests.TinyDataDir, "--out", dir, "--init", Path.Combine(dir, "none.safetensors"));
        Assert.That((rc, err), Is.Not.EqualTo((0, "")));
        Assert.That(err, Does.StartWith("pvlr: error: --init:").And.Contain("none.safetensors"));
        Assert.That(Directory.Exists(dir), Is.False, "refused before the run directory is made");
    }

    [Test]
    public void TrainsOnTheTinyDemoFromAnAcmNetStart()
    {
        if (backend != "cpu") Assert.Ignore("one backend is enough for a training run");
        var ds = WtalDataset.Load(TrainingTests.TinyDataDir);
        var acm = MethodRegistry.Get("acmnet");
        var dir = Path.Combine(Path.GetTempPath(), "pvlr-ftclinit-" + Guid.NewGuid().ToString("N")[..8]);
        var acmCfg = (Methods.AcmNet.AcmNetConfig)acm.Preset("tiny");
        acmCfg.Lr = 3e-3f;
        acmCfg.MaxIter = 30;
        acmCfg.Interval = 30;
        using (var tr = new Trainer(acmCfg, ds, new CpuBackend(), TextWriter.Null)) tr.Run(dir, acmCfg.MaxIter);
        var start = Path.Combine(dir, "last.safetensors");
        MethodChecks.TrainsOnTheTinyDemo<FtclConfig>(Ftcl, backend, (tr, run) =>
        {
            Assert.That(tr.Model.Evaluation.Seconds, "ACM-Net's evaluation: seconds on 210 videos");
            Assert.That(tr.History.All(h => h.ContainsKey("lcs_loss") && h.ContainsKey("fsd_loss")));
            var (model, step, _) = Checkpoint.Load(Path.Combine(run, "last.safetensors"), new CpuBackend());
            using (model.Parameters) Assert.That((model is FtclModel, step), Is.EqualTo((true, 30)));
        }, tr => Checkpoint.InitFrom(start, tr.Model, tr.Backend));
        using var be = new CpuBackend();
        var fresh = (FtclModel)Ftcl.Build(Ftcl.Preset("tiny"), ds.Ann.Classes);
        using (fresh.P)
        {
            fresh.Initialize(be, 1);
            var report = Checkpoint.InitFrom(start, fresh, be);
            Assert.That(report, Does.Contain("missing (kept at our init): feature_trans.weight, feature_trans.bias"));
            var (src, _, _) = Checkpoint.Load(start, be);
            using (src.Parameters) Assert.That(fresh.P.Get("att_branch.weight"),
                Is.EqualTo(src.Parameters.Get("att_branch.weight")));
        }
        Directory.Delete(dir, true);
    }
}
