// The backend interface: device memory plus the closed set of primitives every layer is built from.
// Backend<TMem> writes each primitive once by filling a kernel body from kernels/ (generic over the
// memory accessor); a concrete backend only supplies memory, Launch and GEMM. Shapes and extents are
// checked on the host before every launch: an out-of-range access inside an ILGPU kernel kills the
// process, so it must never get that far.
using PvlrKernels.Kernels;

namespace PvlrKernels.Engine;

public abstract class Storage : IDisposable
{
    public long Length { get; protected set; }
    /// The place k floats into this storage.
    public Buf At(long k) => new(this, k);
    public abstract void Dispose();
}

/// A place in device memory: a storage and an offset (in floats) into it, where a kernel's operand starts.
/// A tensor converts to the Buf of its first element; `b + k` is the place k floats further on.
public readonly record struct Buf(Storage Storage, long Offset)
{
    public bool IsNone => Storage is null;
    public static Buf operator +(Buf b, long k) => new(b.Storage, b.Offset + k);
    public static implicit operator Buf(Tensor t) => t is null ? default : new(t.Data, t.Offset);
}

/// Thrown for any shape or extent mismatch; the message names the op and the shapes.
public sealed class ShapeException(string message) : Exception(message);

public abstract class Backend : IDisposable
{
    public abstract string Name { get; }
    public abstract bool IsGpu { get; }
    /// The fp32 FMA peak in GFLOP/s that `pvlr bench` reports "% of peak" against (0 where unknown).
    public virtual double PeakGflops => 0;
    /// FLOPs issued through Gemm so far (2·M·N·K per product): the matmul work a benchmark reports.
    public long GemmFlops;
    /// Host transfers so far (each one waits for the device on a GPU): what a step costs in round trips.
    public long Downloads, Uploads;
    public abstract Storage Allocate(long n);                 // zero-filled
    /// The activation arena's first chunk, in floats (Arena): 4 MiB where memory is committed when allocated.
    public virtual long ArenaChunkFloats => 1 << 20;
    public abstract void Upload(Buf dst, ReadOnlySpan<float> src);
    public abstract void Download(Buf src, Span<float> dst);
    /// Columns [from, from + width) of the host matrix src (rows, srcWidth), row-major, into `rows`
    /// contiguous rows of `width` at dst[off..]: one half of each feature row (RaggedBatch.PackHalves).
    /// Here one staging copy and one upload; the CPU backend copies the rows in place on every core.
    public virtual void UploadColumns(Buf dst, ReadOnlyMemory<float> src, int rows, int srcWidth, int from, int width)
    {
        CheckColumns(dst, src, rows, srcWidth, from, width);
        var stage = new float[(long)rows * width];
        for (int r = 0; r < rows; r++) src.Span.Slice(r * srcWidth + from, width).CopyTo(stage.AsSpan(r * width,
            width));
        Upload(dst, stage);
    }

    /// n floats at b lie inside b's storage (a host transfer's range); else the op and the range are named.
    protected static void CheckRange(string op, Buf b, long n)
    {
        long off = b.Offset, size = b.Storage.Length;
        if (off < 0 || off + n > size) throw new ShapeException($"{op}: [{off}, {off + n}) outside {size}");
    }

    protected static void CheckColumns(Buf dst, ReadOnlyMemory<float> src, int rows, int srcWidth, int from, int width)
    {
        long off = dst.Offset, end = off + (long)rows * width;
        if (rows < 0 || from < 0 || width < 0 || from + width > srcWidth || src.Length < (long)rows * srcWidth
            || off < 0 || end > dst.Storage.Length)
            throw new ShapeException($"upload columns: [{from}, {from + width}) of {rows} rows of {srcWidth} from "
                + $"{src.Length} values into [{off}, {end}) of {dst.Storage.Length}");
    }
    public abstract void Synchronize();
    public abstract void Dispose();

