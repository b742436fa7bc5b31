// UM's settings (Pilhyeon/WTAL-Uncertainty-Modeling options.py, config.py, run.sh: seed 0). `Paper` is
// that run; `Demo` shrinks widths and steps to the demo data; `Tiny` is for tests.
using System.Text.Json;
using System.Text.Json.Serialization;

namespace PvlrKernels.Methods.Um;

public sealed class UmConfig : MethodConfig
{
    [JsonPropertyOrder(-2)] public override string Method => "um";

    [JsonIgnore] public override BatchOrder Batches => BatchOrder.EpochShuffle;

    public int Hidden { get; set; } = 2048;           // the CAS module's conv width (model.py:9)
    public float RAct { get; set; } = 9;              // k_act = T // r_act
    public float RBkg { get; set; } = 4;              // k_bkg = T // r_bkg
    public float Alpha { get; set; } = 5e-4f;         // uncertainty (magnitude) loss
    public float Beta { get; set; } = 1f;             // background entropy loss
    public float Margin { get; set; } = 100f;         // the largest feature magnitude the loss asks for
    public float DropoutRatio { get; set; } = 0.7f;   // before the classifier, and the selection mask
    public MiningTies SortTies { get; set; } = MiningTies.Torch;
    // test time (test.py, config.py:27-29): classes >= ClassThresh, x24 linear up-sampling, proposals on the
    // CAS (thresholds 0..0.225) and on the magnitudes (0.4..0.6), OIC, hard NMS at tIoU 0.6; T <= NumSegments
    public float ClassThresh { get; set; } = 0.2f;
    public int UpScale { get; set; } = 24;
    public double NmsThresh { get; set; } = 0.6;          // a Python float against float64 IoUs

    public UmConfig()
    {
        BatchSize = 16;
        MaxSeqLen = 750;
        Lr = 1e-4f;
        WeightDecay = 5e-4f;
        MaxIter = 10000;
        Interval = 100;
        WarmupIter = 0;
        Seed = 0;
    }

    public static UmConfig Paper() => new();

    public static UmConfig Demo() => new()
    {
        Preset = "demo", FeatDim = 256, Hidden = 256, MaxSeqLen = 320, MaxIter = 600, Interval = 100, Lr = 2e-4f,
    };

    public static UmConfig Tiny() => new()
    {
        Preset = "tiny", FeatDim = 16, Hidden = 8, BatchSize = 6, MaxSeqLen = 32, MaxIter = 5, Interval = 2,
    };

    public static UmConfig FromPreset(string name) => name switch
    {
        "paper" => Paper(), "demo" => Demo(), "tiny" => Tiny(),
        _ => throw new ArgumentException($"unknown preset '{name}' (demo | paper | tiny)")
    };

    public static UmConfig FromJson(string json) => FromJson<UmConfig>(json);

    public override void Validate()
    {
        base.Validate();
        if (Hidden < 1 || UpScale < 1) throw new ArgumentException("Hidden and UpScale must be at least 1");
        if (!(RAct >= 1) || !(RBkg >= 1))
            throw new ArgumentException($"RAct {RAct} and RBkg {RBkg} must be at least 1");
        if (!(DropoutRatio >= 0 && DropoutRatio < 1))
            throw new ArgumentException($"DropoutRatio {DropoutRatio} must be in [0, 1)");
        if (new[] { Alpha, Beta, Margin, ClassThresh }.Any(a => !float.IsFinite(a)) || !double.IsFinite(NmsThresh))
            throw new ArgumentException("the loss weights and test settings must be finite");
    }
}
