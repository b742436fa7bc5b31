// LayerNorm over the last axis of (Rows, N): y = (x - mean) * rstd * gamma + beta, eps 1e-5,
// biased variance (as torch). Forward saves mean and rstd per row for the backward.
using ILGPU;
using ILGPU.Algorithms;

namespace PvlrKernels.Kernels;

public struct LayerNormFwd<TMem> : IKernel where TMem : struct, IMem
{
    public TMem Y, Mean, Rstd, X, Gamma, Beta;
    public int N;
    public float Eps;
    public void Execute(int r)
    {
        int b = r * N;
        float m = 0f;
        for (int n = 0; n < N; n++) m += X[b + n];
        m /= N;
        float v = 0f;
        for (int n = 0; n < N; n++)
        {
            float d = X[b + n] - m;
            v += d * d;
        }
        float rs = 1f / XMath.Sqrt(v / N + Eps);
        for (int n = 0; n < N; n++) Y[b + n] = (X[b + n] - m) * rs * Gamma[n] + Beta[n];
        Mean[r] = m;
        Rstd[r] = rs;
    }
}
/// dx += rstd * (g - mean(g) - xhat * mean(g * xhat)),  g = dy * gamma.  One thread per row.
public struct LayerNormBwdX<TMem> : IKernel where TMem : struct, IMem
{
    public TMem DX, DY, X, Gamma, Mean, Rstd;
    public int N;
    public void Execute(int r)
    {
        int b = r * N;
        float m = Mean[r], rs = Rstd[r];
        float sg = 0f, sgx = 0f;
        for (int n = 0; n < N; n++)
        {
            float g = DY[b + n] * Gamma[n], xh = (X[b + n] - m) * rs;
            sg += g;
            sgx += g * xh;
        }
        sg /= N;
        sgx /= N;
        for (int n = 0; n < N; n++)
        {
            float g = DY[b + n] * Gamma[n], xh = (X[b + n] - m) * rs;
            DX[b + n] = DX[b + n] + rs * (g - sg - xh * sgx);
        }
    }
}
/// dgamma[n] += sum_r dy * xhat, dbeta[n] += sum_r dy.  One thread per column.
public struct LayerNormBwdParams<TMem> : IKernel where TMem : struct, IMem
{
    public TMem DGamma, DBeta, DY, X, Mean, Rstd;
    public int N, Rows;
    public void Execute(int n)
    {
        float sg = 0f, sb = 0f;
        for (int r = 0; r < Rows; r++)
        {
            float dy = DY[r * N + n];
            sg += dy * (X[r * N + n] - Mean[r]) * Rstd[r];
            sb += dy;
        }
        DGamma[n] = DGamma[n] + sg;
        DBeta[n] = DBeta[n] + sb;
    }
}

/// One warp per row for long rows on a GPU: the forward and the input gradient of LayerNormFwd /
/// LayerNormBwdX with the row's sums gathered by the lanes and combined by shuffles.
public static class LayerNormWarp
{
    public static void Forward(ArrayView<float> y, ArrayView<float> mean, ArrayView<float> rstd, ArrayView<float> x,
        ArrayView<float> gamma, ArrayView<float> beta, int rows, int n, float eps)
    {
        int row = WarpReduce.Row;
        if (row >= rows) return;                      // uniform across the warp
        int lane = Group.IdxX, w = Group.DimX;
        long b = (long)row * n;
        float m = 0f;
        for (int i = lane; i < n; i += w) m += x[b + i];
        m = WarpReduce.Sum(m, w) / n;
        float v = 0f;
        for (int i = lane; i < n; i += w)
        {
            float d = x[b + i] - m;
            v += d * d;
        }
        float rs = 1f / XMath.Sqrt(WarpReduce.Sum(v, w) / n + eps);
        for (int i = lane; i < n; i += w) y[b + i] = (x[b + i] - m) * rs * gamma[i] + beta[i];
        if (lane == 0)
        {
            mean[row] = m;
            rstd[row] = rs;
        }
    }

    public static void BackwardX(ArrayView<float> dx, ArrayView<float> dy, ArrayView<float> x, ArrayView<float> gamma,
        ArrayView<float> mean, ArrayView<float> rstd, int rows, int n)
    {
        int row = WarpReduce.Row;
        if (row >= rows) return;
        int lane = Group.IdxX, w = Group.DimX;
        long b = (long)row * n;
        float m = mean[row], rs = rstd[row], sg = 0f, sgx = 0f;
        for (int i = lane; i < n; i += w)
        {
            float g = dy[b + i] * gamma[i], xh = (x[b + i] - m) * rs;
            sg += g;
            sgx += g * xh;
        }
        sg = WarpReduce.Sum(sg, w) / n;
        sgx = WarpReduce.Sum(sgx, w) / n;
        for (int i = lane; i < n; i += w)
        {
            float g = dy[b + i] * gamma[i], xh = (x[b + i] - m) * rs;
            dx[b + i] = dx[b + i] + rs * (g - sg - xh * sgx);
        }
    }
}
