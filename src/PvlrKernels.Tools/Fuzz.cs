// A fuzzer for the readers of untrusted files: .npy (plain and pickled object arrays), the pickle
// decoder, torch.save zip checkpoints and safetensors. Mutation targets start from valid files generated
// here; each case applies 1-4 random mutations (bit flips, "interesting" integers over length fields,
// truncation, insertion, chunk duplication, zeroing) and parses the result. Random mutation of valid
// files never builds the structures that cost a reader most, so two structure-aware targets generate
// them: "structure" (object arrays holding shared references, lists that contain themselves, deep
// nesting, dicts of colliding keys) and "strides" (.pth tensors whose sizes, strides and offsets overlap,
// overflow or run past their storage). The contract: a reader
// either succeeds or throws DataFormatException; anything else, a case over the time limit (a hang),
// or more than 64 MiB allocated for a small input (a lying header) is a finding.
using System.Diagnostics;
using System.Runtime.InteropServices;
using PvlrKernels.Data;

namespace PvlrKernels.Tools;

public sealed record FuzzTarget(string Name, byte[][] Seeds, Action<byte[]> Parse,
    Func<Random, byte[]> Generate = null);

public sealed class FuzzReport
{
    public long Cases, Accepted, Rejected;
    public readonly List<string> Findings = new();
    public override string ToString() =>
        $"{Cases} cases: {Accepted} parsed, {Rejected} rejected with DataFormatException, {Findings.Count} findings";
}

public static class Fuzz
{
    const long MaxAlloc = 64L << 20;

    public static IReadOnlyList<FuzzTarget> Targets()
    {
        var r = new Random(1);
        float[] F(int n) => Enumerable.Range(0, n).Select(_ => (float)r.NextDouble()).ToArray();
        byte[] Npy1(string d, int[] shape, byte[] data) => Npy.Encode(d, shape, data);
        var f32 = F(24);
        var plain = Npy1("<f4", new[] { 4, 6 }, MemoryMarshal.AsBytes(f32.AsSpan()).ToArray());
        var ms = new MemoryStream();
        NumpyPickle.WriteObjectArray(ms, new object[] { new List<object> { "a", 1.5, 3L },
            new List<object> { new List<object> { 1.0, 2.0 } }, "text" });
        var objNpy = ms.ToArray();
        var ms2 = new MemoryStream();
        NumpyPickle.WriteObjectArrayOfFloat32(ms2, new[] { (new[] { 3, 2 }, F(6)), (new[] { 1, 2 }, F(2)) });
        var ndNpy = ms2.ToArray();
        // the pickles inside the object arrays, alone
        byte[] PickleOf(byte[] npy)
        {
            int hl = BitConverter.ToUInt16(npy, 8);
            return npy[(10 + hl)..];
        }
        var tmp = Path.Combine(Path.GetTempPath(), $"pvlr-fuzz-seed-{Environment.ProcessId}");
        var tensors = new[] { ("w", new[] { 2, 3 }, F(6)), ("b", new[] { 3 }, F(3)) };
        TorchZip.Save(tmp, tensors);
        var pth = File.ReadAllBytes(tmp);
        Safetensors.Save(tmp, tensors, new Dictionary<string, string> { ["k"] = "v" });
        var st = File.ReadAllBytes(tmp);
        File.Delete(tmp);
        return new[]
        {
            new FuzzTarget("npy", new[] { plain, objNpy, ndNpy }, b => Npy.Read(new MemoryStream(b), "fuzz.npy")),
            new FuzzTarget("pickle", new[] { PickleOf(objNpy), PickleOf(ndNpy) },
                b => new Unpickler(new MemoryStream(b), "fuzz.pkl").Load()),
            new FuzzTarget("pth", new[] { pth }, b => TorchZip.Read(new MemoryStream(b), "fuzz.pth")),
            new FuzzTarget("safetensors", new[] { st }, b => Safetensors.Read(new MemoryStream(b), "fuzz.safetensors")),
            new FuzzTarget("structure", Array.Empty<byte[]>(), b => Npy.Read(new MemoryStream(b), "fuzz.npy"),
                StructureNpy),
            new FuzzTarget("strides", Array.Empty<byte[]>(), b => TorchZip.Read(new MemoryStream(b), "fuzz.pth"),
                StridedPth),
        };
    }

