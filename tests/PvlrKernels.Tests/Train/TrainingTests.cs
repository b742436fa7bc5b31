// A short PVLR trajectory on the tiny configuration over a tiny demo dataset: the loss falls, the run
// is deterministic, a checkpoint round-trips and evaluation on the demo test split runs.
using NUnit.Framework;
using PvlrKernels.Tools;
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Model;
using PvlrKernels.Methods;
using PvlrKernels.Methods.Pvlr;
using PvlrKernels.Train;

namespace PvlrKernels.Tests;

public sealed class TrainingTests
{
    static readonly Lazy<string> Root = new(() =>
    {
        var root = Path.Combine(Path.GetTempPath(), "pvlr-tiny-demo-" + Environment.ProcessId);
        DemoData.Generate(root, new DemoOptions { FeatDim = 16, ClipDim = 8, MaxLength = 40 });
        return root;
    });
    /// The tiny demo dataset (F=16, CLIP 8, at most 40 snippets per video), generated once per test run.
    public static string TinyDataDir => Root.Value;
    static readonly Lazy<WtalDataset> Data = new(() => WtalDataset.Load(TinyDataDir));

    static float[] Run(int steps, out Trainer trainer)
    {
        var cfg = PvlrConfig.Tiny();
        cfg.Lr = 3e-3f;
        trainer = new Trainer(cfg, Data.Value, new CpuBackend(), TextWriter.Null);
        var losses = new float[steps];
        for (int i = 0; i < steps; i++) losses[i] = trainer.TrainStep()["total"];
        return losses;
    }

    /// The gradient check is one device-side sum; a non-finite gradient still stops the run and names the
    /// parameter (found on the host only then). Finite gradients pass.
    [TestCase("cpu", float.NaN)] [TestCase("cpu", float.PositiveInfinity)] [TestCase("cuda", float.NaN)]
    public void NonFiniteGradientStopsTheRunAndNamesTheParameter(string backend, float bad)
    {
        using var tr = new Trainer(PvlrConfig.Tiny(), Data.Value, Backends.Get(backend), TextWriter.Null);
        tr.TrainStep();
        Assert.DoesNotThrow(tr.CheckGradients);
        var p = tr.Model.Parameters["fusion.0.weight"];
        tr.Backend.Upload(tr.Model.Parameters.Grads.At(p.Offset + 5), new[] { bad });
        var e = Assert.Throws<TrainingDivergedException>(tr.CheckGradients);
        Assert.That(e.Message, Does.Contain("fusion.0.weight").And.Contain(bad.ToString()));
    }

    /// A step's host round trips, per method: the loss terms come back in one download (PVLR logs seven
    /// terms and the total), the gradient check in one more; the rest are the host-side picks (PVLR's
    /// attention and mask, UM's magnitudes, ACM-Net's attention) and the batch's uploads.
    [TestCase("pvlr", 4, 20)] [TestCase("um", 4, 4)] [TestCase("acmnet", 3, 7)]
    public void AStepReadsItsLossTermsInOneDownload(string method, int downloads, int uploads)
    {
        var cfg = Methods.MethodRegistry.Get(method).Preset("tiny");
        using var tr = new Trainer(cfg, Data.Value, new CpuBackend(), TextWriter.Null);
        tr.TrainStep();
        long d0 = tr.Backend.Downloads, u0 = tr.Backend.Uploads;
        var terms = tr.TrainStep();
        TestContext.Out.WriteLine($"{method}: {terms.Count} values read, {tr.Backend.Downloads - d0} downloads, "
            + $"{tr.Backend.Uploads - u0} uploads");
        Assert.That(terms.Count, Is.GreaterThan(3));
        Assert.That(tr.Backend.Downloads - d0, Is.EqualTo(downloads));
        Assert.That(tr.Backend.Uploads - u0, Is.EqualTo(uploads));
    }

    [Test]
    public void LossFallsAndRunIsDeterministic()
    {
        var a = Run(12, out var t1);
        var b = Run(12, out var t2);
        Assert.That(b, Is.EqualTo(a), "same seed, same numbers");
        Assert.That(a.Skip(9).Average(), Is.LessThan(a.Take(3).Average()),
            $"loss did not fall: {string.Join(", ", a)}");
        Assert.That(a, Is.All.Matches<float>(float.IsFinite));
        t1.Dispose();
        t2.Dispose();
    }

