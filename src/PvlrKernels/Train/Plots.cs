// A training run's plots: the loss terms over the steps and, at each evaluation, a few test videos'
// class activation and attention against their ground truth. The library draws them through
// IRunPlotter so that it needs no plotting package: the CLI plugs in ScottPlot (titles, axes, ticks,
// legends); MinimalPlotter, the default, rasterises bare lines into a PNG with no dependency.
using PvlrKernels.Util;
using System.IO.Compression;
using PvlrKernels.Data;

namespace PvlrKernels.Train;

/// One test video's panel: the class's CAS (time-major, per snippet), the attention, the GT segments of
/// that class in snippets.
public sealed record VideoPanel(string Video, string Class, float[] Cas, float[] Attention, (double start,
    double end)[] Gt);

public interface IRunPlotter
{
    /// Each loss term against the step; history[i] holds step firstStep + i's terms.
    void Losses(string path, IReadOnlyList<IReadOnlyDictionary<string, float>> history, int firstStep);
    /// One panel per video at this evaluation step.
    void Videos(string path, int step, IReadOnlyList<VideoPanel> panels);
}

/// No text, no axes: the total loss as a line, the videos as bands and lines (Plots).
public sealed class MinimalPlotter : IRunPlotter
{
    public void Losses(string path, IReadOnlyList<IReadOnlyDictionary<string, float>> history, int firstStep) =>
        Plots.LossCurve(path, history.Select(h => h.TryGetValue("total", out var v) ? v : float.NaN).ToArray());
    public void Videos(string path, int step, IReadOnlyList<VideoPanel> panels) =>
        Plots.CasAttention(path, panels.Select(p => (p.Video, p.Cas, p.Attention, p.Gt)).ToList());
}

public static class Plots
{
    public static void LossCurve(string path, float[] values, int w = 640, int h = 320)
    {
        var img = new byte[w * h * 3];
        Array.Fill(img, (byte)255);
        var v = values.Where(float.IsFinite).ToArray();
        if (v.Length >= 2)
        {
            float lo = v.Min(), hi = v.Max();
            if (hi <= lo) hi = lo + 1;
            int px(int i) => 20 + (int)((long)i * (w - 40) / (v.Length - 1));
            int py(float y) => h - 20 - (int)((y - lo) / (hi - lo) * (h - 40));
            for (int x = 20; x < w - 20; x++) Set(img, w, x, h - 20, 0, 0, 0);
            for (int y = 20; y < h - 20; y++) Set(img, w, 20, y, 0, 0, 0);
            for (int i = 1; i < v.Length; i++) Line(img, w, h, px(i - 1), py(v[i - 1]), px(i), py(v[i]));
        }
        AtomicFile.WriteAllBytes(path, Png(img, w, h));
    }

    /// One panel per video: GT segments of `label` as green bands, that class's CAS (min-max normalised)
    /// in blue and the attention in red, both over time in snippets.
    public static void CasAttention(string path,
        IReadOnlyList<(string video, float[] cas, float[] attn, (double s, double e)[] gt)> panels, int w = 800,
        int ph = 120)
    {
        int h = ph * Math.Max(1, panels.Count);
        var img = new byte[w * h * 3];
        Array.Fill(img, (byte)255);
        for (int k = 0; k < panels.Count; k++)
        {
            var (_, cas, attn, gt) = panels[k];
            int t = cas.Length, top = k * ph + 8, bot = (k + 1) * ph - 8;
            if (t < 2) continue;
            int px(double i) => 10 + (int)(i * (w - 20) / (t - 1));
            int py(float y) => bot - (int)(Math.Clamp(y, 0f, 1f) * (bot - top));
            foreach (var (s0, e0) in gt)
                for (int x = Math.Max(10, px(s0)); x <= Math.Min(w - 10, px(Math.Min(e0, t - 1))); x++)
                    for (int y = top; y < bot; y++) Set(img, w, x, y, 200, 240, 200);
            for (int x = 10; x < w - 10; x++) Set(img, w, x, bot, 0, 0, 0);
            float lo = cas.Min(), hi = cas.Max();
            float span = hi > lo ? hi - lo : 1;
            for (int i = 1; i < t; i++)
            {
                Line(img, w, h, px(i - 1), py((cas[i - 1] - lo) / span), px(i), py((cas[i] - lo) / span), (30, 90,
                    200));
                Line(img, w, h, px(i - 1), py(attn[i - 1]), px(i), py(attn[i]), (210, 40, 40));
            }
        }
        AtomicFile.WriteAllBytes(path, Png(img, w, h));
    }

    static void Set(byte[] img, int w, int x, int y, byte r, byte g,
        byte b) { int o = (y * w + x) * 3; img[o] = r; img[o + 1] = g; img[o + 2] = b; }
    static void Line(byte[] img, int w, int h, int x0, int y0, int x1, int y1, (byte r, byte g, byte b)? color = null)
    {
        var (cr, cg, cb) = color ?? ((byte)30, (byte)90, (byte)200);
        int n = Math.Max(Math.Abs(x1 - x0), Math.Abs(y1 - y0)) + 1;
        for (int k = 0; k <= n; k++)
        {
            int x = x0 + (x1 - x0) * k / n, y = y0 + (y1 - y0) * k / n;
            if (x >= 0 && x < w && y >= 0 && y < h) Set(img, w, x, y, cr, cg, cb);
        }
    }

    static byte[] Png(byte[] rgb, int w, int h)
    {
        var ms = new MemoryStream();
        ms.Write(new byte[] { 137, 80, 78, 71, 13, 10, 26, 10 });
        var ihdr = new byte[13];
        BE(ihdr, 0, w);
        BE(ihdr, 4, h);
        ihdr[8] = 8;
        ihdr[9] = 2;
        Chunk(ms, "IHDR", ihdr);
        var raw = new MemoryStream();
        for (int y = 0; y < h; y++)
        {
            raw.WriteByte(0);
            raw.Write(rgb, y * w * 3, w * 3);
        }
        var z = new MemoryStream();
        using (var zs = new ZLibStream(z, CompressionLevel.Optimal, true)) raw.WriteTo(zs);
        Chunk(ms, "IDAT", z.ToArray());
        Chunk(ms, "IEND", Array.Empty<byte>());
        return ms.ToArray();
    }
    static void BE(byte[] b, int o,
        int v) { b[o] = (byte)(v >> 24); b[o + 1] = (byte)(v >> 16); b[o + 2] = (byte)(v >> 8); b[o + 3] = (byte)v; }
    static void Chunk(Stream s, string type, byte[] data)
    {
        var len = new byte[4];
        BE(len, 0, data.Length);
        s.Write(len);
        var td = System.Text.Encoding.ASCII.GetBytes(type).Concat(data).ToArray();
        s.Write(td);
        var crc = new byte[4];
        BE(crc, 0, (int)Crc32(td));
        s.Write(crc);
    }

    static uint Crc32(byte[] d)
    {
        uint c = 0xFFFFFFFFu;
        foreach (var b in d)
        {
            c ^= b;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        }
        return ~c;
    }
}
