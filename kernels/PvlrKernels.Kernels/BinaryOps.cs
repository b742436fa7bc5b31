// Elementwise binary ops with broadcasting. Broadcasting is expressed by rank-4 views whose
// broadcast dimensions have stride 0; the gradient of a broadcast input is first written at the
// output's shape and then summed down with SumTo.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ILGPU.Algorithms;

namespace PvlrKernels.Kernels;

/// One broadcasting binary op in one place: its forward, both partial derivatives, and the same three in
/// 16 lanes for the CPU's row-wise path (each lane computed as the scalar form computes it: same bits).
public interface IBinaryOp
{
    static abstract float Forward(float a, float b);
    static abstract float GradA(float a, float b, float dy);
    static abstract float GradB(float a, float b, float dy);
    static abstract Vector512<float> Forward(Vector512<float> a, Vector512<float> b);
    static abstract Vector512<float> GradA(Vector512<float> a, Vector512<float> b, Vector512<float> dy);
    static abstract Vector512<float> GradB(Vector512<float> a, Vector512<float> b, Vector512<float> dy);
}
public struct AddOp : IBinaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float a, float b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float GradA(float a, float b, float dy) => dy;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float GradB(float a, float b, float dy) => dy;
    public static Vector512<float> Forward(Vector512<float> a, Vector512<float> b) => a + b;
    public static Vector512<float> GradA(Vector512<float> a, Vector512<float> b, Vector512<float> dy) => dy;
    public static Vector512<float> GradB(Vector512<float> a, Vector512<float> b, Vector512<float> dy) => dy;
}
public struct SubOp : IBinaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float a, float b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float GradA(float a, float b, float dy) => dy;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float GradB(float a, float b, float dy) => -dy;
    public static Vector512<float> Forward(Vector512<float> a, Vector512<float> b) => a - b;
    public static Vector512<float> GradA(Vector512<float> a, Vector512<float> b, Vector512<float> dy) => dy;
    public static Vector512<float> GradB(Vector512<float> a, Vector512<float> b, Vector512<float> dy) => -dy;
}
public struct MulOp : IBinaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float a, float b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float GradA(float a, float b, float dy) => dy * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float GradB(float a, float b, float dy) => dy * a;
    public static Vector512<float> Forward(Vector512<float> a, Vector512<float> b) => a * b;
    public static Vector512<float> GradA(Vector512<float> a, Vector512<float> b, Vector512<float> dy) => dy * b;
    public static Vector512<float> GradB(Vector512<float> a, Vector512<float> b, Vector512<float> dy) => dy * a;
}
public struct DivOp : IBinaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float a, float b) => a / b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float GradA(float a, float b, float dy) => dy / b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float GradB(float a, float b,
        float dy) => -dy * a / (b * b);
    public static Vector512<float> Forward(Vector512<float> a, Vector512<float> b) => a / b;
    public static Vector512<float> GradA(Vector512<float> a, Vector512<float> b, Vector512<float> dy) => dy / b;
    public static Vector512<float> GradB(Vector512<float> a, Vector512<float> b,
        Vector512<float> dy) => -dy * a / (b * b);
}

/// torch's BCELoss per element, the target as the second operand (it gets no gradient):
/// (y - 1) max(log(1 - p), -100) - y max(log p, -100); dp = (p - y) / max((1 - p) p, 1e-12), torch's
/// backward, not the derivative of the clamped logs. The lane form applies the scalar form lane by lane.
public struct BceOp : IBinaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Forward(float p, float y) => (y - 1f) * XMath.Max(XMath.Log(1f - p),
        -100f) - y * XMath.Max(XMath.Log(p), -100f);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float GradA(float p, float y, float dy) => dy * (p - y) / XMath.Max((1f - p) * p, 1e-12f);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float GradB(float p, float y, float dy) => 0f;
    public static Vector512<float> Forward(Vector512<float> a, Vector512<float> b) => Lanes.Map(a, b, default(BceOp));
    public static Vector512<float> GradA(Vector512<float> a, Vector512<float> b, Vector512<float> dy) => Lanes.Map(a,
        b, dy, default(BceOp));
    public static Vector512<float> GradB(Vector512<float> a, Vector512<float> b,
        Vector512<float> dy) => Vector512<float>.Zero;
}

/// The lane form of an op that has no vector instructions of its own: its scalar form on each lane.
public static class Lanes
{
    public static Vector512<float> Map<TOp>(Vector512<float> a, Vector512<float> b, TOp _) where TOp : struct, IBinaryOp
    {
        Span<float> r = stackalloc float[16];
        for (int i = 0; i < 16; i++) r[i] = TOp.Forward(a[i], b[i]);
        return Vector512.Create<float>(r);
    }

    public static Vector512<float> Map<TOp>(Vector512<float> a, Vector512<float> b, Vector512<float> dy,
        TOp _) where TOp : struct, IBinaryOp
    {
        Span<float> r = stackalloc float[16];
        for (int i = 0; i < 16; i++) r[i] = TOp.GradA(a[i], b[i], dy[i]);
        return Vector512.Create<float>(r);
    }
}

/// Rank-4 index space with strides for up to three operands (out, a, b).
public struct Dims4
{
    public int N0, N1, N2, N3;
    public int Total => N0 * N1 * N2 * N3;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Split(int i, out int i0, out int i1, out int i2, out int i3)
    {
        i3 = i % N3;
        i /= N3;
        i2 = i % N2;
        i /= N2;
        i1 = i % N1;
        i0 = i / N1;
    }
}
public struct Strides4
{
    public int S0, S1, S2, S3;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int At(int i0, int i1, int i2, int i3) => i0 * S0 + i1 * S1 + i2 * S2 + i3 * S3;
}

/// out[i] = a[i] op b[i] over the output's dims; out is contiguous.
public struct BinaryFwd<TOp, TMem> : IKernel where TOp : struct, IBinaryOp where TMem : struct, IMem
{
    public TMem Out, A, B;
    public Dims4 D;
    public Strides4 SA, SB;
    public void Execute(int i)
    {
        D.Split(i, out int i0, out int i1, out int i2, out int i3);
        Out[i] = TOp.Forward(A[SA.At(i0, i1, i2, i3)], B[SB.At(i0, i1, i2, i3)]);
    }
}
/// tmp[i] = dOp/da (Which = 0) or dOp/db (Which = 1), at the output's shape.
public struct BinaryGrad<TOp, TMem> : IKernel where TOp : struct, IBinaryOp where TMem : struct, IMem
{
    public TMem Tmp, A, B, DY;
    public Dims4 D;
    public Strides4 SA, SB;
    public int Which;
    public void Execute(int i)
    {
        D.Split(i, out int i0, out int i1, out int i2, out int i3);
        float a = A[SA.At(i0, i1, i2, i3)], b = B[SB.At(i0, i1, i2, i3)];
        Tmp[i] = Which == 0 ? TOp.GradA(a, b, DY[i]) : TOp.GradB(a, b, DY[i]);
    }
}
