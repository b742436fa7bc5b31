// CLIP text-tower weights from a file into PVLR's frozen `clipmodel.*` parameters: OpenAI's TorchScript
// archives (RN50.pt: a traced module tree, fp16 Linear/attention weights), a CLIP state_dict, or a PVLR
// state_dict that holds one under `clipmodel.` (the official init_thumos.pth, Best_model.pkl). Only the
// text tower is read (token_embedding, positional_embedding, transformer.resblocks.*, ln_final,
// text_projection); `visual.*`, logit_scale and PVLR's own weights are left alone.
//
// The tower's dimensions come from the tensors: width and context from positional_embedding, layers from
// the resblocks, the projection width from text_projection, heads = width / 64 (CLIP's rule, clip/model.py
// build_model: transformer_heads = transformer_width // 64; a traced archive does not store it).
using PvlrKernels.Data;

using PvlrKernels.Model;

namespace PvlrKernels.Methods.Pvlr;

public sealed class ClipWeights
{
    public readonly string Path;
    public readonly Dictionary<string, (int[] shape, float[] data)> Tensors;     // CLIP's own names
    public int Width, Layers, Context, ProjectionWidth, VocabRows;

    ClipWeights(string path,
        Dictionary<string, (int[] shape, float[] data)> tensors) { Path = path; Tensors = tensors; }

    public static ClipWeights Load(string path)
    {
        var all = TorchZip.Load(path);
        string prefix = all.Keys.Any(k => k.StartsWith("clipmodel."))
            ? "clipmodel." : all.Keys.Any(k => k.StartsWith("module.clipmodel.")) ? "module.clipmodel." : "";
        var text = new Dictionary<string, (int[], float[])>();
        foreach (var (k, v) in all)
        {
            if (!k.StartsWith(prefix)) continue;
            var name = k[prefix.Length..];
            if (name is "token_embedding.weight" or "positional_embedding" or "text_projection" or "ln_final.weight"
                or "ln_final.bias" || name.StartsWith("transformer.resblocks."))
                text[name] = v;
        }
        var w = new ClipWeights(path, text);
        (int[] shape, float[] data) T(string n) => text.TryGetValue(n,
            out var t) ? t : throw new DataFormatException($"{path}: no CLIP text tower: '{prefix}{n}' is missing");
        var pos = T("positional_embedding").shape;
        var proj = T("text_projection").shape;
        var tok = T("token_embedding.weight").shape;
        if (pos.Length != 2 || proj.Length != 2 || tok.Length != 2 || proj[0] != pos[1] || tok[1] != pos[1])
            throw new DataFormatException($"{path}: CLIP text tower of inconsistent shapes: positional_embedding "
                + $"({string.Join(",", pos)}), token_embedding.weight ({string.Join(",", tok)}), text_projection "
                + $"({string.Join(",", proj)})");
        w.Context = pos[0];
        w.Width = pos[1];
        w.ProjectionWidth = proj[1];
        w.VocabRows = tok[0];
        while (text.ContainsKey($"transformer.resblocks.{w.Layers}.ln_1.weight")) w.Layers++;
        if (w.Layers == 0)
            throw new DataFormatException($"{path}: no CLIP text tower: 'transformer.resblocks.0.*' is missing");
        return w;
    }

    /// Sets the text tower's dimensions of `cfg` to the file's. The projection must land in the width the
    /// CLIP snippet features (and the snippet encoder) have, `cfg.EmbedDim`.
    public void Configure(PvlrConfig cfg)
    {
        if (ProjectionWidth != cfg.EmbedDim)
            throw new ArgumentException($"{Path}: text_projection maps to {ProjectionWidth}, the {cfg.Preset} "
                + $"preset's CLIP feature width (EmbedDim) is {cfg.EmbedDim}");
        if (Width < 64 || Width % 64 != 0)
            throw new ArgumentException($"{Path}: text width {Width} is not a multiple of 64, CLIP's head width");
        cfg.ClipWidth = Width;
        cfg.ClipLayers = Layers;
        cfg.ClipHeads = Width / 64;
        cfg.ClipContext = Context;
    }

    /// Copies the tower into the model's `clipmodel.*` parameters; every one must be present with its shape.
    public void Apply(PvlrModel model)
    {
        foreach (var p in model.P.List.Where(p => p.Name.StartsWith("clipmodel.")))
        {
            var name = p.Name["clipmodel.".Length..];
            if (!Tensors.TryGetValue(name,
                out var t)) throw new DataFormatException($"{Path}: '{name}' is missing for {p.Name}");
            if (!t.shape.SequenceEqual(p.Shape))
                throw new DataFormatException($"{Path}: '{name}' has shape ({string.Join(",", t.shape)}), the "
                    + $"model's {p.Name} is ({string.Join(",", p.Shape)})" + (name == "token_embedding.weight"
                        && t.shape.Length == 2 && t.shape[0] != ClipTokenizer.VocabSize
                            ? $": CLIP's BPE ids need {ClipTokenizer.VocabSize} rows" : ""));
            model.P.Set(p.Name, t.data);
        }
    }
}
