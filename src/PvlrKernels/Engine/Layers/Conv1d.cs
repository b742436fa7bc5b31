// Conv1d over time-major activations: x (B, T, Cin), torch weight (Cout, Cin, K), padding (K-1)/2,
// y (B, T, Cout). With x zero-padded in time to xp (B, Tp = T + K - 1, Cin), row r of the "virtual"
// matrix A[r] = xp_flat[r*Cin .. r*Cin + K*Cin) is exactly the receptive field of output row r, so
//   forward   yv = A Wr,                     Wr[k*Cin+ci, co] = W[co, ci, k]
//   dW        dWr = A^T dyv,                 dyv = dy padded the same way, viewed (K-1)/2 rows in
//   dX        dxv = A(dyp) Wf,               Wf[j*Cout+co, ci] = W[co, ci, K-1-j]
// all as ONE GEMM each over the B*Tp - (K-1) virtual rows (rows straddling two videos are computed
// and dropped, < 1 % extra work), with no im2col buffer.
using PvlrKernels.Kernels;

namespace PvlrKernels.Engine;

public sealed partial class Graph
{
    /// What the backward reads: the input, the weight, the bias (or null) and the input padded in time;
    /// for a Winograd F(m,3) forward (Tile = m) instead of the padded input, the input transform V
    /// (n, B tiles, Cin) the forward computed.
    readonly record struct Conv1dSaved(Tensor X, Tensor Weight, Tensor Bias, Tensor XPadded, Tensor V = null,
        int Tile = 0)
    {
        public Entry Save() => new() { Op = Op.Conv1d, A = X, B = Weight, C = Bias, D = XPadded, E = V, I0 = Tile };
        public static Conv1dSaved Load(in Entry e) => new(e.A, e.B, e.C, e.D, e.E, e.I0);
    }

    public Tensor Conv1d(Tensor x, Tensor w, Tensor bias)
    {
        if (x.Rank != 3 || w.Rank != 3 || w.Dim(1) != x.Dim(2) || w.Dim(2) % 2 != 1
            || (bias != null && bias.Size != w.Dim(0)))
            throw new ShapeException($"conv1d: x {x} (B,T,Cin), weight {w} (Cout,Cin,K odd), bias "
                + $"{bias?.ToString() ?? "none"}");
        int b = x.Dim(0), t = x.Dim(1), cin = x.Dim(2), cout = w.Dim(0), k = w.Dim(2), pad = (k - 1) / 2,
            tp = t + 2 * pad;
        int rows = b * tp - 2 * pad;
        if (Recording && TrainWinogradTile > 0 && k == 3 && t >= TrainWinogradTile && Needs(x, w, bias))
        {   // training forward by Winograd F(m,3); the backward pads x itself for the weight gradient
            var yw = WinogradConv(new[] { x }, w, bias, 1f, null, TrainWinogradTile, out var v);
            var ew = new Conv1dSaved(x, w, bias, null, v, TrainWinogradTile).Save();
            Record(ref ew, yw, x, w, bias);
            return yw;
        }
        var xp = pad > 0 ? PadTimeRaw(x, pad) : x;
        var wr = Derived(w, 0, new[] { k * cin, cout }, wr =>
            Backend.Copy4(wr, new Strides4 { S1 = cin * cout, S2 = cout, S3 = 1 }, w,
                new Strides4 { S1 = 1, S2 = k, S3 = cin * k }, new Dims4 { N0 = 1, N1 = k, N2 = cin, N3 = cout }, 1f,
                    false));
        var yv = pad > 0 ? New(new[] { b * tp, cout }) : null;
        var y = New(new[] { b, t, cout });
        var dst = yv ?? y;
        if (bias != null)
            Backend.Copy4(dst, new Strides4 { S2 = cout, S3 = 1 }, bias,
                new Strides4 { S3 = 1 }, new Dims4 { N0 = 1, N1 = 1, N2 = rows, N3 = cout }, 1f, false);
        Backend.Gemm(dst, xp, wr, new GemmParams
        { Batch = 1, M = rows, N = cout, K = k * cin, RsA = cin, CsA = 1, RsB = cout, CsB = 1, Ldc = cout, Alpha = 1f,
            Beta = bias != null ? 1f : 0f });
        if (yv != null) CopyRows(y, yv, b, t, tp, cout, false);
        if (pad > 0) Release(xp, yv);                                   // test time: only y outlives the call
        var e = new Conv1dSaved(x, w, bias, xp).Save();
        Record(ref e, y, x, w, bias);
        return y;
    }

