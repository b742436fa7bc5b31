// Reductions along one axis of a tensor viewed as [Outer, N, Inner] (contiguous), top-k index
// selection, and gather/scatter along that axis. Indices are stored as float (exact below 2^24).
using ILGPU;
using ILGPU.Algorithms;

namespace PvlrKernels.Kernels;

public static class ReduceMode { public const int Sum = 0, Max = 1, Min = 2; }

/// y[o, j] (+)= Scale * sum_n x[o, n, j]   (Mode Sum), or max/min with the arg index in Idx.
/// Ties in max/min go to the lowest index, as torch.min/max on CPU.
public struct ReduceAxis<TMem> : IKernel where TMem : struct, IMem
{
    public TMem Y, X, Idx;
    public int N, Inner, Mode, Accumulate, WriteIdx;
    public float Scale;
    public void Execute(int i)
    {
        int o = i / Inner, j = i - o * Inner, b = o * N * Inner + j;
        if (Mode == ReduceMode.Sum)
        {
            float s = 0f;
            for (int n = 0; n < N; n++) s += X[b + n * Inner];
            s *= Scale;
            Y[i] = Accumulate != 0 ? Y[i] + s : s;
            return;
        }
        float best = X[b];
        int bi = 0;
        for (int n = 1; n < N; n++)
        {
            float v = X[b + n * Inner];
            if (Mode == ReduceMode.Max ? v > best : v < best)
            {
                best = v;
                bi = n;
            }
        }
        Y[i] = best;
        if (WriteIdx != 0) Idx[i] = bi;
    }
}

/// Sums of contiguous rows (Inner = 1) one warp per row, for long rows on a GPU: y[r] (+)= Scale * sum x[r, :],
/// the lanes striding the row (coalesced loads) and combining by shuffles (ReduceAxis's Sum mode).
public static class ReduceWarp
{
    public static void SumRows(ArrayView<float> y, ArrayView<float> x, int rows, int n, float scale, int accumulate)
    {
        int row = WarpReduce.Row;
        if (row >= rows) return;                      // uniform across the warp
        int lane = Group.IdxX, w = Group.DimX;
        long b = (long)row * n;
        float s = 0f;
        for (int i = lane; i < n; i += w) s += x[b + i];
        s = WarpReduce.Sum(s, w) * scale;
        if (lane == 0) y[row] = accumulate != 0 ? y[row] + s : s;
    }

    /// ReduceAxis's Max and Min modes over contiguous rows, value and (with writeIdx) index: the serial
    /// body keeps the first value and replaces it only by a strictly greater (smaller) one, so the row's
    /// answer is its first value where that is NaN, else the largest (smallest) non-NaN value at its lowest
    /// index.
    public static void ExtremeRows(ArrayView<float> y, ArrayView<float> idx, ArrayView<float> x, int rows, int n,
        int mode, int writeIdx)
    {
        int row = WarpReduce.Row;
        if (row >= rows) return;
        int lane = Group.IdxX, w = Group.DimX;
        long b = (long)row * n;
        float sign = mode == ReduceMode.Max ? 1f : -1f;
        int bestI = -1;
        float bestV = 0f;
        for (int i = lane; i < n; i += w)
        {
            float v = sign * x[b + i];
            if (!float.IsNaN(v) && (bestI < 0 || v > bestV))
            {
                bestI = i;
                bestV = v;
            }
        }
        (bestI, bestV) = WarpReduce.ArgMax(bestI, bestV, w);
        if (lane != 0) return;
        float first = x[b];
        bool nanFirst = float.IsNaN(first) || bestI < 0;
        y[row] = nanFirst ? first : sign * bestV;
        if (writeIdx != 0) idx[row] = nanFirst ? 0 : bestI;
    }
}

