// The method layer carries a method other than PVLR through the shared training loop, checkpoints,
// evaluation and the CLI: a minimal MIL localizer (a linear CAS, top-k multiple-instance loss) registered
// the way an embedding application would register its own.
using System.Text.Json;
using System.Text.Json.Serialization;
using NUnit.Framework;
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Eval;
using PvlrKernels.Methods;
using PvlrKernels.Methods.Pvlr;
using PvlrKernels.Train;

namespace PvlrKernels.Tests;

public sealed class MilConfig : MethodConfig
{
    public override string Method => MilMethod.Id;
    public int TopKDivisor { get; set; } = 8;
}

/// CAS = x W^T + b over C+1 classes (background last), attention = sigmoid of a second linear; the loss
/// is the cross entropy of the top-k mean of the CAS against the normalised video labels.
public sealed class MilModel : IMethodModel
{
    readonly MilConfig cfg;
    public MethodConfig Config => cfg;
    public string[] Classes { get; }
    public ParameterStore Parameters { get; } = new();

    public MilModel(MilConfig cfg, IReadOnlyList<string> classes)
    {
        this.cfg = cfg;
        Classes = classes.ToArray();
        int c1 = cfg.NumClasses + 1;
        Parameters.Add("cas.weight", [c1, cfg.FeatDim]);
        Parameters.Add("cas.bias", [c1]);
        Parameters.Add("attn.weight", [1, cfg.FeatDim]);
        Parameters.Add("attn.bias", [1]);
    }

    public void Initialize(Backend backend, int seed)
    {
        Parameters.Allocate(backend);
        var r = new Random(seed);
        foreach (var p in Parameters.List)
            Parameters.Set(p.Name, Enumerable.Range(0,
                (int)p.Size).Select(_ => (float)((r.NextDouble() - 0.5) * 0.2)).ToArray());
    }

    Tensor W(string n) => Parameters[n].Value;

    public LossTerms Losses(Graph g, Tensor x, Tensor clip, float[] labels)
    {
        int b = x.Dim(0), t = x.Dim(1), c = cfg.NumClasses, k = Math.Max(1, t / cfg.TopKDivisor);
        var cas = g.Linear(x, W("cas.weight"), W("cas.bias"));                          // (B, T, C+1)
        var (top, _) = g.TopK(cas, 1, k);                                                // (B, k, C+1)
        var logp = g.LogSoftmax(g.Mean(top, 1), 2);                                      // (B, 1, C+1)
        var y = new float[b * (c + 1)];
        for (int i = 0; i < b; i++)
        {
            float n = 0;
            for (int j = 0; j < c; j++) n += labels[i * c + j];
            for (int j = 0; j < c; j++) y[i * (c + 1) + j] = labels[i * c + j] / Math.Max(n, 1f);
        }
        var cls = g.Scale(g.SumAll(g.Mul(logp, g.FromHost(y, b, 1, c + 1))), -1f / b);
        var terms = new LossTerms { Total = cls };
        terms.Terms["cls_loss"] = cls;
        return terms;
    }

    public IReadOnlyList<(string label, string term)> ProgressTerms { get; } = [("cls", "cls_loss")];

    public (float[] cas, float[] attn)[] Signals(Graph g, float[] testConstants,
        IReadOnlyList<(string name, ReadOnlyMemory<float> features, int t)> videos)
    {
        g.Reset();
        g.Training = false;
        using (g.NoGrad())
            return videos.Select(v =>
            {
                var x = g.FromHost(v.features.Span, 1, v.t, cfg.FeatDim);
                var cas = g.Softmax(g.Linear(x, W("cas.weight"), W("cas.bias")), 2);
                var attn = g.Sigmoid(g.Linear(x, W("attn.weight"), W("attn.bias")));
                return (g.ToHost(cas), g.ToHost(attn));
            }).ToArray();
    }

    public (List<Detection> detections, float[] scores) Detect(string video, float[] cas, float[] attn, int t,
        List<(double, double)> ambiguous) =>
        Proposals.Generate(video, cas, attn, t, cfg.NumClasses, new ProposalConfig(), ambiguous);
}

public sealed class MilMethod : IMethod
{
    public const string Id = "mil-test";
    public string Name => Id;
    public string Summary => "a linear top-k MIL localizer (tests)";
    public IReadOnlyList<string> Presets { get; } = ["tiny"];
    public MethodConfig Preset(string name) => name == "tiny"
        ? new MilConfig { Preset = "tiny", FeatDim = 16, BatchSize = 6, MaxSeqLen = 32, MaxIter = 40, Interval = 20,
            WarmupIter = 0, Lr = 1e-2f }
        : throw new ArgumentException($"unknown preset '{name}' (tiny)");
    public MethodConfig ConfigFromJson(string json) => MethodConfig.FromJson<MilConfig>(json);
    public IMethodModel Build(MethodConfig config, IReadOnlyList<string> classes) => new MilModel((MilConfig)config,
        classes);
    public IMethodModel LoadTorch(string path, Backend backend, out string report,
        IReadOnlyList<string> classes = null) =>
        throw new NotSupportedException();
    public ReplayResult Replay(string stateDir, Backend backend,
        Action<MethodConfig> configure = null) => throw new NotSupportedException();
}

