// The CO2-Net network and losses (harlanhong/MM2021-CO2-Net model.py:23-152: the CO2 model with the
// BWA_fusion_dropout_feat_v2 attention modules) on the engine's ops, time-major throughout:
//   X (B,T,F) -> RGB V | flow Fl (B,T,F/2)
//   per modality: gate = sigmoid(conv3(other) * conv3(mean_t self)), filtered = gate * self,
//                 attention = sigmoid(conv1(conv3(conv3(filtered))))                (B,T,1)
//   attention = (a_flow + a_rgb) / 2; fusion conv1 F->F on [filtered_rgb | filtered_flow]
//   classifier: dropout, conv3 F->F, dropout, conv1 F->C+1                          -> CAS (B,T,C+1)
// Parameter names are the original's state_dict names. `feat_encoder` (model.py:58) is defined there
// but never called: it is not part of this model, and an imported state_dict's copy is reported unused.
// ActivityNet's ANT_CO2 (model.py:222-260) is the same network with its four outputs (CAS, attention and
// the two modal attentions) smoothed over time by AvgPool1d(k, stride 1, padding k/2, count_include_pad)
// with k = (max_seqlen // t) // 2 * 2 + 1 (Co2NetConfig.PoolT); it sums the mutual loss unweighted, which
// equals alpha4 = 1 (options.py:48).
using PvlrKernels.Engine;
using PvlrKernels.Eval;
using PvlrKernels.Model;

namespace PvlrKernels.Methods.Co2Net;

public sealed class Co2NetOutputs
{
    public Tensor Cas, Attn, VAttn, FAttn, Feat;
}

public sealed class Co2NetModel : IMethodModel
{
    public readonly Co2NetConfig Cfg;
    public readonly ParameterStore P = new();
    public string[] Classes { get; }

    /// The loss terms, in the order the original sums them (model.py:140-145), each with its weight.
    public static readonly string[] TermNames = ["mil_loss", "mil_supp_loss", "contrastive_loss", "mutual_loss",
        "norm_loss", "guide_loss"];

    public Co2NetModel(Co2NetConfig cfg, IReadOnlyList<string> classes)
    {
        cfg.Validate();
        Cfg = cfg;
        Classes = classes.ToArray();
        if (Classes.Length != cfg.NumClasses)
            throw new ArgumentException($"config has {cfg.NumClasses} classes, the class list {Classes.Length}");
        int h = cfg.Half, a = cfg.AttnHidden, f = cfg.FeatDim;
        foreach (var m in new[] { "vAttn", "fAttn" })
        {
            Conv($"{m}.bit_wise_attn.0", h, h, 3);
            Conv($"{m}.channel_conv.0", h, h, 3);
            Conv($"{m}.attention.0", a, h, 3);
            Conv($"{m}.attention.3", a, a, 3);
            Conv($"{m}.attention.5", 1, a, 1);
        }
        Conv("fusion.0", f, f, 1);
        Conv("classifier.1", f, f, 3);
        Conv("classifier.4", cfg.NumClasses + 1, f, 1);
    }

    void Conv(string name, int cout, int cin, int k) { P.Add(name + ".weight", [cout, cin, k]); P.Add(name + ".bias",
        [cout]); }

    public MethodConfig Config => Cfg;
    public ParameterStore Parameters => P;

    /// Allocates the arenas and draws the original's init (model.py:13-21): kaiming_uniform_ weights,
    /// U(+-sqrt(6 / fan_in)), zero biases.
    public void Initialize(Backend backend, int seed)
    {
        P.Allocate(backend);
        var rng = new Random(seed);
        foreach (var p in P.List)
        {
            var v = new float[p.Size];
            if (p.Shape.Length == 3)
            {
                double bound = Math.Sqrt(6.0 / (p.Shape[1] * p.Shape[2]));
                for (int i = 0; i < v.Length; i++) v[i] = (float)((rng.NextDouble() * 2 - 1) * bound);
            }
            P.Set(p.Name, v);
        }
    }

    Tensor W(string n) => P[n].Value;

