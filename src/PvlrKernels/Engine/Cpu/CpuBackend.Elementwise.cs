// The CPU backend: unary and binary elementwise ops and their gradients, 16 lanes or one row at a time.
using System.Runtime.Intrinsics;
using PvlrKernels.Kernels;
using TP = System.Numerics.Tensors.TensorPrimitives;

namespace PvlrKernels.Engine;

public sealed unsafe partial class CpuBackend
{
    /// The sigmoid (Sigmoid512), ReLU and leaky ReLU (IUnaryOp512) of long vectors 16 lanes at a time;
    /// other unary ops take the kernel body.
    public override void Unary<TOp>(Storage y, long yo, Storage x, long xo, long n, float p)
    {
        if (n >= 4096 && Lanes16)
        {
            if (typeof(TOp) == typeof(LeakyReluOp)) { Unary512<LeakyReluOp>(y, yo, x, xo, n, p); return; }
            if (typeof(TOp) == typeof(ReluOp)) { Unary512<ReluOp>(y, yo, x, xo, n, p); return; }
        }
        if (typeof(TOp) != typeof(SigmoidOp) || n < 4096) { base.Unary<TOp>(y, yo, x, xo, n, p); return; }
        using var _ = Profiler.Time("Sigmoid", n);
        M("sigmoid", y, yo, n); M("sigmoid", x, xo, n);
        float* yp = S(y).Ptr + yo, xp = S(x).Ptr + xo;
        Elements(n, (s0, s1) =>
        {
            if (!Vector512.IsHardwareAccelerated) { TP.Sigmoid(new ReadOnlySpan<float>(xp + s0, (int)(s1 - s0)), new Span<float>(yp + s0, (int)(s1 - s0))); return; }
            long i = s0;
            for (; i + 16 <= s1; i += 16) Vector512.Store(Sigmoid512(Vector512.Load(xp + i)), yp + i);
            for (; i < s1; i++) yp[i] = SigmoidOp.Forward(xp[i], 0f);
        });
    }

    void Unary512<TOp>(Storage y, long yo, Storage x, long xo, long n, float p) where TOp : struct, IUnaryOp512
    {
        using var _ = Profiler.Time(typeof(UnaryFwd<TOp, PtrMem>), n);
        string op = typeof(TOp).Name;
        M(op, y, yo, n); M(op, x, xo, n);
        float* yp = S(y).Ptr + yo, xp = S(x).Ptr + xo;
        Elements(n, (i, end) =>
        {
            for (; i + 16 <= end; i += 16) Vector512.Store(TOp.Forward(Vector512.Load(xp + i), p), yp + i);
            for (; i < end; i++) yp[i] = TOp.Forward(xp[i], p);
        });
    }

    /// ReLU's and leaky ReLU's gradients of long vectors 16 lanes at a time (IUnaryOp512), dx = g or dx + g
    /// as in UnaryBwd; other ops take the kernel body.
    public override void UnaryBackward<TOp>(Storage dx, long dxo, Storage x, long xo, Storage y, long yo, Storage dy, long dyo, long n, float p, bool accumulate)
    {
        if (n >= 4096 && Lanes16)
        {
            if (typeof(TOp) == typeof(LeakyReluOp)) { UnaryBackward512<LeakyReluOp>(dx, dxo, x, xo, dy, dyo, n, p, accumulate); return; }
            if (typeof(TOp) == typeof(ReluOp)) { UnaryBackward512<ReluOp>(dx, dxo, x, xo, dy, dyo, n, p, accumulate); return; }
        }
        base.UnaryBackward<TOp>(dx, dxo, x, xo, y, yo, dy, dyo, n, p, accumulate);
    }

    void UnaryBackward512<TOp>(Storage dx, long dxo, Storage x, long xo, Storage dy, long dyo, long n, float p, bool accumulate) where TOp : struct, IUnaryOp512
    {
        using var _ = Profiler.Time(typeof(UnaryBwd<TOp, PtrMem>), n);
        string op = typeof(TOp).Name + ".backward";
        M(op, dx, dxo, n); M(op, x, xo, n); M(op, dy, dyo, n);
        float* dxp = S(dx).Ptr + dxo, xp = S(x).Ptr + xo, dyp = S(dy).Ptr + dyo;
        Elements(n, (i, end) =>
        {
            for (; i + 16 <= end; i += 16)
            {
                var g = TOp.Backward(Vector512.Load(xp + i), Vector512.Load(dyp + i), p);
                Vector512.Store(accumulate ? Vector512.Load(dxp + i) + g : g, dxp + i);
            }
            for (; i < end; i++) { float g = TOp.Backward(xp[i], 0f, dyp[i], p); dxp[i] = accumulate ? dxp[i] + g : g; }
        });
    }


