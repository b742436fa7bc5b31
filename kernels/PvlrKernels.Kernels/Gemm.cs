// Batched GEMM  C[b] = alpha * A[b] B[b] + beta * C[b],  A (M,K), B (K,N), C (M,N) row stride Ldc.
// A and B are general strided views (row stride, column stride), which covers NN, NT, TN and the
// overlapping-row view that turns a k=3 Conv1d over time-major padded input into one GEMM.
//
// Blocked<TS>: a shared-memory tiled, register-blocked kernel. A group of TX x TY threads owns a
// (8 TY) x (8 TX) tile of C; each thread accumulates an 8x8 block in registers (Tile8: eight Row8 rows):
// rows 4ty..4ty+3 of each half of the tile, and columns 4tx..4tx+3 of each half. Per k step a thread
// reads its 8 A values and 8 B values as four 128-bit shared loads (ld.shared.v4: the slabs are viewed
// as Vec4), which a warp serves without bank conflicts (A is a broadcast, B consecutive 16-byte
// words), for 64 FMAs; the k loop goes four steps a trip, its shared reads constant offsets from two
// per-trip views, so the unrolled body is almost all FFMA (`pvlr bench --ptx` counts the SASS). K
// advances in slabs of BK; each slab of A and B is staged in shared memory with consecutive threads
// walking whichever axis of the operand is contiguous (the K axis for row-major A, the M axis for a
// transposed A), so global loads coalesce in every layout, and slab rows are padded (Pad) so that the
// K-contiguous staging writes hit distinct banks. Offsets are 32-bit (each operand's extent is below
// 2^31 floats); stores are coalesced along a row.
// The next slab is prefetched into registers (at most 8 values per thread and operand) while the
// current one is multiplied, so global latency hides behind the FMAs.
using ILGPU;
using ILGPU.Runtime;

namespace PvlrKernels.Kernels;

public struct GemmParams
{
    public int Batch, M, N, K;
    public int BatchA, RsA, CsA, BatchB, RsB, CsB, BatchC, Ldc;
    public float Alpha, Beta;
    /// 1: each B is stored in the CPU GEMM's own panel layout (CpuGemm.PanelIndex; written by a weight
    /// transform for Backend.WeightPanel), RsB and CsB then describe the plain (K, N) it holds. CPU only.
    public int PanelB;
}

/// Thread-group shape of the blocked GEMM: TX x TY threads, a (8 TY) x (8 TX) tile of C, K slabs of BK.
/// BK x 8 TY / (TX TY) and BK x 8 TX / (TX TY) (the values each thread stages per slab) must be whole
/// numbers <= 8 (IlgpuBackend checks this when it compiles a shape).
public interface IGemmShape
{
    static abstract int TX { get; }
    static abstract int TY { get; }
    static abstract int BK { get; }
}
/// 256 threads, 128x128 tiles, BK 8: large GEMMs on a GPU.
public struct Gemm16 : IGemmShape { public static int TX => 16; public static int TY => 16; public static int BK => 8; }
/// 256 threads, 128x128 tiles, BK 16 (half the barriers per FLOP; PVLR_GEMM_TILE=128k16 selects it for a sweep).
public struct Gemm16K16 : IGemmShape { public static int TX => 16; public static int TY => 16; public static int BK =>
    16; }
/// 64 threads, 64x64 tiles: GEMMs too small to fill the GPU with 128x128 tiles.
public struct Gemm8 : IGemmShape { public static int TX => 8; public static int TY => 8; public static int BK => 8; }
/// 16 threads, 32x32 tiles, BK 4: the CPU emulator (tests on tiny shapes).
public struct Gemm4 : IGemmShape { public static int TX => 4; public static int TY => 4; public static int BK => 4; }

/// Four floats loaded as one 128-bit word (ILGPU emits ld.shared.v4.f32 for a Vec4 view of shared memory).
public struct Vec4 { public float X, Y, Z, W; }

/// A thread's 8x8 block of C: eight rows of accumulators, updated one k step at a time.
public struct Tile8
{
    public Row8 R0, R1, R2, R3, R4, R5, R6, R7;