    public abstract void Fill(Buf y, long n, float v);
    public abstract void Copy4(Buf dst, Strides4 sd, Buf src, Strides4 ss, Dims4 d, float scale, bool accumulate);
    public abstract void SumTo(Buf dst, Dims4 target, Buf src, Dims4 full, bool accumulate);
    public abstract void Unary<TOp>(Buf y, Buf x, long n, float p) where TOp : struct, IUnaryOp;
    /// y (rows, cols) = sigmoid(a * s[row]) * v, without gradient (kernels/UnaryOps.cs SigmoidGate).
    public abstract void SigmoidGate(Buf y, Buf a, Buf s, Buf v, int rows, int cols);
    public abstract void UnaryBackward<TOp>(Buf dx, Buf x, Buf y, Buf dy, long n, float p,
        bool accumulate) where TOp : struct, IUnaryOp;
    public abstract void Binary<TOp>(Buf o, Buf a, Strides4 sa, Buf b,
        Strides4 sb, Dims4 d) where TOp : struct, IBinaryOp;
    public abstract void BinaryGrad<TOp>(Buf tmp, Buf a, Strides4 sa, Buf b,
        Strides4 sb, Buf dy, Dims4 d, int which) where TOp : struct, IBinaryOp;
    public abstract void Reduce(Buf y, Buf x, Buf idx, int outer, int n,
        int inner, int mode, float scale, bool accumulate);
    public abstract void ArgTopK(Buf idx, Buf x, int outer, int n, int inner, int k, bool largest);
    public abstract void Gather(Buf y, Buf x, Buf idx, int outer, int n, int m, int inner, bool perInner);
    public abstract void Scatter(Buf dx, Buf dy, Buf idx, int outer, int n, int m, int inner, bool perInner);
    public abstract void Softmax(Buf y, Buf x, int outer, int n, int inner, bool log);
    public abstract void SoftmaxBackward(Buf dx, Buf y, Buf dy, int outer, int n, int inner, bool log);
    public abstract void LayerNorm(Buf y, Buf mean, Buf rstd, Buf x, Buf g, Buf b, int rows, int n, float eps);
    public abstract void LayerNormBackward(Buf dx, Buf dg, Buf db, Buf dy, Buf x, Buf g, Buf mean, Buf rstd,
        int rows, int n, bool needDx, bool needParams);
    public abstract void L2Normalize(Buf y, Buf norm, Buf x, int outer, int n, int inner, float eps);
    public abstract void L2NormalizeBackward(Buf dx, Buf dy, Buf y, Buf norm, int outer, int n, int inner, float eps);
    public abstract void Attention(Buf o, Buf p, Buf qkv, AttnParams a);
    public abstract void AttentionBackward(Buf dqkv, Buf ds, Buf dout, Buf p, Buf qkv, AttnParams a);
    public abstract void PairwiseKl(Buf kl, Buf muP, Buf varP, Buf muQ, Buf varQ, KlParams k);
    public abstract void PairwiseKlBackward(Buf dMuP, Buf dVarP, Buf dMuQ, Buf dVarQ, Buf dKl,
        Buf muP, Buf varP, Buf muQ, Buf varQ, KlParams k, bool needP, bool needQ);
    /// One of FTCL's alignments (kernels/SequenceAlignment.cs: TCell FsdCell or LcsCell) of P pairs: value
    /// (P), table (P, L+1, L+1) and aux (P, L, L, TCell.AuxPerCell) written from p, q (P, L, L) (FSD: M, G;
    /// LCS: S twice).
    public abstract void AlignForward<TCell>(Buf value, Buf table, Buf aux,
        Buf p, Buf q, AlignParams a) where TCell : struct, IAlignCell;
    /// dm, dg (P, L, L) += the FSD gradient for dValue (P); adjoint (P, L+2, L+2) is scratch.
    public abstract void FsdBackward(Buf dm, Buf dg, Buf adjoint, Buf dValue, Buf weights, AlignParams a);
    /// ds (P, L, L) += dValue on the diagonal steps of each pair's chosen path.
    public abstract void LcsBackward(Buf ds, Buf dValue, Buf choice, AlignParams a);
    /// One Adam step over the same range [off, off + n) of the four arenas (values, gradients, moments).
    public abstract void Adam(Storage theta, Storage grad, Storage m, Storage v, long off, long n, AdamParams a);
    public abstract void DropoutMask(Buf y, long n, float p, RngKey key);
    public abstract void Normal(Buf y, long n, float std, int samples, RngKey key);
    public abstract void Gemm(Buf c, Buf a, Buf b, GemmParams p);
    /// Winograd F(m,3) input transform: v (n, tiles, C) from x (Batch, T, C); mat = Bt then At (kernels/Winograd.cs).
    public abstract void WinogradIn(Buf v, Buf x, Buf mat, WinoParams p);
    /// Winograd F(m,3) weight transform: u (n, Cin, Cout) = G w from w (Cout, Cin, 3); g = G (n x 3). With
    /// `panels`, each (Cin, Cout) plane is written in the GEMM's B panel layout (GemmParams.PanelB).
    public abstract void WinogradWeight(Buf u, Buf w, Buf g, int cin, int cout, int n, bool panels = false);
    /// The panel width of a GEMM that takes B pre-packed (GemmParams.PanelB) when N is a multiple of it; 0: none.
    public virtual int WeightPanel => 0;
    /// Whether a B with n columns can be written and read in the panel layout.
    public bool PanelsFit(int n) => WeightPanel > 0 && n % WeightPanel == 0;
    /// Output transform with bias, LeakyReLU(p.Slope) and a (Batch, T) row mask fused: y (Batch, T, C) from mm (n,
    /// tiles, C).
    public abstract void WinogradOut(Buf y, Buf mm, Buf mat, Buf bias, Buf mask, WinoParams p);
}

