// Batched GEMM  C[b] = alpha * A[b] B[b] + beta * C[b],  A (M,K), B (K,N), C (M,N) row stride Ldc.
// A and B are general strided views (row stride, column stride), which covers NN, NT, TN and the
// overlapping-row view that turns a k=3 Conv1d over time-major padded input into one GEMM.
using ILGPU;
using ILGPU.Runtime;

namespace PvlrKernels.Kernels;

public struct GemmParams
{
    public int Batch, M, N, K;
    public int BatchA, RsA, CsA, BatchB, RsB, CsB, BatchC, Ldc;
    public float Alpha, Beta;
}

public interface ITile { static abstract int Size { get; } }
public struct Tile4 : ITile { public static int Size => 4; }
public struct Tile16 : ITile { public static int Size => 16; }

public static class GemmKernels
{
    /// Shared-memory tiled GEMM: group (T, T), grid (ceil(N/T), ceil(M/T), Batch).
    public static void Tiled<TTile>(GemmParams p, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c)
        where TTile : struct, ITile
    {
        int t = TTile.Size;
        var As = SharedMemory.Allocate<float>(TTile.Size * TTile.Size);
        var Bs = SharedMemory.Allocate<float>(TTile.Size * TTile.Size);
        int tx = Group.IdxX, ty = Group.IdxY, bt = Grid.IdxZ;
        int row = Grid.IdxY * t + ty, col = Grid.IdxX * t + tx;
        int ao = bt * p.BatchA, bo = bt * p.BatchB;
        float acc = 0f;
        for (int k0 = 0; k0 < p.K; k0 += t)
        {
            int ka = k0 + tx, kb = k0 + ty;
            As[ty * t + tx] = row < p.M && ka < p.K ? a[ao + row * p.RsA + ka * p.CsA] : 0f;
            Bs[ty * t + tx] = kb < p.K && col < p.N ? b[bo + kb * p.RsB + col * p.CsB] : 0f;
            Group.Barrier();
            for (int k = 0; k < t; k++) acc += As[ty * t + k] * Bs[k * t + tx];
            Group.Barrier();
        }
        if (row < p.M && col < p.N)
        {
            int ci = bt * p.BatchC + row * p.Ldc + col;
            c[ci] = p.Beta == 0f ? p.Alpha * acc : p.Alpha * acc + p.Beta * c[ci];
        }
    }
}
