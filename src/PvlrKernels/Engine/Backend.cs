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
    public abstract void Dispose();
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
    public abstract void Upload(Storage dst, long off, ReadOnlySpan<float> src);
    public abstract void Download(Storage src, long off, Span<float> dst);
    /// Columns [from, from + width) of the host matrix src (rows, srcWidth), row-major, into `rows`
    /// contiguous rows of `width` at dst[off..]: one half of each feature row (RaggedBatch.PackHalves).
    /// Here one staging copy and one upload; the CPU backend copies the rows in place on every core.
    public virtual void UploadColumns(Storage dst, long off, ReadOnlyMemory<float> src, int rows, int srcWidth,
        int from, int width)
    {
        CheckColumns(dst, off, src, rows, srcWidth, from, width);
        var stage = new float[(long)rows * width];
        for (int r = 0; r < rows; r++) src.Span.Slice(r * srcWidth + from, width).CopyTo(stage.AsSpan(r * width,
            width));
        Upload(dst, off, stage);
    }

    protected static void CheckColumns(Storage dst, long off, ReadOnlyMemory<float> src, int rows, int srcWidth,
        int from, int width)
    {
        if (rows < 0 || from < 0 || width < 0 || from + width > srcWidth || src.Length < (long)rows * srcWidth || off < 0 || off + (long)rows * width > dst.Length)
            throw new ShapeException($"upload columns: [{from}, {from + width}) of {rows} rows of {srcWidth} from {src.Length} values into [{off}, {off + (long)rows * width}) of {dst.Length}");
    }
    public abstract void Synchronize();
    public abstract void Dispose();

    public abstract void Fill(Storage y, long yo, long n, float v);
    public abstract void Copy4(Storage dst, long dOff, Strides4 sd, Storage src, long sOff, Strides4 ss, Dims4 d,
        float scale, bool accumulate);
    public abstract void SumTo(Storage dst, long dOff, Dims4 target, Storage src, long sOff, Dims4 full,
        bool accumulate);
    public abstract void Unary<TOp>(Storage y, long yo, Storage x, long xo, long n, float p) where TOp : struct,
        IUnaryOp;
    /// y (rows, cols) = sigmoid(a * s[row]) * v, without gradient (kernels/UnaryOps.cs SigmoidGate).
    public abstract void SigmoidGate(Storage y, long yo, Storage a, long ao, Storage s, long so, Storage v, long vo,
        int rows, int cols);
    public abstract void UnaryBackward<TOp>(Storage dx, long dxo, Storage x, long xo, Storage y, long yo, Storage dy,
        long dyo, long n, float p, bool accumulate) where TOp : struct, IUnaryOp;
    public abstract void Binary<TOp>(Storage o, long oo, Storage a, long ao, Strides4 sa, Storage b, long bo,
        Strides4 sb, Dims4 d) where TOp : struct, IBinaryOp;
    public abstract void BinaryGrad<TOp>(Storage tmp, long to, Storage a, long ao, Strides4 sa, Storage b, long bo,
        Strides4 sb, Storage dy, long dyo, Dims4 d, int which) where TOp : struct, IBinaryOp;
    public abstract void Reduce(Storage y, long yo, Storage x, long xo, Storage idx, long io, int outer, int n,
        int inner, int mode, float scale, bool accumulate);
    public abstract void ArgTopK(Storage idx, long io, Storage x, long xo, int outer, int n, int inner, int k,
        bool largest);
    public abstract void Gather(Storage y, long yo, Storage x, long xo, Storage idx, long io, int outer, int n, int m,
        int inner, bool perInner);
    public abstract void Scatter(Storage dx, long dxo, Storage dy, long dyo, Storage idx, long io, int outer, int n,
        int m, int inner, bool perInner);
    public abstract void Softmax(Storage y, long yo, Storage x, long xo, int outer, int n, int inner, bool log);
    public abstract void SoftmaxBackward(Storage dx, long dxo, Storage y, long yo, Storage dy, long dyo, int outer,
        int n, int inner, bool log);
    public abstract void LayerNorm(Storage y, long yo, Storage mean, long mo, Storage rstd, long ro, Storage x,
        long xo, Storage g, long go, Storage b, long bo, int rows, int n, float eps);
    public abstract void LayerNormBackward(Storage dx, long dxo, Storage dg, long dgo, Storage db, long dbo,
        Storage dy, long dyo, Storage x, long xo, Storage g, long go, Storage mean, long mo, Storage rstd, long ro,
        int rows, int n, bool needDx, bool needParams);
    public abstract void L2Normalize(Storage y, long yo, Storage norm, long no, Storage x, long xo, int outer, int n,
        int inner, float eps);
    public abstract void L2NormalizeBackward(Storage dx, long dxo, Storage dy, long dyo, Storage y, long yo,
        Storage norm, long no, int outer, int n, int inner, float eps);
    public abstract void Attention(Storage o, long oo, Storage p, long po, Storage qkv, long qo, AttnParams a);
    public abstract void AttentionBackward(Storage dqkv, long dqo, Storage ds, long dso, Storage dout, long doo,
        Storage p, long po, Storage qkv, long qo, AttnParams a);
    public abstract void PairwiseKl(Storage kl, long ko, Storage muP, long mpo, Storage varP, long vpo, Storage muQ,
        long mqo, Storage varQ, long vqo, KlParams k);
    public abstract void PairwiseKlBackward(Storage dMuP, long dmpo, Storage dVarP, long dvpo, Storage dMuQ,
        long dmqo, Storage dVarQ, long dvqo, Storage dKl, long dko,
        Storage muP, long mpo, Storage varP, long vpo, Storage muQ, long mqo, Storage varQ, long vqo, KlParams k,
            bool needP, bool needQ);
    /// One of FTCL's alignments (kernels/SequenceAlignment.cs: TCell FsdCell or LcsCell) of P pairs: value
    /// (P), table (P, L+1, L+1) and aux (P, L, L, TCell.AuxPerCell) written from p, q (P, L, L) (FSD: M, G;
    /// LCS: S twice).
    public abstract void AlignForward<TCell>(Storage value, long vo, Storage table, long to, Storage aux, long ao,
        Storage p, long po, Storage q, long qo, AlignParams a) where TCell : struct, IAlignCell;
    /// dm, dg (P, L, L) += the FSD gradient for dValue (P); adjoint (P, L+2, L+2) is scratch.
    public abstract void FsdBackward(Storage dm, long dmo, Storage dg, long dgo, Storage adjoint, long ao,
        Storage dValue, long dvo, Storage weights, long wo, AlignParams a);
    /// ds (P, L, L) += dValue on the diagonal steps of each pair's chosen path.
    public abstract void LcsBackward(Storage ds, long dso, Storage dValue, long dvo, Storage choice, long co,
        AlignParams a);
    public abstract void Adam(Storage theta, Storage grad, Storage m, Storage v, long off, long n, AdamParams a);
    public abstract void DropoutMask(Storage y, long yo, long n, float p, RngKey key);
    public abstract void Normal(Storage y, long yo, long n, float std, int samples, RngKey key);
    public abstract void Gemm(Storage c, long co, Storage a, long ao, Storage b, long bo, GemmParams p);
    /// Winograd F(m,3) input transform: v (n, tiles, C) from x (Batch, T, C); mat = Bt then At (kernels/Winograd.cs).
    public abstract void WinogradIn(Storage v, long vo, Storage x, long xo, Storage mat, long mo, WinoParams p);
    /// Winograd F(m,3) weight transform: u (n, Cin, Cout) = G w from w (Cout, Cin, 3); g = G (n x 3). With
    /// `panels`, each (Cin, Cout) plane is written in the GEMM's B panel layout (GemmParams.PanelB).
    public abstract void WinogradWeight(Storage u, long uo, Storage w, long wo, Storage g, long go, int cin, int cout,
        int n, bool panels = false);
    /// The panel width of a GEMM that takes B pre-packed (GemmParams.PanelB) when N is a multiple of it; 0: none.
    public virtual int WeightPanel => 0;
    /// Whether a B with n columns can be written and read in the panel layout.
    public bool PanelsFit(int n) => WeightPanel > 0 && n % WeightPanel == 0;
    /// Output transform with bias, LeakyReLU(p.Slope) and a (Batch, T) row mask fused: y (Batch, T, C) from mm (n, tiles, C).
    public abstract void WinogradOut(Storage y, long yo, Storage mm, long mmo, Storage mat, long mo, Storage bias,
        long bo, Storage mask, long mko, WinoParams p);
}

