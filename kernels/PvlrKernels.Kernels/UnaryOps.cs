// Elementwise unary ops: y = f(x; p), dx = f'(x, y; p) * dy.
// Conventions match PyTorch: relu'(0) = 0, leaky'(0) = slope, |x|'(0) = 0, hinge = relu.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ILGPU.Algorithms;

namespace PvlrKernels.Kernels;

public interface IUnaryOp
{
    static abstract float Forward(float x, float p);
    static abstract float Backward(float x, float y, float dy, float p);
}

/// An op whose 16-lane form the CPU backend runs on long vectors: the same comparison and product per
/// lane as the scalar form (a select instead of a branch, which random signs mispredict), so the same bits.
/// Its gradient reads x and dy, not y.
public interface IUnaryOp512 : IUnaryOp
{
    static abstract Vector512<float> Forward(Vector512<float> x, float p);
    static abstract Vector512<float> Backward(Vector512<float> x, Vector512<float> dy, float p);
}

public struct ScaleOp : IUnaryOp          // y = p * x
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float x, float p) => p * x;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Backward(float x, float y, float dy, float p) => p * dy;
}
public struct AddScalarOp : IUnaryOp      // y = x + p
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float x, float p) => x + p;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Backward(float x, float y, float dy, float p) => dy;
}
public struct SigmoidOp : IUnaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float x, float p) => 1f / (1f + XMath.Exp(-x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Backward(float x, float y, float dy, float p) => dy * y * (1f - y);
}
public struct ReluOp : IUnaryOp512        // also the hinge max(x, 0)
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float x, float p) => x > 0f ? x : 0f;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Backward(float x, float y, float dy, float p) => x > 0f ? dy : 0f;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Forward(Vector512<float> x, float p) =>
        Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512<float>.Zero), x, Vector512<float>.Zero);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Backward(Vector512<float> x, Vector512<float> dy, float p) =>
        Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512<float>.Zero), dy, Vector512<float>.Zero);
}
public struct LeakyReluOp : IUnaryOp512   // slope p (0.2 in PVLR)
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float x, float p) => x > 0f ? x : p * x;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Backward(float x, float y, float dy, float p) => x > 0f ? dy : p * dy;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Forward(Vector512<float> x, float p) =>
        Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512<float>.Zero), x, Vector512.Create(p) * x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Backward(Vector512<float> x, Vector512<float> dy, float p) =>
        Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512<float>.Zero), dy, Vector512.Create(p) * dy);
}
public struct ExpOp : IUnaryOp            // y = exp(p * x)
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float x, float p) => XMath.Exp(p * x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Backward(float x, float y, float dy, float p) => dy * p * y;
}
public struct LogOp : IUnaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float x, float p) => XMath.Log(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Backward(float x, float y, float dy, float p) => dy / x;
}
public struct AbsOp : IUnaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float x, float p) => XMath.Abs(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Backward(float x, float y, float dy, float p) => x > 0f ? dy : (x < 0f ? -dy : 0f);
}
public struct QuickGeluOp : IUnaryOp      // x * sigmoid(1.702 x)
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float x, float p) => x / (1f + XMath.Exp(-1.702f * x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Backward(float x, float y, float dy, float p)
    {
        float s = 1f / (1f + XMath.Exp(-1.702f * x));
        return dy * (s + 1.702f * x * s * (1f - s));
    }
}
public struct SqrtOp : IUnaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float x, float p) => XMath.Sqrt(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Backward(float x, float y, float dy, float p) => dy * 0.5f / y;
}
public struct ReciprocalOp : IUnaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float x, float p) => 1f / x;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Backward(float x, float y, float dy, float p) => -dy * y * y;
}
public struct SquareOp : IUnaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float x, float p) => x * x;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Backward(float x, float y, float dy, float p) => 2f * x * dy;
}

/// y[i] = Op(x[i]); one thread per element.
public struct UnaryFwd<TOp, TMem> : IKernel where TOp : struct, IUnaryOp where TMem : struct, IMem
{
    public TMem Y, X; public float P;
    public void Execute(int i) => Y[i] = TOp.Forward(X[i], P);
}
/// y[i] = v[i] * sigmoid(a[i] * s[i / Cols]): the cross-modal gate of the attention module at test
/// time (no gradient), one pass instead of a product, a sigmoid and a product, in the same order.
public struct SigmoidGate<TMem> : IKernel where TMem : struct, IMem
{
    public TMem Y, A, S, V; public int Cols;
    public void Execute(int i) => Y[i] = SigmoidOp.Forward(A[i] * S[i / Cols], 0f) * V[i];
}
/// dx[i] (+)= Op'(x[i], y[i]) dy[i]
public struct UnaryBwd<TOp, TMem> : IKernel where TOp : struct, IUnaryOp where TMem : struct, IMem
{
    public TMem DX, X, Y, DY; public float P; public int Accumulate;
    public void Execute(int i)
    {
        float g = TOp.Backward(X[i], Y[i], DY[i], P);
        DX[i] = Accumulate != 0 ? DX[i] + g : g;
    }
}