public abstract class Backend<TMem> : Backend where TMem : struct, IMem
{
    protected abstract TMem Mem(Buf s, long len);
    protected abstract void Launch<TK>(long n, TK body) where TK : struct, IKernel;
    /// A kernel of one row per item, each row `perRow` values of work (attention, LayerNorm, L2 norm):
    /// where the launch would split its items by count (the CPU), it splits these by the work instead.
    protected virtual void LaunchRows<TK>(long rows, long perRow, TK body) where TK : struct, IKernel => Launch(rows,
        body);

    /// The len floats at b as the kernel's memory accessor, after checking that they lie inside b's storage.
    protected TMem Checked(string op, Buf b, long len)
    {
        if (b.IsNone) throw new ShapeException($"{op}: missing buffer");
        long off = b.Offset, size = b.Storage.Length;
        if (off < 0 || len < 0 || off + len > size)
            throw new ShapeException($"{op}: range [{off}, {off + len}) outside a buffer of {size} floats");
        if (len > int.MaxValue) throw new ShapeException($"{op}: {len} elements exceed the 2^31 kernel index range");
        return Mem(b, Math.Max(len, 1));
    }

    static long Extent(Dims4 d, Strides4 s)
    {
        var (lo, hi) = Range(d, s);
        if (lo < 0) throw new ShapeException("strided view with negative strides must go through Copy4");
        return d.Total == 0 ? 0 : hi + 1;
    }

    /// Lowest and highest element offsets a strided view touches (strides may be negative).
    protected static (long lo, long hi) Range(Dims4 d, Strides4 s)
    {
        long lo = 0, hi = 0;
        void Add(int n, int st)
        {
            long v = (long)(n - 1) * st;
            if (v < 0) lo += v;
            else hi += v;
        }
        Add(d.N0, s.S0);
        Add(d.N1, s.S1);
        Add(d.N2, s.S2);
        Add(d.N3, s.S3);
        return (lo, hi);
    }

    public override void Fill(Buf y, long n, float v)
    { if (n > 0) Launch(n, new FillKernel<TMem> { Y = Checked("fill", y, n), Value = v }); }

    public override void Copy4(Buf dst, Strides4 sd, Buf src, Strides4 ss, Dims4 d, float scale, bool accumulate)
    {
        if (d.Total == 0) return;
        var (dlo, dhi) = Range(d, sd);
        var (slo, shi) = Range(d, ss);
        Launch(d.Total, new Copy4<TMem>
        {
            Dst = Checked("copy", dst + dlo, dhi - dlo + 1), Src = Checked("copy", src + slo, shi - slo + 1),
                DstBase = (int)-dlo, SrcBase = (int)-slo,
            D = d, SD = sd, SS = ss, Scale = scale, Accumulate = accumulate ? 1 : 0
        });
    }

    /// A SumTo's dims as runs: size-1 dims dropped, neighbours that are both reduced (target 1) or both kept
    /// merged; e.g. (B, T, C) -> (1, 1, C) is [(B T, reduced), (C, kept)], a bias gradient's column sums.
    protected static List<(long n, bool red)> SumToRuns(Dims4 target, Dims4 full)
    {
        var runs = new List<(long n, bool red)>();
        int[] fd = { full.N0, full.N1, full.N2, full.N3 }, td = { target.N0, target.N1, target.N2, target.N3 };
        for (int k = 0; k < 4; k++)
        {
            if (fd[k] == 1) continue;
            bool red = td[k] == 1;
            if (runs.Count > 0 && runs[^1].red == red) runs[^1] = (runs[^1].n * fd[k], red);
            else runs.Add((fd[k], red));
        }
        return runs;
    }

