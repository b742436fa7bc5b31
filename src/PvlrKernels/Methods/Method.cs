// The method layer: what the shared training loop (Train/Trainer.cs), evaluation and inference
// (Eval/Inference.cs), checkpoints and export (Train/Checkpoint.cs), `pvlr bench` and `pvlr replay`
// need of one weakly supervised localization method. PVLR (Methods/Pvlr/) is the first; each further
// method is a folder beside it that implements IMethod and IMethodModel and is listed in Methods.All.
using System.Text.Json;
using System.Text.Json.Serialization;
using PvlrKernels.Engine;
using PvlrKernels.Eval;
using PvlrKernels.Train;

namespace PvlrKernels.Methods;

/// The settings every method has: the data's widths, the batch sampler, the optimizer and the schedule,
/// test-time batching. A method's config derives from it and adds its own; `Method` names the method in
/// every config.json and checkpoint.
public abstract class MethodConfig
{
    [JsonPropertyOrder(-2)] public abstract string Method { get; }
    [JsonPropertyOrder(-1)] public string Preset { get; set; } = "paper";
    // the data
    public int FeatDim { get; set; } = 2048;          // I3D RGB | flow
    public int NumClasses { get; set; } = 20;
    // the batch sampler (W-TALC's: similar-class pairs first)
    public int BatchSize { get; set; } = 10;
    public int MaxSeqLen { get; set; } = 320;
    public int NumSimilar { get; set; } = 3;
    /// Videos of at most this many snippets are left out of training and not run at test, their ground
    /// truth still counting (AntSampleDataset.filter, CO2-Net wsad_dataset.py:264-281); 0: none.
    public int ShortVideo { get; set; }
    public int SimilarSize { get; set; } = 2;
    // optimisation and schedule
    public float Lr { get; set; } = 5e-5f;
    public float WeightDecay { get; set; } = 1e-3f;
    public int MaxIter { get; set; } = 7001;
    public int Interval { get; set; } = 50;
    public int WarmupIter { get; set; } = 3500;
    public int Seed { get; set; } = 123;
    // test time; the outputs equal the plain per-video forward up to fp32 rounding
    // snippet rows per ragged inference batch (several videos per forward)
    public int InferRows { get; set; } = 2048;
    // Winograd F(m,3) for the k=3 convs at test time (2, 4, 6; 0 = direct)
    public int WinogradTile { get; set; } = 6;
    public int TrainWinogradTile { get; set; } = 6;   // the same for the training forward and input gradient

    public const int MaxInferRows = 1 << 20;

    /// How training batches are drawn: W-TALC's (three same-class pairs, then uniform draws with
    /// replacement) or a shuffled pass over the training videos per epoch, the last batch smaller
    /// (UM's DataLoader(shuffle=True)).
    [JsonIgnore] public virtual BatchOrder Batches => BatchOrder.SimilarPairs;
    /// Videos in one training batch: BatchSize, or twice that when a batch is BatchSize pairs (LabelPairs).
    [JsonIgnore] public int VideosPerBatch => Batches == BatchOrder.LabelPairs ? 2 * BatchSize : BatchSize;
    [JsonIgnore] public virtual Resampling Resample => Resampling.Perturb;
    /// Whether each training batch is cut to its longest video's snippet count, as CO2-Net's train.py:16-17
    /// does. PVLR's main.py:75-76 cuts the features the same way but not its CLIP features, so any cut
    /// batch would fail there; PVLR's batches are never cut.
    [JsonIgnore] public virtual bool TrimBatchToLongest => false;
    /// RGB | flow halves of a feature row.
    [JsonIgnore] public int Half => FeatDim / 2;
    /// The width of the per-snippet CLIP features a training batch carries (0: the method reads none).
    [JsonIgnore] public virtual int ClipFeatureWidth => 0;

