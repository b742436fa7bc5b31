// FTCL's THUMOS14 settings (MengyuanChen21/CVPR2022-FTCL config/model_config.py): ACM-Net's, plus the
// pair stage's: 16 pairs per batch, 25 epochs, lambda_lcs 0.1, lambda_fsd 0.8, LCS over the top 30
// snippets by instance attention with threshold 0.92, FSD over the top 5 (ranks 6-10 for a negative
// pair's second video), projected 2048 -> 1024, gamma 0.1 (utils/net_utils.py:8 maxGamma).
// `Paper` is that run (855 equal-label training pairs + 855 disjoint ones: 107 batches per epoch);
// `Demo` shrinks widths and steps to the demo data; `Tiny` is for tests.
using System.Text.Json.Serialization;
using PvlrKernels.Methods.AcmNet;

namespace PvlrKernels.Methods.Ftcl;

public sealed class FtclConfig : AcmNetConfig
{
    [JsonPropertyOrder(-2)] public override string Method => "ftcl";
    [JsonIgnore] public override BatchOrder Batches => BatchOrder.LabelPairs;

    public int FcDim { get; set; } = 1024;            // feature_trans output; FSD splits it in halves
    public int LcsLen { get; set; } = 30;
    public int FsdLen { get; set; } = 5;
    public float Gamma { get; set; } = 0.1f;
    public float LcsThreshold { get; set; } = 0.92f;
    public float LambLcs { get; set; } = 0.1f;
    public float LambFsd { get; set; } = 0.8f;

    public FtclConfig()
    {
        MaxIter = 25 * 107;
        Interval = 107;
    }

    public static new FtclConfig Paper() => new();

    public static new FtclConfig Demo() => new() { Preset = "demo", FeatDim = 256, FcDim = 128, MaxSeqLen = 320,
        MaxIter = 600, Interval = 100, Lr = 2e-4f };

    public static new FtclConfig Tiny() => new() { Preset = "tiny", FeatDim = 16, FcDim = 8, BatchSize = 3,
        MaxSeqLen = 32, LcsLen = 8, FsdLen = 3, MaxIter = 5, Interval = 2 };

    public static new FtclConfig FromPreset(string name) => name switch
    {
        "paper" => Paper(), "demo" => Demo(), "tiny" => Tiny(),
        _ => throw new ArgumentException($"unknown preset '{name}' (demo | paper | tiny)")
    };

    public static new FtclConfig FromJson(string json) => FromJson<FtclConfig>(json);

    public override void Validate()
    {
        base.Validate();
        int side = Kernels.SequenceAlignmentGroups.MaxSide;
        if (LcsLen < 1 || LcsLen > side || FsdLen < 1 || FsdLen > side)
            throw new ArgumentException($"LcsLen {LcsLen} and FsdLen {FsdLen} must be 1..{side}");
        if (LcsLen > MaxSeqLen || 2 * FsdLen > MaxSeqLen)
            throw new ArgumentException($"LcsLen {LcsLen} and 2 x FsdLen {2 * FsdLen} must not exceed MaxSeqLen "
                + $"{MaxSeqLen}");
        if (FcDim < 2 || FcDim % 2 != 0)
            throw new ArgumentException($"FcDim {FcDim} must be even (FSD compares its halves)");
        if (!(Gamma > 0) || !float.IsFinite(Gamma)) throw new ArgumentException($"Gamma {Gamma} must be positive");
        if (new[] { LcsThreshold, LambLcs, LambFsd }.Any(a => !float.IsFinite(a)))
            throw new ArgumentException("LcsThreshold, LambLcs and LambFsd must be finite");
    }
}
