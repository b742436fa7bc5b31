// FTCL's two sequence alignments of a pair of ordered snippet sets (MengyuanChen21/CVPR2022-FTCL
// utils/ftcl_criterion.py:86-146), over P pairs of L x L similarity matrices, 1-based tables with a zero
// row and column 0:
//   FSD: C_ij = M_ij + smax_gamma(C_i-1,j-1, G_ij + C_i-1,j, G_ij + C_i,j-1),
//        smax_gamma(z) = gamma log sum_k exp(z_k / gamma) (net_utils.py:8-18 maxGamma); value C_LL.
//   LCS: C_ij = C_i-1,j-1 + S_ij if S_ij > threshold, else max(C_i-1,j, C_i,j-1), Python's max keeping
//        C_i-1,j on a tie; value C_LL.
// Backward. FSD: with w_ij the soft-max weights of cell (i, j)'s three candidates and E_ij = dC_LL/dC_ij,
//   E_LL = 1,  E_ij = E_i+1,j+1 w_i+1,j+1[diag] + E_i+1,j w_i+1,j[up] + E_i,j+1 w_i,j+1[left],
//   dM_ij += dy E_ij,  dG_ij += dy E_ij (w_ij[up] + w_ij[left])   (the boundary is constant zero).
// LCS: the table's hard choices form one path from (L, L); dS_ij += dy on each diagonal step of it.
// Each cell's math is in FsdCell / LcsCell (IAlignCell). Two launch forms run the forward: one thread
// per pair sweeping its table row by row (AlignForwardPair: the CPU, and any accelerator), and one group
// per pair (SequenceAlignmentGroups: the table in shared memory, the threads sweeping anti-diagonals);
// both write the same tables.
using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Algorithms;

namespace PvlrKernels.Kernels;

public struct AlignParams
{
    public int Pairs, L;
    /// FSD: the soft max's temperature gamma. LCS: the similarity threshold.
    public float Scalar;
    public readonly int Side => L + 1;                 // table side, with the zero row and column
    public readonly int Cells => L * L;                // per pair: matrix entries, weight triples, choices
}

/// One cell rule of an alignment: a cell's value from its inputs p, q (FSD: M, G; LCS: S twice) and its
/// three neighbours, writing what the backward keeps of it (AuxPerCell floats at aux[AuxPerCell x]).
public interface IAlignCell
{
    static abstract int AuxPerCell { get; }
    static abstract float Forward<TMem>(TMem p, TMem q, TMem aux, int x, float diag, float up, float left,
        float scalar) where TMem : struct, IMem;
}

/// One FSD cell: its value and the soft-max weights of (diag, up, left), as maxGamma computes them:
/// z = candidates / gamma, m = max z, C = M + gamma (m + log sum exp(z - m)).
public struct FsdCell : IAlignCell
{
    public static int AuxPerCell => 3;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Forward<TMem>(TMem p, TMem q, TMem aux, int x, float diag, float up, float left, float gamma)
        where TMem : struct, IMem
    {
        float z0 = diag / gamma, z1 = (q[x] + up) / gamma, z2 = (q[x] + left) / gamma;
        float zMax = XMath.Max(z0, XMath.Max(z1, z2));
        float e0 = XMath.Exp(z0 - zMax), e1 = XMath.Exp(z1 - zMax), e2 = XMath.Exp(z2 - zMax), sum = e0 + e1 + e2;
        aux[3 * x] = e0 / sum;
        aux[3 * x + 1] = e1 / sum;
        aux[3 * x + 2] = e2 / sum;
        return p[x] + gamma * (zMax + XMath.Log(sum));
    }

    /// E of cell (i, j) from its three successors' E and weights (zero outside the table).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Adjoint(float eDiag, float wDiag, float eDown, float wUp, float eRight, float wLeft) =>
        eDiag * wDiag + eDown * wUp + eRight * wLeft;
}

/// One LCS cell: its value and choice (Diag, Up, Left).
public struct LcsCell : IAlignCell
{
    public const float Diag = 0f, Up = 1f, Left = 2f;
    public static int AuxPerCell => 1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Forward<TMem>(TMem p, TMem q, TMem aux, int x, float diag, float up, float left,
        float threshold) where TMem : struct, IMem
    {
        float s = p[x];
        if (s > threshold)
        {
            aux[x] = Diag;
            return diag + s;
        }
        if (left > up)
        {
            aux[x] = Left;
            return left;
        }
        aux[x] = Up;
        return up;
    }
}

/// Either alignment's forward, one thread per pair: Table (P, L+1, L+1) and Aux (P, L, L, AuxPerCell)
/// written, Value (P).
public struct AlignForwardPair<TMem, TCell> : IKernel where TMem : struct, IMem where TCell : struct, IAlignCell
{
    public TMem Value, Table, Aux, P, Q;
    public AlignParams A;
    public void Execute(int pair)
    {
        int side = A.Side, t0 = pair * side * side, c0 = pair * A.Cells;
        for (int k = 0; k < side; k++)
        {
            Table[t0 + k] = 0f;
            Table[t0 + k * side] = 0f;
        }
        for (int i = 1; i <= A.L; i++)
            for (int j = 1; j <= A.L; j++)
            {
                int t = t0 + i * side + j;
                Table[t] = TCell.Forward(P, Q, Aux, c0 + (i - 1) * A.L + j - 1, Table[t - side - 1], Table[t - side],
                    Table[t - 1], A.Scalar);
            }
        Value[pair] = Table[t0 + A.L * side + A.L];
    }
}

