// CO2-Net on the engine: one training step replayed from our PyTorch restatement
// (benchmarks/reference/co2net_ref.py, float64) with every loss term and gradient within
// 1e-4 + 1e-3 |ref|, the original's state_dicts loaded, and training on the tiny demo data.
using NUnit.Framework;
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Methods;
using PvlrKernels.Methods.Co2Net;
using PvlrKernels.Train;

namespace PvlrKernels.Tests;

[TestFixtureSource(typeof(Backends), nameof(Backends.All))]
public sealed class Co2NetTests(string backend)
{
    static string Fixture => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "co2net_replay");
    static IMethod Co2 => MethodRegistry.Get("co2net");

    [Test]
    public void ReplayReproducesTheRestatedStep()
    {
        var r = MethodChecks.ReplaysTheCommittedDump(Co2, "co2net_replay", backend);
        Assert.That(r.Notes, Has.Some.Contains("feat_encoder"), "the original's unused feat_encoder is reported");
        Assert.That(r.Grads, Has.Count.EqualTo(26));
    }

    [Test]
    public void ReplayMatchesALiveDumpWhenTorchIsInstalled() => MethodChecks.ReplaysALiveDump(Co2, backend, 17);

    /// ActivityNet's ANT_CO2 (co2net_ref.py --preset anet-replay): the four outputs pooled over time with 5
    /// taps ((24 // 5) // 2 * 2 + 1), the mutual loss unweighted.
    [Test]
    public void ActivityNetReplayReproducesTheRestatedStep()
    {
        var r = MethodChecks.ReplaysTheCommittedDump(Co2, "co2net_anet_replay", backend);
        var cfg = (Co2NetConfig)r.Config;
        Assert.That((cfg.PoolT, cfg.PoolKernel, cfg.TrimBatchToLongest), Is.EqualTo((5, 5, false)));
    }

    [Test]
    public void ActivityNetReplayMatchesALiveDumpWhenTorchIsInstalled() =>
        MethodChecks.ReplaysALiveDumpOf(Co2, backend, 23, "anet-replay");

    /// ANT_CO2's pooling at test time runs on the host for the ragged batch: each video's pooled signals
    /// equal the device pooling of that video forwarded alone; the THUMOS model pools nothing.
    [Test]
    public void PooledSignalsOfARaggedBatchEqualEachVideoAlone()
    {
        if (backend == "ilgpu-cpu") Assert.Ignore("the CPU and CUDA backends cover it");
        var cfg = (Co2NetConfig)Co2.Preset("tiny");
        cfg.PoolT = 8;                                   // (32 // 8) // 2 * 2 + 1 = 5 taps
        cfg.WinogradTile = 0;
        var model = (Co2NetModel)Co2.Build(cfg, Enumerable.Range(0, cfg.NumClasses).Select(i => $"c{i}").ToArray());
        var be = Backends.Get(backend);
        model.Initialize(be, 4);
        using var store = model.P;
        using var g = new Graph(be, model.P);
        var r = new Random(3);
        var videos = new[] { 9, 2, 6 }.Select((t, i) => ($"v{i}", (ReadOnlyMemory<float>)Enumerable.Range(0,
            t * 16).Select(_ => (float)r.NextDouble() - 0.5f).ToArray(), t)).ToArray();
        var together = model.Signals(g, null, videos);
        for (int i = 0; i < videos.Length; i++)
        {
            g.Reset();
            g.Training = false;
            Co2NetOutputs alone;
            using (g.NoGrad()) alone = model.Forward(g, g.FromHost(videos[i].Item2.Span, 1, videos[i].Item3, 16));
            Check.Close(together[i].cas, g.ToHost(alone.Cas).Select(v => (double)v).ToArray(), 1e-5, 1e-4,
                $"pooled cas of video {i}");
            Check.Close(together[i].attn, g.ToHost(alone.Attn).Select(v => (double)v).ToArray(), 1e-6, 1e-4,
                $"pooled attention of video {i}");
        }
        Assert.That(Co2NetModel.PoolHost([1f, 2f, 3f, 4f], 4, 1, 3), Is.EqualTo(new[] { 1f, 2f, 3f, 7f / 3 }));
    }

    /// The original saves torch.save(model.state_dict()): every weight lands under its name, the unused
    /// feat_encoder is reported, and without --method such a file is read as PVLR's and refused.
    [Test]
    public void TheOriginalsStateDictLoads()
    {
        if (backend != "cpu") Assert.Ignore("host-side loading");
        ReferencePython.WithFixture("make_state_dict_pth.py", $"\"{Fixture}\"", dir =>
        {
            var pth = Path.Combine(dir, "model.pth");
            using var b = new CpuBackend();
            var model = (Co2NetModel)Checkpoint.LoadTorch(pth, b, out var report, method: Co2);
            using (model.P)
            {
                Assert.That(model.Cfg.FeatDim, Is.EqualTo(32));
                Assert.That(model.Cfg.AttnHidden, Is.EqualTo(8));
                foreach (var p in model.P.List)
                    Assert.That(model.P.Get(p.Name), Is.EqualTo(Npy.Load(Path.Combine(Fixture, "weights",
                        p.Name + ".npy")).AsFloat()), p.Name);
                Assert.That(report, Does.Contain("feat_encoder.0.weight").And.Contain("unused"));
            }
            Assert.Throws<DataFormatException>(() => Checkpoint.LoadTorch(pth, b, out _),
                "a CO2-Net file is not a PVLR checkpoint");
        });
    }

    [Test]
    public void TrainsOnTheTinyDemoAndRoundTripsThroughCheckpointsAndExport() =>
        MethodChecks.TrainsOnTheTinyDemo<Co2NetConfig>(Co2, backend, (tr, dir) =>
        {
            var pth = Path.Combine(dir, "export.pth");
            Checkpoint.SaveTorch(pth, tr.Model);
            using var b = new CpuBackend();
            var back = Checkpoint.LoadTorch(pth, b, out _);
            using (back.Parameters)
            {
                Assert.That(back, Is.InstanceOf<Co2NetModel>(), "the export's config record names the method");
                Assert.That(back.Config.ToJson(), Is.EqualTo(tr.Cfg.ToJson()));
                foreach (var p in tr.Model.Parameters.List)
                    Assert.That(back.Parameters.Get(p.Name), Is.EqualTo(tr.Model.Parameters.Get(p.Name)), p.Name);
            }
            var (model, step, _) = Checkpoint.Load(Path.Combine(dir, "last.safetensors"), b);
            using (model.Parameters) Assert.That((model is Co2NetModel, step), Is.EqualTo((true, 30)));
        });

    /// One ragged batch of videos (each video's channel attention broadcast to its own rows, the rows
    /// between videos re-zeroed, Winograd convs) gives each video's signals alone with direct convs.
    [Test]
    public void RaggedWinogradSignalsEqualEachVideoAlone()
    {
        if (backend == "ilgpu-cpu")
            Assert.Ignore("the CPU and CUDA backends cover it; the emulator is slow at these widths");
        var cfg = (Co2NetConfig)Co2.Preset("tiny");
        cfg.FeatDim = 32;
        cfg.AttnHidden = 8;
        var model = (Co2NetModel)Co2.Build(cfg, Enumerable.Range(0, cfg.NumClasses).Select(i => $"c{i}").ToArray());
        var be = Backends.Get(backend);
        model.Initialize(be, 4);
        using var store = model.P;
        using var g = new Graph(be, model.P);
        var r = new Random(2);
        var videos = new[] { 7, 1, 12, 3 }.Select((t, i) => ($"v{i}", (ReadOnlyMemory<float>)Enumerable.Range(0,
            t * 32).Select(_ => (float)r.NextDouble() - 0.5f).ToArray(), t)).ToArray();
        var together = model.Signals(g, null, videos);
        cfg.WinogradTile = 0;
        for (int i = 0; i < videos.Length; i++)
        {
            var alone = model.Signals(g, null, [videos[i]])[0];
            Check.Close(together[i].cas, alone.cas.Select(v => (double)v).ToArray(), 1e-5, 1e-4, $"cas of video {i}");
            Check.Close(together[i].attn, alone.attn.Select(v => (double)v).ToArray(), 1e-6, 1e-4,
                $"attention of video {i}");
        }
    }

    /// CO2-Net's train loop cuts each batch to its longest video (train.py:16-17): a batch padded to T = 32
    /// whose videos hold at most 20 non-zero rows trains exactly as the same batch of T = 20.
    [Test]
    public void ABatchIsCutToItsLongestVideo()
    {
        if (backend != "cpu") Assert.Ignore("host-side batching");
        var cfg = (Co2NetConfig)Co2.Preset("tiny");
        var classes = Enumerable.Range(0, cfg.NumClasses).Select(i => $"c{i}").ToArray();
        int b = cfg.BatchSize, f = cfg.FeatDim, t = cfg.MaxSeqLen, keep = 20;
        var r = new Random(6);
        var padded = new float[b * t * f];
        var cut = new float[b * keep * f];
        for (int i = 0; i < b; i++)
            for (int row = 0; row < (i == 3 ? keep : 9 + i); row++)
                for (int j = 0; j < f; j++)
                    padded[(i * t + row) * f + j] = cut[(i * keep + row) * f + j] = (float)r.NextDouble() - 0.5f;
        Assert.That(Trainer.LongestVideo(padded, b, t, f), Is.EqualTo(keep));
        var labels = new float[b * cfg.NumClasses];
        for (int i = 0; i < b; i++) labels[i * cfg.NumClasses + (i < 6 ? i / 2 : i % cfg.NumClasses)] = 1;
        using var a = new Trainer(cfg, classes, new CpuBackend(), TextWriter.Null);
        var cfgCut = (Co2NetConfig)Co2.Preset("tiny");
        cfgCut.MaxSeqLen = keep;
        using var c = new Trainer(cfgCut, classes, new CpuBackend(), TextWriter.Null);
        Assert.That(a.StepOn(padded, null, labels), Is.EqualTo(c.StepOn(cut, null, labels)));
    }
}
