// Multi-head (causal) self attention over packed QKV: qkv (Nb, L, 3W) -> (Nb, L, W). The in/out
// projections are Linear layers around it (nn.MultiheadAttention). Kernels: kernels/Attention.cs.
using PvlrKernels.Kernels;

namespace PvlrKernels.Engine;

public sealed partial class Graph
{
    public Tensor Attention(Tensor qkv, int heads, bool causal)
    {
        if (qkv.Rank != 3 || qkv.Dim(2) % 3 != 0) throw new ShapeException($"attention: qkv must be (N, L, 3W), got {qkv}");
        int nb = qkv.Dim(0), l = qkv.Dim(1), w = qkv.Dim(2) / 3;
        if (w % heads != 0) throw new ShapeException($"attention: width {w} not divisible by {heads} heads");
        var a = new AttnParams { Nb = nb, L = l, W = w, H = heads, Causal = causal ? 1 : 0, Scale = 1f / MathF.Sqrt(w / heads) };
        var y = New(new[] { nb, l, w }); var p = New(new[] { nb, heads, l, l });
        B.Attention(y.Data, y.Offset, p.Data, p.Offset, qkv.Data, qkv.Offset, a);
        var e = new Entry { Op = Op.Attention, A = qkv, C = p, I0 = heads, I1 = causal ? 1 : 0 };
        Record(ref e, y, qkv);
        return y;
    }

    void AttentionBackward(ref Entry e, Tensor dy)
    {
        var qkv = e.A; int nb = qkv.Dim(0), l = qkv.Dim(1), w = qkv.Dim(2) / 3, heads = e.I0;
        var a = new AttnParams { Nb = nb, L = l, W = w, H = heads, Causal = e.I1, Scale = 1f / MathF.Sqrt(w / heads) };
        var ds = New(e.C.Shape); var dq = GradOf(qkv);
        B.AttentionBackward(dq.Data, dq.Offset, ds.Data, ds.Offset, dy.Data, dy.Offset, e.C.Data, e.C.Offset, qkv.Data, qkv.Offset, a);
    }
}
