// Elementwise unary ops: y = f(x; p), dx = f'(x, y; p) * dy.
// Conventions match PyTorch: relu'(0) = 0, leaky'(0) = slope, |x|'(0) = 0, hinge = relu.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ILGPU;
using ILGPU.Algorithms;

namespace PvlrKernels.Kernels;

/// One elementwise op in one place: its forward, its derivative rule and, where the CPU runs long vectors
/// 16 lanes at a time, the same two in lanes. A lane form computes each lane with the same operations in
/// the same order as the scalar form (a select where the scalar form branches), so both give the same bits
/// (OpTests checks it for every op that has lanes).
public interface IUnaryOp
{
    static abstract float Forward(float x, float p);
    /// dx given x, y = Forward(x, p) and dy.
    static abstract float Backward(float x, float y, float dy, float p);

    static virtual bool HasLanes => false;
    /// Whether Backward reads y (the CPU then loads it; ReLU's gradient streams x and dy only).
    static virtual bool BackwardReadsY => false;
    static virtual Vector512<float> Forward(Vector512<float> x, float p) => throw new NotSupportedException();
    static virtual Vector512<float> Backward(Vector512<float> x, Vector512<float> y, Vector512<float> dy, float p) =>
        throw new NotSupportedException();
}

public struct ScaleOp : IUnaryOp          // y = p * x
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float x, float p) => p * x;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Backward(float x, float y, float dy,
        float p) => p * dy;
    public static bool HasLanes => true;
    public static Vector512<float> Forward(Vector512<float> x, float p) => Vector512.Create(p) * x;
    public static Vector512<float> Backward(Vector512<float> x, Vector512<float> y, Vector512<float> dy, float p) =>
        Vector512.Create(p) * dy;
}
public struct AddScalarOp : IUnaryOp      // y = x + p
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float x, float p) => x + p;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Backward(float x, float y, float dy,
        float p) => dy;
    public static bool HasLanes => true;
    public static Vector512<float> Forward(Vector512<float> x, float p) => x + Vector512.Create(p);
    public static Vector512<float> Backward(Vector512<float> x, Vector512<float> y, Vector512<float> dy, float p) => dy;
}