    [Test]
    public void CheckpointRoundTripAndEvaluation()
    {
        Run(3, out var tr);
        var path = Path.Combine(Path.GetTempPath(), $"pvlr-ckpt-{Guid.NewGuid():N}.safetensors");
        tr.SaveCheckpoint(path);
        var (model, step, rng) = Checkpoint.Load(path, tr.Backend);
        Assert.That(step, Is.EqualTo(3));
        Assert.That(rng, Is.EqualTo(tr.Rng.Counter));
        foreach (var p in tr.Model.Parameters.List) Assert.That(model.Parameters.Get(p.Name),
            Is.EqualTo(tr.Model.Parameters.Get(p.Name)), p.Name);
        float[] Moments(IMethodModel m)
        {
            var a = new float[m.Parameters.Total];
            tr.Backend.Download(m.Parameters.M.At(0), a);
            return a;
        }
        Assert.That(Moments(model), Is.EqualTo(Moments(tr.Model)).And.Not.All.EqualTo(0f));
        // an inference load reads the weights only: the same weights, moments left at zero
        var (infer, _, _) = Checkpoint.Load(path, tr.Backend, optimizer: false);
        foreach (var p in tr.Model.Parameters.List) Assert.That(infer.Parameters.Get(p.Name),
            Is.EqualTo(tr.Model.Parameters.Get(p.Name)), p.Name);
        Assert.That(Moments(infer), Is.All.EqualTo(0f));
        var (weights, _) = Safetensors.Load(path, n => !n.StartsWith("adam_"));
        Assert.That(weights.Keys, Is.EquivalentTo(tr.Model.Parameters.List.Select(p => p.Name)));
        model.Parameters.Dispose();
        infer.Parameters.Dispose();
        var r = tr.Evaluate(Data.Value.Test);
        Assert.That(r.Map, Has.Length.EqualTo(9));
        Assert.That(r.Map, Is.All.InRange(0.0, 100.0));
        // a corrupt checkpoint is a clear error naming the file
        File.WriteAllBytes(path, File.ReadAllBytes(path)[..100]);
        Assert.That(Assert.Throws<DataFormatException>(() => Checkpoint.Load(path, tr.Backend)).Message,
            Does.Contain(path));
        tr.Dispose();
    }

    /// `pvlr bench --only load`: both loads of a checkpoint it writes and removes again.
    [Test]
    public void BenchTimesBothCheckpointLoads()
    {
        var cfg = PvlrConfig.Tiny();
        var before = Directory.GetFiles(Path.GetTempPath(), $"pvlr-bench-{Environment.ProcessId}.*");
        var rows = Bench.CheckpointLoad(new CpuBackend(), cfg, Data.Value.Ann.Classes);
        Assert.That(rows.Select(r => r.Name), Is.EqualTo(new[] { "checkpoint load, weights (tiny)",
            "checkpoint load, with Adam moments (tiny)" }));
        Assert.That(rows, Is.All.Matches<BenchRow>(r => r.Seconds > 0 && r.Rate.EndsWith("MB/s")));
        var mb = rows.Select(r => double.Parse(r.Shape.Split(" ")[0],
            System.Globalization.CultureInfo.CurrentCulture)).ToArray();
        // the whole file holds the weights and two moments of the trainable ones (the frozen CLIP tower, with
        // its 49,408-row token table, has none)
        var model = new PvlrModel(cfg, Data.Value.Ann.Classes);
        double weights = model.Parameters.List.Sum(p => (double)p.Size),
            trainable = model.Parameters.List.Where(p => p.Trainable).Sum(p => (double)p.Size);
        Assert.That(mb[1] / mb[0], Is.EqualTo((weights + 2 * trainable) / weights).Within(0.05),
            "the whole file holds the weights and two moments");
        Assert.That(Directory.GetFiles(Path.GetTempPath(), $"pvlr-bench-{Environment.ProcessId}.*"),
            Is.EqualTo(before), "the temporary checkpoint is removed");
    }

