// UM on the method layer: presets, the import of the original's state_dicts (models/UM/model_seed_0.pkl),
// and the replay of a step dumped by benchmarks/reference/um_ref.py (our PyTorch restatement):
//   weights/<name>.npy, inputs/features.npy (B,T,F), inputs/labels.npy (B,C), random/<tag>.npy (the
//   classifier's dropout, channel-first, and the selection mask (B,T)), mining/{act,bkg}_idx.npy and
//   mining/magnitudes.npy (float64), meta.json.
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Train;

namespace PvlrKernels.Methods.Um;

public sealed class UmMethod : IMethod
{
    public string Name => "um";
    public string Summary => "UM (AAAI 2021): background as out-of-distribution by feature magnitude";
    public IReadOnlyList<string> Presets { get; } = ["demo", "paper", "tiny"];
    public MethodConfig Preset(string name) => UmConfig.FromPreset(name);
    public MethodConfig ConfigFromJson(string json) => UmConfig.FromJson(json);

    public IMethodModel Build(MethodConfig config, IReadOnlyList<string> classes) =>
        new UmModel(config as UmConfig
            ?? throw new ArgumentException($"a {config.Method} config cannot build a UM model"), classes);

    public IMethodModel LoadTorch(string path, Backend backend, out string report, IReadOnlyList<string> classes = null)
    {
        var sd = StateDictFile.Read(path);
        UmConfig cfg;
        if (sd.ConfigJson != null) cfg = Malformed.Guard(path, () => UmConfig.FromJson(sd.ConfigJson));
        else
        {
            var conv = sd.Shape("cas_module.conv.0.weight", "UM");
            cfg = new UmConfig { Preset = "pth", FeatDim = conv[1], Hidden = conv[0],
                NumClasses = sd.Shape("cas_module.classifier.0.weight", "UM")[0] };
        }
        var model = new UmModel(cfg, sd.ClassesFor(cfg.NumClasses, classes));
        model.Initialize(backend, cfg.Seed);
        report = Checkpoint.FillFromStateDict(path, sd.Tensors, model.P,
            $"F={cfg.FeatDim}, hidden {cfg.Hidden}, {cfg.NumClasses} classes");
        return model;
    }

    /// Replays the step with the dump's picks and compares our own host-side picks (on the dump's float64
    /// magnitudes and selection mask, in the config's tie order) with them.
    public ReplayResult Replay(string stateDir, Backend backend, Action<MethodConfig> configure = null)
    {
        using var dump = new ReplayDump(stateDir);
        var cfg = dump.Config(meta =>
        {
            var c = new UmConfig
            {
                Preset = "replay", BatchSize = dump.Features.Shape[0], MaxSeqLen = dump.Features.Shape[1],
                    FeatDim = dump.Features.Shape[2],
                NumClasses = dump.Labels.Shape[1], Hidden = dump.Load("weights/cas_module.conv.0.weight.npy").Shape[0],
            };
            if (meta.TryGetProperty("r_act", out var ra)) c.RAct = ra.GetSingle();
            if (meta.TryGetProperty("r_bkg", out var rb)) c.RBkg = rb.GetSingle();
            if (meta.TryGetProperty("alpha", out var a)) c.Alpha = a.GetSingle();
            if (meta.TryGetProperty("beta", out var be)) c.Beta = be.GetSingle();
            if (meta.TryGetProperty("margin", out var m)) c.Margin = m.GetSingle();
            return c;
        });
        configure?.Invoke(cfg);
        var res = new ReplayResult { Config = cfg, MiningTies = cfg.SortTies.ToString().ToLowerInvariant() };
        var model = new UmModel(cfg, Enumerable.Range(0, cfg.NumClasses).Select(i => $"class{i}").ToArray());
        using var store = model.P;
        store.Allocate(backend);
        dump.LoadWeights(model.P, res);
        var rng = dump.Random();
        var dumped = new Dictionary<string, float[]> { ["act"] = dump.Load("mining/act_idx.npy").AsFloat("act"),
            ["bkg"] = dump.Load("mining/bkg_idx.npy").AsFloat("bkg") };
        using var g = new Graph(backend, model.P, rng) { Training = true, TrainWinogradTile = cfg.TrainWinogradTile };
        int b = cfg.BatchSize, t = cfg.MaxSeqLen;
        var x = g.FromHost(dump.Features.AsFloat("features"), b, t, cfg.FeatDim);
        ReplayDump.Step(g, model.P, rng, () => model.Losses(g, model.Forward(g, x, dumped),
            dump.Labels.AsFloat("labels")), res);
        // our own picks on the dump's magnitudes (float64 rounded to float32, as the selection mask is)
        var (kAct, kBkg) = model.Ks(t);
        var (act, bkg) = UmModel.Select(dump.Load("mining/magnitudes.npy").AsFloat("magnitudes"),
            dump.Load("random/drop_out.npy").AsFloat("drop_out"), b, t, kAct, kBkg, cfg.SortTies);
        res.MiningSource = "the dump's magnitudes";
        foreach (var (k, ours) in new[] { ("act", act), ("bkg", bkg) })
            res.Mining[k] = (ours.Zip(dumped[k]).Count(p => p.First == p.Second), ours.Length);
        return res;
    }
}