/// y = 1 / (1 + e^-x), the one sigmoid of every backend and length. e^t = 2^k e^r with k = round(t log2 e),
/// r = t - k ln 2 (ln 2 split in two: k * Ln2Hi is exact for |k| <= 126, Ln2Hi having 15 significant bits)
/// and e^r a degree-6 Taylor polynomial (|r| <= ln2/2). t is clamped to +-87 so that 2^k stays a normal
/// float (sigmoid(-87) ~ 1.6e-38 instead of smaller); the clamp is written as comparisons so that NaN stays
/// NaN on every backend. Plain products and sums, no fused multiply-add: the scalar form runs inside GPU
/// kernels, where ILGPU has no FMA intrinsic. Relative error below 4e-7 against float64 (OpTests).
public struct SigmoidOp : IUnaryOp
{
    const float Log2E = 1.44269504f, Ln2Hi = 0.693145752f, Ln2Lo = 1.42860677e-6f, Clamp = 87f;
    const float C6 = 1f / 720, C5 = 1f / 120, C4 = 1f / 24, C3 = 1f / 6, C2 = 0.5f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Forward(float x, float p)
    {
        float t = -x;
        t = t < -Clamp ? -Clamp : (t > Clamp ? Clamp : t);
        float k = XMath.Round(t * Log2E);
        float r = t - k * Ln2Hi;
        r = r - k * Ln2Lo;
        float q = ((((((C6 * r + C5) * r + C4) * r + C3) * r + C2) * r + 1f) * r) + 1f;
        float scale = Interop.IntAsFloat((uint)(((int)k + 127) << 23));
        return 1f / (1f + q * scale);
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Backward(float x, float y, float dy,
        float p) => dy * y * (1f - y);

    public static bool HasLanes => true;
    public static bool BackwardReadsY => true;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Forward(Vector512<float> x, float p)
    {
        var t = -x;
        var lo = Vector512.Create(-Clamp);
        var hi = Vector512.Create(Clamp);
        t = Vector512.ConditionalSelect(Vector512.LessThan(t, lo), lo,
            Vector512.ConditionalSelect(Vector512.GreaterThan(t, hi), hi, t));
        var k = Vector512.Round(t * Vector512.Create(Log2E));
        var r = t - k * Vector512.Create(Ln2Hi);
        r = r - k * Vector512.Create(Ln2Lo);
        var q = Vector512.Create(C6) * r + Vector512.Create(C5);
        q = q * r + Vector512.Create(C4);
        q = q * r + Vector512.Create(C3);
        q = q * r + Vector512.Create(C2);
        q = q * r + Vector512<float>.One;
        q = q * r + Vector512<float>.One;
        var scale = Vector512.ShiftLeft(Vector512.ConvertToInt32(k) + Vector512.Create(127), 23).AsSingle();
        return Vector512<float>.One / (Vector512<float>.One + q * scale);
    }
    public static Vector512<float> Backward(Vector512<float> x, Vector512<float> y, Vector512<float> dy, float p) =>
        dy * y * (Vector512<float>.One - y);
}
public struct ReluOp : IUnaryOp           // also the hinge max(x, 0)
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float x, float p) => x > 0f ? x : 0f;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Backward(float x, float y, float dy,
        float p) => x > 0f ? dy : 0f;
    public static bool HasLanes => true;
    public static Vector512<float> Forward(Vector512<float> x, float p) =>
        Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512<float>.Zero), x, Vector512<float>.Zero);
    public static Vector512<float> Backward(Vector512<float> x, Vector512<float> y, Vector512<float> dy, float p) =>
        Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512<float>.Zero), dy, Vector512<float>.Zero);
}
public struct LeakyReluOp : IUnaryOp      // slope p (0.2 in PVLR)
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float x,
        float p) => x > 0f ? x : p * x;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Backward(float x, float y, float dy,
        float p) => x > 0f ? dy : p * dy;
    public static bool HasLanes => true;
    public static Vector512<float> Forward(Vector512<float> x, float p) =>
        Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512<float>.Zero), x, Vector512.Create(p) * x);
    public static Vector512<float> Backward(Vector512<float> x, Vector512<float> y, Vector512<float> dy, float p) =>
        Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512<float>.Zero), dy, Vector512.Create(p) * dy);
}
public struct ExpOp : IUnaryOp            // y = exp(p * x)
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float x,
        float p) => XMath.Exp(p * x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Backward(float x, float y, float dy,
        float p) => dy * p * y;
}
public struct LogOp : IUnaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float x, float p) => XMath.Log(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Backward(float x, float y, float dy,
        float p) => dy / x;
}
public struct AbsOp : IUnaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float x, float p) => XMath.Abs(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Backward(float x, float y, float dy,
        float p) => x > 0f ? dy : (x < 0f ? -dy : 0f);
}
public struct QuickGeluOp : IUnaryOp      // x * sigmoid(1.702 x)
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float x,
        float p) => x / (1f + XMath.Exp(-1.702f * x));
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
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Backward(float x, float y, float dy,
        float p) => dy * 0.5f / y;
}
public struct ReciprocalOp : IUnaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float x, float p) => 1f / x;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Backward(float x, float y, float dy,
        float p) => -dy * y * y;
    public static bool HasLanes => true;
    public static bool BackwardReadsY => true;
    public static Vector512<float> Forward(Vector512<float> x, float p) => Vector512<float>.One / x;
    public static Vector512<float> Backward(Vector512<float> x, Vector512<float> y, Vector512<float> dy,
        float p) => -dy * y * y;
}
public struct SquareOp : IUnaryOp
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Forward(float x, float p) => x * x;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Backward(float x, float y, float dy,
        float p) => 2f * x * dy;
    public static bool HasLanes => true;
    public static Vector512<float> Forward(Vector512<float> x, float p) => x * x;
    public static Vector512<float> Backward(Vector512<float> x, Vector512<float> y, Vector512<float> dy, float p) =>
        Vector512.Create(2f) * x * dy;
}

/// y[i] = Op(x[i]); one thread per element.
public struct UnaryFwd<TOp, TMem> : IKernel where TOp : struct, IUnaryOp where TMem : struct, IMem
{
    public TMem Y, X;
    public float P;
    public void Execute(int i) => Y[i] = TOp.Forward(X[i], P);
}
/// y[i] = v[i] * sigmoid(a[i] * s[i / Cols]): the cross-modal gate of the attention module at test
/// time (no gradient), one pass instead of a product, a sigmoid and a product, in the same order.
public struct SigmoidGate<TMem> : IKernel where TMem : struct, IMem
{
    public TMem Y, A, S, V;
    public int Cols;
    public void Execute(int i) => Y[i] = SigmoidOp.Forward(A[i] * S[i / Cols], 0f) * V[i];
}
/// dx[i] (+)= Op'(x[i], y[i]) dy[i]
public struct UnaryBwd<TOp, TMem> : IKernel where TOp : struct, IUnaryOp where TMem : struct, IMem
{
    public TMem DX, X, Y, DY;
    public float P;
    public int Accumulate;
    public void Execute(int i)
    {
        float g = TOp.Backward(X[i], Y[i], DY[i], P);
        DX[i] = Accumulate != 0 ? DX[i] + g : g;
    }
}
