// Batched GEMM  C[b] = alpha * A[b] B[b] + beta * C[b],  A (M,K), B (K,N), C (M,N) row stride Ldc.
// A and B are general strided views (row stride, column stride), which covers NN, NT, TN and the
// overlapping-row view that turns a k=3 Conv1d over time-major padded input into one GEMM.
//
// Blocked<TS>: a shared-memory tiled, register-blocked kernel. A group of TX x TY threads owns a
// (8 TY) x (8 TX) tile of C; each thread accumulates an 8x8 block in registers (eight Row8 values),
// rows ty + TY i and columns tx + TX j, so the shared-memory reads of a warp are broadcast (A) or
// consecutive (B) and conflict-free, and the stores are coalesced along a row. Per k step a thread
// does 16 shared loads for 64 FMAs. K advances in slabs of BK; each slab of A and B is staged in
// shared memory with consecutive threads walking whichever axis of the operand is contiguous (the
// K axis for row-major A, the M axis for a transposed A), so global loads coalesce in every layout.
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
}

/// Thread-group shape of the blocked GEMM: TX x TY threads, a (8 TY) x (8 TX) tile of C, K slabs of BK.
/// BK x 8 TY / (TX TY) and BK x 8 TX / (TX TY) (the values each thread stages per slab) must be <= 8.
public interface IGemmShape { static abstract int TX { get; } static abstract int TY { get; } static abstract int BK { get; } }
/// 256 threads, 128x128 tiles, BK 8: large GEMMs on a GPU.
public struct Gemm16 : IGemmShape { public static int TX => 16; public static int TY => 16; public static int BK => 8; }
/// 256 threads, 128x128 tiles, BK 16 (half the barriers per FLOP; a `pvlr bench --gemm-variants` candidate).
public struct Gemm16K16 : IGemmShape { public static int TX => 16; public static int TY => 16; public static int BK => 16; }
/// 64 threads, 64x64 tiles: GEMMs too small to fill the GPU with 128x128 tiles.
public struct Gemm8 : IGemmShape { public static int TX => 8; public static int TY => 8; public static int BK => 8; }
/// 16 threads, 32x32 tiles, BK 4: the CPU emulator (tests on tiny shapes).
public struct Gemm4 : IGemmShape { public static int TX => 4; public static int TY => 4; public static int BK => 4; }

/// Eight accumulators of one C row (registers; a value type so ILGPU keeps it out of memory).
public struct Row8
{
    public float X0, X1, X2, X3, X4, X5, X6, X7;

    public static Row8 Fma(Row8 r, float a, Row8 b)
    {
        r.X0 += a * b.X0;
        r.X1 += a * b.X1;
        r.X2 += a * b.X2;
        r.X3 += a * b.X3;
        r.X4 += a * b.X4;
        r.X5 += a * b.X5;
        r.X6 += a * b.X6;
        r.X7 += a * b.X7;
        return r;
    }
}

public static class GemmKernels
{
    /// Shared slab capacity per operand: BK x 128 floats for the largest tile and slab (Gemm16K16).
    public const int SlabFloats = 2048;

    static Row8 LoadB(ArrayView<float> bs, int o, int s) => new()
    {
        X0 = bs[o], X1 = bs[o + s], X2 = bs[o + 2 * s], X3 = bs[o + 3 * s],
        X4 = bs[o + 4 * s], X5 = bs[o + 5 * s], X6 = bs[o + 6 * s], X7 = bs[o + 7 * s],
    };

    static void Store(GemmParams p, ArrayView<float> c, long ci, int row, int col0, int s, Row8 r)
    {
        if (row >= p.M) return;
        long o = ci + (long)row * p.Ldc;
        Put(p, c, o, col0, r.X0); Put(p, c, o, col0 + s, r.X1); Put(p, c, o, col0 + 2 * s, r.X2); Put(p, c, o, col0 + 3 * s, r.X3);
        Put(p, c, o, col0 + 4 * s, r.X4); Put(p, c, o, col0 + 5 * s, r.X5); Put(p, c, o, col0 + 6 * s, r.X6); Put(p, c, o, col0 + 7 * s, r.X7);
    }

    static void Put(GemmParams p, ArrayView<float> c, long o, int col, float v)
    {
        if (col >= p.N) return;
        c[o + col] = p.Beta == 0f ? p.Alpha * v : p.Alpha * v + p.Beta * c[o + col];
    }

