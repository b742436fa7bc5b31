// torch.optim.Adam (L2 weight decay added to the gradient, not AdamW), element i of the flat arenas:
//   g = grad + wd*theta; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2
//   theta -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)        (the exact torch expression order)
using System.Runtime.Intrinsics;
using ILGPU.Algorithms;

namespace PvlrKernels.Kernels;

public struct AdamParams { public float Lr, Beta1, Beta2, Eps, WeightDecay, StepSize, Bc2Sqrt; }

public struct AdamStep<TMem> : IKernel where TMem : struct, IMem
{
    public TMem Theta, Grad, M, V;
    public AdamParams A;
    public void Execute(int i)
    {
        float th = Theta[i], g = Grad[i] + A.WeightDecay * th;
        float m = A.Beta1 * M[i] + (1f - A.Beta1) * g;
        float v = A.Beta2 * V[i] + (1f - A.Beta2) * g * g;
        M[i] = m;
        V[i] = v;
        Theta[i] = th - A.StepSize * m / (XMath.Sqrt(v) / A.Bc2Sqrt + A.Eps);
    }

    /// The same for 16 elements at th, g, m, v (the CPU's lanes): the same operations in the same order,
    /// each rounded once, so the same bits as Execute.
    public static unsafe void Lanes(float* th, float* g, float* m, float* v, in AdamParams a)
    {
        var t = Vector512.Load(th);
        var gr = Vector512.Load(g) + Vector512.Create(a.WeightDecay) * t;
        var mm = Vector512.Create(a.Beta1) * Vector512.Load(m) + Vector512.Create(1f - a.Beta1) * gr;
        var vv = Vector512.Create(a.Beta2) * Vector512.Load(v) + Vector512.Create(1f - a.Beta2) * gr * gr;
        mm.Store(m);
        vv.Store(v);
        (t - Vector512.Create(a.StepSize) * mm / (Vector512.Sqrt(vv) / Vector512.Create(a.Bc2Sqrt) +
            Vector512.Create(a.Eps))).Store(th);
    }
}
