// A small safe unpickler (protocols 0-5 opcodes that data files use). It builds only lists, tuples,
// dicts, str, bytes, ints, floats, bools, None, and objects of an explicit allowlist of globals
// (numpy array/dtype reconstruction by default; the .pth loader adds the torch rebuild functions).
// It never imports or calls anything else: an unknown global or opcode is an error naming the file.
// Length fields are checked against the bytes left, so a lying header cannot trigger a huge allocation.
using System.Numerics;
using System.Runtime.InteropServices;
using System.Text;

namespace PvlrKernels.Data;

public sealed class DataFormatException(string message) : Exception(message);

/// The reader boundary: any parse failure of malformed bytes (a bad number in a text opcode, invalid
/// UTF-8, a truncated zip entry, ...) leaves a reader as a DataFormatException naming the file.
public static class Malformed
{
    public static bool Is(Exception e) =>
        e is FormatException or OverflowException or InvalidCastException or ArgumentException
        or InvalidOperationException or EndOfStreamException or IndexOutOfRangeException or KeyNotFoundException
        or NullReferenceException or InvalidDataException or System.Text.Json.JsonException;
    public static T Guard<T>(string name, Func<T> read)
    {
        try { return read(); }
        catch (Exception e) when (Is(e)) { throw new DataFormatException($"{name}: malformed file "
            + $"({e.GetType().Name}: {e.Message.Split('\n')[0]})"); }
    }
}

/// A large pickled bytes object, held in float storage: an ndarray of float32 takes Store as its array
/// with no copy (Npy.ToNd); Span is the bytes themselves.
public sealed class LargeBytes(float[] store, int length)
{
    public readonly float[] Store = store;
    public readonly int Length = length;
    public ReadOnlySpan<byte> Span => MemoryMarshal.AsBytes(Store.AsSpan())[..Length];
}

/// A large bytes payload left in its file by a lazy Unpickler (Npy.Load(path, lazy: true)): the file,
/// where the bytes start and how many. ReadInto reads them when they are needed, so a caller that needs
/// a few arrays of a large object array reads only those.
public sealed class FilePayload(string path, long offset, int length)
{
    public readonly string Path = path;
    public readonly long Offset = offset;
    public readonly int Length = length;

    public void ReadInto(Span<byte> dst, string what)
    {
        if (dst.Length != Length) throw new ArgumentException($"{what}: a buffer of {dst.Length} bytes for {Length}");
        using var h = File.OpenHandle(Path, FileMode.Open, FileAccess.Read, FileShare.Read);
        for (int done = 0; done < dst.Length;)
        {
            int n = RandomAccess.Read(h, dst[done..], Offset + done);
            if (n <= 0)
                throw new DataFormatException($"{what}: {Path} ends before the array's data (did the file change "
                    + $"after it was opened?)");
            done += n;
        }
    }
}

public sealed class PyGlobal(string module, string name)
{
    public readonly string Module = module, Name = name;
    public string Full => Module + "." + Name;
    public override string ToString() => Full;
}

/// An object made by calling an allowed global; Build() receives BUILD state.
public sealed class PyObject(PyGlobal cls, object[] args)
{
    public readonly PyGlobal Class = cls;
    public readonly object[] Args = args;
    public object State;
    public Dictionary<object, object> DictItems;   // for OrderedDict
}

public sealed class PyMark { public static readonly PyMark I = new(); }

public sealed class Unpickler
{
    public static readonly HashSet<string> NumpyGlobals = new()
    {
        "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.ndarray", "numpy.dtype",
        "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "_codecs.encode", "collections.OrderedDict",
    };

    readonly Stream s;
    readonly string file;
    readonly HashSet<string> allowed;
    readonly Func<PyGlobal, object[], object> call;
    readonly Func<object, object> persistentLoad;
    readonly string lazyPath;
    readonly string allowedPrefix;