public abstract class Backend<TMem> : Backend where TMem : struct, IMem
{
    protected abstract TMem Mem(Storage s, long off, long len);
    protected abstract void Launch<TK>(long n, TK body) where TK : struct, IKernel;
    /// A kernel of one row per item, each row `perRow` values of work (attention, LayerNorm, L2 norm):
    /// where the launch would split its items by count (the CPU), it splits these by the work instead.
    protected virtual void LaunchRows<TK>(long rows, long perRow, TK body) where TK : struct, IKernel => Launch(rows,
        body);

    protected TMem M(string op, Storage s, long off, long len)
    {
        if (s == null) throw new ShapeException($"{op}: missing buffer");
        if (off < 0 || len < 0 || off + len > s.Length)
            throw new ShapeException($"{op}: range [{off}, {off + len}) outside a buffer of {s.Length} floats");
        if (len > int.MaxValue) throw new ShapeException($"{op}: {len} elements exceed the 2^31 kernel index range");
        return Mem(s, off, Math.Max(len, 1));
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
        void Add(int n, int st) { long v = (long)(n - 1) * st; if (v < 0) lo += v; else hi += v; }
        Add(d.N0, s.S0); Add(d.N1, s.S1); Add(d.N2, s.S2); Add(d.N3, s.S3);
        return (lo, hi);
    }

