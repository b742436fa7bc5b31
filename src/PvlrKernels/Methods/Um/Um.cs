// UM, weakly-supervised localization by uncertainty modeling (Pilhyeon/WTAL-Uncertainty-Modeling
// model.py, train.py, test.py) on the engine's ops, time-major:
//   features = ReLU(conv3 F->H (X))                        (B,T,H); magnitudes ||features_t||
//   CAS = conv1 H->C, no bias (dropout 0.7 before it)      (B,T,C), no background class
//   action snippets: top T//9 of magnitude x mask; background: top T//4 of (max - magnitude) x mask, the
//   mask a dropout of ones (dropped snippets are never picked); both sorts run on the host in CPU
//   torch's tie order.
//   score_act = softmax_c(mean of the top T//9 CAS values), score_bkg = softmax_c(mean CAS at background)
//   loss = BCE(score_act, y/sum y) + alpha (max(0, m - ||mean f_act||) + ||mean f_bkg||)^2 + beta BCE(score_bkg, 1/C)
// Parameter names are the original's state_dict names.
using PvlrKernels.Engine;
using PvlrKernels.Eval;
using PvlrKernels.Util;

namespace PvlrKernels.Methods.Um;

public sealed class UmOutputs
{
    public Tensor Cas, Features, ScoreAct, ScoreBkg, FeatAct, FeatBkg;
    public float[] ActIndices, BkgIndices;
}

public sealed class UmModel : IMethodModel
{
    public readonly UmConfig Cfg;
    public readonly ParameterStore P = new();
    public string[] Classes { get; }


    public UmModel(UmConfig cfg, IReadOnlyList<string> classes)
    {
        cfg.Validate();
        Cfg = cfg;
        Classes = classes.ToArray();
        if (Classes.Length != cfg.NumClasses)
            throw new ArgumentException($"config has {cfg.NumClasses} classes, the class list {Classes.Length}");
        P.Add("cas_module.conv.0.weight", [cfg.Hidden, cfg.FeatDim, 3]);
        P.Add("cas_module.conv.0.bias", [cfg.Hidden]);
        P.Add("cas_module.classifier.0.weight", [cfg.NumClasses, cfg.Hidden, 1]);
    }

    public MethodConfig Config => Cfg;
    public ParameterStore Parameters => P;

    /// PyTorch's default Conv1d init, which UM keeps: U(+-1/sqrt(fan_in)) for weights and the bias.
    public void Initialize(Backend backend, int seed)
    {
        P.Allocate(backend);
        var rng = new Random(seed);
        foreach (var p in P.List) P.Set(p.Name, TorchInit.Uniform(rng, p.Size, TorchInit.DefaultBound(P, p.Name)));
    }

    Tensor W(string n) => P[n].Value;

    /// k_act and k_bkg of a batch of T snippets (model.py:51-53: T // r, r a float).
    public (int act, int bkg) Ks(int t) => ((int)Math.Floor(t / Cfg.RAct), (int)Math.Floor(t / Cfg.RBkg));

    /// The forward of model.py:56-97. `picks` may inject the (B, k) action and background indices by
    /// name ("act", "bkg"), as a replay of a recorded step does; otherwise they are chosen here.
    public UmOutputs Forward(Graph g, Tensor x, Dictionary<string, float[]> picks = null)
    {
        if (x.Rank != 3 || x.Dim(2) != Cfg.FeatDim)
            throw new ShapeException($"um: input must be (B, T, {Cfg.FeatDim}), got {x}");
        int b = x.Dim(0), t = x.Dim(1);
        var (kAct, kBkg) = Ks(t);
        if (kAct < 1 || kBkg < 1)
            throw new ShapeException($"um: {t} snippets leave no action (T // {Cfg.RAct}) or background (T // "
                + $"{Cfg.RBkg}) snippet");
        var features = g.ConvAct(x, W("cas_module.conv.0.weight"), W("cas_module.conv.0.bias"), 0f);
        var cas = g.Conv1d(g.Dropout(features, Cfg.DropoutRatio, "cas_module.drop_out"),
            W("cas_module.classifier.0.weight"), null);
        float[] magnitudes;
        using (g.NoGrad()) magnitudes = g.ToHost(g.Sqrt(g.Sum(g.Square(features), 2)));
        var select = new float[b * t];
        if (g.Training)
        {
            var mask = g.New([b, t]);
            g.Rng.DropoutMask(g, mask, Cfg.DropoutRatio, "drop_out");
            select = g.ToHost(mask);
        }
        else Array.Fill(select, 1f);
        var (act, bkg) = picks != null && picks.ContainsKey("act") ? (picks["act"], picks["bkg"]) : Select(magnitudes,
            select, b, t, kAct, kBkg, Cfg.SortTies);
        var actIdx = g.FromHost(act, b, kAct);
        var bkgIdx = g.FromHost(bkg, b, kBkg);
        var (top, _) = g.TopK(cas, 1, kAct);
        return new UmOutputs
        {
            Cas = cas, Features = features, ActIndices = act, BkgIndices = bkg,
            FeatAct = g.Gather(features, 1, actIdx, perInner: false), FeatBkg = g.Gather(features, 1, bkgIdx,
                perInner: false),
            ScoreAct = g.Softmax(g.Mean(top, 1), 2), ScoreBkg = g.Softmax(g.Mean(g.Gather(cas, 1, bkgIdx,
                perInner: false), 1), 2),
        };
    }