    /// A run stopped after an evaluation and resumed writes the Performance.txt of the uninterrupted run
    /// and keeps its best step: the resumed leg compares against the first leg's best (an evaluation
    /// below it must not replace best.safetensors). Also when the stop fell between the checkpoint and
    /// the evaluation's entry (the entry is missing): the evaluation is done again on resuming.
    [TestCase(false)]
    [TestCase(true)]
    public void ResumedRunKeepsTheBestAndThePerformanceLog(bool lostLastEntry)
    {
        PvlrConfig Cfg()
        {
            var c = PvlrConfig.Tiny();
            c.Lr = 3e-3f;
            c.Interval = 2;
            c.WarmupIter = 0;
            return c;
        }
        string a = Path.Combine(Path.GetTempPath(), "pvlr-full-" + Guid.NewGuid().ToString("N")[..8]),
            b = a.Replace("pvlr-full-", "pvlr-legs-");
        try
        {
            int bestFull;
            using (var t = new Trainer(Cfg(), Data.Value, new CpuBackend(), TextWriter.Null)) { t.Run(a,
                9); bestFull = t.BestStep; }
            using (var t = new Trainer(Cfg(), Data.Value, new CpuBackend(), TextWriter.Null)) t.Run(b,
                5);    // evaluates at 2 and 4, stops
            if (lostLastEntry)
            {
                var perf = File.ReadAllText(Path.Combine(b, "Performance.txt"));
                File.WriteAllText(Path.Combine(b, "Performance.txt"), perf[..perf.IndexOf("itr 4",
                    StringComparison.Ordinal)]);
            }
            using (var t = new Trainer(Cfg(), Data.Value, new CpuBackend(), TextWriter.Null))
            {
                t.Resume(Path.Combine(b, "last.safetensors"));
                Assert.That(t.Step, Is.EqualTo(5));
                t.Run(b, 9);
                Assert.That(t.BestStep, Is.EqualTo(bestFull), "the best step of the whole run");
            }
            var full = File.ReadAllText(Path.Combine(a, "Performance.txt"));
            Assert.That(File.ReadAllText(Path.Combine(b, "Performance.txt")), Is.EqualTo(full));
            Assert.That(full, Does.Contain("itr 2").And.Contain("itr 8").And.Contain("(best)"));
            using var cb = new CpuBackend();
            var (ma, sa, _) = Checkpoint.Load(Path.Combine(a, "best.safetensors"), cb, optimizer: false);
            var (mb, sb, _) = Checkpoint.Load(Path.Combine(b, "best.safetensors"), cb, optimizer: false);
            using (ma.Parameters) using (mb.Parameters) Assert.That((sb, mb.Parameters.Get("fusion.0.weight")),
                Is.EqualTo((sa, ma.Parameters.Get("fusion.0.weight"))), "best.safetensors");
        }
        finally
        {
            foreach (var d in new[] { a, b }) if (Directory.Exists(d)) Directory.Delete(d, true);
        }
    }

    static (int w, int h) PngSize(string path)
    {
        var b = File.ReadAllBytes(path);
        Assert.That(b.Take(8), Is.EqualTo(new byte[] { 137, 80, 78, 71, 13, 10, 26, 10 }), path);
        int Be(int o) => (b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3];
        return (Be(16), Be(20));
    }

