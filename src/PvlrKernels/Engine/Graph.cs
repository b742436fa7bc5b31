// The autograd tape. The forward runs eagerly and appends one Entry per op; Backward replays the
// entries in reverse. Entries are plain structs naming the op plus the tensors and scalars it saved,
// so no closure is allocated per op. Each layer file writes and reads its entries only through a small
// named record next to its forward (Conv1dSaved: X, Weight, Bias, XPadded), never by slot. Conventions (as llm.c):
// parameter and activation gradients always accumulate (+=), so fan-out needs no special case.
namespace PvlrKernels.Engine;

public enum Op
{
    Generic, Copy, Reduce, Gather, Softmax, LayerNorm, L2Norm, Attention, Kl, MatMul, Linear, Conv1d, Fsd, Lcs
}

/// Storage slots of one tape entry; each op's `...Saved` record gives them names (Save/Load).
public struct Entry
{
    public Op Op;
    public GenericRule Rule;        // Op.Generic: the op's backward (Unary<TOp>, Binary<TOp>)
    public Tensor Out, A, B, C, D, E, F;
    public int I0, I1, I2, I3, I4;
    public float F0;
    public Kernels.Dims4 Dims;
    public Kernels.Strides4 S0, S1;
}

public sealed partial class Graph : IDisposable
{
    public readonly Backend Backend;
    public readonly Arena Act;
    public readonly ParameterStore Params;
    public IRandomSource Rng;
    public bool Training = true;
    readonly List<Entry> tape = new(1024);
    int noGrad;

    public Graph(Backend backend, ParameterStore parameters, IRandomSource rng = null, long arenaFloats = 0)
    {
        Backend = backend;
        Params = parameters;
        Rng = rng;
        Act = new Arena(backend, arenaFloats);
    }

    public int TapeLength => tape.Count;
    public bool Recording => noGrad == 0;

    public IDisposable NoGrad()
    {
        noGrad++;
        return new Scope(this);
    }
    sealed class Scope(Graph g) : IDisposable { public void Dispose() => g.noGrad--; }

    /// Drops the tape and recycles the activation arena (every tensor of the last step becomes invalid).
    public void Reset()
    {
        tape.Clear();
        Act.Reset();
    }

    // Weight layouts derived once per FrozenWeights scope (the Conv1d GEMM layout, Winograd's U), outside
    // the arena, keyed by the weight and which derivation (0 = conv layout, m = Winograd F(m,3)).
    Dictionary<(Storage, long, int), (Tensor t, Storage own)> frozen;

    /// The floats the FrozenWeights scope holds in weight layouts derived so far (0 outside one).
    public long FrozenFloats => frozen?.Values.Sum(v => v.t.Size) ?? 0;

    /// A scope in which the caller promises that no parameter changes (test-time inference over many
    /// videos): ops may then cache what they derive from a weight (Conv1d's GEMM layout of its kernel)
    /// across Reset() calls instead of re-deriving it per video. The cache is freed when the scope ends.
    public IDisposable FrozenWeights()
    {
        frozen ??= new();
        return new FrozenScope(this);
    }
    sealed class FrozenScope(Graph g) : IDisposable
    {
        public void Dispose() => g.DropFrozen();
    }

    void DropFrozen()
    {
        if (frozen == null) return;
        foreach (var v in frozen.Values) v.own.Dispose();
        frozen = null;
    }

    /// The cached derived tensor for `w` inside a FrozenWeights scope, else a fresh arena tensor that `derive` fills.
    Tensor Derived(Tensor w, int kind, int[] shape, Action<Tensor> derive)
    {
        if (frozen == null || Recording)
        {
            var t = New(shape);
            derive(t);
            return t;
        }
        if (frozen.TryGetValue((w.Data, w.Offset, kind), out var hit)) return hit.t;
        var own = Backend.Allocate(Tensor.Numel(shape));
        var c = new Tensor(own, 0, shape);
        derive(c);
        frozen[(w.Data, w.Offset, kind)] = (c, own);
        return c;
    }