    /// The action and background picks of model.py:59-74 on the host, in float32 as the original computes
    /// them: per video the top kAct of |f| x mask and the top kBkg of (max |f| - |f|) x mask, both by a
    /// descending sort in the given tie order.
    public static (float[] act, float[] bkg) Select(float[] magnitudes, float[] mask, int b, int t, int kAct,
        int kBkg, MiningTies ties)
    {
        var act = new float[b * kAct];
        var bkg = new float[b * kBkg];
        var drop = new float[t];
        var rev = new float[t];
        for (int i = 0; i < b; i++)
        {
            var m = magnitudes.AsSpan(i * t, t);
            float max = float.NegativeInfinity;
            foreach (var v in m) max = Math.Max(max, v);
            for (int j = 0; j < t; j++)
            {
                drop[j] = m[j] * mask[i * t + j];
                rev[j] = (max - m[j]) * mask[i * t + j];
            }
            int[] Order(float[] s) => ties == MiningTies.Torch
                ? TorchSort.DescendingOrder<float>(s) : Enumerable.Range(0, t).OrderByDescending(j => s[j]).ToArray();
            var oa = Order(drop);
            var ob = Order(rev);
            for (int j = 0; j < kAct; j++) act[i * kAct + j] = oa[j];
            for (int j = 0; j < kBkg; j++) bkg[i * kBkg + j] = ob[j];
        }
        return (act, bkg);
    }

    public LossTerms Losses(Graph g, Tensor features, Tensor clip, float[] labels) => Losses(g, Forward(g, features),
        labels);

    /// UM_loss (train.py:5-37), each term with its weight.
    public LossTerms Losses(Graph g, UmOutputs o, float[] labels)
    {
        int b = o.Cas.Dim(0), c = Cfg.NumClasses;
        if (labels.Length != b * c)
            throw new ShapeException($"um: labels hold {labels.Length} values, expected (B={b}, C={c})");
        var normalized = new float[b * c];
        for (int i = 0; i < b; i++)
        {
            float sum = 0;
            for (int j = 0; j < c; j++) sum += labels[i * c + j];
            for (int j = 0; j < c; j++) normalized[i * c + j] = labels[i * c + j] / sum;
        }
        var cls = g.MeanAll(g.BinaryCrossEntropy(o.ScoreAct, g.FromHost(normalized, b, 1, c)));
        var be = g.MeanAll(g.BinaryCrossEntropy(o.ScoreBkg, g.Full(1f / c, b, 1, c)));
        Tensor Norm(Tensor picked) => g.Sqrt(g.Sum(g.Square(g.Mean(picked, 1)), 2));               // (B,1,1)
        var act = g.Relu(g.AddScalar(g.Scale(Norm(o.FeatAct), -1f), Cfg.Margin));
        var um = g.MeanAll(g.Square(g.Add(act, Norm(o.FeatBkg))));
        var L = new LossTerms();
        L.Terms["cls_loss"] = cls;
        L.Terms["um_loss"] = g.Scale(um, Cfg.Alpha);
        L.Terms["be_loss"] = g.Scale(be, Cfg.Beta);
        L.MiningIndices["act"] = o.ActIndices;
        L.MiningIndices["bkg"] = o.BkgIndices;
        L.Total = g.Add(g.Add(L.Terms["cls_loss"], L.Terms["um_loss"]), L.Terms["be_loss"]);
        return L;
    }

    public IReadOnlyList<(string label, string term)> ProgressTerms { get; } = [("cls", "cls_loss"), ("um",
        "um_loss"), ("be", "be_loss")];

    /// The test forward of each video (test.py:30-35), one at a time as the original's batch of 1, on at
    /// most MaxSeqLen snippets sampled uniformly (thumos_features.py:153-158): per video the raw CAS
    /// (T', C) and the feature magnitudes (T'), T' the sampled length.
    public (float[] cas, float[] attn)[] Signals(Graph g, float[] testConstants,
        IReadOnlyList<(string name, ReadOnlyMemory<float> features, int t)> videos)
    {
        Inference.CheckVideos(videos, Cfg.FeatDim);
        var result = new (float[] cas, float[] attn)[videos.Count];
        for (int v = 0; v < videos.Count; v++)
        {
            var (_, f, t) = videos[v];
            int n = Math.Min(t, Cfg.MaxSeqLen);
            var x = Inference.SampleRows(f.Span, Cfg.FeatDim, Enumerable.Range(0,
                n).Select(i => t <= Cfg.MaxSeqLen ? i : (int)Math.Floor((double)i * t / Cfg.MaxSeqLen)).ToArray());
            g.Reset();
            g.Training = false;
            g.WinogradTile = Cfg.WinogradTile;
            using (g.NoGrad())
            {
                var xt = g.FromHost(x, 1, n, Cfg.FeatDim);
                var features = g.ConvAct(xt, W("cas_module.conv.0.weight"), W("cas_module.conv.0.bias"), 0f);
                var cas = g.Conv1d(features, W("cas_module.classifier.0.weight"), null);
                result[v] = (g.ToHost(cas), g.ToHost(g.Sqrt(g.Sum(g.Square(features), 2))));
            }
        }
        return result;
    }

    /// test.py:37-127 on one video: detections in seconds, and score_act as its classification scores.
    public (List<Detection> detections, float[] scores) Detect(string video, float[] cas, float[] magnitudes, int t,
        List<(double, double)> ambiguous) =>
        UmProposals.Generate(Cfg, video, cas, magnitudes, t);

    /// UM evaluates in seconds on the 210 test videos of its split_test.txt (Evaluation).
    public EvaluationProtocol Evaluation => EvaluationProtocol.Seconds210;
}
