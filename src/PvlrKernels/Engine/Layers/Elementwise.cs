// Elementwise unary and broadcasting binary ops. Derivative rules live in kernels/UnaryOps.cs and
// BinaryOps.cs; this file only wires them to the tape.
using PvlrKernels.Kernels;

namespace PvlrKernels.Engine;

public enum UOp { Scale, AddScalar, Sigmoid, Relu, LeakyRelu, Exp, Log, Abs, QuickGelu, Sqrt, Reciprocal, Square }
public enum BOp { Add, Sub, Mul, Div }

public sealed partial class Graph
{
    // ---- unary: y = f(x; p) ----
    public Tensor Unary(UOp op, Tensor x, float p = 0f)
    {
        var y = New(x.Shape);
        switch (op)
        {
            case UOp.Scale: B.Unary<ScaleOp>(y.Data, y.Offset, x.Data, x.Offset, x.Size, p); break;
            case UOp.AddScalar: B.Unary<AddScalarOp>(y.Data, y.Offset, x.Data, x.Offset, x.Size, p); break;
            case UOp.Sigmoid: B.Unary<SigmoidOp>(y.Data, y.Offset, x.Data, x.Offset, x.Size, p); break;
            case UOp.Relu: B.Unary<ReluOp>(y.Data, y.Offset, x.Data, x.Offset, x.Size, p); break;
            case UOp.LeakyRelu: B.Unary<LeakyReluOp>(y.Data, y.Offset, x.Data, x.Offset, x.Size, p); break;
            case UOp.Exp: B.Unary<ExpOp>(y.Data, y.Offset, x.Data, x.Offset, x.Size, p); break;
            case UOp.Log: B.Unary<LogOp>(y.Data, y.Offset, x.Data, x.Offset, x.Size, p); break;
            case UOp.Abs: B.Unary<AbsOp>(y.Data, y.Offset, x.Data, x.Offset, x.Size, p); break;
            case UOp.QuickGelu: B.Unary<QuickGeluOp>(y.Data, y.Offset, x.Data, x.Offset, x.Size, p); break;
            case UOp.Sqrt: B.Unary<SqrtOp>(y.Data, y.Offset, x.Data, x.Offset, x.Size, p); break;
            case UOp.Reciprocal: B.Unary<ReciprocalOp>(y.Data, y.Offset, x.Data, x.Offset, x.Size, p); break;
            case UOp.Square: B.Unary<SquareOp>(y.Data, y.Offset, x.Data, x.Offset, x.Size, p); break;
        }
        var e = new Entry { Op = Op.Unary, A = x, I0 = (int)op, F0 = p };
        Record(ref e, y, x);
        return y;
    }

    void UnaryBackward(ref Entry e, Tensor dy)
    {
        var x = e.A; var y = e.Out; var dx = GradOf(x); float p = e.F0;
        switch ((UOp)e.I0)
        {
            case UOp.Scale: B.UnaryBackward<ScaleOp>(dx.Data, dx.Offset, x.Data, x.Offset, y.Data, y.Offset, dy.Data, dy.Offset, x.Size, p, true); break;
            case UOp.AddScalar: B.UnaryBackward<AddScalarOp>(dx.Data, dx.Offset, x.Data, x.Offset, y.Data, y.Offset, dy.Data, dy.Offset, x.Size, p, true); break;
            case UOp.Sigmoid: B.UnaryBackward<SigmoidOp>(dx.Data, dx.Offset, x.Data, x.Offset, y.Data, y.Offset, dy.Data, dy.Offset, x.Size, p, true); break;
            case UOp.Relu: B.UnaryBackward<ReluOp>(dx.Data, dx.Offset, x.Data, x.Offset, y.Data, y.Offset, dy.Data, dy.Offset, x.Size, p, true); break;
            case UOp.LeakyRelu: B.UnaryBackward<LeakyReluOp>(dx.Data, dx.Offset, x.Data, x.Offset, y.Data, y.Offset, dy.Data, dy.Offset, x.Size, p, true); break;
            case UOp.Exp: B.UnaryBackward<ExpOp>(dx.Data, dx.Offset, x.Data, x.Offset, y.Data, y.Offset, dy.Data, dy.Offset, x.Size, p, true); break;
            case UOp.Log: B.UnaryBackward<LogOp>(dx.Data, dx.Offset, x.Data, x.Offset, y.Data, y.Offset, dy.Data, dy.Offset, x.Size, p, true); break;
            case UOp.Abs: B.UnaryBackward<AbsOp>(dx.Data, dx.Offset, x.Data, x.Offset, y.Data, y.Offset, dy.Data, dy.Offset, x.Size, p, true); break;
            case UOp.QuickGelu: B.UnaryBackward<QuickGeluOp>(dx.Data, dx.Offset, x.Data, x.Offset, y.Data, y.Offset, dy.Data, dy.Offset, x.Size, p, true); break;
            case UOp.Sqrt: B.UnaryBackward<SqrtOp>(dx.Data, dx.Offset, x.Data, x.Offset, y.Data, y.Offset, dy.Data, dy.Offset, x.Size, p, true); break;
            case UOp.Reciprocal: B.UnaryBackward<ReciprocalOp>(dx.Data, dx.Offset, x.Data, x.Offset, y.Data, y.Offset, dy.Data, dy.Offset, x.Size, p, true); break;
            case UOp.Square: B.UnaryBackward<SquareOp>(dx.Data, dx.Offset, x.Data, x.Offset, y.Data, y.Offset, dy.Data, dy.Offset, x.Size, p, true); break;
        }
    }

