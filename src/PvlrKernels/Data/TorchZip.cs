// PyTorch checkpoints (torch.save's zip format): <prefix>/data.pkl, a pickle whose tensors are
// torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]) with
// the storage a persistent id ('storage', <torch.XStorage>, key, location, numel) naming the raw
// little-endian entry <prefix>/data/<key>. Read: a state_dict (OrderedDict of tensors), or a dict
// holding one (e.g. {'model': state_dict, ...}), fp32/fp16/bf16/fp64/int64 converted to float32.
// Only the globals a state_dict needs are allowed; anything else is refused and nothing is executed.
// A TorchScript archive (torch.jit.save, e.g. OpenAI's RN50.pt) pickles the module tree instead: objects
// of `__torch__.*` classes, made by NEWOBJ and filled by BUILD with their attribute dict. Those classes
// are read as attribute holders only, and the tree is flattened to state_dict names ("transformer.
// resblocks.0.attn.in_proj_weight"): every tensor attribute, depth-first in attribute order.
// Write: the same format (protocol 2, fp32, contiguous), which torch.load reads.
using PvlrKernels.Util;
using System.IO.Compression;
using System.Text;

namespace PvlrKernels.Data;

public static class TorchZip
{
    static readonly Dictionary<string, int> StorageBytes = new()
    {
        ["torch.FloatStorage"] = 4, ["torch.HalfStorage"] = 2, ["torch.BFloat16Storage"] = 2,
            ["torch.DoubleStorage"] = 8, ["torch.LongStorage"] = 8,
        ["torch.IntStorage"] = 4,
    };
    public static readonly HashSet<string> Allowed = new(StorageBytes.Keys)
    {
        "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter", "torch.device",
    };

    sealed record StorageRef(string Type, string Key, long Numel);