    /// `pvlr train` draws its plots with ScottPlot (titles, axes, legends): a panel per loss term and one
    /// per test video, not the library's bare fallback (640x320 and 800x480).
    [Test]
    public void CliPlotsAPanelPerLossTermAndPerVideo()
    {
        var dir = Path.Combine(Path.GetTempPath(), "pvlr-plots-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            var (rc, err, _) = TestData.RunCli("train", "--preset", "tiny", "--max-iter", "3", "--device", "cpu",
                "--data", TinyDataDir, "--out", dir);
            Assert.That(rc, Is.EqualTo(0), err);
            Assert.That(err, Does.Not.Contain("plots without axes"));
            // + distillation (CLIP features present) + total
            int terms = PvlrLoss.Names.Count(n => n != "distillation_loss") + 2;
            Assert.That(PngSize(Path.Combine(dir, "loss.png")), Is.EqualTo((900, 170 * terms)));
            var cas = Directory.GetFiles(dir, "cas_attn_*.png");
            Assert.That(cas, Is.Not.Empty);
            Assert.That(PngSize(cas[0]), Is.EqualTo((1000, 260 * 4)));
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [Test]
    public void ResumedRunReproducesTheUninterruptedLosses()
    {
        var full = Run(6, out var t1);
        t1.Dispose();
        Run(3, out var t2);
        var path = Path.Combine(Path.GetTempPath(), $"pvlr-resume-{Guid.NewGuid():N}.safetensors");
        t2.SaveCheckpoint(path);
        t2.Dispose();
        var cfg = PvlrConfig.Tiny();
        cfg.Lr = 3e-3f;
        using var t3 = new Trainer(cfg, Data.Value, new CpuBackend(), TextWriter.Null);
        t3.Resume(path);
        Assert.That(t3.Step, Is.EqualTo(3));
        var rest = Enumerable.Range(0, 3).Select(_ => t3.TrainStep()["total"]).ToArray();
        Assert.That(rest, Is.EqualTo(full.Skip(3).ToArray()), "bit-exact continuation");
        var other = PvlrConfig.Tiny(); other.Lr = 1e-3f;                  // another configuration is refused
        using var t4 = new Trainer(other, Data.Value, new CpuBackend(), TextWriter.Null);
        Assert.That(Assert.Throws<DataFormatException>(() => t4.Resume(path)).Message,
            Does.Contain("another configuration"));
        File.Delete(path);
    }

    /// A batch whose videos all share a class leaves the video-level contrast without a negative pair: NaN,
    /// as in the original's model/loss.py. The run stops and says why; one unrelated video makes it finite.
    [Test]
    public void ABatchOfVideosThatAllShareAClassIsExplained()
    {
        var cfg = PvlrConfig.Tiny();
        using var tr = new Trainer(cfg, Data.Value, new CpuBackend(), TextWriter.Null);
        int b = cfg.BatchSize, rows = b * cfg.MaxSeqLen, c = cfg.NumClasses;
        var r = new Random(1);
        var feats = Enumerable.Range(0, rows * cfg.FeatDim).Select(_ => (float)r.NextDouble() - 0.5f).ToArray();
        var clip = Enumerable.Range(0, rows * cfg.EmbedDim).Select(_ => (float)r.NextDouble() - 0.5f).ToArray();
        var labels = new float[b * c];
        for (int i = 0; i < b; i++) labels[i * c + i % 2] = labels[i * c + 2] = 1;          // all share class 2
        var e = Assert.Throws<TrainingDivergedException>(() => tr.StepOn(feats, clip, labels));
        Assert.That(e.Message,
            Does.Contain("'action_prob_vid_contra_loss' is NaN").And.Contain("no negative pair")
                .And.Contain("the original's model/loss.py is NaN here too"));
        labels[2] = 0;                                                                       // video 0: class 0 only
        Assert.That(tr.StepOn(feats, clip, labels)["action_prob_vid_contra_loss"], Is.Not.NaN);
    }

    /// A dataset without a test split is refused before any step (the run would stop at its first
    /// evaluation), and an evaluation that fails keeps the checkpoint of the steps before it.
    [Test]
    public void EvaluationNeedsATestSplitAndItsFailureLosesNoTraining()
    {
        var root = Path.Combine(Path.GetTempPath(), $"pvlr-notest-{Guid.NewGuid():N}");
        DemoData.Generate(root, new DemoOptions { FeatDim = 16, ClipDim = 8, MaxVideos = 1, MaxLength = 24 });
        var noTest = WtalDataset.Load(root);
        Assert.That(noTest.Test, Is.Empty);
        var e = Assert.Throws<DataFormatException>(() => new Trainer(PvlrConfig.Tiny(), noTest, new CpuBackend(),
            TextWriter.Null));
        Assert.That(e.Message, Does.Contain(root).And.Contain("no test videos"));
        Directory.Delete(root, true);

        var dir = Path.Combine(Path.GetTempPath(), $"pvlr-evalfail-{Guid.NewGuid():N}");
        using var tr = new Trainer(PvlrConfig.Tiny(), Data.Value, new CpuBackend(), TextWriter.Null);
        Assert.Throws<InvalidOperationException>(() => tr.Run(dir, 2, (_,
            _) => throw new InvalidOperationException("evaluation failed")));
        var (model, step, _) = Checkpoint.Load(Path.Combine(dir, "last.safetensors"), tr.Backend);
        Assert.That(step, Is.EqualTo(2));
        foreach (var p in tr.Model.Parameters.List) Assert.That(model.Parameters.Get(p.Name),
            Is.EqualTo(tr.Model.Parameters.Get(p.Name)), p.Name);
        model.Parameters.Dispose();
        Assert.That(Assert.Throws<ArgumentException>(() => tr.Evaluate(new List<Video>())).Message,
            Does.Contain("no videos"));
        Directory.Delete(dir, true);
    }

    /// SIGKILL a training run at random moments (it writes last.safetensors every 2 steps and
    /// best.safetensors at evaluations): every checkpoint on disk must load, and the run must resume.
    [Test]
    public void KilledRunNeverLeavesACorruptCheckpoint()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"pvlr-kill-{Guid.NewGuid():N}");
        string dll = Path.Combine(TestContext.CurrentContext.TestDirectory, "pvlr.dll");
        string dotnet = Environment.ProcessPath is { } pp && Path.GetFileNameWithoutExtension(pp) == "dotnet"
            ? pp : "dotnet";
        var rng = new Random(4);
        int kills = 0, loaded = 0;
        for (int round = 0; round < 4; round++)
        {
            var args = round == 0
                ? $"\"{dll}\" train --preset tiny --max-iter 100000 --device cpu --data \"{TinyDataDir}\" --out "
                    + $"\"{dir}\""
                                  : $"\"{dll}\" train --resume \"{dir}\" --max-iter 100000 --device cpu --data "
                                      + $"\"{TinyDataDir}\"";
            using var p = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo(dotnet,
                args) { RedirectStandardOutput = true, RedirectStandardError = true });
            p.OutputDataReceived += (_, _) => { }; p.ErrorDataReceived += (_,
                _) => { }; p.BeginOutputReadLine(); p.BeginErrorReadLine();
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (!File.Exists(Path.Combine(dir,
                "last.safetensors")) && DateTime.UtcNow < deadline && !p.HasExited) Thread.Sleep(50);
            Assert.That(p.HasExited, Is.False, "the training process ended early");
            Thread.Sleep(rng.Next(200, 1500));                          // land somewhere inside the write loop
            p.Kill();
            p.WaitForExit();
            kills++;
            foreach (var f in new[] { "last.safetensors", "best.safetensors" })
            {
                var path = Path.Combine(dir, f);
                if (!File.Exists(path)) continue;
                var (model, _, _) = Checkpoint.Load(path, new CpuBackend());
                model.Parameters.Dispose();
                loaded++;
            }
        }
        Assert.That(kills, Is.EqualTo(4));
        Assert.That(loaded, Is.GreaterThanOrEqualTo(4));
        Directory.Delete(dir, true);
    }

    [Test]
    public void RunWritesLogCheckpointsAndPlots()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"pvlr-run-{Guid.NewGuid():N}");
        Run(0, out var tr);
        var r = tr.Run(dir, 2);
        tr.Dispose();
        foreach (var f in new[] { "config.json", "Performance.txt", "best.safetensors", "last.safetensors",
            "loss.png" }) Assert.That(File.Exists(Path.Combine(dir, f)), f);
        var png = File.ReadAllBytes(Path.Combine(dir, "cas_attn_00001.png"));
        Assert.That(png[1..4], Is.EqualTo("PNG"u8.ToArray()));
        int BE(int o) => png[o] << 24 | png[o + 1] << 16 | png[o + 2] << 8 | png[o + 3];
        Assert.That((BE(16), BE(20)), Is.EqualTo((800, 4 * 120)), "one 120-px panel per plotted test video");
        Assert.That(File.ReadAllText(Path.Combine(dir, "Performance.txt")), Does.Contain("mAP@0.1"));
        Assert.That(r.Map, Has.Length.EqualTo(9));
        Directory.Delete(dir, true);
    }
}
