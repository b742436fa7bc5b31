// Softmax / log-softmax along an axis (max-subtracted). Kernels: kernels/Softmax.cs.
namespace PvlrKernels.Engine;

public sealed partial class Graph
{
    public Tensor Softmax(Tensor x, int axis) => SoftmaxOp(x, axis, false);
    public Tensor LogSoftmax(Tensor x, int axis) => SoftmaxOp(x, axis, true);

    Tensor SoftmaxOp(Tensor x, int axis, bool log)
    {
        var (outer, n, inner) = Around(x, axis, "softmax");
        var y = New(x.Shape);
        B.Softmax(y.Data, y.Offset, x.Data, x.Offset, outer, n, inner, log);
        var e = new Entry { Op = Op.Softmax, A = x, I0 = outer, I1 = n, I2 = inner, I3 = log ? 1 : 0 };
        Record(ref e, y, x);
        return y;
    }

    void SoftmaxBackward(ref Entry e, Tensor dy)
    {
        var dx = GradOf(e.A);
        B.SoftmaxBackward(dx.Data, dx.Offset, e.Out.Data, e.Out.Offset, dy.Data, dy.Offset, e.I0, e.I1, e.I2, e.I3 != 0);
    }
}
