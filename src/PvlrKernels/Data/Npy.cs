// .npy reading and writing: float32/64, int32/64, bool, |S and <U strings, and object arrays
// (pickled; decoded by the safe Unpickler, with nested ndarrays rebuilt). Every error names the file.
using PvlrKernels.Util;
using System.Runtime.InteropServices;
using System.Text;

namespace PvlrKernels.Data;

public sealed class NpyArray
{
    public string Descr;       // e.g. "<f4", "|S17", "|O"
    public int[] Shape;
    public Array Data;         // float[], double[], long[], int[], bool[], string[], object[]; null while Lazy
    public FilePayload Lazy;   // float32 data still in the file (Npy.Load(path, lazy: true))
    public long Count => Shape.Aggregate(1L, (a, b) => a * b);

    /// The values as floats; lazy data is read from its file now, into a new array that is not kept.
    public float[] AsFloat(string what = "array")
    {
        if (Data == null && Lazy != null)
        {
            var f = GC.AllocateUninitializedArray<float>(checked((int)Count));
            ReadInto(f, what);
            return f;
        }
        return Data switch
        {
            float[] f => f,
            double[] d => d.Select(v => (float)v).ToArray(),
            long[] l => l.Select(v => (float)v).ToArray(),
            int[] i => i.Select(v => (float)v).ToArray(),
            _ => throw new DataFormatException($"{what}: dtype {Descr} is not numeric")
        };
    }
    /// The values into dst (Count floats): lazy data straight from its file, other data copied.
    public void ReadInto(Span<float> dst, string what = "array")
    {
        if (dst.Length != Count) throw new ArgumentException($"{what}: a buffer of {dst.Length} values for {Count}");
        if (Data == null && Lazy != null) Lazy.ReadInto(MemoryMarshal.AsBytes(dst), what);
        else AsFloat(what).CopyTo(dst);
    }
    public double[] AsDouble(string what = "array") => Data switch
    {
        double[] d => d, float[] f => f.Select(v => (double)v).ToArray(),
            long[] l => l.Select(v => (double)v).ToArray(),
        int[] i => i.Select(v => (double)v).ToArray(),
            _ => throw new DataFormatException($"{what}: dtype {Descr} is not numeric")
    };
    public string[] AsStrings(string what = "array") => Data switch
    {
        string[] s => s, object[] o => o.Select(PyText).ToArray(),
            _ => throw new DataFormatException($"{what}: dtype {Descr} is not text")
    };

    public static string PyText(object o) => o switch
    {
        string s => s, byte[] b => Encoding.UTF8.GetString(b).TrimEnd('\0'),
            LargeBytes lb => Encoding.UTF8.GetString(lb.Span).TrimEnd('\0'), _ => o?.ToString()
    };
}

public static class Npy
{
    const long MaxHeader = 1 << 20;

