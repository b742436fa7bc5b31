// Checkpoints as safetensors: every parameter under its PyTorch name, optionally the Adam moments
// ("adam_m.<name>", "adam_v.<name>"), with the config, step, per-parameter Adam steps and the RNG
// counter in the metadata. Written atomically (temp file, fsync, rename).
using System.Text.Json;
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Model;

namespace PvlrKernels.Train;

public static class Checkpoint
{
    public static void Save(string path, PvlrModel model, Backend be, PvlrConfig cfg, int step, long rngCounter, bool includeOptimizer)
    {
        var ps = model.P;
        var list = new List<(string, int[], float[])>();
        foreach (var p in ps.List) list.Add((p.Name, p.Shape, ps.Get(p.Name)));
        if (includeOptimizer)
        {
            var m = new float[ps.Total]; var v = new float[ps.Total];
            be.Download(ps.M, 0, m); be.Download(ps.V, 0, v);
            foreach (var p in ps.List.Where(p => p.Trainable))
            {
                list.Add(("adam_m." + p.Name, p.Shape, m.AsSpan((int)p.Offset, (int)p.Size).ToArray()));
                list.Add(("adam_v." + p.Name, p.Shape, v.AsSpan((int)p.Offset, (int)p.Size).ToArray()));
            }
        }
        var meta = new Dictionary<string, string>
        {
            ["format"] = "pvlrkernels-1", ["config"] = cfg.ToJson(), ["step"] = step.ToString(), ["rng_counter"] = rngCounter.ToString(),
            ["adam_steps"] = JsonSerializer.Serialize(ps.List.ToDictionary(p => p.Name, p => p.Step)), ["classes"] = JsonSerializer.Serialize(model.Classes),
        };
        Safetensors.Save(path, list, meta);
    }

    /// Loads a checkpoint into a new model on the backend. Missing or unexpected names are reported.
    public static (PvlrModel model, int step, long rng) Load(string path, Backend backend, bool strict = true)
    {
        var (tensors, meta) = Safetensors.Load(path);
        if (!meta.TryGetValue("config", out var cj)) throw new DataFormatException($"{path}: no config in the checkpoint metadata");
        var cfg = PvlrConfig.FromJson(cj);
        var classes = meta.TryGetValue("classes", out var cl) ? JsonSerializer.Deserialize<string[]>(cl) : throw new DataFormatException($"{path}: no class list in the metadata");
        var model = new PvlrModel(cfg, classes);
        model.P.Allocate(backend);
        var missing = model.P.List.Where(p => !tensors.ContainsKey(p.Name)).Select(p => p.Name).ToList();
        var unexpected = tensors.Keys.Where(k => !k.StartsWith("adam_") && !model.P.Contains(k)).ToList();
        if (strict && (missing.Count > 0 || unexpected.Count > 0))
            throw new DataFormatException($"{path}: missing parameters [{string.Join(", ", missing.Take(10))}{(missing.Count > 10 ? ", ..." : "")}], unexpected [{string.Join(", ", unexpected.Take(10))}]");
        foreach (var p in model.P.List)
            if (tensors.TryGetValue(p.Name, out var tv))
            {
                if (!tv.shape.SequenceEqual(p.Shape)) throw new DataFormatException($"{path}: {p.Name} has shape ({string.Join(",", tv.shape)}), the model expects ({string.Join(",", p.Shape)})");
                model.P.Set(p.Name, tv.data);
            }
        var steps = meta.TryGetValue("adam_steps", out var asj) ? JsonSerializer.Deserialize<Dictionary<string, long>>(asj) : new();
        var mArr = new float[model.P.Total]; var vArr = new float[model.P.Total];
        foreach (var p in model.P.List)
        {
            if (steps.TryGetValue(p.Name, out var s)) p.Step = s;
            if (tensors.TryGetValue("adam_m." + p.Name, out var mt)) mt.data.CopyTo(mArr, p.Offset);
            if (tensors.TryGetValue("adam_v." + p.Name, out var vt)) vt.data.CopyTo(vArr, p.Offset);
        }
        backend.Upload(model.P.M, 0, mArr); backend.Upload(model.P.V, 0, vArr);
        int step = meta.TryGetValue("step", out var st) ? int.Parse(st) : 0;
        long rng = meta.TryGetValue("rng_counter", out var rc) ? long.Parse(rc) : 0;
        return (model, step, rng);
    }
}
