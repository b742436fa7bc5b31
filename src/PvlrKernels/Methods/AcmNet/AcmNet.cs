// ACM-Net, action context modeling (ispc-lab/ACM-Net model/ACMNet.py, utils/net_utils.py, main_thu.py),
// THUMOS14 variant, on the engine's ops, time-major:
//   E = ReLU(conv3 F->F (X))                                   (B,T,F)
//   a = softmax over 3 of conv1 F->3 (E): instance, context, background attention (B,T,3)
//   CAS = Linear F->C+1 (dropout(E x mask)), the mask a dropout of ones (B,T,1)
//   p_x = softmax_c(mean of the top max(T // r_x, 1) of CAS x a_x)       for x in inst, cont, back
//   f_x = mean of E (unmasked) at the top k_x of a_x, sorted on the host in CPU torch's order
//   L = sum_x -mean_b sum_c yhat_x log p_x + l1 guide + l2 feature margins + l3 sparsity
// Parameter names are the original's state_dict names.
using PvlrKernels.Engine;
using PvlrKernels.Eval;
using PvlrKernels.Util;

namespace PvlrKernels.Methods.AcmNet;

public sealed class AcmNetOutputs
{
    public Tensor Embedded, Cas, Att, InstCas, PInst, PCont, PBack, FInst, FCont, FBack;
    public Dictionary<string, float[]> Picks;
    /// The attention (B, T, 3) as the host read it to choose the picks (null when they were given).
    public float[] AttentionHost;
}

public class AcmNetModel : IMethodModel
{
    public readonly AcmNetConfig Cfg;
    public readonly ParameterStore P = new();
    public string[] Classes { get; }

    static readonly string[] Branches = ["inst", "cont", "back"];

    public AcmNetModel(AcmNetConfig cfg, IReadOnlyList<string> classes)
    {
        cfg.Validate();
        Cfg = cfg;
        Classes = classes.ToArray();
        if (Classes.Length != cfg.NumClasses)
            throw new ArgumentException($"config has {cfg.NumClasses} classes, the class list {Classes.Length}");
        int f = cfg.FeatDim;
        P.Add("feature_embedding.0.weight", [f, f, 3]);
        P.Add("feature_embedding.0.bias", [f]);
        P.Add("att_branch.weight", [3, f, 1]);
        P.Add("att_branch.bias", [3]);
        P.Add("snippet_cls.weight", [cfg.NumClasses + 1, f]);
        P.Add("snippet_cls.bias", [cfg.NumClasses + 1]);
    }

    public MethodConfig Config => Cfg;
    public ParameterStore Parameters => P;

    /// PyTorch's default init for Conv1d and Linear: U(+-1/sqrt(fan_in)) for weights and biases.
    public void Initialize(Backend backend, int seed)
    {
        P.Allocate(backend);
        var rng = new Random(seed);
        foreach (var p in P.List) P.Set(p.Name, TorchInit.Uniform(rng, p.Size, TorchInit.DefaultBound(P, p.Name)));
    }

    protected Tensor W(string n) => P[n].Value;

    public int[] Ks(int t) => [Math.Max(t / Cfg.InsTopK, 1), Math.Max(t / Cfg.ConTopK, 1), Math.Max(t / Cfg.BakTopK,
        1)];

