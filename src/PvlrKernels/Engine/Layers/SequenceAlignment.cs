// FTCL's sequence alignments of P pairs of ordered snippet sets, from their L x L similarity matrices:
// the smoothed edit distance FSD (M, G) -> (P) and the thresholded longest common subsequence LCS
// S -> (P). Recurrences, backward and both launch forms: kernels/SequenceAlignment.cs.
using PvlrKernels.Kernels;

namespace PvlrKernels.Engine;

public sealed partial class Graph
{
    /// What the backward reads: FSD the soft-max weights of every cell and whether G takes a gradient
    /// (M, G); LCS the choice of every cell (S).
    readonly record struct AlignSaved(Tensor M, Tensor G, Tensor Choices, float Scalar)
    {
        public Entry Save(Op op) => new() { Op = op, A = M, B = G, C = Choices, F0 = Scalar };
        public static AlignSaved Load(in Entry e) => new(e.A, e.B, e.C, e.F0);
        public AlignParams Params => new() { Pairs = M.Dim(0), L = M.Dim(1), Scalar = Scalar };
    }

    static AlignParams AlignShape(string op, Tensor m, float scalar)
    {
        if (m.Rank != 3 || m.Dim(1) != m.Dim(2))
            throw new ShapeException($"{op}: similarity matrices must be (P, L, L), got {m}");
        if (m.Dim(1) < 1 || m.Dim(1) > SequenceAlignmentGroups.MaxSide)
            throw new ShapeException($"{op}: side {m.Dim(1)} outside 1..{SequenceAlignmentGroups.MaxSide}");
        return new AlignParams { Pairs = m.Dim(0), L = m.Dim(1), Scalar = scalar };
    }

    /// FSD (P) of match similarities m and gap similarities g (P, L, L), soft max temperature gamma;
    /// `table` receives each pair's (L+1, L+1) table when asked for.
    public Tensor Fsd(Tensor m, Tensor g, float gamma, Tensor table = null)
    {
        var a = AlignShape("fsd", m, gamma);
        SameShape("fsd", m, g);
        if (!(gamma > 0) || !float.IsFinite(gamma)) throw new ArgumentOutOfRangeException(nameof(gamma),
            $"fsd: gamma {gamma} must be positive");
        var y = New([a.Pairs]);
        table ??= New([a.Pairs, a.Side, a.Side]);
        var weights = New([a.Pairs, a.L, a.L, 3]);
        Backend.AlignForward<FsdCell>(y, table, weights, m, g, a);
        var e = new AlignSaved(m, g, weights, gamma).Save(Op.Fsd);
        Record(ref e, y, m, g);
        return y;
    }

    void FsdBackward(AlignSaved saved, Tensor dy)
    {
        var a = saved.Params;
        Tensor GradOrScratch(Tensor t) => t.RequiresGrad ? GradOf(t) : New(t.Shape, zero: true);
        var dm = GradOrScratch(saved.M);
        var dg = GradOrScratch(saved.G);
        var adjoint = New([a.Pairs, a.L + 2, a.L + 2]);
        Backend.FsdBackward(dm, dg, adjoint, dy, saved.Choices, a);
    }

    /// LCS (P) of similarities s (P, L, L) counted above `threshold`.
    public Tensor Lcs(Tensor s, float threshold, Tensor table = null)
    {
        var a = AlignShape("lcs", s, threshold);
        if (float.IsNaN(threshold)) throw new ArgumentOutOfRangeException(nameof(threshold),
            "lcs: the threshold is NaN");
        var y = New([a.Pairs]);
        table ??= New([a.Pairs, a.Side, a.Side]);
        var choices = New([a.Pairs, a.L, a.L]);
        Backend.AlignForward<LcsCell>(y, table, choices, s, s, a);
        var e = new AlignSaved(s, null, choices, threshold).Save(Op.Lcs);
        Record(ref e, y, s);
        return y;
    }

    void LcsBackward(AlignSaved saved, Tensor dy)
    {
        var ds = GradOf(saved.M);
        Backend.LcsBackward(ds, dy, saved.Choices, saved.Params);
    }
}
