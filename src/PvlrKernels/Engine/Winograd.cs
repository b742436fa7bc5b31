// The transform matrices of Winograd F(m, 3) (kernels/Winograd.cs), built by Toom-Cook in float64.
// A k = 3 correlation y[i] = sum_k g[k] d[i+k] (i < m, d of n = m + 2 values) is the transpose of the
// linear convolution s = g * h (h of m values). Toom-Cook evaluates g and h at n - 1 points plus infinity
// (Eg, Eh), multiplies pointwise and interpolates (C), so conv = C diag(Eg g) Eh and therefore
//   correlation = Eh^T diag(Eg g) C^T:   At = Eh^T (m x n),  G = Eg (n x 3),  Bt = C^T (n x n).
// Points 0, +-1, +-2, +-1/2, ... keep the fp32 rounding of 1-D transforms near that of direct summation.
namespace PvlrKernels.Engine;

public static class Winograd
{
    static readonly double[] Points = { 0, 1, -1, 2, -2, 0.5, -0.5, 3, -3 };

    /// The tile sizes with a transform: 2, 4, 6 (n = 4, 6, 8 multiplies per channel pair and tile).
    public static bool Supported(int m) => m is 2 or 4 or 6;

    /// Bt (n x n) then At (m x n), row-major, as kernels/Winograd.cs reads them; and G (n x 3).
    public static (float[] mat, float[] g) Matrices(int m)
    {
        if (!Supported(m)) throw new ArgumentException($"winograd: no F({m},3) transform (tile 2, 4 or 6)");
        const int r = 3;
        int n = m + r - 1, f = n - 1;
        double[] a = Points[..f];
        var eg = new double[n, r];
        var eh = new double[n, m];
        for (int i = 0; i < f; i++)
        {
            for (int k = 0; k < r; k++) eg[i, k] = Math.Pow(a[i], k);
            for (int q = 0; q < m; q++) eh[i, q] = Math.Pow(a[i], q);
        }
        eg[f, r - 1] = 1; eh[f, m - 1] = 1;                    // infinity: the leading coefficients
        // s[0..f) = V^-1 (P[0..f) - P_inf a^f), s[f] = P_inf, with V the f x f Vandermonde of the points
        var vinv = Invert(Vandermonde(a));
        var c = new double[n, n];
        for (int i = 0; i < f; i++)
        {
            double col = 0;
            for (int j = 0; j < f; j++)
            {
                c[i, j] = vinv[i, j];
                col -= vinv[i, j] * Math.Pow(a[j], f);
            }
            c[i, f] = col;
        }
        c[f, f] = 1;
        var mat = new float[n * n + m * n];
        var g = new float[n * r];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) mat[i * n + j] = (float)c[j, i];          // Bt = C^T
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) mat[n * n + i * n + j] = (float)eh[j, i];  // At = Eh^T
        for (int i = 0; i < n; i++)
            for (int k = 0; k < r; k++) g[i * r + k] = (float)eg[i, k];
        return (mat, g);
    }

    static double[,] Vandermonde(double[] a)
    {
        int f = a.Length;
        var v = new double[f, f];
        for (int i = 0; i < f; i++) for (int j = 0; j < f; j++) v[i, j] = Math.Pow(a[i], j);
        return v;
    }

    static double[,] Invert(double[,] v) =>
        MathNet.Numerics.LinearAlgebra.Matrix<double>.Build.DenseOfArray(v).Inverse().ToArray();
}