    static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true,
        Converters = { new JsonStringEnumConverter() } };

    /// The config as config.json holds it (its own type's fields; enums by name).
    public string ToJson() => JsonSerializer.Serialize(this, GetType(), JsonOptions);

    /// A config.json of method config type T; malformed JSON is one ArgumentException naming why.
    public static T FromJson<T>(string json) where T : MethodConfig
    {
        try { return JsonSerializer.Deserialize<T>(json, JsonOptions)
            ?? throw new ArgumentException("an empty config"); }
        catch (JsonException e) { throw new ArgumentException($"a config that is not valid JSON "
            + $"({e.Message.Split('\n')[0]})"); }
    }

    /// Refuses settings no run can use, naming the field.
    public virtual void Validate()
    {
        foreach (var (name, v) in new[] { ("FeatDim", FeatDim), ("NumClasses", NumClasses), ("MaxSeqLen", MaxSeqLen),
            ("Interval", Interval) })
            if (v < 1) throw new ArgumentException($"{name} {v} must be at least 1");
        if (MaxIter < 0 || WarmupIter < 0) throw new ArgumentException("MaxIter and WarmupIter must not be negative");
        if (FeatDim % 2 != 0) throw new ArgumentException($"FeatDim {FeatDim} must be even (RGB | flow)");
        if (BatchSize < 2) throw new ArgumentException("BatchSize must be at least 2");
        if (ShortVideo < 0) throw new ArgumentException($"ShortVideo {ShortVideo} must be 0 or more");
        if (InferRows < 1 || InferRows > MaxInferRows)
            throw new ArgumentException($"InferRows {InferRows} must be between 1 and {MaxInferRows}");
        if (!float.IsFinite(Lr) || !float.IsFinite(WeightDecay))
            throw new ArgumentException("Lr and WeightDecay must be finite");
        if (WinogradTile != 0 && !Engine.Winograd.Supported(WinogradTile))
            throw new ArgumentException($"WinogradTile {WinogradTile}: use 0 (direct), 2, 4 or 6");
        if (TrainWinogradTile != 0 && !Engine.Winograd.Supported(TrainWinogradTile))
            throw new ArgumentException($"TrainWinogradTile {TrainWinogradTile}: use 0 (direct), 2, 4 or 6");
    }
}

/// SimilarPairs: W-TALC's batches; EpochShuffle: a shuffled pass over the training videos per epoch;
/// LabelPairs: a shuffled pass over a fixed list of video pairs (FTCL's FTCLDataset), a batch of B pairs
/// being 2B videos, the first of each pair in rows 0..B-1 and the second in rows B..2B-1.
public enum BatchOrder { SimilarPairs, EpochShuffle, LabelPairs }

/// How a training video becomes exactly T snippets: W-TALC's random_perturb (one random index per
/// stratum; PVLR, CO2-Net, UM) or ACM-Net's random_sample (the same for longer videos, sorted draws with
/// replacement for shorter ones).
public enum Resampling { Perturb, AcmRandom }

/// How a method's host-side sorts order equal scores: as CPU torch's sort does (the originals' order), or
/// stably (lowest index first).
public enum MiningTies { Torch, Stable }

/// The loss of one training batch: the total that backward starts from and each named term (the terms
/// the original logs), plus any indices the method chose on the host (a replay compares them).
public sealed class LossTerms
{
    public Tensor Total;
    public readonly Dictionary<string, Tensor> Terms = new();
    public Dictionary<string, float[]> MiningIndices = new();
}

/// A built model of one method: its parameters, the losses of a batch and its test-time path.
public interface IMethodModel
{
    MethodConfig Config { get; }
    string[] Classes { get; }
    ParameterStore Parameters { get; }

    /// Allocates the parameters on `backend` and draws their initial values from `seed`. (Every parameter,
    /// name and shape, is declared when the model is built, so a checkpoint can be loaded instead.)
    void Initialize(Backend backend, int seed);

    /// The training forward and every loss term of one batch: features (B, T, F), CLIP features
    /// (B, T, ClipFeatureWidth) or null, multi-hot labels (B, C).
    LossTerms Losses(Graph g, Tensor features, Tensor clip, float[] labels);

    /// The terms the progress line shows, as (short label, term name).
    IReadOnlyList<(string label, string term)> ProgressTerms { get; }

    /// A sentence on why a loss term can be non-finite for this batch when the original is too (or "").
    string NonFiniteReason(string term, float[] labels) => "";

    /// What every test video's forward reads and that is computed once per evaluation (PVLR: the class
    /// text features); null where nothing is.
    float[] TestConstants(Graph g) => null;

    /// The test-time signals of a ragged batch of videos in one forward (Inference.Batches keeps a batch
    /// within Config.InferRows rows): per video the class activation sequence (T, C+1, background last)
    /// and the attention or actionness (T). Names appear in errors only.
    (float[] cas, float[] attn)[] Signals(Graph g, float[] testConstants,
        IReadOnlyList<(string name, ReadOnlyMemory<float> features, int t)> videos);

