// A float32 tensor: a shape over a range of a backend Storage (an arena). Views (Reshape, contiguous
// slices) alias their base; a view's gradient is the same range of the base's gradient.
namespace PvlrKernels.Engine;

public sealed class Tensor
{
    public readonly Storage Data;
    public readonly long Offset;
    public readonly int[] Shape;
    public readonly long Size;
    public bool RequiresGrad;
    public string Name;
    internal Tensor Grad;          // accumulated gradient (same shape), allocated on first use
    internal Tensor ViewOf;        // base tensor when this is a view
    internal long ViewOffset;      // offset of this view inside its base
    internal Parameter Param;      // set for parameter tensors

    public Tensor(Storage data, long offset, int[] shape)
    {
        Data = data;
        Offset = offset;
        Shape = shape;
        Size = Numel(shape);
    }

    /// The place k floats into this tensor's data.
    public Buf At(long k) => new(Data, Offset + k);
    public int Rank => Shape.Length;
    public int Dim(int i) => Shape[i < 0 ? i + Shape.Length : i];
    public override string ToString() => $"{Name ?? "tensor"}{ShapeStr(Shape)}";

    public static long Numel(int[] s)
    {
        long n = 1;
        foreach (var d in s) n *= d;
        return n;
    }
    public static string ShapeStr(int[] s) => "(" + string.Join(",", s) + ")";
}

/// A named parameter inside the flat parameter / gradient / Adam arenas.
public sealed class Parameter
{
    public string Name;
    public int[] Shape;
    public long Offset, Size;
    // false: frozen (no gradient kept, Adam skips it), but gradients still flow to its inputs
    public bool Trainable;
    public bool GotGrad;           // set when a backward wrote into its gradient this step
    public long Step;              // Adam step count, per parameter as torch keeps it
    public Tensor Value, GradTensor;
}
