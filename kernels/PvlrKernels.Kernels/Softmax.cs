// Softmax and log-softmax along the middle axis of [Outer, N, Inner]; one thread per (o, j).
// Max-subtracted for stability.
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