    public override void Fill(Storage y, long yo, long n, float v)
    { if (n > 0) Launch(n, new FillKernel<TMem> { Y = M("fill", y, yo, n), Value = v }); }

    public override void Copy4(Storage dst, long dOff, Strides4 sd, Storage src, long sOff, Strides4 ss, Dims4 d,
        float scale, bool accumulate)
    {
        if (d.Total == 0) return;
        var (dlo, dhi) = Range(d, sd); var (slo, shi) = Range(d, ss);
        Launch(d.Total, new Copy4<TMem>
        {
            Dst = M("copy", dst, dOff + dlo, dhi - dlo + 1), Src = M("copy", src, sOff + slo, shi - slo + 1),
                DstBase = (int)-dlo, SrcBase = (int)-slo,
            D = d, SD = sd, SS = ss, Scale = scale, Accumulate = accumulate ? 1 : 0
        });
    }

    public override void SumTo(Storage dst, long dOff, Dims4 target, Storage src, long sOff, Dims4 full,
        bool accumulate)
    {
        Launch(target.Total, new SumTo<TMem>
        {
            Dst = M("sum_to", dst, dOff, target.Total), Src = M("sum_to", src, sOff, full.Total),
            D = full, T = target, Accumulate = accumulate ? 1 : 0
        });
    }

    public override void Unary<TOp>(Storage y, long yo, Storage x, long xo, long n, float p)
    {
        string op = typeof(TOp).Name;
        Launch(n, new UnaryFwd<TOp, TMem> { Y = M(op, y, yo, n), X = M(op, x, xo, n), P = p });
    }

    protected SigmoidGate<TMem> SigmoidGateBody(Storage y, long yo, Storage a, long ao, Storage s, long so, Storage v,
        long vo, int rows, int cols)
    {
        const string op = "sigmoid_gate";
        long n = (long)rows * cols;
        if (rows < 0 || cols < 1 || n > int.MaxValue) throw new ShapeException($"sigmoid_gate: bad shape {rows}x{cols}");
        return new SigmoidGate<TMem> { Y = M(op, y, yo, n), A = M(op, a, ao, n), S = M(op, s, so, rows), V = M(op, v,
            vo, n), Cols = cols };
    }

    public override void SigmoidGate(Storage y, long yo, Storage a, long ao, Storage s, long so, Storage v, long vo,
        int rows, int cols) =>
        Launch((long)rows * cols, SigmoidGateBody(y, yo, a, ao, s, so, v, vo, rows, cols));

    public override void UnaryBackward<TOp>(Storage dx, long dxo, Storage x, long xo, Storage y, long yo, Storage dy,
        long dyo, long n, float p, bool accumulate)
    {
        string op = typeof(TOp).Name + ".backward";
        Launch(n, new UnaryBwd<TOp, TMem>
        {
            DX = M(op, dx, dxo, n), X = M(op, x, xo, n), Y = M(op, y, yo, n), DY = M(op, dy, dyo, n),
            P = p, Accumulate = accumulate ? 1 : 0
        });
    }