    /// One operand's slab: element e = tid + l nt (l < count) of a (BK x width) slab. `alongK`: consecutive
    /// e walk K (the operand is contiguous along K), else they walk M or N.
    struct Slab
    {
        public int Width, Bk, Nt, Count, Rows, Cols; public bool AlongK;
        public long Base, RsK, RsW;          // element (k, w) of the operand at Base + k RsK + w RsW
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
            s[KOf(e) * Width + WOf(e)] = v;
        }

        public void Stage(ArrayView<float> s, int tid, Row8 r)
        {
            Put(s, 0, tid, r.X0); Put(s, 1, tid, r.X1); Put(s, 2, tid, r.X2); Put(s, 3, tid, r.X3);
            Put(s, 4, tid, r.X4); Put(s, 5, tid, r.X5); Put(s, 6, tid, r.X6); Put(s, 7, tid, r.X7);
        }
    }

    /// Group (TX, TY), grid (ceil(N / 8TX), ceil(M / 8TY), Batch).
    public static void Blocked<TS>(GemmParams p, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c)
        where TS : struct, IGemmShape
    {
        int tx = Group.IdxX, ty = Group.IdxY, sx = TS.TX, sy = TS.TY, bk = TS.BK;
        int nt = sx * sy, tid = ty * sx + tx, bm = 8 * sy, bn = 8 * sx;
        var As = SharedMemory.Allocate<float>(SlabFloats);       // [BK][bm]
        var Bs = SharedMemory.Allocate<float>(SlabFloats);       // [BK][bn]
        int bt = Grid.IdxZ;
        // A slab: k along K, w along M; B slab: k along K, w along N.
        var sa = new Slab { Width = bm, Bk = bk, Nt = nt, Count = bk * bm / nt, Rows = p.K, Cols = p.M, AlongK = p.CsA == 1,
                            Base = (long)bt * p.BatchA, RsK = p.CsA, RsW = p.RsA, W0 = Grid.IdxY * bm };
        var sb = new Slab { Width = bn, Bk = bk, Nt = nt, Count = bk * bn / nt, Rows = p.K, Cols = p.N, AlongK = p.RsB == 1 && p.CsB != 1,
                            Base = (long)bt * p.BatchB, RsK = p.RsB, RsW = p.CsB, W0 = Grid.IdxX * bn };
        Row8 r0 = default, r1 = default, r2 = default, r3 = default, r4 = default, r5 = default, r6 = default, r7 = default;
        var pa = sa.Fetch(a, tid); var pb = sb.Fetch(b, tid);
        for (int k0 = 0; k0 < p.K; k0 += bk)
        {
            sa.Stage(As, tid, pa); sb.Stage(Bs, tid, pb);
            Group.Barrier();
            if (k0 + bk < p.K) { sa.K0 = k0 + bk; sb.K0 = k0 + bk; pa = sa.Fetch(a, tid); pb = sb.Fetch(b, tid); }
            for (int k = 0; k < bk; k++)
            {
                var bv = LoadB(Bs, k * bn + tx, sx);
                int ar = k * bm + ty;
                r0 = Row8.Fma(r0, As[ar], bv); r1 = Row8.Fma(r1, As[ar + sy], bv);
                r2 = Row8.Fma(r2, As[ar + 2 * sy], bv); r3 = Row8.Fma(r3, As[ar + 3 * sy], bv);
                r4 = Row8.Fma(r4, As[ar + 4 * sy], bv); r5 = Row8.Fma(r5, As[ar + 5 * sy], bv);
                r6 = Row8.Fma(r6, As[ar + 6 * sy], bv); r7 = Row8.Fma(r7, As[ar + 7 * sy], bv);
            }
            Group.Barrier();
        }
        long ci = (long)bt * p.BatchC;
        int col = Grid.IdxX * bn + tx, row = Grid.IdxY * bm + ty;
        Store(p, c, ci, row, col, sx, r0); Store(p, c, ci, row + sy, col, sx, r1);
        Store(p, c, ci, row + 2 * sy, col, sx, r2); Store(p, c, ci, row + 3 * sy, col, sx, r3);
        Store(p, c, ci, row + 4 * sy, col, sx, r4); Store(p, c, ci, row + 5 * sy, col, sx, r5);
        Store(p, c, ci, row + 6 * sy, col, sx, r6); Store(p, c, ci, row + 7 * sy, col, sx, r7);
    }
}
