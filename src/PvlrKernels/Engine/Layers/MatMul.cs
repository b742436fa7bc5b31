// Matrix products on the backend GEMM.
//   MatMul: (M,K)(K,N) or batched (Bt,M,K)(Bt,K,N), either operand transposed by a flag.
//   Linear: y (..., Out) = x (..., In) W^T + b, with W (Out, In) as torch stores it.
using PvlrKernels.Kernels;

namespace PvlrKernels.Engine;

public sealed partial class Graph
{
    /// What the backward reads: both operands and which of them the product read transposed.
    readonly record struct MatMulSaved(Tensor A, Tensor B, bool TransA, bool TransB)
    {
        public Entry Save() => new() { Op = Op.MatMul, A = A, B = B, I0 = TransA ? 1 : 0, I1 = TransB ? 1 : 0 };
        public static MatMulSaved Load(in Entry e) => new(e.A, e.B, e.I0 != 0, e.I1 != 0);
    }

    public Tensor MatMul(Tensor a, Tensor b, bool transA = false, bool transB = false)
    {
        if (a.Rank != b.Rank || (a.Rank != 2 && a.Rank != 3) || (a.Rank == 3 && a.Dim(0) != b.Dim(0)))
            throw new ShapeException($"matmul: need (M,K)(K,N) or (Bt,M,K)(Bt,K,N), got {a} and {b}");
        int bt = a.Rank == 3 ? a.Dim(0) : 1;
        int ar = a.Dim(-2), ac = a.Dim(-1), br = b.Dim(-2), bc = b.Dim(-1);
        int m = transA ? ac : ar, k = transA ? ar : ac, k2 = transB ? bc : br, n = transB ? br : bc;
        if (k != k2)
            throw new ShapeException($"matmul: inner dimensions differ, {a}{(transA ? "^T" : "")} x "
                + $"{b}{(transB ? "^T" : "")}");
        var y = New(a.Rank == 3 ? new[] { bt, m, n } : new[] { m, n });
        Backend.Gemm(y, a, b, new GemmParams
        {
            Batch = bt, M = m, N = n, K = k, BatchA = ar * ac, RsA = transA ? 1 : ac, CsA = transA ? ac : 1,
            BatchB = br * bc, RsB = transB ? 1 : bc, CsB = transB ? bc : 1, BatchC = m * n, Ldc = n, Alpha = 1f,
                Beta = 0f
        });
        var e = new MatMulSaved(a, b, transA, transB).Save();
        Record(ref e, y, a, b);
        return y;
    }

    void MatMulBackward(MatMulSaved saved, Tensor dy)
    {
        var a = saved.A;
        var b = saved.B;
        bool ta = saved.TransA, tb = saved.TransB;
        int bt = a.Rank == 3 ? a.Dim(0) : 1, ar = a.Dim(-2), ac = a.Dim(-1), br = b.Dim(-2), bc = b.Dim(-1);
        int m = ta ? ac : ar, k = ta ? ar : ac, n = tb ? br : bc;
        if (a.RequiresGrad)
        {
            // dA = dY B^T (as stored: if transA, dA^T = ... i.e. dA = B dY^T)
            var da = GradOf(a);
            var p = new GemmParams { Batch = bt, BatchC = ar * ac, Ldc = ac, Alpha = 1f, Beta = 1f };
            if (!ta)
            {   // dA (m,k) = dY (m,n) op(B)^T
                p.M = m;
                p.N = k;
                p.K = n;
                p.BatchA = m * n;
                p.RsA = n;
                p.CsA = 1;
                p.BatchB = br * bc;
                p.RsB = tb ? bc : 1;
                p.CsB = tb ? 1 : bc;
                Backend.Gemm(da, dy, b, p);
            }
            else
            {   // A stored (k,m): dA = op(B) (k,n) dY^T (n,m)
                p.M = k;
                p.N = m;
                p.K = n;
                p.BatchA = br * bc;
                p.RsA = tb ? 1 : bc;
                p.CsA = tb ? bc : 1;
                p.BatchB = m * n;
                p.RsB = 1;
                p.CsB = n;
                Backend.Gemm(da, b, dy, p);
            }
        }
        if (b.RequiresGrad)
        {
            var db = GradOf(b);
            var p = new GemmParams { Batch = bt, BatchC = br * bc, Ldc = bc, Alpha = 1f, Beta = 1f };
            if (!tb)
            {   // dB (k,n) = op(A)^T (k,m) dY (m,n)
                p.M = k;
                p.N = n;
                p.K = m;
                p.BatchA = ar * ac;
                p.RsA = ta ? ac : 1;
                p.CsA = ta ? 1 : ac;
                p.BatchB = m * n;
                p.RsB = n;
                p.CsB = 1;
                Backend.Gemm(db, a, dy, p);
            }
            else
            {   // B stored (n,k): dB = dY^T (n,m) op(A) (m,k)
                p.M = n;
                p.N = k;
                p.K = m;
                p.BatchA = m * n;
                p.RsA = 1;
                p.CsA = n;
                p.BatchB = ar * ac;
                p.RsB = ta ? 1 : ac;
                p.CsB = ta ? ac : 1;
                Backend.Gemm(db, dy, a, p);
            }
        }
    }