    // ---------------- the attention module (model.py:23-45) ----------------
    /// `self` is the module's own modality, `other` the other one; over a ragged batch the rows between
    /// videos are re-zeroed after each conv that a later k=3 conv reads.
    (Tensor attn, Tensor filtered) Attn(Graph g, string m, Tensor self, Tensor other, RaggedBatch rag)
    {
        float pd = Cfg.DropAttn;
        Tensor Cv(Tensor x, string layer, float slope = 0.2f, bool mask = true) =>
            g.ConvAct(x, W($"{m}.{layer}.weight"), W($"{m}.{layer}.bias"), slope, mask ? rag?.Mask : null);
        int h = self.Dim(2);
        var pooled = rag == null ? g.Mean(self, 1)                                      // (B,1,H)
            : g.Reshape(g.MatMul(rag.SegMean, g.Reshape(self, rag.Rows, h)), rag.Count, 1, h);
        var channel = g.Dropout(Cv(pooled, "channel_conv.0", mask: false), pd, $"{m}.channel_conv");
        var bitWise = g.Dropout(Cv(other, "bit_wise_attn.0"), pd, $"{m}.bit_wise_attn");
        var channelPerRow = rag == null ? channel                                       // each row its own video's
            : g.Reshape(g.Gather(g.Reshape(channel, 1, rag.Count, h), 1, g.Reshape(rag.RowVideo, 1, rag.Rows),
                perInner: false), 1, rag.Rows, h);
        var filtered = g.Mul(g.Sigmoid(g.Mul(bitWise, channelPerRow)), self);
        var h1 = g.Dropout(Cv(filtered, "attention.0"), pd, $"{m}.attention.2");
        var h2 = Cv(h1, "attention.3", mask: false);                                    // feeds only the k=1 conv
        var a = g.Dropout(Cv(h2, "attention.5", 1f, mask: false), pd, $"{m}.attention.6");
        return (g.Sigmoid(a), filtered);
    }

    // ---------------- the whole forward (model.py:74-92) ----------------
    public Co2NetOutputs Forward(Graph g, Tensor x)
    {
        if (x.Rank != 3 || x.Dim(2) != Cfg.FeatDim)
            throw new ShapeException($"co2net: input must be (B, T, {Cfg.FeatDim}), got {x}");
        int h = Cfg.Half;
        return Forward(g, g.Slice(x, 2, 0, h), g.Slice(x, 2, h, h), null);
    }

    /// The same with the RGB (v) and flow (fl) halves given apart; with `rag` they are the ragged batch's
    /// packed (1, R, F/2) and every output is (1, R, .).
    public Co2NetOutputs Forward(Graph g, Tensor v, Tensor fl, RaggedBatch rag)
    {
        var (va, vfeat) = Attn(g, "vAttn", v, fl, rag);
        var (fa, ffeat) = Attn(g, "fAttn", fl, v, rag);
        var attn = g.Scale(g.Add(fa, va), 0.5f);
        float pd = Cfg.DropoutRatio;
        var feat = g.Dropout(g.ConvAct(new[] { vfeat, ffeat }, W("fusion.0.weight"), W("fusion.0.bias"), 0.2f,
            rag?.Mask), pd, "fusion");
        var h = g.Dropout(feat, pd, "classifier.0");
        h = g.Dropout(g.ConvAct(h, W("classifier.1.weight"), W("classifier.1.bias"), 0.2f, rag?.Mask), pd,
            "classifier.3");
        var cas = g.ConvAct(h, W("classifier.4.weight"), W("classifier.4.bias"), 1f);
        if (Cfg.PoolKernel > 1 && rag == null)
            (cas, attn, va, fa) = (Pool(g, cas), Pool(g, attn), Pool(g, va), Pool(g, fa));
        return new Co2NetOutputs { Cas = cas, Attn = attn, VAttn = va, FAttn = fa, Feat = feat };
    }

    /// ANT_CO2's AvgPool1d over time (zero padding counted, as count_include_pad=True) of (B, T, C): a k-tap
    /// convolution whose weight is the identity over channels divided by k at every tap.
    Tensor Pool(Graph g, Tensor x)
    {
        int c = x.Dim(2), k = Cfg.PoolKernel;
        var w = new float[c * c * k];
        for (int i = 0; i < c; i++)
            for (int j = 0; j < k; j++) w[(i * c + i) * k + j] = 1f / k;
        return g.ConvAct(x, g.FromHost(w, c, c, k), g.Full(0f, c), 1f);
    }

    /// The same pooling of one video's (T, C) signal on the host, for the ragged test-time batch (whose
    /// videos sit one zero row apart, too close for a k-tap window).
    public static float[] PoolHost(float[] x, int t, int c, int k)
    {
        var y = new float[x.Length];
        for (int i = 0; i < t; i++)
            for (int ch = 0; ch < c; ch++)
            {
                float s = 0f;
                for (int j = Math.Max(0, i - k / 2); j <= Math.Min(t - 1, i + k / 2); j++) s += x[j * c + ch];
                y[i * c + ch] = s / k;
            }
        return y;
    }

