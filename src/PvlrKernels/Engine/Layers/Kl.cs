// Pairwise KL divergence between two sets of diagonal Gaussians (PVLR's KL_divergence, var + 1e-5):
// (mu, var) P (Bt, Np, D) and Q (Bt, Nq, D) -> KL (Bt, Np, Nq). Kernels: kernels/PairwiseKl.cs.
using PvlrKernels.Kernels;

namespace PvlrKernels.Engine;

public sealed partial class Graph
{
    public Tensor PairwiseKl(Tensor muP, Tensor varP, Tensor muQ, Tensor varQ, float varEps = 1e-5f)
    {
        SameShape("kl", muP, varP); SameShape("kl", muQ, varQ);
        if (muP.Rank != 3 || muQ.Rank != 3 || muP.Dim(0) != muQ.Dim(0) || muP.Dim(2) != muQ.Dim(2))
            throw new ShapeException($"kl: sets must be (Bt, N, D) with equal Bt and D, got {muP} and {muQ}");
        var k = new KlParams { Bt = muP.Dim(0), Np = muP.Dim(1), Nq = muQ.Dim(1), D = muP.Dim(2), VarEps = varEps };
        var y = New(new[] { k.Bt, k.Np, k.Nq });
        B.PairwiseKl(y.Data, y.Offset, muP.Data, muP.Offset, varP.Data, varP.Offset, muQ.Data, muQ.Offset, varQ.Data, varQ.Offset, k);
        var e = new Entry { Op = Op.Kl, A = muP, B = varP, C = muQ, D = varQ, F0 = varEps };
        Record(ref e, y, muP, varP, muQ, varQ);
        return y;
    }

    void KlBackward(ref Entry e, Tensor dy)
    {
        var k = new KlParams { Bt = e.A.Dim(0), Np = e.A.Dim(1), Nq = e.C.Dim(1), D = e.A.Dim(2), VarEps = e.F0 };
        bool needP = e.A.RequiresGrad || e.B.RequiresGrad, needQ = e.C.RequiresGrad || e.D.RequiresGrad;
        // GradOf on a non-trainable input would allocate a gradient nobody reads; use scratch instead.
        Tensor G(Tensor t, bool need) => need ? (t.RequiresGrad ? GradOf(t) : New(t.Shape, zero: true)) : null;
        var dmp = G(e.A, needP); var dvp = G(e.B, needP); var dmq = G(e.C, needQ); var dvq = G(e.D, needQ);
        B.PairwiseKlBackward(dmp?.Data, dmp?.Offset ?? 0, dvp?.Data, dvp?.Offset ?? 0, dmq?.Data, dmq?.Offset ?? 0, dvq?.Data, dvq?.Offset ?? 0,
            dy.Data, dy.Offset, e.A.Data, e.A.Offset, e.B.Data, e.B.Offset, e.C.Data, e.C.Offset, e.D.Data, e.D.Offset, k, needP, needQ);
    }
}