    /// `lazyPath`: the file `s` reads (seekable); large payloads then stay there as FilePayload records.
    /// `allowedPrefix`: globals under it are allowed too, as plain attribute holders (NEWOBJ makes an empty
    /// PyObject, BUILD stores its state; nothing of theirs runs): TorchScript's `__torch__.` module classes.
    public Unpickler(Stream s, string file, HashSet<string> allowed = null,
        Func<PyGlobal, object[], object> call = null, Func<object, object> persistentLoad = null,
        string lazyPath = null, string allowedPrefix = null)
    {
        this.allowedPrefix = allowedPrefix;
        this.s = s;
        this.file = file;
        this.allowed = allowed ?? NumpyGlobals;
        this.call = call;
        this.persistentLoad = persistentLoad;
        this.lazyPath = lazyPath != null && s.CanSeek ? lazyPath : null;
    }

    Exception Bad(string why) => new DataFormatException($"{file}: bad pickle: {why}");

    int U8()
    {
        int b = s.ReadByte();
        if (b < 0) throw Bad("truncated");
        return b;
    }
    /// A length field checked against the bytes left, before anything of that size is allocated.
    void CheckLength(long n)
    {
        if (n < 0 || (s.CanSeek && n > s.Length - s.Position))
            throw Bad($"length {n} exceeds the {(s.CanSeek ? s.Length - s.Position : 0)} bytes left");
    }
    byte[] Bytes(long n)
    {
        CheckLength(n);
        var b = new byte[n];
        s.ReadExactly(b);
        return b;
    }
    /// A bytes payload: from 64 KiB on (ndarray data) read straight into float storage (LargeBytes), or
    /// in a lazy unpickler skipped and recorded (FilePayload).
    object Payload(long n)
    {
        if (n < 1 << 16) return Bytes(n);
        CheckLength(n);
        if (n > int.MaxValue) throw Bad($"bytes of length {n} are too large");
        if (lazyPath != null)
        {
            var at = new FilePayload(lazyPath, s.Position, (int)n);
            s.Seek(n, SeekOrigin.Current);
            return at;
        }
        var store = GC.AllocateUninitializedArray<float>((int)((n + 3) / 4));
        s.ReadExactly(MemoryMarshal.AsBytes(store.AsSpan())[..(int)n]);
        return new LargeBytes(store, (int)n);
    }
    uint U32()
    {
        var b = Bytes(4);
        return BitConverter.ToUInt32(b);
    }
    string Line()
    {
        var sb = new StringBuilder();
        int c;
        while ((c = U8()) != '\n')
        {
            sb.Append((char)c);
            if (sb.Length > 4096) throw Bad("line too long");
        }
        return sb.ToString();
    }

    public object Load() => Malformed.Guard(file, LoadCore);

