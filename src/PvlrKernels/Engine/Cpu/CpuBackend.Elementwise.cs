// The CPU backend: unary and binary elementwise ops and their gradients, 16 lanes or one row at a time.
using System.Runtime.Intrinsics;
using PvlrKernels.Kernels;

namespace PvlrKernels.Engine;

public sealed unsafe partial class CpuBackend
{
    /// Ops with 16-lane forms (IUnaryOp.HasLanes) run long vectors 16 lanes at a time, the scalar form on the
    /// tail: the same bits as the kernel body, which every other op and length takes.
    public override void Unary<TOp>(Buf y, Buf x, long n, float p)
    {
        if (!TOp.HasLanes || n < 4096 || !Lanes16)
        {
            base.Unary<TOp>(y, x, n, p);
            return;
        }
        using var _ = Profiler.Time(typeof(UnaryFwd<TOp, PtrMem>), n);
        string op = typeof(TOp).Name;
        Checked(op, y, n);
        Checked(op, x, n);
        float* yp = P(y), xp = P(x);
        Elements(n, (i, end) =>
        {
            for (; i + 16 <= end; i += 16) Vector512.Store(TOp.Forward(Vector512.Load(xp + i), p), yp + i);
            for (; i < end; i++) yp[i] = TOp.Forward(xp[i], p);
        });
    }

    /// The gradients of ops with 16-lane forms, dx = g or dx + g as in UnaryBwd; y is read only where the
    /// rule needs it (IUnaryOp.BackwardReadsY).
    public override void UnaryBackward<TOp>(Buf dx, Buf x, Buf y, Buf dy, long n, float p, bool accumulate)
    {
        if (!TOp.HasLanes || n < 4096 || !Lanes16)
        {
            base.UnaryBackward<TOp>(dx, x, y, dy, n, p, accumulate);
            return;
        }
        using var _ = Profiler.Time(typeof(UnaryBwd<TOp, PtrMem>), n);
        string op = typeof(TOp).Name + ".backward";
        bool readsY = TOp.BackwardReadsY;
        Checked(op, dx, n);
        Checked(op, x, n);
        Checked(op, dy, n);
        if (readsY) Checked(op, y, n);
        float* dxp = P(dx), xp = P(x), dyp = P(dy), yp = readsY ? P(y) : null;
        Elements(n, (i, end) =>
        {
            for (; i + 16 <= end; i += 16)
            {
                var yv = readsY ? Vector512.Load(yp + i) : default;
                var g = TOp.Backward(Vector512.Load(xp + i), yv, Vector512.Load(dyp + i), p);
                Vector512.Store(accumulate ? Vector512.Load(dxp + i) + g : g, dxp + i);
            }
            for (; i < end; i++)
            {
                float g = TOp.Backward(xp[i], readsY ? yp[i] : 0f, dyp[i], p);
                dxp[i] = accumulate ? dxp[i] + g : g;
            }
        });
    }

    /// The test-time gate row by row, 16 lanes at a time with SigmoidOp's lane form (the same products and
    /// sigmoid as the unfused Mul, Sigmoid, Mul); column tails run the kernel body.
    public override void SigmoidGate(Buf y, Buf a, Buf s, Buf v, int rows, int cols)
    {
        var body = SigmoidGateBody(y, a, s, v, rows, cols);     // checks every extent
        using var _ = Profiler.Time("SigmoidGate", (long)rows * cols);
        float* yp = P(y), ap = P(a), sp = P(s), vp = P(v);
        bool wide = Lanes16;
        Rows(rows, (long)rows * cols, (r0, r1) =>
        {
            for (long r = r0; r < r1; r++)
            {
                long o = r * cols;
                int j = 0;
                if (wide)
                {
                    var sv = Vector512.Create(sp[r]);
                    for (; j + 16 <= cols; j += 16)
                        Vector512.Store(SigmoidOp.Forward(Vector512.Load(ap + o + j) * sv,
                            0f) * Vector512.Load(vp + o + j), yp + o + j);
                }
                for (; j < cols; j++) body.Execute((int)(o + j));
            }
        });
    }

    /// The row-wise shape of an elementwise op with a dense output: after dropping size-1 dims and merging
    /// neighbours, each output row of the last dim (width w, at r * w) reads a row (stride 1) or one value
    /// (stride 0) of each operand. False where the strides do not fit; the generic kernel runs then.
    static bool Rowwise(Dims4 d, ref Strides4 sa, ref Strides4 sb, out Dims4 dc)
    {
        dc = d;
        Canonical(ref dc, ref sa, ref sb);
        return !(sa.S3 > 1 || sb.S3 > 1 || sa.S3 < 0 || sb.S3 < 0 || (sa.S3 == 0 && sb.S3 == 0) || dc.N3 < 16);
    }

