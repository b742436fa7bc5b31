// Multi-head self attention on a packed QKV tensor, as nn.MultiheadAttention's core:
//   qkv (Nb, L, 3W) with q | k | v along the last axis, H heads of size hd = W / H,
//   S = q k^T / sqrt(hd) (+ causal mask: j > i gets -inf), P = softmax_j S, out (Nb, L, W) = P v.
// P (Nb, H, L, L) is saved for the backward.
using ILGPU;
using ILGPU.Algorithms;

namespace PvlrKernels.Kernels;

public struct AttnParams { public int Nb, L, W, H, Causal; public float Scale; }

/// One thread per (n, h, i) query row.
public struct AttentionFwd<TMem> : IKernel where TMem : struct, IMem
{
    public TMem Out, P, Qkv;
    public AttnParams A;
    public void Execute(int r)
    {
        int L = A.L, W = A.W, hd = W / A.H;
        int i = r % L, nh = r / L, h = nh % A.H, n = nh / A.H;
        int qb = (n * L + i) * 3 * W + h * hd, pb = r * L;
        int jEnd = A.Causal != 0 ? i + 1 : L;
        float mx = -3.0e38f;
        for (int j = 0; j < jEnd; j++)
        {
            int kb = (n * L + j) * 3 * W + W + h * hd;
            float s = 0f;
            for (int d = 0; d < hd; d++) s += Qkv[qb + d] * Qkv[kb + d];
            s *= A.Scale;
            P[pb + j] = s;
            mx = XMath.Max(mx, s);
        }
        float sum = 0f;
        for (int j = 0; j < jEnd; j++)
        {
            float e = XMath.Exp(P[pb + j] - mx);
            P[pb + j] = e;
            sum += e;
        }
        float inv = 1f / sum;
        for (int j = 0; j < L; j++) P[pb + j] = j < jEnd ? P[pb + j] * inv : 0f;
        int ob = (n * L + i) * W + h * hd;
        for (int d = 0; d < hd; d++)
        {
            float s = 0f;
            for (int j = 0; j < jEnd; j++) s += P[pb + j] * Qkv[(n * L + j) * 3 * W + 2 * W + h * hd + d];
            Out[ob + d] = s;
        }
    }
}
/// Pass 1, one thread per (n, h, i): dS_ij = P_ij (dP_ij - sum_j P dP), dP_ij = dout_i . v_j;
/// dq_i += scale * sum_j dS_ij k_j.  dS is written to a scratch buffer shaped like P.
public struct AttentionBwdQ<TMem> : IKernel where TMem : struct, IMem
{
    public TMem DQkv, DS, DOut, P, Qkv;
    public AttnParams A;
    public void Execute(int r)
    {
        int L = A.L, W = A.W, hd = W / A.H;
        int i = r % L, nh = r / L, h = nh % A.H, n = nh / A.H, pb = r * L;
        int ob = (n * L + i) * W + h * hd;
        float dot = 0f;
        for (int j = 0; j < L; j++)
        {
            int vb = (n * L + j) * 3 * W + 2 * W + h * hd;
            float dp = 0f;
            for (int d = 0; d < hd; d++) dp += DOut[ob + d] * Qkv[vb + d];
            DS[pb + j] = dp;
            dot += P[pb + j] * dp;
        }
        for (int j = 0; j < L; j++) DS[pb + j] = P[pb + j] * (DS[pb + j] - dot);
        int qb = (n * L + i) * 3 * W + h * hd;
        for (int d = 0; d < hd; d++)
        {
            float s = 0f;
            for (int j = 0; j < L; j++) s += DS[pb + j] * Qkv[(n * L + j) * 3 * W + W + h * hd + d];
            DQkv[qb + d] = DQkv[qb + d] + A.Scale * s;
        }
    }
}
/// Pass 2, one thread per (n, h, j): dk_j += scale * sum_i dS_ij q_i;  dv_j += sum_i P_ij dout_i.
public struct AttentionBwdKV<TMem> : IKernel where TMem : struct, IMem
{
    public TMem DQkv, DS, DOut, P, Qkv;
    public AttnParams A;
    public void Execute(int r)
    {
        int L = A.L, W = A.W, hd = W / A.H;
        int j = r % L, nh = r / L, h = nh % A.H, n = nh / A.H;
        int kb = (n * L + j) * 3 * W + W + h * hd, vb = kb + W;
        for (int d = 0; d < hd; d++)
        {
            float sk = 0f, sv = 0f;
            for (int i = 0; i < L; i++)
            {
                int pi = (nh * L + i) * L + j;
                sk += DS[pi] * Qkv[(n * L + i) * 3 * W + h * hd + d];
                sv += P[pi] * DOut[(n * L + i) * W + h * hd + d];
            }
            DQkv[kb + d] = DQkv[kb + d] + A.Scale * sk;
            DQkv[vb + d] = DQkv[vb + d] + sv;
        }
    }
}