[NonParallelizable]
public sealed class MethodLayerTests
{
    static MethodLayerTests()
    {
        if (!MethodRegistry.All.Any(m => m.Name == MilMethod.Id)) MethodRegistry.Register(new MilMethod());
    }

    static string Tmp() => Path.Combine(Path.GetTempPath(), "pvlr-method-" + Guid.NewGuid().ToString("N")[..8]);

    [Test]
    public void ASecondMethodTrainsCheckpointsAndEvaluatesThroughTheSharedLoop()
    {
        var ds = WtalDataset.Load(TrainingTests.TinyDataDir);
        var cfg = MethodRegistry.Get(MilMethod.Id).Preset("tiny");
        var dir = Tmp();
        var log = new StringWriter();
        using (var tr = new Trainer(cfg, ds, new CpuBackend(), log))
        {
            Assert.That(tr.Model, Is.InstanceOf<MilModel>());
            var first = tr.TrainStep()["total"];
            var r = tr.Run(dir, cfg.MaxIter);
            Assert.That(tr.History[^1]["total"], Is.LessThan(first), "the MIL loss falls");
            Assert.That(r.Avg01_07, Is.GreaterThanOrEqualTo(0));
        }
        Assert.That(log.ToString(), Does.Contain("| cls ").And.Not.Contain("distill"),
            "the progress line shows the method's own terms");
        var json = File.ReadAllText(Path.Combine(dir, "config.json"));
        Assert.That(json, Does.Contain($"\"Method\": \"{MilMethod.Id}\""));
        using var b = new CpuBackend();
        var (model, step, _) = Checkpoint.Load(Path.Combine(dir, "last.safetensors"), b);
        using (model.Parameters)
        {
            Assert.That(model, Is.InstanceOf<MilModel>());
            Assert.That(step, Is.EqualTo(cfg.MaxIter));
        }
        // the CLI goes through the same layer: eval names the method, a wrong --method and PVLR-only
        // options are refused with one line
        var (rc, err, output) = TestData.RunCli("eval", "--checkpoint", Path.Combine(dir, "last.safetensors"),
            "--data", TrainingTests.TinyDataDir, "--device", "cpu");
        Assert.That(rc, Is.EqualTo(0), err);
        Assert.That(output, Does.Contain(MilMethod.Id).And.Contain("AVG(0.1:0.7)"));
        (rc, err, _) = TestData.RunCli("eval", "--checkpoint", Path.Combine(dir, "last.safetensors"), "--method",
            "pvlr", "--device", "cpu");
        Assert.That((rc, err.Trim()), Is.EqualTo((1,
            $"pvlr: error: {dir}/last.safetensors: the checkpoint's metadata holds a {MilMethod.Id} model, not pvlr")));
        (rc, err, _) = TestData.RunCli("train", "--method", MilMethod.Id, "--preset", "tiny", "--mining-ties",
            "torch", "--out", Tmp());
        Assert.That((rc, err.Trim()), Is.EqualTo((1,
            $"pvlr: error: --mining-ties applies to PVLR, not to the {MilMethod.Id} method")));
        Directory.Delete(dir, true);
    }

    [Test]
    public void MethodsAreNamedAndOldConfigsArePvlr()
    {
        var (rc, err, _) = TestData.RunCli("train", "--method", "nope", "--out", Tmp());
        Assert.That((rc, err.Trim()), Is.EqualTo((1, $"pvlr: error: unknown method 'nope' ({MethodRegistry.Names})")));
        Assert.Throws<ArgumentException>(() => MethodRegistry.Register(new MilMethod()), "a second method of one name");
        var paper = PvlrConfig.Paper().ToJson();
        Assert.That(paper, Does.Contain("\"Method\": \"pvlr\""));
        using var doc = JsonDocument.Parse(paper);
        var old = string.Join(",",
            doc.RootElement.EnumerateObject().Where(p => p.Name != "Method").Select(p => p.ToString()));
        var cfg = MethodRegistry.ConfigFromJson("{" + old + "}");
        Assert.That(cfg, Is.InstanceOf<PvlrConfig>(), "a config.json from before the Method field is PVLR's");
        Assert.That(cfg.ToJson(), Is.EqualTo(paper));
    }
}