    public override void Binary<TOp>(Storage o, long oo, Storage a, long ao, Strides4 sa, Storage b, long bo,
        Strides4 sb, Dims4 d)
    {
        string op = typeof(TOp).Name;
        Launch(d.Total, new BinaryFwd<TOp, TMem>
        {
            Out = M(op, o, oo, d.Total), A = M(op, a, ao, Extent(d, sa)), B = M(op, b, bo, Extent(d, sb)), D = d,
                SA = sa, SB = sb
        });
    }

    public override void BinaryGrad<TOp>(Storage tmp, long to, Storage a, long ao, Strides4 sa, Storage b, long bo,
        Strides4 sb, Storage dy, long dyo, Dims4 d, int which)
    {
        string op = typeof(TOp).Name + ".backward";
        Launch(d.Total, new BinaryGrad<TOp, TMem>
        {
            Tmp = M(op, tmp, to, d.Total), A = M(op, a, ao, Extent(d, sa)), B = M(op, b, bo, Extent(d, sb)),
            DY = M(op, dy, dyo, d.Total), D = d, SA = sa, SB = sb, Which = which
        });
    }

    public override void Reduce(Storage y, long yo, Storage x, long xo, Storage idx, long io, int outer, int n,
        int inner, int mode, float scale, bool accumulate)
    {
        long r = (long)outer * inner;
        Launch(r, new ReduceAxis<TMem>
        {
            Y = M("reduce", y, yo, r), X = M("reduce", x, xo, r * n), Idx = idx != null ? M("reduce", idx, io,
                r) : M("reduce", y, yo, r),
            N = n, Inner = inner, Mode = mode, Scale = scale, Accumulate = accumulate ? 1 : 0,
                WriteIdx = idx != null ? 1 : 0
        });
    }

    public override void ArgTopK(Storage idx, long io, Storage x, long xo, int outer, int n, int inner, int k,
        bool largest) =>
        Launch((long)outer * inner, ArgTopKBody(idx, io, x, xo, outer, n, inner, k, largest));

    /// The checked top-k kernel (one thread per outer x inner column): launched here, and checked by the
    /// CPU's 16-column path before it reads the same memory.
    protected ArgTopK<TMem> ArgTopKBody(Storage idx, long io, Storage x, long xo, int outer, int n, int inner, int k,
        bool largest)
    {
        if (k < 1 || k > n) throw new ShapeException($"topk: k={k} outside [1, {n}]");
        long r = (long)outer * inner;
        return new ArgTopK<TMem> { Idx = M("topk", idx, io, r * k), X = M("topk", x, xo, r * n), N = n, Inner = inner,
            K = k, Largest = largest ? 1 : 0 };
    }

    public override void Gather(Storage y, long yo, Storage x, long xo, Storage idx, long io, int outer, int n, int m,
        int inner, bool perInner)
    {
        long total = (long)outer * m * inner;
        Launch(total, new GatherAxis<TMem>
        {
            Y = M("gather", y, yo, total), X = M("gather", x, xo, (long)outer * n * inner),
            Idx = M("gather", idx, io, perInner ? total : (long)outer * m), N = n, M = m, Inner = inner,
                PerInner = perInner ? 1 : 0
        });
    }

    public override void Scatter(Storage dx, long dxo, Storage dy, long dyo, Storage idx, long io, int outer, int n,
        int m, int inner, bool perInner)
    {
        long total = (long)outer * m * inner;
        LaunchRows((long)outer * inner, m, new ScatterAxis<TMem>
        {
            DX = M("scatter", dx, dxo, (long)outer * n * inner), DY = M("scatter", dy, dyo, total),
            Idx = M("scatter", idx, io, perInner ? total : (long)outer * m), N = n, M = m, Inner = inner,
                PerInner = perInner ? 1 : 0
        });
    }

    public override void Softmax(Storage y, long yo, Storage x, long xo, int outer, int n, int inner, bool log)
    {
        long t = (long)outer * n * inner;
        Launch((long)outer * inner, new SoftmaxFwd<TMem> { Y = M("softmax", y, yo, t), X = M("softmax", x, xo, t),
            N = n, Inner = inner, Log = log ? 1 : 0 });
    }

    public override void SoftmaxBackward(Storage dx, long dxo, Storage y, long yo, Storage dy, long dyo, int outer,
        int n, int inner, bool log)
    {
        long t = (long)outer * n * inner;
        Launch((long)outer * inner, new SoftmaxBwd<TMem>
        { DX = M("softmax.backward", dx, dxo, t), Y = M("softmax.backward", y, yo, t), DY = M("softmax.backward", dy,
            dyo, t), N = n, Inner = inner, Log = log ? 1 : 0 });
    }

