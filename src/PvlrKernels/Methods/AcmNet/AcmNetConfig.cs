// ACM-Net's THUMOS14 settings (ispc-lab/ACM-Net config/model_config.py `THUMOS`). `Paper` is that run;
// `Demo` shrinks widths and steps to the demo data; `Tiny` is for tests.
using System.Text.Json;
using System.Text.Json.Serialization;

namespace PvlrKernels.Methods.AcmNet;

public class AcmNetConfig : MethodConfig
{
    [JsonPropertyOrder(-2)] public override string Method => "acmnet";
    [JsonIgnore] public override BatchOrder Batches => BatchOrder.EpochShuffle;
    [JsonIgnore] public override Resampling Resample => Resampling.AcmRandom;

    public float Dropout { get; set; } = 0.7f;
    public int InsTopK { get; set; } = 8;             // k = max(T // r, 1) per branch
    public int ConTopK { get; set; } = 3;
    public int BakTopK { get; set; } = 3;
    public float Lamb1 { get; set; } = 2e-3f;         // guide
    public float Lamb2 { get; set; } = 5e-5f;         // feature-norm margins
    public float Lamb3 { get; set; } = 2e-4f;         // sparse attention
    public float FeatMargin { get; set; } = 50f;
    public MiningTies SortTies { get; set; } = MiningTies.Torch;
    // test time (main_thu.py:140-270): classes > ClsThreshold, x20 up-sampling, CAS thresholds {0.15, 0.2},
    // attention thresholds 0.15..0.95, OIC with lambda 0.2 and gamma 0, hard NMS at 0.55
    public float ClsThreshold { get; set; } = 0.25f;
    public int UpScale { get; set; } = 20;
    public double NmsThresh { get; set; } = 0.55;

    public AcmNetConfig()
    {
        BatchSize = 16;
        MaxSeqLen = 750;
        Lr = 1e-4f;
        WeightDecay = 5e-5f;
        MaxIter = 13000;
        Interval = 13;
        WarmupIter = 0;
        Seed = 0;
    }

    public static AcmNetConfig Paper() => new();

    public static AcmNetConfig Demo() => new() { Preset = "demo", FeatDim = 256, MaxSeqLen = 320, MaxIter = 600,
        Interval = 100, Lr = 2e-4f };

    public static AcmNetConfig Tiny() => new() { Preset = "tiny", FeatDim = 16, BatchSize = 6, MaxSeqLen = 32,
        MaxIter = 5, Interval = 2 };

    public static AcmNetConfig FromPreset(string name) => name switch
    {
        "paper" => Paper(), "demo" => Demo(), "tiny" => Tiny(),
        _ => throw new ArgumentException($"unknown preset '{name}' (demo | paper | tiny)")
    };

    public static AcmNetConfig FromJson(string json) => FromJson<AcmNetConfig>(json);

    public override void Validate()
    {
        base.Validate();
        if (InsTopK < 1 || ConTopK < 1 || BakTopK < 1 || UpScale < 1)
            throw new ArgumentException("InsTopK, ConTopK, BakTopK and UpScale must be at least 1");
        if (!(Dropout >= 0 && Dropout < 1)) throw new ArgumentException($"Dropout {Dropout} must be in [0, 1)");
        if (new[] { Lamb1, Lamb2, Lamb3, FeatMargin,
            ClsThreshold }.Any(a => !float.IsFinite(a)) || !double.IsFinite(NmsThresh))
            throw new ArgumentException("the loss weights and test settings must be finite");
    }
}
