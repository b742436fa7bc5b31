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

    /// The row this warp works on in a launch of (rows / per, 1) groups of (warp, per) threads.
    public static int Row => Grid.IdxX * Group.DimY + Group.IdxY;
}