    public override void SumTo(Buf dst, Dims4 target, Buf src, Dims4 full, bool accumulate)
    {
        Launch(target.Total, new SumTo<TMem>
        {
            Dst = Checked("sum_to", dst, target.Total), Src = Checked("sum_to", src, full.Total),
            D = full, T = target, Accumulate = accumulate ? 1 : 0
        });
    }

    public override void Unary<TOp>(Buf y, Buf x, long n, float p)
    {
        string op = typeof(TOp).Name;
        Launch(n, new UnaryFwd<TOp, TMem> { Y = Checked(op, y, n), X = Checked(op, x, n), P = p });
    }

    protected SigmoidGate<TMem> SigmoidGateBody(Buf y, Buf a, Buf s, Buf v, int rows, int cols)
    {
        const string op = "sigmoid_gate";
        long n = (long)rows * cols;
        if (rows < 0 || cols < 1 || n > int.MaxValue)
            throw new ShapeException($"sigmoid_gate: bad shape {rows}x{cols}");
        return new SigmoidGate<TMem> { Y = Checked(op, y, n), A = Checked(op, a, n), S = Checked(op, s, rows),
            V = Checked(op, v, n), Cols = cols };
    }

    public override void SigmoidGate(Buf y, Buf a, Buf s, Buf v, int rows, int cols) =>
        Launch((long)rows * cols, SigmoidGateBody(y, a, s, v, rows, cols));

    public override void UnaryBackward<TOp>(Buf dx, Buf x, Buf y, Buf dy, long n, float p, bool accumulate)
    {
        string op = typeof(TOp).Name + ".backward";
        Launch(n, new UnaryBwd<TOp, TMem>
        {
            DX = Checked(op, dx, n), X = Checked(op, x, n), Y = Checked(op, y, n), DY = Checked(op, dy, n),
            P = p, Accumulate = accumulate ? 1 : 0
        });
    }

    public override void Binary<TOp>(Buf o, Buf a, Strides4 sa, Buf b, Strides4 sb, Dims4 d)
    {
        string op = typeof(TOp).Name;
        Launch(d.Total, new BinaryFwd<TOp, TMem>
        {
            Out = Checked(op, o, d.Total), A = Checked(op, a, Extent(d, sa)), B = Checked(op, b, Extent(d, sb)), D = d,
                SA = sa, SB = sb
        });
    }

    public override void BinaryGrad<TOp>(Buf tmp, Buf a, Strides4 sa, Buf b, Strides4 sb, Buf dy, Dims4 d, int which)
    {
        string op = typeof(TOp).Name + ".backward";
        Launch(d.Total, new BinaryGrad<TOp, TMem>
        {
            Tmp = Checked(op, tmp, d.Total), A = Checked(op, a, Extent(d, sa)), B = Checked(op, b, Extent(d, sb)),
            DY = Checked(op, dy, d.Total), D = d, SA = sa, SB = sb, Which = which
        });
    }

    public override void Reduce(Buf y, Buf x, Buf idx, int outer, int n,
        int inner, int mode, float scale, bool accumulate)
    {
        long r = (long)outer * inner;
        Launch(r, new ReduceAxis<TMem>
        {
            Y = Checked("reduce", y, r), X = Checked("reduce", x, r * n), Idx = !idx.IsNone ? Checked("reduce", idx,
                r) : Checked("reduce", y, r),
            N = n, Inner = inner, Mode = mode, Scale = scale, Accumulate = accumulate ? 1 : 0,
                WriteIdx = !idx.IsNone ? 1 : 0
        });
    }

    public override void ArgTopK(Buf idx, Buf x, int outer, int n, int inner, int k, bool largest) =>
        Launch((long)outer * inner, ArgTopKBody(idx, x, outer, n, inner, k, largest));

    /// The checked top-k kernel (one thread per outer x inner column): launched here, and checked by the
    /// CPU's 16-column path before it reads the same memory.
    protected ArgTopK<TMem> ArgTopKBody(Buf idx, Buf x, int outer, int n, int inner, int k, bool largest)
    {
        if (k < 1 || k > n) throw new ShapeException($"topk: k={k} outside [1, {n}]");
        long r = (long)outer * inner;
        return new ArgTopK<TMem> { Idx = Checked("topk", idx, r * k), X = Checked("topk", x, r * n), N = n,
            Inner = inner,
            K = k, Largest = largest ? 1 : 0 };
    }