    public Tensor New(int[] shape, bool zero = false)
    {
        foreach (var d in shape) if (d < 0) throw new ShapeException($"negative dimension in {Tensor.ShapeStr(shape)}");
        var (s, o) = Act.Alloc(Tensor.Numel(shape));
        var t = new Tensor(s, o, (int[])shape.Clone());
        if (zero) Backend.Fill(s.At(o), t.Size, 0f);
        return t;
    }

    /// Outside recording (a test-time forward), hands the arena blocks of tensors that nothing reads any
    /// more back for the rest of the step; each must be a whole allocation (New's result or a Reshape of
    /// it). While recording, a no-op: the tape still holds them for backward.
    public void Release(params Tensor[] ts)
    {
        if (Recording) return;
        foreach (var t in ts) Act.Release(t.Data, t.Offset);
    }

    public Tensor FromHost(ReadOnlySpan<float> data, params int[] shape)
    {
        if (data.Length != Tensor.Numel(shape))
            throw new ShapeException($"from_host: {data.Length} values for shape {Tensor.ShapeStr(shape)}");
        var t = New(shape);
        Backend.Upload(t, data);
        return t;
    }

    public Tensor Scalar(float v) => FromHost(new[] { v }, 1);
    public Tensor Full(float v, params int[] shape)
    {
        var t = New(shape);
        Backend.Fill(t, t.Size, v);
        return t;
    }

    public float[] ToHost(Tensor t)
    {
        var a = new float[t.Size];
        Backend.Download(t, a);
        return a;
    }
    public float Item(Tensor t)
    {
        Span<float> a = stackalloc float[1];
        Backend.Download(t, a);
        return a[0];
    }

    /// A new shape over the same data (one dimension may be -1); shares the gradient with its base.
    public Tensor Reshape(Tensor x, params int[] shape)
    {
        shape = (int[])shape.Clone();
        int neg = Array.IndexOf(shape, -1);
        if (neg >= 0)
        {
            long rest = 1;
            for (int i = 0; i < shape.Length; i++) if (i != neg) rest *= shape[i];
            if (rest == 0 || x.Size % rest != 0)
                throw new ShapeException($"reshape: {x} cannot become {Tensor.ShapeStr(shape)}");
            shape[neg] = (int)(x.Size / rest);
        }
        if (Tensor.Numel(shape) != x.Size)
            throw new ShapeException($"reshape: {x} has {x.Size} elements, {Tensor.ShapeStr(shape)} needs "
                + $"{Tensor.Numel(shape)}");
        return View(x, 0, shape);
    }

    /// Rows [start, start+count) of the first axis, without a copy.
    public Tensor SliceRows(Tensor x, int start, int count)
    {
        if (start < 0 || count < 0 || start + count > x.Shape[0])
            throw new ShapeException($"slice_rows: [{start}, {start + count}) outside {x}");
        var shape = (int[])x.Shape.Clone();
        shape[0] = count;
        return View(x, start * (x.Size / Math.Max(1, x.Shape[0])), shape);
    }

    Tensor View(Tensor x, long off, int[] shape)
    {
        var root = x.ViewOf ?? x;
        long rootOff = (x.ViewOf != null ? x.ViewOffset : 0) + off;
        return new Tensor(x.Data, x.Offset + off, shape)
        { RequiresGrad = x.RequiresGrad, ViewOf = root, ViewOffset = rootOff, Param = null, Name = x.Name };
    }

    public Tensor Detach(Tensor x) => new(x.Data, x.Offset, x.Shape) { Name = x.Name };

    bool Needs(params Tensor[] inputs)
    {
        if (noGrad > 0) return false;
        foreach (var t in inputs) if (t != null && t.RequiresGrad) return true;
        return false;
    }

    void Record(ref Entry e, Tensor output, params Tensor[] inputs)
    {
        if (!Needs(inputs)) return;
        output.RequiresGrad = true;
        e.Out = output;
        tape.Add(e);
    }

