// CO2-Net on the method layer: presets, the import of the original's PyTorch state_dicts, and the replay
// of a step dumped by benchmarks/reference/co2net_ref.py (our PyTorch restatement):
//   weights/<state_dict name>.npy, inputs/features.npy (B,T,F), inputs/labels.npy (B,C),
//   random/<tag>.npy (dropout masks, channel-first as the original's tensors), meta.json (random_order, k, alpha).
using System.Text.Json;
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Methods.Pvlr;
using PvlrKernels.Train;

namespace PvlrKernels.Methods.Co2Net;

public sealed class Co2NetMethod : IMethod
{
    public string Name => "co2net";
    public string Summary => "CO2-Net (ACM MM 2021): cross-modal consensus attention, PVLR's base";
    public IReadOnlyList<string> Presets { get; } = ["demo", "paper", "tiny"];
    public MethodConfig Preset(string name) => Co2NetConfig.FromPreset(name);
    public MethodConfig ConfigFromJson(string json) => Co2NetConfig.FromJson(json);

    public IMethodModel Build(MethodConfig config, IReadOnlyList<string> classes) =>
        new Co2NetModel(config as Co2NetConfig ?? throw new ArgumentException($"a {config.Method} config cannot build a CO2-Net model"), classes);

    /// A CO2-Net state_dict (the original's ckpt/best_*.pkl, or our export with its records). Without our
    /// records the widths come from the tensors' shapes and the classes default to THUMOS14's 20.
    public IMethodModel LoadTorch(string path, Backend backend, out string report, IReadOnlyList<string> classes = null)
    {
        var sd = TorchZip.Load(path);
        var strip = sd.Keys.All(k => k.StartsWith("module.")) ? "module." : "";
        var t = sd.ToDictionary(kv => kv.Key[strip.Length..], kv => kv.Value);
        int[] S(string n) => t.TryGetValue(n, out var v) ? v.shape : throw new DataFormatException($"{path}: no '{n}' in the state_dict: not a CO2-Net checkpoint");
        var saved = TorchZip.ReadTextRecords(path, Checkpoint.ConfigRecord, Checkpoint.ClassesRecord);
        var cfg = saved.TryGetValue(Checkpoint.ConfigRecord, out var cj) ? Malformed.Guard(path, () => Co2NetConfig.FromJson(cj)) : null;
        if (cfg != null && saved.TryGetValue(Checkpoint.ClassesRecord, out var cl)) classes ??= Malformed.Guard(path, () => JsonSerializer.Deserialize<string[]>(cl));
        if (cfg == null)
        {
            cfg = new Co2NetConfig { Preset = "pth", FeatDim = S("fusion.0.weight")[0], AttnHidden = S("vAttn.attention.0.weight")[0], NumClasses = S("classifier.4.weight")[0] - 1 };
            classes ??= cfg.NumClasses == ClassTokens.Names.Count ? ClassTokens.Names.Keys.ToArray() : Enumerable.Range(0, cfg.NumClasses).Select(i => $"class{i}").ToArray();
        }
        classes ??= ClassTokens.Names.Keys.ToArray();
        var model = new Co2NetModel(cfg, classes);
        model.Initialize(backend, cfg.Seed);
        report = Checkpoint.FillFromStateDict(path, t, model.P, $"F={cfg.FeatDim}, attention {cfg.AttnHidden}, {cfg.NumClasses} classes");
        return model;
    }

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
            var c = new Co2NetConfig
            {
                Preset = "replay", BatchSize = feats.Shape[0], MaxSeqLen = feats.Shape[1], FeatDim = feats.Shape[2], NumClasses = labels.Shape[1],
                AttnHidden = Load("weights/vAttn.attention.0.weight.npy").Shape[0],
            };
            if (meta.TryGetProperty("k", out var k)) c.TrainTopK = k.GetInt32();
            if (meta.TryGetProperty("alpha", out var a))
            {
                c.Alpha1 = a.GetProperty("alpha1").GetSingle(); c.Alpha2 = a.GetProperty("alpha2").GetSingle();
                c.Alpha3 = a.GetProperty("alpha3").GetSingle(); c.Alpha4 = a.GetProperty("alpha4").GetSingle();
            }
            return c;
        });
        configure?.Invoke(cfg);
        var res = new ReplayResult { Config = cfg };
        var model = new Co2NetModel(cfg, Enumerable.Range(0, cfg.NumClasses).Select(i => $"class{i}").ToArray());
        using var store = model.P;
        store.Allocate(backend);
        foreach (var p in model.P.List)
        {
            var a = Load(Path.Combine("weights", p.Name + ".npy"));
            if (!a.Shape.SequenceEqual(p.Shape)) throw new ShapeException($"replay dump {dir}: weights/{p.Name}.npy has shape {Tensor.ShapeStr(a.Shape)}, the model expects {Tensor.ShapeStr(p.Shape)}");
            model.P.Set(p.Name, a.AsFloat(p.Name));
        }
        var known = model.P.List.Select(p => p.Name).ToHashSet();
        var extra = Directory.GetFiles(Path.Combine(dir, "weights"), "*.npy").Select(Path.GetFileNameWithoutExtension).Where(n => !known.Contains(n)).ToList();
        if (extra.Count > 0) res.Notes.Add($"weights the forward never reads: {string.Join(", ", extra)}");
        var order = meta.TryGetProperty("random_order", out var ro) ? ro.EnumerateArray().Select(x => x.GetString()).ToList()
            : Directory.GetFiles(Path.Combine(dir, "random"), "*.npy").Select(Path.GetFileNameWithoutExtension).Order().ToList();
        bool channelFirst = !meta.TryGetProperty("mask_layout", out var ml) || ml.GetString() != "time_major";
        var rng = new ReplaySource(order.Select(tag => { var a = Load(Path.Combine("random", tag + ".npy")); return (tag, a.AsFloat(tag), a.Shape); }), channelFirst);
        using var g = new Graph(backend, model.P, rng) { Training = true };
        model.P.ZeroGrad();
        var x = g.FromHost(feats.AsFloat("features"), cfg.BatchSize, cfg.MaxSeqLen, cfg.FeatDim);
        var L = model.Losses(g, x, null, labels.AsFloat("labels"));
        foreach (var (k, v) in L.Terms) res.Losses[k] = g.Item(v);
        res.Losses["total_loss"] = g.Item(L.Total);
        g.Backward(L.Total);
        foreach (var p in model.P.List.Where(p => p.Trainable && p.GotGrad)) res.Grads[p.Name] = (model.P.GetGrad(p.Name), p.Shape);
        var unused = rng.Unused.ToList();
        if (unused.Count > 0) res.Notes.Add($"recorded draws not needed: {string.Join(", ", unused)}");
        return res;
    }
}
