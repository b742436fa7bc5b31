// Activation arena: bump allocation through a list of backend buffers, reset (not freed) every step.
// When a step outgrows the chunks it has, a chunk of at least twice the last one's size (capped at
// 1 GiB, or the request) is appended and kept; the next step reuses the same chunks in the same order,
// so a steady-state step allocates no device memory. (Merging into one chunk at reset would re-zero
// gigabytes at paper shapes: 10 s on 2 cores.)
// A block may be released before the reset (Graph.Release: a no-grad forward's dead intermediates); a
// later allocation of the same step then takes the smallest free block that fits, and a block at the top
// of the current chunk lowers the bump pointer. At test time this keeps the arena's footprint, and the
// new memory a first pass must fault in, near the live set instead of the sum of all activations.
namespace PvlrKernels.Engine;

public sealed class Arena : IDisposable
{
    const long Align = 16;                 // 64 bytes
    readonly Backend backend;
    readonly List<Storage> chunks = new();
    readonly List<long> peak = new();      // per chunk: the highest `used`
    int cur;                               // chunk being filled
    long used;                             // floats used in chunks[cur]
    const long MaxGrow = 1L << 28;
    public long Allocations { get; private set; }   // device allocations made so far (for tests)

    /// `initial` floats in the first chunk; 0: the backend's choice (Backend.ArenaChunkFloats).
    public Arena(Backend backend, long initial = 0)
    {
        this.backend = backend;
        chunks.Add(backend.Allocate(initial > 0 ? initial : backend.ArenaChunkFloats));
        peak.Add(0);
        Allocations = 1;
    }

    public long Capacity => chunks.Sum(c => c.Length);

    /// Floats of the arena ever written (each chunk up to its high-water mark): the memory it touched.
    public long Touched => peak.Sum();

    readonly Dictionary<(int chunk, long off), long> live = new();      // allocations of this step: length
    readonly List<(int chunk, long off, long len)> free = new();        // released blocks, by chunk and offset

    public (Storage, long) Alloc(long n)
    {
        long need = (n + Align - 1) / Align * Align;
        int best = -1;
        for (int i = 0; i < free.Count; i++)
            if (free[i].len >= need && (best < 0 || free[i].len < free[best].len)) best = i;
        if (best >= 0)
        {
            var (c, o, len) = free[best];
            if (len == need) free.RemoveAt(best); else free[best] = (c, o + need, len - need);
            live[(c, o)] = need;
            return (chunks[c], o);
        }
        while (used + need > chunks[cur].Length)
        {
            cur++;
            used = 0;
            if (cur == chunks.Count)
            {
                chunks.Add(backend.Allocate(Math.Max(need, Math.Min(2 * chunks[cur - 1].Length,
                    MaxGrow)))); peak.Add(0);
                Allocations++;
            }
        }
        long off = used;
        used += need;
        peak[cur] = Math.Max(peak[cur], used);
        live[(cur, off)] = need;
        return (chunks[cur], off);
    }

    /// Returns the block at (s, off), an allocation of this step, to the arena. Neighbouring free blocks
    /// merge; a free block that ends at the bump pointer lowers it.
    public void Release(Storage s, long off)
    {
        int c = chunks.IndexOf(s);
        if (c < 0 || !live.Remove((c, off), out long len))
            throw new InvalidOperationException($"arena: no live allocation at offset {off} to release (released "
                + $"twice, a view, or not from this step)");
        int i = 0;
        while (i < free.Count && (free[i].chunk < c || (free[i].chunk == c && free[i].off < off))) i++;
        free.Insert(i, (c, off, len));
        if (i + 1 < free.Count && free[i + 1].chunk == c && free[i + 1].off == off + len)
        {
            free[i] = (c, off, len + free[i + 1].len);
            free.RemoveAt(i + 1);
        }
        if (i > 0 && free[i - 1].chunk == c && free[i - 1].off + free[i - 1].len == off)
        {
            free[i - 1] = (c, free[i - 1].off, free[i - 1].len + free[i].len);
            free.RemoveAt(i);
            i--;
        }
        if (c == cur && free[i].off + free[i].len == used)
        {
            used = free[i].off;
            free.RemoveAt(i);
        }
    }

    public void Reset()
    {
        cur = 0;
        used = 0;
        live.Clear();
        free.Clear();
    }

    public void Dispose()
    {
        foreach (var c in chunks) c.Dispose();
        chunks.Clear();
    }
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
        var p = new Parameter { Name = name, Shape = shape, Offset = Total, Size = Tensor.Numel(shape),
            Trainable = trainable };
        Total += (p.Size + 15) / 16 * 16;
        List.Add(p);
        byName[name] = p;
        return p;
    }

    public Parameter this[string name] => byName.TryGetValue(name,
        out var p) ? p : throw new KeyNotFoundException($"no parameter named {name}");
    public bool Contains(string name) => byName.ContainsKey(name);

    public void Allocate(Backend b)
    {
        backend = b;
        Values = b.Allocate(Total);
        Grads = b.Allocate(Total);
        M = b.Allocate(Total);
        V = b.Allocate(Total);
        foreach (var p in List)
        {
            p.Value = new Tensor(Values, p.Offset, p.Shape) { RequiresGrad = p.Trainable, Name = p.Name, Param = p };
            p.GradTensor = new Tensor(Grads, p.Offset, p.Shape) { Name = p.Name + ".grad" };
        }
    }

    public void ZeroGrad()
    {
        backend.Fill(Grads.At(0), Total, 0f);
        foreach (var p in List) p.GotGrad = false;
    }

    public float[] Get(string name)
    {
        var p = this[name];
        var a = new float[p.Size];
        backend.Download(Values.At(p.Offset), a);
        return a;
    }
    public float[] GetGrad(string name)
    {
        var p = this[name];
        var a = new float[p.Size];
        backend.Download(Grads.At(p.Offset), a);
        return a;
    }

    public void Set(string name, ReadOnlySpan<float> data)
    {
        var p = this[name];
        if (data.Length != p.Size)
            throw new ShapeException($"parameter {name}: expected {p.Size} values {Tensor.ShapeStr(p.Shape)}, got "
                + $"{data.Length}");
        backend.Upload(Values.At(p.Offset), data);
    }

    public void Dispose()
    {
        Values?.Dispose();
        Grads?.Dispose();
        M?.Dispose();
        V?.Dispose();
    }
}
