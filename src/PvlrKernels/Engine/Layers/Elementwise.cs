// Elementwise unary and broadcasting binary ops, generic over the op struct. Each op's forward and
// derivative rule (scalar and 16-lane) live in kernels/UnaryOps.cs and BinaryOps.cs; this file only wires
// them to the tape. Adding an op is one struct there and one line in OpTests.
using PvlrKernels.Kernels;

namespace PvlrKernels.Engine;

/// The backward of one generic op (Unary<TOp>, Binary<TOp>): one shared instance per op type, so a tape
/// entry names its op without an enum switch and without an allocation.
public abstract class GenericRule
{
    internal abstract void Backward(Graph g, ref Entry e, Tensor dy);
}

public sealed partial class Graph
{
    // ---- unary: y = f(x; p); the rule is TOp's (kernels/UnaryOps.cs) ----
    sealed class UnaryRule<TOp> : GenericRule where TOp : struct, IUnaryOp
    {
        public static readonly UnaryRule<TOp> Instance = new();
        internal override void Backward(Graph g, ref Entry e, Tensor dy) => g.UnaryBackward<TOp>(UnarySaved.Load(e),
            e.Out, dy);
    }

    /// What a unary op's backward reads besides its output: the input and the op's scalar.
    readonly record struct UnarySaved(Tensor X, float P)
    {
        public Entry Save(GenericRule rule) => new() { Op = Op.Generic, Rule = rule, A = X, F0 = P };
        public static UnarySaved Load(in Entry e) => new(e.A, e.F0);
    }

    public Tensor Unary<TOp>(Tensor x, float p = 0f) where TOp : struct, IUnaryOp
    {
        var y = New(x.Shape);
        Backend.Unary<TOp>(y, x, x.Size, p);
        var e = new UnarySaved(x, p).Save(UnaryRule<TOp>.Instance);
        Record(ref e, y, x);
        return y;
    }

    void UnaryBackward<TOp>(UnarySaved saved, Tensor y, Tensor dy) where TOp : struct, IUnaryOp
    {
        var x = saved.X;
        var dx = GradOf(x);
        Backend.UnaryBackward<TOp>(dx, x, y, dy, x.Size, saved.P, true);
    }

    public Tensor Scale(Tensor x, float s) => Unary<ScaleOp>(x, s);
    public Tensor AddScalar(Tensor x, float s) => Unary<AddScalarOp>(x, s);
    public Tensor Sigmoid(Tensor x) => Unary<SigmoidOp>(x);

    /// sigmoid(a * s) * v, s (.., 1) one value per row of a and v: the recorded Mul, Sigmoid, Mul when a
    /// gradient is needed, else one fused pass (no intermediate tensors).
    public Tensor SigmoidGate(Tensor a, Tensor s, Tensor v)
    {
        if (Needs(a, s, v)) return Mul(Sigmoid(Mul(a, s)), v);
        int cols = a.Dim(a.Rank - 1);
        if (!a.Shape.SequenceEqual(v.Shape) || s.Dim(s.Rank - 1) != 1 || s.Size * cols != a.Size)
            throw new ShapeException($"sigmoid_gate: a {a} and v {v} must match, s {s} one value per row");
        var y = New(a.Shape);
        Backend.SigmoidGate(y, a, s, v, (int)s.Size, cols);
        return y;
    }
    public Tensor Relu(Tensor x) => Unary<ReluOp>(x);
    public Tensor LeakyRelu(Tensor x, float slope = 0.2f) => Unary<LeakyReluOp>(x, slope);
    public Tensor Exp(Tensor x, float scale = 1f) => Unary<ExpOp>(x, scale);
    public Tensor Log(Tensor x) => Unary<LogOp>(x);
    public Tensor Abs(Tensor x) => Unary<AbsOp>(x);
    public Tensor QuickGelu(Tensor x) => Unary<QuickGeluOp>(x);
    public Tensor Sqrt(Tensor x) => Unary<SqrtOp>(x);
    public Tensor Reciprocal(Tensor x) => Unary<ReciprocalOp>(x);
    public Tensor Square(Tensor x) => Unary<SquareOp>(x);
    public Tensor Hinge(Tensor x) => Unary<ReluOp>(x);