    /// body(row start in the output, width, A's row or value, A is a row, B's row or value, B is a row) over
    /// the rows of Rowwise, split over the cores.
    void EachRow(Dims4 dc, Strides4 ca, Strides4 cb, long work, float* ap, float* bp,
        Action<long, int, nint, bool, nint, bool> body)
    {
        int w = dc.N3;
        Rows((long)dc.N0 * dc.N1 * dc.N2, work, (r0, r1) =>
        {
            for (long r = r0; r < r1; r++)
            {
                int i2 = (int)(r % dc.N2), i1 = (int)(r / dc.N2 % dc.N1), i0 = (int)(r / dc.N2 / dc.N1);
                body(r * w, w, (nint)(ap + ca.At(i0, i1, i2, 0)), ca.S3 == 1, (nint)(bp + cb.At(i0, i1, i2, 0)),
                    cb.S3 == 1);
            }
        });
    }

    /// Broadcasting binary ops whose last dimension (after dropping size-1 dims) is contiguous or broadcast
    /// in both inputs: each output row through the op's 16-lane form (row op row, row op value, value op
    /// row). Other stride patterns take the generic kernel body; both give the same bits.
    public override void Binary<TOp>(Buf o, Buf a, Strides4 sa, Buf b, Strides4 sb, Dims4 d)
    {
        var ca = sa;
        var cb = sb;
        if (!Lanes16 || !Rowwise(d, ref ca, ref cb, out var dc))
        {
            base.Binary<TOp>(o, a, sa, b, sb, d);
            return;
        }
        using var _ = Profiler.Time(typeof(TOp).Name, d.Total);
        string op = typeof(TOp).Name;
        Checked(op, o, d.Total);
        Checked(op, a, Range(d, sa).hi + 1);
        Checked(op, b, Range(d, sb).hi + 1);
        float* outRows = P(o);
        EachRow(dc, ca, cb, d.Total, P(a), P(b), (at, width, aAt, aIsRow, bAt, bIsRow) =>
        {
            float* av = (float*)aAt, bv = (float*)bAt, dst = outRows + at;
            var aOne = Vector512.Create(*av);
            var bOne = Vector512.Create(*bv);
            int j = 0;
            for (; j + 16 <= width; j += 16)
                Vector512.Store(TOp.Forward(aIsRow ? Vector512.Load(av + j) : aOne,
                    bIsRow ? Vector512.Load(bv + j) : bOne), dst + j);
            for (; j < width; j++) dst[j] = TOp.Forward(aIsRow ? av[j] : *av, bIsRow ? bv[j] : *bv);
        });
    }

    /// The gradient of either input row-wise, as BinaryGrad computes it (at demo shapes the generic kernel's
    /// index arithmetic made the dropout and gating gradients the largest kernel of a training step).
    public override void BinaryGrad<TOp>(Buf tmp, Buf a, Strides4 sa, Buf b, Strides4 sb, Buf dy, Dims4 d, int which)
    {
        var ca = sa;
        var cb = sb;
        if (!Lanes16 || !Rowwise(d, ref ca, ref cb, out var dc))
        {
            base.BinaryGrad<TOp>(tmp, a, sa, b, sb, dy, d, which);
            return;
        }
        using var _ = Profiler.Time(typeof(TOp).Name + ".backward", d.Total);
        string op = typeof(TOp).Name + ".backward";
        Checked(op, tmp, d.Total); Checked(op, dy, d.Total); Checked(op, a, Range(d, sa).hi + 1); Checked(op, b,
            Range(d, sb).hi + 1);
        float* tmpRows = P(tmp), dyRows = P(dy);
        EachRow(dc, ca, cb, d.Total, P(a), P(b), (at, width, aAt, aIsRow, bAt, bIsRow) =>
        {
            float* av = (float*)aAt, bv = (float*)bAt, g = dyRows + at, dst = tmpRows + at;
            var aOne = Vector512.Create(*av);
            var bOne = Vector512.Create(*bv);
            int j = 0;
            for (; j + 16 <= width; j += 16)
            {
                var aj = aIsRow ? Vector512.Load(av + j) : aOne;
                var bj = bIsRow ? Vector512.Load(bv + j) : bOne;
                var gj = Vector512.Load(g + j);
                Vector512.Store(which == 0 ? TOp.GradA(aj, bj, gj) : TOp.GradB(aj, bj, gj), dst + j);
            }
            for (; j < width; j++)
            {
                float aj = aIsRow ? av[j] : *av, bj = bIsRow ? bv[j] : *bv;
                dst[j] = which == 0 ? TOp.GradA(aj, bj, g[j]) : TOp.GradB(aj, bj, g[j]);
            }
        });
    }

    /// Adam in 16 lanes (AdamStep.Lanes: the kernel body's bits) over the cores; the body for the tail.
    public override void Adam(Storage theta, Storage grad, Storage m, Storage v, long off, long n, AdamParams a)
    {
        var body = AdamBody(theta, grad, m, v, off, n, a);                   // checks every extent
        if (!Lanes16)
        {
            Launch(n, body);
            return;
        }
        using var _ = Profiler.Time("Adam", n);
        float* th = S(theta).Ptr + off, g = S(grad).Ptr + off, mp = S(m).Ptr + off, vp = S(v).Ptr + off;
        long whole = n / 16 * 16;
        Elements(whole, (s, e) => { for (long i = s; i < e; i += 16) AdamStep<PtrMem>.Lanes(th + i, g + i, mp + i,
            vp + i, a); });
        for (long i = whole; i < n; i++) body.Execute((int)i);
    }
}