    /// The gradient buffer of t, allocated zero-filled on first use (views resolve to their base's).
    internal Tensor GradOf(Tensor t)
    {
        if (t.ViewOf != null)
        {
            var bg = GradOf(t.ViewOf);
            return new Tensor(bg.Data, bg.Offset + t.ViewOffset, t.Shape);
        }
        if (t.Param != null)
        {
            t.Param.GotGrad = true;
            return t.Param.GradTensor;
        }
        if (t.Grad == null) t.Grad = New(t.Shape, zero: true);
        return t.Grad;
    }

    static bool HasGrad(Tensor t) => t.ViewOf != null ? HasGrad(t.ViewOf) : (t.Param != null
        ? t.Param.GotGrad : t.Grad != null);

    /// Seeds d(loss) = 1 for a one-element loss and replays the tape backwards.
    public void Backward(Tensor loss)
    {
        if (loss.Size != 1) throw new ShapeException($"backward: loss must have one element, got {loss}");
        if (!loss.RequiresGrad)
            throw new InvalidOperationException("backward: the loss does not depend on any trainable tensor");
        Backend.Fill(GradOf(loss), 1, 1f);
        for (int i = tape.Count - 1; i >= 0; i--)
        {
            var e = tape[i];
            if (!HasGrad(e.Out)) continue;
            var dy = GradOf(e.Out);
            switch (e.Op)
            {
                case Op.Generic: e.Rule.Backward(this, ref e, dy); break;
                case Op.Copy: CopyBackward(CopySaved.Load(e), dy); break;
                case Op.Reduce: ReduceBackward(ReduceSaved.Load(e), dy); break;
                case Op.Gather: GatherBackward(GatherSaved.Load(e), dy); break;
                case Op.Softmax: SoftmaxBackward(SoftmaxSaved.Load(e), e.Out, dy); break;
                case Op.LayerNorm: LayerNormBackward(LayerNormSaved.Load(e), dy); break;
                case Op.L2Norm: L2NormBackward(L2NormSaved.Load(e), e.Out, dy); break;
                case Op.Attention: AttentionBackward(AttentionSaved.Load(e), dy); break;
                case Op.Kl: KlBackward(KlSaved.Load(e), dy); break;
                case Op.MatMul: MatMulBackward(MatMulSaved.Load(e), dy); break;
                case Op.Linear: LinearBackward(LinearSaved.Load(e), dy); break;
                case Op.Conv1d: Conv1dBackward(Conv1dSaved.Load(e), dy); break;
                case Op.Fsd: FsdBackward(AlignSaved.Load(e), dy); break;
                case Op.Lcs: LcsBackward(AlignSaved.Load(e), dy); break;
                default: throw new InvalidOperationException($"no backward for {e.Op}");
            }
        }
    }

    /// [outer, n, inner] view of a tensor around one axis.
    internal static (int outer, int n, int inner) Around(Tensor x, int axis, string op)
    {
        if (axis < 0) axis += x.Rank;
        if (axis < 0 || axis >= x.Rank) throw new ShapeException($"{op}: axis out of range for {x}");
        int outer = 1, inner = 1;
        for (int i = 0; i < axis; i++) outer *= x.Shape[i];
        for (int i = axis + 1; i < x.Rank; i++) inner *= x.Shape[i];
        return (outer, x.Shape[axis], inner);
    }

    internal static int[] WithDim(int[] s, int axis,
        int v) { var r = (int[])s.Clone(); r[axis < 0 ? axis + s.Length : axis] = v; return r; }

    internal static void SameShape(string op, Tensor a, Tensor b)
    {
        if (!a.Shape.AsSpan().SequenceEqual(b.Shape)) throw new ShapeException($"{op}: shapes differ, {a} vs {b}");
    }

    public void Dispose()
    {
        DropFrozen();
        DropWinograd();
        Act.Dispose();
    }
}
