// CO2-Net's settings (harlanhong/MM2021-CO2-Net options.py and the THUMOS14 line of run.sh: --max-seqlen
// 500 --lr 0.00005 --k 7 --max-iter 5000 --weight_decay 0.001 --seed 3552). `Paper` is that run; `Demo`
// shrinks widths and steps to the demo data; `Tiny` is for tests. `ActivityNet` is the ActivityNet1.2 line
// of run.sh (ANT_CO2, AntSampleDataset: --k 5 --lr 3e-5 --max-seqlen 60 --num-class 100 --max-iter 22000,
// options.py --t 5); `ActivityNetDemo` shrinks it to the ActivityNet-shaped demo data.
using System.Text.Json;
using System.Text.Json.Serialization;

namespace PvlrKernels.Methods.Co2Net;

public sealed class Co2NetConfig : MethodConfig
{
    [JsonPropertyOrder(-2)] public override string Method => "co2net";

    /// THUMOS's SampleDataset crops a batch to its longest video; AntSampleDataset resamples every video to
    /// exactly max_seqlen snippets.
    [JsonIgnore] public override bool TrimBatchToLongest => PoolT == 0;

    /// --t of ANT_CO2 (model.py:239): its outputs are smoothed over time with AvgPool1d of PoolKernel taps.
    /// 0: THUMOS's CO2, no pooling.
    public int PoolT { get; set; }
    [JsonIgnore] public int PoolKernel => PoolT > 0 ? MaxSeqLen / PoolT / 2 * 2 + 1 : 1;

    public int AttnHidden { get; set; } = 512;        // the attention head's width (model.py:30-36)
    public int TrainTopK { get; set; } = 7;           // --k: the MIL loss's top T / k
    public float DropoutRatio { get; set; } = 0.7f;   // fusion and classifier dropout (options.py:37)
    public float DropAttn { get; set; } = 0.5f;       // inside the attention modules (model.py:27-37)
    public float Alpha1 { get; set; } = 0.8f;         // norm
    public float Alpha2 { get; set; } = 0.8f;         // guide
    public float Alpha3 { get; set; } = 1f;           // co-activity contrast
    public float Alpha4 { get; set; } = 1f;           // mutual learning
    // test time (proposal_methods.py:93-160): video scores from the top T/10 of cas*attn, classes >= 0.2,
    // proposals on attention thresholds 0.1..0.9, OIC with lambda 0.25 and gamma 0.2, soft-NMS sigma 0.3
    public int TestTopK { get; set; } = 10;
    public float VidThresh { get; set; } = 0.2f;
    public double GammaOic { get; set; } = 0.2;       // Python floats in float64 arithmetic, so doubles
    public double LambdaOic { get; set; } = 0.25;
    public double NmsSigma { get; set; } = 0.3;

    public Co2NetConfig()
    {
        MaxSeqLen = 500;
        Lr = 5e-5f;
        WeightDecay = 1e-3f;
        MaxIter = 5000;
        Interval = 200;
        WarmupIter = 0;
        Seed = 3552;
    }

    public static Co2NetConfig Paper() => new();

    /// F=256, attention 64 wide, 600 steps: trains on the demo data on 2 cores in minutes.
    public static Co2NetConfig Demo() => new()
    {
        Preset = "demo", FeatDim = 256, AttnHidden = 64, MaxSeqLen = 320, MaxIter = 600, Interval = 100, Lr = 2e-4f,
    };

    /// ActivityNet 1.2 (run.sh: ANT_CO2 on AntSampleDataset), AvgPool1d of 13 taps.
    public static Co2NetConfig ActivityNet() => new()
    {
        Preset = "anet", MaxSeqLen = 60, TrainTopK = 5, Lr = 3e-5f, NumClasses = 100, MaxIter = 22000, PoolT = 5,
        ShortVideo = 10,
    };

    /// The ActivityNet-shaped demo set (pvlr gen-demo --benchmark activitynet1.2): F=256, attention 64,
    /// 200 classes, 2,000 steps.
    public static Co2NetConfig ActivityNetDemo() => new()
    {
        Preset = "anet-demo", FeatDim = 256, AttnHidden = 64, MaxSeqLen = 60, TrainTopK = 5, Lr = 2e-4f,
        NumClasses = 200, MaxIter = 2000, PoolT = 5, ShortVideo = 10,
    };

    public static Co2NetConfig Tiny() => new()
    {
        Preset = "tiny", FeatDim = 16, AttnHidden = 4, BatchSize = 6, MaxSeqLen = 32, MaxIter = 5, Interval = 2,
    };

    public static Co2NetConfig FromPreset(string name) => name switch
    {
        "paper" => Paper(), "demo" => Demo(), "tiny" => Tiny(), "anet" => ActivityNet(),
        "anet-demo" => ActivityNetDemo(),
        _ => throw new ArgumentException($"unknown preset '{name}' (demo | paper | tiny | anet | anet-demo)")
    };

    public static Co2NetConfig FromJson(string json) => FromJson<Co2NetConfig>(json);

    public override void Validate()
    {
        base.Validate();
        if (PoolT < 0) throw new ArgumentException($"PoolT {PoolT} must be 0 (no pooling) or positive");
        foreach (var (name, v) in new[] { ("AttnHidden", AttnHidden), ("TrainTopK", TrainTopK), ("TestTopK",
            TestTopK) })
            if (v < 1) throw new ArgumentException($"{name} {v} must be at least 1");
        foreach (var (name, v) in new[] { ("DropoutRatio", DropoutRatio), ("DropAttn", DropAttn) })
            if (!(v >= 0 && v < 1)) throw new ArgumentException($"{name} {v} must be in [0, 1)");
        if (new[] { Alpha1, Alpha2, Alpha3, Alpha4, VidThresh }.Any(a => !float.IsFinite(a)) || new[] { GammaOic,
            LambdaOic, NmsSigma }.Any(a => !double.IsFinite(a)))
            throw new ArgumentException("the alphas and the proposal settings must be finite");
    }
}
