// safetensors (huggingface format): u64 header length, a JSON header {name: {dtype, shape,
// data_offsets}, "__metadata__": {str: str}}, then the raw little-endian data. Written atomically.
using PvlrKernels.Util;
using System.Text;
using System.Text.Json;
using System.Runtime.InteropServices;

namespace PvlrKernels.Data;

public static class Safetensors
{
    public static void Save(string path, IEnumerable<(string name, int[] shape, float[] data)> tensors,
        Dictionary<string, string> metadata)
    {
        var list = tensors.ToList();
        var header = new Dictionary<string, object>();
        if (metadata != null) header["__metadata__"] = metadata;
        long off = 0;
        foreach (var (n, s, d) in list)
        {
            if (d.LongLength != s.Aggregate(1L, (a,
                b) => a * b)) throw new ArgumentException($"safetensors: {n} has {d.Length} values for shape "
                    + $"({string.Join(",", s)})");
            header[n] = new { dtype = "F32", shape = s, data_offsets = new[] { off, off + d.LongLength * 4 } };
            off += d.LongLength * 4;
        }
        var hb = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        int pad = (8 - hb.Length % 8) % 8;
        hb = hb.Concat(Enumerable.Repeat((byte)' ', pad)).ToArray();
        AtomicFile.Write(path, s =>
        {
            s.Write(BitConverter.GetBytes((ulong)hb.Length));
            s.Write(hb);
            foreach (var (_, _, d) in list) s.Write(MemoryMarshal.AsBytes(d.AsSpan()));
        });
    }

    /// One tensor of the header: its values lie at [Start, Start + Bytes) of the file.
    public sealed record Entry(string Name, string Dtype, int[] Shape, long Count, long Start, long Bytes);

    /// `want`: the names to read (null: all). Every entry's header is checked; the data of the others is
    /// not read (an inference load skips a checkpoint's Adam moments, two thirds of the file).
    public static (Dictionary<string, (int[] shape, float[] data)> tensors,
        Dictionary<string, string> metadata) Load(string path, Func<string, bool> want = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: checkpoint not found", path);
        using var fs = File.OpenRead(path);
        return Read(fs, path, want);
    }

    /// Every wanted tensor whole, as floats.
    public static (Dictionary<string, (int[] shape, float[] data)>, Dictionary<string, string>) Read(Stream s,
        string name, Func<string, bool> want = null) =>
        Malformed.Guard(name, () =>
        {
            var (entries, meta) = ReadHeader(s, name);
            var tensors = new Dictionary<string, (int[], float[])>();
            foreach (var e in entries.Where(e => want == null || want(e.Name)))
            {
                var data = new float[e.Count];
                ReadValues(s, e, data, (_,
                    _) => { });                                          // data is the buffer: one chunk, in place
                tensors[e.Name] = (e.Shape, data);
            }
            return (tensors, meta);
        });

    /// The header: each entry's dtype, shape and offsets checked against the file, and the metadata.
    public static (List<Entry> entries, Dictionary<string, string> metadata) ReadHeader(Stream s,
        string name) => Malformed.Guard(name, () =>
    {
        long total = s.Length;
        var lb = new byte[8];
        s.Position = 0;
        if (s.Read(lb) != 8) throw new DataFormatException($"{name}: truncated safetensors file");
        ulong hlen = BitConverter.ToUInt64(lb);
        if (hlen > (ulong)Math.Min(total - 8,
            100 << 20)) throw new DataFormatException($"{name}: header length {hlen} exceeds the file");
        var hb = new byte[hlen];
        s.ReadExactly(hb);
        JsonDocument doc;
        try { doc = JsonDocument.Parse(hb); } catch (JsonException e) { throw new DataFormatException($"{name}: bad "
            + $"safetensors header: {e.Message}"); }
        long dataStart = 8 + (long)hlen, dataLen = total - dataStart;
        var entries = new List<Entry>();
        var meta = new Dictionary<string, string>();
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
            throw new DataFormatException($"{name}: header is not an object");
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            try
            {
                if (p.Name == "__metadata__")
                {
                    foreach (var m in p.Value.EnumerateObject()) meta[m.Name] = m.Value.GetString();
                    continue;
                }
                string dtype = p.Value.GetProperty("dtype").GetString();
                var shape = p.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()).ToArray();
                var offs = p.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                int item = dtype switch { "F32" => 4, "F16" => 2, "BF16" => 2,
                    _ => throw new DataFormatException($"{name}: tensor {p.Name} has unsupported dtype {dtype}") };
                long count = shape.Aggregate(1L, (a,
                    b) => b < 0 ? throw new DataFormatException($"{name}: negative dimension in {p.Name}") : a * b);
                if (offs.Length != 2 || offs[0] < 0 || offs[1] < offs[0] || offs[1] > dataLen
                    || offs[1] - offs[0] != count * item)
                    throw new DataFormatException($"{name}: tensor {p.Name} offsets [{string.Join(",", offs)}] do "
                        + $"not fit shape ({string.Join(",", shape)}) {dtype} in {dataLen} data bytes");
                if (count > Array.MaxLength / 4)
                    throw new DataFormatException($"{name}: tensor {p.Name} of {count} values is too large for one "
                        + $"array");
                entries.Add(new Entry(p.Name, dtype, shape, count, dataStart + offs[0], offs[1] - offs[0]));
            }
            catch (Exception e) when (e is KeyNotFoundException || e is InvalidOperationException
                || e is FormatException)
            { throw new DataFormatException($"{name}: malformed entry {p.Name}: {e.Message}"); }
        }
        // no two tensors may share bytes (a hand-made header could alias one tensor's data into another)
        var byStart = entries.Where(e => e.Bytes > 0).OrderBy(e => e.Start).ToList();
        for (int i = 1; i < byStart.Count; i++)
            if (byStart[i].Start < byStart[i - 1].Start + byStart[i - 1].Bytes)
                throw new DataFormatException($"{name}: tensors {byStart[i - 1].Name} and {byStart[i].Name} overlap "
                    + $"in the data section");
        return (entries, meta);
    });

    /// Streams one entry's values as floats to sink(values, index of the first), at most buffer.Length at a
    /// time: a load into device or arena memory needs no array of the whole tensor.
    public static void ReadValues(Stream s, Entry e, float[] buffer, Action<ReadOnlySpan<float>, long> sink)
    {
        s.Position = e.Start;
        byte[] raw = e.Dtype == "F32" ? null : new byte[Math.Min(e.Count, buffer.Length) * 2];
        for (long at = 0; at < e.Count;)
        {
            int n = (int)Math.Min(buffer.Length, e.Count - at);
            var dst = buffer.AsSpan(0, n);
            // straight into the floats
            if (raw == null) s.ReadExactly(MemoryMarshal.AsBytes(dst));
            else
            {
                s.ReadExactly(raw.AsSpan(0, 2 * n));
                if (e.Dtype == "F16")
                {
                    var h = MemoryMarshal.Cast<byte, Half>(raw.AsSpan(0, 2 * n));
                    for (int i = 0; i < n; i++) dst[i] = (float)h[i];
                }
                else
                {
                    var u = MemoryMarshal.Cast<byte, ushort>(raw.AsSpan(0, 2 * n));
                    for (int i = 0; i < n; i++) dst[i] = BitConverter.Int32BitsToSingle(u[i] << 16);
                }
            }
            sink(dst, at);
            at += n;
        }
    }
}