    public override void Gather(Buf y, Buf x, Buf idx, int outer, int n, int m, int inner, bool perInner)
    {
        long total = (long)outer * m * inner;
        Launch(total, new GatherAxis<TMem>
        {
            Y = Checked("gather", y, total), X = Checked("gather", x, (long)outer * n * inner),
            Idx = Checked("gather", idx, perInner ? total : (long)outer * m), N = n, M = m, Inner = inner,
                PerInner = perInner ? 1 : 0
        });
    }

    public override void Scatter(Buf dx, Buf dy, Buf idx, int outer, int n, int m, int inner, bool perInner)
    {
        long total = (long)outer * m * inner;
        LaunchRows((long)outer * inner, m, new ScatterAxis<TMem>
        {
            DX = Checked("scatter", dx, (long)outer * n * inner), DY = Checked("scatter", dy, total),
            Idx = Checked("scatter", idx, perInner ? total : (long)outer * m), N = n, M = m, Inner = inner,
                PerInner = perInner ? 1 : 0
        });
    }

    public override void Softmax(Buf y, Buf x, int outer, int n, int inner, bool log)
    {
        long t = (long)outer * n * inner;
        Launch((long)outer * inner, new SoftmaxFwd<TMem> { Y = Checked("softmax", y, t), X = Checked("softmax", x, t),
            N = n, Inner = inner, Log = log ? 1 : 0 });
    }

    public override void SoftmaxBackward(Buf dx, Buf y, Buf dy, int outer, int n, int inner, bool log)
    {
        long t = (long)outer * n * inner;
        Launch((long)outer * inner, new SoftmaxBwd<TMem>
        { DX = Checked("softmax.backward", dx, t), Y = Checked("softmax.backward", y, t),
            DY = Checked("softmax.backward", dy, t), N = n, Inner = inner, Log = log ? 1 : 0 });
    }

    public override void LayerNorm(Buf y, Buf mean, Buf rstd, Buf x, Buf g, Buf b, int rows, int n, float eps)
    {
        long t = (long)rows * n;
        LaunchRows(rows, n, new LayerNormFwd<TMem>
        {
            Y = Checked("layernorm", y, t), Mean = Checked("layernorm", mean, rows), Rstd = Checked("layernorm", rstd,
                rows), X = Checked("layernorm", x, t),
            Gamma = Checked("layernorm", g, n), Beta = Checked("layernorm", b, n), N = n, Eps = eps
        });
    }

    public override void LayerNormBackward(Buf dx, Buf dg, Buf db, Buf dy, Buf x, Buf g, Buf mean, Buf rstd,
        int rows, int n, bool needDx, bool needParams)
    {
        long t = (long)rows * n;
        const string op = "layernorm.backward";
        if (needDx)
            LaunchRows(rows, n, new LayerNormBwdX<TMem>
            {
                DX = Checked(op, dx, t), DY = Checked(op, dy, t), X = Checked(op, x, t), Gamma = Checked(op, g, n),
                Mean = Checked(op, mean, rows), Rstd = Checked(op, rstd, rows), N = n
            });
        if (needParams)
            LaunchRows(n, rows, new LayerNormBwdParams<TMem>
            {
                DGamma = Checked(op, dg, n), DBeta = Checked(op, db, n), DY = Checked(op, dy, t), X = Checked(op, x, t),
                Mean = Checked(op, mean, rows), Rstd = Checked(op, rstd, rows), N = n, Rows = rows
            });
    }

    public override void L2Normalize(Buf y, Buf norm, Buf x, int outer, int n, int inner, float eps)
    {
        long t = (long)outer * n * inner, r = (long)outer * inner;
        LaunchRows(r, n, new L2NormFwd<TMem> { Y = Checked("l2norm", y, t), Norm = Checked("l2norm", norm, r),
            X = Checked("l2norm", x, t), N = n, Inner = inner, Eps = eps });
    }

    public override void L2NormalizeBackward(Buf dx, Buf dy, Buf y, Buf norm, int outer, int n, int inner, float eps)
    {
        long t = (long)outer * n * inner, r = (long)outer * inner;
        const string op = "l2norm.backward";
        LaunchRows(r, n, new L2NormBwd<TMem> { DX = Checked(op, dx, t), DY = Checked(op, dy, t), Y = Checked(op, y, t),
            Norm = Checked(op, norm, r), N = n, Inner = inner, Eps = eps });
    }

    protected static void CheckAttn(AttnParams a)
    {
        if (a.H < 1 || a.W % a.H != 0) throw new ShapeException($"attention: width {a.W} not divisible by {a.H} heads");
    }