    void Conv1dBackward(Conv1dSaved saved, Tensor dy)
    {
        var x = saved.X;
        var w = saved.Weight;
        int b = x.Dim(0), t = x.Dim(1), cin = x.Dim(2), cout = w.Dim(0), k = w.Dim(2), pad = (k - 1) / 2,
            tp = t + 2 * pad, rows = b * tp - 2 * pad;
        // which products run direct: the weight gradient unless the forward ran by Winograd (saved.V), the
        // input gradient unless the training tile applies; only those read dy padded in time
        bool winogradDx = x.RequiresGrad && TrainWinogradTile > 0 && k == 3 && t >= TrainWinogradTile;
        bool directDw = w.RequiresGrad && saved.V == null, directDx = x.RequiresGrad && !winogradDx;
        if (w.RequiresGrad && saved.V != null) WinogradWeightGradient(saved, dy);
        var xp = saved.XPadded ?? x;
        var dyp = pad > 0 && (directDw || directDx) ? PadTimeRaw(dy, pad) : dy;   // (B, Tp, Cout); dyv from row pad
        if (directDw)
        {
            var dwr = New(new[] { k * cin, cout });
            Backend.Gemm(dwr, xp, dyp.At((long)pad * cout), new GemmParams
            { Batch = 1, M = k * cin, N = cout, K = rows, RsA = 1, CsA = cin, RsB = cout, CsB = 1, Ldc = cout,
                Alpha = 1f, Beta = 0f });
            var dw = GradOf(w);
            Backend.Copy4(dw, new Strides4 { S1 = 1, S2 = k, S3 = cin * k }, dwr,
                new Strides4 { S1 = cin * cout, S2 = cout, S3 = 1 },
                new Dims4 { N0 = 1, N1 = k, N2 = cin, N3 = cout }, 1f, true);
        }
        if (saved.Bias != null && saved.Bias.RequiresGrad)
        {
            var db = GradOf(saved.Bias);
            Backend.Reduce(db, dy, default, 1, b * t, cout, ReduceMode.Sum, 1f, true);
        }
        if (winogradDx) WinogradInputGradient(x, w, dy, TrainWinogradTile);
        else if (directDx)
        {
            var wf = New(new[] { k * cout, cin });         // wf[j*Cout+co, ci] = W[co, ci, K-1-j]
            Backend.Copy4(wf, new Strides4 { S1 = cout * cin, S2 = cin, S3 = 1 }, w.At(k - 1),
                new Strides4 { S1 = -1, S2 = cin * k, S3 = k },
                new Dims4 { N0 = 1, N1 = k, N2 = cout, N3 = cin }, 1f, false);
            var dx = GradOf(x);
            if (pad == 0)
                Backend.Gemm(dx, dyp, wf, new GemmParams
                { Batch = 1, M = rows, N = cin, K = k * cout, RsA = cout, CsA = 1, RsB = cin, CsB = 1, Ldc = cin,
                    Alpha = 1f, Beta = 1f });
            else
            {
                var dxv = New(new[] { b * tp, cin });
                Backend.Gemm(dxv, dyp, wf, new GemmParams
                { Batch = 1, M = rows, N = cin, K = k * cout, RsA = cout, CsA = 1, RsB = cin, CsB = 1, Ldc = cin,
                    Alpha = 1f, Beta = 0f });
                CopyRows(dx, dxv, b, t, tp, cin, true);
            }
        }
    }

    /// dx += conv1d(dy, Wt), Wt[ci, co, j] = W[co, ci, 2 - j], by Winograd F(m,3): the transform of Wt is
    /// G' w with G' = G's columns reversed, taken in the (Cin, Cout) layout of the forward's U and read
    /// transposed by the products, so Wt itself is never written.
    void WinogradInputGradient(Tensor x, Tensor w, Tensor dy, int m)
    {
        int n = m + 2, b = x.Dim(0), t = x.Dim(1), cin = x.Dim(2), cout = w.Dim(0), tiles = (t + m - 1) / m;
        var mat = WinogradMats(m);
        var (adjoint, flipped) = BackwardMats(m);
        var p = new WinoParams { Batch = b, T = t, C = cout, M = m, N = n, Tiles = tiles, Slope = 1f, VWidth = cout };
        var v = New(new[] { n, b * tiles, cout });
        Backend.WinogradIn(v, dy, mat.At(0), p);
        var u = New(new[] { n, cin, cout });
        Backend.WinogradWeight(u, w, flipped.At(0), cin, cout, n);
        var mm = New(new[] { n, b * tiles, cin });
        Backend.Gemm(mm, v, u, new GemmParams
        {
            Batch = n, M = b * tiles, N = cin, K = cout, BatchA = b * tiles * cout, RsA = cout, CsA = 1,
            BatchB = cin * cout, RsB = 1, CsB = cout, BatchC = b * tiles * cin, Ldc = cin, Alpha = 1f, Beta = 0f
        });
        var dxw = New(x.Shape);
        p.C = cin;
        p.VWidth = 0;
        Backend.WinogradOut(dxw, mm, mat.At(0), default, default, p);
        var dx = GradOf(x);
        Backend.Copy4(dx, new Strides4 { S3 = 1 }, dxw, new Strides4 { S3 = 1 },
            new Dims4 { N0 = 1, N1 = 1, N2 = 1, N3 = (int)dx.Size }, 1f, true);
    }

