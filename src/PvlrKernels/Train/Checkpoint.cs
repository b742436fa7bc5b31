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

    /// Loads a checkpoint into a new model: our safetensors, or a PyTorch state_dict (torch.save zip,
    /// detected by its magic), e.g. the official init_thumos.pth or Best_model.pkl. For PyTorch files the
    /// report lists what was missing, unused or of another shape; `report` receives it. Without `optimizer`
    /// (inference) the Adam moments are neither read nor uploaded: the model's moments stay zero.
    public static (PvlrModel model, int step, long rng) Load(string path, Backend backend, bool strict = true, TextWriter report = null, bool optimizer = true)
    {
        if (IsZip(path)) { var m = LoadTorch(path, backend, out var rep); report?.Write(rep); return (m, 0, 0); }
        using var fs = File.OpenRead(path);
        var (entries, meta) = Safetensors.ReadHeader(fs, path);
        if (!meta.TryGetValue("config", out var cj)) throw new DataFormatException($"{path}: no config in the checkpoint metadata");
        PvlrConfig cfg; string[] classes; PvlrModel model;
        try
        {
            cfg = PvlrConfig.FromJson(cj);
            classes = meta.TryGetValue("classes", out var cl) ? JsonSerializer.Deserialize<string[]>(cl) : throw new DataFormatException($"{path}: no class list in the metadata");
            model = new PvlrModel(cfg, classes);
        }
        catch (Exception e) when (e is ArgumentException or JsonException) { throw new DataFormatException($"{path}: the checkpoint's metadata holds {e.Message}"); }
        model.P.Allocate(backend);
        // the weights' memory written once on every core before the one-stream read below fills it: on the
        // CPU most of a load is the first write of new memory, which scales with cores
        foreach (var arena in optimizer ? new[] { model.P.Values, model.P.M, model.P.V } : new[] { model.P.Values }) backend.Fill(arena, 0, model.P.Total, 0f);
        try { var (step, rng) = Restore(path, fs, entries, meta, model, backend, strict, optimizer); return (model, step, rng); }
        catch { model.P.Dispose(); throw; }
    }

    /// Puts a checkpoint's weights, Adam moments and per-parameter Adam steps into an existing model
    /// (same config); returns the saved step and RNG counter. A resumed run continues exactly.
    public static (int step, long rng) Restore(string path, PvlrModel model, Backend backend)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: checkpoint not found", path);
        using var fs = File.OpenRead(path);
        var (entries, meta) = Safetensors.ReadHeader(fs, path);
        if (meta.TryGetValue("config", out var cj))
        {
            var saved = PvlrConfig.FromJson(cj); saved.MaxIter = model.Cfg.MaxIter; saved.Preset = model.Cfg.Preset;
            var mine = PvlrConfig.FromJson(model.Cfg.ToJson()); mine.MaxIter = model.Cfg.MaxIter;
            if (saved.ToJson() != mine.ToJson()) throw new DataFormatException($"{path}: the checkpoint was written with another configuration than this run's");
        }
        return Restore(path, fs, entries, meta, model, backend, strict: true, optimizer: true);
    }

    /// Streams each tensor from the file into the parameter (and, with `optimizer`, Adam) storage in
    /// chunks of 1M values: no array of the whole file or of a whole tensor. Without `optimizer` the Adam
    /// moments are not read and stay as they are.
    static (int, long) Restore(string path, Stream fs, List<Safetensors.Entry> entries, Dictionary<string, string> meta, PvlrModel model, Backend backend, bool strict, bool optimizer)
    {
        var byName = entries.ToDictionary(e => e.Name);
        var missing = model.P.List.Where(p => !byName.ContainsKey(p.Name)).Select(p => p.Name).ToList();
        var unexpected = byName.Keys.Where(k => !k.StartsWith("adam_") && !model.P.Contains(k)).ToList();
        if (strict && (missing.Count > 0 || unexpected.Count > 0))
            throw new DataFormatException($"{path}: missing parameters [{string.Join(", ", missing.Take(10))}{(missing.Count > 10 ? ", ..." : "")}], unexpected [{string.Join(", ", unexpected.Take(10))}]");
        var buffer = new float[(int)Math.Clamp(entries.Select(e => e.Count).DefaultIfEmpty(1).Max(), 1, 1 << 20)];
        void Into(string name, Parameter p, Storage dst)
        {
            if (!byName.TryGetValue(name, out var e)) { if (dst != model.P.Values) backend.Fill(dst, p.Offset, p.Size, 0f); return; }   // no moments: zero
            if (!e.Shape.SequenceEqual(p.Shape)) throw new DataFormatException($"{path}: {name} has shape ({string.Join(",", e.Shape)}), the model expects ({string.Join(",", p.Shape)})");
            Malformed.Guard(path, () =>
            {
                Safetensors.ReadValues(fs, e, buffer, (v, at) =>
                {
                    int bad = FirstNonFinite(v);
                    if (bad >= 0) throw new DataFormatException($"{path}: {name} holds {v[bad]} at element {at + bad}; refusing a checkpoint with non-finite values");
                    backend.Upload(dst, p.Offset + at, v);
                });
                return 0;
            });
        }
        foreach (var p in model.P.List) Into(p.Name, p, model.P.Values);
        var steps = meta.TryGetValue("adam_steps", out var asj) ? JsonSerializer.Deserialize<Dictionary<string, long>>(asj) : new();
        foreach (var p in model.P.List) p.Step = steps.TryGetValue(p.Name, out var s) ? s : 0;
        if (optimizer)
            foreach (var p in model.P.List) { Into("adam_m." + p.Name, p, model.P.M); Into("adam_v." + p.Name, p, model.P.V); }
        int step = meta.TryGetValue("step", out var st) ? int.Parse(st) : 0;
        long rng = meta.TryGetValue("rng_counter", out var rc) ? long.Parse(rc) : 0;
        return (step, rng);
    }

    static int FirstNonFinite(ReadOnlySpan<float> v)
    {
        for (int i = 0; i < v.Length; i++) if (!float.IsFinite(v[i])) return i;
        return -1;
    }

    static bool IsZip(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: checkpoint not found", path);
        using var f = File.OpenRead(path); Span<byte> m = stackalloc byte[4];
        return f.Read(m) == 4 && m[0] == (byte)'P' && m[1] == (byte)'K' && m[2] == 3 && m[3] == 4;
    }

    /// The archive records `pvlr export --format pth` adds beside the state_dict: the whole configuration
    /// and the class list, which the tensor shapes alone do not determine (the CLIP head count, test-time
    /// settings, the class names).
    public const string ConfigRecord = "pvlr/config.json", ClassesRecord = "pvlr/classes.json";

    /// Writes the model as a PyTorch state_dict with its configuration records.
    public static void SaveTorch(string path, PvlrModel model) =>
        TorchZip.Save(path, model.P.List.Select(p => (p.Name, p.Shape, model.P.Get(p.Name))),
            new Dictionary<string, string> { [ConfigRecord] = model.Cfg.ToJson(), [ClassesRecord] = JsonSerializer.Serialize(model.Classes) });

    /// A PyTorch state_dict onto a new model. With our export's records the configuration and classes are
    /// those; otherwise dimensions come from the tensors' shapes (heads = width/64, CLIP's convention) and
    /// classes default to THUMOS14's 20. Missing trainable weights are an error;
    /// everything else (missing frozen weights, unused entries, other shapes) goes into the report.
    public static PvlrModel LoadTorch(string path, Backend backend, out string report, IReadOnlyList<string> classes = null)
    {
        var sd = TorchZip.Load(path);
        var strip = sd.Keys.All(k => k.StartsWith("module.")) ? "module." : "";      // DataParallel prefix
        var t = sd.ToDictionary(kv => kv.Key[strip.Length..], kv => kv.Value);
        int[] S(string n) => t.TryGetValue(n, out var v) ? v.shape : throw new DataFormatException($"{path}: no '{n}' in the state_dict: not a PVLR checkpoint");
        var saved = TorchZip.ReadTextRecords(path, ConfigRecord, ClassesRecord);
        var cfg = saved.TryGetValue(ConfigRecord, out var cj) ? Malformed.Guard(path, () => PvlrConfig.FromJson(cj)) : null;
        if (cfg != null && saved.TryGetValue(ClassesRecord, out var cl)) classes ??= Malformed.Guard(path, () => JsonSerializer.Deserialize<string[]>(cl));
        classes ??= ClassTokens.Names.Keys.ToArray();
        cfg ??= PvlrConfig.FromShapes(S, t.Keys.Count(k => k.StartsWith("clipmodel.transformer.resblocks.") && k.EndsWith(".ln_1.weight")), classes.Count, "pth");
        var model = new PvlrModel(cfg, classes);
        model.Initialize(backend, cfg.Seed);
        var sb = new System.Text.StringBuilder(); var missing = new List<string>(); var shape = new List<string>(); var badTrainable = new List<string>();
        foreach (var p in model.P.List)
        {
            string why = !t.TryGetValue(p.Name, out var v) ? null : v.shape.SequenceEqual(p.Shape) ? "" : $"{p.Name} ({string.Join(",", v.shape)}) vs ours ({string.Join(",", p.Shape)})";
            if (why == "")
            {
                int bad = FirstNonFinite(v.data);
                if (bad >= 0) { model.P.Dispose(); throw new DataFormatException($"{path}: {p.Name} holds {v.data[bad]} at element {bad}; refusing a checkpoint with non-finite values"); }
                model.P.Set(p.Name, v.data); continue;
            }
            (why == null ? missing : shape).Add(why ?? p.Name);
            if (p.Trainable) badTrainable.Add(why ?? p.Name + " (missing)");
        }
        if (badTrainable.Count > 0) { model.P.Dispose(); throw new DataFormatException($"{path}: trainable weights missing or of another shape: {string.Join("; ", badTrainable)}"); }
        var unused = t.Keys.Where(k => !model.P.Contains(k)).ToList();
        sb.AppendLine($"{path}: loaded {model.P.List.Count - missing.Count - shape.Count} of {model.P.List.Count} tensors (F={cfg.FeatDim}, D={cfg.EmbedDim}, CLIP {cfg.ClipLayers}x{cfg.ClipWidth}).");
        if (missing.Count > 0) sb.AppendLine($"  missing (kept at our init): {string.Join(", ", missing)}");
        if (shape.Count > 0) sb.AppendLine($"  other shape (kept at our init): {string.Join("; ", shape)}");
        if (unused.Count > 0) sb.AppendLine($"  unused by the text/snippet model: {unused.Count} tensors ({string.Join(", ", unused.Take(5))}{(unused.Count > 5 ? ", ..." : "")})");
        report = sb.ToString();
        return model;
    }
}