    public override void Attention(Buf o, Buf p, Buf qkv, AttnParams a)
    {
        CheckAttn(a);
        long rows = (long)a.Nb * a.H * a.L;
        LaunchRows(rows, 3L * a.L * (a.W / a.H), new AttentionFwd<TMem>
        {
            Out = Checked("attention", o, (long)a.Nb * a.L * a.W), P = Checked("attention", p, rows * a.L),
            Qkv = Checked("attention", qkv, (long)a.Nb * a.L * 3 * a.W), A = a
        });
    }

    public override void AttentionBackward(Buf dqkv, Buf ds, Buf dout, Buf p, Buf qkv, AttnParams a)
    {
        CheckAttn(a);
        const string op = "attention.backward";
        long rows = (long)a.Nb * a.H * a.L, nq = (long)a.Nb * a.L * 3 * a.W, no = (long)a.Nb * a.L * a.W;
        var dq = Checked(op, dqkv, nq);
        var s = Checked(op, ds, rows * a.L);
        var d = Checked(op, dout, no);
        var pp = Checked(op, p, rows * a.L);
        var q = Checked(op, qkv, nq);
        LaunchRows(rows, 3L * a.L * (a.W / a.H), new AttentionBwdQ<TMem> { DQkv = dq, DS = s, DOut = d, P = pp,
            Qkv = q, A = a });
        LaunchRows(rows, 3L * a.L * (a.W / a.H), new AttentionBwdKV<TMem> { DQkv = dq, DS = s, DOut = d, P = pp,
            Qkv = q, A = a });
    }

    public override void PairwiseKl(Buf kl, Buf muP, Buf varP, Buf muQ, Buf varQ, KlParams k) =>
        Launch((long)k.Bt * k.Np * k.Nq, PairwiseKlBody(kl, muP, varP, muQ, varQ, k));

    /// The checked pairwise-KL kernel (one thread per pair): launched here, and checked by the CPU's
    /// log-table path before it reads the same memory.
    protected PairwiseKlFwd<TMem> PairwiseKlBody(Buf kl, Buf muP, Buf varP, Buf muQ, Buf varQ, KlParams k)
    {
        long np = (long)k.Bt * k.Np * k.D, nq = (long)k.Bt * k.Nq * k.D, r = (long)k.Bt * k.Np * k.Nq;
        return new PairwiseKlFwd<TMem>
        {
            Kl = Checked("kl", kl, r), MuP = Checked("kl", muP, np), VarP = Checked("kl", varP, np),
            MuQ = Checked("kl", muQ, nq), VarQ = Checked("kl", varQ, nq), K = k
        };
    }

    public override void PairwiseKlBackward(Buf dMuP, Buf dVarP, Buf dMuQ, Buf dVarQ, Buf dKl,
        Buf muP, Buf varP, Buf muQ, Buf varQ, KlParams k, bool needP, bool needQ)
    {
        const string op = "kl.backward";
        long np = (long)k.Bt * k.Np * k.D, nq = (long)k.Bt * k.Nq * k.D, r = (long)k.Bt * k.Np * k.Nq;
        var g = Checked(op, dKl, r);
        var mp = Checked(op, muP, np);
        var vp = Checked(op, varP, np);
        var mq = Checked(op, muQ, nq);
        var vq = Checked(op, varQ, nq);
        if (needP)
            Launch(np, new PairwiseKlBwdP<TMem> { DMuP = Checked(op, dMuP, np), DVarP = Checked(op, dVarP, np), DKl = g,
                MuP = mp, VarP = vp, MuQ = mq, VarQ = vq, K = k });
        if (needQ)
            Launch(nq, new PairwiseKlBwdQ<TMem> { DMuQ = Checked(op, dMuQ, nq), DVarQ = Checked(op, dVarQ, nq), DKl = g,
                MuP = mp, VarP = vp, MuQ = mq, VarQ = vq, K = k });
    }

    public override void AlignForward<TCell>(Buf value, Buf table, Buf aux, Buf p, Buf q, AlignParams a)
    {
        var (cells, tables) = AlignExtents("align", a);
        Launch(a.Pairs, new AlignForwardPair<TMem, TCell> { Value = Checked("align", value, a.Pairs),
            Table = Checked("align",
            table, tables), Aux = Checked("align", aux, TCell.AuxPerCell * cells), P = Checked("align", p, cells),
            Q = Checked("align", q, cells), A = a });
    }