    /// dW of a Winograd F(m,3) forward y = At[(G w) . V]: dU[n] = (A dy)[n]^T V[n] over the tiles, one
    /// product per point n, in (Cout, Cin) layout, then dW (Cout Cin, 3) += dU^T G, written straight into
    /// dW's own layout. (A dy) is the input transform of dy with the adjoint of the output transform (rows
    /// j = 1..m of a tile's window take At's column, the rest 0).
    void WinogradWeightGradient(Conv1dSaved saved, Tensor dy)
    {
        var x = saved.X;
        var w = saved.Weight;
        var v = saved.V;
        int m = saved.Tile, n = m + 2, b = x.Dim(0), t = x.Dim(1), cin = x.Dim(2), cout = w.Dim(0),
            tiles = (t + m - 1) / m;
        var mat = WinogradMats(m);
        var dyt = New(new[] { n, b * tiles, cout });
        Backend.WinogradIn(dyt, dy, BackwardMats(m).adjoint.At(0), new WinoParams
            { Batch = b, T = t, C = cout, M = m, N = n, Tiles = tiles, Slope = 1f, VWidth = cout });
        var du = New(new[] { n, cout, cin });
        Backend.Gemm(du, dyt, v, new GemmParams
        {
            Batch = n, M = cout, N = cin, K = b * tiles, BatchA = b * tiles * cout, RsA = 1, CsA = cout,
            BatchB = b * tiles * cin, RsB = cin, CsB = 1, BatchC = cout * cin, Ldc = cin, Alpha = 1f, Beta = 0f
        });
        var dw = GradOf(w);                                 // dw[co, ci, k] += sum_n dU[n, co, ci] G[n, k]
        Backend.Gemm(dw, du, mat.At((long)n * n + m * n), new GemmParams
        {
            Batch = 1, M = cout * cin, N = 3, K = n, RsA = 1, CsA = cout * cin, RsB = 3, CsB = 1, Ldc = 3,
            Alpha = 1f, Beta = 1f
        });
    }

    Dictionary<int, (Storage adjoint, Storage flipped)> winoBackward;

    /// Per m, for the backward: the (n x n) matrix whose rows give (A dy) from a tile's window of dy
    /// (WinogradIn's layout, padded to the transform's checked extent), and G with its columns reversed.
    (Storage adjoint, Storage flipped) BackwardMats(int m)
    {
        winoBackward ??= new();
        if (winoBackward.TryGetValue(m, out var s)) return s;
        int n = m + 2;
        var (mat, g) = Winograd.Matrices(m);
        var adj = new float[n * n + m * n];
        for (int r = 0; r < n; r++)
            for (int j = 1; j <= m; j++) adj[r * n + j] = mat[n * n + (j - 1) * n + r];
        var flip = new float[n * 3];
        for (int r = 0; r < n; r++) for (int k = 0; k < 3; k++) flip[r * 3 + k] = g[r * 3 + 2 - k];
        s = (Backend.Allocate(adj.Length), Backend.Allocate(flip.Length));
        Backend.Upload(s.adjoint.At(0), adj);
        Backend.Upload(s.flipped.At(0), flip);
        return winoBackward[m] = s;
    }

    /// (B, T, C) -> zero-padded (B, T + 2 pad, C), not recorded (the conv's backward handles it).
    Tensor PadTimeRaw(Tensor x, int pad)
    {
        int b = x.Dim(0), t = x.Dim(1), c = x.Dim(2);
        var y = New(new[] { b, t + 2 * pad, c }, zero: true);
        Backend.Copy4(y.At((long)pad * c), new Strides4 { S1 = (t + 2 * pad) * c, S2 = c, S3 = 1 },
            x, new Strides4 { S1 = t * c, S2 = c, S3 = 1 },
            new Dims4 { N0 = 1, N1 = b, N2 = t, N3 = c }, 1f, false);
        return y;
    }

    /// dst (B, T, C) (+)= the valid rows of a virtual-row buffer src (B*Tp, C).
    void CopyRows(Tensor dst, Tensor src, int b, int t, int tp, int c, bool accumulate) =>
        Backend.Copy4(dst, new Strides4 { S1 = t * c, S2 = c, S3 = 1 }, src,
            new Strides4 { S1 = tp * c, S2 = c, S3 = 1 },
            new Dims4 { N0 = 1, N1 = b, N2 = t, N3 = c }, 1f, accumulate);
}
