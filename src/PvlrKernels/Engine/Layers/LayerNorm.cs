// LayerNorm over the last axis, eps 1e-5 (CLIP's LayerNorm). Saves mean and rstd per row.
namespace PvlrKernels.Engine;

public sealed partial class Graph
{
    public Tensor LayerNorm(Tensor x, Tensor gamma, Tensor beta, float eps = 1e-5f)
    {
        int n = x.Dim(-1), rows = (int)(x.Size / n);
        if (gamma.Size != n || beta.Size != n) throw new ShapeException($"layernorm: {x} with gamma {gamma} and beta {beta}");
        var y = New(x.Shape); var mean = New(new[] { rows }); var rstd = New(new[] { rows });
        B.LayerNorm(y.Data, y.Offset, mean.Data, mean.Offset, rstd.Data, rstd.Offset, x.Data, x.Offset, gamma.Data, gamma.Offset, beta.Data, beta.Offset, rows, n, eps);
        var e = new Entry { Op = Op.LayerNorm, A = x, B = gamma, C = beta, D = mean, E = rstd, I0 = rows, I1 = n };
        Record(ref e, y, x, gamma, beta);
        return y;
    }

    void LayerNormBackward(ref Entry e, Tensor dy)
    {
        bool needX = e.A.RequiresGrad, needP = e.B.RequiresGrad || e.C.RequiresGrad;
        var dx = needX ? GradOf(e.A) : null;
        var dg = needP ? GradOf(e.B) : null; var db = needP ? GradOf(e.C) : null;
        B.LayerNormBackward(dx?.Data, dx?.Offset ?? 0, dg?.Data, dg?.Offset ?? 0, db?.Data, db?.Offset ?? 0, dy.Data, dy.Offset,
            e.A.Data, e.A.Offset, e.B.Data, e.B.Offset, e.D.Data, e.D.Offset, e.E.Data, e.E.Offset, e.I0, e.I1, needX, needP);
    }
}