    public override void FsdBackward(Buf dm, Buf dg, Buf adjoint, Buf dValue, Buf weights, AlignParams a)
    {
        var (cells, _) = AlignExtents("fsd.backward", a);
        const string op = "fsd.backward";
        Launch(a.Pairs, new FsdBackwardPair<TMem> { DM = Checked(op, dm, cells), DG = Checked(op, dg, cells),
            Adjoint = Checked(op, adjoint, (long)a.Pairs * (a.L + 2) * (a.L + 2)),
                DValue = Checked(op, dValue, a.Pairs),
            Weights = Checked(op, weights, 3 * cells), A = a });
    }

    public override void LcsBackward(Buf ds, Buf dValue, Buf choice, AlignParams a)
    {
        var (cells, _) = AlignExtents("lcs.backward", a);
        Launch(a.Pairs, new LcsBackwardPair<TMem> { DS = Checked("lcs.backward", ds, cells),
            DValue = Checked("lcs.backward",
            dValue, a.Pairs), Choice = Checked("lcs.backward", choice, cells), A = a });
    }

    /// Matrix entries and table entries of all pairs; refuses sides outside [1, MaxSide].
    protected static (long cells, long tables) AlignExtents(string op, AlignParams a)
    {
        if (a.Pairs < 0 || a.L < 1 || a.L > SequenceAlignmentGroups.MaxSide)
            throw new ShapeException($"{op}: {a.Pairs} pairs of side {a.L}; the side must be "
                + $"1..{SequenceAlignmentGroups.MaxSide}");
        return ((long)a.Pairs * a.Cells, (long)a.Pairs * a.Side * a.Side);
    }

    public override void Adam(Storage theta, Storage grad, Storage m, Storage v, long off, long n, AdamParams a) =>
        Launch(n, AdamBody(theta, grad, m, v, off, n, a));

    /// The checked Adam kernel: launched here, and run for the tail by the CPU's 16-lane path.
    protected AdamStep<TMem> AdamBody(Storage theta, Storage grad, Storage m, Storage v, long off, long n,
        AdamParams a) => new() { Theta = Checked("adam", theta.At(off), n), Grad = Checked("adam", grad.At(off), n),
            M = Checked("adam", m.At(off), n), V = Checked("adam", v.At(off), n), A = a };

    public override void DropoutMask(Buf y, long n, float p, RngKey key) => Launch(n, DropoutMaskBody(y, n, p, key));

    /// The checked dropout kernel: launched here, and run for the tail by the CPU's vectorized path.
    protected DropoutMaskKernel<TMem> DropoutMaskBody(Buf y, long n, float p, RngKey key)
    {
        if (p < 0f || p >= 1f) throw new ArgumentOutOfRangeException(nameof(p),
            $"dropout probability {p} outside [0, 1)");
        return new DropoutMaskKernel<TMem> { Y = Checked("dropout", y, n), Key = key,
            Threshold = (uint)Math.Min(p * 4294967296.0, uint.MaxValue), KeepScale = 1f / (1f - p) };
    }

    public override void Normal(Buf y, long n, float std, int samples, RngKey key) => Launch(n,
        NormalBody(y, n, std, samples, key));

    /// The checked normal-draw kernel: launched here, and run for the tail by the CPU's vectorized path.
    protected NormalKernel<TMem> NormalBody(Buf y, long n, float std, int samples, RngKey key) =>
        new() { Y = Checked("normal", y, n), Key = key, Std = std, Samples = samples, N = (int)n };

    protected static void CheckWino(WinoParams p)
    {
        if (p.Batch < 1 || p.T < 1 || p.C < 1 || p.M < 1 || p.N != p.M + 2 || p.Tiles != (p.T + p.M - 1) / p.M
            || (p.VWidth != 0 && p.VWidth < p.C))
            throw new ShapeException($"winograd: bad params batch={p.Batch} T={p.T} C={p.C} m={p.M} n={p.N} "
                + $"tiles={p.Tiles} V width={p.VWidth}");
    }

    /// The checked kernel bodies of the two transforms: launched here, and run for the channel tails by the
    /// CPU backend's vectorized paths, so the scalar math has one source.
    protected WinogradIn<TMem> WinogradInBody(Buf v, Buf x, Buf mat, WinoParams p)
    {
        CheckWino(p);
        const string op = "winograd_in";
        return new WinogradIn<TMem>
        {
            V = Checked(op, v, ((long)p.N * p.TotalTiles - 1) * p.VRow + p.C), X = Checked(op, x,
                (long)p.Batch * p.T * p.C), Mat = Checked(op, mat, p.N * p.N + p.M * p.N), P = p
        };
    }