    /// One k step: t += [alo, ahi] (the 8 A values of the thread's rows) x [blo, bhi] (its 8 B columns).
    public static Tile8 Step(Tile8 t, Vec4 alo, Vec4 ahi, Vec4 blo, Vec4 bhi)
    {
        t.R0 = Row8.Fma(t.R0, alo.X, blo, bhi);
        t.R1 = Row8.Fma(t.R1, alo.Y, blo, bhi);
        t.R2 = Row8.Fma(t.R2, alo.Z, blo, bhi);
        t.R3 = Row8.Fma(t.R3, alo.W, blo, bhi);
        t.R4 = Row8.Fma(t.R4, ahi.X, blo, bhi);
        t.R5 = Row8.Fma(t.R5, ahi.Y, blo, bhi);
        t.R6 = Row8.Fma(t.R6, ahi.Z, blo, bhi);
        t.R7 = Row8.Fma(t.R7, ahi.W, blo, bhi);
        return t;
    }
}

/// Eight accumulators of one C row (registers; a value type so ILGPU keeps it out of memory).
public struct Row8
{
    public float X0, X1, X2, X3, X4, X5, X6, X7;

    /// r += a * [lo, hi]: one row's eight columns (two groups of four).
    public static Row8 Fma(Row8 r, float a, Vec4 lo, Vec4 hi)
    {
        r.X0 += a * lo.X;
        r.X1 += a * lo.Y;
        r.X2 += a * lo.Z;
        r.X3 += a * lo.W;
        r.X4 += a * hi.X;
        r.X5 += a * hi.Y;
        r.X6 += a * hi.Z;
        r.X7 += a * hi.W;
        return r;
    }
}

public static class GemmKernels
{
    /// A slab row holds its `width` floats and Pad more, so that the rows a K-contiguous operand's threads
    /// write at once (k = 0..7 of one column) fall in different banks: with rows of 128 floats they would
    /// all hit one bank (8-way conflicts). Pad is one Vec4, so the rows' words stay 16-byte aligned.
    public const int Pad = 4;

    /// Shared slab capacity per operand: BK padded rows of 128 floats for the largest tile and slab
    /// (Gemm16K16).
    public const int SlabFloats = 16 * (128 + Pad);

    /// Row `row` of C: columns c0..c0+3 from X0..X3, c1..c1+3 from X4..X7. Offsets are 32-bit: the host
    /// passes each operand as a view of its extent, which it checks is below 2^31 floats.
    static void Store(GemmParams p, ArrayView<float> c, int ci, int row, int c0, int c1, Row8 r)
    {
        if (row >= p.M) return;
        int o = ci + row * p.Ldc;
        Put(p, c, o, c0, r.X0);
        Put(p, c, o, c0 + 1, r.X1);
        Put(p, c, o, c0 + 2, r.X2);
        Put(p, c, o, c0 + 3, r.X3);
        Put(p, c, o, c1, r.X4);
        Put(p, c, o, c1 + 1, r.X5);
        Put(p, c, o, c1 + 2, r.X6);
        Put(p, c, o, c1 + 3, r.X7);
    }

    static void Put(GemmParams p, ArrayView<float> c, int o, int col, float v)
    {
        if (col >= p.N) return;
        c[o + col] = p.Beta == 0f ? p.Alpha * v : p.Alpha * v + p.Beta * c[o + col];
    }

    /// One operand's slab: element e = tid + l nt (l < count) of a (BK x width) slab. `alongK`: consecutive
    /// e walk K (the operand is contiguous along K), else they walk M or N.
    struct Slab
    {
        public int Width, Bk, Nt, Count, Rows, Cols;
        public bool AlongK;
        public int Base, RsK, RsW;           // element (k, w) of the operand at Base + k RsK + w RsW
        public int W0, K0;

        readonly int KOf(int e) => AlongK ? e % Bk : e / Width;
        readonly int WOf(int e) => AlongK ? e / Bk : e % Width;

        public float Get(ArrayView<float> x, int l, int tid)
        {
            if (l >= Count) return 0f;
            int e = tid + l * Nt, gk = K0 + KOf(e), gw = W0 + WOf(e);
            return gk < Rows && gw < Cols ? x[Base + gk * RsK + gw * RsW] : 0f;
        }

        public Row8 Fetch(ArrayView<float> x, int tid) => new()
        {
            X0 = Get(x, 0, tid), X1 = Get(x, 1, tid), X2 = Get(x, 2, tid), X3 = Get(x, 3, tid),
            X4 = Get(x, 4, tid), X5 = Get(x, 5, tid), X6 = Get(x, 6, tid), X7 = Get(x, 7, tid),
        };

