// ACM-Net on the method layer: presets, the import of the original's state_dicts, and the replay of a
// step dumped by benchmarks/reference/acmnet_ref.py (our PyTorch restatement): weights/, inputs/,
// random/ (the snippet drop (B,1,T) and the classifier's dropout (B,F,T), channel-first),
// mining/{inst,cont,back}_idx.npy and mining/attention.npy (float64 (B,T,3)), meta.json.
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Train;

namespace PvlrKernels.Methods.AcmNet;

public sealed class AcmNetMethod : IMethod
{
    public string Name => "acmnet";
    public string Summary => "ACM-Net (2021): action instance, context and background attention";
    public IReadOnlyList<string> Presets { get; } = ["demo", "paper", "tiny"];
    public MethodConfig Preset(string name) => AcmNetConfig.FromPreset(name);
    public MethodConfig ConfigFromJson(string json) => AcmNetConfig.FromJson(json);

    public IMethodModel Build(MethodConfig config, IReadOnlyList<string> classes) =>
        new AcmNetModel(config as AcmNetConfig
            ?? throw new ArgumentException($"a {config.Method} config cannot build an ACM-Net model"), classes);

    public IMethodModel LoadTorch(string path, Backend backend, out string report, IReadOnlyList<string> classes = null)
    {
        var sd = StateDictFile.Read(path);
        var cfg = sd.ConfigJson != null ? Malformed.Guard(path, () => AcmNetConfig.FromJson(sd.ConfigJson))
            : new AcmNetConfig { Preset = "pth", FeatDim = sd.Shape("feature_embedding.0.weight", "ACM-Net")[0],
                NumClasses = sd.Shape("snippet_cls.weight", "ACM-Net")[0] - 1 };
        var model = new AcmNetModel(cfg, sd.ClassesFor(cfg.NumClasses, classes));
        model.Initialize(backend, cfg.Seed);
        report = Checkpoint.FillFromStateDict(path, sd.Tensors, model.P, $"F={cfg.FeatDim}, {cfg.NumClasses} classes");
        return model;
    }

    /// Replays the step with the dump's feature-anchor picks and compares our own (on the dump's float64
    /// attention, in the config's tie order) with them.
    public ReplayResult Replay(string stateDir, Backend backend, Action<MethodConfig> configure = null)
    {
        using var dump = new ReplayDump(stateDir);
        var cfg = dump.Config(meta =>
        {
            var c = new AcmNetConfig
            {
                Preset = "replay", BatchSize = dump.Features.Shape[0], MaxSeqLen = dump.Features.Shape[1],
                    FeatDim = dump.Features.Shape[2],
                NumClasses = dump.Labels.Shape[1],
            };
            if (meta.TryGetProperty("topk",
                out var k)) { c.InsTopK = k[0].GetInt32(); c.ConTopK = k[1].GetInt32(); c.BakTopK = k[2].GetInt32(); }
            if (meta.TryGetProperty("lamb",
                out var l)) { c.Lamb1 = l[0].GetSingle(); c.Lamb2 = l[1].GetSingle(); c.Lamb3 = l[2].GetSingle(); }
            if (meta.TryGetProperty("margin", out var m)) c.FeatMargin = m.GetSingle();
            return c;
        });
        configure?.Invoke(cfg);
        var res = new ReplayResult { Config = cfg, MiningTies = cfg.SortTies.ToString().ToLowerInvariant() };
        var model = new AcmNetModel(cfg, Enumerable.Range(0, cfg.NumClasses).Select(i => $"class{i}").ToArray());
        using var store = model.P;
        store.Allocate(backend);
        dump.LoadWeights(model.P, res);
        var rng = dump.Random();
        string[] branches = ["inst", "cont", "back"];
        var dumped = branches.ToDictionary(n => n, n => dump.Load($"mining/{n}_idx.npy").AsFloat(n));
        using var g = new Graph(backend, model.P, rng) { Training = true, TrainWinogradTile = cfg.TrainWinogradTile };
        int b = cfg.BatchSize, t = cfg.MaxSeqLen;
        var x = g.FromHost(dump.Features.AsFloat("features"), b, t, cfg.FeatDim);
        ReplayDump.Step(g, model.P, rng, () => model.Losses(g, model.Forward(g, x,
            new Dictionary<string, float[]>(dumped)), dump.Labels.AsFloat("labels")), res);
        var att = dump.Load("mining/attention.npy").AsFloat("attention");
        var ks = model.Ks(t);
        res.MiningSource = "the dump's attention";
        for (int i = 0; i < 3; i++)
        {
            var ours = AcmNetModel.TopIndices(att, b, t, i, ks[i], cfg.SortTies);
            res.Mining[branches[i]] = (ours.Zip(dumped[branches[i]]).Count(p => p.First == p.Second), ours.Length);
        }
        return res;
    }
}
