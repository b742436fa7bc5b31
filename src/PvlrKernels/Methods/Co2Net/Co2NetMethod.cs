// CO2-Net on the method layer: presets, the import of the original's PyTorch state_dicts, and the replay
// of a step dumped by benchmarks/reference/co2net_ref.py (our PyTorch restatement):
//   weights/<state_dict name>.npy, inputs/features.npy (B,T,F), inputs/labels.npy (B,C),
//   random/<tag>.npy (dropout masks, channel-first as the original's tensors), meta.json (random_order, k, alpha).
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Train;

namespace PvlrKernels.Methods.Co2Net;

public sealed class Co2NetMethod : IMethod
{
    public string Name => "co2net";
    public string Summary => "CO2-Net (ACM MM 2021): cross-modal consensus attention, PVLR's base";
    public IReadOnlyList<string> Presets { get; } = ["demo", "paper", "tiny", "anet", "anet-demo"];
    public MethodConfig Preset(string name) => Co2NetConfig.FromPreset(name);
    public MethodConfig ConfigFromJson(string json) => Co2NetConfig.FromJson(json);

    public IMethodModel Build(MethodConfig config, IReadOnlyList<string> classes) =>
        new Co2NetModel(config as Co2NetConfig
            ?? throw new ArgumentException($"a {config.Method} config cannot build a CO2-Net model"), classes);

    /// A CO2-Net state_dict (the original's ckpt/best_*.pkl, or our export with its records). Without our
    /// records the widths come from the tensors' shapes and the classes default to THUMOS14's 20.
    public IMethodModel LoadTorch(string path, Backend backend, out string report, IReadOnlyList<string> classes = null)
    {
        var sd = StateDictFile.Read(path);
        var cfg = sd.ConfigJson != null ? Malformed.Guard(path, () => Co2NetConfig.FromJson(sd.ConfigJson))
            : new Co2NetConfig
            {
                Preset = "pth", FeatDim = sd.Shape("fusion.0.weight", "CO2-Net")[0],
                    AttnHidden = sd.Shape("vAttn.attention.0.weight", "CO2-Net")[0],
                NumClasses = sd.Shape("classifier.4.weight", "CO2-Net")[0] - 1,
            };
        var model = new Co2NetModel(cfg, sd.ClassesFor(cfg.NumClasses, classes));
        model.Initialize(backend, cfg.Seed);
        report = Checkpoint.FillFromStateDict(path, sd.Tensors, model.P,
            $"F={cfg.FeatDim}, attention {cfg.AttnHidden}, {cfg.NumClasses} classes");
        return model;
    }

    public ReplayResult Replay(string stateDir, Backend backend, Action<MethodConfig> configure = null)
    {
        using var dump = new ReplayDump(stateDir);
        var cfg = dump.Config(meta =>
        {
            var c = new Co2NetConfig
            {
                Preset = "replay", BatchSize = dump.Features.Shape[0], MaxSeqLen = dump.Features.Shape[1],
                    FeatDim = dump.Features.Shape[2],
                NumClasses = dump.Labels.Shape[1],
                    AttnHidden = dump.Load("weights/vAttn.attention.0.weight.npy").Shape[0],
            };
            if (meta.TryGetProperty("k", out var k)) c.TrainTopK = k.GetInt32();
            if (meta.TryGetProperty("pool_t", out var pt)) c.PoolT = pt.GetInt32();
            if (meta.TryGetProperty("alpha", out var a))
            {
                c.Alpha1 = a.GetProperty("alpha1").GetSingle();
                c.Alpha2 = a.GetProperty("alpha2").GetSingle();
                c.Alpha3 = a.GetProperty("alpha3").GetSingle();
                c.Alpha4 = a.GetProperty("alpha4").GetSingle();
            }
            return c;
        });
        configure?.Invoke(cfg);
        var res = new ReplayResult { Config = cfg };
        var model = new Co2NetModel(cfg, Enumerable.Range(0, cfg.NumClasses).Select(i => $"class{i}").ToArray());
        using var store = model.P;
        store.Allocate(backend);
        dump.LoadWeights(model.P, res);
        var rng = dump.Random();
        using var g = new Graph(backend, model.P, rng) { Training = true, TrainWinogradTile = cfg.TrainWinogradTile };
        var x = g.FromHost(dump.Features.AsFloat("features"), cfg.BatchSize, cfg.MaxSeqLen, cfg.FeatDim);
        ReplayDump.Step(g, model.P, rng, () => model.Losses(g, x, null, dump.Labels.AsFloat("labels")), res);
        return res;
    }
}
