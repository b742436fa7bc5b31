// KL divergence between every pair of diagonal Gaussians of two sets (PVLR loss.py KL_divergence):
//   s2 = var + 1e-5,  KL(p||q) = 1/2 sum_d [ (mq-mp)^2/s2q + log s2q - log s2p + s2p/s2q ] - D/2
//   P sets (Bt, Np, D), Q sets (Bt, Nq, D)  ->  KL (Bt, Np, Nq)
using System.Runtime.CompilerServices;
using ILGPU.Algorithms;

namespace PvlrKernels.Kernels;

public struct KlParams { public int Bt, Np, Nq, D; public float VarEps; }

/// One thread per (b, i, j).
public struct PairwiseKlFwd<TMem> : IKernel where TMem : struct, IMem
{
    public TMem Kl, MuP, VarP, MuQ, VarQ;
    public KlParams K;
    public void Execute(int r)
    {
        int j = r % K.Nq, bi = r / K.Nq, b = bi / K.Np;
        int pb = bi * K.D, qb = (b * K.Nq + j) * K.D;
        float s = 0f;
        for (int d = 0; d < K.D; d++)
        {
            float sp = VarP[pb + d] + K.VarEps, sq = VarQ[qb + d] + K.VarEps;
            s += Term(MuQ[qb + d] - MuP[pb + d], sp, sq, XMath.Log(sp), XMath.Log(sq));
        }
        Kl[r] = Finish(s, K.D);
    }

    /// One dimension's summand given both logs (the CPU backend takes them from a table made once per call).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Term(float dm, float sp, float sq, float logSp,
        float logSq) => dm * dm / sq + logSq - logSp + sp / sq;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Finish(float s, int d) => 0.5f * s - 0.5f * d;
}
/// Side P, one thread per (b, i, d): dmuP += sum_j g (mp-mq)/s2q;  dvarP += sum_j g/2 (1/s2q - 1/s2p).
public struct PairwiseKlBwdP<TMem> : IKernel where TMem : struct, IMem
{
    public TMem DMuP, DVarP, DKl, MuP, VarP, MuQ, VarQ;
    public KlParams K;
    public void Execute(int r)
    {
        int d = r % K.D, bi = r / K.D, b = bi / K.Np;
        float mp = MuP[r], sp = VarP[r] + K.VarEps, gm = 0f, gv = 0f;
        for (int j = 0; j < K.Nq; j++)
        {
            int q = (b * K.Nq + j) * K.D + d;
            float g = DKl[bi * K.Nq + j], sq = VarQ[q] + K.VarEps;
            gm += g * (mp - MuQ[q]) / sq;
            gv += g * 0.5f * (1f / sq - 1f / sp);
        }
        DMuP[r] = DMuP[r] + gm;
        DVarP[r] = DVarP[r] + gv;
    }
}
/// Side Q, one thread per (b, j, d): dmuQ += sum_i g (mq-mp)/s2q;
/// dvarQ += sum_i g/2 (1/s2q - ((mq-mp)^2 + s2p)/s2q^2).
public struct PairwiseKlBwdQ<TMem> : IKernel where TMem : struct, IMem
{
    public TMem DMuQ, DVarQ, DKl, MuP, VarP, MuQ, VarQ;
    public KlParams K;
    public void Execute(int r)
    {
        int d = r % K.D, bj = r / K.D, j = bj % K.Nq, b = bj / K.Nq;
        float mq = MuQ[r], sq = VarQ[r] + K.VarEps, gm = 0f, gv = 0f;
        for (int i = 0; i < K.Np; i++)
        {
            int p = (b * K.Np + i) * K.D + d;
            float g = DKl[(b * K.Np + i) * K.Nq + j], dm = mq - MuP[p], sp = VarP[p] + K.VarEps;
            gm += g * dm / sq;
            gv += g * 0.5f * (1f / sq - (dm * dm + sp) / (sq * sq));
        }
        DMuQ[r] = DMuQ[r] + gm;
        DVarQ[r] = DVarQ[r] + gv;
    }
}