/// One warp per (n, h, i) row for heads of at least 16 values on a GPU: the lanes take the keys j (scores,
/// softmax by shuffles) and then the head's values d (the output), where a thread per row walked both
/// serially. The formulas are AttentionFwd / AttentionBwdQ / AttentionBwdKV's; P (and dS) round-trip
/// through memory between the two phases, ordered by a warp barrier.
public static class AttentionWarp
{
    public static void Forward(ArrayView<float> o, ArrayView<float> p, ArrayView<float> qkv, AttnParams a)
    {
        int r = WarpReduce.Row, rows = a.Nb * a.H * a.L;
        if (r >= rows) return;                        // uniform across the warp
        int lane = Group.IdxX, w = Group.DimX;
        int L = a.L, W = a.W, hd = W / a.H;
        int i = r % L, nh = r / L, h = nh % a.H, n = nh / a.H;
        int qb = (n * L + i) * 3 * W + h * hd, pb = r * L;
        int jEnd = a.Causal != 0 ? i + 1 : L;
        float mx = -3.0e38f;
        for (int j = lane; j < jEnd; j += w)
        {
            int kb = (n * L + j) * 3 * W + W + h * hd;
            float s = 0f;
            for (int d = 0; d < hd; d++) s += qkv[qb + d] * qkv[kb + d];
            s *= a.Scale;
            p[pb + j] = s;
            mx = XMath.Max(mx, s);
        }
        mx = WarpReduce.Max(mx, w);
        float sum = 0f;
        for (int j = lane; j < jEnd; j += w)
        {
            float e = XMath.Exp(p[pb + j] - mx);
            p[pb + j] = e;
            sum += e;
        }
        float inv = 1f / WarpReduce.Sum(sum, w);
        for (int j = lane; j < L; j += w) p[pb + j] = j < jEnd ? p[pb + j] * inv : 0f;
        Warp.Barrier();
        int ob = (n * L + i) * W + h * hd;
        for (int d = lane; d < hd; d += w)
        {
            float s = 0f;
            for (int j = 0; j < jEnd; j++) s += p[pb + j] * qkv[(n * L + j) * 3 * W + 2 * W + h * hd + d];
            o[ob + d] = s;
        }
    }

    public static void BackwardQ(ArrayView<float> dqkv, ArrayView<float> ds, ArrayView<float> dout,
        ArrayView<float> p, ArrayView<float> qkv, AttnParams a)
    {
        int r = WarpReduce.Row, rows = a.Nb * a.H * a.L;
        if (r >= rows) return;
        int lane = Group.IdxX, w = Group.DimX;
        int L = a.L, W = a.W, hd = W / a.H;
        int i = r % L, nh = r / L, h = nh % a.H, n = nh / a.H, pb = r * L;
        int ob = (n * L + i) * W + h * hd;
        float dot = 0f;
        for (int j = lane; j < L; j += w)
        {
            int vb = (n * L + j) * 3 * W + 2 * W + h * hd;
            float dp = 0f;
            for (int d = 0; d < hd; d++) dp += dout[ob + d] * qkv[vb + d];
            ds[pb + j] = dp;
            dot += p[pb + j] * dp;
        }
        dot = WarpReduce.Sum(dot, w);
        for (int j = lane; j < L; j += w) ds[pb + j] = p[pb + j] * (ds[pb + j] - dot);
        Warp.Barrier();
        int qb = (n * L + i) * 3 * W + h * hd;
        for (int d = lane; d < hd; d += w)
        {
            float s = 0f;
            for (int j = 0; j < L; j++) s += ds[pb + j] * qkv[(n * L + j) * 3 * W + W + h * hd + d];
            dqkv[qb + d] = dqkv[qb + d] + a.Scale * s;
        }
    }

    /// One warp per (n, h, j) key row, the lanes over the head's values d.
    public static void BackwardKV(ArrayView<float> dqkv, ArrayView<float> ds, ArrayView<float> dout,
        ArrayView<float> p, ArrayView<float> qkv, AttnParams a)
    {
        int r = WarpReduce.Row, rows = a.Nb * a.H * a.L;
        if (r >= rows) return;
        int lane = Group.IdxX, w = Group.DimX;
        int L = a.L, W = a.W, hd = W / a.H;
        int j = r % L, nh = r / L, h = nh % a.H, n = nh / a.H;
        int kb = (n * L + j) * 3 * W + W + h * hd, vb = kb + W;
        for (int d = lane; d < hd; d += w)
        {
            float sk = 0f, sv = 0f;
            for (int i = 0; i < L; i++)
            {
                int pi = (nh * L + i) * L + j;
                sk += ds[pi] * qkv[(n * L + i) * 3 * W + h * hd + d];
                sv += p[pi] * dout[(n * L + i) * W + h * hd + d];
            }
            dqkv[kb + d] = dqkv[kb + d] + a.Scale * sk;
            dqkv[vb + d] = dqkv[vb + d] + sv;
        }
    }
}
