// Winograd F(m, 3) for the k = 3, padding 1 convolution over time (test mode, no gradient):
//   per tile of m outputs, d = the m + 2 padded inputs xp[tile*m .. tile*m + m + 1] of each channel,
//   V = Bt d                                   (WinogradIn: n = m + 2 values per tile and channel)
//   M[xi] = V[xi] U[xi],  U[xi] = (G w)[xi]    (n GEMMs over the channels; U derived once per weight)
//   y = act(At M + bias) * rowMask             (WinogradOut, bias, LeakyReLU and the row mask fused)
// Mat holds Bt (n x n) then At (m x n), row-major. Tiles never straddle batch elements; rows past T read
// as zero padding and are not written. A ragged batch laid out as one sequence with zero rows between
// videos needs no special case: a tile that spans two videos computes the same correlation.
namespace PvlrKernels.Kernels;

public struct WinoParams
{
    public int Batch, T, C, M, N, Tiles;   // Tiles per batch element = ceil(T / M); C = channels of this side
    public float Slope;                     // LeakyReLU slope of the output (1 = identity)
    public int HasBias, HasMask;
    public int VWidth;                      // WinogradIn: V's row width (0 = C); a wider V takes C of its columns,
                                            // from the offset given, so the parts of a channel concat go straight in

    public readonly int TotalTiles => Batch * Tiles;
    public readonly int VRow => VWidth > 0 ? VWidth : C;
}

/// U (n, Cin, Cout) = G w from w (Cout, Cin, 3), G (n x 3): one thread per (ci, co). Derived once per
/// frozen weight, so the transposed read of w is not worth tiling on the GPU.
public struct WinogradWeight<TMem> : IKernel where TMem : struct, IMem
{
    public TMem U, W, G;
    public int Cin, Cout, N;
    public void Execute(int i)
    {
        int ci = i / Cout, co = i % Cout, plane = Cin * Cout;
        int w = (co * Cin + ci) * 3;
        float w0 = W[w], w1 = W[w + 1], w2 = W[w + 2];
        for (int xi = 0; xi < N; xi++) U[xi * plane + i] = G[xi * 3] * w0 + G[xi * 3 + 1] * w1 + G[xi * 3 + 2] * w2;
    }
}

/// V (n, Batch*Tiles, VRow) from x (Batch, T, C): one thread per (tile, channel).
public struct WinogradIn<TMem> : IKernel where TMem : struct, IMem
{
    public TMem V, X, Mat;
    public WinoParams P;
    public void Execute(int i)
    {
        int c = i % P.C, tile = i / P.C, b = tile / P.Tiles, t0 = (tile % P.Tiles) * P.M - 1;
        int total = P.TotalTiles;
        for (int xi = 0; xi < P.N; xi++)
        {
            float s = 0f;
            for (int j = 0; j < P.N; j++)
            {
                int t = t0 + j;
                if (t >= 0 && t < P.T) s += Mat[xi * P.N + j] * X[(b * P.T + t) * P.C + c];
            }
            V[(xi * total + tile) * P.VRow + c] = s;
        }
    }
}

/// y (Batch, T, C) = act(At M + bias) * mask from M (n, Batch*Tiles, C): one thread per (tile, channel).
public struct WinogradOut<TMem> : IKernel where TMem : struct, IMem
{
    public TMem Y, Mm, Mat, Bias, Mask;
    public WinoParams P;
    public void Execute(int i)
    {
        int c = i % P.C, tile = i / P.C, b = tile / P.Tiles, t0 = (tile % P.Tiles) * P.M;
        int total = P.TotalTiles, at = P.N * P.N;
        for (int r = 0; r < P.M; r++)
        {
            int t = t0 + r;
            if (t >= P.T) return;
            float s = 0f;
            for (int xi = 0; xi < P.N; xi++) s += Mat[at + r * P.N + xi] * Mm[(xi * total + tile) * P.C + c];
            if (P.HasBias != 0) s += Bias[c];
            s = LeakyReluOp.Forward(s, P.Slope);
            if (P.HasMask != 0) s *= Mask[b * P.T + t];
            Y[(b * P.T + t) * P.C + c] = s;
        }
    }
}