    /// An object array whose one element is a random structure of lists, tuples, dicts and references.
    static byte[] StructureNpy(Random r)
    {
        var ops = new MemoryStream();
        var w = new BinaryWriter(ops);
        var memo = new List<int>(); int next = 1000;                 // above the writer's own (it uses none)
        int budget = 2000;
        void Put()
        {
            w.Write((byte)'r');
            w.Write((uint)next);
            memo.Add(next++);
        }
        void Value(int depth)
        {
            budget--;
            int kind = budget <= 0 ? 0 : r.Next(depth > 30 ? 3 : 8);
            switch (kind)
            {
                case 0: w.Write((byte)'K'); w.Write((byte)r.Next(256)); break;
                case 1: { var b = System.Text.Encoding.UTF8.GetBytes("s"
                    + r.Next(100)); w.Write((byte)0x8c); w.Write((byte)b.Length); w.Write(b); break; }
                // a shared reference, or a cycle if open
                case 2 when memo.Count > 0: w.Write((byte)'j'); w.Write((uint)memo[r.Next(memo.Count)]); break;
                case 2: goto case 0;
                case 3: case 4:                                       // a list, memoized before its items
                {
                    w.Write((byte)']');
                    Put();
                    int n = r.Next(6);
                    if (n > 0)
                    {
                        w.Write((byte)'(');
                        for (int i = 0; i < n; i++) Value(depth + 1);
                        w.Write((byte)'e');
                    }
                    break;
                }
                case 5:                                               // tuples nested deep
                {
                    int d = r.Next(2) == 0 ? r.Next(1, 40) : r.Next(1, 20000);
                    for (int i = 0; i < d; i++) w.Write((byte)'(');
                    for (int i = 0; i < d; i++) w.Write((byte)'t');
                    break;
                }
                case 6:                                               // a dict of colliding long keys
                {
                    w.Write((byte)'}');
                    w.Write((byte)'(');
                    int n = r.Next(2) == 0 ? r.Next(4) : r.Next(1000, 20000);
                    for (long i = 1; i <= n; i++)
                    {
                        w.Write((byte)0x8a);
                        w.Write((byte)8);
                        w.Write(i | (i << 32));
                        w.Write((byte)'K');
                        w.Write((byte)0);
                    }
                    w.Write((byte)'u');
                    break;
                }
                default:                                              // a list doubled by references, many times
                {
                    w.Write((byte)']');
                    Put();
                    w.Write((byte)'(');
                    Value(depth + 1);
                    w.Write((byte)'e');
                    int times = r.Next(1, 64);
                    for (int i = 0; i < times; i++)
                    {
                        w.Write((byte)']');
                        Put();
                        w.Write((byte)'(');
                        w.Write((byte)'j');
                        w.Write((uint)memo[^2]);
                        w.Write((byte)'j');
                        w.Write((uint)memo[^2]);
                        w.Write((byte)'e');
                    }
                    break;
                }
            }
        }
        Value(0);
        w.Flush();
        var npy = new MemoryStream();
        NumpyPickle.WriteObjectArray(npy, new object[] { new RawPickle(ops.ToArray()) });
        return npy.ToArray();
    }

    /// A .pth holding one float tensor over a small storage, with random sizes, strides and offset.
    static byte[] StridedPth(Random r)
    {
        long Pick() => r.Next(6) switch { 0 => 0, 1 => 1, 2 => r.Next(1, 8), 3 => r.Next(1000, 100000),
            4 => -r.Next(1, 4), _ => (long)r.Next() << r.Next(0, 30) };
        int dims = r.Next(1, 4);
        long numel = r.Next(1, 64);
        var ms = new MemoryStream();
        var w = new BinaryWriter(ms);
        void Long(long v)
        {
            w.Write((byte)0x8a);
            w.Write((byte)8);
            w.Write(v);
        }
        void Str(string s)
        {
            var b = System.Text.Encoding.UTF8.GetBytes(s);
            w.Write((byte)'X');
            w.Write(b.Length);
            w.Write(b);
        }
        void Global(string m,
            string n) { w.Write((byte)'c'); w.Write(System.Text.Encoding.ASCII.GetBytes(m + "\n" + n + "\n")); }
        w.Write((byte)0x80);
        w.Write((byte)2);
        Global("collections", "OrderedDict");
        w.Write((byte)')');
        w.Write((byte)'R');
        Str("w");
        Global("torch._utils", "_rebuild_tensor_v2");
        w.Write((byte)'(');
        w.Write((byte)'('); Str("storage"); Global("torch",
            "FloatStorage"); Str("0"); Str("cpu"); Long(numel); w.Write((byte)'t'); w.Write((byte)'Q');
        Long(r.Next(4) == 0 ? Pick() : r.Next((int)numel));
        w.Write((byte)'(');
        for (int d = 0; d < dims; d++) Long(Pick());
        w.Write((byte)'t');
        w.Write((byte)'(');
        for (int d = 0; d < dims; d++) Long(Pick());
        w.Write((byte)'t');
        w.Write((byte)0x89);
        Global("collections", "OrderedDict");
        w.Write((byte)')');
        w.Write((byte)'R');
        w.Write((byte)'t');
        w.Write((byte)'R');
        w.Write((byte)'s');
        w.Write((byte)'.');
        w.Flush();
        var zip = new MemoryStream();
        using (var z = new System.IO.Compression.ZipArchive(zip, System.IO.Compression.ZipArchiveMode.Create,
            leaveOpen: true))
        {
            using (var e = z.CreateEntry("archive/data.pkl",
                System.IO.Compression.CompressionLevel.NoCompression).Open()) e.Write(ms.ToArray());
            using (var e = z.CreateEntry("archive/data/0",
                System.IO.Compression.CompressionLevel.NoCompression).Open()) e.Write(new byte[numel * 4]);
        }
        return zip.ToArray();
    }

