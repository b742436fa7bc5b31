// PyTorch checkpoints in (fixtures made by tests/reference/make_pth_fixtures.py with Debian's
// python3-torch), .pth and safetensors out, refusal of a pickle that calls os.system.
using NUnit.Framework;
using PvlrKernels.Eval;
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Model;
using PvlrKernels.Methods;
using PvlrKernels.Methods.Pvlr;
using PvlrKernels.Train;

namespace PvlrKernels.Tests;

public sealed class CheckpointTests
{
    static string Fx => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "pth");
    static string Tmp(string ext) => Path.Combine(Path.GetTempPath(),
        "pvlr-ckpt-" + Guid.NewGuid().ToString("N")[..8] + ext);

    /// Writes `entries` (a loaded state dict, possibly filtered) to a new temporary .pth; returns its path.
    static string SavePth(IEnumerable<KeyValuePair<string, (int[] shape, float[] data)>> entries)
    {
        var path = Tmp(".pth");
        TorchZip.Save(path, entries.Select(kv => (kv.Key, kv.Value.shape, kv.Value.data)));
        return path;
    }

    static void AssertSameAs(Dictionary<string, (int[] shape, float[] data)> got, string expectedDir)
    {
        var files = Directory.GetFiles(Path.Combine(Fx, expectedDir), "*.npy");
        Assert.That(got.Keys, Is.EquivalentTo(files.Select(Path.GetFileNameWithoutExtension)));
        foreach (var f in files)
        {
            var e = Npy.Load(f);
            var name = Path.GetFileNameWithoutExtension(f);
            Assert.That(got[name].shape, Is.EqualTo(e.Shape), name);
            Assert.That(got[name].data, Is.EqualTo(e.AsFloat()), name);       // exact: fp32 copied, fp16 widened
        }
    }

    [Test]
    public void LoadsAPlainFp32StateDict() => AssertSameAs(TorchZip.Load(Path.Combine(Fx, "tiny_state_dict.pth")),
        "expected");

    [Test]
    public void LoadsAWrappedFp16StateDictWithViews() => AssertSameAs(TorchZip.Load(Path.Combine(Fx,
        "tiny_wrapped_fp16.pth")), "expected_fp16");

    [Test]
    public void RefusesAPickleThatCallsOsSystem()
    {
        var e = Assert.Throws<DataFormatException>(() => TorchZip.Load(Path.Combine(Fx, "evil.pth")));
        Assert.That(e.Message, Does.Contain("system").And.Contain("not on the allowlist").And.Contain("evil.pth"));
        Assert.That(File.Exists("/tmp/pvlr-pwned"), Is.False);
    }

    [Test]
    public void MapsOntoTheModelWithAReport()
    {
        using var b = new CpuBackend();
        var model = Checkpoint.LoadTorch(Path.Combine(Fx, "tiny_state_dict.pth"), b, out var report);
        using var store = model.Parameters;
        Assert.That(((PvlrConfig)model.Config).FeatDim,
            Is.EqualTo(16)); Assert.That(((PvlrConfig)model.Config).ClipLayers,
            Is.EqualTo(1)); Assert.That(((PvlrConfig)model.Config).ClipHeads, Is.EqualTo(1));
        Assert.That(report, Does.Contain("clipmodel.logit_scale").And.Contain("unused"));
        Assert.That(report, Does.Contain("clipmodel.token_embedding.weight"),
            "our word-level token table has another vocabulary size");
        var want = Npy.Load(Path.Combine(Fx, "expected", "fusion2.0.weight.npy")).AsFloat();
        Assert.That(model.Parameters.Get("fusion2.0.weight"), Is.EqualTo(want));
    }

    [Test]
    public void AMissingTrainableWeightIsAnError()
    {
        var sd = TorchZip.Load(Path.Combine(Fx, "tiny_state_dict.pth"));
        var path = SavePth(sd.Where(kv => kv.Key != "fAttn.attention.3.weight"));
        using var b = new CpuBackend();
        var e = Assert.Throws<DataFormatException>(() => Checkpoint.LoadTorch(path, b, out _));
        Assert.That(e.Message, Does.Contain("fAttn.attention.3.weight").And.Contain(path));
        File.Delete(path);
    }

    [Test]
    public void ExportedPthReadsBackExactly()
    {
        var sd = TorchZip.Load(Path.Combine(Fx, "tiny_wrapped_fp16.pth"));
        var path = SavePth(sd);
        var back = TorchZip.Load(path);
        foreach (var (k, v) in sd)
        {
            Assert.That(back[k].shape, Is.EqualTo(v.shape), k);
            Assert.That(back[k].data, Is.EqualTo(v.data), k);
        }
        File.Delete(path);
    }

    /// Where python3-torch is installed, torch.load reads our .pth, also with the export's config records.
    [Test]
    public void TorchLoadsOurPth()
    {
        var sd = TorchZip.Load(Path.Combine(Fx, "tiny_wrapped_fp16.pth"));
        var path = Tmp(".pth");
        TorchZip.Save(path, sd.Select(kv => (kv.Key, kv.Value.shape, kv.Value.data)),
            new Dictionary<string, string> { [Checkpoint.ConfigRecord] = "{}" });
        Assert.That(TorchZip.ReadTextRecords(path, Checkpoint.ConfigRecord, Checkpoint.ClassesRecord),
            Is.EqualTo(new Dictionary<string, string> { [Checkpoint.ConfigRecord] = "{}" }));
        var (rc, so,
            se) = ReferencePython.Run($"-c \"import torch,sys; sd=torch.load(sys.argv[1]); print(len(sd), "
                + $"float(sd['fusion.0.bias'].sum()))\" \"{path}\"");
        Assert.That(rc, Is.EqualTo(0), se);
        Assert.That(so.Split(' ')[0], Is.EqualTo(sd.Count.ToString()));
        Assert.That(double.Parse(so.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture),
            Is.EqualTo(sd["fusion.0.bias"].data.Sum(x => (double)x)).Within(1e-4));
        File.Delete(path);
    }

    [Test]
    public void CliExportsBothFormatsAndEvalsAPth()
    {
        var st = Tmp(".safetensors");
        var pth = Tmp(".pth");
        Assert.That(Cli.Program.Main(new[] { "export", "--checkpoint", Path.Combine(Fx, "tiny_state_dict.pth"),
            "--format", "safetensors", "--out", st }), Is.EqualTo(0));
        Assert.That(Cli.Program.Main(new[] { "export", "--checkpoint", st, "--format", "pth", "--out", pth }),
            Is.EqualTo(0));
        var a = TorchZip.Load(pth);
        Assert.That(a["fusion2.0.weight"].data, Is.EqualTo(Npy.Load(Path.Combine(Fx, "expected",
            "fusion2.0.weight.npy")).AsFloat()));
        Assert.That(Cli.Program.Main(new[] { "eval", "--checkpoint", Path.Combine(Fx, "tiny_state_dict.pth"),
            "--data", TrainingTests.TinyDataDir, "--device", "cpu" }), Is.EqualTo(0));
        File.Delete(st);
        File.Delete(pth);
    }

    static readonly Dictionary<string, string> PresetData = new();

    /// Demo data with a preset's widths and short videos (so even the paper preset evaluates in seconds).
    static string DataFor(PvlrConfig cfg)
    {
        lock (PresetData)
        {
            if (PresetData.TryGetValue(cfg.Preset, out var d)) return d;
            d = Path.Combine(Path.GetTempPath(), $"pvlr-export-{cfg.Preset}-{Environment.ProcessId}");
            DemoData.Generate(d, new DemoOptions { FeatDim = cfg.FeatDim, ClipDim = cfg.EmbedDim, MaxLength = 24,
                MaxVideos = 40 });
            return PresetData[cfg.Preset] = d;
        }
    }

    /// `pvlr export` to either format and back changes no configuration value: eval of each export prints
    /// the checkpoint's own table, for every preset. The presets' CLIP head counts are not width/64 (tiny
    /// 8/2, demo 64/4) and the classes are the data's, so a config guessed from tensor shapes evaluates
    /// differently.
    [TestCase("tiny")]
    [TestCase("demo")]
    [TestCase("paper")]
    public void ExportedCheckpointsEvaluateAsTheCheckpoint(string preset)
    {
        var cfg = PvlrConfig.FromPreset(preset);
        // test-time settings a guess would not restore
        cfg.WinogradTile = 4;
        cfg.SigTInfer = 0.05f;
        var data = DataFor(cfg);
        var classes = Annotations.Load(Path.Combine(data, WtalDataset.AnnDir)).Classes;
        string st = Tmp(".safetensors"), pth = Tmp(".pth"), back = Tmp(".safetensors");
        using (var b = new CpuBackend())
        {
            var model = new PvlrModel(cfg, classes);
            model.Initialize(b, 17);
            using var store = model.Parameters;
            Checkpoint.Save(st, model, b, 3, 0, includeOptimizer: false);
        }
        try
        {
            Assert.That(TestData.RunCli("export", "--checkpoint", st, "--format", "pth", "--out", pth).rc,
                Is.EqualTo(0));
            Assert.That(TestData.RunCli("export", "--checkpoint", pth, "--format", "safetensors", "--out", back).rc,
                Is.EqualTo(0));
            string Table(string ckpt)
            {
                var (rc, err, output) = TestData.RunCli("eval", "--checkpoint", ckpt, "--data", data, "--device",
                    "cpu");
                Assert.That(rc, Is.EqualTo(0), err);
                return output[output.IndexOf("| mAP@0.1", StringComparison.Ordinal)..];
            }
            var want = Table(st);
            Assert.That(want, Does.Contain("classification mAP"));
            Assert.That(Table(pth), Is.EqualTo(want), "eval of the .pth export");
            Assert.That(Table(back), Is.EqualTo(want), "eval of the safetensors export of the .pth");
            using var b2 = new CpuBackend();
            var loaded = Checkpoint.LoadTorch(pth, b2, out _);
            using var s2 = loaded.Parameters;
            var c = PvlrConfig.FromJson(cfg.ToJson());
            Assert.That(((PvlrConfig)loaded.Config).ToJson(), Is.EqualTo(c.ToJson()), "every configuration value");
            Assert.That(loaded.Classes, Is.EqualTo(classes));
        }
        finally
        {
            foreach (var f in new[] { st, pth, back }) if (File.Exists(f)) File.Delete(f);
        }
    }

    /// An option the command does not take is an error that lists the command's options, before any work
    /// (a misspelt --max-iter would otherwise train for the default count).
    [Test]
    public void CliRefusesOptionsTheCommandDoesNotTake()
    {
        var train = TestData.RunCli("train", "--max-iters", "5");
        var export = TestData.RunCli("export", "--checkpoint", Path.Combine(Fx, "tiny_state_dict.pth"), "--format",
            "pth", "--out", Tmp(".pth"), "--device", "cpu");
        Assert.That(train.rc, Is.EqualTo(1));
        Assert.That(export.rc, Is.EqualTo(1));
        Assert.That(train.err, Does.Contain("pvlr train: unknown option --max-iters").And.Contain("--max-iter,"));
        Assert.That(export.err, Does.Contain("pvlr export: unknown option --device"));
    }

    /// `pvlr infer`, the one-video deployment path: its JSON holds what Inference.LocalizeVideo finds for the
    /// same features, and each bad input names the file (a NaN also its snippet and feature) and leaves an
    /// earlier output file as it was.
    [Test]
    public void CliInferWritesTheVideosDetectionsAndNamesBadFeatures()
    {
        var ckpt = Path.Combine(Fx, "tiny_state_dict.pth");
        using var b = new CpuBackend();
        var model = Checkpoint.Load(ckpt, b, optimizer: false).model;
        int t = 40, f = ((PvlrConfig)model.Config).FeatDim;
        var x = new float[t * f];
        for (int i = 0; i < x.Length; i++) x[i] = MathF.Sin(0.37f * i) * (1 + i % 5);
        var dir = Tmp("");
        Directory.CreateDirectory(dir);
        var video = Path.Combine(dir, "video_test_0000004.npy");
        Npy.Save(video, x, t, f);
        var json = Path.Combine(dir, "detections.json");
        string Run(string features)
        {
            var (rc, err, _) = TestData.RunCli("infer", "--checkpoint", ckpt, "--features", features, "--out", json,
                "--device", "cpu");
            return rc + " " + err;
        }
        Assert.That(Run(video), Does.StartWith("0 "));
        using (var g = new Graph(b, model.Parameters))
        {
            var (dets, _) = Inference.LocalizeVideo(model, g, "video_test_0000004", x, t,
                Inference.TestConstants(model, g));
            var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(json)).RootElement.GetProperty("results");
            var got = doc.EnumerateObject().Single();
            Assert.That(got.Name, Is.EqualTo("video_test_0000004"));
            var rows = got.Value.EnumerateArray().ToList();
            Assert.That(rows, Has.Count.EqualTo(dets.Count).And.Count.GreaterThan(0));
            for (int i = 0; i < rows.Count; i++)
            {
                Assert.That(rows[i].GetProperty("label").GetString(), Is.EqualTo(model.Classes[dets[i].Label]));
                Assert.That(rows[i].GetProperty("score").GetDouble(), Is.EqualTo(dets[i].Score));
                Assert.That(rows[i].GetProperty("segment")[0].GetDouble(),
                    Is.EqualTo(dets[i].Start / Eval.Evaluator.SnippetsPerSecond).Within(1e-12));
            }
        }
        var written = File.ReadAllText(json);

        var bad = (float[])x.Clone();
        bad[7 * f + 3] = float.NaN;
        var nan = Path.Combine(dir, "nan.npy");
        Npy.Save(nan, bad, t, f);
        Assert.That(Run(nan), Does.StartWith("1 ").And.Contain($"{nan}: non-finite value NaN at snippet 7, feature 3"));
        var empty = Path.Combine(dir, "empty.npy");
        Npy.Save(empty, Array.Empty<float>(), 0, f);
        Assert.That(Run(empty), Does.StartWith("1 ").And.Contain($"{empty}: shape (0,{f}), no snippets"));
        var wide = Path.Combine(dir, "wide.npy");
        Npy.Save(wide, new float[t * (f + 1)], t, f + 1);
        Assert.That(Run(wide), Does.StartWith("1 ").And.Contain($"{wide}: shape ({t},{f + 1}), expected (T, {f})"));
        var torn = Path.Combine(dir, "torn.npy");
        File.WriteAllBytes(torn, File.ReadAllBytes(video)[..200]);
        Assert.That(Run(torn), Does.StartWith("1 ").And.Contain(torn).And.Contain("truncated"));
        Assert.That(File.ReadAllText(json), Is.EqualTo(written), "a failed run leaves the earlier output");
    }

    /// `pvlr eval` on data of another feature width than the checkpoint's stops before the evaluation,
    /// naming the feature file, the checkpoint and both widths.
    [Test]
    public void CliEvalNamesAFeatureWidthTheCheckpointDoesNotRead()
    {
        var ckpt = Path.Combine(Fx, "tiny_state_dict.pth");
        var (rc, err, _) = TestData.RunCli("eval", "--checkpoint", ckpt, "--data", InferenceTests.WideDataDir,
            "--device", "cpu");
        Assert.That(rc, Is.EqualTo(1));
        Assert.That(err,
            Does.Contain($"{Path.Combine(InferenceTests.WideDataDir, WtalDataset.FeatFile)}: feature width 32, the "
                + $"checkpoint {ckpt} expects 16"));
    }
}
