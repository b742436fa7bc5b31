// Easy and hard snippet mining (loss.py:134-174, from CoLA) on the host: the indices are discrete,
// so they are computed from the downloaded attention and then used by Gather on the device.
// Tie-break: every "top k by sort descending" takes equal scores in ascending index order (a stable
// sort). The original's torch.sort is unstable, so on the many-way ties at 0 of the hard mining
// (the M=3 < m=24 sign-inversion quirk, spec §3.2 / §12.1, kept as is) it is implementation-defined.
namespace PvlrKernels.Model;

public static class Mining
{
    /// Row-wise top-k indices of scores (B, T), descending, stable.
    public static float[] TopK(float[] scores, int b, int t, int k)
    {
        var idx = new float[b * k];
        for (int r = 0; r < b; r++)
        {
            var order = Enumerable.Range(0, t).OrderByDescending(i => scores[r * t + i]).ToArray();   // LINQ OrderBy is stable
            for (int j = 0; j < k; j++) idx[r * k + j] = order[j];
        }
        return idx;
    }

    public static (float[] act, float[] bkg) Easy(float[] a, float[] r, int b, int t, int k)
    {
        var act = new float[b * t]; var bkg = new float[b * t];
        for (int i = 0; i < b; i++)
        {
            float mx = float.MinValue; for (int j = 0; j < t; j++) mx = Math.Max(mx, a[i * t + j]);
            for (int j = 0; j < t; j++) { act[i * t + j] = a[i * t + j] * r[i * t + j]; bkg[i * t + j] = (mx - a[i * t + j]) * r[i * t + j]; }
        }
        return (TopK(act, b, t, k), TopK(bkg, b, t, k));
    }

    public static (float[] act, float[] bkg) Hard(float[] a, int b, int t, int k, int bigM, int smallM)
    {
        var inner = new float[b * t]; var outer = new float[b * t];
        for (int i = 0; i < b; i++)
        {
            var row = a.AsSpan(i * t, t).ToArray();
            var sorted = row.OrderBy(v => v).ToArray();
            double med = t % 2 == 1 ? sorted[t / 2] : 0.5 * ((double)sorted[t / 2 - 1] + sorted[t / 2]);
            var bin = row.Select(v => v > med).ToArray();
            var eM = Erode(bin, bigM); var em = Erode(bin, smallM); var dM = Dilate(bin, bigM); var dm = Dilate(bin, smallM);
            for (int j = 0; j < t; j++)
            {
                inner[i * t + j] = row[j] * ((em[j] ? 1 : 0) - (eM[j] ? 1 : 0));
                outer[i * t + j] = row[j] * ((dM[j] ? 1 : 0) - (dm[j] ? 1 : 0));
            }
        }
        return (TopK(inner, b, t, k), TopK(outer, b, t, k));
    }

    /// scipy.ndimage.binary_erosion with ones(k), origin 0, border 0: out[t] = AND in[t-k/2 .. t+k-1-k/2].
    public static bool[] Erode(bool[] x, int k)
    {
        var y = new bool[x.Length];
        for (int t = 0; t < x.Length; t++)
        {
            bool all = true;
            for (int j = t - k / 2; j <= t + k - 1 - k / 2 && all; j++) all = j >= 0 && j < x.Length && x[j];
            y[t] = all;
        }
        return y;
    }

    /// scipy.ndimage.binary_dilation with ones(k): the mirrored window, out[t] = OR in[t-(k-1-k/2) .. t+k/2].
    public static bool[] Dilate(bool[] x, int k)
    {
        var y = new bool[x.Length];
        for (int t = 0; t < x.Length; t++)
        {
            bool any = false;
            for (int j = t - (k - 1 - k / 2); j <= t + k / 2 && !any; j++) any = j >= 0 && j < x.Length && x[j];
            y[t] = any;
        }
        return y;
    }
}
