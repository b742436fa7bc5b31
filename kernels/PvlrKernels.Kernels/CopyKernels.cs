// Strided rank-4 copy (concat, slice, pad, transpose, permute, broadcast-expand), fill, and the
// SumTo reduction that takes a gradient at a broadcast output's shape down to an input's shape.
namespace PvlrKernels.Kernels;

public struct FillKernel<TMem> : IKernel where TMem : struct, IMem
{
    public TMem Y;
    public float Value;
    public void Execute(int i) => Y[i] = Value;
}

/// dst[d-strides] (+)= scale * src[s-strides], one thread per element of D. Strides may be negative;
/// the Base offsets then point inside views that start at the lowest address touched.
public struct Copy4<TMem> : IKernel where TMem : struct, IMem
{
    public TMem Dst, Src; public Dims4 D; public Strides4 SD, SS; public int DstBase, SrcBase;
        public float Scale;
        public int Accumulate;
    public void Execute(int i)
    {
        D.Split(i, out int i0, out int i1, out int i2, out int i3);
        int o = DstBase + SD.At(i0, i1, i2, i3);
        float v = Scale * Src[SrcBase + SS.At(i0, i1, i2, i3)];
        Dst[o] = Accumulate != 0 ? Dst[o] + v : v;
    }
}

/// dst (target dims T, contiguous) (+)= sum of src (full dims D, contiguous) over the dims where T is 1.
/// One thread per target element, so no two threads write the same address.
public struct SumTo<TMem> : IKernel where TMem : struct, IMem
{
    public TMem Dst, Src;
    public Dims4 D, T;
    public int Accumulate;
    public void Execute(int i)
    {
        T.Split(i, out int t0, out int t1, out int t2, out int t3);
        int r0 = T.N0 == 1 ? D.N0 : 1, r1 = T.N1 == 1 ? D.N1 : 1, r2 = T.N2 == 1 ? D.N2 : 1, r3 = T.N3 == 1 ? D.N3 : 1;
        float s = 0f;
        for (int a = 0; a < r0; a++)
            for (int b = 0; b < r1; b++)
                for (int c = 0; c < r2; c++)
                    for (int d = 0; d < r3; d++)
                    {
                        int j0 = r0 > 1 ? a : t0, j1 = r1 > 1 ? b : t1, j2 = r2 > 1 ? c : t2, j3 = r3 > 1 ? d : t3;
                        s += Src[((j0 * D.N1 + j1) * D.N2 + j2) * D.N3 + j3];
                    }
        Dst[i] = Accumulate != 0 ? Dst[i] + s : s;
    }
}
