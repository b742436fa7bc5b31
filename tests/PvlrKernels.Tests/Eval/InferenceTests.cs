// Test-time inference over ragged batches (RaggedBatch + Winograd convolutions) against the plain
// per-video forward with direct convolutions, on every backend: several videos of different lengths
// (one of a single snippet) in one sequence give each video's own CAS and attention.
using NUnit.Framework;
using PvlrKernels.Tools;
using PvlrKernels.Eval;
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Model;
using PvlrKernels.Methods;
using PvlrKernels.Methods.Pvlr;
using PvlrKernels.Train;

namespace PvlrKernels.Tests;

[TestFixtureSource(typeof(Backends), nameof(Backends.All))]
public sealed class InferenceTests(string backendName)
{
    Backend B => Backends.Get(backendName);

    [TestCase(6)] [TestCase(0)]
    public void RaggedBatchesMatchThePerVideoForward(int winograd)
    {
        var cfg = PvlrConfig.Tiny();
        cfg.InferRows = 15;
        cfg.WinogradTile = winograd;
        using var tr = new Trainer(cfg, WtalDataset.Load(TrainingTests.TinyDataDir), B, TextWriter.Null);
        var r = new Random(3);
        var videos = new[] { 1, 7, 12, 3 }.Select((t, i) => new Video
        {
            Name = $"v{i}", T = t, Features = Enumerable.Range(0,
                t * cfg.FeatDim).Select(_ => (float)(r.NextDouble() * 2 - 1)).ToArray()
        }).ToList();
        var batches = Inference.Batches(videos, cfg.InferRows).ToList();
        Assert.That(batches.Select(b => b.Count), Is.EqualTo(new[] { 2, 1, 1 }),
            "1 + (1+1) + (7+1) = 11 rows, then 12 alone, then 3");

        var text = Inference.TestConstants(tr.Model, tr.G);
        var got = batches.SelectMany(b => Inference.Signals(tr.Model, tr.G, b.Select(v => (v.Name, v.Features,
            v.T)).ToArray(), text)).ToArray();
        for (int i = 0; i < videos.Count; i++)
        {
            var v = videos[i];
            var g = tr.G;
            g.Reset();
            g.WinogradTile = 0;
            using (g.NoGrad())
            {
                var o = ((PvlrModel)tr.Model).Forward(g, g.FromHost(v.Features, 1, v.T, cfg.FeatDim), g.FromHost(text,
                    cfg.NumClasses + 1, cfg.EmbedDim));
                Check.Close(got[i].cas, g.ToHost(o.Cas), 1e-4, 1e-4,
                    $"{v.Name} cas, winograd {winograd} [{backendName}]");
                Check.Close(got[i].attn, g.ToHost(o.Attn), 1e-6, 1e-5, $"{v.Name} attention [{backendName}]");
            }
        }
    }

    /// The test-time forward hands its dead intermediates back to the arena (Graph.Release). Against the
    /// same forward while recording (where Release does nothing), it must give the same outputs in less
    /// arena: a block released while something still reads it would show here as a changed CAS.
    [Test]
    public void TestTimeForwardReleasesItsIntermediates()
    {
        var cfg = PvlrConfig.Tiny(); cfg.WinogradTile = 0;                  // both ways the same direct convolutions
        using var tr = new Trainer(cfg, WtalDataset.Load(TrainingTests.TinyDataDir), B, TextWriter.Null);
        var r = new Random(5);
        int t = 400;
        var x = Enumerable.Range(0, t * cfg.FeatDim).Select(_ => (float)(r.NextDouble() * 2 - 1)).ToArray();
        var text = Inference.TestConstants(tr.Model, tr.G);
        (float[] cas, float[] attn, long touched) Run(bool recording)
        {
            using var g = new Graph(B, tr.Model.Parameters);
            g.Training = false;
            using var _ = recording ? null : g.NoGrad();
            var o = ((PvlrModel)tr.Model).Forward(g, g.FromHost(x, 1, t, cfg.FeatDim), g.FromHost(text,
                cfg.NumClasses + 1, cfg.EmbedDim));
            return (g.ToHost(o.Cas), g.ToHost(o.Attn), g.Act.Touched);
        }
        var kept = Run(true);
        var freed = Run(false);
        Check.Close(freed.cas, kept.cas, 1e-6, 1e-6, $"cas [{backendName}]");
        Check.Close(freed.attn, kept.attn, 1e-6, 1e-6, $"attention [{backendName}]");
        Assert.That(freed.touched, Is.LessThan(kept.touched / 2),
            $"the released blocks were not reused: {freed.touched} vs {kept.touched} floats");
    }