    /// ACMNet.forward (model/ACMNet.py:37-103). `picks` may inject the (B, k) feature-anchor indices of
    /// each branch ("inst", "cont", "back"), as a replay does; otherwise they are chosen here. `tags`
    /// prefixes the names of the random draws (FTCL draws them for two videos per pair).
    public AcmNetOutputs Forward(Graph g, Tensor x, Dictionary<string, float[]> picks = null, string tags = "")
    {
        if (x.Rank != 3 || x.Dim(2) != Cfg.FeatDim)
            throw new ShapeException($"acmnet: input must be (B, T, {Cfg.FeatDim}), got {x}");
        int b = x.Dim(0), t = x.Dim(1);
        var ks = Ks(t);
        var e = g.ConvAct(x, W("feature_embedding.0.weight"), W("feature_embedding.0.bias"), 0f);
        var att = g.Softmax(g.Conv1d(e, W("att_branch.weight"), W("att_branch.bias")), 2);                 // (B,T,3)
        var masked = e;
        if (g.Training)
        {   // the snippet drop: a dropout of a (B,T,1) tensor of ones, broadcast over the features
            var select = g.New([b, t, 1]);
            g.Rng.DropoutMask(g, select, Cfg.Dropout, tags + "select");
            masked = g.Mul(e, select);
        }
        var cas = g.Linear(g.Dropout(masked, Cfg.Dropout, tags + "snippet_cls"), W("snippet_cls.weight"),
            W("snippet_cls.bias"));
        float[] attHost = picks == null ? g.ToHost(att) : null;
        var o = new AcmNetOutputs { Embedded = e, Cas = cas, Att = att, Picks = picks ?? new(),
            AttentionHost = attHost };
        var p = new Tensor[3];
        var f = new Tensor[3];
        for (int i = 0; i < 3; i++)
        {
            var a = g.Slice(att, 2, i, 1);
            var weighted = g.Mul(cas, a);
            if (i == 0) o.InstCas = g.Softmax(weighted, 2);
            p[i] = g.Softmax(g.Mean(g.TopK(weighted, 1, ks[i]).values, 1),
                2);                                // (B,1,C+1)
            if (picks == null) o.Picks[Branches[i]] = TopIndices(attHost, b, t, i, ks[i], Cfg.SortTies);
            f[i] = g.Mean(g.Gather(e, 1, g.FromHost(o.Picks[Branches[i]], b, ks[i]), perInner: false), 1);  // (B,1,F)
        }
        (o.PInst, o.PCont, o.PBack, o.FInst, o.FCont, o.FBack) = (p[0], p[1], p[2], f[0], f[1], f[2]);
        return o;
    }

    /// The top k snippets of attention branch `branch` per video, by a descending sort in the given tie order.
    public static float[] TopIndices(float[] att, int b, int t, int branch, int k, MiningTies ties)
    {
        var r = new float[b * k];
        var col = new float[t];
        for (int i = 0; i < b; i++)
        {
            for (int j = 0; j < t; j++) col[j] = att[(i * t + j) * 3 + branch];
            var order = ties == MiningTies.Torch ? TorchSort.DescendingOrder<float>(col) : Enumerable.Range(0,
                t).OrderByDescending(j => col[j]).ToArray();
            for (int j = 0; j < k; j++) r[i * k + j] = order[j];
        }
        return r;
    }

    public virtual LossTerms Losses(Graph g, Tensor features, Tensor clip, float[] labels) => Losses(g,
        Forward(g, features), labels);