    public override void LayerNorm(Storage y, long yo, Storage mean, long mo, Storage rstd, long ro, Storage x,
        long xo, Storage g, long go, Storage b, long bo, int rows, int n, float eps)
    {
        long t = (long)rows * n;
        LaunchRows(rows, n, new LayerNormFwd<TMem>
        {
            Y = M("layernorm", y, yo, t), Mean = M("layernorm", mean, mo, rows), Rstd = M("layernorm", rstd, ro,
                rows), X = M("layernorm", x, xo, t),
            Gamma = M("layernorm", g, go, n), Beta = M("layernorm", b, bo, n), N = n, Eps = eps
        });
    }

    public override void LayerNormBackward(Storage dx, long dxo, Storage dg, long dgo, Storage db, long dbo,
        Storage dy, long dyo, Storage x, long xo, Storage g, long go, Storage mean, long mo, Storage rstd, long ro,
        int rows, int n, bool needDx, bool needParams)
    {
        long t = (long)rows * n; const string op = "layernorm.backward";
        if (needDx)
            LaunchRows(rows, n, new LayerNormBwdX<TMem>
            {
                DX = M(op, dx, dxo, t), DY = M(op, dy, dyo, t), X = M(op, x, xo, t), Gamma = M(op, g, go, n),
                Mean = M(op, mean, mo, rows), Rstd = M(op, rstd, ro, rows), N = n
            });
        if (needParams)
            LaunchRows(n, rows, new LayerNormBwdParams<TMem>
            {
                DGamma = M(op, dg, dgo, n), DBeta = M(op, db, dbo, n), DY = M(op, dy, dyo, t), X = M(op, x, xo, t),
                Mean = M(op, mean, mo, rows), Rstd = M(op, rstd, ro, rows), N = n, Rows = rows
            });
    }

    public override void L2Normalize(Storage y, long yo, Storage norm, long no, Storage x, long xo, int outer, int n,
        int inner, float eps)
    {
        long t = (long)outer * n * inner, r = (long)outer * inner;
        LaunchRows(r, n, new L2NormFwd<TMem> { Y = M("l2norm", y, yo, t), Norm = M("l2norm", norm, no, r),
            X = M("l2norm", x, xo, t), N = n, Inner = inner, Eps = eps });
    }

    public override void L2NormalizeBackward(Storage dx, long dxo, Storage dy, long dyo, Storage y, long yo,
        Storage norm, long no, int outer, int n, int inner, float eps)
    {
        long t = (long)outer * n * inner, r = (long)outer * inner; const string op = "l2norm.backward";
        LaunchRows(r, n, new L2NormBwd<TMem> { DX = M(op, dx, dxo, t), DY = M(op, dy, dyo, t), Y = M(op, y, yo, t),
            Norm = M(op, norm, no, r), N = n, Inner = inner, Eps = eps });
    }

    static void CheckAttn(AttnParams a)
    {
        if (a.H < 1 || a.W % a.H != 0) throw new ShapeException($"attention: width {a.W} not divisible by {a.H} heads");
    }

    public override void Attention(Storage o, long oo, Storage p, long po, Storage qkv, long qo, AttnParams a)
    {
        CheckAttn(a);
        long rows = (long)a.Nb * a.H * a.L;
        LaunchRows(rows, 3L * a.L * (a.W / a.H), new AttentionFwd<TMem>
        {
            Out = M("attention", o, oo, (long)a.Nb * a.L * a.W), P = M("attention", p, po, rows * a.L),
            Qkv = M("attention", qkv, qo, (long)a.Nb * a.L * 3 * a.W), A = a
        });
    }

