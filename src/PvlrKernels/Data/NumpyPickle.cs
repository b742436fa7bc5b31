// Writes numpy object arrays (.npy header + protocol-2 pickle of numpy.core.multiarray._reconstruct),
// byte-compatible with what np.save(allow_pickle=True) writes and np.load(allow_pickle=True) reads:
// object arrays of float32 matrices (the I3D feature file) and of nested lists (annotations).
using System.Text;
using System.Runtime.InteropServices;

namespace PvlrKernels.Data;

public static class NumpyPickle
{
    public static void WriteObjectArrayOfFloat32(Stream s, IReadOnlyList<(int[] shape, float[] data)> items) =>
        WriteObjectArray(s, items.Select(x => (object)new NpyArray { Descr = "<f4", Shape = x.shape,
            Data = x.data }).ToList());

    public static void WriteObjectArray(Stream s, IReadOnlyList<object> items)
    {
        var header = Npy.Encode("|O", new[] { items.Count }, ReadOnlySpan<byte>.Empty);
        s.Write(header);
        var w = new BinaryWriter(s, Encoding.UTF8, leaveOpen: true);
        w.Write((byte)0x80);
        w.Write((byte)2);
        WriteNd(w, new NpyArray { Descr = "|O", Shape = new[] { items.Count }, Data = items.ToArray() });
        w.Write((byte)'.');
        w.Flush();
    }

    static void Global(BinaryWriter w, string mod,
        string name) { w.Write((byte)'c'); w.Write(Encoding.ASCII.GetBytes(mod + "\n" + name + "\n")); }
    static void Bytes(BinaryWriter w, ReadOnlySpan<byte> b)
    {
        if (b.Length < 256)
        {
            w.Write((byte)'U');
            w.Write((byte)b.Length);
        }
        else
        {
            w.Write((byte)'T');
            w.Write((uint)b.Length);
        }
        w.Write(b);
    }
    static void Int(BinaryWriter w, long v)
    {
        if (v >= 0 && v < 256)
        {
            w.Write((byte)'K');
            w.Write((byte)v);
        }
        else if (v >= 0 && v < 65536)
        {
            w.Write((byte)'M');
            w.Write((ushort)v);
        }
        else
        {
            w.Write((byte)'J');
            w.Write((int)v);
        }
    }

    static void WriteNd(BinaryWriter w, NpyArray a)
    {
        Global(w, "numpy.core.multiarray", "_reconstruct");
        Global(w, "numpy", "ndarray");
        Int(w, 0);
        w.Write((byte)0x85);
        Bytes(w, "b"u8);
        w.Write((byte)0x87);
        w.Write((byte)'R');
        // state: (1, shape, dtype, fortran, data)
        w.Write((byte)'(');
        Int(w, 1);
        w.Write((byte)'(');
        foreach (var d in a.Shape) Int(w, d);
        w.Write((byte)'t');
        bool obj = a.Descr == "|O";
        Global(w, "numpy", "dtype"); Bytes(w, Encoding.ASCII.GetBytes(obj ? "O8" : a.Descr.Substring(1))); Int(w,
            0); Int(w, 1); w.Write((byte)0x87); w.Write((byte)'R');
        w.Write((byte)'('); Int(w, 3); Bytes(w,
            Encoding.ASCII.GetBytes(obj ? "|" : "<")); w.Write((byte)'N'); w.Write((byte)'N'); w.Write((byte)'N');
        w.Write((byte)'J'); w.Write(-1); w.Write((byte)'J'); w.Write(-1); Int(w,
            obj ? 63 : 0); w.Write((byte)'t'); w.Write((byte)'b');
        w.Write((byte)0x89);   // fortran False
        if (obj)
        {
            w.Write((byte)']');
            w.Write((byte)'(');
            foreach (var it in (object[])a.Data) WriteValue(w, it);
            w.Write((byte)'e');
        }
        else Bytes(w, MemoryMarshal.AsBytes(((float[])a.Data).AsSpan()));
        w.Write((byte)'t');
        w.Write((byte)'b');
    }

    static void WriteValue(BinaryWriter w, object o)
    {
        switch (o)
        {
            case NpyArray nd: WriteNd(w, nd); break;
            case RawPickle raw: w.Write(raw.Ops); break;
            case List<object> l: w.Write((byte)']');
                if (l.Count > 0)
                {
                    w.Write((byte)'(');
                    foreach (var x in l) WriteValue(w, x);
                    w.Write((byte)'e');
                }
                break;
            case object[] t: w.Write((byte)'('); foreach (var x in t) WriteValue(w, x); w.Write((byte)'t'); break;
            case byte[] b: Bytes(w, b); break;
            case string s: Bytes(w, Encoding.UTF8.GetBytes(s)); break;
            case double d: w.Write((byte)'G'); var db = BitConverter.GetBytes(d); Array.Reverse(db); w.Write(db); break;
            case float f: WriteValue(w, (double)f); break;
            case long l2: Int(w, l2); break;
            case int i: Int(w, i); break;
            case null: w.Write((byte)'N'); break;
            default: throw new ArgumentException($"cannot pickle {o.GetType().Name}");
        }
    }
}

/// Pickle opcodes written as they are in place of one value (they must leave exactly one object on the
/// stack): the structure-aware fuzzer's shared references, cycles and deep nesting.
public sealed record RawPickle(byte[] Ops);