    /// ACMLoss (utils/net_utils.py:24-93), THUMOS weights 1, 1, 1.
    public LossTerms Losses(Graph g, AcmNetOutputs o, float[] labels)
    {
        int b = o.Cas.Dim(0), c = Cfg.NumClasses, c1 = c + 1;
        if (labels.Length != b * c)
            throw new ShapeException($"acmnet: labels hold {labels.Length} values, expected (B={b}, C={c})");
        Tensor Target(float background, bool actions)
        {
            var y = new float[b * c1];
            for (int i = 0; i < b; i++)
            {
                float sum = background;
                for (int j = 0; j < c; j++) sum += actions ? labels[i * c + j] : 0;
                for (int j = 0; j < c; j++) y[i * c1 + j] = (actions ? labels[i * c + j] : 0) / sum;
                y[i * c1 + c] = background / sum;
            }
            return g.FromHost(y, b, 1, c1);
        }
        Tensor Cls(Tensor p, Tensor y) => g.Scale(g.SumAll(g.Mul(g.Log(p), y)), -1f / b);
        var L = new LossTerms();
        L.Terms["inst_loss"] = Cls(o.PInst, Target(0, true));
        L.Terms["cont_loss"] = Cls(o.PCont, Target(1, true));
        L.Terms["back_loss"] = Cls(o.PBack, Target(1, false));
        // mean_b sum_t |1 - softmax(CAS x a_inst)_bg - sg(a_inst)|
        var bg = g.Slice(o.InstCas, 2, c, 1);
        var aInst = g.Detach(g.Slice(o.Att, 2, 0, 1));
        var guide = g.Scale(g.SumAll(g.Abs(g.AddScalar(g.Scale(g.Add(bg, aInst), -1f), 1f))), 1f / b);
        Tensor Norm(Tensor v) => g.Sqrt(g.Sum(g.Square(v),
            2));                                                // (B,1,1)
        Tensor ni = Norm(o.FInst), nc = Norm(o.FCont), nb = Norm(o.FBack);
        var f1 = g.Relu(g.Add(g.AddScalar(g.Scale(ni, -1f), Cfg.FeatMargin), nc));
        var f2 = g.Relu(g.Add(g.AddScalar(g.Scale(nc, -1f), Cfg.FeatMargin), nb));
        var feat = g.MeanAll(g.Square(g.Add(g.Add(f1, f2), nb)));
        var sparse = g.MeanAll(g.Sum(g.Slice(o.Att, 2, 0, 2), 1));
        L.Terms["guide_loss"] = g.Scale(guide, Cfg.Lamb1);
        L.Terms["feat_loss"] = g.Scale(feat, Cfg.Lamb2);
        L.Terms["sparse_loss"] = g.Scale(sparse, Cfg.Lamb3);
        var cls = g.Add(g.Add(L.Terms["inst_loss"], L.Terms["cont_loss"]), L.Terms["back_loss"]);
        var add = g.Add(g.Add(L.Terms["guide_loss"], L.Terms["feat_loss"]), L.Terms["sparse_loss"]);
        foreach (var (k, v) in o.Picks) L.MiningIndices[k] = v;
        L.Total = g.Add(cls, add);
        return L;
    }

    public virtual IReadOnlyList<(string label, string term)> ProgressTerms { get; } =
        [("inst", "inst_loss"), ("cont", "cont_loss"), ("back", "back_loss"), ("feat", "feat_loss")];

    /// The test forward (main_thu.py:140-160) of each video alone, on its uniform_sample (at most MaxSeqLen
    /// snippets; a one-snippet video twice): per video CAS x a_inst (T', C+1) and a_inst (T').
    public (float[] cas, float[] attn)[] Signals(Graph g, float[] testConstants,
        IReadOnlyList<(string name, ReadOnlyMemory<float> features, int t)> videos)
    {
        Inference.CheckVideos(videos, Cfg.FeatDim);
        var result = new (float[] cas, float[] attn)[videos.Count];
        int fd = Cfg.FeatDim;
        for (int v = 0; v < videos.Count; v++)
        {
            var (_, f, t) = videos[v];
            int n = t <= Cfg.MaxSeqLen && t > 1 ? t : (t == 1 ? 2 : Cfg.MaxSeqLen);
            var x = Inference.SampleRows(f.Span, fd, Enumerable.Range(0,
                n).Select(i => t <= Cfg.MaxSeqLen && t > 1 ? i : (int)Math.Floor(i * ((double)t / n))).ToArray());
            g.Reset();
            g.Training = false;
            g.WinogradTile = Cfg.WinogradTile;
            using (g.NoGrad())
            {
                var e = g.ConvAct(g.FromHost(x, 1, n, fd), W("feature_embedding.0.weight"),
                    W("feature_embedding.0.bias"), 0f);
                var aInst = g.Slice(g.Softmax(g.Conv1d(e, W("att_branch.weight"), W("att_branch.bias")), 2), 2, 0, 1);
                var cas = g.Linear(e, W("snippet_cls.weight"), W("snippet_cls.bias"));
                result[v] = (g.ToHost(g.Mul(cas, aInst)), g.ToHost(aInst));
            }
        }
        return result;
    }

    public (List<Detection> detections, float[] scores) Detect(string video, float[] cas, float[] attn, int t,
        List<(double, double)> ambiguous) =>
        AcmNetProposals.Generate(Cfg, video, cas, attn, t);

    public EvaluationProtocol Evaluation => EvaluationProtocol.Seconds210;
}