        void Put(ArrayView<float> s, int l, int tid, float v)
        {
            if (l >= Count) return;
            int e = tid + l * Nt;
            s[KOf(e) * (Width + Pad) + WOf(e)] = v;
        }

        public void Stage(ArrayView<float> s, int tid, Row8 r)
        {
            Put(s, 0, tid, r.X0);
            Put(s, 1, tid, r.X1);
            Put(s, 2, tid, r.X2);
            Put(s, 3, tid, r.X3);
            Put(s, 4, tid, r.X4);
            Put(s, 5, tid, r.X5);
            Put(s, 6, tid, r.X6);
            Put(s, 7, tid, r.X7);
        }
    }

    /// Group (TX, TY), grid (ceil(N / 8TX), ceil(M / 8TY), Batch).
    public static void Blocked<TS>(GemmParams p, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c)
        where TS : struct, IGemmShape
    {
        int tx = Group.IdxX, ty = Group.IdxY, sx = TS.TX, sy = TS.TY, bk = TS.BK;
        int nt = sx * sy, tid = ty * sx + tx, bm = 8 * sy, bn = 8 * sx;
        var As = SharedMemory.Allocate<float>(SlabFloats);       // [BK][bm + Pad]
        var Bs = SharedMemory.Allocate<float>(SlabFloats);       // [BK][bn + Pad]
        var As4 = As.Cast<Vec4>();
        var Bs4 = Bs.Cast<Vec4>();
        int bt = Grid.IdxZ;
        // A slab: k along K, w along M; B slab: k along K, w along N.
        var sa = new Slab { Width = bm, Bk = bk, Nt = nt, Count = bk * bm / nt, Rows = p.K, Cols = p.M,
            AlongK = p.CsA == 1, Base = bt * p.BatchA, RsK = p.CsA, RsW = p.RsA, W0 = Grid.IdxY * bm };
        var sb = new Slab { Width = bn, Bk = bk, Nt = nt, Count = bk * bn / nt, Rows = p.K, Cols = p.N,
            AlongK = p.RsB == 1 && p.CsB != 1, Base = bt * p.BatchB, RsK = p.RsB, RsW = p.CsB, W0 = Grid.IdxX * bn };
        Tile8 acc = default;
        var pa = sa.Fetch(a, tid);
        var pb = sb.Fetch(b, tid);
        for (int k0 = 0; k0 < p.K; k0 += bk)
        {
            sa.Stage(As, tid, pa);
            sb.Stage(Bs, tid, pb);
            Group.Barrier();
            if (k0 + bk < p.K)
            {
                sa.K0 = k0 + bk;
                sb.K0 = k0 + bk;
                pa = sa.Fetch(a, tid);
                pb = sb.Fetch(b, tid);
            }
            // four k steps per trip (BK is a multiple of 4): the shared reads become constant offsets
            for (int k = 0; k < bk; k += 4)
            {
                int da = (bm + Pad) / 4, db = (bn + Pad) / 4;
                var av = As4.SubView(k * da + ty);     // this thread's A and B words of step k; the rest of
                var bv = Bs4.SubView(k * db + tx);     // the trip are constant offsets from them
                acc = Tile8.Step(acc, av[0], av[sy], bv[0], bv[sx]);
                acc = Tile8.Step(acc, av[da], av[da + sy], bv[db], bv[db + sx]);
                acc = Tile8.Step(acc, av[2 * da], av[2 * da + sy], bv[2 * db], bv[2 * db + sx]);
                acc = Tile8.Step(acc, av[3 * da], av[3 * da + sy], bv[3 * db], bv[3 * db + sx]);
            }
            Group.Barrier();
        }
        int ci = bt * p.BatchC;
        int c0 = Grid.IdxX * bn + 4 * tx, c1 = c0 + bn / 2, row = Grid.IdxY * bm + 4 * ty, row1 = row + bm / 2;
        Store(p, c, ci, row, c0, c1, acc.R0);
        Store(p, c, ci, row + 1, c0, c1, acc.R1);
        Store(p, c, ci, row + 2, c0, c1, acc.R2);
        Store(p, c, ci, row + 3, c0, c1, acc.R3);
        Store(p, c, ci, row1, c0, c1, acc.R4);
        Store(p, c, ci, row1 + 1, c0, c1, acc.R5);
        Store(p, c, ci, row1 + 2, c0, c1, acc.R6);
        Store(p, c, ci, row1 + 3, c0, c1, acc.R7);
    }
}
