// Butterfly reductions across one warp: after the loop every lane holds the whole warp's result. Used by
// the one-warp-per-row forms of the row kernels (L2NormWarp, SoftmaxWarp, LayerNormWarp), whose lanes
// stride a row and then combine what each lane gathered.
using ILGPU;
using ILGPU.Algorithms;

namespace PvlrKernels.Kernels;

public static class WarpReduce
{
    /// The sum over a warp of `width` lanes (the launch's group width, a power of two).
    public static float Sum(float v, int width)
    {
        for (int off = width / 2; off > 0; off /= 2) v += Warp.ShuffleXor(v, off);
        return v;
    }

    public static float Max(float v, int width)
    {
        for (int off = width / 2; off > 0; off /= 2) v = XMath.Max(v, Warp.ShuffleXor(v, off));
        return v;
    }

    /// The earliest (lowest) index among the lanes' (index, value) pairs and its value; index -1: none.
    public static (int index, float value) First(int i, float v, int width)
    {
        for (int off = width / 2; off > 0; off /= 2)
        {
            int oi = Warp.ShuffleXor(i, off);
            float ov = Warp.ShuffleXor(v, off);
            if (oi >= 0 && (i < 0 || oi < i))
            {
                i = oi;
                v = ov;
            }
        }
        return (i, v);
    }

    /// The largest value among the lanes' (index, value) pairs, the lowest index among equal values (-0 and
    /// 0 are equal); index -1: none. NaN values must not be offered.
    public static (int index, float value) ArgMax(int i, float v, int width)
    {
        for (int off = width / 2; off > 0; off /= 2)
        {
            int oi = Warp.ShuffleXor(i, off);
            float ov = Warp.ShuffleXor(v, off);
            if (oi >= 0 && (i < 0 || ov > v || (ov == v && oi < i)))
            {
                i = oi;
                v = ov;
            }
        }
        return (i, v);
    }

    /// The row this warp works on in a launch of (rows / per, 1) groups of (warp, per) threads.
    public static int Row => Grid.IdxX * Group.DimY + Group.IdxY;
}
