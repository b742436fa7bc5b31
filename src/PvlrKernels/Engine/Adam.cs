// torch.optim.Adam over the flat arenas: L2 weight decay added to the gradient (not AdamW), betas
// (0.9, 0.999), eps 1e-8. A parameter that received no gradient this step is skipped entirely (no
// decay, no moment update, no step count), as torch does for grad=None. The kernel runs once per
// maximal run of consecutive parameters that got a gradient and share a step count (normally 1-3).
using PvlrKernels.Kernels;

namespace PvlrKernels.Engine;

public sealed class AdamOptimizer(ParameterStore ps, Backend backend, float lr, float weightDecay, float beta1 = 0.9f,
    float beta2 = 0.999f, float eps = 1e-8f)
{
    public float Lr = lr;
    public readonly float WeightDecay = weightDecay, Beta1 = beta1, Beta2 = beta2, Eps = eps;

    public void Step()
    {
        var list = ps.List;
        int i = 0;
        while (i < list.Count)
        {
            var p = list[i];
            if (!p.Trainable || !p.GotGrad)
            {
                i++;
                continue;
            }
            long step = p.Step + 1;
            int j = i + 1;
            while (j < list.Count && list[j].Trainable && list[j].GotGrad && list[j].Step + 1 == step) j++;
            long start = p.Offset, end = list[j - 1].Offset + list[j - 1].Size;
            double bc1 = 1 - Math.Pow(Beta1, step), bc2 = 1 - Math.Pow(Beta2, step);
            backend.Adam(ps.Values, ps.Grads, ps.M, ps.V, start, end - start, new AdamParams
            {
                Lr = Lr, Beta1 = Beta1, Beta2 = Beta2, Eps = Eps, WeightDecay = WeightDecay,
                StepSize = (float)(Lr / bc1), Bc2Sqrt = (float)Math.Sqrt(bc2)
            });
            for (int q = i; q < j; q++) list[q].Step = step;
            i = j;
        }
    }
}