    public override void AttentionBackward(Storage dqkv, long dqo, Storage ds, long dso, Storage dout, long doo,
        Storage p, long po, Storage qkv, long qo, AttnParams a)
    {
        CheckAttn(a); const string op = "attention.backward";
        long rows = (long)a.Nb * a.H * a.L, nq = (long)a.Nb * a.L * 3 * a.W, no = (long)a.Nb * a.L * a.W;
        var dq = M(op, dqkv, dqo, nq); var s = M(op, ds, dso, rows * a.L); var d = M(op, dout, doo, no);
        var pp = M(op, p, po, rows * a.L); var q = M(op, qkv, qo, nq);
        LaunchRows(rows, 3L * a.L * (a.W / a.H), new AttentionBwdQ<TMem> { DQkv = dq, DS = s, DOut = d, P = pp,
            Qkv = q, A = a });
        LaunchRows(rows, 3L * a.L * (a.W / a.H), new AttentionBwdKV<TMem> { DQkv = dq, DS = s, DOut = d, P = pp,
            Qkv = q, A = a });
    }

    public override void PairwiseKl(Storage kl, long ko, Storage muP, long mpo, Storage varP, long vpo, Storage muQ,
        long mqo, Storage varQ, long vqo, KlParams k) =>
        Launch((long)k.Bt * k.Np * k.Nq, PairwiseKlBody(kl, ko, muP, mpo, varP, vpo, muQ, mqo, varQ, vqo, k));

    /// The checked pairwise-KL kernel (one thread per pair): launched here, and checked by the CPU's
    /// log-table path before it reads the same memory.
    protected PairwiseKlFwd<TMem> PairwiseKlBody(Storage kl, long ko, Storage muP, long mpo, Storage varP, long vpo,
        Storage muQ, long mqo, Storage varQ, long vqo, KlParams k)
    {
        long np = (long)k.Bt * k.Np * k.D, nq = (long)k.Bt * k.Nq * k.D, r = (long)k.Bt * k.Np * k.Nq;
        return new PairwiseKlFwd<TMem>
        {
            Kl = M("kl", kl, ko, r), MuP = M("kl", muP, mpo, np), VarP = M("kl", varP, vpo, np),
            MuQ = M("kl", muQ, mqo, nq), VarQ = M("kl", varQ, vqo, nq), K = k
        };
    }

    public override void PairwiseKlBackward(Storage dMuP, long dmpo, Storage dVarP, long dvpo, Storage dMuQ,
        long dmqo, Storage dVarQ, long dvqo, Storage dKl, long dko,
        Storage muP, long mpo, Storage varP, long vpo, Storage muQ, long mqo, Storage varQ, long vqo, KlParams k,
            bool needP, bool needQ)
    {
        const string op = "kl.backward";
        long np = (long)k.Bt * k.Np * k.D, nq = (long)k.Bt * k.Nq * k.D, r = (long)k.Bt * k.Np * k.Nq;
        var g = M(op, dKl, dko, r); var mp = M(op, muP, mpo, np); var vp = M(op, varP, vpo, np); var mq = M(op, muQ,
            mqo, nq); var vq = M(op, varQ, vqo, nq);
        if (needP) Launch(np, new PairwiseKlBwdP<TMem> { DMuP = M(op, dMuP, dmpo, np), DVarP = M(op, dVarP, dvpo, np),
            DKl = g, MuP = mp, VarP = vp, MuQ = mq, VarQ = vq, K = k });
        if (needQ) Launch(nq, new PairwiseKlBwdQ<TMem> { DMuQ = M(op, dMuQ, dmqo, nq), DVarQ = M(op, dVarQ, dvqo, nq),
            DKl = g, MuP = mp, VarP = vp, MuQ = mq, VarQ = vq, K = k });
    }

    public override void AlignForward<TCell>(Storage value, long vo, Storage table, long to, Storage aux, long ao,
        Storage p, long po, Storage q, long qo, AlignParams a)
    {
        var (cells, tables) = AlignExtents("align", a);
        Launch(a.Pairs, new AlignForwardPair<TMem, TCell> { Value = M("align", value, vo, a.Pairs), Table = M("align",
            table, to, tables), Aux = M("align", aux, ao, TCell.AuxPerCell * cells), P = M("align", p, po, cells),
            Q = M("align", q, qo, cells), A = a });
    }

    public override void FsdBackward(Storage dm, long dmo, Storage dg, long dgo, Storage adjoint, long ao,
        Storage dValue, long dvo, Storage weights, long wo, AlignParams a)
    {
        var (cells, _) = AlignExtents("fsd.backward", a);
        const string op = "fsd.backward";
        Launch(a.Pairs, new FsdBackwardPair<TMem> { DM = M(op, dm, dmo, cells), DG = M(op, dg, dgo, cells),
            Adjoint = M(op, adjoint, ao, (long)a.Pairs * (a.L + 2) * (a.L + 2)), DValue = M(op, dValue, dvo, a.Pairs),
            Weights = M(op, weights, wo, 3 * cells), A = a });
    }