    /// What the backward reads: the input, the weight (Out, In) and the bias (or null).
    readonly record struct LinearSaved(Tensor X, Tensor Weight, Tensor Bias)
    {
        public Entry Save() => new() { Op = Op.Linear, A = X, B = Weight, C = Bias };
        public static LinearSaved Load(in Entry e) => new(e.A, e.B, e.C);
    }

    public Tensor Linear(Tensor x, Tensor w, Tensor bias = null)
    {
        int inF = x.Dim(-1), rows = (int)(x.Size / Math.Max(1, inF));
        if (w.Rank != 2 || w.Dim(1) != inF || (bias != null && bias.Size != w.Dim(0)))
            throw new ShapeException($"linear: x {x}, weight {w}, bias {bias?.ToString() ?? "none"}");
        int outF = w.Dim(0);
        var y = New(WithDim(x.Shape, -1, outF));
        if (bias != null)
            Backend.Copy4(y, new Strides4 { S2 = outF, S3 = 1 }, bias,
                new Strides4 { S3 = 1 }, new Dims4 { N0 = 1, N1 = 1, N2 = rows, N3 = outF }, 1f, false);
        Backend.Gemm(y, x, w, new GemmParams
        { Batch = 1, M = rows, N = outF, K = inF, RsA = inF, CsA = 1, RsB = 1, CsB = inF, Ldc = outF, Alpha = 1f,
            Beta = bias != null ? 1f : 0f });
        var e = new LinearSaved(x, w, bias).Save();
        Record(ref e, y, x, w, bias);
        return y;
    }

    void LinearBackward(LinearSaved saved, Tensor dy)
    {
        var x = saved.X;
        var w = saved.Weight;
        int inF = x.Dim(-1), rows = (int)(x.Size / inF), outF = w.Dim(0);
        if (x.RequiresGrad)
        {
            var dx = GradOf(x);
            Backend.Gemm(dx, dy, w, new GemmParams
            { Batch = 1, M = rows, N = inF, K = outF, RsA = outF, CsA = 1, RsB = inF, CsB = 1, Ldc = inF, Alpha = 1f,
                Beta = 1f });
        }
        if (w.RequiresGrad)
        {
            var dw = GradOf(w);
            Backend.Gemm(dw, dy, x, new GemmParams
            { Batch = 1, M = outF, N = inF, K = rows, RsA = 1, CsA = outF, RsB = inF, CsB = 1, Ldc = inF, Alpha = 1f,
                Beta = 1f });
        }
        if (saved.Bias != null && saved.Bias.RequiresGrad)
        {
            var db = GradOf(saved.Bias);
            Backend.Reduce(db, dy, default, 1, rows, outF, ReduceMode.Sum, 1f, true);
        }
    }
}
