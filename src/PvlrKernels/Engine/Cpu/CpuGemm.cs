// Packed SGEMM for the managed CPU backend (Goto/BLIS blocking):
//   C (M,N, row stride ldc) = alpha * A B + beta * C, with A and B given by (row stride, column stride),
//   so transposed and overlapping-row operands are packed directly, with no im2col and no transpose copy.
// Blocking: KC = 256 deep panels; B packed into NR = 32-column panels shared by all threads (or already
// written in that layout: GemmParams.PanelB; a transposed B's columns are packed by 8x8 register
// transposes); each task packs an mc x KC block of A into MR = 8-row panels (the same transposes when A
// is row-major) and runs the 8x32 Vector512 FMA microkernel (16 zmm accumulators, the C tile prefetched
// while it runs).
// Tasks: when M has enough row blocks, each task owns rows across all of N (A packed once per slab,
// row blocks sized so the cores get equal shares); otherwise (mc rows) x (NCT columns) tiles keep both
// cores busy for short M. Batches of large products (SgemmBatch) give each core whole products instead.
// A Vector256 microkernel covers machines without AVX-512: the same tile as four 4x16 blocks, each with its
// 8 accumulators in registers (AVX2 has 16 ymm registers, too few for the 8x32 tile's 32).
// Fewer than NR columns of a transposed B against row-major A run unpacked, a dot product per output (Narrow).
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace PvlrKernels.Engine;

public static unsafe class CpuGemm
{
    const int MR = 8, NR = 32, KC = 256, MC = 128, NCT = 512;
    public const int PanelWidth = NR;

    /// Where B[k, j] of a (K, N) matrix lives in the panel layout the driver packs B into (N a multiple of
    /// NR): K slabs of KC rows one after another, each slab NR-column panels of kc x NR, row-major.
    /// A frozen weight written this way (GemmParams.PanelB) is multiplied with no packing of B at all.
    public static long PanelIndex(int k, int j, int K, int N)
    {
        int pc = k / KC * KC, kc = Math.Min(KC, K - pc);
        return (long)pc * N + (long)(j / NR) * kc * NR + (long)(k - pc) * NR + j % NR;
    }

    [ThreadStatic] static float* tlsA;

    /// Run the Vector256 microkernel even where AVX-512 is there: for tests and for timing the fallback
    /// (`pvlr bench --only gemm --vector256`). Machines without AVX-512 always run it.
    public static bool Vector256Only { get; set; }

    /// One product, its row blocks (or tiles) shared by all cores.
    public static void Sgemm(int M, int N, int K, float alpha, float* A, long rsA, long csA, float* B, long rsB,
        long csB, float beta, float* C, long ldc) =>
        Run(M, N, K, alpha, A, rsA, csA, B, rsB, csB, false, beta, C, ldc, Environment.ProcessorCount);

    /// `batch` products of the same shape, operand i at A + i*strideA (B, C alike). With at least one large
    /// product per core and a batch that divides evenly, each core runs whole products alone: no shared
    /// panels and no barrier per KC slab. For the Winograd GEMMs (8 products per convolution) this took
    /// `pvlr bench --preset paper --only infer` from 12.85, 12.24, 12.48 s to 11.50, 11.37, 11.35 s
    /// (alternated runs). Each product's sums run in the same order either way, so C is bitwise the same.
    /// `panelB`: each B is already in the panel layout (PanelIndex) and is read in place.
    public static void SgemmBatch(int batch, int M, int N, int K, float alpha, float* A, long strideA, long rsA,
        long csA,
        float* B, long strideB, long rsB, long csB, float beta, float* C, long strideC, long ldc, int threads = 0,
            bool panelB = false)
    {
        if (threads <= 0) threads = Environment.ProcessorCount;
        bool split = threads > 1 && batch >= threads && (batch % threads == 0 || batch >= 4 * threads)
            && (long)M * N * K >= SerialMin;
        if (!split)
        {
            for (int i = 0; i < batch; i++) Run(M, N, K, alpha, A + i * strideA, rsA, csA, B + i * strideB, rsB, csB,
                panelB, beta, C + i * strideC, ldc, threads);
            return;
        }
        CpuPool.For(batch, i => Run(M, N, K, alpha, A + i * strideA, rsA, csA, B + i * strideB, rsB, csB, panelB,
            beta, C + i * strideC, ldc, 1), threads);
    }