    public override void LcsBackward(Storage ds, long dso, Storage dValue, long dvo, Storage choice, long co,
        AlignParams a)
    {
        var (cells, _) = AlignExtents("lcs.backward", a);
        Launch(a.Pairs, new LcsBackwardPair<TMem> { DS = M("lcs.backward", ds, dso, cells), DValue = M("lcs.backward",
            dValue, dvo, a.Pairs), Choice = M("lcs.backward", choice, co, cells), A = a });
    }

    /// Matrix entries and table entries of all pairs; refuses sides outside [1, MaxSide].
    protected static (long cells, long tables) AlignExtents(string op, AlignParams a)
    {
        if (a.Pairs < 0 || a.L < 1 || a.L > SequenceAlignmentGroups.MaxSide)
            throw new ShapeException($"{op}: {a.Pairs} pairs of side {a.L}; the side must be 1..{SequenceAlignmentGroups.MaxSide}");
        return ((long)a.Pairs * a.Cells, (long)a.Pairs * a.Side * a.Side);
    }

    public override void Adam(Storage theta, Storage grad, Storage m, Storage v, long off, long n, AdamParams a) =>
        Launch(n, AdamBody(theta, grad, m, v, off, n, a));

    /// The checked Adam kernel: launched here, and run for the tail by the CPU's 16-lane path.
    protected AdamStep<TMem> AdamBody(Storage theta, Storage grad, Storage m, Storage v, long off, long n,
        AdamParams a) => new() { Theta = M("adam", theta, off, n), Grad = M("adam", grad, off, n), M = M("adam",
            m, off, n), V = M("adam", v, off, n), A = a };

    public override void DropoutMask(Storage y, long yo, long n, float p, RngKey key) => Launch(n, DropoutMaskBody(y,
        yo, n, p, key));

    /// The checked dropout kernel: launched here, and run for the tail by the CPU's vectorized path.
    protected DropoutMaskKernel<TMem> DropoutMaskBody(Storage y, long yo, long n, float p, RngKey key)
    {
        if (p < 0f || p >= 1f) throw new ArgumentOutOfRangeException(nameof(p),
            $"dropout probability {p} outside [0, 1)");
        return new DropoutMaskKernel<TMem> { Y = M("dropout", y, yo, n), Key = key,
            Threshold = (uint)Math.Min(p * 4294967296.0, uint.MaxValue), KeepScale = 1f / (1f - p) };
    }

    public override void Normal(Storage y, long yo, long n, float std, int samples, RngKey key) => Launch(n,
        NormalBody(y, yo, n, std, samples, key));

    /// The checked normal-draw kernel: launched here, and run for the tail by the CPU's vectorized path.
    protected NormalKernel<TMem> NormalBody(Storage y, long yo, long n, float std, int samples, RngKey key) =>
        new() { Y = M("normal", y, yo, n), Key = key, Std = std, Samples = samples, N = (int)n };

    protected static void CheckWino(WinoParams p)
    {
        if (p.Batch < 1 || p.T < 1 || p.C < 1 || p.M < 1 || p.N != p.M + 2 || p.Tiles != (p.T + p.M - 1) / p.M || (p.VWidth != 0 && p.VWidth < p.C))
            throw new ShapeException($"winograd: bad params batch={p.Batch} T={p.T} C={p.C} m={p.M} n={p.N} tiles={p.Tiles} V width={p.VWidth}");
    }

    /// The checked kernel bodies of the two transforms: launched here, and run for the channel tails by the
    /// CPU backend's vectorized paths, so the scalar math has one source.
    protected WinogradIn<TMem> WinogradInBody(Storage v, long vo, Storage x, long xo, Storage mat, long mo,
        WinoParams p)
    {
        CheckWino(p); const string op = "winograd_in";
        return new WinogradIn<TMem>
        {
            V = M(op, v, vo, ((long)p.N * p.TotalTiles - 1) * p.VRow + p.C), X = M(op, x, xo,
                (long)p.Batch * p.T * p.C), Mat = M(op, mat, mo, p.N * p.N + p.M * p.N), P = p
        };
    }

