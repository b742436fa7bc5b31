// The CPU backend: dropout masks and normal draws, Philox on 16 counters at once.
using System.Runtime.Intrinsics;
using PvlrKernels.Kernels;

namespace PvlrKernels.Engine;

public sealed unsafe partial class CpuBackend
{
    /// Dropout masks 16 elements at a time: Philox4x32-10 (kernels/Philox.cs) on 16 counters in two
    /// Vector512<ulong> of 8 (each 32-bit word in a 64-bit lane, so the 32x32->64 products are plain
    /// multiplies), the same words as the kernel body's Next2; the tail runs the body. At paper shapes the
    /// scalar kernel took 0.32 s of a training step.
    public override void DropoutMask(Buf y, long n, float p, RngKey key)
    {
        var body = DropoutMaskBody(y, n, p, key);                       // checks p and the extent
        if (!Lanes16)
        {
            Launch(n, body);
            return;
        }
        using var _ = Profiler.Time("DropoutMask", n);
        float* yp = P(y);
        var threshold = Vector512.Create(body.Threshold);
        var keep = Vector512.Create(body.KeepScale);
        PhiloxBlocks(n, key, body, (at, r0, _) => Vector512.ConditionalSelect(Vector512.LessThan(r0,
            threshold).AsSingle(), Vector512<float>.Zero, keep).Store(yp + at));
    }

    /// block(at, r0, r1) with the Philox words of counters at .. at + 15 (PhiloxWords) for every whole 16
    /// below n, over the cores; the kernel body for the tail.
    void PhiloxBlocks<TK>(long n, RngKey key, TK body,
        Action<long, Vector512<uint>, Vector512<uint>> block) where TK : struct, IKernel
    {
        long blocks = n / 16;
        Rows(blocks + 1, n * 32, (a, e) =>
        {
            for (long blk = a; blk < e; blk++)
            {
                if (blk == blocks)
                {
                    for (long i = blocks * 16; i < n; i++) body.Execute((int)i);
                    continue;
                }
                var (r0, r1) = PhiloxWords(key, (uint)(blk * 16));
                block(blk * 16, r0, r1);
            }
        });
    }

    /// Single-sample normal draws (the model's NormalMean): Philox for 16 counters at once (PhiloxWords),
    /// then the kernel's own Box-Muller (Philox.BoxMuller) and scaling per lane, so the same bits as
    /// NormalKernel; several samples per value and the tail run the kernel body.
    public override void Normal(Buf y, long n, float std, int samples, RngKey key)
    {
        var body = NormalBody(y, n, std, samples, key);                       // checks the extent
        if (samples != 1 || !Lanes16)
        {
            Launch(n, body);
            return;
        }
        using var _ = Profiler.Time(typeof(NormalKernel<PtrMem>), n);
        float* yp = P(y);
        PhiloxBlocks(n, key, body, (at, r0, r1) =>
        {
            uint* w = stackalloc uint[32];                  // the words as scalars (GetElement per lane was slower)
            r0.Store(w);
            r1.Store(w + 16);
            for (int l = 0; l < 16; l++)
            {
                float s = 0f;
                s += Philox.BoxMuller(w[l], w[16 + l]);
                yp[at + l] = std * s / samples;            // NormalKernel's mean of one sample
            }
        });
    }

    /// The first two output words of Philox4x32-10 at counters (c0 + lane, S0, S1, 0) for 16 lanes.
    static (Vector512<uint> r0, Vector512<uint> r1) PhiloxWords(RngKey key, uint c0)
    {
        var mask = Vector512.Create(0xFFFFFFFFul);
        var m0 = Vector512.Create((ulong)Philox.M0);
        var m1 = Vector512.Create((ulong)Philox.M1);
        var lane = Vector512.Create(0ul, 1, 2, 3, 4, 5, 6, 7);
        Vector512<ulong> a0 = (Vector512.Create((ulong)c0) + lane) & mask,
            b0 = (Vector512.Create((ulong)c0 + 8) + lane) & mask;
        Vector512<ulong> a1 = Vector512.Create((ulong)key.S0), a2 = Vector512.Create((ulong)key.S1),
            a3 = Vector512<ulong>.Zero;
        Vector512<ulong> b1 = a1, b2 = a2, b3 = a3;
        uint k0 = key.K0, k1 = key.K1;
        for (int round = 0; round < 10; round++)
        {
            var kv0 = Vector512.Create((ulong)k0);
            var kv1 = Vector512.Create((ulong)k1);
            var pa0 = a0 * m0;
            var pa1 = a2 * m1;
            var pb0 = b0 * m0;
            var pb1 = b2 * m1;
            a0 = (pa1 >> 32) ^ a1 ^ kv0;
            a1 = pa1 & mask;
            a2 = (pa0 >> 32) ^ a3 ^ kv1;
            a3 = pa0 & mask;
            b0 = (pb1 >> 32) ^ b1 ^ kv0;
            b1 = pb1 & mask;
            b2 = (pb0 >> 32) ^ b3 ^ kv1;
            b3 = pb0 & mask;
            k0 += Philox.W0;
            k1 += Philox.W1;
        }
        return (Vector512.Narrow(a0, b0), Vector512.Narrow(a1, b1));
    }
}