    /// The arena's free list: best fit, merging of neighbours, the bump pointer lowered by a block at the
    /// top, and refusals for a block that is not a live allocation.
    [Test]
    public void ArenaReusesReleasedBlocks()
    {
        using var a = new Arena(B, 1024);
        var (s, p) = a.Alloc(64);
        var (_, q) = a.Alloc(32);
        var (_, u) = a.Alloc(64);
        var (_, v) = a.Alloc(16);
        Assert.That(new[] { p, q, u, v }, Is.EqualTo(new long[] { 0, 64, 96, 160 }));
        a.Release(s, p); a.Release(s, u);                                  // holes of 64 at 0 and at 96
        Assert.That(a.Alloc(20).Item2, Is.EqualTo(0), "first of two equal holes");      // 32 of the 64 at 0
        Assert.That(a.Alloc(32).Item2, Is.EqualTo(32), "the 32 left at 32 fit exactly, before the 64 at 96");
        // 96..176 free and at the top: bump back to 96
        a.Release(s, v);
        Assert.That(a.Alloc(80).Item2, Is.EqualTo(96), "merged with the block below and taken from the top");
        Assert.That(a.Touched, Is.EqualTo(176));
        Assert.Throws<InvalidOperationException>(() => a.Release(s, 96 + 16), "not the start of a block");
        a.Release(s, 96);
        Assert.Throws<InvalidOperationException>(() => a.Release(s, 96), "released twice");
        a.Reset();
        Assert.That(a.Alloc(16).Item2, Is.EqualTo(0));
        Assert.Throws<InvalidOperationException>(() => a.Release(s, 64), "a block of the step before the reset");
    }

    /// The evaluation of videos left in their file (as `pvlr eval` loads them: each batch read into one
    /// reused buffer when it runs) equals the evaluation of the loaded videos, number for number.
    [Test]
    public void VideosReadDuringTheEvaluationScoreAsLoadedOnes()
    {
        var cfg = PvlrConfig.Tiny();
        cfg.InferRows = 600;
        var loaded = WtalDataset.Load(LazyFeaturesTests.MixedDataDir, clip: false);
        var lazy = WtalDataset.Load(LazyFeaturesTests.MixedDataDir, clip: false, load: _ => false);
        Assert.That(Inference.Batches(lazy.Test, cfg.InferRows).Count(b => b.Count > 1), Is.GreaterThan(0),
            "batches of several videos");
        using var tr = new Trainer(cfg, WtalDataset.Load(TrainingTests.TinyDataDir), B, TextWriter.Null);
        var want = Inference.Evaluate(tr.Model, tr.G, loaded.Ann, loaded.Test);
        var reports = new List<string>();
        var got = Inference.Evaluate(tr.Model, tr.G, lazy.Ann, lazy.Test, reports.Add, TimeSpan.Zero);
        // with no interval, one report after each batch but the last, counting the videos done so far
        var batches = Inference.Batches(lazy.Test, cfg.InferRows).Select(x => x.Count).ToArray();
        var counts = batches.Select((n, i) => batches.Take(i + 1).Sum()).SkipLast(1).ToArray();
        Assert.That(reports, Has.Count.EqualTo(counts.Length).And.Count.GreaterThan(0), string.Join("\n", reports));
        for (int i = 0; i < counts.Length; i++) Assert.That(reports[i],
            Does.StartWith($"evaluation: {counts[i]}/{lazy.Test.Count} videos ("));
        var quiet = new List<string>();
        Inference.Evaluate(tr.Model, tr.G, lazy.Ann, lazy.Test, quiet.Add, TimeSpan.FromHours(1));
        Assert.That(quiet, Is.Empty, "a run shorter than the interval reports nothing");
        Assert.That(got.Map, Is.EqualTo(want.Map), $"[{backendName}]");
        Assert.That(got.Ap, Is.EqualTo(want.Ap), $"[{backendName}]");
        Assert.That(got.ClassificationMap, Is.EqualTo(want.ClassificationMap), $"[{backendName}]");
        Assert.That(lazy.Test.All(v => v.Features == null), Is.True, "read for the evaluation, not kept");
    }

    /// 12 demo videos whose features are 32 wide, twice what the tiny model reads.
    internal static string WideDataDir => Wide.Value;
    static readonly Lazy<string> Wide = new(() =>
    {
        var root = Path.Combine(Path.GetTempPath(), "pvlr-wide-demo-" + Environment.ProcessId);
        DemoData.Generate(root, new DemoOptions { FeatDim = 32, ClipDim = 8, MaxVideos = 12, MaxLength = 40 });
        return root;
    });

    /// Videos read during the evaluation from a file wider than the model: each is read into its own
    /// slot of the batch buffer (sized by the stored width, not the model's) and the error names a video,
    /// instead of reads running past the buffer or into each other.
    [Test]
    public void VideosWiderThanTheModelAreNamed()
    {
        var cfg = PvlrConfig.Tiny();
        cfg.InferRows = 100;
        var lazy = WtalDataset.Load(WideDataDir, clip: false, load: _ => false);
        Assert.That(lazy.FeatureDim, Is.EqualTo(2 * cfg.FeatDim));
        using var tr = new Trainer(cfg, WtalDataset.Load(TrainingTests.TinyDataDir), B, TextWriter.Null);
        var e = Assert.Throws<ShapeException>(() => Inference.Evaluate(tr.Model, tr.G, lazy.Ann, lazy.Test));
        Assert.That(e!.Message, Does.Match(@"^video_test_\d+: features hold \d+ values, expected \(T=\d+, 16\)"));
    }