    /// The detections and video-level class scores of one video from its signals, as the original's
    /// proposal and NMS code makes them; `ambiguous` are the video's ambiguous segments (seconds).
    (List<Detection> detections, float[] scores) Detect(string video, float[] cas, float[] attn, int t,
        List<(double, double)> ambiguous);

    /// The units and test videos the method's own evaluation uses (CO2-Net and PVLR: snippets, 212 videos;
    /// UM and ACM-Net: seconds, 210 videos).
    EvaluationProtocol Evaluation => EvaluationProtocol.Snippets;
}

/// Which ground truth the detections are scored against: in snippet units (seconds x 25/16, rounded half
/// to even: CO2-Net's and PVLR's ANETdetection) or in seconds, and which test videos are left out
/// (UM's split_test.txt lacks three of THUMOS14's 213). The AP itself is the same interpolated one.
public sealed record EvaluationProtocol(string Name, bool Seconds, IReadOnlySet<string> Excluded)
{
    public static readonly EvaluationProtocol Snippets = new("snippets", false, new HashSet<string>());
    /// UM's and ACM-Net's split_test.txt: THUMOS14's test videos less 270, 1292 and 1496.
    public static readonly EvaluationProtocol Seconds210 = new("seconds, the 210 test videos of UM's and ACM-Net's "
        + "splits", true,
        new HashSet<string> { "video_test_0000270", "video_test_0001292", "video_test_0001496" });

    public List<GtSegment> GroundTruth(Data.Annotations ann) => Seconds
        ? ann.Test.Where(v => !Excluded.Contains(v.Name)).SelectMany(v => v.Segments.Select(s => new GtSegment(v.Name,
            s.start, s.end, ann.ClassIndex(s.label)))).ToList()
        : Evaluator.GroundTruth(ann).Where(g => !Excluded.Contains(g.Video)).ToList();
}

/// One method: its presets, configs and models, PyTorch state_dict import, and the replay of a dumped
/// step of its reference restatement.
public interface IMethod
{
    string Name { get; }
    /// One line for `pvlr --help` and errors.
    string Summary { get; }
    IReadOnlyList<string> Presets { get; }
    MethodConfig Preset(string name);
    MethodConfig ConfigFromJson(string json);
    IMethodModel Build(MethodConfig config, IReadOnlyList<string> classes);

    /// A PyTorch state_dict (torch.save zip) onto a new model; `report` says what was missing, unused or
    /// of another shape. `classes` overrides the archive's own or the default class list.
    IMethodModel LoadTorch(string path, Backend backend, out string report, IReadOnlyList<string> classes = null);

    /// Replays one training step dumped by the method's reference script in `stateDir`.
    ReplayResult Replay(string stateDir, Backend backend, Action<MethodConfig> configure = null);
}

/// The methods this engine implements, and any an embedding application adds (Register).
public static class MethodRegistry
{
    static readonly object Lock = new();
    static IMethod[] all = [new Pvlr.PvlrMethod(), new Co2Net.Co2NetMethod(), new Um.UmMethod(),
        new AcmNet.AcmNetMethod(), new Ftcl.FtclMethod()];

    public static IReadOnlyList<IMethod> All { get { lock (Lock) return all; } }

    public static string Names => string.Join(" | ", All.Select(m => m.Name));

    public static IMethod Get(string name) =>
        All.FirstOrDefault(m => m.Name == name) ?? throw new ArgumentException($"unknown method '{name}' ({Names})");

    /// Adds a method (an application's own, on the same training loop, checkpoints and evaluation); a
    /// second method of the same name is refused.
    public static void Register(IMethod method)
    {
        lock (Lock)
        {
            if (all.Any(m => m.Name == method.Name))
                throw new ArgumentException($"a method named '{method.Name}' is already registered");
            all = [.. all, method];
        }
    }

    /// The method a config.json names ("Method"; PVLR for configs written before the field existed).
    public static IMethod Of(string configJson)
    {
        string name = "pvlr";
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(configJson);
            if (doc.RootElement.ValueKind == System.Text.Json.JsonValueKind.Object
                && doc.RootElement.TryGetProperty("Method", out var m)
                && m.ValueKind == System.Text.Json.JsonValueKind.String) name = m.GetString();
        }
        catch (System.Text.Json.JsonException e) { throw new ArgumentException($"a config that is not valid JSON "
            + $"({e.Message.Split('\n')[0]})"); }
        return Get(name);
    }

    /// A config.json read by the method it names.
    public static MethodConfig ConfigFromJson(string json) => Of(json).ConfigFromJson(json);
}
