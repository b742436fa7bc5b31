// A short PVLR trajectory on the tiny configuration over a tiny demo dataset: the loss falls, the run
// is deterministic, a checkpoint round-trips and evaluation on the demo test split runs.
using NUnit.Framework;
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Model;
using PvlrKernels.Train;

namespace PvlrKernels.Tests;

public sealed class TrainingTests
{
    static readonly Lazy<ThumosDataset> Data = new(() =>
    {
        var root = Path.Combine(Path.GetTempPath(), "pvlr-tiny-demo-" + Environment.ProcessId);
        Features.DemoData.Generate(root, new Features.DemoOptions { FeatDim = 16, ClipDim = 8, MaxLength = 40 });
        return ThumosDataset.Load(root);
    });

    static float[] Run(int steps, out Trainer trainer)
    {
        var cfg = PvlrConfig.Tiny(); cfg.Lr = 3e-3f;
        trainer = new Trainer(cfg, Data.Value, new CpuBackend(), TextWriter.Null);
        var losses = new float[steps];
        for (int i = 0; i < steps; i++) losses[i] = trainer.TrainStep()["total"];
        return losses;
    }

    [Test]
    public void LossFallsAndRunIsDeterministic()
    {
        var a = Run(12, out var t1); var b = Run(12, out var t2);
        Assert.That(b, Is.EqualTo(a), "same seed, same numbers");
        Assert.That(a.Skip(9).Average(), Is.LessThan(a.Take(3).Average()), $"loss did not fall: {string.Join(", ", a)}");
        Assert.That(a, Is.All.Matches<float>(float.IsFinite));
        t1.Dispose(); t2.Dispose();
    }

    [Test]
    public void CheckpointRoundTripAndEvaluation()
    {
        Run(3, out var tr);
        var path = Path.Combine(Path.GetTempPath(), $"pvlr-ckpt-{Guid.NewGuid():N}.safetensors");
        tr.SaveCheckpoint(path);
        var (model, step, rng) = Checkpoint.Load(path, tr.B);
        Assert.That(step, Is.EqualTo(3)); Assert.That(rng, Is.EqualTo(tr.Rng.Counter));
        foreach (var p in tr.Model.P.List) Assert.That(model.P.Get(p.Name), Is.EqualTo(tr.Model.P.Get(p.Name)), p.Name);
        var r = tr.Evaluate(Data.Value.Test);
        Assert.That(r.Map, Has.Length.EqualTo(9));
        Assert.That(r.Map, Is.All.InRange(0.0, 100.0));
        // a corrupt checkpoint is a clear error naming the file
        File.WriteAllBytes(path, File.ReadAllBytes(path)[..100]);
        Assert.That(Assert.Throws<DataFormatException>(() => Checkpoint.Load(path, tr.B)).Message, Does.Contain(path));
        tr.Dispose();
    }
}
