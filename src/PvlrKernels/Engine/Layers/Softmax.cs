// Softmax / log-softmax along an axis (max-subtracted). Kernels: kernels/Softmax.cs.
namespace PvlrKernels.Engine;

public sealed partial class Graph
{
    public Tensor Softmax(Tensor x, int axis) => SoftmaxOp(x, axis, false);
    public Tensor LogSoftmax(Tensor x, int axis) => SoftmaxOp(x, axis, true);

    /// What the backward reads besides the output: the input (for its gradient), the [outer, n, inner]
    /// view around the axis and whether it is the log form.
    readonly record struct SoftmaxSaved(Tensor X, int Outer, int N, int Inner, bool Log)
    {
        public Entry Save() => new() { Op = Op.Softmax, A = X, I0 = Outer, I1 = N, I2 = Inner, I3 = Log ? 1 : 0 };
        public static SoftmaxSaved Load(in Entry e) => new(e.A, e.I0, e.I1, e.I2, e.I3 != 0);
    }

    Tensor SoftmaxOp(Tensor x, int axis, bool log)
    {
        var (outer, n, inner) = Around(x, axis, "softmax");
        var y = New(x.Shape);
        Backend.Softmax(y, x, outer, n, inner, log);
        var e = new SoftmaxSaved(x, outer, n, inner, log).Save();
        Record(ref e, y, x);
        return y;
    }

    void SoftmaxBackward(SoftmaxSaved saved, Tensor y, Tensor dy)
    {
        var dx = GradOf(saved.X);
        Backend.SoftmaxBackward(dx, y, dy, saved.Outer, saved.N, saved.Inner, saved.Log);
    }
}
