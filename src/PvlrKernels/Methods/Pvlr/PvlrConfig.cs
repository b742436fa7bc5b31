// Every dimension and hyper-parameter of PVLR (PVLR's options.py). `Paper` is the original's exact THUMOS14
// configuration; `Demo` shrinks widths and steps so a full run fits in minutes on 2 CPU cores.
using System.Text.Json;
using System.Text.Json.Serialization;

using PvlrKernels.Model;

namespace PvlrKernels.Methods.Pvlr;

public sealed class PvlrConfig : MethodConfig
{
    [JsonPropertyOrder(-2)] public override string Method => "pvlr";

    // dimensions
    public int AttnHidden { get; set; } = 512;
    public int EmbedDim { get; set; } = 1024;         // D, = CLIP feature width
    public int NumSamples { get; set; } = 20;         // P
    public float EpsStd { get; set; } = 0.005f;
    public int ClipWidth { get; set; } = 512;
    public int ClipLayers { get; set; } = 12;
    public int ClipHeads { get; set; } = 8;
    public int ClipContext { get; set; } = 77;
    public int Prefix { get; set; } = 4;
    public int Postfix { get; set; } = 4;
    // temperatures and mixing
    public float SigTTrain { get; set; } = 8f;
    public float SigTInfer { get; set; } = 0.03f;
    public float SigTAttn { get; set; } = 1f;
    public float ConvexAlpha { get; set; } = 0.5f;
    // losses
    public int TrainTopK { get; set; } = 7;
    public int KEasy { get; set; } = 20;
    public int KHard { get; set; } = 5;
    public int BigM { get; set; } = 3;
    public int SmallM { get; set; } = 24;
    public float[] Alpha { get; set; } = { 0.8f, 0.8f, 0.8f, 1f, 200f, 0.005f, 0.005f, 0.005f, 0.5f };
    public string Metric { get; set; } = "KL_div";    // KL_div | Bhatta | Mahala | Euclidean (intra)
    [JsonConverter(typeof(JsonStringEnumConverter<MiningTies>))]
    // how the mining's sorts order equal scores (Mining.cs)
    public MiningTies MiningTies { get; set; } = MiningTies.Torch;
    // exact algebraic savings (docs/design.md), all on by default
    public bool MeanFirstCas { get; set; } = true;     // (always: the P^2 einsum is never materialised)
    public bool TruncateText { get; set; } = true;     // run the text tower on tokens up to the last EOT only
    // with TruncateText: each distinct prompt prefix once, up to its row's EOT
    public bool SharePromptPrefix { get; set; } = true;
    public bool SkipAeDecoder { get; set; } = true;    // AE_d feeds no loss in training
    // test-time speed; the outputs equal the plain per-video forward up to fp32 rounding
    public float DropAttn { get; set; } = 0.5f;
    public float DropFusion { get; set; } = 0.7f;
    public float DropEasy { get; set; } = 0.6f;

    public static PvlrConfig Paper() => new();

    /// Smaller widths (F=256, D=128, CLIP 64x2) and steps: trains on the demo data on 2 cores in minutes.
    public static PvlrConfig Demo() => new()
    {
        Preset = "demo", FeatDim = 256, AttnHidden = 64, EmbedDim = 128, ClipWidth = 64, ClipLayers = 2, ClipHeads = 4,
        MaxIter = 600, Interval = 100, WarmupIter = 200, Lr = 2e-4f, NumSamples = 20,
    };

    /// The tiny configuration used by tests and small replay dumps.
    public static PvlrConfig Tiny() => new()
    {
        Preset = "tiny", FeatDim = 16, AttnHidden = 4, EmbedDim = 8, ClipWidth = 8, ClipLayers = 1, ClipHeads = 2,
            NumSamples = 3,
        BatchSize = 6, MaxSeqLen = 32, KEasy = 4, KHard = 2, SmallM = 6, MaxIter = 5, Interval = 2, WarmupIter = 0,
    };

    public static PvlrConfig FromPreset(string name) => name switch
    {
        "paper" => Paper(), "demo" => Demo(), "tiny" => Tiny(),
        _ => throw new ArgumentException($"unknown preset '{name}' (demo | paper | tiny)")
    };

    /// The dimensions of a PyTorch PVLR state_dict, read off its tensor shapes (heads = width/64, CLIP's
    /// convention, unless given); every other field keeps the paper default.
    public static PvlrConfig FromShapes(Func<string, int[]> shapeOf, int clipLayers, int numClasses, string preset,
        int? heads = null)
    {
        var emb = shapeOf("embedding.weight");
        var c = new PvlrConfig
        {
            Preset = preset, FeatDim = shapeOf("fusion.0.weight")[0], AttnHidden = shapeOf("vAttn.AE_e.0.weight")[0],
            EmbedDim = shapeOf("snippet_prob_encoder.fc_mean.weight")[0], ClipContext = emb[0], ClipWidth = emb[1],
                ClipLayers = clipLayers, NumClasses = numClasses,
        };
        c.ClipHeads = heads ?? Math.Max(1, c.ClipWidth / 64);
        return c;
    }

    [JsonIgnore] public override int ClipFeatureWidth => EmbedDim;
    public static PvlrConfig FromJson(string json) => FromJson<PvlrConfig>(json);

    public override void Validate()
    {
        base.Validate();
        foreach (var (name, v) in new[] { ("AttnHidden", AttnHidden), ("EmbedDim", EmbedDim), ("NumSamples",
            NumSamples), ("ClipWidth", ClipWidth),
                     ("ClipLayers", ClipLayers), ("ClipHeads", ClipHeads), ("ClipContext", ClipContext), ("KEasy",
                         KEasy), ("KHard", KHard),
                     ("BigM", BigM), ("SmallM", SmallM), ("TrainTopK", TrainTopK) })
            if (v < 1) throw new ArgumentException($"{name} {v} must be at least 1");
        if (Prefix < 0 || Postfix < 0) throw new ArgumentException("Prefix and Postfix must not be negative");
        if (ClipWidth % ClipHeads != 0)
            throw new ArgumentException($"ClipWidth {ClipWidth} must be divisible by ClipHeads {ClipHeads}");
        if (Alpha.Length != 9) throw new ArgumentException("Alpha needs 9 values (alpha0..alpha8)");
        if (Alpha.Any(a => !float.IsFinite(a)) || !float.IsFinite(EpsStd))
            throw new ArgumentException("Alpha and EpsStd must be finite");
    }
}
