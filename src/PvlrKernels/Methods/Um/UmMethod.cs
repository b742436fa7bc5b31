// UM on the method layer: presets, the import of the original's state_dicts (models/UM/model_seed_0.pkl),
// and the replay of a step dumped by benchmarks/reference/um_ref.py (our PyTorch restatement):
//   weights/<name>.npy, inputs/features.npy (B,T,F), inputs/labels.npy (B,C), random/<tag>.npy (the
//   classifier's dropout, channel-first, and the selection mask (B,T)), mining/{act,bkg}_idx.npy and
//   mining/magnitudes.npy (float64), meta.json.
using System.Text.Json;
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Methods.Pvlr;
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
        new UmModel(config as UmConfig ?? throw new ArgumentException($"a {config.Method} config cannot build a UM model"), classes);

    public IMethodModel LoadTorch(string path, Backend backend, out string report, IReadOnlyList<string> classes = null)
    {
        var sd = TorchZip.Load(path);
        var strip = sd.Keys.All(k => k.StartsWith("module.")) ? "module." : "";
        var t = sd.ToDictionary(kv => kv.Key[strip.Length..], kv => kv.Value);
        int[] S(string n) => t.TryGetValue(n, out var v) ? v.shape : throw new DataFormatException($"{path}: no '{n}' in the state_dict: not a UM checkpoint");
        var saved = TorchZip.ReadTextRecords(path, Checkpoint.ConfigRecord, Checkpoint.ClassesRecord);
        var cfg = saved.TryGetValue(Checkpoint.ConfigRecord, out var cj) ? Malformed.Guard(path, () => UmConfig.FromJson(cj)) : null;
        if (cfg != null && saved.TryGetValue(Checkpoint.ClassesRecord, out var cl)) classes ??= Malformed.Guard(path, () => JsonSerializer.Deserialize<string[]>(cl));
        if (cfg == null)
        {
            var conv = S("cas_module.conv.0.weight");
            cfg = new UmConfig { Preset = "pth", FeatDim = conv[1], Hidden = conv[0], NumClasses = S("cas_module.classifier.0.weight")[0] };
            classes ??= cfg.NumClasses == ClassTokens.Names.Count ? ClassTokens.Names.Keys.ToArray() : Enumerable.Range(0, cfg.NumClasses).Select(i => $"class{i}").ToArray();
        }
        classes ??= ClassTokens.Names.Keys.ToArray();
        var model = new UmModel(cfg, classes);
        model.Initialize(backend, cfg.Seed);
        report = Checkpoint.FillFromStateDict(path, t, model.P, $"F={cfg.FeatDim}, hidden {cfg.Hidden}, {cfg.NumClasses} classes");
        return model;
    }

    /// Replays the step with the dump's picks and compares our own host-side picks (on the dump's float64
    /// magnitudes and selection mask, in the config's tie order) with them.
    public ReplayResult Replay(string stateDir, Backend backend, Action<MethodConfig> configure = null)
    {
        string dir = stateDir;
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"replay dump {dir} not found");
        NpyArray Load(string rel)
        {
            var p = Path.Combine(dir, rel);
            if (!File.Exists(p)) throw new FileNotFoundException($"replay dump {dir}: missing {rel}", p);
            return Npy.Load(p);
        }
        var metaPath = Path.Combine(dir, "meta.json");
        using var metaDoc = Malformed.Guard(metaPath, () => JsonDocument.Parse(File.Exists(metaPath) ? File.ReadAllText(metaPath) : "{}"));
        var meta = metaDoc.RootElement;
        var feats = Load("inputs/features.npy"); var labels = Load("inputs/labels.npy");
        if (feats.Shape.Length != 3 || labels.Shape.Length != 2 || labels.Shape[0] != feats.Shape[0])
            throw new ShapeException($"replay dump {dir}: features {Tensor.ShapeStr(feats.Shape)} and labels {Tensor.ShapeStr(labels.Shape)} must be (B,T,F) and (B,C)");
        var cfg = Malformed.Guard(metaPath, () =>
        {
            var c = new UmConfig
            {
                Preset = "replay", BatchSize = feats.Shape[0], MaxSeqLen = feats.Shape[1], FeatDim = feats.Shape[2], NumClasses = labels.Shape[1],
                Hidden = Load("weights/cas_module.conv.0.weight.npy").Shape[0],
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
        foreach (var p in model.P.List)
        {
            var a = Load(Path.Combine("weights", p.Name + ".npy"));
            if (!a.Shape.SequenceEqual(p.Shape)) throw new ShapeException($"replay dump {dir}: weights/{p.Name}.npy has shape {Tensor.ShapeStr(a.Shape)}, the model expects {Tensor.ShapeStr(p.Shape)}");
            model.P.Set(p.Name, a.AsFloat(p.Name));
        }
        var order = meta.TryGetProperty("random_order", out var ro) ? ro.EnumerateArray().Select(x => x.GetString()).ToList()
            : Directory.GetFiles(Path.Combine(dir, "random"), "*.npy").Select(Path.GetFileNameWithoutExtension).Order().ToList();
        var rng = new ReplaySource(order.Select(tag => { var a = Load(Path.Combine("random", tag + ".npy")); return (tag, a.AsFloat(tag), a.Shape); }), channelFirst: true);
        var dumped = new Dictionary<string, float[]> { ["act"] = Load("mining/act_idx.npy").AsFloat("act"), ["bkg"] = Load("mining/bkg_idx.npy").AsFloat("bkg") };
        using var g = new Graph(backend, model.P, rng) { Training = true };
        model.P.ZeroGrad();
        int b = cfg.BatchSize, t = cfg.MaxSeqLen;
        var x = g.FromHost(feats.AsFloat("features"), b, t, cfg.FeatDim);
        var L = model.Losses(g, model.Forward(g, x, dumped), labels.AsFloat("labels"));
        foreach (var (k, v) in L.Terms) res.Losses[k] = g.Item(v);
        res.Losses["total_loss"] = g.Item(L.Total);
        g.Backward(L.Total);
        foreach (var p in model.P.List.Where(p => p.Trainable && p.GotGrad)) res.Grads[p.Name] = (model.P.GetGrad(p.Name), p.Shape);
        // our own picks on the dump's magnitudes (float64 rounded to float32, as the selection mask is)
        var (kAct, kBkg) = model.Ks(t);
        var (act, bkg) = UmModel.Select(Load("mining/magnitudes.npy").AsFloat("magnitudes"), Load("random/drop_out.npy").AsFloat("drop_out"), b, t, kAct, kBkg, cfg.SortTies);
        res.MiningSource = "the dump's magnitudes";
        foreach (var (k, ours) in new[] { ("act", act), ("bkg", bkg) })
            res.Mining[k] = (ours.Zip(dumped[k]).Count(p => p.First == p.Second), ours.Length);
        return res;
    }
}