    protected WinogradOut<TMem> WinogradOutBody(Buf y, Buf mm, Buf mat, Buf bias, Buf mask, WinoParams p)
    {
        CheckWino(p);
        const string op = "winograd_out";
        long work = (long)p.TotalTiles * p.C, rows = (long)p.Batch * p.T;
        var yv = Checked(op, y, rows * p.C);
        p.HasBias = !bias.IsNone ? 1 : 0;
        p.HasMask = !mask.IsNone ? 1 : 0;
        return new WinogradOut<TMem>
        {
            Y = yv, Mm = Checked(op, mm, work * p.N), Mat = Checked(op, mat, p.N * p.N + p.M * p.N),
            Bias = !bias.IsNone ? Checked(op, bias, p.C) : yv, Mask = !mask.IsNone ? Checked(op, mask, rows) : yv, P = p
        };
    }

    protected WinogradWeight<TMem> WinogradWeightBody(Buf u, Buf w, Buf g, int cin, int cout, int n)
    {
        const string op = "winograd_weight";
        if (cin < 1 || cout < 1 || n < 1)
            throw new ShapeException($"winograd: bad weight transform cin={cin} cout={cout} n={n}");
        long plane = (long)cin * cout;
        if (plane * n > int.MaxValue)
            throw new ShapeException($"winograd: weight {cout}x{cin}x3 too large for one transform");
        return new WinogradWeight<TMem> { U = Checked(op, u, plane * n), W = Checked(op, w, plane * 3),
            G = Checked(op, g,
            n * 3), Cin = cin, Cout = cout, N = n };
    }

    public override void WinogradWeight(Buf u, Buf w, Buf g, int cin, int cout, int n, bool panels = false)
    {
        if (panels) throw new NotSupportedException($"{Name}: no panel-layout weights (WeightPanel is 0)");
        Launch((long)cin * cout, WinogradWeightBody(u, w, g, cin, cout, n));
    }

    public override void WinogradIn(Buf v, Buf x, Buf mat, WinoParams p) =>
        Launch((long)p.TotalTiles * p.C, WinogradInBody(v, x, mat, p));

    public override void WinogradOut(Buf y, Buf mm, Buf mat, Buf bias, Buf mask, WinoParams p) =>
        Launch((long)p.TotalTiles * p.C, WinogradOutBody(y, mm, mat, bias, mask, p));

    /// Checks a product's dimensions and that each operand's extent lies inside its buffer; returns the
    /// extents (in floats, from each operand's start) of A, B and C.
    protected (long a, long b, long c) CheckGemm(GemmParams p, Buf c, Buf a, Buf b)
    {
        if (p.M < 0 || p.N < 0 || p.K < 0 || p.Batch < 1)
            throw new ShapeException($"gemm: bad dims M={p.M} N={p.N} K={p.K} batch={p.Batch}");
        if (p.PanelB != 0 && (!PanelsFit(p.N) || p.RsB != p.N || p.CsB != 1))
            throw new ShapeException($"gemm: a panel-layout B needs a backend with panels (width {WeightPanel}), N a "
                + $"multiple of it and the plain strides (N, 1); got N={p.N} strides ({p.RsB},{p.CsB})");
        long ea = (long)(p.Batch - 1) * p.BatchA + (long)(p.M - 1) * p.RsA + (long)(p.K - 1) * p.CsA + 1;
        long eb = (long)(p.Batch - 1) * p.BatchB + (long)(p.K - 1) * p.RsB + (long)(p.N - 1) * p.CsB + 1;
        long ec = (long)(p.Batch - 1) * p.BatchC + (long)(p.M - 1) * p.Ldc + p.N;
        if (p.M == 0 || p.N == 0) return (0, 0, 0);
        System.Threading.Interlocked.Add(ref GemmFlops, 2L * p.M * p.N * p.K * p.Batch);
        if (p.K > 0) CheckExtent("A", a, ea, $"M={p.M} K={p.K}");
        if (p.K > 0) CheckExtent("B", b, eb, $"K={p.K} N={p.N}");
        CheckExtent("C", c, ec, $"M={p.M} N={p.N}");
        return (p.K > 0 ? ea : 0, p.K > 0 ? eb : 0, ec);
    }

    static void CheckExtent(string name, Buf b, long extent, string dims)
    {
        if (b.IsNone || b.Offset < 0 || b.Offset + extent > b.Storage.Length)
            throw new ShapeException($"gemm: {name} extent {extent} at {b.Offset} outside {b.Storage?.Length ?? 0} "
                + $"({dims})");
    }
}
