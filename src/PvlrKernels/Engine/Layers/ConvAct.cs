// y = LeakyReLU_slope(conv1d(x, w) + bias) * rowMask: the convolution block of the CO2-Net modules
// and the fusion layers. slope 1 is no activation; rowMask (B, T, 1) is optional (a ragged batch zeroes
// the rows between its videos with it).
//   Recording (training): Conv1d, LeakyRelu and Mul on the tape, exactly the unfused ops.
//   Not recording, k = 3 and WinogradTile = m > 0: Winograd F(m,3) (kernels/Winograd.cs): the input
//   transform, n = m + 2 GEMMs (tiles x Cin)(Cin x Cout), and the output transform with bias, activation
//   and mask fused. The GEMMs do n/(3m) of the direct multiplies (8/18 at m = 6). The results equal the
//   direct convolution up to fp32 rounding; U = G w is derived once per FrozenWeights scope.
//   Not recording, one step (T = 1) and m > 0: only the centre tap meets data, one (B x Cin)(Cin x Cout) GEMM.
//   The input may be given as the parts of a channel concatenation: Winograd's input transform reads each
//   part into its own columns of V (PVLR's fusion input [vfeat | ffeat] is never written whole).
using PvlrKernels.Kernels;

namespace PvlrKernels.Engine;

public sealed partial class Graph
{
    /// Winograd tile size for test-time k = 3 convolutions (2, 4 or 6); 0 = direct convolution.
    public int WinogradTile;
    /// Winograd tile size for the recorded (training) forward of k = 3 convolutions; 0 = direct.
    public int TrainWinogradTile;

    Dictionary<int, Storage> winoMats;   // Bt | At | G per tile size, uploaded once per graph

    public Tensor ConvAct(Tensor x, Tensor w, Tensor bias, float slope, Tensor rowMask = null)
    {
        CheckMask(x, rowMask);
        int m = WinogradTile;
        if (m > 0 && !Needs(x, w, bias) && x.Rank == 3 && x.Dim(1) == 1 && w.Rank == 3 && w.Dim(2) == 3)
            return CentreTap(x, w, bias, slope, rowMask);
        if (TakesWinograd(x, w, bias)) return WinogradConv(new[] { x }, w, bias, slope, rowMask, m, out _);
        return ActMask(Conv1d(x, w, bias), slope, rowMask);
    }

    /// LeakyReLU_slope(y) * rowMask on the recorded ops, y (B, T, C): the unfused paths' tail. y is the
    /// caller's fresh result; at test time each step's input goes back to the arena.
    Tensor ActMask(Tensor y, float slope, Tensor rowMask)
    {
        if (slope != 1f)
        {
            var a = LeakyRelu(y, slope);
            Release(y);
            y = a;
        }
        if (rowMask == null) return y;
        var m = Mul(y, Reshape(rowMask, y.Dim(0), y.Dim(1), 1));
        Release(y);
        return m;
    }

    /// conv_act of the channel concatenation of `parts` ((B, T, C_i) each). On the Winograd path the
    /// input transform reads each part into its own columns of V, so the concatenation is never written;
    /// otherwise the parts are concatenated first.
    public Tensor ConvAct(Tensor[] parts, Tensor w, Tensor bias, float slope, Tensor rowMask = null)
    {
        var x = parts[0];
        bool direct = !TakesWinograd(x, w, bias);
        foreach (var p in parts)
            direct |= Needs(p) || p.Rank != 3 || p.Dim(0) != x.Dim(0) || p.Dim(1) != x.Dim(1);
        if (direct || parts.Length == 1) return ConvAct(parts.Length == 1 ? x : Concat(2, parts), w, bias, slope,
            rowMask);
        CheckMask(x, rowMask);
        return WinogradConv(parts, w, bias, slope, rowMask, WinogradTile, out _);
    }

    static void CheckMask(Tensor x, Tensor rowMask)
    {
        if (rowMask != null && (rowMask.Size != (long)x.Dim(0) * x.Dim(1)))
            throw new ShapeException($"conv_act: row mask {rowMask} does not match the rows of {x}");
    }

    // sequences shorter than one tile go direct: one GEMM instead of m + 2 that each pack a whole weight
    // slice for a handful of rows
    bool TakesWinograd(Tensor x, Tensor w, Tensor bias) =>
        !Needs(x, w, bias) && w.Rank == 3 && w.Dim(2) == 3 && WinogradTile > 0 && x.Rank == 3
            && x.Dim(1) >= WinogradTile;