    /// The test-time gate row by row, 16 lanes at a time with Sigmoid512 (the same products and sigmoid as
    /// the unfused Mul, Sigmoid, Mul of long vectors); column tails run the kernel body.
    public override void SigmoidGate(Storage y, long yo, Storage a, long ao, Storage s, long so, Storage v, long vo, int rows, int cols)
    {
        var body = SigmoidGateBody(y, yo, a, ao, s, so, v, vo, rows, cols);     // checks every extent
        using var _ = Profiler.Time("SigmoidGate", (long)rows * cols);
        float* yp = S(y).Ptr + yo, ap = S(a).Ptr + ao, sp = S(s).Ptr + so, vp = S(v).Ptr + vo;
        bool wide = Lanes16;
        Rows(rows, (long)rows * cols, (r0, r1) =>
        {
            for (long r = r0; r < r1; r++)
            {
                long o = r * cols; int j = 0;
                if (wide)
                {
                    var sv = Vector512.Create(sp[r]);
                    for (; j + 16 <= cols; j += 16)
                        Vector512.Store(Sigmoid512(Vector512.Load(ap + o + j) * sv) * Vector512.Load(vp + o + j), yp + o + j);
                }
                for (; j < cols; j++) body.Execute((int)(o + j));
            }
        });
    }

    /// 1 / (1 + e^-x) with e^t = 2^k e^r, k = round(t log2 e), r = t - k ln 2 (ln 2 split in two for an
    /// exact product) and e^r a degree-6 Taylor polynomial (|r| <= ln2/2: relative error ~2e-8).
    /// TensorPrimitives.Sigmoid ran at 0.2-0.3 G values/s here: the 147M sigmoids of a paper-shape
    /// inference run took 0.35 s with it and 0.07 s with this (PVLR_PROFILE).
    /// t is clamped to +-87 so 2^k stays a normal float; sigmoid(-87) ~ 1.6e-38 instead of smaller.
    static Vector512<float> Sigmoid512(Vector512<float> x)
    {
        var t = Vector512.Min(Vector512.Max(-x, Vector512.Create(-87f)), Vector512.Create(87f));
        var k = Vector512.Round(t * Vector512.Create(1.44269504f));
        var r = Vector512.FusedMultiplyAdd(k, Vector512.Create(-0.693145752f), t);
        r = Vector512.FusedMultiplyAdd(k, Vector512.Create(-1.42860677e-6f), r);
        var q = Vector512.Create(1f / 720);
        q = Vector512.FusedMultiplyAdd(q, r, Vector512.Create(1f / 120));
        q = Vector512.FusedMultiplyAdd(q, r, Vector512.Create(1f / 24));
        q = Vector512.FusedMultiplyAdd(q, r, Vector512.Create(1f / 6));
        q = Vector512.FusedMultiplyAdd(q, r, Vector512.Create(0.5f));
        q = Vector512.FusedMultiplyAdd(q, r, Vector512<float>.One);
        q = Vector512.FusedMultiplyAdd(q, r, Vector512<float>.One);
        var scale = Vector512.ShiftLeft(Vector512.ConvertToInt32(k) + Vector512.Create(127), 23).AsSingle();
        return Vector512<float>.One / (Vector512<float>.One + q * scale);
    }

    /// The row-wise shape of an elementwise op with a dense output: after dropping size-1 dims and merging
    /// neighbours, each output row of the last dim (width w, at r * w) reads a row (stride 1) or one value
    /// (stride 0) of each operand. False where the strides do not fit; the generic kernel runs then.
    static bool Rowwise(Dims4 d, ref Strides4 sa, ref Strides4 sb, out Dims4 dc)
    {
        dc = d; Canonical(ref dc, ref sa, ref sb);
        return !(sa.S3 > 1 || sb.S3 > 1 || sa.S3 < 0 || sb.S3 < 0 || (sa.S3 == 0 && sb.S3 == 0) || dc.N3 < 16);
    }

    /// body(row start in the output, width, A's row or value, A is a row, B's row or value, B is a row) over
    /// the rows of Rowwise, split over the cores.
    void EachRow(Dims4 dc, Strides4 ca, Strides4 cb, long work, float* ap, float* bp, Action<long, int, nint, bool, nint, bool> body)
    {
        int w = dc.N3;
        Rows((long)dc.N0 * dc.N1 * dc.N2, work, (r0, r1) =>
        {
            for (long r = r0; r < r1; r++)
            {
                int i2 = (int)(r % dc.N2), i1 = (int)(r / dc.N2 % dc.N1), i0 = (int)(r / dc.N2 / dc.N1);
                body(r * w, w, (nint)(ap + ca.At(i0, i1, i2, 0)), ca.S3 == 1, (nint)(bp + cb.At(i0, i1, i2, 0)), cb.S3 == 1);
            }
        });
    }

