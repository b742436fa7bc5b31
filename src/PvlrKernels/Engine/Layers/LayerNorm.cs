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
        if (gamma.Size != n || beta.Size != n)
            throw new ShapeException($"layernorm: {x} with gamma {gamma} and beta {beta}");
        var y = New(x.Shape);
        var mean = New(new[] { rows });
        var rstd = New(new[] { rows });
        Backend.LayerNorm(y, mean, rstd, x, gamma, beta, rows, n, eps);
        var e = new LayerNormSaved(x, gamma, beta, mean, rstd, rows, n).Save();
        Record(ref e, y, x, gamma, beta);
        return y;
    }

    void LayerNormBackward(LayerNormSaved saved, Tensor dy)
    {
        var (x, gamma, beta) = (saved.X, saved.Gamma, saved.Beta);
        bool needX = x.RequiresGrad, needParams = gamma.RequiresGrad || beta.RequiresGrad;
        var dx = needX ? GradOf(x) : null;
        var dGamma = needParams ? GradOf(gamma) : null;
        var dBeta = needParams ? GradOf(beta) : null;
        Backend.LayerNormBackward(dx, dGamma, dBeta, dy, x, gamma, saved.Mean,
            saved.Rstd, saved.Rows, saved.N, needX, needParams);
    }
}