    static readonly long[] Interesting = { 0, 1, -1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, int.MaxValue, uint.MaxValue,
        long.MaxValue, 1L << 40 };

    public static byte[] Mutate(byte[] src, Random r)
    {
        var b = new List<byte>(src);
        int n = 1 + r.Next(4);
        for (int m = 0; m < n && b.Count > 0; m++)
        {
            int at = r.Next(b.Count);
            switch (r.Next(7))
            {
                case 0: b[at] ^= (byte)(1 << r.Next(8)); break;
                case 1: b[at] = (byte)r.Next(256); break;
                case 2:
                    {
                        var v = BitConverter.GetBytes(Interesting[r.Next(Interesting.Length)]); int w = new[] { 1, 2,
                            4, 8 }[r.Next(4)];
                        for (int i = 0; i < w && at + i < b.Count; i++) b[at + i] = v[i];
                        break;
                    }
                case 3: b.RemoveRange(at, b.Count - at); break;                                   // truncate
                case 4: b.InsertRange(at, Enumerable.Range(0, 1 + r.Next(8)).Select(_ => (byte)r.Next(256))); break;
                case 5: { int len = Math.Min(b.Count - at, 1 + r.Next(32)); b.InsertRange(r.Next(b.Count),
                    b.GetRange(at, len)); break; }
                default: { int len = Math.Min(b.Count - at,
                    1 + r.Next(16)); for (int i = 0; i < len; i++) b[at + i] = 0; break; }
            }
        }
        return b.ToArray();
    }

    public static FuzzReport Run(FuzzTarget t, long cases, int seed, TimeSpan perCase,
        Action<FuzzReport> progress = null)
    {
        var rep = new FuzzReport();
        var r = new Random(seed);
        for (long i = 0; i < cases; i++)
        {
            var input = t.Generate != null ? (r.Next(4) == 0 ? Mutate(t.Generate(r),
                r) : t.Generate(r)) : Mutate(t.Seeds[r.Next(t.Seeds.Length)], r);
            long a0 = GC.GetAllocatedBytesForCurrentThread();
            var sw = Stopwatch.StartNew();
            try
            {
                t.Parse(input);
                rep.Accepted++;
            }
            catch (DataFormatException) { rep.Rejected++; }
            catch (Exception e) { Finding(rep, t, i, $"{e.GetType().Name}: {e.Message.Split('\n')[0]}", input); }
            long alloc = GC.GetAllocatedBytesForCurrentThread() - a0;
            if (sw.Elapsed > perCase) Finding(rep, t, i, $"took {sw.Elapsed.TotalSeconds:F1} s", input);
            if (alloc > MaxAlloc + 64L * input.Length) Finding(rep, t, i,
                $"allocated {alloc >> 20} MiB for {input.Length} bytes", input);
            rep.Cases++;
            if (progress != null && (i + 1) % 10000 == 0) progress(rep);
        }
        return rep;
    }

    static void Finding(FuzzReport rep, FuzzTarget t, long i, string what, byte[] input)
    {
        if (rep.Findings.Count < 20)
            rep.Findings.Add($"{t.Name} case {i}: {what} (input "
                + $"{Convert.ToHexString(input.AsSpan(0, Math.Min(64, input.Length)))}...)");
    }
}