    /// F(m,3); `v`: the input transform (n, B tiles, Cin), which the weight gradient reads (training keeps
    /// it; at test time it is back in the arena when this returns).
    Tensor WinogradConv(Tensor[] parts, Tensor w, Tensor bias, float slope, Tensor rowMask, int m, out Tensor v)
    {
        var x = parts[0];
        int b = x.Dim(0), t = x.Dim(1), cin = parts.Sum(p => p.Dim(2)), cout = w.Dim(0), n = m + 2,
            tiles = (t + m - 1) / m;
        CheckWeight(string.Join(" ++ ", parts.Select(p => p.ToString())), cin, w, bias);
        var mat = WinogradMats(m);
        // U = G w (G follows Bt and At in mat), in the GEMM's own B panels where the backend has them: the n
        // products then pack no B at all
        bool panels = Backend.PanelsFit(cout);
        var u = Derived(w, m, new[] { n, cin, cout }, u => Backend.WinogradWeight(u, w,
            mat.At(n * n + m * n), cin, cout, n, panels));
        var p = new WinoParams { Batch = b, T = t, C = cin, M = m, N = n, Tiles = tiles, Slope = slope, VWidth = cin };
        // V and M die with this call (this path never records): each goes back to the arena as soon as
        // it is read, so the output and the layers after reuse their memory
        v = New(new[] { n, b * tiles, cin });
        int col = 0;
        foreach (var part in parts)
        {
            p.C = part.Dim(2);
            Backend.WinogradIn(v.At(col), part, mat.At(0), p);
            col += p.C;
        }
        var mm = New(new[] { n, b * tiles, cout });
        Backend.Gemm(mm, v, u, new GemmParams
        {
            Batch = n, M = b * tiles, N = cout, K = cin, BatchA = b * tiles * cin, RsA = cin, CsA = 1,
            BatchB = cin * cout, RsB = cout, CsB = 1, BatchC = b * tiles * cout, Ldc = cout, Alpha = 1f, Beta = 0f,
                PanelB = panels ? 1 : 0
        });
        Release(v);
        var yo = New(new[] { b, t, cout });
        p.C = cout;
        p.VWidth = 0;
        Backend.WinogradOut(yo, mm, mat.At(0), bias, rowMask, p);
        Release(mm);
        return yo;
    }

    /// One step (the per-video pooled channel_conv input, T = 1): zero padding meets every tap but the
    /// centre one, so y = x w[:, :, 1] + bias exactly. The centre tap is derived once per FrozenWeights
    /// scope by the weight-transform kernel with G = [0 1 0] (in the GEMM's panel layout where the backend
    /// has one), instead of packing all three taps (12 MB at 1024 channels) for a few rows per call.
    Tensor CentreTap(Tensor x, Tensor w, Tensor bias, float slope, Tensor rowMask)
    {
        CheckWeight(x.ToString(), x.Dim(2), w, bias);
        int b = x.Dim(0), cin = x.Dim(2), cout = w.Dim(0);
        if (centreG == null)
        {
            centreG = Backend.Allocate(3);
            Backend.Upload(centreG.At(0), new[] { 0f, 1f, 0f });
        }
        bool panels = Backend.PanelsFit(cout);
        var wc = Derived(w, 1, new[] { 1, cin, cout }, u => Backend.WinogradWeight(u, w,
            centreG.At(0), cin, cout, 1, panels));
        var y = New(new[] { b, 1, cout });
        Backend.Gemm(y, x, wc, new GemmParams
        {
            Batch = 1, M = b, N = cout, K = cin, RsA = cin, CsA = 1, RsB = cout, CsB = 1, Ldc = cout, Alpha = 1f,
                Beta = 0f, PanelB = panels ? 1 : 0
        });
        return ActMask(bias != null ? Add(y, Reshape(bias, 1, 1, cout)) : y, slope, rowMask);
    }

    Storage centreG;                     // G = [0 1 0]: the centre tap of a k = 3 weight

    static void CheckWeight(string x, int cin, Tensor w, Tensor bias)
    {
        if (w.Dim(1) != cin || (bias != null && bias.Size != w.Dim(0)))
            throw new ShapeException($"conv_act: x {x} (B,T,Cin), weight {w} (Cout,Cin,3), bias "
                + $"{bias?.ToString() ?? "none"}");
    }

    Storage WinogradMats(int m)
    {
        winoMats ??= new();
        if (winoMats.TryGetValue(m, out var s)) return s;
        var (mat, g) = Winograd.Matrices(m);
        s = Backend.Allocate(mat.Length + g.Length);
        Backend.Upload(s.At(0), mat);
        Backend.Upload(s.At(mat.Length), g);
        return winoMats[m] = s;
    }

    void DropWinograd()
    {
        centreG?.Dispose();
        centreG = null;
        if (winoBackward != null) foreach (var (a, f) in winoBackward.Values)
        {
            a.Dispose();
            f.Dispose();
        }
        winoBackward = null;
        if (winoMats == null) return;
        foreach (var s in winoMats.Values) s.Dispose();
        winoMats = null;
    }
}