    protected WinogradOut<TMem> WinogradOutBody(Storage y, long yo, Storage mm, long mmo, Storage mat, long mo,
        Storage bias, long bo, Storage mask, long mko, WinoParams p)
    {
        CheckWino(p); const string op = "winograd_out";
        long work = (long)p.TotalTiles * p.C, rows = (long)p.Batch * p.T;
        var yv = M(op, y, yo, rows * p.C);
        p.HasBias = bias != null ? 1 : 0; p.HasMask = mask != null ? 1 : 0;
        return new WinogradOut<TMem>
        {
            Y = yv, Mm = M(op, mm, mmo, work * p.N), Mat = M(op, mat, mo, p.N * p.N + p.M * p.N),
            Bias = bias != null ? M(op, bias, bo, p.C) : yv, Mask = mask != null ? M(op, mask, mko, rows) : yv, P = p
        };
    }

    protected WinogradWeight<TMem> WinogradWeightBody(Storage u, long uo, Storage w, long wo, Storage g, long go,
        int cin, int cout, int n)
    {
        const string op = "winograd_weight";
        if (cin < 1 || cout < 1 || n < 1) throw new ShapeException($"winograd: bad weight transform cin={cin} cout={cout} n={n}");
        long plane = (long)cin * cout;
        if (plane * n > int.MaxValue) throw new ShapeException($"winograd: weight {cout}x{cin}x3 too large for one transform");
        return new WinogradWeight<TMem> { U = M(op, u, uo, plane * n), W = M(op, w, wo, plane * 3), G = M(op, g, go,
            n * 3), Cin = cin, Cout = cout, N = n };
    }

    public override void WinogradWeight(Storage u, long uo, Storage w, long wo, Storage g, long go, int cin, int cout,
        int n, bool panels = false)
    {
        if (panels) throw new NotSupportedException($"{Name}: no panel-layout weights (WeightPanel is 0)");
        Launch((long)cin * cout, WinogradWeightBody(u, uo, w, wo, g, go, cin, cout, n));
    }

    public override void WinogradIn(Storage v, long vo, Storage x, long xo, Storage mat, long mo, WinoParams p) =>
        Launch((long)p.TotalTiles * p.C, WinogradInBody(v, vo, x, xo, mat, mo, p));

    public override void WinogradOut(Storage y, long yo, Storage mm, long mmo, Storage mat, long mo, Storage bias,
        long bo, Storage mask, long mko, WinoParams p) =>
        Launch((long)p.TotalTiles * p.C, WinogradOutBody(y, yo, mm, mmo, mat, mo, bias, bo, mask, mko, p));

    protected void CheckGemm(GemmParams p, Storage c, long co, Storage a, long ao, Storage b, long bo)
    {
        if (p.M < 0 || p.N < 0 || p.K < 0 || p.Batch < 1) throw new ShapeException($"gemm: bad dims M={p.M} N={p.N} K={p.K} batch={p.Batch}");
        if (p.PanelB != 0 && (!PanelsFit(p.N) || p.RsB != p.N || p.CsB != 1))
            throw new ShapeException($"gemm: a panel-layout B needs a backend with panels (width {WeightPanel}), N a multiple of it and the plain strides (N, 1); got N={p.N} strides ({p.RsB},{p.CsB})");
        long ea = (long)(p.Batch - 1) * p.BatchA + (long)(p.M - 1) * p.RsA + (long)(p.K - 1) * p.CsA + 1;
        long eb = (long)(p.Batch - 1) * p.BatchB + (long)(p.K - 1) * p.RsB + (long)(p.N - 1) * p.CsB + 1;
        long ec = (long)(p.Batch - 1) * p.BatchC + (long)(p.M - 1) * p.Ldc + p.N;
        if (p.M == 0 || p.N == 0) return;
        System.Threading.Interlocked.Add(ref GemmFlops, 2L * p.M * p.N * p.K * p.Batch);
        if (p.K > 0 && (ao < 0 || ao + ea > a.Length)) throw new ShapeException($"gemm: A extent {ea} at {ao} outside {a.Length} (M={p.M} K={p.K})");
        if (p.K > 0 && (bo < 0 || bo + eb > b.Length)) throw new ShapeException($"gemm: B extent {eb} at {bo} outside {b.Length} (K={p.K} N={p.N})");
        if (co < 0 || co + ec > c.Length) throw new ShapeException($"gemm: C extent {ec} at {co} outside {c.Length} (M={p.M} N={p.N})");
    }
}
