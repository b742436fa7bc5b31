// Philox4x32-10 (Salmon et al., SC'11), a counter-based generator: the value at (key, counter) is a
// pure function, so the CPU, the ILGPU emulator and CUDA produce identical streams.
// Element e of draw stream s under seed k uses counter (e, s_lo, s_hi, 0), key (k_lo, k_hi).
using System.Runtime.CompilerServices;
using ILGPU.Algorithms;

namespace PvlrKernels.Kernels;

public struct RngKey { public uint K0, K1, S0, S1; }

public static class Philox
{
    /// The round multipliers and the Weyl key increments (the CPU's vectorized dropout uses them too).
    public const uint M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static uint MulHi(uint a, uint b) => (uint)(((ulong)a * b) >> 32);

    /// First two 32-bit outputs of Philox4x32-10 at counter (c0, s0, s1, c3).
    public static void Next2(RngKey key, uint c0, uint c3, out uint r0, out uint r1)
    {
        uint x0 = c0, x1 = key.S0, x2 = key.S1, x3 = c3, k0 = key.K0, k1 = key.K1;
        for (int round = 0; round < 10; round++)
        {
            uint h0 = MulHi(M0, x0), l0 = M0 * x0, h1 = MulHi(M1, x2), l1 = M1 * x2;
            uint n0 = h1 ^ x1 ^ k0, n1 = l1, n2 = h0 ^ x3 ^ k1, n3 = l0;
            x0 = n0;
            x1 = n1;
            x2 = n2;
            x3 = n3;
            k0 += W0;
            k1 += W1;
        }
        r0 = x0;
        r1 = x1;
    }

    /// Standard normal by Box-Muller from the two outputs at counter (c0, s0, s1, c3).
    public static float Normal(RngKey key, uint c0, uint c3)
    {
        Next2(key, c0, c3, out uint a, out uint b);
        return BoxMuller(a, b);
    }

    /// Standard normal from two output words (the CPU backend draws the words 16 counters at a time):
    /// u1 in (0, 1], u2 in [0, 1).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float BoxMuller(uint a, uint b)
    {
        float u1 = ((float)a + 1f) * 2.3283064e-10f, u2 = (float)b * 2.3283064e-10f;
        if (u1 > 1f) u1 = 1f;
        return XMath.Sqrt(-2f * XMath.Log(u1)) * XMath.Cos(6.2831855f * u2);
    }
}

/// Dropout mask: m[i] = 0 with probability P, else 1/(1-P). Drop iff r0 < P * 2^32.
public struct DropoutMaskKernel<TMem> : IKernel where TMem : struct, IMem
{
    public TMem Y;
    public RngKey Key;
    public uint Threshold;
    public float KeepScale;
    public void Execute(int i)
    {
        Philox.Next2(Key, (uint)i, 0u, out uint r0, out uint _);
        Y[i] = r0 < Threshold ? 0f : KeepScale;
    }
}
/// Y[i] = Std * z(i) (Samples = 1), or the mean over Samples draws of Std * z(s * N + i): the mean of
/// P separate (P, ...)-shaped noise tensors, without materializing them.
public struct NormalKernel<TMem> : IKernel where TMem : struct, IMem
{
    public TMem Y;
    public RngKey Key;
    public float Std;
    public int Samples, N;
    public void Execute(int i)
    {
        float s = 0f;
        for (int p = 0; p < Samples; p++) s += Philox.Normal(Key, (uint)(p * N + i), 0u);
        Y[i] = Std * s / Samples;
    }
}
