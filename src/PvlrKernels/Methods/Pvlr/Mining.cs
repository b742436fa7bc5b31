// Easy and hard snippet mining (loss.py:127-174, from CoLA) on the host: the indices are discrete,
// so they are computed from the downloaded attention and then used by Gather on the device.
//
// Tie order. Every "top k" is `scores.sort(descending=True, dim=1)[1][:, :k]` (loss.py:128), and the
// picks depend on how that unstable sort orders equal keys: with the paper's M=3 < m=24 every hard-mining
// score is <= 0 (the sign-inversion quirk, kept as is), so the hard snippets are chosen among many-way
// ties at 0 entirely by the sort; easy mining ties too where dropout zeroed both attention logits
// (sigmoid(0) = 0.5 exactly). `MiningTies.Torch` (the default) takes the order of CPU torch 1.13's
// sort (Util/TorchSort); `MiningTies.Stable` takes equal scores in ascending index order.
//
// Generic over the key width: training mines float32 attention as the original does; a replay dump's
// float64 attention is mined in float64, so its indices can be compared with the dump's.
using System.Numerics;
using PvlrKernels.Util;

using PvlrKernels.Model;

namespace PvlrKernels.Methods.Pvlr;


public static class Mining
{
    /// Row-wise top-k indices of scores (B, T), descending, in the given tie order.
    public static float[] TopK<T>(T[] scores, int b, int t, int k,
        MiningTies ties = MiningTies.Torch) where T : IFloatingPointIeee754<T>
    {
        if (k > t) throw new ArgumentException($"mining: top {k} of {t} snippets");
        var idx = new float[b * k];
        for (int r = 0; r < b; r++)
        {
            int[] order = ties == MiningTies.Torch
                ? TorchSort.DescendingOrder<T>(scores.AsSpan(r * t, t))
                : StableDescending(scores.AsSpan(r * t, t));
            for (int j = 0; j < k; j++) idx[r * k + j] = order[j];
        }
        return idx;
    }

    static int[] StableDescending<T>(ReadOnlySpan<T> row) where T : IFloatingPointIeee754<T>
    {
        var copy = row.ToArray();
        return Enumerable.Range(0, copy.Length).OrderByDescending(i => copy[i]).ToArray();   // LINQ OrderBy is stable
    }

    /// loss.py:134-151: act = a * r, bkg = (max_t a - a) * r with r the dropout-on-ones mask {0, 1/(1-p)}.
    public static (float[] act, float[] bkg) Easy<T>(T[] a, T[] r, int b, int t, int k,
        MiningTies ties = MiningTies.Torch) where T : IFloatingPointIeee754<T>
    {
        var act = new T[b * t];
        var bkg = new T[b * t];
        for (int i = 0; i < b; i++)
        {
            T mx = a[i * t];
            for (int j = 1; j < t; j++) mx = T.Max(mx, a[i * t + j]);
            for (int j = 0; j < t; j++)
            {
                act[i * t + j] = a[i * t + j] * r[i * t + j];
                bkg[i * t + j] = (mx - a[i * t + j]) * r[i * t + j];
            }
        }
        return (TopK(act, b, t, k, ties), TopK(bkg, b, t, k, ties));
    }

    /// loss.py:153-174: inner = a * (E_m - E_M), outer = a * (D_M - D_m) around the median-binarised attention.
    public static (float[] act, float[] bkg) Hard<T>(T[] a, int b, int t, int k, int bigM, int smallM,
        MiningTies ties = MiningTies.Torch) where T : IFloatingPointIeee754<T>
    {
        var inner = new T[b * t];
        var outer = new T[b * t];
        for (int i = 0; i < b; i++)
        {
            var row = a.AsSpan(i * t, t).ToArray();
            T med = Median(row);
            var bin = row.Select(v => v > med).ToArray();
            var eM = Erode(bin, bigM); var em = Erode(bin, smallM); var dM = Dilate(bin, bigM); var dm = Dilate(bin,
                smallM);
            for (int j = 0; j < t; j++)
            {
                inner[i * t + j] = row[j] * T.CreateChecked((em[j] ? 1 : 0) - (eM[j] ? 1 : 0));
                outer[i * t + j] = row[j] * T.CreateChecked((dM[j] ? 1 : 0) - (dm[j] ? 1 : 0));
            }
        }
        return (TopK(inner, b, t, k, ties), TopK(outer, b, t, k, ties));
    }

    /// The four mining sets of loss.py:134-174 (easy_act, easy_bkg, hard_act, hard_bkg) under the config's
    /// k, windows and tie order: what the loss gathers, and what the replay compares with a dump's picks.
    public static Dictionary<string, float[]> All<T>(T[] a, T[] r, PvlrConfig cfg, int b,
        int t) where T : IFloatingPointIeee754<T>
    {
        var (ea, eb) = Easy(a, r, b, t, cfg.KEasy, cfg.MiningTies);
        var (ha, hb) = Hard(a, b, t, cfg.KHard, cfg.BigM, cfg.SmallM, cfg.MiningTies);
        return new() { ["easy_act"] = ea, ["easy_bkg"] = eb, ["hard_act"] = ha, ["hard_bkg"] = hb };
    }

    /// np.median of one row in its own precision: the middle value, or for even T np.mean of the two middle
    /// values, (a + b) / 2 rounded in T (float32 attention gives a float32 median).
    public static T Median<T>(T[] row) where T : IFloatingPointIeee754<T>
    {
        var sorted = (T[])row.Clone();
        Array.Sort(sorted);
        int t = sorted.Length;
        return t % 2 == 1 ? sorted[t / 2] : (sorted[t / 2 - 1] + sorted[t / 2]) / T.CreateChecked(2);
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
