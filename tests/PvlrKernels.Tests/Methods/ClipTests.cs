// CLIP's BPE tokenizer, OpenAI-style TorchScript archives and the text tower driven by their weights,
// against tests/reference/make_clip_fixtures.py (a restatement of CLIP's tokenizer; the features from
// torch's own nn.MultiheadAttention on a CLIP-shaped module saved with torch.jit.save): the committed
// small fixture (Fixtures/clip, a compact token table), and where torch is installed a fresh archive with
// RN50's text shapes (width 512, 12 layers, 8 heads, 49,408 tokens, projection 1024).
using System.Text.Json;
using NUnit.Framework;
using PvlrKernels.Eval;
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Model;
using PvlrKernels.Methods;
using PvlrKernels.Methods.Pvlr;

namespace PvlrKernels.Tests;

public sealed class ClipTests
{
    static string Fixture => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "clip");
    static string Vocab => ReferencePython.RepoPath("features", "clip", "bpe_simple_vocab_16e6.txt.gz");

    [Test]
    public void TokenIdsEqualClipsAlgorithm()
    {
        var want = JsonSerializer.Deserialize<Dictionary<string, int[]>>(File.ReadAllText(Path.Combine(Fixture,
            "tokens.json")));
        Assert.That(want, Has.Count.GreaterThan(25));
        foreach (var (text, ids) in want) Assert.That(ClipTokenizer.Default.Encode(text), Is.EqualTo(ids), text);
    }

    /// The ids CLIP's README prints for clip.tokenize(["a diagram", "a dog", "a cat"]).
    [Test]
    public void PublishedTokenIds()
    {
        Assert.That(ClipTokenizer.Default.Tokenize("a diagram").Take(5), Is.EqualTo(new[] { 49406, 320, 22697, 49407,
            0 }));
        Assert.That(ClipTokenizer.Default.Encode("a dog"), Is.EqualTo(new[] { 320, 1929 }));
        Assert.That(ClipTokenizer.Default.Encode("a cat"), Is.EqualTo(new[] { 320, 2368 }));
        Assert.That(ClipTokenizer.Default.Tokenize("a cat"), Has.Length.EqualTo(77));
        Assert.Throws<ArgumentException>(() => ClipTokenizer.Default.Tokenize(string.Join(" ",
            Enumerable.Repeat("cat", 76))));
    }

    /// The THUMOS prompt rows: [SOT, 1-3 BPE ids, EOT], so the EOT lands at 10, 11 or 12 after the 4+4 prompt.
    [Test]
    public void ThumosClassesTokenizeAsTheOriginal()
    {
        var (tokens, vocab) = ClassTokens.Build(ClassTokens.Names.Keys.ToArray());
        Assert.That(vocab, Is.EqualTo(49408));
        Assert.That(tokens.Select(t => t.Length - 2).Order().Distinct(), Is.EqualTo(new[] { 1, 2, 3 }));
        Assert.That(tokens[3], Is.EqualTo(new[] { 49406, 3772, 537, 23917, 49407 }), "clean and jerk");
    }

    [Test]
    public void TorchScriptArchiveReadsAsAStateDict()
    {
        var sd = TorchZip.Load(Path.Combine(Fixture, "clip.pt"));
        Assert.That(sd.Keys,
            Does.Contain("transformer.resblocks.0.attn.in_proj_weight").And.Contain("visual.weight")
                .And.Contain("token_embedding.weight"));
        Assert.That(sd["transformer.resblocks.0.attn.in_proj_weight"].shape, Is.EqualTo(new[] { 192, 64 }));
        var w = ClipWeights.Load(Path.Combine(Fixture, "clip.pt"));
        Assert.That((w.Width, w.Layers, w.Context, w.ProjectionWidth), Is.EqualTo((64, 1, 77, 32)));
        Assert.That(w.Tensors.Keys, Has.None.StartsWith("visual").And.None.EqualTo("logit_scale"));
    }

    /// A PVLR state_dict (init_thumos.pth's layout) gives the same tower under `clipmodel.`.
    [Test]
    public void PvlrStateDictGivesTheSameTower()
    {
        var sd = TorchZip.Load(Path.Combine(Fixture, "clip.pt"));
        var path = Path.Combine(Path.GetTempPath(), "pvlr-clipsd-" + Guid.NewGuid().ToString("N")[..8] + ".pth");
        TorchZip.Save(path, sd.Select(kv => ("clipmodel." + kv.Key, kv.Value.shape,
            kv.Value.data)).Append(("fusion.0.weight", new[] { 2 }, new[] { 1f, 2f })));
        try
        {
            var a = ClipWeights.Load(Path.Combine(Fixture, "clip.pt"));
            var b = ClipWeights.Load(path);
            Assert.That(b.Tensors.Keys, Is.EquivalentTo(a.Tensors.Keys));
            foreach (var (k, v) in a.Tensors) Assert.That(b.Tensors[k].data, Is.EqualTo(v.data), k);
        }
        finally { File.Delete(path); }
    }

    static float[] TextFeatures(string dir, bool compact)
    {
        using var meta = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "meta.json")));
        var clip = ClipWeights.Load(Path.Combine(dir, "clip.pt"));
        var classes = ClassTokens.Names.Keys.ToArray();
        var cfg = PvlrConfig.Tiny();
        cfg.NumClasses = classes.Length;
        cfg.EmbedDim = clip.ProjectionWidth;
        clip.Configure(cfg);
        (int[][], int)? prompt = null;
        if (compact)
        {   // the archive's rows hold the listed ids in order
            var rowOf = meta.RootElement.GetProperty("row_ids").EnumerateArray().Select((e, r) => (id: e.GetInt32(),
                r)).ToDictionary(x => x.id, x => x.r);
            prompt = (ClassTokens.Build(classes).tokens.Select(t => t.Select(id => rowOf[id]).ToArray()).ToArray(),
                rowOf.Count);
        }
        using var backend = new CpuBackend();
        var model = new PvlrModel(cfg, classes, prompt);
        model.Initialize(backend, 1);
        using var store = model.Parameters;
        clip.Apply(model);
        model.Parameters.Set("embedding.weight", Npy.Load(Path.Combine(dir, "embedding.npy")).AsFloat());
        using var g = new Graph(backend, model.Parameters);
        return Inference.TestConstants(model, g);
    }

    [Test]
    public void TextFeaturesEqualTorchsOnTheCommittedArchive()
    {
        var want = Npy.Load(Path.Combine(Fixture, "text_features.npy")).AsDouble();
        Check.Close(TextFeatures(Fixture, compact: true), want, 1e-5, 1e-5, "text features");
        Assert.That(want.Max(Math.Abs), Is.GreaterThan(0.1), "features of a size where 1e-5 means something");
    }

    [Test]
    public void TextFeaturesEqualTorchsWithRn50ShapesWhereTorchIsInstalled()
    {
        ReferencePython.WithFixture("make_clip_fixtures.py",
            $"\"{Vocab}\" --width 512 --layers 12 --proj 1024 --seed 8", dir =>
        {
            var sd = TorchZip.Load(Path.Combine(dir, "clip.pt"));
            Assert.That(sd["token_embedding.weight"].shape, Is.EqualTo(new[] { 49408, 512 }));
            Check.Close(TextFeatures(dir, compact: false), Npy.Load(Path.Combine(dir,
                "text_features.npy")).AsDouble(), 1e-5, 1e-5, "text features, RN50 shapes");
        });
    }

    /// `pvlr train --clip-weights` on a CLIP-shaped archive with the tiny preset's feature width: the tower
    /// takes the archive's dimensions and weights (and the run's checkpoint holds them).
    [Test]
    public void TrainTakesClipWeightsWhereTorchIsInstalled()
    {
        ReferencePython.WithFixture("make_clip_fixtures.py", $"\"{Vocab}\" --width 64 --layers 1 --proj 8 --seed 4",
            dir =>
        {
            var run = Path.Combine(dir, "run");
            var r = TestData.RunCli("train", "--preset", "tiny", "--max-iter", "2", "--device", "cpu", "--data",
                TrainingTests.TinyDataDir, "--out", run, "--clip-weights", Path.Combine(dir, "clip.pt"));
            Assert.That(r.rc, Is.EqualTo(0), r.err);
            Assert.That(r.output, Does.Contain("width 64, 1 layers, 1 heads, projection 8"));
            using var b = new CpuBackend();
            var (model, _, _) = Train.Checkpoint.Load(Path.Combine(run, "last.safetensors"), b, optimizer: false);
            using var store = model.Parameters;
            var sd = TorchZip.Load(Path.Combine(dir, "clip.pt"));
            Assert.That(model.Parameters.Get("clipmodel.transformer.resblocks.0.mlp.c_fc.weight"),
                Is.EqualTo(sd["transformer.resblocks.0.mlp.c_fc.weight"].data));
            Assert.That(model.Parameters.Get("clipmodel.token_embedding.weight"),
                Is.EqualTo(sd["token_embedding.weight"].data));
        });
    }

    /// A compact token table (or a projection of the wrong width) is refused with one line naming the file.
    [Test]
    public void UnusableClipWeightsAreNamed()
    {
        var pt = Path.Combine(Fixture, "clip.pt");
        var r = TestData.RunCli("train", "--preset", "tiny", "--max-iter", "1", "--device", "cpu", "--data",
            TrainingTests.TinyDataDir, "--out", Path.Combine(Path.GetTempPath(),
            "pvlr-x-" + Guid.NewGuid().ToString("N")[..8]), "--clip-weights", pt);
        Assert.That(r.rc, Is.Not.EqualTo(0));
        Assert.That(r.err, Does.StartWith("pvlr: error:").And.Contain(pt).And.Contain("text_projection maps to 32"));
        var w = ClipWeights.Load(pt);
        var cfg = PvlrConfig.Tiny();
        cfg.EmbedDim = 32;
        w.Configure(cfg);
        using var b = new CpuBackend();
        var model = new PvlrModel(cfg, Enumerable.Range(0,
            cfg.NumClasses).Select(i => ClassTokens.Names.Keys.ElementAt(i)).ToArray());
        model.Initialize(b, 1);
        using var store = model.Parameters;
        var e = Assert.Throws<DataFormatException>(() => w.Apply(model));
        Assert.That(e.Message, Does.Contain("token_embedding.weight").And.Contain("49408 rows"));
    }
}
