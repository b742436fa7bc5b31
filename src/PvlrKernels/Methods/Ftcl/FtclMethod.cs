// FTCL on the method layer: presets, the import of the original's checkpoints (THUMOS_best.pth's
// model_state_dict; an ACM-Net checkpoint loads as the stage-1 start, feature_trans then drawn fresh as
// load_state_dict(strict=False) leaves it), and the replay of a step dumped by
// benchmarks/reference/ftcl_ref.py (our PyTorch restatement): weights/, inputs/ (2B rows, the pairs'
// first videos then their second), random/v{0,1}_{select,snippet_cls}.npy (channel-first),
// mining/v{0,1}_{inst,cont,back,lcs,fsd_act,fsd_bak}_idx.npy and mining/v{0,1}_attention.npy (float64
// (B,T,3)), meta.json.
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Methods.AcmNet;
using PvlrKernels.Train;

namespace PvlrKernels.Methods.Ftcl;

public sealed class FtclMethod : IMethod
{
    public string Name => "ftcl";
    public string Summary => "FTCL (CVPR 2022): ACM-Net plus FSD and LCS contrasts between pairs of videos";
    public IReadOnlyList<string> Presets { get; } = ["demo", "paper", "tiny"];
    public MethodConfig Preset(string name) => FtclConfig.FromPreset(name);
    public MethodConfig ConfigFromJson(string json) => FtclConfig.FromJson(json);

    public IMethodModel Build(MethodConfig config, IReadOnlyList<string> classes) =>
        new FtclModel(config as FtclConfig
            ?? throw new ArgumentException($"a {config.Method} config cannot build an FTCL model"), classes);

    public IMethodModel LoadTorch(string path, Backend backend, out string report, IReadOnlyList<string> classes = null)
    {
        var sd = StateDictFile.Read(path);
        var cfg = sd.ConfigJson != null ? Malformed.Guard(path, () => FtclConfig.FromJson(sd.ConfigJson))
            : new FtclConfig { Preset = "pth", FeatDim = sd.Shape("feature_embedding.0.weight", "FTCL")[0],
                NumClasses = sd.Shape("snippet_cls.weight", "FTCL")[0] - 1 };
        if (sd.ConfigJson == null && sd.Tensors.ContainsKey("feature_trans.weight"))
            cfg.FcDim = sd.Shape("feature_trans.weight", "FTCL")[0];
        var model = new FtclModel(cfg, sd.ClassesFor(cfg.NumClasses, classes));
        model.Initialize(backend, cfg.Seed);
        report = Checkpoint.FillFromStateDict(path, sd.Tensors, model.P, $"F={cfg.FeatDim}, {cfg.NumClasses} classes",
            name => name.StartsWith("feature_trans."));
        return model;
    }

    /// Replays the step with the dump's picks and compares our own (on the dump's float64 attention, in
    /// the config's tie order) with them.
    public ReplayResult Replay(string stateDir, Backend backend, Action<MethodConfig> configure = null)
    {
        using var dump = new ReplayDump(stateDir);
        var cfg = dump.Config(meta =>
        {
            var c = new FtclConfig
            {
                Preset = "replay", BatchSize = dump.Features.Shape[0] / 2, MaxSeqLen = dump.Features.Shape[1],
                FeatDim = dump.Features.Shape[2], NumClasses = dump.Labels.Shape[1],
            };
            if (meta.TryGetProperty("topk",
                out var k)) { c.InsTopK = k[0].GetInt32(); c.ConTopK = k[1].GetInt32(); c.BakTopK = k[2].GetInt32(); }
            if (meta.TryGetProperty("lens", out var l))
            {
                c.LcsLen = l[0].GetInt32();
                c.FsdLen = l[1].GetInt32();
            }
            if (meta.TryGetProperty("fc_dim", out var fc)) c.FcDim = fc.GetInt32();
            if (meta.TryGetProperty("thres", out var th)) c.LcsThreshold = th.GetSingle();
            return c;
        });
        configure?.Invoke(cfg);
        var res = new ReplayResult { Config = cfg, MiningTies = cfg.SortTies.ToString().ToLowerInvariant() };
        var model = new FtclModel(cfg, Enumerable.Range(0, cfg.NumClasses).Select(i => $"class{i}").ToArray());
        using var store = model.P;
        store.Allocate(backend);
        dump.LoadWeights(model.P, res);
        var rng = dump.Random();
        string[] sets = ["inst", "cont", "back", .. FtclModel.CandidateSets];
        var dumped = new Dictionary<string, float[]>();
        foreach (var half in new[] { "v0", "v1" })
            foreach (var s in sets) dumped[$"{half}_{s}"] = dump.Load($"mining/{half}_{s}_idx.npy").AsFloat(s);
        using var g = new Graph(backend, model.P, rng) { Training = true, TrainWinogradTile = cfg.TrainWinogradTile };
        int b = cfg.BatchSize, t = cfg.MaxSeqLen;
        var x = g.FromHost(dump.Features.AsFloat("features"), 2 * b, t, cfg.FeatDim);
        ReplayDump.Step(g, model.P, rng, () => model.PairLosses(g, x, dump.Labels.AsFloat("labels"),
            new Dictionary<string, float[]>(dumped)), res);
        res.MiningSource = "the dump's attention";
        foreach (var half in new[] { "v0", "v1" })
        {
            var att = dump.Load($"mining/{half}_attention.npy").AsFloat("attention");
            var ks = model.Ks(t);
            for (int i = 0; i < 3; i++)
                res.Mining[$"{half}_{sets[i]}"] = Agree(AcmNetModel.TopIndices(att, b, t, i, ks[i], cfg.SortTies),
                    dumped[$"{half}_{sets[i]}"]);
            var ours = model.Candidates(att, b, t);
            foreach (var s in FtclModel.CandidateSets)
                res.Mining[$"{half}_{s}"] = Agree(ours[s], dumped[$"{half}_{s}"]);
        }
        return res;
    }

    static (int, int) Agree(float[] ours, float[] dumped) => (ours.Zip(dumped).Count(p => p.First == p.Second),
        ours.Length);
}