/// Idx[o, m, j] = index of the m-th largest (Largest=1) or smallest x[o, :, j].
/// Order: by value, then by LOWER index first among equal values (a stable sort). O(N*K) per column,
/// no scratch: the m-th pick is the best element strictly after the (m-1)-th pick in that order.
public struct ArgTopK<TMem> : IKernel where TMem : struct, IMem
{
    public TMem Idx, X;
    public int N, Inner, K, Largest;
    public void Execute(int i)
    {
        int o = i / Inner, j = i - o * Inner, b = o * N * Inner + j;
        float sign = Largest != 0 ? 1f : -1f;
        float prevV = 0f;
        int prevI = -1;
        for (int m = 0; m < K; m++)
        {
            float bestV = 0f;
            int bestI = -1;
            for (int n = 0; n < N; n++)
            {
                float v = sign * X[b + n * Inner];
                bool after = prevI < 0 || v < prevV || (v == prevV && n > prevI);
                if (after && (bestI < 0 || v > bestV))
                {
                    bestV = v;
                    bestI = n;
                }
            }
            Idx[(o * K + m) * Inner + j] = bestI;
            prevV = bestV;
            prevI = bestI;
        }
    }
}

/// ArgTopK one warp per (o, j) column for long columns on a GPU, with the one-thread body's picks to the
/// index, NaN included. The body takes, per pick, the first candidate after the previous pick in its order
/// and then any later candidate strictly greater: so the pick is that first candidate where it is NaN
/// (nothing compares greater), else the largest non-NaN candidate, the lowest index among equals. The lanes
/// find both over their strided share of the column and combine them by shuffles.
public static class ArgTopKWarp
{
    public static void Columns(ArrayView<float> idx, ArrayView<float> x, int outer, int n, int inner, int k,
        int largest)
    {
        int col = WarpReduce.Row;
        if (col >= outer * inner) return;            // uniform across the warp
        int lane = Group.IdxX, w = Group.DimX;
        int o = col / inner, j = col - o * inner;
        long b = (long)o * n * inner + j;
        float sign = largest != 0 ? 1f : -1f, prevV = 0f;
        int prevI = -1;
        for (int m = 0; m < k; m++)
        {
            int firstI = -1, bestI = -1;
            float firstV = 0f, bestV = 0f;
            for (int i = lane; i < n; i += w)
            {
                float v = sign * x[b + (long)i * inner];
                if (!(prevI < 0 || v < prevV || (v == prevV && i > prevI))) continue;
                if (firstI < 0)
                {
                    firstI = i;
                    firstV = v;
                }
                if (!float.IsNaN(v) && (bestI < 0 || v > bestV))
                {
                    bestI = i;
                    bestV = v;
                }
            }
            (firstI, firstV) = WarpReduce.First(firstI, firstV, w);
            (bestI, bestV) = WarpReduce.ArgMax(bestI, bestV, w);
            bool nanFirst = firstI >= 0 && float.IsNaN(firstV);
            int pick = nanFirst ? firstI : bestI;
            float pickV = nanFirst ? firstV : bestV;
            if (lane == 0) idx[((long)o * k + m) * inner + j] = pick;
            prevV = pickV;
            prevI = pick;
        }
    }
}

/// y[o, m, j] = x[o, idx, j]; idx = Idx[o, m, j] (PerInner=1) or Idx[o, m] (PerInner=0).
public struct GatherAxis<TMem> : IKernel where TMem : struct, IMem
{
    public TMem Y, X, Idx;
    public int N, M, Inner, PerInner;
    public void Execute(int i)
    {
        int j = i % Inner, om = i / Inner, o = om / M;
        int n = (int)Idx[PerInner != 0 ? i : om];
        Y[i] = X[(o * N + n) * Inner + j];
    }
}
/// dx[o, idx, j] += dy[o, m, j]: one thread per (o, j) walks m, so repeated indices never race.
public struct ScatterAxis<TMem> : IKernel where TMem : struct, IMem
{
    public TMem DX, DY, Idx;
    public int N, M, Inner, PerInner;
    public void Execute(int i)
    {
        int o = i / Inner, j = i - o * Inner;
        for (int m = 0; m < M; m++)
        {
            int om = o * M + m;
            int n = (int)Idx[PerInner != 0 ? om * Inner + j : om];
            int d = (o * N + n) * Inner + j;
            DX[d] = DX[d] + DY[om * Inner + j];
        }
    }
}