    const long SerialMin = 1L << 22;        // multiply-adds per product below which one core per product idles the rest

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Run(int M, int N, int K, float alpha, float* A, long rsA, long csA, float* B, long rsB, long csB,
        bool panelB, float beta, float* C, long ldc, int threads)
    {
        if (panelB && N % NR != 0)
            throw new ArgumentException($"gemm: a panel-layout B needs N a multiple of {NR}, got {N}");
        if (M <= 0 || N <= 0) return;
        // few columns, each a contiguous run of K in B, against contiguous rows of A: a dot product per output
        bool narrow = !panelB && N < NR && rsB == 1 && csA == 1 && K >= 64 && Vector512.IsHardwareAccelerated;
        bool packed = K > 0 && alpha != 0f && ((long)M * N * K >= 32768 || panelB) && !narrow;
        // beta = 0 on the packed path: the first KC slab stores its tiles instead of adding them, so C is
        // neither cleared nor read first
        if (beta != 1f && !(packed && beta == 0f))
            for (int i = 0; i < M; i++)
            {
                var row = new Span<float>(C + i * ldc, N);
                if (beta == 0f) row.Clear(); else System.Numerics.Tensors.TensorPrimitives.Multiply(row, beta, row);
            }
        if (K <= 0 || alpha == 0f) return;
        // Tiny products (attention heads, 21-class heads): a direct loop beats packing.
        if (!packed)
        {
            if (narrow) Narrow(M, N, K, alpha, A, rsA, B, csB, C, ldc, (long)M * N * K >= SerialMin ? threads : 1);
            else Small(M, N, K, alpha, A, rsA, csA, B, rsB, csB, C, ldc);
            return;
        }

        int nPanels = (N + NR - 1) / NR;
        float* bp = panelB ? null : PanelBuffer((long)nPanels * KC * NR);
        var (mc, nc) = Blocks(M, N, threads);
        int mBlocks = (M + mc - 1) / mc, nBlocks = (N + nc - 1) / nc, tasks = mBlocks * nBlocks;
        for (int pc = 0; pc < K; pc += KC)
        {
            int kc = Math.Min(KC, K - pc);
            float* bsrc = B + pc * rsB;
            float* asrc = A + pc * csA;
            if (panelB) bp = B + (long)pc * N;
            else CpuPool.For(nPanels, jp => PackB(kc, bsrc, rsB, csB, jp * NR, Math.Min(NR, N - jp * NR),
                bp + (long)jp * kc * NR), threads);
            bool store = pc == 0 && beta == 0f;
            CpuPool.For(tasks, t => Task(t, nBlocks, mc, nc, kc, asrc, rsA, csA, bp, C, ldc, M, N, alpha, store),
                threads);
        }
    }

    // The packed-B buffer of the calling thread, kept and grown, never freed per call: fresh pages cost a
    // page fault each, which on virtualized hosts took more time than the packing (perf: clear_page, memset).
    [ThreadStatic] static float* tlsB;
    [ThreadStatic] static long tlsBLength;

    static float* PanelBuffer(long floats)
    {
        if (floats > tlsBLength)
        {
            if (tlsB != null) NativeMemory.AlignedFree(tlsB);
            tlsB = (float*)NativeMemory.AlignedAlloc((nuint)(floats * 4), 64);
            tlsBLength = floats;
        }
        return tlsB;
    }

