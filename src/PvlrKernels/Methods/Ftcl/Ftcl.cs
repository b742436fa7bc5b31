// FTCL, fine-grained temporal contrastive learning (MengyuanChen21/CVPR2022-FTCL model/FTCLNet.py,
// utils/ftcl_criterion.py), on ACM-Net (Methods/AcmNet/AcmNet.cs). A batch is B pairs of videos
// (v0, v1), 2B rows: v0 in rows 0..B-1, v1 in rows B..2B-1. Each half runs ACM-Net's forward with its
// own random draws (FTCLNet.forward, :126-132) and, per video, with E the embedded features and a_inst
// sorted descending in CPU torch's order:
//   lcs      = E at the top LcsLen snippets, re-sorted into time order        (B, LcsLen, F)
//   fsd_act  = feature_trans(E at the top FsdLen, time order)                  (B, FsdLen, FcDim)
//   fsd_bak  = feature_trans(E at ranks FsdLen..2 FsdLen-1, time order)        (B, FsdLen, FcDim)
// Losses (ftcl_criterion.py:150-199), pair = 1 where the label vectors overlap:
//   L = (ACM(v0) + ACM(v1)) / 2 + lambda_lcs L_LCS + lambda_fsd L_FSD,
//   L_X = sum(X (1 - pair)) / (#neg + 1e-10) - sum(X pair) / (#pos + 1e-10),
//   LCS of cos(lcs0, lcs1) over LcsThreshold; FSD of (M, G) = the cosine similarities of the halves of
//   fsd_act0 against fsd_act1 (positive pairs) or fsd_bak1 (negative ones), soft max gamma.
// The alignments are Graph.Lcs / Graph.Fsd (kernels/SequenceAlignment.cs): every pair in one launch.
using PvlrKernels.Engine;
using PvlrKernels.Methods.AcmNet;

namespace PvlrKernels.Methods.Ftcl;

public sealed class FtclModel : AcmNetModel
{
    public new readonly FtclConfig Cfg;

    /// The host-chosen indices of one video half besides ACM-Net's three branches: the time-ordered
    /// LCS and FSD candidates.
    public static readonly string[] CandidateSets = ["lcs", "fsd_act", "fsd_bak"];

    public FtclModel(FtclConfig cfg, IReadOnlyList<string> classes) : base(cfg, classes)
    {
        Cfg = cfg;
        P.Add("feature_trans.weight", [cfg.FcDim, cfg.FeatDim]);
        P.Add("feature_trans.bias", [cfg.FcDim]);
    }

    public sealed class Half
    {
        public AcmNetOutputs Acm;
        public Tensor Lcs, FsdAct, FsdBak;
    }

    /// FTCLNet.forward_once of one half (B videos); `picks` may inject every host-chosen index set.
    public Half ForwardOnce(Graph g, Tensor x, string tags, Dictionary<string, float[]> picks = null)
    {
        var o = Forward(g, x, picks, tags);
        int b = x.Dim(0), t = x.Dim(1);
        if (picks == null) foreach (var (k, v) in Candidates(o.AttentionHost, b, t)) o.Picks[k] = v;
        Tensor Take(string set, int k) => g.Gather(o.Embedded, 1, g.FromHost(o.Picks[set], b, k), perInner: false);
        Tensor Project(Tensor v) => g.Linear(v, W("feature_trans.weight"), W("feature_trans.bias"));
        return new Half { Acm = o, Lcs = Take("lcs", Cfg.LcsLen), FsdAct = Project(Take("fsd_act", Cfg.FsdLen)),
            FsdBak = Project(Take("fsd_bak", Cfg.FsdLen)) };
    }

    /// The LCS and FSD candidate indices of B videos from their attention (B, T, 3) on the host.
    public Dictionary<string, float[]> Candidates(float[] attention, int b, int t)
    {
        int fl = Cfg.FsdLen, n = Math.Max(Cfg.LcsLen, 2 * fl);
        var order = TopIndices(attention, b, t, 0, n, Cfg.SortTies);
        return new() { ["lcs"] = TimeOrdered(order, b, n, 0, Cfg.LcsLen), ["fsd_act"] = TimeOrdered(order, b, n, 0, fl),
            ["fsd_bak"] = TimeOrdered(order, b, n, fl, fl) };
    }

    /// Per video, `count` of the n ranked indices from rank `from`, sorted ascending (the re-sort into
    /// time order, FTCLNet.py:109-117).
    static float[] TimeOrdered(float[] order, int b, int n, int from, int count)
    {
        var r = new float[b * count];
        for (int i = 0; i < b; i++)
        {
            var part = order.AsSpan(i * n + from, count).ToArray();
            Array.Sort(part);
            part.CopyTo(r, i * count);
        }
        return r;
    }

    public override LossTerms Losses(Graph g, Tensor features, Tensor clip, float[] labels) =>
        PairLosses(g, features, labels);

