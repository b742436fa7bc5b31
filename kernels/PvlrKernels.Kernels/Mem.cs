// Memory accessors. Every kernel body is a struct generic over IMem, so the same body runs
// inside an ILGPU kernel (ViewMem over an ArrayView) and in the managed CPU loop (PtrMem over
// a raw pointer). One source for the math, two ways to drive it.
using System.Runtime.CompilerServices;
using ILGPU;

namespace PvlrKernels.Kernels;

public interface IMem
{
    float this[int i] { get; set; }
}

public struct ViewMem : IMem
{
    public ArrayView<float> V;
    public ViewMem(ArrayView<float> v) { V = v; }
    public float this[int i]
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)] get => V[i];
        [MethodImpl(MethodImplOptions.AggressiveInlining)] set => V[i] = value;
    }
}

public unsafe struct PtrMem : IMem
{
    public float* P;
    public PtrMem(float* p) { P = p; }
    public float this[int i]
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)] get => P[i];
        [MethodImpl(MethodImplOptions.AggressiveInlining)] set => P[i] = value;
    }
}

/// A kernel body: Execute(i) for i in [0, n). Launched by one generic ILGPU kernel and by one CPU loop.
public interface IKernel
{
    void Execute(int i);
}

public static class Launcher
{
    // The single implicitly grouped ILGPU entry point for every IKernel body.
    public static void Run<TK>(Index1D i, TK body) where TK : struct, IKernel => body.Execute(i);
}
