// The checks every seed method's tests share: a replay of the committed dump and of a live one from its
// restatement (benchmarks/reference/<method>_ref.py), its own host-side picks against the dump's, and a
// short training run of its tiny preset on the tiny demo data through the shared loop.
using NUnit.Framework;
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Methods;
using PvlrKernels.Train;

namespace PvlrKernels.Tests;

public static class MethodChecks
{
    public static string Fixture(string name) => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures",
        name);

    /// Every pick set named equal, position by position (none where `sets` is empty).
    public static void AssertOwnPicks(ReplayResult r, params string[] sets)
    {
        Assert.That(r.Mining.Keys, Is.EquivalentTo(sets));
        foreach (var (k, (same, total)) in r.Mining)
            Assert.That(same, Is.EqualTo(total), $"{k}: our picks against torch's sort");
    }

    /// The committed dump replayed on `backend` (not on the emulator: a whole step is too slow there).
    public static ReplayResult ReplaysTheCommittedDump(IMethod method, string fixture, string backend,
        params string[] pickSets)
    {
        if (backend == "ilgpu-cpu")
            Assert.Ignore("a whole step is too slow for the emulator; the op suite covers its kernels");
        var r = method.Replay(Fixture(fixture), Backends.Get(backend));
        ReplayTests.AssertMatches(Fixture(fixture), r);
        AssertOwnPicks(r, pickSets);
        return r;
    }

    /// A fresh dump of the method's restatement, where python3 with torch is installed (CPU backend only).
    public static void ReplaysALiveDump(IMethod method, string backend, int seed, params string[] pickSets) =>
        ReplaysALiveDumpOf(method, backend, seed, "replay", pickSets);

    /// The same with one of the restatement's dump presets (e.g. co2net_ref.py's anet-replay).
    public static void ReplaysALiveDumpOf(IMethod method, string backend, int seed, string preset,
        string[] pickSets = null)
    {
        pickSets ??= [];
        if (backend != "cpu") Assert.Ignore("one backend is enough for the live dump");
        var d = Path.Combine(Path.GetTempPath(), $"pvlr-{method.Name}replay-" + Guid.NewGuid().ToString("N")[..8]);
        var script = ReferencePython.RepoPath("benchmarks", "reference", $"{method.Name}_ref.py");
        var (rc, _, err) = ReferencePython.Run($"\"{script}\" dump \"{d}\" --seed {seed} --preset {preset}");
        Assert.That(rc, Is.EqualTo(0), err);
        var r = method.Replay(d, Backends.Get(backend));
        ReplayTests.AssertMatches(d, r);
        AssertOwnPicks(r, pickSets);
        Directory.Delete(d, true);
    }

    /// 30 steps of the tiny preset (lr 3e-3, evaluations at 15 and 30) into a fresh run directory: the
    /// loss falls and the evaluation runs. `check` sees the trainer and the directory before it is removed.
    /// `prepare` sees the trainer before its first step (a start from another run's weights).
    public static void TrainsOnTheTinyDemo<TConfig>(IMethod method, string backend, Action<Trainer, string> check,
        Action<Trainer> prepare = null) where TConfig : MethodConfig
    {
        if (backend != "cpu") Assert.Ignore("one backend is enough for a training run");
        var ds = WtalDataset.Load(TrainingTests.TinyDataDir);
        var cfg = (TConfig)method.Preset("tiny");
        cfg.Lr = 3e-3f;
        cfg.MaxIter = 30;
        cfg.Interval = 15;
        var dir = Path.Combine(Path.GetTempPath(), $"pvlr-{method.Name}run-" + Guid.NewGuid().ToString("N")[..8]);
        using (var tr = new Trainer(cfg, ds, new CpuBackend(), TextWriter.Null))
        {
            prepare?.Invoke(tr);
            var r = tr.Run(dir, cfg.MaxIter);
            float first = tr.History.Take(5).Average(h => h["total"]),
                last = tr.History.TakeLast(5).Average(h => h["total"]);
            Assert.That(last, Is.LessThan(first), "the loss falls");
            Assert.That(r.Avg01_07, Is.GreaterThanOrEqualTo(0));
            check(tr, dir);
        }
        Directory.Delete(dir, true);
    }
}