    /// The pair batch's losses; `picks` (keys "v0_inst", "v1_lcs", ...) inject the host-chosen indices.
    public LossTerms PairLosses(Graph g, Tensor x, float[] labels, Dictionary<string, float[]> picks = null)
    {
        int rows = x.Dim(0), b = rows / 2, c = Cfg.NumClasses;
        if (rows % 2 != 0 || rows == 0)
            throw new ShapeException($"ftcl: a batch is pairs of videos (2B rows), got {x}");
        if (labels.Length != rows * c)
            throw new ShapeException($"ftcl: labels hold {labels.Length} values, expected (2B={rows}, C={c})");
        Dictionary<string, float[]> Of(string half) => picks?.Where(p => p.Key.StartsWith(half + "_"))
            .ToDictionary(p => p.Key[(half.Length + 1)..], p => p.Value);
        var h0 = ForwardOnce(g, g.Slice(x, 0, 0, b), "v0_", Of("v0"));
        var h1 = ForwardOnce(g, g.Slice(x, 0, b, b), "v1_", Of("v1"));
        var y0 = labels[..(b * c)];
        var y1 = labels[(b * c)..];
        var a0 = Losses(g, h0.Acm, y0);
        var a1 = Losses(g, h1.Acm, y1);
        var L = new LossTerms();
        foreach (var k in a0.Terms.Keys) L.Terms[k] = g.Scale(g.Add(a0.Terms[k], a1.Terms[k]), 0.5f);
        var acm = g.Scale(g.Add(a0.Total, a1.Total), 0.5f);

        var pair = new float[b];
        for (int i = 0; i < b; i++)
            for (int j = 0; j < c; j++) if (y0[i * c + j] * y1[i * c + j] > 0) pair[i] = 1;
        (L.Terms["lcs_loss"], L.Terms["fsd_loss"]) = Contrasts(g, Cfg, h0.Lcs, h1.Lcs, h0.FsdAct, h1.FsdAct, h1.FsdBak,
            pair);
        foreach (var (k, v) in h0.Acm.Picks) L.MiningIndices["v0_" + k] = v;
        foreach (var (k, v) in h1.Acm.Picks) L.MiningIndices["v1_" + k] = v;
        L.Total = g.Add(acm, g.Add(L.Terms["lcs_loss"], L.Terms["fsd_loss"]));
        return L;
    }

    /// lambda_lcs L_LCS and lambda_fsd L_FSD of B pairs (pair[i] = 1 where the labels overlap) from the
    /// candidate sets: lcs0, lcs1 (B, LcsLen, F); act0, act1, bak1 (B, FsdLen, FcDim).
    public static (Tensor lcs, Tensor fsd) Contrasts(Graph g, FtclConfig cfg, Tensor lcs0, Tensor lcs1, Tensor act0,
        Tensor act1, Tensor bak1, float[] pair)
    {
        int b = pair.Length;
        // each pair's weight: (1 - pair)/(#neg + 1e-10) - pair/(#pos + 1e-10)
        float pos = pair.Sum(), neg = b - pos;
        var contrast = g.FromHost(pair.Select(p => (1 - p) / (neg + 1e-10f) - p / (pos + 1e-10f)).ToArray(), b);
        Tensor Contrast(Tensor values, float lambda) => g.Scale(g.SumAll(g.Mul(values, contrast)), lambda);
        // get_similarity divides by the norm unguarded: a zero candidate (an all-zero ReLU row of E) gives NaN
        // similarities there, which the LCS then never counts but whose gradient is NaN. F.normalize's guard
        // max(norm, 1e-12) gives similarity 0 and, below a positive threshold, no gradient instead.
        Tensor Cosine(Tensor a, Tensor bb) => g.MatMul(g.L2Normalize(a, 2), g.L2Normalize(bb, 2), transB: true);
        var lcs = g.Lcs(Cosine(lcs0, lcs1), cfg.LcsThreshold);
        // FSD against v1's action candidates for positive pairs, its background ones for negative pairs
        var isPos = g.FromHost(pair, b, 1, 1);
        var isNeg = g.FromHost(pair.Select(p => 1 - p).ToArray(), b, 1, 1);
        var second = g.Add(g.Mul(act1, isPos), g.Mul(bak1, isNeg));
        int half = cfg.FcDim / 2;
        Tensor Part(Tensor v, int i) => g.Slice(v, 2, i * half, half);
        var fsd = g.Fsd(Cosine(Part(act0, 0), Part(second, 0)), Cosine(Part(act0, 1), Part(second, 1)), cfg.Gamma);
        return (Contrast(lcs, cfg.LambLcs), Contrast(fsd, cfg.LambFsd));
    }

    public override IReadOnlyList<(string label, string term)> ProgressTerms { get; } =
        [("inst", "inst_loss"), ("feat", "feat_loss"), ("lcs", "lcs_loss"), ("fsd", "fsd_loss")];
}