    /// `lazy`: the float32 arrays of an object array (from 64 KiB) are not read, only located
    /// (NpyArray.Lazy); AsFloat reads one when it is needed.
    public static NpyArray Load(string path, bool lazy = false)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, lazy ? 1 << 16 : 1 << 20);
        return Malformed.Guard(path, () => ReadCore(fs, path, lazy ? path : null));
    }

    public static NpyArray Read(Stream s, string name) => Malformed.Guard(name, () => ReadCore(s, name, null));

    static NpyArray ReadCore(Stream s, string name, string lazyPath)
    {
        Span<byte> magic = stackalloc byte[8];
        if (s.Read(magic) != 8 || magic[0] != 0x93 || !magic.Slice(1, 5).SequenceEqual("NUMPY"u8))
            throw new DataFormatException($"{name}: not a .npy file (bad magic)");
        int major = magic[6];
        long hlen;
        if (major == 1)
        {
            var b = new byte[2];
            if (s.Read(b) != 2) throw Trunc(name);
            hlen = BitConverter.ToUInt16(b);
        }
        else if (major is 2 or 3)
        {
            var b = new byte[4];
            if (s.Read(b) != 4) throw Trunc(name);
            hlen = BitConverter.ToUInt32(b);
        }
        else throw new DataFormatException($"{name}: unsupported .npy version {major}");
        if (hlen > MaxHeader || (s.CanSeek && hlen > s.Length - s.Position))
            throw new DataFormatException($"{name}: header length {hlen} is larger than the file");
        var hb = new byte[hlen];
        s.ReadExactly(hb);
        var header = Encoding.Latin1.GetString(hb);
        var (descr, fortran, shape) = ParseHeader(header, name);
        if (fortran && shape.Length > 1)
            throw new DataFormatException($"{name}: fortran_order arrays are not supported");
        var arr = new NpyArray { Descr = descr, Shape = shape };
        long count = arr.Count;
        if (descr == "|O")
        {
            long pickleBytes = s.CanSeek ? s.Length - s.Position : 1 << 20;
            var obj = new Unpickler(s, name, lazyPath: lazyPath).Load();
            arr.Data = ObjectArray(obj, count, name, pickleBytes);
            return arr;
        }
        int item = ItemSize(descr, name);
        long left = s.CanSeek ? s.Length - s.Position : long.MaxValue;
        if (count * item > left)
            throw new DataFormatException($"{name}: header says {Tensor(shape)} of {descr} ({count * item} bytes) "
                + $"but only {left} bytes follow (truncated?)");
        arr.Data = ReadData(s, descr, count, name);
        return arr;
    }

    static string Tensor(int[] s) => "(" + string.Join(",", s) + ")";
    static Exception Trunc(string name) => new DataFormatException($"{name}: truncated .npy file");

    static int ItemSize(string descr, string name)
    {
        if (descr.Length < 3) throw new DataFormatException($"{name}: bad dtype '{descr}'");
        char kind = descr[1];
        if (!int.TryParse(descr.AsSpan(2),
            out int n) || n <= 0 || n > 1 << 20) throw new DataFormatException($"{name}: bad dtype '{descr}'");
        if (descr[0] == '>' && n > 1)
            throw new DataFormatException($"{name}: big-endian dtype '{descr}' is not supported");
        return kind == 'U' ? 4 * n : n;
    }

    static Array ReadData(Stream s, string descr, long count, string name)
    {
        int item = ItemSize(descr, name);
        if (count * item > int.MaxValue)
            throw new DataFormatException($"{name}: array of {count * item} bytes is too large");
        if (descr == "<f4")                                                     // straight into the floats
        {
            var f = GC.AllocateUninitializedArray<float>((int)count);
            try { s.ReadExactly(MemoryMarshal.AsBytes(f.AsSpan())); }
            catch (EndOfStreamException) { throw Trunc(name); }
            return f;
        }
        var bytes = new byte[count * item];
        try { s.ReadExactly(bytes); } catch (EndOfStreamException) { throw Trunc(name); }
        return Convert(bytes, descr, count, name);
    }

    /// count items of dtype descr from their little-endian bytes.
    static Array Convert(ReadOnlySpan<byte> bytes, string descr, long count, string name)
    {
        int item = ItemSize(descr, name);
        char kind = descr[1];
        return (kind, item) switch
        {
            ('f', 4) => MemoryMarshal.Cast<byte, float>(bytes).ToArray(),
            ('f', 8) => MemoryMarshal.Cast<byte, double>(bytes).ToArray(),
            ('f', 2) => MemoryMarshal.Cast<byte, Half>(bytes).ToArray().Select(h => (float)h).ToArray(),
            ('i', 8) => MemoryMarshal.Cast<byte, long>(bytes).ToArray(),
            ('i', 4) => MemoryMarshal.Cast<byte, int>(bytes).ToArray(),
            ('u', 1) or ('b', 1) => Ints(bytes),
            ('S', _) => Strings(bytes, count, item, Encoding.UTF8),
            ('U', _) => Strings(bytes, count, item, Encoding.UTF32),
            _ => throw new DataFormatException($"{name}: dtype '{descr}' is not supported")
        };
    }

    static string[] Strings(ReadOnlySpan<byte> bytes, long count, int item, Encoding e)
    {
        var r = new string[count];
        for (int i = 0; i < count; i++) r[i] = e.GetString(bytes.Slice(i * item, item)).TrimEnd('\0');
        return r;
    }

    static int[] Ints(ReadOnlySpan<byte> bytes)
    {
        var r = new int[bytes.Length];
        for (int i = 0; i < r.Length; i++) r[i] = bytes[i];
        return r;
    }

    /// Parses the Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }.
    static (string, bool, int[]) ParseHeader(string h, string name)
    {
        string Field(string key)
        {
            int i = h.IndexOf("'" + key + "'", StringComparison.Ordinal);
            if (i < 0) throw new DataFormatException($"{name}: header lacks '{key}'");
            int c = h.IndexOf(':', i);
            if (c < 0) throw new DataFormatException($"{name}: bad header");
            return h.Substring(c + 1).TrimStart();
        }
        var d = Field("descr");
        if (d.Length == 0 || d[0] != '\'')
            throw new DataFormatException($"{name}: structured dtypes are not supported");
        int e = d.IndexOf('\'', 1);
        if (e < 0) throw new DataFormatException($"{name}: bad descr");
        string descr = d.Substring(1, e - 1);
        bool fortran = Field("fortran_order").StartsWith("True");
        var sh = Field("shape");
        if (sh.Length == 0 || sh[0] != '(') throw new DataFormatException($"{name}: bad shape");
        int close = sh.IndexOf(')');
        if (close < 0) throw new DataFormatException($"{name}: bad shape");
        var dims = sh.Substring(1, close - 1).Split(',',
            StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var shape = new int[dims.Length];
        for (int i = 0; i < dims.Length; i++)
            if (!int.TryParse(dims[i].TrimEnd('L'), out shape[i]) || shape[i] < 0)
                throw new DataFormatException($"{name}: bad shape dimension '{dims[i]}'");
        return (descr, fortran, shape);
    }

    // ---- object arrays: numpy pickles the whole ndarray ----
    static object[] ObjectArray(object obj, long count, string name, long pickleBytes)
    {
        var nd = new NdConverter(name, pickleBytes).Nd(obj,
            0) as NpyArray ?? throw new DataFormatException($"{name}: object array pickle is not an ndarray");
        if (nd.Data is not object[] o || o.Length != count)
            throw new DataFormatException($"{name}: object array holds {nd.Data?.Length} items, header says {count}");
        return o;
    }

    /// Converts numpy reconstruction objects (and containers of them) into NpyArray / C# values. A pickle can
    /// share one list many times over (memo references) or put a list inside itself; converted as a tree
    /// that would grow exponentially or without end. So each container is converted once (sharing kept),
    /// one that contains itself is refused, nesting is limited, and the elements the result holds when
    /// read as a tree (what a consumer walking it visits) are budgeted from the pickle's size.
    sealed class NdConverter(string name, long pickleBytes)
    {
        const int MaxDepth = 64;
        readonly long budget = 1_000_000 + 64 * pickleBytes;
        readonly Dictionary<object, (object value, long size)> done = new(ReferenceEqualityComparer.Instance);
        readonly HashSet<object> open = new(ReferenceEqualityComparer.Instance);
        long Size(object o) => o != null && done.TryGetValue(o, out var d) ? d.size : 1;

        public object Nd(object o, int depth)
        {
            if (o is not (List<object> or object[] or PyObject)) return o;
            if (done.TryGetValue(o, out var hit)) return hit.value;
            if (depth > MaxDepth) throw new DataFormatException($"{name}: objects nested deeper than {MaxDepth}");
            if (!open.Add(o)) throw new DataFormatException($"{name}: a list or tuple contains itself");
            object value;
            long size = 1;
            switch (o)
            {
                case List<object> l: { var r = new List<object>(l.Count); foreach (var x in l) { r.Add(Nd(x,
                    depth + 1)); size += Size(x); } value = r; break; }
                case object[] t: { var r = new object[t.Length]; for (int i = 0; i < t.Length; i++) { r[i] = Nd(t[i],
                    depth + 1); size += Size(t[i]); } value = r; break; }
                default: value = One(o, depth, ref size); break;
            }
            if (size > budget)
                throw new DataFormatException($"{name}: the pickle describes {size} elements when read as a tree, "
                    + $"more than {budget} for a {pickleBytes}-byte pickle (shared references)");
            open.Remove(o);
            done[o] = (value, size);
            return value;
        }

        object One(object o, int depth, ref long size)
        {
            switch (o)
            {
            case PyObject p when p.Class.Name == "_reconstruct":
            {
                if (p.State is not object[] st || st.Length < 5)
                    throw new DataFormatException($"{name}: bad ndarray state");
                var shape = ((object[])st[1]).Select(v => checked((int)(long)v)).ToArray();
                var dt = st[2] as PyObject ?? throw new DataFormatException($"{name}: bad ndarray dtype");
                string descr = DtypeDescr(dt, name);
                long count = shape.Aggregate(1L, (a, b) => a * b);
                var arr = new NpyArray { Descr = descr, Shape = shape };
                if (descr == "|O")
                {
                    var list = st[4] as List<object>
                        ?? throw new DataFormatException($"{name}: object ndarray without a list");
                    if (list.Count != count)
                        throw new DataFormatException($"{name}: object ndarray of {list.Count} items, shape says "
                            + $"{count}");
                    var items = new object[list.Count];
                    for (int i = 0; i < items.Length; i++)
                    {
                        items[i] = Nd(list[i], depth + 1);
                        size += Size(list[i]);
                    }
                    arr.Data = items;
                }
                else if (st[4] is FilePayload lazy)
                {
                    if (lazy.Length != count * ItemSize(descr,
                        name)) throw new DataFormatException($"{name}: ndarray of shape {Tensor(shape)} {descr} has "
                            + $"{lazy.Length} data bytes");
                    if (descr == "<f4") arr.Lazy = lazy;
                    else
                    {
                        var raw = new byte[lazy.Length];
                        lazy.ReadInto(raw, name);
                        arr.Data = Npy.Convert(raw, descr, count, name);
                    }
                }
                else
                {
                    ReadOnlySpan<byte> raw = st[4] switch
                    {
                        byte[] b => b, LargeBytes lb => lb.Span, string str => Encoding.Latin1.GetBytes(str),
                        _ => throw new DataFormatException($"{name}: ndarray data is not bytes")
                    };
                    if (raw.Length != count * ItemSize(descr,
                        name)) throw new DataFormatException($"{name}: ndarray of shape {Tensor(shape)} {descr} has "
                            + $"{raw.Length} data bytes");
                    // float32 data read into float storage by the unpickler becomes the array itself
                    arr.Data = st[4] is LargeBytes big && descr == "<f4" ? big.Store : Npy.Convert(raw, descr, count,
                        name);
                }
                return arr;
            }
            case PyObject p when p.Class.Name == "scalar":
            {
                var dt = DtypeDescr(p.Args[0] as PyObject, name);
                var raw = p.Args[1] as byte[] ?? Encoding.Latin1.GetBytes((string)p.Args[1]);
                int item = ItemSize(dt, name);
                if (raw.Length < item)
                    throw new DataFormatException($"{name}: numpy scalar {dt} of {raw.Length} bytes");
                var a = Npy.Convert(raw.AsSpan(0, item), dt, 1, name);
                return a.GetValue(0);
            }
            default: return o;
        }
    }
    }

    static string DtypeDescr(PyObject dt, string name)
    {
        if (dt == null || dt.Args.Length < 1) throw new DataFormatException($"{name}: bad dtype");
        string code = NpyArray.PyText(dt.Args[0]);              // 'f4', 'O8', 'S17', 'f8', ...
        string order = dt.State is object[] st && st.Length > 1 ? NpyArray.PyText(st[1]) : "<";
        if (code[0] == 'O') return "|O";
        if (code[0] == 'S' || code.EndsWith("1")) return "|" + code;     // byte strings and 1-byte types have no order
        return (order == ">" ? ">" : "<") + code;
    }

    // ---- writing ----
    public static void Save(string path, float[] data, params int[] shape) => Write(path, "<f4", shape,
        MemoryMarshal.AsBytes(data.AsSpan()).ToArray());
    public static void Save(string path, double[] data, params int[] shape) => Write(path, "<f8", shape,
        MemoryMarshal.AsBytes(data.AsSpan()).ToArray());
    public static void Save(string path, long[] data, params int[] shape) => Write(path, "<i8", shape,
        MemoryMarshal.AsBytes(data.AsSpan()).ToArray());
    public static void SaveStrings(string path, string[] items)
    {
        int w = Math.Max(1, items.Max(s => Encoding.UTF8.GetByteCount(s)));
        var bytes = new byte[items.Length * w];
        for (int i = 0; i < items.Length; i++) Encoding.UTF8.GetBytes(items[i], 0, items[i].Length, bytes, i * w);
        Write(path, "|S" + w, new[] { items.Length }, bytes);
    }

    public static byte[] Encode(string descr, int[] shape, ReadOnlySpan<byte> data)
    {
        string shp = shape.Length == 1 ? $"({shape[0]},)" : "(" + string.Join(", ", shape) + ")";
        string dict = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shp}, }}";
        int total = 10 + dict.Length + 1;
        int pad = (64 - total % 64) % 64;
        var header = dict + new string(' ', pad) + "\n";
        var ms = new MemoryStream();
        ms.Write(new byte[] { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0 });
        ms.Write(BitConverter.GetBytes((ushort)header.Length));
        ms.Write(Encoding.Latin1.GetBytes(header));
        ms.Write(data);
        return ms.ToArray();
    }

    static void Write(string path, string descr, int[] shape, byte[] data) => AtomicFile.WriteAllBytes(path,
        Encode(descr, shape, data));
}
