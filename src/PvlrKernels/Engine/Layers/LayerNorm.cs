// LayerNorm over the last axis, eps 1e-5 (CLIP's LayerNorm). Saves mean and rstd per row.
namespace PvlrKernels.Engine;

public sealed partial class Graph
{
    /// What the backward reads: the input, gamma, beta, each row's mean and 1/std, and the row shape.
    readonly record struct LayerNormSaved(Tensor X, Tensor Gamma, Tensor Beta, Tensor Mean, Tensor Rstd, int Rows,
        int N)
    {
        public Entry Save() => new() { Op = Op.LayerNorm, A = X, B = Gamma, C = Beta, D = Mean, E = Rstd, I0 = Rows,
            I1 = N };
        public static LayerNormSaved Load(in Entry e) => new(e.A, e.B, e.C, e.D, e.E, e.I0, e.I1);
    }

    public Tensor LayerNorm(Tensor x, Tensor gamma, Tensor beta, float eps = 1e-5f)
    {
        int n = x.Dim(-1), rows = (int)(x.Size / n);
        if (gamma.Size != n || beta.Size != n) throw new ShapeException($"layernorm: {x} with gamma {gamma} and beta {beta}");
        var y = New(x.Shape); var mean = New(new[] { rows }); var rstd = New(new[] { rows });
        Backend.LayerNorm(y.Data, y.Offset, mean.Data, mean.Offset, rstd.Data, rstd.Offset, x.Data, x.Offset,
            gamma.Data, gamma.Offset, beta.Data, beta.Offset, rows, n, eps);
        var e = new LayerNormSaved(x, gamma, beta, mean, rstd, rows, n).Save();
        Record(ref e, y, x, gamma, beta);
        return y;
    }

    void LayerNormBackward(LayerNormSaved saved, Tensor dy)
    {
        var (x, gamma, beta) = (saved.X, saved.Gamma, saved.Beta);
        bool needX = x.RequiresGrad, needParams = gamma.RequiresGrad || beta.RequiresGrad;
        var dx = needX ? GradOf(x) : null;
        var dGamma = needParams ? GradOf(gamma) : null; var dBeta = needParams ? GradOf(beta) : null;
        Backend.LayerNormBackward(dx?.Data, dx?.Offset ?? 0, dGamma?.Data, dGamma?.Offset ?? 0, dBeta?.Data,
            dBeta?.Offset ?? 0,
            dy.Data, dy.Offset, x.Data, x.Offset, gamma.Data, gamma.Offset, saved.Mean.Data, saved.Mean.Offset,
            saved.Rstd.Data, saved.Rstd.Offset, saved.Rows, saved.N, needX, needParams);
    }
}