/// FSD backward, one thread per pair; Adjoint (P, L+2, L+2) is scratch (row and column L+1 zero).
public struct FsdBackwardPair<TMem> : IKernel where TMem : struct, IMem
{
    public TMem DM, DG, Adjoint, DValue, Weights;
    public AlignParams A;
    public void Execute(int pair)
    {
        int side = A.L + 2, e0 = pair * side * side, c0 = pair * A.Cells;
        for (int k = 0; k < side; k++)
        {
            Adjoint[e0 + A.L * side + side + k] = 0f;
            Adjoint[e0 + k * side + A.L + 1] = 0f;
        }
        float dy = DValue[pair];
        for (int i = A.L; i >= 1; i--)
            for (int j = A.L; j >= 1; j--)
            {
                int e = e0 + i * side + j, c = c0 + (i - 1) * A.L + j - 1;
                float adj = i == A.L && j == A.L ? 1f : FsdCell.Adjoint(Adjoint[e + side + 1], W(i + 1, j + 1, 0, c0),
                    Adjoint[e + side], W(i + 1, j, 1, c0), Adjoint[e + 1], W(i, j + 1, 2, c0));
                Adjoint[e] = adj;
                DM[c] = DM[c] + dy * adj;
                DG[c] = DG[c] + dy * adj * (Weights[3 * c + 1] + Weights[3 * c + 2]);
            }
    }

    /// Weight k of cell (i, j), 0 outside the table.
    readonly float W(int i, int j, int k, int c0) =>
        i > A.L || j > A.L ? 0f : Weights[3 * (c0 + (i - 1) * A.L + j - 1) + k];
}

/// LCS backward, one thread per pair: walks the chosen path from (L, L) back to row or column 0.
public struct LcsBackwardPair<TMem> : IKernel where TMem : struct, IMem
{
    public TMem DS, DValue, Choice;
    public AlignParams A;
    public void Execute(int pair)
    {
        int c0 = pair * A.Cells, i = A.L, j = A.L;
        float dy = DValue[pair];
        while (i > 0 && j > 0)
        {
            int c = c0 + (i - 1) * A.L + j - 1;
            float choice = Choice[c];
            if (choice == LcsCell.Diag)
            {
                DS[c] = DS[c] + dy;
                i--;
                j--;
            }
            else if (choice == LcsCell.Up) i--;
            else j--;
        }
    }
}

/// The group-per-pair forms for a GPU: group X = pair, the group's threads take the rows of each
/// anti-diagonal in turn (a barrier between diagonals), the table in shared memory, the outputs as the
/// per-pair forms write them. Sides up to MaxSide.
public static class SequenceAlignmentGroups
{
    public const int MaxSide = 64;
    const int TableFloats = (MaxSide + 2) * (MaxSide + 2);

    public static void Forward<TCell>(AlignParams a, ArrayView<float> value, ArrayView<float> table,
        ArrayView<float> aux, ArrayView<float> p, ArrayView<float> q) where TCell : struct, IAlignCell
    {
        var c = SharedMemory.Allocate<float>(TableFloats);
        int pair = Grid.IdxX, tid = Group.IdxX, nt = Group.DimX, side = a.Side, l = a.L, c0 = pair * a.Cells;
        ViewMem pm = new(p), qm = new(q), am = new(aux);
        for (int k = tid; k < side * side; k += nt) c[k] = 0f;
        Group.Barrier();
        for (int d = 2; d <= 2 * l; d++)
        {
            for (int i = XMath.Max(1, d - l) + tid; i <= XMath.Min(l, d - 1); i += nt)
            {
                int j = d - i, t = i * side + j;
                c[t] = TCell.Forward(pm, qm, am, c0 + (i - 1) * l + j - 1, c[t - side - 1], c[t - side], c[t - 1],
                    a.Scalar);
            }
            Group.Barrier();
        }
        for (int k = tid; k < side * side; k += nt) table[pair * side * side + k] = c[k];
        if (tid == 0) value[pair] = c[l * side + l];
    }

    public static void FsdBackward(AlignParams a, ArrayView<float> dm, ArrayView<float> dg, ArrayView<float> dValue,
        ArrayView<float> weights)
    {
        var e = SharedMemory.Allocate<float>(TableFloats);
        int pair = Grid.IdxX, tid = Group.IdxX, nt = Group.DimX, side = a.L + 2, l = a.L, c0 = pair * a.Cells;
        for (int k = tid; k < side * side; k += nt) e[k] = 0f;
        Group.Barrier();
        float dy = dValue[pair];
        for (int d = 2 * l; d >= 2; d--)
        {
            for (int i = XMath.Max(1, d - l) + tid; i <= XMath.Min(l, d - 1); i += nt)
            {
                int j = d - i, t = i * side + j, x = c0 + (i - 1) * l + j - 1;
                float adj = d == 2 * l ? 1f : FsdCell.Adjoint(e[t + side + 1], W(a, weights, c0, i + 1, j + 1, 0),
                    e[t + side], W(a, weights, c0, i + 1, j, 1), e[t + 1], W(a, weights, c0, i, j + 1, 2));
                e[t] = adj;
                dm[x] += dy * adj;
                dg[x] += dy * adj * (weights[3 * x + 1] + weights[3 * x + 2]);
            }
            Group.Barrier();
        }
    }

    static float W(AlignParams a, ArrayView<float> w, int c0, int i, int j, int k) =>
        i > a.L || j > a.L ? 0f : w[3 * (c0 + (i - 1) * a.L + j - 1) + k];
}
