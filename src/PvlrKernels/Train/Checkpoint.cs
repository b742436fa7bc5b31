// Checkpoints as safetensors: every parameter under its PyTorch name, optionally the Adam moments
// ("adam_m.<name>", "adam_v.<name>"), with the config, step, per-parameter Adam steps and the RNG
// counter in the metadata. Written atomically (temp file, fsync, rename).
using System.Text.Json;
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Methods;

namespace PvlrKernels.Train;

public static class Checkpoint
{
    public static void Save(string path, IMethodModel model, Backend be, int step, long rngCounter,
        bool includeOptimizer)
    {
        var ps = model.Parameters;
        var list = new List<(string, int[], float[])>();
        foreach (var p in ps.List) list.Add((p.Name, p.Shape, ps.Get(p.Name)));
        if (includeOptimizer)
        {
            var m = new float[ps.Total];
            var v = new float[ps.Total];
            be.Download(ps.M.At(0), m);
            be.Download(ps.V.At(0), v);
            foreach (var p in ps.List.Where(p => p.Trainable))
            {
                list.Add(("adam_m." + p.Name, p.Shape, m.AsSpan((int)p.Offset, (int)p.Size).ToArray()));
                list.Add(("adam_v." + p.Name, p.Shape, v.AsSpan((int)p.Offset, (int)p.Size).ToArray()));
            }
        }
        var meta = new Dictionary<string, string>
        {
            ["format"] = "pvlrkernels-1", ["config"] = model.Config.ToJson(), ["step"] = step.ToString(),
                ["rng_counter"] = rngCounter.ToString(),
            ["adam_steps"] = JsonSerializer.Serialize(ps.List.ToDictionary(p => p.Name, p => p.Step)),
                ["classes"] = JsonSerializer.Serialize(model.Classes),
        };
        Safetensors.Save(path, list, meta);
    }

    /// Loads a checkpoint into a new model of the method its config names: our safetensors, or a PyTorch
    /// state_dict (torch.save zip, detected by its magic), e.g. the official init_thumos.pth or
    /// Best_model.pkl, read as `method`'s (default: the one its config record names, else PVLR). For
    /// PyTorch files the report lists what was missing, unused or of another shape; `report` receives it.
    /// Without `optimizer` (inference) the Adam moments are neither read nor uploaded: they stay zero.
    public static (IMethodModel model, int step, long rng) Load(string path, Backend backend, bool strict = true,
        TextWriter report = null,
        bool optimizer = true, IMethod method = null)
    {
        if (IsZip(path))
        {
            var m = LoadTorch(path, backend, out var rep, method: method);
            report?.Write(rep);
            return (m, 0, 0);
        }
        using var fs = File.OpenRead(path);
        var (entries, meta) = Safetensors.ReadHeader(fs, path);
        if (!meta.TryGetValue("config",
            out var cj)) throw new DataFormatException($"{path}: no config in the checkpoint metadata");
        string[] classes;
        IMethodModel model;
        try
        {
            var saved = MethodRegistry.Of(cj);
            if (method != null && saved != method)
                throw new ArgumentException($"a {saved.Name} model, not {method.Name}");
            classes = meta.TryGetValue("classes", out var cl)
                ? JsonSerializer.Deserialize<string[]>(cl) : throw new DataFormatException($"{path}: no class "
                + $"list in the metadata");
            model = saved.Build(saved.ConfigFromJson(cj), classes);
        }
        catch (Exception e) when (e is ArgumentException or JsonException)
        {
            throw new DataFormatException($"{path}: the checkpoint's metadata holds {e.Message}");
        }
        var ps = model.Parameters;
        ps.Allocate(backend);
        // the weights' memory written once on every core before the one-stream read below fills it: on the
        // CPU most of a load is the first write of new memory, which scales with cores
        foreach (var arena in optimizer ? new[] { ps.Values, ps.M, ps.V } : new[] { ps.Values })
            backend.Fill(arena.At(0), ps.Total, 0f);
        try { var (step, rng) = Restore(path, fs, entries, meta, ps, backend, strict, optimizer); return (model, step,
            rng); }
        catch { ps.Dispose(); throw; }
    }

