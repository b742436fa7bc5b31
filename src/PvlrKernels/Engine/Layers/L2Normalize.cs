// x / max(||x||_2, eps) along an axis. eps = 1e-12 is F.normalize; eps = 0 is PVLR's unguarded
// c / ||c|| in the attention module (a zero vector then gives NaN, as in the original).
namespace PvlrKernels.Engine;

public sealed partial class Graph
{
    public Tensor L2Normalize(Tensor x, int axis, float eps = 1e-12f)
    {
        var (outer, n, inner) = Around(x, axis, "l2normalize");
        var y = New(x.Shape); var norm = New(new[] { outer * inner });
        B.L2Normalize(y.Data, y.Offset, norm.Data, norm.Offset, x.Data, x.Offset, outer, n, inner, eps);
        var e = new Entry { Op = Op.L2Norm, A = x, C = norm, I0 = outer, I1 = n, I2 = inner, F0 = eps };
        Record(ref e, y, x);
        return y;
    }

    void L2NormBackward(ref Entry e, Tensor dy)
    {
        var dx = GradOf(e.A);
        B.L2NormalizeBackward(dx.Data, dx.Offset, dy.Data, dy.Offset, e.Out.Data, e.Out.Offset, e.C.Data, e.C.Offset, e.I0, e.I1, e.I2, e.F0);
    }
}