    static int Kind<TOp>() => typeof(TOp) == typeof(AddOp) ? 0 : typeof(TOp) == typeof(SubOp) ? 1 : typeof(TOp) == typeof(MulOp) ? 2 : typeof(TOp) == typeof(DivOp) ? 3 : -1;

    /// Broadcasting binary ops whose last dimension (after dropping size-1 dims) is contiguous or broadcast
    /// in both inputs: one TensorPrimitives call per output row (span op span, span op scalar, scalar op
    /// span). Other stride patterns take the generic kernel body.
    public override void Binary<TOp>(Storage o, long oo, Storage a, long ao, Strides4 sa, Storage b, long bo, Strides4 sb, Dims4 d)
    {
        var ca = sa; var cb = sb; int kind = Kind<TOp>();
        if (kind < 0 || !Rowwise(d, ref ca, ref cb, out var dc)) { base.Binary<TOp>(o, oo, a, ao, sa, b, bo, sb, d); return; }
        using var _ = Profiler.Time(typeof(TOp).Name, d.Total);
        string op = typeof(TOp).Name;
        M(op, o, oo, d.Total); M(op, a, ao, Range(d, sa).hi + 1); M(op, b, bo, Range(d, sb).hi + 1);
        float* op0 = S(o).Ptr + oo;
        EachRow(dc, ca, cb, d.Total, S(a).Ptr + ao, S(b).Ptr + bo, (at, w, xa, xRow, ya, yRow) =>
        {
            float* x = (float*)xa, y = (float*)ya;
            var dst = new Span<float>(op0 + at, w);
            if (xRow && yRow)
            {
                var xs = new ReadOnlySpan<float>(x, w); var ys = new ReadOnlySpan<float>(y, w);
                switch (kind) { case 0: TP.Add(xs, ys, dst); break; case 1: TP.Subtract(xs, ys, dst); break; case 2: TP.Multiply(xs, ys, dst); break; default: TP.Divide(xs, ys, dst); break; }
            }
            else if (xRow)
            {
                var xs = new ReadOnlySpan<float>(x, w); float ys = *y;
                switch (kind) { case 0: TP.Add(xs, ys, dst); break; case 1: TP.Subtract(xs, ys, dst); break; case 2: TP.Multiply(xs, ys, dst); break; default: TP.Divide(xs, ys, dst); break; }
            }
            else
            {
                float xs = *x; var ys = new ReadOnlySpan<float>(y, w);
                switch (kind) { case 0: TP.Add(ys, xs, dst); break; case 1: TP.Subtract(xs, ys, dst); break; case 2: TP.Multiply(ys, xs, dst); break; default: TP.Divide(xs, ys, dst); break; }
            }
        });
    }

    /// The gradients of Add, Sub, Mul and of Div's numerator row-wise, as the kernel bodies compute them
    /// (dy, -dy, dy * other, dy / b): at demo shapes the generic kernel's index arithmetic made the
    /// dropout and gating gradients the largest kernel of a training step.
    public override void BinaryGrad<TOp>(Storage tmp, long to, Storage a, long ao, Strides4 sa, Storage b, long bo, Strides4 sb, Storage dy, long dyo, Dims4 d, int which)
    {
        var ca = sa; var cb = sb; int kind = Kind<TOp>();
        if (kind < 0 || (kind == 3 && which == 1) || !Rowwise(d, ref ca, ref cb, out var dc)) { base.BinaryGrad<TOp>(tmp, to, a, ao, sa, b, bo, sb, dy, dyo, d, which); return; }
        using var _ = Profiler.Time(typeof(TOp).Name + ".backward", d.Total);
        string op = typeof(TOp).Name + ".backward";
        M(op, tmp, to, d.Total); M(op, dy, dyo, d.Total); M(op, a, ao, Range(d, sa).hi + 1); M(op, b, bo, Range(d, sb).hi + 1);
        float* tp = S(tmp).Ptr + to, dp = S(dy).Ptr + dyo;
        EachRow(dc, ca, cb, d.Total, S(a).Ptr + ao, S(b).Ptr + bo, (at, w, xa, xRow, ya, yRow) =>
        {
            var g = new ReadOnlySpan<float>(dp + at, w); var dst = new Span<float>(tp + at, w);
            float* other = (float*)(which == 0 ? ya : xa); bool otherRow = which == 0 ? yRow : xRow;
            switch (kind)
            {
                case 0: g.CopyTo(dst); break;
                case 1: if (which == 0) g.CopyTo(dst); else TP.Negate(g, dst); break;
                case 2: if (otherRow) TP.Multiply(g, new ReadOnlySpan<float>(other, w), dst); else TP.Multiply(g, *other, dst); break;
                default: if (yRow) TP.Divide(g, new ReadOnlySpan<float>((float*)ya, w), dst); else TP.Divide(g, *(float*)ya, dst); break;
            }
        });
    }
}