    // ---- binary with numpy broadcasting (rank <= 4) ----
    static Dims4 Pad4(int[] s)
    {
        if (s.Length > 4) throw new ShapeException($"broadcast: rank {s.Length} > 4");
        var d = new int[4];
        int k = 4 - s.Length;
        for (int i = 0; i < 4; i++) d[i] = i < k ? 1 : s[i - k];
        return new Dims4 { N0 = d[0], N1 = d[1], N2 = d[2], N3 = d[3] };
    }

    static Strides4 BroadcastStrides(Dims4 x, Dims4 o)
    {
        int s3 = 1, s2 = x.N3, s1 = x.N3 * x.N2, s0 = x.N3 * x.N2 * x.N1;
        return new Strides4
        {
            S0 = x.N0 == 1 && o.N0 > 1 ? 0 : s0, S1 = x.N1 == 1 && o.N1 > 1 ? 0 : s1,
            S2 = x.N2 == 1 && o.N2 > 1 ? 0 : s2, S3 = x.N3 == 1 && o.N3 > 1 ? 0 : s3
        };
    }

    sealed class BinaryRule<TOp> : GenericRule where TOp : struct, IBinaryOp
    {
        public static readonly BinaryRule<TOp> Instance = new();
        internal override void Backward(Graph g, ref Entry e, Tensor dy) => g.BinaryBackward<TOp>(BinarySaved.Load(e),
            e.Out, dy);
    }

    /// What a binary op's backward reads: both inputs, the rank-4 output dims and each input's broadcast strides.
    readonly record struct BinarySaved(Tensor A, Tensor B, Dims4 Dims, Strides4 StridesA, Strides4 StridesB)
    {
        public Entry Save(GenericRule rule) => new() { Op = Op.Generic, Rule = rule, A = A, B = B, Dims = Dims,
            S0 = StridesA, S1 = StridesB };
        public static BinarySaved Load(in Entry e) => new(e.A, e.B, e.Dims, e.S0, e.S1);
    }

    public Tensor Binary<TOp>(Tensor a, Tensor b) where TOp : struct, IBinaryOp
    {
        int rank = Math.Max(a.Rank, b.Rank);
        var outShape = new int[rank];
        for (int i = 0; i < rank; i++)
        {
            int ia = i - (rank - a.Rank), ib = i - (rank - b.Rank);
            int na = ia >= 0 ? a.Shape[ia] : 1, nb = ib >= 0 ? b.Shape[ib] : 1;
            if (na != nb && na != 1 && nb != 1)
                throw new ShapeException($"{typeof(TOp).Name}: cannot broadcast {a} with {b}");
            outShape[i] = Math.Max(na, nb);
        }
        var y = New(outShape);
        Dims4 d = Pad4(outShape);
        var sa = BroadcastStrides(Pad4(a.Shape), d);
        var sb = BroadcastStrides(Pad4(b.Shape), d);
        Backend.Binary<TOp>(y, a, sa, b, sb, d);
        var e = new BinarySaved(a, b, d, sa, sb).Save(BinaryRule<TOp>.Instance);
        Record(ref e, y, a, b);
        return y;
    }

    void BinaryBackward<TOp>(BinarySaved saved, Tensor y, Tensor dy) where TOp : struct, IBinaryOp
    {
        var d = saved.Dims;
        for (int which = 0; which < 2; which++)
        {
            var x = which == 0 ? saved.A : saved.B;
            if (!x.RequiresGrad) continue;
            var atOutputShape = New(y.Shape);
            Backend.BinaryGrad<TOp>(atOutputShape, saved.A, saved.StridesA, saved.B, saved.StridesB, dy, d, which);
            var dx = GradOf(x);
            Backend.SumTo(dx, Pad4(x.Shape), atOutputShape, d, true);
        }
    }

    public Tensor Add(Tensor a, Tensor b) => Binary<AddOp>(a, b);
    public Tensor Sub(Tensor a, Tensor b) => Binary<SubOp>(a, b);
    public Tensor Mul(Tensor a, Tensor b) => Binary<MulOp>(a, b);
    public Tensor Div(Tensor a, Tensor b) => Binary<DivOp>(a, b);
    /// torch's BCELoss per element (BceOp): p (probabilities) against the constant targets y.
    public Tensor BinaryCrossEntropy(Tensor p, Tensor y) => Binary<BceOp>(p, y);
}
