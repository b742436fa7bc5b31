// Data movement: strided copies (contiguous result) for transpose, slice, concat and padding; gather
// along an axis. Backward of a copy is the transposed strided copy, accumulated.
using PvlrKernels.Kernels;

namespace PvlrKernels.Engine;

public sealed partial class Graph
{
    static Strides4 Contig4(Dims4 d) => new() { S3 = 1, S2 = d.N3, S1 = d.N3 * d.N2, S0 = d.N3 * d.N2 * d.N1 };

    /// A strided copy maps element i of Dims from x (strides FromX, at XOffset) to y (strides ToY, at
    /// YOffset); its backward is the same map in reverse, accumulated.
    readonly record struct CopySaved(Tensor X, Dims4 Dims, Strides4 FromX, int XOffset, Strides4 ToY, int YOffset)
    {
        public Entry Save() => new() { Op = Op.Copy, A = X, Dims = Dims, S0 = FromX, I0 = XOffset, S1 = ToY,
            I1 = YOffset };
        public static CopySaved Load(in Entry e) => new(e.A, e.Dims, e.S0, e.I0, e.S1, e.I1);
    }

    /// y (dims d, contiguous) = x read through strides sx starting at x.Offset + off.
    Tensor StridedCopy(Tensor x, long off, Dims4 d, Strides4 sx, int[] shape)
    {
        var y = New(shape);
        if (Tensor.Numel(shape) != d.Total) throw new ShapeException("copy: internal shape mismatch");
        Backend.Copy4(y, Contig4(d), x.At(off), sx, d, 1f, false);
        var e = new CopySaved(x, d, sx, (int)off, Contig4(d), 0).Save();
        Record(ref e, y, x);
        return y;
    }

    void CopyBackward(CopySaved saved, Tensor dy)
    {
        var dx = GradOf(saved.X);
        Backend.Copy4(dx.At(saved.XOffset), saved.FromX, dy.At(saved.YOffset), saved.ToY, saved.Dims, 1f, true);
    }

    /// Swap two axes of a tensor of rank <= 4 (materialized).
    public Tensor Transpose(Tensor x, int a1, int a2)
    {
        int r = x.Rank;
        if (a1 < 0) a1 += r;
        if (a2 < 0) a2 += r;
        if (r > 4 || a1 < 0 || a2 < 0 || a1 >= r || a2 >= r)
            throw new ShapeException($"transpose: axes ({a1},{a2}) invalid for {x}");
        var strides = new int[r];
        int s = 1;
        for (int i = r - 1; i >= 0; i--)
        {
            strides[i] = s;
            s *= x.Shape[i];
        }
        var shape = (int[])x.Shape.Clone();
        (shape[a1], shape[a2]) = (shape[a2], shape[a1]);
        (strides[a1], strides[a2]) = (strides[a2], strides[a1]);
        var d = Pad4(shape);
        var st = new int[4];
        int k = 4 - r;
        for (int i = 0; i < r; i++) st[i + k] = strides[i];
        return StridedCopy(x, 0, d, new Strides4 { S0 = st[0], S1 = st[1], S2 = st[2], S3 = st[3] }, shape);
    }

    /// x[..., start:start+len, ...] along one axis (materialized).
    public Tensor Slice(Tensor x, int axis, int start, int len)
    {
        var (outer, n, inner) = Around(x, axis, "slice");
        if (start < 0 || len < 0 || start + len > n)
            throw new ShapeException($"slice: [{start}, {start + len}) outside axis {axis} of {x}");
        var d = new Dims4 { N0 = 1, N1 = outer, N2 = len, N3 = inner };
        return StridedCopy(x, (long)start * inner, d, new Strides4 { S1 = n * inner, S2 = inner, S3 = 1 },
            WithDim(x.Shape, axis, len));
    }

    /// Concatenate along one axis: each part copied into its range of the result, each copy recorded as
    /// its own op so gradients flow to every part.
    public Tensor Concat(int axis, params Tensor[] parts)
    {
        var first = parts[0];
        if (axis < 0) axis += first.Rank;
        int total = 0;
        foreach (var p in parts)
        {
            if (p.Rank != first.Rank) throw new ShapeException($"concat: ranks differ, {first} vs {p}");
            for (int i = 0; i < p.Rank; i++)
                if (i != axis && p.Shape[i] != first.Shape[i])
                    throw new ShapeException($"concat: {first} vs {p} along axis {axis}");
            total += p.Shape[axis];
        }
        var y = New(WithDim(first.Shape, axis, total));
        int at = 0;
        foreach (var p in parts)
        {
            CopyInto(y, p, axis, at);
            at += p.Shape[axis];
        }
        return y;
    }

    /// Zero padding along an axis: before zeros, x, after zeros.
    public Tensor Pad(Tensor x, int axis, int before, int after)
    {
        var (_, n, _) = Around(x, axis, "pad");
        var y = New(WithDim(x.Shape, axis, n + before + after), zero: true);
        CopyInto(y, x, axis, before);
        return y;
    }

    /// y[.., at:at+n, ..] = x along `axis` (y is larger only along it), recorded as a copy.
    void CopyInto(Tensor y, Tensor x, int axis, int at)
    {
        var (outer, n, inner) = Around(x, axis, "copy");
        int total = y.Shape[axis < 0 ? axis + y.Rank : axis];
        var d = new Dims4 { N0 = 1, N1 = outer, N2 = n, N3 = inner };
        var sx = new Strides4 { S1 = n * inner, S2 = inner, S3 = 1 };
        var sy = new Strides4 { S1 = total * inner, S2 = inner, S3 = 1 };
        Backend.Copy4(y.At((long)at * inner), sy, x, sx, d, 1f, false);
        var e = new CopySaved(x, d, sx, 0, sy, at * inner).Save();
        Record(ref e, y, x);
    }

    /// y[o, m, j] = x[o, idx, j] along an axis; idx holds floats, either per (o, m, j) or per (o, m).
    /// What the backward reads: the input, the indices (floats) and the gather's shape.
    readonly record struct GatherSaved(Tensor X, Tensor Index, int Outer, int N, int M, int Inner, bool PerInner)
    {
        public Entry Save() => new() { Op = Op.Gather, A = X, C = Index, I0 = Outer, I1 = N, I2 = M, I3 = Inner,
            I4 = PerInner ? 1 : 0 };
        public static GatherSaved Load(in Entry e) => new(e.A, e.C, e.I0, e.I1, e.I2, e.I3, e.I4 != 0);
    }

    public Tensor Gather(Tensor x, int axis, Tensor idx, bool perInner)
    {
        var (outer, n, inner) = Around(x, axis, "gather");
        var (io, m, ii) = Around(idx, axis < 0 ? axis + x.Rank : axis, "gather");
        if (io != outer || (perInner ? ii != inner : ii != 1))
            throw new ShapeException($"gather: index {idx} does not fit {x} along axis {axis}");
        var y = New(WithDim(x.Shape, axis, m));
        Backend.Gather(y, x, idx, outer, n, m, inner, perInner);
        var e = new GatherSaved(x, idx, outer, n, m, inner, perInner).Save();
        Record(ref e, y, x);
        return y;
    }

    void GatherBackward(GatherSaved saved, Tensor dy)
    {
        var dx = GradOf(saved.X);
        Backend.Scatter(dx, dy, saved.Index, saved.Outer, saved.N, saved.M, saved.Inner, saved.PerInner);
    }
}