    // ---------------- the loss (model.py:103-152) ----------------
    public LossTerms Losses(Graph g, Tensor features, Tensor clip, float[] labels) => Losses(g, Forward(g, features),
        labels);

    public LossTerms Losses(Graph g, Co2NetOutputs o, float[] labels)
    {
        var L = new LossTerms();
        var s = o.Cas;
        var ssup = MilLosses.Suppressed(g, s, o.Attn);
        L.Terms["mil_loss"] = MilLosses.TopKMil(g, s, labels, Cfg.TrainTopK, back: true);
        L.Terms["mil_supp_loss"] = MilLosses.TopKMil(g, ssup, labels, Cfg.TrainTopK, back: false);
        L.Terms["contrastive_loss"] = g.Scale(MilLosses.CoActivity(g, o.Feat, ssup, labels), Cfg.Alpha3);
        // 0.5 MSE(a_rgb, sg(a_flow)) + 0.5 MSE(a_flow, sg(a_rgb)): each attention learns from the other
        Tensor Mse(Tensor a, Tensor target) => g.MeanAll(g.Square(g.Sub(a, g.Detach(target))));
        L.Terms["mutual_loss"] = g.Scale(g.Add(g.Scale(Mse(o.VAttn, o.FAttn), 0.5f), g.Scale(Mse(o.FAttn, o.VAttn),
            0.5f)), Cfg.Alpha4);
        var norm = g.Add(g.Add(g.MeanAll(o.Attn), g.MeanAll(o.VAttn)), g.MeanAll(o.FAttn));
        L.Terms["norm_loss"] = g.Scale(norm, Cfg.Alpha1 / 3f);
        var pbg = MilLosses.BackgroundProb(g, s);
        var guide = g.Add(g.Add(MilLosses.Guide(g, o.Attn, pbg), MilLosses.Guide(g, o.VAttn, pbg)), MilLosses.Guide(g,
            o.FAttn, pbg));
        L.Terms["guide_loss"] = g.Scale(guide, Cfg.Alpha2 / 3f);
        Tensor total = null;
        foreach (var n in TermNames) total = total == null ? L.Terms[n] : g.Add(total, L.Terms[n]);
        L.Total = total;
        return L;
    }

    public IReadOnlyList<(string label, string term)> ProgressTerms { get; } =
        [("mil", "mil_loss"), ("supp", "mil_supp_loss"), ("contra", "contrastive_loss"), ("mutual", "mutual_loss")];

    /// Test-mode CAS (T, C+1) and attention (T) of each video, forwarded as one ragged batch.
    public (float[] cas, float[] attn)[] Signals(Graph g, float[] testConstants,
        IReadOnlyList<(string name, ReadOnlyMemory<float> features, int t)> videos)
    {
        Inference.CheckVideos(videos, Cfg.FeatDim);
        g.Reset();
        g.Training = false;
        g.WinogradTile = Cfg.WinogradTile;
        using (g.NoGrad())
        {
            var rag = new RaggedBatch(g, videos.Select(v => v.t).ToArray());
            var (rgb, flow) = rag.PackHalves(g, videos.Select(v => v.features).ToArray(), Cfg.FeatDim, Cfg.Half);
            var o = Forward(g, rgb, flow, rag);
            float[] cas = g.ToHost(o.Cas), attn = g.ToHost(o.Attn);
            int k = Cfg.PoolKernel, c = Cfg.NumClasses + 1;
            return Enumerable.Range(0, rag.Count).Select(i => k > 1
                ? (PoolHost(rag.Unpack(cas, i, c), videos[i].t, c, k),
                    PoolHost(rag.Unpack(attn, i, 1), videos[i].t, 1, k))
                : (rag.Unpack(cas, i, c), rag.Unpack(attn, i, 1))).ToArray();
        }
    }

    ProposalConfig proposal;

    /// proposal_methods.py:93-160 (the attention thresholds only) and, for the classification mAP, the
    /// scores of test.py:69.
    public (List<Detection> detections, float[] scores) Detect(string video, float[] cas, float[] attn, int t,
        List<(double, double)> ambiguous)
    {
        proposal ??= new ProposalConfig
        {
            TestTopK = Cfg.TestTopK, VidThresh = Cfg.VidThresh, CasThresholds = [],
                ActThresholds = ProposalConfig.Linspace(0.1, 0.9, 10),
            ActGamma = Cfg.GammaOic, ActLambda = Cfg.LambdaOic, NmsSigma = Cfg.NmsSigma,
        };
        return (Proposals.Generate(video, cas, attn, t, Cfg.NumClasses, proposal, ambiguous).dets,
            MilLosses.ClassificationScores(cas, t, Cfg.NumClasses + 1));
    }
}
