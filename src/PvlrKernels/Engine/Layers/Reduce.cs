// Reductions along one axis (dimension kept, size 1): sum, mean, max, min; and top-k values along an
// axis. Max/min/top-k route the gradient to the selected index; ties go to the lowest index.
using PvlrKernels.Kernels;

namespace PvlrKernels.Engine;

public sealed partial class Graph
{
    public Tensor Sum(Tensor x, int axis) => ReduceOp(x, axis, ReduceMode.Sum, 1f);
    public Tensor Mean(Tensor x, int axis) => ReduceOp(x, axis, ReduceMode.Sum, 1f / x.Dim(axis));
    public Tensor Max(Tensor x, int axis) => ReduceOp(x, axis, ReduceMode.Max, 1f);
    public Tensor Min(Tensor x, int axis) => ReduceOp(x, axis, ReduceMode.Min, 1f);

    /// Sum (or mean) of every element, as a one-element tensor.
    public Tensor SumAll(Tensor x) => Sum(Reshape(x, (int)x.Size), 0);
    public Tensor MeanAll(Tensor x) => Mean(Reshape(x, (int)x.Size), 0);

    /// What the backward reads: the input, the chosen index per output (max/min; null for sums), the
    /// [outer, n, inner] view around the axis, the mode and the scale (1/n for a mean).
    readonly record struct ReduceSaved(Tensor X, Tensor Index, int Outer, int N, int Inner, int Mode, float Scale)
    {
        public Entry Save() => new() { Op = Op.Reduce, A = X, C = Index, I0 = Outer, I1 = N, I2 = Inner, I3 = Mode,
            F0 = Scale };
        public static ReduceSaved Load(in Entry e) => new(e.A, e.C, e.I0, e.I1, e.I2, e.I3, e.F0);
    }

    Tensor ReduceOp(Tensor x, int axis, int mode, float scale)
    {
        var (outer, n, inner) = Around(x, axis, "reduce");
        if (n == 0) throw new ShapeException($"reduce: empty axis in {x}");
        var y = New(WithDim(x.Shape, axis, 1));
        Tensor idx = mode == ReduceMode.Sum ? null : New(y.Shape);
        Backend.Reduce(y, x, idx, outer, n, inner, mode, scale, false);
        var e = new ReduceSaved(x, idx, outer, n, inner, mode, scale).Save();
        Record(ref e, y, x);
        return y;
    }

    void ReduceBackward(ReduceSaved saved, Tensor dy)
    {
        var dx = GradOf(saved.X);
        int outer = saved.Outer, n = saved.N, inner = saved.Inner;
        if (saved.Mode == ReduceMode.Sum)
        {
            // dx[o, i, j] += scale * dy[o, j]: a broadcast copy (stride 0 over the reduced axis).
            var d = new Dims4 { N0 = 1, N1 = outer, N2 = n, N3 = inner };
            Backend.Copy4(dx, new Strides4 { S1 = n * inner, S2 = inner, S3 = 1 }, dy,
                new Strides4 { S1 = inner, S2 = 0, S3 = 1 }, d, saved.Scale, true);
        }
        else Backend.Scatter(dx, dy, saved.Index, outer, n, 1, inner, true);
    }

    /// Indices of the k largest (or smallest) entries along an axis, as floats, shape x with axis -> k.
    /// Order: descending value; equal values in ascending index order (a stable sort).
    public Tensor TopKIndices(Tensor x, int axis, int k, bool largest = true)
    {
        var (outer, n, inner) = Around(x, axis, "topk");
        var idx = New(WithDim(x.Shape, axis, k));
        Backend.ArgTopK(idx, x, outer, n, inner, k, largest);
        return Detach(idx);
    }

    /// (values, indices) of the top k along an axis; the gradient scatters back to the chosen positions.
    public (Tensor values, Tensor indices) TopK(Tensor x, int axis, int k, bool largest = true)
    {
        var idx = TopKIndices(x, axis, k, largest);
        return (Gather(x, axis, idx, perInner: true), idx);
    }
}
