// PyTorch's default init of Conv1d and Linear layers, which PVLR, UM, ACM-Net and FTCL keep: weights
// and biases U(-b, b) with b = 1/sqrt(fan_in) of the layer's weight (Cout, Cin) or (Cout, Cin, K).
using PvlrKernels.Engine;

namespace PvlrKernels.Methods;

public static class TorchInit
{
    /// b for parameter `name`: a weight's own fan-in, a bias's that of the weight beside it.
    public static double DefaultBound(ParameterStore ps, string name)
    {
        var w = ps[name.EndsWith(".bias") ? name[..^5] + ".weight" : name].Shape;
        return 1 / Math.Sqrt(w.Length == 3 ? (long)w[1] * w[2] : w[1]);
    }

    /// One draw of U(-bound, bound) from `rng`.
    public static float Uniform(Random rng, double bound) => (float)((rng.NextDouble() * 2 - 1) * bound);

    /// `n` draws of U(-bound, bound).
    public static float[] Uniform(Random rng, long n, double bound)
    {
        var a = new float[n];
        for (long i = 0; i < n; i++) a[i] = Uniform(rng, bound);
        return a;
    }
}