    public Tensor Scale(Tensor x, float s) => Unary(UOp.Scale, x, s);
    public Tensor AddScalar(Tensor x, float s) => Unary(UOp.AddScalar, x, s);
    public Tensor Sigmoid(Tensor x) => Unary(UOp.Sigmoid, x);

    /// sigmoid(a * s) * v, s (.., 1) one value per row of a and v: the recorded Mul, Sigmoid, Mul when a
    /// gradient is needed, else one fused pass (no intermediate tensors).
    public Tensor SigmoidGate(Tensor a, Tensor s, Tensor v)
    {
        if (Needs(a, s, v)) return Mul(Sigmoid(Mul(a, s)), v);
        int cols = a.Dim(a.Rank - 1);
        if (!a.Shape.SequenceEqual(v.Shape) || s.Dim(s.Rank - 1) != 1 || s.Size * cols != a.Size)
            throw new ShapeException($"sigmoid_gate: a {a} and v {v} must match, s {s} one value per row");
        var y = New(a.Shape);
        B.SigmoidGate(y.Data, y.Offset, a.Data, a.Offset, s.Data, s.Offset, v.Data, v.Offset, (int)s.Size, cols);
        return y;
    }
    public Tensor Relu(Tensor x) => Unary(UOp.Relu, x);
    public Tensor LeakyRelu(Tensor x, float slope = 0.2f) => Unary(UOp.LeakyRelu, x, slope);
    public Tensor Exp(Tensor x, float scale = 1f) => Unary(UOp.Exp, x, scale);
    public Tensor Log(Tensor x) => Unary(UOp.Log, x);
    public Tensor Abs(Tensor x) => Unary(UOp.Abs, x);
    public Tensor QuickGelu(Tensor x) => Unary(UOp.QuickGelu, x);
    public Tensor Sqrt(Tensor x) => Unary(UOp.Sqrt, x);
    public Tensor Reciprocal(Tensor x) => Unary(UOp.Reciprocal, x);
    public Tensor Square(Tensor x) => Unary(UOp.Square, x);
    public Tensor Hinge(Tensor x) => Unary(UOp.Relu, x);

    // ---- binary with numpy broadcasting (rank <= 4) ----
    static Dims4 Pad4(int[] s)
    {
        if (s.Length > 4) throw new ShapeException($"broadcast: rank {s.Length} > 4");
        var d = new int[4]; int k = 4 - s.Length;
        for (int i = 0; i < 4; i++) d[i] = i < k ? 1 : s[i - k];
        return new Dims4 { N0 = d[0], N1 = d[1], N2 = d[2], N3 = d[3] };
    }

