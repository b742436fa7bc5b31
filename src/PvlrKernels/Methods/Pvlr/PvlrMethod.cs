// PVLR on the method layer (Methods/Method.cs): its presets, its model's losses and test-time path, the
// import of the original's PyTorch state_dicts and the replay of a dumped step. The network is Pvlr.cs,
// the losses Losses.cs and Mining.cs, the proposals Eval/Proposals.cs (the original's
// eval/proposal_methods.py multiple_threshold_hamnet with soft-NMS).
using System.Text.Json;
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Eval;
using PvlrKernels.Model;
using PvlrKernels.Train;

namespace PvlrKernels.Methods.Pvlr;

public sealed class PvlrMethod : IMethod
{
    public string Name => "pvlr";
    public string Summary => "PVLR (ACM MM 2024): probabilistic vision-language representation on CO2-Net";
    public IReadOnlyList<string> Presets { get; } = ["demo", "paper", "tiny"];
    public MethodConfig Preset(string name) => PvlrConfig.FromPreset(name);
    public MethodConfig ConfigFromJson(string json) => PvlrConfig.FromJson(json);

    public IMethodModel Build(MethodConfig config, IReadOnlyList<string> classes) =>
        new PvlrModel(config as PvlrConfig
            ?? throw new ArgumentException($"a {config.Method} config cannot build a PVLR model"), classes);

    public ReplayResult Replay(string stateDir, Backend backend, Action<MethodConfig> configure = null) =>
        PvlrReplay.Run(stateDir, backend, configure);

    /// A PyTorch PVLR state_dict onto a new model. With our export's records the configuration and classes
    /// are those; otherwise dimensions come from the tensors' shapes (heads = width/64, CLIP's convention)
    /// and classes default to THUMOS14's 20. Missing trainable weights are an error; everything else
    /// (missing frozen weights, unused entries, other shapes) goes into the report.
    public IMethodModel LoadTorch(string path, Backend backend, out string report, IReadOnlyList<string> classes = null)
    {
        var sd = StateDictFile.Read(path);
        var cfg = sd.ConfigJson != null ? Malformed.Guard(path, () => PvlrConfig.FromJson(sd.ConfigJson)) : null;
        if (cfg != null) classes ??= sd.Classes;
        classes ??= ClassTokens.Names.Keys.ToArray();
        int clipLayers = sd.Tensors.Keys.Count(k => k.StartsWith("clipmodel.transformer.resblocks.")
            && k.EndsWith(".ln_1.weight"));
        cfg ??= PvlrConfig.FromShapes(n => sd.Shape(n, "PVLR"), clipLayers, classes.Count, "pth");
        var model = new PvlrModel(cfg, classes);
        model.Initialize(backend, cfg.Seed);
        report = Checkpoint.FillFromStateDict(path, sd.Tensors, model.P,
            $"F={cfg.FeatDim}, D={cfg.EmbedDim}, CLIP {cfg.ClipLayers}x{cfg.ClipWidth}");
        return model;
    }
}

public sealed partial class PvlrModel : IMethodModel
{
    public MethodConfig Config => Cfg;
    string[] IMethodModel.Classes => Classes;
    public ParameterStore Parameters => P;

    public LossTerms Losses(Graph g, Tensor features, Tensor clip, float[] labels) =>
        PvlrLoss.Compute(g, Cfg, Forward(g, features), labels, clip);

    public IReadOnlyList<(string label, string term)> ProgressTerms { get; } =
        [("cls", "cls_loss"), ("contra", "contra_loss"), ("distill", "distillation_loss"), ("ortho", "ortho_loss")];

    public string NonFiniteReason(string term, float[] labels)
    {
        int b = labels.Length / Cfg.NumClasses;
        bool noNegative = Enumerable.Range(0, b).All(i => Enumerable.Range(0, b).All(j => PvlrLoss.SharesClass(labels,
            i, j, Cfg.NumClasses)));
        return term == "action_prob_vid_contra_loss" && noNegative
            ? "Every pair of this batch's videos shares a class, so the video-level contrast has no negative pair; "
                + "the original's " +
              "model/loss.py is NaN here too. A dataset with more videos and classes avoids such batches"
            : "";
    }

    /// The class text features (C+1, D): the text tower runs once per evaluation.
    public float[] TestConstants(Graph g)
    {
        g.Reset();
        using (g.NoGrad()) return g.ToHost(TextFeatures(g));
    }

    /// Test-mode cosine CAS (T, C+1) and attention (T) of each video, forwarded as one ragged batch.
    public (float[] cas, float[] attn)[] Signals(Graph g, float[] text,
        IReadOnlyList<(string name, ReadOnlyMemory<float> features, int t)> videos)
    {
        Inference.CheckVideos(videos, Cfg.FeatDim);
        g.Reset();
        g.Training = false;
        g.WinogradTile = Cfg.WinogradTile;
        using (g.NoGrad())
        {
            RaggedBatch rag;
            Tensor rgb, flow;
            PvlrOutputs o;
            float[] cas, attn;
            using (Profiler.Time("phase inference: pack", videos.Count))
            {
                rag = new RaggedBatch(g, videos.Select(v => v.t).ToArray());
                (rgb, flow) = rag.PackHalves(g, videos.Select(v => v.features).ToArray(), Cfg.FeatDim, Cfg.Half);
            }
            using (Profiler.Time("phase inference: network", rag.Rows, g.Backend))
                o = Forward(g, rgb, flow, g.FromHost(text, Cfg.NumClasses + 1, Cfg.EmbedDim), rag);
            using (Profiler.Time("phase inference: download", rag.Rows))
            { cas = g.ToHost(o.Cas); attn = g.ToHost(o.Attn); }
            return Enumerable.Range(0, rag.Count).Select(i => (rag.Unpack(cas, i, Cfg.NumClasses + 1),
                rag.Unpack(attn, i, 1))).ToArray();
        }
    }

    static readonly ProposalConfig Proposal = new();

    /// The proposals of eval/proposal_methods.py and, for the classification mAP, the scores of
    /// eval/inference.py:72 (not the proposals' own video scores).
    public (List<Detection> detections, float[] scores) Detect(string video, float[] cas, float[] attn, int t,
        List<(double, double)> ambiguous) =>
        (Proposals.Generate(video, cas, attn, t, Cfg.NumClasses, Proposal, ambiguous).dets,
            MilLosses.ClassificationScores(cas, t, Cfg.NumClasses + 1));
}
