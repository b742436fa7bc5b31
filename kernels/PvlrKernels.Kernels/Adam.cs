// torch.optim.Adam (L2 weight decay added to the gradient, not AdamW), element i of the flat arenas:
//   g = grad + wd*theta; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2
//   theta -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)        (the exact torch expression order)
using ILGPU.Algorithms;

namespace PvlrKernels.Kernels;

public struct AdamParams { public float Lr, Beta1, Beta2, Eps, WeightDecay, StepSize, Bc2Sqrt; }

public struct AdamStep<TMem> : IKernel where TMem : struct, IMem
{
    public TMem Theta, Grad, M, V; public AdamParams A;
    public void Execute(int i)
    {
        float th = Theta[i], g = Grad[i] + A.WeightDecay * th;
        float m = A.Beta1 * M[i] + (1f - A.Beta1) * g;
        float v = A.Beta2 * V[i] + (1f - A.Beta2) * g * g;
        M[i] = m; V[i] = v;
        Theta[i] = th - A.StepSize * m / (XMath.Sqrt(v) / A.Bc2Sqrt + A.Eps);
    }
}