    /// Rows and columns per task. With at least 2 row blocks per thread, tasks span all of N and the row
    /// blocks are evened out to a multiple of the thread count (at most MC rows, a multiple of MR).
    /// Otherwise (a short M: a conv weight gradient's 3 Cin rows at small widths, the CLIP tower's 273
    /// token rows) the row blocks are evened out and N is cut into enough column blocks (whole panels, at
    /// most NCT wide) for 2 tasks per thread: one 128-row block with NCT columns ran on one core. Each C
    /// value still sums its K in the same order, so the product is bitwise the same.
    public static (int mc, int nc) Blocks(int M, int N, int threads)
    {
        int mBlocks = (M + MC - 1) / MC;
        if (mBlocks < 2 * threads)
        {
            int rows = ((M + mBlocks - 1) / mBlocks + MR - 1) / MR * MR;
            int panels = (N + NR - 1) / NR, colBlocks = (2 * threads + mBlocks - 1) / mBlocks;
            int per = Math.Clamp((panels + colBlocks - 1) / colBlocks, 1, NCT / NR);
            return (rows, per * NR);
        }
        int want = (mBlocks + threads - 1) / threads * threads;
        int mc = ((M + want - 1) / want + MR - 1) / MR * MR;
        return (Math.Min(MC, mc), (N + NR - 1) / NR * NR);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Task(int t, int nBlocks, int mcb, int ncb, int kc, float* A, long rsA, long csA, float* bp, float* C,
        long ldc, int M, int N, float alpha, bool store)
    {
        int ib = t / nBlocks, jb = t % nBlocks;
        int ic = ib * mcb, mc = Math.Min(mcb, M - ic);
        int jc = jb * ncb, nc = Math.Min(ncb, N - jc);
        if (tlsA == null) tlsA = (float*)NativeMemory.AlignedAlloc((nuint)(MC * KC * 4), 64);
        float* ap = tlsA;
        float* tile = stackalloc float[MR * NR];
        for (int ir = 0; ir < mc; ir += MR)
            PackA(kc, A + (ic + ir) * rsA, rsA, csA, Math.Min(MR, mc - ir), ap + ir * kc);
        for (int jr = 0; jr < nc; jr += NR)
        {
            int j = jc + jr, nr = Math.Min(NR, N - j);
            float* b = bp + (long)(j / NR) * kc * NR;
            for (int ir = 0; ir < mc; ir += MR)
            {
                int mr = Math.Min(MR, mc - ir);
                float* c = C + (ic + ir) * ldc + j;
                if (Avx512F.IsSupported && !Vector256Only) Kernel512(kc, ap + ir * kc, b, c, ldc, mr, tile);
                else if (Fma.IsSupported)
                {
                    Kernel256(kc, ap + ir * kc, b, tile, 0);
                    Kernel256(kc, ap + ir * kc, b, tile, 4);
                }
                else Kernel256NoFma(kc, ap + ir * kc, b, tile);
                Update(tile, c, ldc, alpha, mr, nr, store);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void PackA(int kc, float* a, long rs, long cs, int mr, float* dst)
    {
        if (mr == MR && cs == 1 && Avx.IsSupported)
        {
            PackRows8(kc, a, rs, dst, MR);
            return;
        }
        if (mr == MR && rs == 1 && Avx.IsSupported)
        {   // a transposed A (a conv's weight gradient: A = the padded input, columns are time steps): the 8
            // rows' values of each column are contiguous. Read one column at a time, not one row along its
            // stride (Cin floats, a multiple of 4 KB apart: every read in one L1 set)
            for (int p = 0; p < kc; p++) Vector256.Store(Vector256.Load(a + p * cs), dst + p * MR);
            return;
        }
        if (mr < MR) new Span<float>(dst, kc * MR).Clear();
        for (int r = 0; r < mr; r++)
        {
            float* src = a + r * rs;
            if (cs == 1) for (int p = 0; p < kc; p++) dst[p * MR + r] = src[p];
            else for (int p = 0; p < kc; p++) dst[p * MR + r] = src[p * cs];
        }
    }

    /// dst[p*ds + r] = a[r*rs + p] for 8 row-major rows: 8x8 blocks transposed in registers (unpack,
    /// shuffle, 128-bit permute), so rows are read 32 bytes at a time instead of one float per row.
    /// ds = MR packs an A micro-panel; ds = NR packs 8 columns of a B panel from a transposed B.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void PackRows8(int kc, float* a, long rs, float* dst, int ds)
    {
        int p = 0;
        for (; p + 8 <= kc; p += 8)
        {
            float* s = a + p;
            var r0 = Vector256.Load(s);
            var r1 = Vector256.Load(s + rs);
            var r2 = Vector256.Load(s + 2 * rs);
            var r3 = Vector256.Load(s + 3 * rs);
            var r4 = Vector256.Load(s + 4 * rs);
            var r5 = Vector256.Load(s + 5 * rs);
            var r6 = Vector256.Load(s + 6 * rs);
            var r7 = Vector256.Load(s + 7 * rs);
            var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1); var t2 = Avx.UnpackLow(r2,
                r3); var t3 = Avx.UnpackHigh(r2, r3);
            var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5); var t6 = Avx.UnpackLow(r6,
                r7); var t7 = Avx.UnpackHigh(r6, r7);
            var u0 = Avx.Shuffle(t0, t2, 0x44); var u1 = Avx.Shuffle(t0, t2, 0xEE); var u2 = Avx.Shuffle(t1, t3,
                0x44); var u3 = Avx.Shuffle(t1, t3, 0xEE);
            var u4 = Avx.Shuffle(t4, t6, 0x44); var u5 = Avx.Shuffle(t4, t6, 0xEE); var u6 = Avx.Shuffle(t5, t7,
                0x44); var u7 = Avx.Shuffle(t5, t7, 0xEE);
            float* d = dst + p * ds;
            Vector256.Store(Avx.Permute2x128(u0, u4, 0x20), d);
            Vector256.Store(Avx.Permute2x128(u1, u5, 0x20), d + ds);
            Vector256.Store(Avx.Permute2x128(u2, u6, 0x20), d + 2 * ds); Vector256.Store(Avx.Permute2x128(u3, u7,
                0x20), d + 3 * ds);
            Vector256.Store(Avx.Permute2x128(u0, u4, 0x31), d + 4 * ds); Vector256.Store(Avx.Permute2x128(u1, u5,
                0x31), d + 5 * ds);
            Vector256.Store(Avx.Permute2x128(u2, u6, 0x31), d + 6 * ds); Vector256.Store(Avx.Permute2x128(u3, u7,
                0x31), d + 7 * ds);
        }
        for (; p < kc; p++) for (int r = 0; r < 8; r++) dst[p * ds + r] = a[r * rs + p];
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void PackB(int kc, float* b, long rs, long cs, int j0, int nr, float* dst)
    {
        if (rs == 1 && nr == NR && Avx.IsSupported)
        {   // a transposed B (a Linear's weight): its columns are contiguous rows, packed 8 at a time
            for (int q = 0; q < NR; q += 8) PackRows8(kc, b + (j0 + q) * cs, cs, dst + q, NR);
            return;
        }
        for (int p = 0; p < kc; p++)
        {
            float* src = b + p * rs + j0 * cs;
            float* d = dst + p * NR;
            if (cs == 1 && nr == NR)
            {
                Vector512.Store(Vector512.Load(src), d);
                Vector512.Store(Vector512.Load(src + 16), d + 16);
            }
            else
            {
                for (int j = 0; j < nr; j++) d[j] = src[j * cs];
                for (int j = nr; j < NR; j++) d[j] = 0f;
            }
        }
    }

    /// tile (MR x NR) = the kc-deep product of an A and a B micro-panel. The kernel ends in plain stores:
    /// with the C update (and its edge call) in the same method, the JIT without PGO data (TieredPGO off,
    /// tiering off, or an AOT build) spilled all 16 accumulators to the stack on every k step: with
    /// DOTNET_TieredPGO=0, `pvlr bench --preset paper --only infer` took 25.1 and 26.8 s, now 11.0 and 10.8 s.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Kernel512(int kc, float* a, float* b, float* c, long ldc, int mr, float* t)
    {
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default,
                         c40 = default, c41 = default, c50 = default, c51 = default, c60 = default, c61 = default,
                             c70 = default, c71 = default;
        // C is needed only after the k loop
        for (int r = 0; r < mr; r++)
        {
            Sse.Prefetch0(c + r * ldc);
            Sse.Prefetch0(c + r * ldc + 16);
        }
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var a0 = Vector512.Create(a[0]); c00 = Avx512F.FusedMultiplyAdd(a0, b0,
                c00); c01 = Avx512F.FusedMultiplyAdd(a0, b1, c01);
            var a1 = Vector512.Create(a[1]); c10 = Avx512F.FusedMultiplyAdd(a1, b0,
                c10); c11 = Avx512F.FusedMultiplyAdd(a1, b1, c11);
            var a2 = Vector512.Create(a[2]); c20 = Avx512F.FusedMultiplyAdd(a2, b0,
                c20); c21 = Avx512F.FusedMultiplyAdd(a2, b1, c21);
            var a3 = Vector512.Create(a[3]); c30 = Avx512F.FusedMultiplyAdd(a3, b0,
                c30); c31 = Avx512F.FusedMultiplyAdd(a3, b1, c31);
            var a4 = Vector512.Create(a[4]); c40 = Avx512F.FusedMultiplyAdd(a4, b0,
                c40); c41 = Avx512F.FusedMultiplyAdd(a4, b1, c41);
            var a5 = Vector512.Create(a[5]); c50 = Avx512F.FusedMultiplyAdd(a5, b0,
                c50); c51 = Avx512F.FusedMultiplyAdd(a5, b1, c51);
            var a6 = Vector512.Create(a[6]); c60 = Avx512F.FusedMultiplyAdd(a6, b0,
                c60); c61 = Avx512F.FusedMultiplyAdd(a6, b1, c61);
            var a7 = Vector512.Create(a[7]); c70 = Avx512F.FusedMultiplyAdd(a7, b0,
                c70); c71 = Avx512F.FusedMultiplyAdd(a7, b1, c71);
            a += MR;
            b += NR;
        }
        Vector512.Store(c00, t); Vector512.Store(c01, t + 16); Vector512.Store(c10, t + 32); Vector512.Store(c11,
            t + 48);
        Vector512.Store(c20, t + 64); Vector512.Store(c21, t + 80); Vector512.Store(c30, t + 96); Vector512.Store(c31,
            t + 112);
        Vector512.Store(c40, t + 128); Vector512.Store(c41, t + 144); Vector512.Store(c50,
            t + 160); Vector512.Store(c51, t + 176);
        Vector512.Store(c60, t + 192); Vector512.Store(c61, t + 208); Vector512.Store(c70,
            t + 224); Vector512.Store(c71, t + 240);
    }

    /// C (mr x nr) += alpha * tile, or C = alpha * tile (`store`: the first slab of a beta = 0 product):
    /// 16 vector ops for a full tile (32 with Vector256), a scalar loop at the edges.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Update(float* t, float* c, long ldc, float alpha, int mr, int nr, bool store)
    {
        if (mr == MR && nr == NR && Vector512.IsHardwareAccelerated)
        {
            var al = Vector512.Create(alpha);
            if (store)
                for (int r = 0; r < MR; r++, c += ldc, t += NR)
                {
                    Vector512.Store(Vector512.Load(t) * al, c);
                    Vector512.Store(Vector512.Load(t + 16) * al, c + 16);
                }
            else
                for (int r = 0; r < MR; r++, c += ldc, t += NR)
                {
                    Vector512.Store(Vector512.FusedMultiplyAdd(Vector512.Load(t), al, Vector512.Load(c)), c);
                    Vector512.Store(Vector512.FusedMultiplyAdd(Vector512.Load(t + 16), al, Vector512.Load(c + 16)),
                        c + 16);
                }
            return;
        }
        if (mr == MR && nr == NR && Vector256.IsHardwareAccelerated)
        {
            var al = Vector256.Create(alpha);
            for (int r = 0; r < MR; r++, c += ldc, t += NR)
                for (int q = 0; q < NR; q += 8)
                    Vector256.Store(store ? Vector256.Load(t
                + q) * al : Vector256.FusedMultiplyAdd(Vector256.Load(t + q), al, Vector256.Load(c + q)), c + q);
            return;
        }
        for (int r = 0; r < mr; r++)
            for (int j = 0; j < nr; j++) c[r * ldc + j] = (store ? 0f : c[r * ldc + j]) + alpha * t[r * NR + j];
    }

    /// Rows r0..r0+3 of the tile, in two 4 x 16 blocks (left and right half of the panel): per k step two
    /// B loads and four broadcasts feed 8 FMAs, and the 8 accumulators stay in registers. Ends in plain
    /// stores, as Kernel512 does.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Kernel256(int kc, float* a, float* b, float* t, int r0)
    {
        for (int h = 0; h < NR; h += 16)
        {
            Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
                c30 = default, c31 = default;
            float* ap = a + r0, bp = b + h;
            for (int p = 0; p < kc; p++)
            {
                var b0 = Vector256.Load(bp);
                var b1 = Vector256.Load(bp + 8);
                var a0 = Vector256.Create(ap[0]); c00 = Fma.MultiplyAdd(a0, b0, c00); c01 = Fma.MultiplyAdd(a0, b1,
                    c01);
                var a1 = Vector256.Create(ap[1]); c10 = Fma.MultiplyAdd(a1, b0, c10); c11 = Fma.MultiplyAdd(a1, b1,
                    c11);
                var a2 = Vector256.Create(ap[2]); c20 = Fma.MultiplyAdd(a2, b0, c20); c21 = Fma.MultiplyAdd(a2, b1,
                    c21);
                var a3 = Vector256.Create(ap[3]); c30 = Fma.MultiplyAdd(a3, b0, c30); c31 = Fma.MultiplyAdd(a3, b1,
                    c31);
                ap += MR;
                bp += NR;
            }
            float* d = t + r0 * NR + h;
            Vector256.Store(c00, d); Vector256.Store(c01, d + 8); Vector256.Store(c10, d + NR); Vector256.Store(c11,
                d + NR + 8);
            Vector256.Store(c20, d + 2 * NR); Vector256.Store(c21, d + 2 * NR + 8); Vector256.Store(c30,
                d + 3 * NR); Vector256.Store(c31, d + 3 * NR + 8);
        }
    }

    // Without FMA (AVX only): the same packed panels, two 16-column halves of 8x16 each.
    static void Kernel256NoFma(int kc, float* a, float* b, float* t)
    {
        var acc = stackalloc Vector256<float>[16];
        for (int h = 0; h < 2; h++)
        {
            for (int q = 0; q < 16; q++) acc[q] = default;
            float* ap = a, bp = b + h * 16;
            for (int p = 0; p < kc; p++)
            {
                var b0 = Vector256.Load(bp);
                var b1 = Vector256.Load(bp + 8);
                for (int r = 0; r < MR; r++)
                {
                    var av = Vector256.Create(ap[r]);
                    acc[2 * r] = Vector256.Add(acc[2 * r], Vector256.Multiply(av, b0));
                    acc[2 * r + 1] = Vector256.Add(acc[2 * r + 1], Vector256.Multiply(av, b1));
                }
                ap += MR;
                bp += NR;
            }
            for (int r = 0; r < MR; r++)
            {
                Vector256.Store(acc[2 * r], t + r * NR + h * 16);
                Vector256.Store(acc[2 * r + 1], t + r * NR + h * 16 + 8);
            }
        }
    }

    /// C[i, j] += alpha * <row i of A, column j of B> for N < NR columns, each contiguous in B, and contiguous
    /// rows of A (the per-video attention weights tau, the test-time cosine CAS, a 1-output conv): packing
    /// would pad N to a 32-column panel and copy all of A, where this reads A once. Four columns at a time
    /// share each 16-float load of A; every sum runs in the same order whatever the thread count.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Narrow(int M, int N, int K, float alpha, float* A, long rsA, float* B, long csB, float* C, long ldc,
        int threads)
    {
        int chunks = threads == 1 ? 1 : Math.Min(M, 4 * threads), per = (M + chunks - 1) / chunks;
        CpuPool.For(chunks, ch =>
        {
            for (int i = ch * per, end = Math.Min(M, i + per); i < end; i++)
            {
                float* a = A + i * rsA;
                for (int j = 0; j < N; j += 4)
                {
                    int w = Math.Min(4, N - j);
                    float* b0 = B + j * csB, b1 = B + Math.Min(j + 1, N - 1) * csB, b2 = B + Math.Min(j + 2,
                        N - 1) * csB, b3 = B + Math.Min(j + 3,
                        N - 1) * csB;   // past N: the last column again, its sums unused
                    Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
                    int p = 0;
                    for (; p + 16 <= K; p += 16)
                    {
                        var x = Vector512.Load(a + p);
                        s0 = Vector512.FusedMultiplyAdd(x, Vector512.Load(b0 + p),
                            s0); s1 = Vector512.FusedMultiplyAdd(x, Vector512.Load(b1 + p), s1);
                        s2 = Vector512.FusedMultiplyAdd(x, Vector512.Load(b2 + p),
                            s2); s3 = Vector512.FusedMultiplyAdd(x, Vector512.Load(b3 + p), s3);
                    }
                    float t0 = Vector512.Sum(s0), t1 = Vector512.Sum(s1), t2 = Vector512.Sum(s2),
                        t3 = Vector512.Sum(s3);
                    for (; p < K; p++)
                    {
                        t0 += a[p] * b0[p];
                        t1 += a[p] * b1[p];
                        t2 += a[p] * b2[p];
                        t3 += a[p] * b3[p];
                    }
                    float* c = C + i * ldc + j;
                    c[0] += alpha * t0;
                    if (w > 1) c[1] += alpha * t1;
                    if (w > 2) c[2] += alpha * t2;
                    if (w > 3) c[3] += alpha * t3;
                }
            }
        }, threads);
    }

    static void Small(int M, int N, int K, float alpha, float* A, long rsA, long csA, float* B, long rsB, long csB,
        float* C, long ldc)
    {
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
            {
                float s = 0f;
                for (int p = 0; p < K; p++) s += A[i * rsA + p * csA] * B[p * rsB + j * csB];
                C[i * ldc + j] += alpha * s;
            }
    }
}
