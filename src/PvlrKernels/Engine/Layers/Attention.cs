// Multi-head (causal) self attention over packed QKV: qkv (Nb, L, 3W) -> (Nb, L, W). The in/out
// projections are Linear layers around it (nn.MultiheadAttention). Kernels: kernels/Attention.cs.
using PvlrKernels.Kernels;

namespace PvlrKernels.Engine;

public sealed partial class Graph
{
    /// What the backward reads: the packed QKV input, the attention probabilities (Nb, H, L, L), the
    /// head count and whether the mask is causal.
    readonly record struct AttentionSaved(Tensor Qkv, Tensor Probs, int Heads, bool Causal)
    {
        public Entry Save() => new() { Op = Op.Attention, A = Qkv, C = Probs, I0 = Heads, I1 = Causal ? 1 : 0 };
        public static AttentionSaved Load(in Entry e) => new(e.A, e.C, e.I0, e.I1 != 0);
    }

    public Tensor Attention(Tensor qkv, int heads, bool causal)
    {
        if (qkv.Rank != 3 || qkv.Dim(2) % 3 != 0)
            throw new ShapeException($"attention: qkv must be (N, L, 3W), got {qkv}");
        int nb = qkv.Dim(0), l = qkv.Dim(1), w = qkv.Dim(2) / 3;
        if (w % heads != 0) throw new ShapeException($"attention: width {w} not divisible by {heads} heads");
        var a = new AttnParams { Nb = nb, L = l, W = w, H = heads, Causal = causal ? 1 : 0,
            Scale = 1f / MathF.Sqrt(w / heads) };
        var y = New(new[] { nb, l, w });
        var p = New(new[] { nb, heads, l, l });
        Backend.Attention(y, p, qkv, a);
        var e = new AttentionSaved(qkv, p, heads, causal).Save();
        Record(ref e, y, qkv);
        return y;
    }

    void AttentionBackward(AttentionSaved saved, Tensor dy)
    {
        var qkv = saved.Qkv;
        var probs = saved.Probs;
        int nb = qkv.Dim(0), l = qkv.Dim(1), w = qkv.Dim(2) / 3, heads = saved.Heads;
        var a = new AttnParams { Nb = nb, L = l, W = w, H = heads, Causal = saved.Causal ? 1 : 0,
            Scale = 1f / MathF.Sqrt(w / heads) };
        var dScores = New(probs.Shape);
        var dQkv = GradOf(qkv);
        Backend.AttentionBackward(dQkv, dScores, dy, probs, qkv, a);
    }
}