    [Test]
    public void EmptyVideoAndShortFeaturesAreNamed()
    {
        var cfg = PvlrConfig.Tiny();
        using var tr = new Trainer(cfg, WtalDataset.Load(TrainingTests.TinyDataDir), B, TextWriter.Null);
        var text = Inference.TestConstants(tr.Model, tr.G);
        var e = Assert.Throws<ShapeException>(() => Inference.Signals(tr.Model, tr.G, new[] { ("ok",
            new float[2 * cfg.FeatDim], 2), ("video_test_0000004", Array.Empty<float>(), 0) }, text));
        Assert.That(e.Message, Does.Contain("video_test_0000004").And.Contain("empty"));
        e = Assert.Throws<ShapeException>(() => Inference.Signals(tr.Model, tr.G, new[] { ("video_test_0000007",
            new float[5], 2) }, text));
        Assert.That(e.Message, Does.Contain("video_test_0000007").And.Contain("expected (T=2"));
    }

    [Test]
    public void BenchTimesAFirstAndASteadyPass()
    {
        // the same inference three times on one graph: two rows, the first pass and the median of the two
        // steady passes (their range beside it), the same GEMM work, the steady one last; no steady pass
        // is refused before any work
        if (backendName != "cpu")
            Assert.Ignore("the bench row is the CPU path's; the emulator would take minutes over 212 videos");
        Assert.Throws<ArgumentOutOfRangeException>(() => Bench.TestSetInference(B, PvlrConfig.Tiny(), 0));
        var rows = Bench.TestSetInference(B, PvlrConfig.Tiny(), 2);
        Assert.That(rows.Select(r => r.Name), Is.EqualTo(new[] { "test-set inference + eval (pvlr tiny), first pass",
            "test-set inference + eval (pvlr tiny)" }));
        Assert.That(rows[0].Flops, Is.GreaterThan(0).And.EqualTo(rows[1].Flops));
        Assert.That(rows.All(r => r.Seconds > 0 && r.Shape == "212 videos, 71804 snippets"));
        Assert.That(rows[0].Rate, Does.Not.Contain("median"));
        foreach (var r in rows)
        {
            var busy = System.Text.RegularExpressions.Regex.Match(r.Rate, @"cores busy (\d+) %");
            Assert.That(busy.Success && int.Parse(busy.Groups[1].Value) is > 0 and <= 100, r.Rate);
        }
        var range = System.Text.RegularExpressions.Regex.Match(rows[1].Rate,
            @"median of 2 passes \((\d+\.\d+) to (\d+\.\d+) s\)$");
        Assert.That(range.Success, rows[1].Rate);
        double lo = double.Parse(range.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture),
            hi = double.Parse(range.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.That(lo, Is.LessThanOrEqualTo(hi));
        Assert.That(rows[1].Seconds, Is.EqualTo(hi).Within(0.005));      // the upper median of two: the slower pass
    }

    [Test]
    public void BenchWritesNewThenFreedMemory()
    {
        // two timed writes of the same size, the second in a buffer allocated after the first was freed;
        // a row without FLOPs shows n/a, not 0 GFLOP/s; bad sizes, unknown --only keys and a repeat count of 0
        // are refused (the last before the GEMM row, the first to run)
        var rows = Bench.FirstTouch(B, 4);
        Assert.That(rows.Select(r => r.Name), Is.EqualTo(new[] { "first write of new memory",
            "the same, in memory freed before" }));
        Assert.That(rows.All(r => r.Seconds > 0 && r.Flops == 0 && r.Shape == "4 MiB" && r.Rate.EndsWith(" GiB/s")));
        Assert.That(Bench.Table(rows, 100, "x"),
            Does.Contain("| first write of new memory | 4 MiB | ").And.Contain("| n/a | n/a |"));
        Assert.Throws<ArgumentOutOfRangeException>(() => Bench.FirstTouch(B, 0));
        if (backendName != "cpu") return;
        Assert.That(Cli.Program.Main(new[] { "bench", "--device", "cpu", "--only", "memry" }), Is.EqualTo(1));
        foreach (var count in new[] { "--infer-passes", "--steps", "--torch-steps" })
        {
            var (rc, err, _) = TestData.RunCli("bench", "--device", "cpu", "--only", "gemm,step,infer", count, "0");
            Assert.That(rc, Is.EqualTo(1));
            Assert.That(err, Does.Contain(count + " must be a whole number of at least 1")
                .And.Not.Contain("bench: gemm"));
        }
    }
}