    public static Dictionary<string, (int[] shape, float[] data)> Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: checkpoint not found", path);
        using var fs = File.OpenRead(path);
        return Read(fs, path);
    }

    public static Dictionary<string, (int[] shape, float[] data)> Read(Stream s, string name) => Malformed.Guard(name,
        () => ReadCore(s, name));

    static Dictionary<string, (int[] shape, float[] data)> ReadCore(Stream s, string name)
    {
        ZipArchive zip;
        try { zip = new ZipArchive(s, ZipArchiveMode.Read, leaveOpen: true); }
        catch (InvalidDataException e) { throw new DataFormatException($"{name}: not a torch.save zip checkpoint "
            + $"({e.Message}); legacy (pre-1.6) .pth files are not supported"); }
        using (zip)
        {
            ZipArchiveEntry pkl;
            try { pkl = zip.Entries.FirstOrDefault(e => e.FullName.EndsWith("/data.pkl") || e.FullName == "data.pkl"); }
            catch (InvalidDataException e) { throw new DataFormatException($"{name}: corrupt zip directory "
                + $"({e.Message})"); }
            if (pkl == null) throw new DataFormatException($"{name}: no data.pkl in the archive");
            string prefix = pkl.FullName[..^"data.pkl".Length];
            if (pkl.Length > 256L << 20) throw new DataFormatException($"{name}: data.pkl claims {pkl.Length} bytes");
            var pbytes = ReadEntry(pkl, name);
            object root;
            var loader = new Unpickler(new MemoryStream(pbytes), $"{name}:data.pkl", Allowed, call: null,
                allowedPrefix: TorchScriptPrefix, persistentLoad: pid =>
            {
                if (pid is not object[] t || t.Length < 5 || t[0] as string != "storage" || t[1] is not PyGlobal g
                    || t[2] is not string key || t[4] is not long numel)
                    throw new DataFormatException($"{name}: unexpected persistent id in data.pkl");
                if (!StorageBytes.ContainsKey(g.Full))
                    throw new DataFormatException($"{name}: storage type {g.Full} is not supported");
                return new StorageRef(g.Full, key, numel);
            });
            root = loader.Load();
            var sd = root is PyObject module && module.Class.Full.StartsWith(TorchScriptPrefix,
                StringComparison.Ordinal)
                ? ModuleTree(module, name) : StateDict(root, name);
            var storages = new Dictionary<string, byte[]>();
            byte[] Storage(StorageRef r)
            {
                if (storages.TryGetValue(r.Key, out var b)) return b;
                var e = zip.GetEntry(prefix + "data/" + r.Key)
                    ?? throw new DataFormatException($"{name}: storage data/{r.Key} is missing from the archive");
                long want = r.Numel * StorageBytes[r.Type];
                if (r.Numel < 0 || e.Length != want)
                    throw new DataFormatException($"{name}: storage data/{r.Key} holds {e.Length} bytes, its header "
                        + $"says {r.Numel} x {r.Type}");
                return storages[r.Key] = ReadEntry(e, name);
            }
            var result = new Dictionary<string, (int[], float[])>();
            foreach (var (k, v) in sd)
            {
                var key = k as string ?? throw new DataFormatException($"{name}: state_dict key {k} is not a string");
                if (v is not PyObject o) throw new DataFormatException($"{name}: '{key}' is not a tensor");
                result[key] = Tensor(o, key, name, Storage);
            }
            return result;
        }
    }

    static byte[] ReadEntry(ZipArchiveEntry e, string name)
    {
        // deflate expands at most ~1032x; a larger declared size is a lying header, not a reason to allocate it
        if (e.Length < 0 || e.Length > e.CompressedLength * 1032 + 1024)
            throw new DataFormatException($"{name}: {e.FullName} declares {e.Length} bytes from {e.CompressedLength} "
                + $"compressed");
        try
        {
            using var es = e.Open();
            var b = new byte[e.Length];
            es.ReadExactly(b);
            return b;
        }
        catch (Exception ex) when (ex is InvalidDataException or EndOfStreamException or IOException)
        { throw new DataFormatException($"{name}: cannot read {e.FullName} ({ex.Message})"); }
    }

    const string TorchScriptPrefix = "__torch__.";
    const int MaxModuleDepth = 64;

    static bool IsTensor(object o) => o is PyObject p
        && p.Class.Full is "torch._utils._rebuild_tensor_v2" or "torch._utils._rebuild_parameter";

    /// A TorchScript module tree as a state_dict: each tensor attribute under its dotted path.
    static Dictionary<object, object> ModuleTree(PyObject root, string name)
    {
        var sd = new Dictionary<object, object>();
        var seen = new HashSet<PyObject>(ReferenceEqualityComparer.Instance);
        void Walk(PyObject m, string prefix, int depth)
        {
            if (depth > MaxModuleDepth)
                throw new DataFormatException($"{name}: modules nested deeper than {MaxModuleDepth} at '{prefix}'");
            if (!seen.Add(m)) return;                                  // a module shared or reached again
            if (m.State is not Dictionary<object, object> attrs) return;
            foreach (var (k, v) in attrs)
            {
                if (k is not string key) continue;
                if (IsTensor(v)) sd[prefix + key] = v;
                else if (v is PyObject sub && sub.Class.Full.StartsWith(TorchScriptPrefix,
                    StringComparison.Ordinal)) Walk(sub, prefix + key + ".", depth + 1);
            }
        }
        Walk(root, "", 0);
        if (sd.Count == 0)
            throw new DataFormatException($"{name}: the TorchScript module {root.Class.Full} holds no tensors");
        return sd;
    }

    /// The state_dict: the root OrderedDict/dict of tensors, or the first dict value that is one.
    static Dictionary<object, object> StateDict(object root, string name)
    {
        Dictionary<object, object> Items(object o) => o switch { PyObject p when p.Class.Name == "OrderedDict" =>
            p.DictItems ?? new(), Dictionary<object, object> d => d, _ => null };
        var top = Items(root)
            ?? throw new DataFormatException($"{name}: data.pkl holds a {root?.GetType().Name ?? "None"}, not a "
                + $"state_dict");
        if (top.Count > 0 && top.Values.All(IsTensor)) return top;
        foreach (var key in new object[] { "state_dict", "model", "model_state_dict", "net" }.Concat(top.Keys))
            if (top.TryGetValue(key,
                out var v) && Items(v) is { } inner && inner.Count > 0 && inner.Values.All(IsTensor)) return inner;
        throw new DataFormatException($"{name}: no state_dict (a dict of tensors) found; top-level keys: "
            + $"{string.Join(", ", top.Keys.Take(10))}");
    }

    static (int[], float[]) Tensor(PyObject o, string key, string name, Func<StorageRef, byte[]> storage)
    {
        if (o.Class.Name == "_rebuild_parameter")
            return o.Args.Length >= 1 && o.Args[0] is PyObject inner ? Tensor(inner, key, name,
                storage) : throw new DataFormatException($"{name}: '{key}': bad parameter");
        var a = o.Args;
        if (a.Length < 4 || a[0] is not StorageRef sr || a[1] is not long off || a[2] is not object[] size
            || a[3] is not object[] stride || size.Length != stride.Length)
            throw new DataFormatException($"{name}: '{key}': bad _rebuild_tensor_v2 arguments");
        var shape = size.Select(x => x is long l && l >= 0 && l <= int.MaxValue
            ? (int)l : throw new DataFormatException($"{name}: '{key}': bad size")).ToArray();
        var st = stride.Select(x => x is long l && l >= 0
            ? l : throw new DataFormatException($"{name}: '{key}': bad stride")).ToArray();
        long n, maxIdx = off;
        try
        {
            n = shape.Aggregate(1L, (p, q) => checked(p * q));
            for (int i = 0; i < shape.Length; i++) if (shape[i] > 0) maxIdx = checked(maxIdx + (shape[i] - 1) * st[i]);
        }
        catch (OverflowException) { throw new DataFormatException($"{name}: '{key}': shape "
            + $"({string.Join(",", shape)}) with strides ({string.Join(",", st)}) overflows"); }
        if (off < 0 || (n > 0 && maxIdx >= sr.Numel))
            throw new DataFormatException($"{name}: '{key}' (shape ({string.Join(",", shape)})) reaches element "
                + $"{maxIdx} of a {sr.Numel}-element storage");
        // a view whose elements overlap (a stride 0 or smaller than the extent of the dimensions inside it)
        // would let a few stored bytes stand for any number of values: refused, as torch.save never writes one
        long extent = 1;
        foreach (var d in Enumerable.Range(0, shape.Length).Where(d => shape[d] > 1).OrderBy(d => st[d]))
        {
            if (st[d] < extent)
                throw new DataFormatException($"{name}: '{key}': strides ({string.Join(",", st)}) make elements of "
                    + $"shape ({string.Join(",", shape)}) overlap");
            extent = st[d] * shape[d];
        }
        var raw = storage(sr);
        var data = new float[n];
        var idx = new int[shape.Length];
        for (long i = 0; i < n; i++)
        {
            long e = off;
            for (int d = 0; d < shape.Length; d++) e += idx[d] * st[d];
            data[i] = sr.Type switch
            {
                "torch.FloatStorage" => BitConverter.ToSingle(raw, (int)(e * 4)),
                "torch.HalfStorage" => (float)BitConverter.ToHalf(raw, (int)(e * 2)),
                "torch.BFloat16Storage" => BitConverter.Int32BitsToSingle(BitConverter.ToUInt16(raw,
                    (int)(e * 2)) << 16),
                "torch.DoubleStorage" => (float)BitConverter.ToDouble(raw, (int)(e * 8)),
                "torch.LongStorage" => BitConverter.ToInt64(raw, (int)(e * 8)),
                _ => BitConverter.ToInt32(raw, (int)(e * 4)),
            };
            for (int d = shape.Length - 1; d >= 0; d--)
            {
                if (++idx[d] < shape[d]) break;
                idx[d] = 0;
            }
        }
        return (shape, data);
    }

    /// The archive's text records of these names (e.g. "pvlr/config.json", written by Save's `records`)
    /// that it holds, read in one pass over the archive.
    public static Dictionary<string, string> ReadTextRecords(string path,
        params string[] records) => Malformed.Guard(path, () =>
    {
        using var fs = File.OpenRead(path);
        using var zip = new ZipArchive(fs, ZipArchiveMode.Read);
        var found = new Dictionary<string, string>();
        foreach (var record in records)
        {
            var e = zip.Entries.FirstOrDefault(x => x.FullName.EndsWith("/" + record));
            if (e == null) continue;
            if (e.Length > 16 << 20) throw new DataFormatException($"{path}: {e.FullName} claims {e.Length} bytes");
            found[record] = Encoding.UTF8.GetString(ReadEntry(e, path));
        }
        return found;
    });

    /// Writes an fp32 state_dict that torch.load reads (zip, protocol-2 data.pkl, one storage per tensor).
    /// `records` are extra text files in the archive (torch.load ignores them): the export's config.
    public static void Save(string path, IEnumerable<(string name, int[] shape, float[] data)> tensors,
        IReadOnlyDictionary<string, string> records = null)
    {
        var list = tensors.ToList();
        string prefix = "archive/";
        AtomicFile.Write(path, fs =>
        {
            using var zip = new ZipArchive(fs, ZipArchiveMode.Create, leaveOpen: true);
            void Entry(string n, byte[] b) { using var es = zip.CreateEntry(prefix + n,
                CompressionLevel.NoCompression).Open(); es.Write(b); }
            Entry("data.pkl", StateDictPickle(list));
            for (int i = 0; i < list.Count; i++) Entry("data/" + i,
                System.Runtime.InteropServices.MemoryMarshal.AsBytes(list[i].data.AsSpan()).ToArray());
            Entry("version", Encoding.ASCII.GetBytes("3\n"));
            foreach (var (n, text) in records ?? new Dictionary<string, string>()) Entry(n,
                Encoding.UTF8.GetBytes(text));
        });
    }

    static byte[] StateDictPickle(List<(string name, int[] shape, float[] data)> list)
    {
        var ms = new MemoryStream();
        var w = new BinaryWriter(ms);
        void Str(string s)
        {
            var b = Encoding.UTF8.GetBytes(s);
            w.Write((byte)'X');
            w.Write(b.Length);
            w.Write(b);
        }
        void Int(long v)
        {
            if (v >= 0 && v < 256)
            {
                w.Write((byte)'K');
                w.Write((byte)v);
            }
            else if (v >= int.MinValue && v <= int.MaxValue)
            {
                w.Write((byte)'J');
                w.Write((int)v);
            }
            else
            {
                w.Write((byte)0x8a);
                w.Write((byte)8);
                w.Write(v);
            }
        }
        void Global(string m, string n)
        {
            w.Write((byte)'c');
            w.Write(Encoding.ASCII.GetBytes(m + "\n" + n + "\n"));
        }
        void Tuple(IEnumerable<long> xs)
        {
            w.Write((byte)'(');
            foreach (var x in xs) Int(x);
            w.Write((byte)'t');
        }
        w.Write((byte)0x80);
        w.Write((byte)2);
        Global("collections", "OrderedDict");
        w.Write((byte)')');
        w.Write((byte)'R');
        for (int i = 0; i < list.Count; i++)
        {
            var (name, shape, data) = list[i];
            Str(name);
            Global("torch._utils", "_rebuild_tensor_v2");
            w.Write((byte)'(');
            w.Write((byte)'('); Str("storage"); Global("torch",
                "FloatStorage"); Str(i.ToString()); Str("cpu"); Int(data.LongLength); w.Write((byte)'t');
            w.Write((byte)'Q');
            Int(0);
            Tuple(shape.Select(x => (long)x));
            var strides = new long[shape.Length];
            long acc = 1;
            for (int d = shape.Length - 1; d >= 0; d--)
            {
                strides[d] = acc;
                acc *= shape[d];
            }
            Tuple(strides);
            w.Write((byte)0x89);                                         // requires_grad False
            Global("collections", "OrderedDict");
            w.Write((byte)')');
            w.Write((byte)'R');
            w.Write((byte)'t');
            w.Write((byte)'R');
            w.Write((byte)'s');
        }
        w.Write((byte)'.');
        return ms.ToArray();
    }
}