    static Strides4 BroadcastStrides(Dims4 x, Dims4 o)
    {
        int s3 = 1, s2 = x.N3, s1 = x.N3 * x.N2, s0 = x.N3 * x.N2 * x.N1;
        return new Strides4 { S0 = x.N0 == 1 && o.N0 > 1 ? 0 : s0, S1 = x.N1 == 1 && o.N1 > 1 ? 0 : s1, S2 = x.N2 == 1 && o.N2 > 1 ? 0 : s2, S3 = x.N3 == 1 && o.N3 > 1 ? 0 : s3 };
    }

    public Tensor Binary(BOp op, Tensor a, Tensor b)
    {
        int rank = Math.Max(a.Rank, b.Rank);
        var os = new int[rank];
        for (int i = 0; i < rank; i++)
        {
            int da = i - (rank - a.Rank) >= 0 ? a.Shape[i - (rank - a.Rank)] : 1, db = i - (rank - b.Rank) >= 0 ? b.Shape[i - (rank - b.Rank)] : 1;
            if (da != db && da != 1 && db != 1) throw new ShapeException($"{op}: cannot broadcast {a} with {b}");
            os[i] = Math.Max(da, db);
        }
        var y = New(os);
        Dims4 d = Pad4(os), da4 = Pad4(a.Shape), db4 = Pad4(b.Shape);
        var sa = BroadcastStrides(da4, d); var sb = BroadcastStrides(db4, d);
        switch (op)
        {
            case BOp.Add: B.Binary<AddOp>(y.Data, y.Offset, a.Data, a.Offset, sa, b.Data, b.Offset, sb, d); break;
            case BOp.Sub: B.Binary<SubOp>(y.Data, y.Offset, a.Data, a.Offset, sa, b.Data, b.Offset, sb, d); break;
            case BOp.Mul: B.Binary<MulOp>(y.Data, y.Offset, a.Data, a.Offset, sa, b.Data, b.Offset, sb, d); break;
            case BOp.Div: B.Binary<DivOp>(y.Data, y.Offset, a.Data, a.Offset, sa, b.Data, b.Offset, sb, d); break;
        }
        var e = new Entry { Op = Op.Binary, A = a, B = b, I0 = (int)op, Dims = d, S0 = sa, S1 = sb };
        Record(ref e, y, a, b);
        return y;
    }

    void BinaryBackward(ref Entry e, Tensor dy)
    {
        var d = e.Dims;
        for (int which = 0; which < 2; which++)
        {
            var x = which == 0 ? e.A : e.B;
            if (!x.RequiresGrad) continue;
            var tmp = New(e.Out.Shape);
            switch ((BOp)e.I0)
            {
                case BOp.Add: B.BinaryGrad<AddOp>(tmp.Data, tmp.Offset, e.A.Data, e.A.Offset, e.S0, e.B.Data, e.B.Offset, e.S1, dy.Data, dy.Offset, d, which); break;
                case BOp.Sub: B.BinaryGrad<SubOp>(tmp.Data, tmp.Offset, e.A.Data, e.A.Offset, e.S0, e.B.Data, e.B.Offset, e.S1, dy.Data, dy.Offset, d, which); break;
                case BOp.Mul: B.BinaryGrad<MulOp>(tmp.Data, tmp.Offset, e.A.Data, e.A.Offset, e.S0, e.B.Data, e.B.Offset, e.S1, dy.Data, dy.Offset, d, which); break;
                case BOp.Div: B.BinaryGrad<DivOp>(tmp.Data, tmp.Offset, e.A.Data, e.A.Offset, e.S0, e.B.Data, e.B.Offset, e.S1, dy.Data, dy.Offset, d, which); break;
            }
            var dx = GradOf(x);
            B.SumTo(dx.Data, dx.Offset, Pad4(x.Shape), tmp.Data, tmp.Offset, d, true);
        }
    }

    public Tensor Add(Tensor a, Tensor b) => Binary(BOp.Add, a, b);
    public Tensor Sub(Tensor a, Tensor b) => Binary(BOp.Sub, a, b);
    public Tensor Mul(Tensor a, Tensor b) => Binary(BOp.Mul, a, b);
    public Tensor Div(Tensor a, Tensor b) => Binary(BOp.Div, a, b);
}
