// Softmax and log-softmax along the middle axis of [Outer, N, Inner]; one thread per (o, j).
// Max-subtracted for stability.
using ILGPU;
using ILGPU.Algorithms;

namespace PvlrKernels.Kernels;

public struct SoftmaxFwd<TMem> : IKernel where TMem : struct, IMem
{
    public TMem Y, X;
    public int N, Inner, Log;
    public void Execute(int i)
    {
        int o = i / Inner, j = i - o * Inner, b = o * N * Inner + j;
        float mx = X[b];
        for (int n = 1; n < N; n++) mx = XMath.Max(mx, X[b + n * Inner]);
        float s = 0f;
        for (int n = 0; n < N; n++) s += XMath.Exp(X[b + n * Inner] - mx);
        if (Log != 0)
        {
            float ls = XMath.Log(s) + mx;
            for (int n = 0; n < N; n++) Y[b + n * Inner] = X[b + n * Inner] - ls;
        }
        else
        {
            float inv = 1f / s;
            for (int n = 0; n < N; n++) Y[b + n * Inner] = XMath.Exp(X[b + n * Inner] - mx) * inv;
        }
    }
}
/// softmax: dx = y (dy - sum y dy);  log-softmax: dx = dy - exp(y) sum dy.  Accumulates into dx.
public struct SoftmaxBwd<TMem> : IKernel where TMem : struct, IMem
{
    public TMem DX, Y, DY;
    public int N, Inner, Log;
    public void Execute(int i)
    {
        int o = i / Inner, j = i - o * Inner, b = o * N * Inner + j;
        float s = 0f;
        for (int n = 0; n < N; n++) s += Log != 0 ? DY[b + n * Inner] : Y[b + n * Inner] * DY[b + n * Inner];
        for (int n = 0; n < N; n++)
        {
            int a = b + n * Inner;
            float g = Log != 0 ? DY[a] - XMath.Exp(Y[a]) * s : Y[a] * (DY[a] - s);
            DX[a] = DX[a] + g;
        }
    }
}

/// Contiguous rows (Inner = 1) one warp per row, for long rows on a GPU: the lanes stride the row and
/// combine their max and sums by shuffles; the same formulas as SoftmaxFwd / SoftmaxBwd.
public static class SoftmaxWarp
{
    public static void Forward(ArrayView<float> y, ArrayView<float> x, int rows, int n, int log)
    {
        int row = WarpReduce.Row;
        if (row >= rows) return;                      // uniform across the warp
        int lane = Group.IdxX, w = Group.DimX;
        long b = (long)row * n;
        float mx = float.NegativeInfinity;
        for (int i = lane; i < n; i += w) mx = XMath.Max(mx, x[b + i]);
        mx = WarpReduce.Max(mx, w);
        float s = 0f;
        for (int i = lane; i < n; i += w) s += XMath.Exp(x[b + i] - mx);
        s = WarpReduce.Sum(s, w);
        if (log != 0)
        {
            float ls = XMath.Log(s) + mx;
            for (int i = lane; i < n; i += w) y[b + i] = x[b + i] - ls;
        }
        else
        {
            float inv = 1f / s;
            for (int i = lane; i < n; i += w) y[b + i] = XMath.Exp(x[b + i] - mx) * inv;
        }
    }

    public static void Backward(ArrayView<float> dx, ArrayView<float> y, ArrayView<float> dy, int rows, int n,
        int log)
    {
        int row = WarpReduce.Row;
        if (row >= rows) return;
        int lane = Group.IdxX, w = Group.DimX;
        long b = (long)row * n;
        float s = 0f;
        for (int i = lane; i < n; i += w) s += log != 0 ? dy[b + i] : y[b + i] * dy[b + i];
        s = WarpReduce.Sum(s, w);
        for (int i = lane; i < n; i += w)
        {
            long a = b + i;
            float g = log != 0 ? dy[a] - XMath.Exp(y[a]) * s : y[a] * (dy[a] - s);
            dx[a] = dx[a] + g;
        }
    }
}
