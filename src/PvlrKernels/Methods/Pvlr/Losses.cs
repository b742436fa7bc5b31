// Every PVLR loss (PVLR's model/loss.py), total = VideoLoss + ProbLoss:
//   cls (top-k MIL, plain and suppressed CAS), co-activity contrast, norm, guide,
//   intra-distribution contrast (action and background), inter-distribution (video) contrast,
//   VLP distillation, text orthogonalisation.
using PvlrKernels.Engine;

using PvlrKernels.Model;

namespace PvlrKernels.Methods.Pvlr;

public static class PvlrLoss
{
    /// The terms in the order the original sums them (model/loss.py).
    public static readonly string[] Names = { "cls_loss", "norm_loss", "guide_loss", "contra_loss", "distillation_loss",
        "action_prob_contra_loss", "background_prob_contra_loss", "action_prob_vid_contra_loss", "ortho_loss" };

    /// labels (B, C) multi-hot; clip (B, T, D). `mining` may inject the four index arrays (B, k) by name
    /// (easy_act, easy_bkg, hard_act, hard_bkg), as a replay of a recorded step does.
    public static LossTerms Compute(Graph g, PvlrConfig cfg, PvlrOutputs o, float[] labels, Tensor clip,
        Dictionary<string, float[]> mining = null)
    {
        var L = new LossTerms();
        var al = cfg.Alpha;
        var s = o.Cas;
        int b = s.Dim(0), t = s.Dim(1), c1 = s.Dim(2), c = c1 - 1;
        if (labels.Length != b * c)
            throw new ShapeException($"loss: labels hold {labels.Length} values, expected (B={b}, C={c})");
        if (clip != null && (clip.Dim(0) != b || clip.Dim(1) != t || clip.Dim(2) != o.Mu.Dim(2)))
            throw new ShapeException($"loss: CLIP features {clip} do not match mu {o.Mu}");

        // ---- VideoLoss ----
        var ssup = MilLosses.Suppressed(g, s, o.Attn);
        var cls = g.Add(MilLosses.TopKMil(g, s, labels, cfg.TrainTopK, back: true), MilLosses.TopKMil(g, ssup, labels,
            cfg.TrainTopK, back: false));
        L.Terms["cls_loss"] = g.Scale(cls, al[0]);
        L.Terms["contra_loss"] = g.Scale(MilLosses.CoActivity(g, o.Feat, ssup, labels), al[3]);
        var norm = g.Add(g.Add(g.MeanAll(o.Attn), g.MeanAll(o.VAttn)), g.MeanAll(o.FAttn));
        L.Terms["norm_loss"] = g.Scale(norm, al[1] / 3f);
        var pbg = MilLosses.BackgroundProb(g, s);
        Tensor Guide(Tensor a) => MilLosses.Guide(g, a, pbg);
        L.Terms["guide_loss"] = g.Scale(g.Add(g.Add(Guide(o.Attn), Guide(o.VAttn)), Guide(o.FAttn)), al[2] / 3f);

        // ---- ProbLoss ----
        var a2 = g.Reshape(o.Attn, b, t);
        var mask = g.New(new[] { b, t });
        g.Rng.DropoutMask(g, mask, cfg.DropEasy, "easy_mining");
        var picks = mining != null && mining.ContainsKey("easy_act") ? mining : Mining.All(g.ToHost(a2),
            g.ToHost(mask), cfg, b, t);
        float[] ea = picks["easy_act"], eb = picks["easy_bkg"], ha = picks["hard_act"], hb = picks["hard_bkg"];
        foreach (var k in new[] { "easy_act", "easy_bkg", "hard_act", "hard_bkg" }) L.MiningIndices[k] = picks[k];
        (Tensor mu, Tensor var) Pick(float[] idx, int k)
        {
            if (idx.Length != b * k) throw new ShapeException($"mining: {idx.Length} indices, expected (B={b}, k={k})");
            foreach (var v in idx)
                if (v < 0 || v >= t || v != Math.Floor(v))
                    throw new ShapeException($"mining: index {v} outside [0, {t})");
            var it = g.FromHost(idx, b, k);
            return (g.Gather(o.Mu, 1, it, false), g.Gather(o.Var, 1, it, false));
        }
        var easyAct = Pick(ea, cfg.KEasy); var easyBkg = Pick(eb, cfg.KEasy); var hardAct = Pick(ha,
            cfg.KHard); var hardBkg = Pick(hb, cfg.KHard);

        if (clip != null) L.Terms["distillation_loss"] = g.Scale(Distillation(g, o.Mu, clip), al[4]);
        L.Terms["action_prob_contra_loss"] = g.Scale(Intra(g, hardAct, easyAct, easyBkg), al[5]);
        L.Terms["background_prob_contra_loss"] = g.Scale(Intra(g, hardBkg, easyBkg, easyAct), al[6]);
        L.Terms["action_prob_vid_contra_loss"] = g.Scale(Inter(g, o.Attn, o.Mu, o.Var, labels, b, t, c), al[7]);
        L.Terms["ortho_loss"] = g.Scale(Ortho(g, o.Text), al[8]);

        Tensor total = null;
        foreach (var n in Names) if (L.Terms.TryGetValue(n, out var v)) total = total == null ? v : g.Add(total, v);
        L.Total = total;
        return L;
    }

