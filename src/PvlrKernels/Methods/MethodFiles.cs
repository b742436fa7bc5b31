// What the methods' state_dict import and replay share: reading a torch.save archive with our export's
// records, and reading a dumped step (weights/, inputs/, random/, mining/, meta.json) into a model.
using System.Text.Json;
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Train;

namespace PvlrKernels.Methods;

/// A PyTorch state_dict (names stripped of a DataParallel "module." prefix) and, when our export wrote it,
/// its config and class list.
public sealed record StateDictFile(string Path, Dictionary<string, (int[] shape, float[] data)> Tensors,
    string ConfigJson,
    string ClassesJson)
{
    public static StateDictFile Read(string path)
    {
        var sd = TorchZip.Load(path);
        var strip = sd.Keys.All(k => k.StartsWith("module.")) ? "module." : "";
        var t = sd.ToDictionary(kv => kv.Key[strip.Length..], kv => kv.Value);
        var saved = TorchZip.ReadTextRecords(path, Checkpoint.ConfigRecord, Checkpoint.ClassesRecord);
        return new StateDictFile(path, t, saved.GetValueOrDefault(Checkpoint.ConfigRecord),
            saved.GetValueOrDefault(Checkpoint.ClassesRecord));
    }

    /// The class list record, read when asked for (null where the file has none).
    public string[] Classes => ClassesJson == null ? null : Malformed.Guard(Path, () =>
        JsonSerializer.Deserialize<string[]>(ClassesJson));

    /// The shape of a tensor the method needs, or an error naming the method the file is not.
    public int[] Shape(string name, string method) => Tensors.TryGetValue(name, out var v)
        ? v.shape : throw new DataFormatException($"{Path}: no '{name}' in the state_dict: not a {method} "
        + $"checkpoint");

    /// The class list: the argument, else the file's own, else THUMOS14's 20 (or class0.. for another count).
    public string[] ClassesFor(int count, IReadOnlyList<string> given) =>
        given?.ToArray() ?? Classes ?? (count == Pvlr.ClassTokens.Names.Count ? Pvlr.ClassTokens.Names.Keys.ToArray()
            : Enumerable.Range(0, count).Select(i => $"class{i}").ToArray());
}

/// One dumped training step of a method's reference restatement.
public sealed class ReplayDump : IDisposable
{
    public readonly string Dir;
    readonly JsonDocument meta;
    public JsonElement Meta => meta.RootElement;
    public readonly NpyArray Features, Labels;

    public ReplayDump(string dir)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"replay dump {dir} not found");
        Dir = dir;
        var metaPath = System.IO.Path.Combine(dir, "meta.json");
        meta = Malformed.Guard(metaPath,
            () => JsonDocument.Parse(File.Exists(metaPath) ? File.ReadAllText(metaPath) : "{}"));
        Features = Load("inputs/features.npy");
        Labels = Load("inputs/labels.npy");
        if (Features.Shape.Length != 3 || Labels.Shape.Length != 2 || Labels.Shape[0] != Features.Shape[0])
            throw new ShapeException($"replay dump {dir}: features {Tensor.ShapeStr(Features.Shape)} and labels "
                + $"{Tensor.ShapeStr(Labels.Shape)} must be (B,T,F) and (B,C)");
    }

    public NpyArray Load(string rel)
    {
        var p = System.IO.Path.Combine(Dir, rel);
        if (!File.Exists(p)) throw new FileNotFoundException($"replay dump {Dir}: missing {rel}", p);
        return Npy.Load(p);
    }

    /// The dump's config, its settings read from meta.json by `read`, malformed values named.
    public T Config<T>(Func<JsonElement, T> read) => Malformed.Guard(System.IO.Path.Combine(Dir, "meta.json"),
        () => read(Meta));

    /// Every parameter from weights/<name>.npy; weights the model lacks go into the notes.
    public void LoadWeights(ParameterStore ps, ReplayResult res)
    {
        foreach (var p in ps.List)
        {
            var a = Load(System.IO.Path.Combine("weights", p.Name + ".npy"));
            if (!a.Shape.SequenceEqual(p.Shape))
                throw new ShapeException($"replay dump {Dir}: weights/{p.Name}.npy has shape "
                    + $"{Tensor.ShapeStr(a.Shape)}, the model expects {Tensor.ShapeStr(p.Shape)}");
            ps.Set(p.Name, a.AsFloat(p.Name));
        }
        var extra = Directory.GetFiles(System.IO.Path.Combine(Dir, "weights"),
            "*.npy").Select(System.IO.Path.GetFileNameWithoutExtension).Where(n => !ps.Contains(n)).ToList();
        if (extra.Count > 0) res.Notes.Add($"weights the forward never reads: {string.Join(", ", extra)}");
    }

    /// The recorded draws in meta.json's random_order (else by name), channel-first unless mask_layout says time_major.
    public ReplaySource Random()
    {
        var order = Meta.TryGetProperty("random_order",
            out var ro) ? ro.EnumerateArray().Select(x => x.GetString()).ToList()
            : Directory.GetFiles(System.IO.Path.Combine(Dir, "random"),
                "*.npy").Select(System.IO.Path.GetFileNameWithoutExtension).Order().ToList();
        bool channelFirst = !Meta.TryGetProperty("mask_layout", out var ml) || ml.GetString() != "time_major";
        return new ReplaySource(order.Select(tag => { var a = Load(System.IO.Path.Combine("random",
            tag + ".npy")); return (tag, a.AsFloat(tag), a.Shape); }), channelFirst);
    }

    /// Runs the step: losses, backward, the gradient of every trainable parameter, unused draws noted
    /// (with `unusedHint` after them, where the method knows why).
    public static void Step(Graph g, ParameterStore ps, ReplaySource rng, Func<LossTerms> losses, ReplayResult res,
        string unusedHint = "")
    {
        ps.ZeroGrad();
        var L = losses();
        foreach (var (k, v) in L.Terms) res.Losses[k] = g.Item(v);
        res.Losses["total_loss"] = g.Item(L.Total);
        g.Backward(L.Total);
        foreach (var p in ps.List.Where(p => p.Trainable && p.GotGrad)) res.Grads[p.Name] = (ps.GetGrad(p.Name),
            p.Shape);
        var unused = rng.Unused.ToList();
        if (unused.Count > 0) res.Notes.Add($"recorded draws not needed: {string.Join(", ", unused)}" + unusedHint);
    }

    public void Dispose() => meta.Dispose();
}
