// Activation arena: bump allocation inside one backend buffer, reset (not freed) every step. If a step
// needs more than the current chunk, more chunks are added during that step and merged into one chunk
// of the peak size at the next reset, so a steady-state step allocates no device memory.
namespace PvlrKernels.Engine;

public sealed class Arena : IDisposable
{
    const long Align = 16;                 // 64 bytes
    readonly Backend backend;
    readonly List<Storage> chunks = new();
    long used, peak, totalUsed;
    public long Allocations { get; private set; }   // device allocations made so far (for tests)

    public Arena(Backend backend, long initial = 1 << 20)
    {
        this.backend = backend;
        chunks.Add(backend.Allocate(initial)); Allocations = 1;
    }

    public long Capacity => chunks.Sum(c => c.Length);

    public (Storage, long) Alloc(long n)
    {
        long need = (n + Align - 1) / Align * Align;
        var cur = chunks[^1];
        if (used + need > cur.Length)
        {
            chunks.Add(backend.Allocate(Math.Max(need, cur.Length)));
            Allocations++;
            used = 0; cur = chunks[^1];
        }
        long off = used;
        used += need; totalUsed += need;
        peak = Math.Max(peak, totalUsed);
        return (cur, off);
    }

    public void Reset()
    {
        if (chunks.Count > 1)
        {
            foreach (var c in chunks) c.Dispose();
            chunks.Clear();
            chunks.Add(backend.Allocate(peak + peak / 8)); Allocations++;
        }
        used = 0; totalUsed = 0;
    }

    public void Dispose() { foreach (var c in chunks) c.Dispose(); chunks.Clear(); }
}

/// The flat parameter, gradient, Adam-m and Adam-v arenas, laid out in registration order.
public sealed class ParameterStore : IDisposable
{
    public readonly List<Parameter> List = new();
    readonly Dictionary<string, Parameter> byName = new();
    public Storage Values, Grads, M, V;
    public long Total { get; private set; }
    Backend backend;

    public Parameter Add(string name, int[] shape, bool trainable = true)
    {
        if (Values != null) throw new InvalidOperationException("parameters are already allocated");
        if (byName.ContainsKey(name)) throw new ArgumentException($"duplicate parameter {name}");
        var p = new Parameter { Name = name, Shape = shape, Offset = Total, Size = Tensor.Numel(shape), Trainable = trainable };
        Total += (p.Size + 15) / 16 * 16;
        List.Add(p); byName[name] = p;
        return p;
    }

    public Parameter this[string name] => byName.TryGetValue(name, out var p) ? p : throw new KeyNotFoundException($"no parameter named {name}");
    public bool Contains(string name) => byName.ContainsKey(name);

    public void Allocate(Backend b)
    {
        backend = b;
        Values = b.Allocate(Total); Grads = b.Allocate(Total); M = b.Allocate(Total); V = b.Allocate(Total);
        foreach (var p in List)
        {
            p.Value = new Tensor(Values, p.Offset, p.Shape) { RequiresGrad = p.Trainable, Name = p.Name, Param = p };
            p.GradTensor = new Tensor(Grads, p.Offset, p.Shape) { Name = p.Name + ".grad" };
        }
    }

    public void ZeroGrad()
    {
        backend.Fill(Grads, 0, Total, 0f);
        foreach (var p in List) p.GotGrad = false;
    }

    public float[] Get(string name) { var p = this[name]; var a = new float[p.Size]; backend.Download(Values, p.Offset, a); return a; }
    public float[] GetGrad(string name) { var p = this[name]; var a = new float[p.Size]; backend.Download(Grads, p.Offset, a); return a; }

    public void Set(string name, ReadOnlySpan<float> data)
    {
        var p = this[name];
        if (data.Length != p.Size) throw new ShapeException($"parameter {name}: expected {p.Size} values {Tensor.ShapeStr(p.Shape)}, got {data.Length}");
        backend.Upload(Values, p.Offset, data);
    }

    public void Dispose() { Values?.Dispose(); Grads?.Dispose(); M?.Dispose(); V?.Dispose(); }
}