    /// mean over pairs of 1/(1 + KL(P_i || Q_j)) per video: (B).
    static Tensor Sim(Graph g, (Tensor mu, Tensor var) p, (Tensor mu, Tensor var) q)
    {
        var kl = g.PairwiseKl(p.mu, p.var, q.mu, q.var, 1e-5f);                                         // (B, np, nq)
        var sim = g.Reciprocal(g.AddScalar(kl, 1f));
        return g.Mean(g.Reshape(sim, sim.Dim(0), -1), 1);                                                // (B,1)
    }

    static Tensor Intra(Graph g, (Tensor, Tensor) hard, (Tensor, Tensor) pos, (Tensor, Tensor) neg)
    {
        var ps = g.Scale(g.Add(Sim(g, hard, pos), Sim(g, pos, hard)), 0.5f);
        var ns = g.Scale(g.Add(Sim(g, hard, neg), Sim(g, neg, hard)), 0.5f);
        var l = g.Add(g.Log(ps), g.Log(g.AddScalar(g.Scale(ns, -1f), 1f)));
        return g.Scale(g.MeanAll(l), -1f);
    }

    /// Y_ij of the video-level contrast: videos i and j of a (B, C) label batch share a class.
    public static bool SharesClass(float[] labels, int i, int j, int c)
    {
        float dot = 0;
        for (int k = 0; k < c; k++) dot += labels[i * c + k] * labels[j * c + k];
        return dot >= 1;
    }

    /// Video-level distributions: attention-weighted mean and variance ("definition"), pairwise KL.
    static Tensor Inter(Graph g, Tensor attn, Tensor mu, Tensor var, float[] labels, int b, int t, int c)
    {
        int d = mu.Dim(2);
        var at = g.Reshape(attn, b, 1, t);
        var m = g.Scale(g.MatMul(at, mu), 1f / t);                                                        // (B,1,D)
        var m2 = g.Scale(g.MatMul(at, g.Add(g.Square(mu), var)), 1f / t);
        var v = g.Sub(m2, g.Square(m));
        var mr = g.Reshape(m, 1, b, d);
        var vr = g.Reshape(v, 1, b, d);
        var kl = g.PairwiseKl(mr, vr, mr, vr, 1e-5f);                                                     // (1,B,B)
        var p = g.Reshape(g.Reciprocal(g.AddScalar(kl, 1f)), b * b);
        var i1 = new List<float>();
        var i0 = new List<float>();
        for (int i = 0; i < b; i++)
            for (int j = 0; j < b; j++) (SharesClass(labels, i, j, c) ? i1 : i0).Add(i * b + j);
        // -mean_{Y=1} log P - mean_{Y=0} log(1-P), over exactly the selected pairs (masking by a product
        // would turn the diagonal's log(1-1) = -inf into NaN). An empty Y=0 set gives NaN, as the
        // original does (its loss.py video-level contrast has no negative pair then).
        var pv = g.Reshape(p, 1, b * b, 1);
        Tensor Pick(List<float> idx) => g.Reshape(g.Gather(pv, 1, g.FromHost(idx.ToArray(), 1, idx.Count),
            perInner: false), idx.Count);
        var pos = g.Scale(g.MeanAll(g.Log(Pick(i1))), -1f);
        var neg = i0.Count == 0 ? g.Scalar(float.NaN) : g.Scale(g.MeanAll(g.Log(g.AddScalar(g.Scale(Pick(i0), -1f),
            1f))), -1f);
        return g.Add(pos, neg);
    }

    /// -log( mean_{b,t} (1 + cos(mu, clip)) / 2 )
    static Tensor Distillation(Graph g, Tensor mu, Tensor clip)
    {
        var cos = g.Sum(g.Mul(g.L2Normalize(mu, 2, 1e-12f), g.L2Normalize(clip, 2, 1e-12f)), 2);
        return g.Scale(g.Log(g.Scale(g.AddScalar(g.MeanAll(cos), 1f), 0.5f)), -1f);
    }

    /// || N stopgrad(N)^T - I ||_F with N = row-normalised text features.
    static Tensor Ortho(Graph g, Tensor text)
    {
        var n = g.L2Normalize(text, 1, 1e-12f);
        int r = text.Dim(0);
        var eye = new float[r * r];
        for (int i = 0; i < r; i++) eye[i * r + i] = 1;
        var sm = g.Sub(g.MatMul(n, g.Detach(n), transB: true), g.FromHost(eye, r, r));
        return g.Sqrt(g.SumAll(g.Square(sm)));
    }
}
