// Pairwise KL divergence between two sets of diagonal Gaussians (PVLR's KL_divergence, var + 1e-5):
// (mu, var) P (Bt, Np, D) and Q (Bt, Nq, D) -> KL (Bt, Np, Nq). Kernels: kernels/PairwiseKl.cs.
using PvlrKernels.Kernels;

namespace PvlrKernels.Engine;

public sealed partial class Graph
{
    /// What the backward reads: both sets' means and variances and the variance guard.
    readonly record struct KlSaved(Tensor MuP, Tensor VarP, Tensor MuQ, Tensor VarQ, float VarEps)
    {
        public Entry Save() => new() { Op = Op.Kl, A = MuP, B = VarP, C = MuQ, D = VarQ, F0 = VarEps };
        public static KlSaved Load(in Entry e) => new(e.A, e.B, e.C, e.D, e.F0);
    }

    public Tensor PairwiseKl(Tensor muP, Tensor varP, Tensor muQ, Tensor varQ, float varEps = 1e-5f)
    {
        SameShape("kl", muP, varP);
        SameShape("kl", muQ, varQ);
        if (muP.Rank != 3 || muQ.Rank != 3 || muP.Dim(0) != muQ.Dim(0) || muP.Dim(2) != muQ.Dim(2))
            throw new ShapeException($"kl: sets must be (Bt, N, D) with equal Bt and D, got {muP} and {muQ}");
        var k = new KlParams { Bt = muP.Dim(0), Np = muP.Dim(1), Nq = muQ.Dim(1), D = muP.Dim(2), VarEps = varEps };
        var y = New(new[] { k.Bt, k.Np, k.Nq });
        Backend.PairwiseKl(y, muP, varP, muQ, varQ, k);
        var e = new KlSaved(muP, varP, muQ, varQ, varEps).Save();
        Record(ref e, y, muP, varP, muQ, varQ);
        return y;
    }

    void KlBackward(KlSaved saved, Tensor dy)
    {
        var (muP, varP, muQ, varQ) = (saved.MuP, saved.VarP, saved.MuQ, saved.VarQ);
        var k = new KlParams { Bt = muP.Dim(0), Np = muP.Dim(1), Nq = muQ.Dim(1), D = muP.Dim(2),
            VarEps = saved.VarEps };
        bool needP = muP.RequiresGrad || varP.RequiresGrad, needQ = muQ.RequiresGrad || varQ.RequiresGrad;
        // GradOf on a non-trainable input would allocate a gradient nobody reads; use scratch instead.
        Tensor GradOrScratch(Tensor t, bool need) => need ? (t.RequiresGrad ? GradOf(t) : New(t.Shape,
            zero: true)) : null;
        var dMuP = GradOrScratch(muP, needP);
        var dVarP = GradOrScratch(varP, needP);
        var dMuQ = GradOrScratch(muQ, needQ);
        var dVarQ = GradOrScratch(varQ, needQ);
        Backend.PairwiseKlBackward(dMuP, dVarP, dMuQ, dVarQ, dy, muP, varP, muQ, varQ, k, needP, needQ);
    }
}
