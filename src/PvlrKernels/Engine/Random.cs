// Randomness. Every draw of a step (dropout masks, reparameterization noise) goes through an
// IRandomSource, which either generates it with the counter-based Philox kernels (identical on every
// backend; draw number n of a run uses stream id n, so a run is reproducible and resumable from its
// counter) or replays arrays recorded from another implementation, in order.
using PvlrKernels.Kernels;

namespace PvlrKernels.Engine;

public interface IRandomSource
{
    /// Fills mask with 0 (probability p) or 1/(1-p).
    void DropoutMask(Graph g, Tensor mask, float p, string tag);
    /// Fills y with the mean over `samples` independent draws of N(0, std^2) of y's shape
    /// (the recorded form is the full (samples, ...) tensor).
    void NormalMean(Graph g, Tensor y, float std, int samples, string tag);
    /// Number of draws made so far (saved in checkpoints so a resumed run continues the streams).
    long Counter { get; set; }
}

public sealed class PhiloxSource(ulong seed) : IRandomSource
{
    public ulong Seed { get; } = seed;
    public long Counter { get; set; }

    RngKey Next() { ulong c = (ulong)Counter++; return new RngKey { K0 = (uint)Seed, K1 = (uint)(Seed >> 32),
        S0 = (uint)c, S1 = (uint)(c >> 32) }; }

    public void DropoutMask(Graph g, Tensor mask, float p, string tag) =>
        g.Backend.DropoutMask(mask, mask.Size, p, Next());
    /// The mean of `samples` iid N(0, std^2) draws is exactly N(0, std^2 / samples) in distribution, so
    /// one draw per element at std / sqrt(samples) replaces P draws (20x fewer Philox calls per step).
    public void NormalMean(Graph g, Tensor y, float std, int samples, string tag) =>
        g.Backend.Normal(y, y.Size, std / MathF.Sqrt(samples), 1, Next());
}

/// Replays recorded draws by tag (the names the model passes to Dropout / NormalMean). With
/// `channelFirst` (the original's layout), a rank-3 mask is recorded (B,C,T) as its convolution's output
/// and is transposed to our time-major (B,T,C); the shape alone cannot tell when T = C. Otherwise a
/// recorded array must have the requested shape. Noise is the full (samples, ...) tensor, averaged here.
public sealed class ReplaySource : IRandomSource
{
    readonly Dictionary<string, (float[] data, int[] shape)> draws = new();
    readonly HashSet<string> used = new();
    readonly bool channelFirst;
    public ReplaySource(IEnumerable<(string tag, float[] data, int[] shape)> recorded, bool channelFirst = false)
    {
        this.channelFirst = channelFirst;
        foreach (var (tag, data, shape) in recorded)
            if (!draws.TryAdd(tag, (data, shape))) throw new ArgumentException($"replay: draw '{tag}' recorded twice");
    }
    public long Counter { get => used.Count; set =>
        throw new NotSupportedException("a replay cannot be repositioned"); }
    /// Recorded draws the model never asked for (AE_d's masks when the dead decoder is skipped).
    public IEnumerable<string> Unused => draws.Keys.Where(k => !used.Contains(k));

    float[] Take(string tag, int[] shape, string what)
    {
        if (!draws.TryGetValue(tag,
            out var d)) throw new InvalidOperationException($"replay: no recorded draw for {what} '{tag}' (recorded: "
                + $"{string.Join(", ", draws.Keys)})");
        if (!used.Add(tag)) throw new InvalidOperationException($"replay: {what} '{tag}' asked for twice");
        bool transpose = channelFirst && shape.Length == 3;
        if (!transpose && d.shape.SequenceEqual(shape)) return d.data;
        if (transpose && d.shape.Length == 3 && d.shape[0] == shape[0] && d.shape[1] == shape[2]
            && d.shape[2] == shape[1])
        {
            int b = shape[0], t = shape[1], c = shape[2];
            var o = new float[d.data.Length];
            for (int i = 0; i < b; i++)
                for (int x = 0; x < t; x++)
                    for (int y = 0; y < c; y++) o[((long)i * t + x) * c + y] = d.data[((long)i * c + y) * t + x];
            return o;
        }
        throw new ShapeException($"replay: recorded draw '{tag}' has shape {Tensor.ShapeStr(d.shape)}, {what} needs "
            + $"{Tensor.ShapeStr(shape)}");
    }

    public void DropoutMask(Graph g, Tensor mask, float p, string tag) => g.Backend.Upload(mask,
        Take(tag, mask.Shape, "dropout mask"));

    public void NormalMean(Graph g, Tensor y, float std, int samples, string tag)
    {
        var data = Take(tag, new[] { samples }.Concat(y.Shape).ToArray(), "noise");
        var mean = new float[y.Size];
        for (int s = 0; s < samples; s++)
            for (long i = 0; i < y.Size; i++) mean[i] += data[s * y.Size + i];
        for (long i = 0; i < y.Size; i++) mean[i] /= samples;
        g.Backend.Upload(y, mean);
    }
}

public sealed partial class Graph
{
    /// Inverted dropout: x * mask, mask in {0, 1/(1-p)}. Identity when not training or p = 0.
    public Tensor Dropout(Tensor x, float p, string tag)
    {
        if (!Training || p <= 0f) return x;
        if (Rng == null) throw new InvalidOperationException("dropout in training mode needs a random source");
        var mask = New(x.Shape);
        Rng.DropoutMask(this, mask, p, tag);
        return Mul(x, mask);
    }
}