    object LoadCore()
    {
        var stack = new List<object>();
        var marks = new Stack<int>();
        var memo = new Dictionary<long, object>(MemoKeys.Instance);
        object Pop()
        {
            if (stack.Count == 0) throw Bad("stack underflow");
            var o = stack[^1];
            stack.RemoveAt(stack.Count - 1);
            return o;
        }
        List<object> PopMark()
        {
            if (marks.Count == 0) throw Bad("no mark");
            int m = marks.Pop(); var items = stack.GetRange(m, stack.Count - m); stack.RemoveRange(m,
                stack.Count - m); return items;
        }
        object Top() => stack.Count > 0 ? stack[^1] : throw Bad("stack underflow");
        long ops = 0;
        while (true)
        {
            if (++ops > 50_000_000) throw Bad("too many opcodes");
            int op = U8();
            switch (op)
            {
                case 0x80: U8(); break;                                   // PROTO
                case 0x95: Bytes(8); break;                               // FRAME
                case '.': return Pop();                                   // STOP
                case '(': marks.Push(stack.Count); break;                 // MARK
                case 'N': stack.Add(null); break;
                case 0x88: stack.Add(true); break;
                case 0x89: stack.Add(false); break;
                case 'K': stack.Add((long)U8()); break;                   // BININT1
                case 'M': { var b = Bytes(2); stack.Add((long)BitConverter.ToUInt16(b)); break; }
                case 'J': { var b = Bytes(4); stack.Add((long)BitConverter.ToInt32(b)); break; }
                // LONG1
                case 0x8a: { int n = U8(); var b = Bytes(n); stack.Add(n == 0 ? 0L : (long)new BigInteger(b)); break; }
                case 'I': { var l = Line(); stack.Add(l == "01" ? true : l == "00" ? false : long.Parse(l)); break; }
                case 'L': { var l = Line().TrimEnd('L'); stack.Add(long.Parse(l)); break; }
                case 'G': { var b = Bytes(8); Array.Reverse(b); stack.Add(BitConverter.ToDouble(b)); break; }
                case 'F': stack.Add(double.Parse(Line(), System.Globalization.CultureInfo.InvariantCulture)); break;
                case 'U': stack.Add(Bytes(U8())); break;                  // SHORT_BINSTRING (py2 str = bytes)
                case 'T': stack.Add(Payload(U32())); break;               // BINSTRING
                case 'C': stack.Add(Bytes(U8())); break;                  // SHORT_BINBYTES
                case 'B': stack.Add(Payload(U32())); break;               // BINBYTES
                case 0x8e: { var b = Bytes(8); stack.Add(Payload(BitConverter.ToInt64(b))); break; }   // BINBYTES8
                case 'X': stack.Add(Encoding.UTF8.GetString(Bytes(U32()))); break;                    // BINUNICODE
                // SHORT_BINUNICODE
                case 0x8c: stack.Add(Encoding.UTF8.GetString(Bytes(U8()))); break;
                case 0x8d: stack.Add(Encoding.UTF8.GetString(Bytes(BitConverter.ToInt64(Bytes(8))))); break;
                case ')': stack.Add(Array.Empty<object>()); break;        // EMPTY_TUPLE
                case 't': stack.Add(PopMark().ToArray()); break;          // TUPLE
                case 0x85: stack.Add(new[] { Pop() }); break;             // TUPLE1
                case 0x86: { var b = Pop(); var a = Pop(); stack.Add(new[] { a, b }); break; }
                case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); stack.Add(new[] { a, b, c }); break; }
                case ']': stack.Add(new List<object>()); break;           // EMPTY_LIST
                case 'l': stack.Add(PopMark()); break;                    // LIST
                case 'a': { var v = Pop(); (Top() as List<object> ?? throw Bad("APPEND to a non-list")).Add(v); break; }
                case 'e': { var items = PopMark(); (Top() as List<object>
                    ?? throw Bad("APPENDS to a non-list")).AddRange(items); break; }
                case '}': stack.Add(new Dictionary<object, object>(new KeyComparer())); break;
                case 'd': { var items = PopMark(); var d = new Dictionary<object,
                    object>(new KeyComparer()); for (int i = 0; i + 1 < items.Count; i += 2) d[items[i]
                        ?? "None"] = items[i + 1]; stack.Add(d); break; }
                case 's': { var v = Pop(); var k = Pop(); SetItem(Top(), k, v); break; }
                case 'u': { var items = PopMark(); for (int i = 0; i + 1 < items.Count; i += 2) SetItem(Top(),
                    items[i], items[i + 1]); break; }
                case 'q': memo[U8()] = Top(); break;                      // BINPUT
                case 'r': memo[U32()] = Top(); break;                     // LONG_BINPUT
                case 'p': memo[long.Parse(Line())] = Top(); break;        // PUT
                case 0x94: memo[memo.Count] = Top(); break;               // MEMOIZE
                case 'h': stack.Add(memo.TryGetValue(U8(), out var m1) ? m1 : throw Bad("memo miss")); break;
                case 'j': stack.Add(memo.TryGetValue(U32(), out var m2) ? m2 : throw Bad("memo miss")); break;
                case 'g': stack.Add(memo.TryGetValue(long.Parse(Line()),
                    out var m3) ? m3 : throw Bad("memo miss")); break;
                case 'c': { var mod = Line(); var name = Line(); stack.Add(Global(mod, name)); break; }   // GLOBAL
                case 0x93: { var name = Pop() as string; var mod = Pop() as string; stack.Add(Global(mod,
                    name)); break; }  // STACK_GLOBAL
                case 'R': { var args = Pop() as object[]
                    ?? throw Bad("REDUCE args not a tuple"); var f = Pop() as PyGlobal
                        ?? throw Bad("REDUCE of a non-global"); stack.Add(Call(f, args)); break; }
                case 0x81: { var args = Pop() as object[] ?? throw Bad("NEWOBJ args"); var f = Pop() as PyGlobal
                    ?? throw Bad("NEWOBJ of a non-global"); stack.Add(Call(f, args)); break; }
                case 'b': { var state = Pop(); Build(Top(), state); break; }   // BUILD
                case 'Q': { var pid = Pop(); stack.Add(persistentLoad != null
                    ? persistentLoad(pid) : throw Bad("persistent id without a loader")); break; }
                case '0': Pop(); break;                                   // POP
                case '2': stack.Add(Top()); break;                        // DUP
                case '1': PopMark(); break;                               // POP_MARK
                default: throw Bad($"opcode 0x{op:x2} is not allowed");
            }
        }
    }

    /// Dict keys from a file are chosen by whoever wrote it: hashed over all their bits with the process's
    /// random seed (HashCode), so no file can make them collide (a long's own hash folds its halves, so
    /// i | i << 32 all hash to 0; 120k such keys made a dict quadratic).
    sealed class KeyComparer : IEqualityComparer<object>
    {
        public new bool Equals(object a,
            object b) => a is byte[] x && b is byte[] y ? x.AsSpan().SequenceEqual(y) : object.Equals(a, b);
        public int GetHashCode(object o)
        {
            switch (o)
            {
                case byte[] b: { var h = new HashCode(); h.AddBytes(b); return h.ToHashCode(); }
                case long l: return HashCode.Combine((int)l, (int)(l >> 32));
                case double d: { long l = BitConverter.DoubleToInt64Bits(d); return HashCode.Combine((int)l,
                    (int)(l >> 32)); }
                case string str: return str.GetHashCode();                 // randomized per process already
                case null: return 0;
                default: return o.GetHashCode();
            }
        }
    }

    sealed class MemoKeys : IEqualityComparer<long>
    {
        public static readonly MemoKeys Instance = new();
        public bool Equals(long a, long b) => a == b;
        public int GetHashCode(long l) => HashCode.Combine((int)l, (int)(l >> 32));
    }

    void SetItem(object target, object k, object v)
    {
        if (target is Dictionary<object, object> d) d[k ?? "None"] = v;
        else if (target is PyObject o && o.Class.Name == "OrderedDict") (o.DictItems ??= new(new KeyComparer()))[k] = v;
        else throw Bad("SETITEM on a non-dict");
    }

    PyGlobal Global(string mod, string name)
    {
        var g = new PyGlobal(mod, name);
        if (!allowed.Contains(g.Full) && !(allowedPrefix != null && g.Full.StartsWith(allowedPrefix,
            StringComparison.Ordinal)))
            throw Bad($"global '{g.Full}' is not on the allowlist; refusing to load it");
        return g;
    }

    object Call(PyGlobal f, object[] args)
    {
        switch (f.Full)
        {
            case "_codecs.encode":
                if (args.Length >= 1 && args[0] is string str) return Encoding.Latin1.GetBytes(str);
                throw Bad("_codecs.encode with unexpected arguments");
            case "collections.OrderedDict":
                return new PyObject(f, args) { DictItems = new(new KeyComparer()) };
        }
        if (call != null)
        {
            var r = call(f, args);
            if (r != null) return r;
        }
        return new PyObject(f, args);
    }

    void Build(object target, object state)
    {
        if (target is PyObject o) o.State = state;
        else if (target is Dictionary<object, object> d && state is Dictionary<object, object> sd)
            foreach (var kv in sd) d[kv.Key] = kv.Value;
        else throw Bad($"BUILD on {target?.GetType().Name ?? "None"}");
    }
}
