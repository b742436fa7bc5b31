// x / max(||x||_2, eps) along an axis. eps = 1e-12 is F.normalize; eps = 0 is PVLR's unguarded
// c / ||c|| in the attention module (a zero vector then gives NaN, as in the original).
namespace PvlrKernels.Engine;

public sealed partial class Graph
{
    /// What the backward reads besides the output: the input, each row's norm, the [outer, n, inner]
    /// view around the axis and eps.
    readonly record struct L2NormSaved(Tensor X, Tensor Norm, int Outer, int N, int Inner, float Eps)
    {
        public Entry Save() => new() { Op = Op.L2Norm, A = X, C = Norm, I0 = Outer, I1 = N, I2 = Inner, F0 = Eps };
        public static L2NormSaved Load(in Entry e) => new(e.A, e.C, e.I0, e.I1, e.I2, e.F0);
    }

    public Tensor L2Normalize(Tensor x, int axis, float eps = 1e-12f)
    {
        var (outer, n, inner) = Around(x, axis, "l2normalize");
        var y = New(x.Shape);
        var norm = New(new[] { outer * inner });
        Backend.L2Normalize(y, norm, x, outer, n, inner, eps);
        var e = new L2NormSaved(x, norm, outer, n, inner, eps).Save();
        Record(ref e, y, x);
        return y;
    }

    void L2NormBackward(L2NormSaved saved, Tensor y, Tensor dy)
    {
        var dx = GradOf(saved.X);
        Backend.L2NormalizeBackward(dx, dy, y, saved.Norm, saved.Outer, saved.N, saved.Inner, saved.Eps);
    }
}