    /// Puts a checkpoint's weights, Adam moments and per-parameter Adam steps into an existing model
    /// (same config); returns the saved step and RNG counter. A resumed run continues exactly.
    public static (int step, long rng) Restore(string path, IMethodModel model, Backend backend)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: checkpoint not found", path);
        using var fs = File.OpenRead(path);
        var (entries, meta) = Safetensors.ReadHeader(fs, path);
        if (meta.TryGetValue("config", out var cj))
        {
            var saved = MethodRegistry.ConfigFromJson(cj);
            saved.MaxIter = model.Config.MaxIter;
            saved.Preset = model.Config.Preset;
            var mine = MethodRegistry.ConfigFromJson(model.Config.ToJson());
            mine.MaxIter = model.Config.MaxIter;
            if (saved.ToJson() != mine.ToJson())
                throw new DataFormatException($"{path}: the checkpoint was written with another configuration than "
                    + $"this run's");
        }
        return Restore(path, fs, entries, meta, model.Parameters, backend, strict: true, optimizer: true);
    }

    /// Streams each tensor from the file into the parameter (and, with `optimizer`, Adam) storage in
    /// chunks of 1M values: no array of the whole file or of a whole tensor. Without `optimizer` the Adam
    /// moments are not read and stay as they are.
    static (int, long) Restore(string path, Stream fs, List<Safetensors.Entry> entries,
        Dictionary<string, string> meta, ParameterStore ps, Backend backend, bool strict, bool optimizer)
    {
        var byName = entries.ToDictionary(e => e.Name);
        var missing = ps.List.Where(p => !byName.ContainsKey(p.Name)).Select(p => p.Name).ToList();
        var unexpected = byName.Keys.Where(k => !k.StartsWith("adam_") && !ps.Contains(k)).ToList();
        if (strict && (missing.Count > 0 || unexpected.Count > 0))
            throw new DataFormatException($"{path}: missing parameters "
                + $"[{string.Join(", ", missing.Take(10))}{(missing.Count > 10 ? ", ..." : "")}], unexpected "
                + $"[{string.Join(", ", unexpected.Take(10))}]");
        var buffer = new float[(int)Math.Clamp(entries.Select(e => e.Count).DefaultIfEmpty(1).Max(), 1, 1 << 20)];
        void Into(string name, Parameter p, Storage dst)
        {
            if (!byName.TryGetValue(name, out var e)) { if (dst != ps.Values) backend.Fill(dst.At(p.Offset), p.Size,
                0f); return; }   // no moments: zero
            if (!e.Shape.SequenceEqual(p.Shape))
                throw new DataFormatException($"{path}: {name} has shape ({string.Join(",", e.Shape)}), the model "
                    + $"expects ({string.Join(",", p.Shape)})");
            Malformed.Guard(path, () =>
            {
                Safetensors.ReadValues(fs, e, buffer, (v, at) =>
                {
                    int bad = FirstNonFinite(v);
                    if (bad >= 0)
                        throw new DataFormatException($"{path}: {name} holds {v[bad]} at element {at + bad}; "
                            + $"refusing a checkpoint with non-finite values");
                    backend.Upload(dst.At(p.Offset + at), v);
                });
                return 0;
            });
        }
        foreach (var p in ps.List) Into(p.Name, p, ps.Values);
        var steps = meta.TryGetValue("adam_steps",
            out var asj) ? JsonSerializer.Deserialize<Dictionary<string, long>>(asj) : new();
        foreach (var p in ps.List) p.Step = steps.TryGetValue(p.Name, out var s) ? s : 0;
        if (optimizer)
            foreach (var p in ps.List)
            {
                Into("adam_m." + p.Name, p, ps.M);
                Into("adam_v." + p.Name, p, ps.V);
            }
        int step = meta.TryGetValue("step", out var st) ? int.Parse(st) : 0;
        long rng = meta.TryGetValue("rng_counter", out var rc) ? long.Parse(rc) : 0;
        return (step, rng);
    }

    public static int FirstNonFinite(ReadOnlySpan<float> v)
    {
        for (int i = 0; i < v.Length; i++) if (!float.IsFinite(v[i])) return i;
        return -1;
    }

    static bool IsZip(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: checkpoint not found", path);
        using var f = File.OpenRead(path);
        Span<byte> m = stackalloc byte[4];
        return f.Read(m) == 4 && m[0] == (byte)'P' && m[1] == (byte)'K' && m[2] == 3 && m[3] == 4;
    }

    /// The archive records `pvlr export --format pth` adds beside the state_dict: the whole configuration
    /// and the class list, which the tensor shapes alone do not determine (the CLIP head count, test-time
    /// settings, the class names).
    public const string ConfigRecord = "pvlr/config.json", ClassesRecord = "pvlr/classes.json";

    /// Writes the model as a PyTorch state_dict with its configuration records.
    public static void SaveTorch(string path, IMethodModel model) =>
        TorchZip.Save(path, model.Parameters.List.Select(p => (p.Name, p.Shape, model.Parameters.Get(p.Name))),
            new Dictionary<string, string> { [ConfigRecord] = model.Config.ToJson(),
                [ClassesRecord] = JsonSerializer.Serialize(model.Classes) });

    /// A PyTorch state_dict onto a new model of `method`, else of the method its config record names,
    /// else PVLR (the original's own files carry no record).
    public static IMethodModel LoadTorch(string path, Backend backend, out string report,
        IReadOnlyList<string> classes = null, IMethod method = null)
    {
        var saved = TorchZip.ReadTextRecords(path, ConfigRecord);
        var named = saved.TryGetValue(ConfigRecord, out var cj) ? Malformed.Guard(path,
            () => MethodRegistry.Of(cj)) : null;
        if (method != null && named != null && named != method)
            throw new DataFormatException($"{path}: a {named.Name} model, not {method.Name}");
        return (method ?? named ?? MethodRegistry.Get("pvlr")).LoadTorch(path, backend, out report, classes);
    }

    /// A new run's starting weights from `path` (a checkpoint of any method, or a PyTorch state_dict), as
    /// the originals' load_state_dict(..., strict=False) does (FTCL's stage 2 starts from ACM-Net's
    /// THUMOS_best.pth): every tensor of a name and shape the model has is copied, the rest stays at our
    /// init; the report says which. Nothing of the source's optimizer or step is taken.
    public static string InitFrom(string path, IMethodModel model, Backend backend)
    {
        Dictionary<string, (int[] shape, float[] data)> tensors;
        if (IsZip(path)) tensors = StateDictFile.Read(path).Tensors;
        else
        {
            var (src, _, _) = Load(path, backend, optimizer: false);
            using (src.Parameters)
                tensors = src.Parameters.List.ToDictionary(p => p.Name, p => (p.Shape, src.Parameters.Get(p.Name)));
        }
        return FillFromStateDict(path, tensors, model.Parameters, model.Config.Method, _ => true);
    }

    /// Sets each parameter of `ps` from the state_dict `t` (names already stripped of any DataParallel
    /// prefix). Missing trainable weights or ones of another shape are an error, non-finite values too;
    /// the rest (missing frozen weights, unused entries, other shapes) goes into the returned report.
    /// `optional` names weights that may be missing or of another shape (kept at our init and reported,
    /// as load_state_dict(strict=False) leaves them); null: none may.
    public static string FillFromStateDict(string path, Dictionary<string, (int[] shape, float[] data)> t,
        ParameterStore ps, string dims, Func<string, bool> optional = null)
    {
        var sb = new System.Text.StringBuilder();
        var missing = new List<string>();
        var shape = new List<string>();
        var badTrainable = new List<string>();
        foreach (var p in ps.List)
        {
            string why = !t.TryGetValue(p.Name,
                out var v) ? null : v.shape.SequenceEqual(p.Shape)
                    ? "" : $"{p.Name} ({string.Join(",", v.shape)}) vs ours ({string.Join(",", p.Shape)})";
            if (why == "")
            {
                int bad = FirstNonFinite(v.data);
                if (bad >= 0)
                {
                    ps.Dispose();
                    throw new DataFormatException($"{path}: {p.Name} holds {v.data[bad]} at element {bad}; refusing "
                        + $"a checkpoint with non-finite values");
                }
                ps.Set(p.Name, v.data);
                continue;
            }
            (why == null ? missing : shape).Add(why ?? p.Name);
            if (p.Trainable && optional?.Invoke(p.Name) != true) badTrainable.Add(why ?? p.Name + " (missing)");
        }
        if (badTrainable.Count > 0)
        {
            ps.Dispose();
            throw new DataFormatException($"{path}: trainable weights missing or of another shape: "
                + $"{string.Join("; ", badTrainable)}");
        }
        var unused = t.Keys.Where(k => !ps.Contains(k)).ToList();
        sb.AppendLine($"{path}: loaded {ps.List.Count - missing.Count - shape.Count} of {ps.List.Count} tensors "
            + $"({dims}).");
        if (missing.Count > 0) sb.AppendLine($"  missing (kept at our init): {string.Join(", ", missing)}");
        if (shape.Count > 0) sb.AppendLine($"  other shape (kept at our init): {string.Join("; ", shape)}");
        if (unused.Count > 0)
            sb.AppendLine($"  unused by the text/snippet model: {unused.Count} tensors "
                + $"({string.Join(", ", unused.Take(5))}{(unused.Count > 5 ? ", ..." : "")})");
        return sb.ToString();
    }
}
