// y = x / max(||x||_2, eps) along the middle axis of [Outer, N, Inner] (F.normalize; eps = 0 gives
// PVLR's unguarded division). Saves the raw norm per (o, j).
using ILGPU;
using ILGPU.Algorithms;

namespace PvlrKernels.Kernels;

public struct L2NormFwd<TMem> : IKernel where TMem : struct, IMem
{
    public TMem Y, Norm, X;
    public int N, Inner;
    public float Eps;
    public void Execute(int i)
    {
        int o = i / Inner, j = i - o * Inner, b = o * N * Inner + j;
        float s = 0f;
        for (int n = 0; n < N; n++)
        {
            float v = X[b + n * Inner];
            s += v * v;
        }
        float nr = XMath.Sqrt(s), d = XMath.Max(nr, Eps);
        for (int n = 0; n < N; n++) Y[b + n * Inner] = X[b + n * Inner] / d;
        Norm[i] = nr;
    }
}
/// dx += (dy - y <y, dy>) / norm   if norm > eps,   else dy / eps.
public struct L2NormBwd<TMem> : IKernel where TMem : struct, IMem
{
    public TMem DX, DY, Y, Norm;
    public int N, Inner;
    public float Eps;
    public void Execute(int i)
    {
        int o = i / Inner, j = i - o * Inner, b = o * N * Inner + j;
        float nr = Norm[i];
        if (nr > Eps)
        {
            float s = 0f;
            for (int n = 0; n < N; n++) s += Y[b + n * Inner] * DY[b + n * Inner];
            for (int n = 0; n < N; n++)
            {
                int a = b + n * Inner;
                DX[a] = DX[a] + (DY[a] - Y[a] * s) / nr;
            }
        }
        else
            for (int n = 0; n < N; n++)
            {
                int a = b + n * Inner;
                DX[a] = DX[a] + DY[a] / Eps;
            }
    }
}

/// The forward over contiguous rows (Inner = 1) on a GPU: one warp per row, lanes striding the row
/// (coalesced), a butterfly shuffle for the sum of squares. L2NormFwd gives one thread a whole row,
/// which leaves a GPU latency-bound on a few hundred rows of 1024. Group (warp size, rows per group).
public static class L2NormWarp
{
    public static void Rows(ArrayView<float> y, ArrayView<float> norm, ArrayView<float> x, int rows, int n, float eps)
    {
        int row = WarpReduce.Row;
        if (row >= rows) return;                      // uniform across the warp
        int lane = Group.IdxX, w = Group.DimX;
        long b = (long)row * n;
        float s = 0f;
        for (int i = lane; i < n; i += w)
        {
            float v = x[b + i];
            s += v * v;
        }
        s = WarpReduce.Sum(s, w);
        float nr = XMath.Sqrt(s), d = XMath.Max(nr, eps);
        for (int i = lane; i < n; i += w) y[b + i] = x[b + i] / d;
        if (lane == 0) norm[row] = nr;
    }
}
