// A mutation fuzzer for the readers of untrusted files: .npy (plain and pickled object arrays), the
// pickle decoder, torch.save zip checkpoints and safetensors. Seeds are valid files generated here;
// each case applies 1-4 random mutations (bit flips, "interesting" integers over length fields,
// truncation, insertion, chunk duplication, zeroing) and parses the result. The contract: a reader
// either succeeds or throws DataFormatException; anything else, a case over the time limit (a hang),
// or more than 64 MiB allocated for a small input (a lying header) is a finding.
using System.Diagnostics;
using System.Runtime.InteropServices;

namespace PvlrKernels.Data;

public sealed record FuzzTarget(string Name, byte[][] Seeds, Action<byte[]> Parse);

public sealed class FuzzReport
{
    public long Cases, Accepted, Rejected;
    public readonly List<string> Findings = new();
    public override string ToString() => $"{Cases} cases: {Accepted} parsed, {Rejected} rejected with DataFormatException, {Findings.Count} findings";
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
        NumpyPickle.WriteObjectArray(ms, new object[] { new List<object> { "a", 1.5, 3L }, new List<object> { new List<object> { 1.0, 2.0 } }, "text" });
        var objNpy = ms.ToArray();
        var ms2 = new MemoryStream();
        NumpyPickle.WriteObjectArrayOfFloat32(ms2, new[] { (new[] { 3, 2 }, F(6)), (new[] { 1, 2 }, F(2)) });
        var ndNpy = ms2.ToArray();
        // the pickles inside the object arrays, alone
        byte[] PickleOf(byte[] npy) { int hl = BitConverter.ToUInt16(npy, 8); return npy[(10 + hl)..]; }
        var tmp = Path.Combine(Path.GetTempPath(), $"pvlr-fuzz-seed-{Environment.ProcessId}");
        var tensors = new[] { ("w", new[] { 2, 3 }, F(6)), ("b", new[] { 3 }, F(3)) };
        TorchZip.Save(tmp, tensors); var pth = File.ReadAllBytes(tmp);
        Safetensors.Save(tmp, tensors, new Dictionary<string, string> { ["k"] = "v" }); var st = File.ReadAllBytes(tmp);
        File.Delete(tmp);
        return new[]
        {
            new FuzzTarget("npy", new[] { plain, objNpy, ndNpy }, b => Npy.Read(new MemoryStream(b), "fuzz.npy")),
            new FuzzTarget("pickle", new[] { PickleOf(objNpy), PickleOf(ndNpy) }, b => new Unpickler(new MemoryStream(b), "fuzz.pkl").Load()),
            new FuzzTarget("pth", new[] { pth }, b => TorchZip.Read(new MemoryStream(b), "fuzz.pth")),
            new FuzzTarget("safetensors", new[] { st }, b => Safetensors.Read(new MemoryStream(b), "fuzz.safetensors")),
        };
    }

    static readonly long[] Interesting = { 0, 1, -1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, int.MaxValue, uint.MaxValue, long.MaxValue, 1L << 40 };

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
                        var v = BitConverter.GetBytes(Interesting[r.Next(Interesting.Length)]); int w = new[] { 1, 2, 4, 8 }[r.Next(4)];
                        for (int i = 0; i < w && at + i < b.Count; i++) b[at + i] = v[i];
                        break;
                    }
                case 3: b.RemoveRange(at, b.Count - at); break;                                   // truncate
                case 4: b.InsertRange(at, Enumerable.Range(0, 1 + r.Next(8)).Select(_ => (byte)r.Next(256))); break;
                case 5: { int len = Math.Min(b.Count - at, 1 + r.Next(32)); b.InsertRange(r.Next(b.Count), b.GetRange(at, len)); break; }
                default: { int len = Math.Min(b.Count - at, 1 + r.Next(16)); for (int i = 0; i < len; i++) b[at + i] = 0; break; }
            }
        }
        return b.ToArray();
    }

    public static FuzzReport Run(FuzzTarget t, long cases, int seed, TimeSpan perCase, Action<FuzzReport> progress = null)
    {
        var rep = new FuzzReport(); var r = new Random(seed);
        for (long i = 0; i < cases; i++)
        {
            var input = Mutate(t.Seeds[r.Next(t.Seeds.Length)], r);
            long a0 = GC.GetAllocatedBytesForCurrentThread(); var sw = Stopwatch.StartNew();
            try { t.Parse(input); rep.Accepted++; }
            catch (DataFormatException) { rep.Rejected++; }
            catch (Exception e) { Finding(rep, t, i, $"{e.GetType().Name}: {e.Message.Split('\n')[0]}", input); }
            long alloc = GC.GetAllocatedBytesForCurrentThread() - a0;
            if (sw.Elapsed > perCase) Finding(rep, t, i, $"took {sw.Elapsed.TotalSeconds:F1} s", input);
            if (alloc > MaxAlloc + 64L * input.Length) Finding(rep, t, i, $"allocated {alloc >> 20} MiB for {input.Length} bytes", input);
            rep.Cases++;
            if (progress != null && (i + 1) % 10000 == 0) progress(rep);
        }
        return rep;
    }

    static void Finding(FuzzReport rep, FuzzTarget t, long i, string what, byte[] input)
    {
        if (rep.Findings.Count < 20) rep.Findings.Add($"{t.Name} case {i}: {what} (input {Convert.ToHexString(input.AsSpan(0, Math.Min(64, input.Length)))}...)");
    }
}
