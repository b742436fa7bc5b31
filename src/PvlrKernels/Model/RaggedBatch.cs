// Several test videos of different lengths as one sequence (1, R, F), packed as its two feature halves
// (RGB and flow, (1, R, F/2) each):
//   [0 | video 1 | 0 | video 2 | ... | video n | 0]
// with one zero row before, between and after the videos. A k = 3, padding 1 convolution over it equals
// each video's own convolution at its rows as long as the zero rows stay zero, which Mask (1, R, 1)
// enforces after each convolution (fused into Winograd's output transform). Per-video means use SegMean
// (n, R: 1/T at a video's rows), per-video broadcasts gather by RowVideo (1, R). The batch turns 212
// per-video forwards into a few large GEMMs (PvlrModel.Forward with a RaggedBatch).
using PvlrKernels.Engine;

namespace PvlrKernels.Model;

public sealed class RaggedBatch
{
    public readonly int[] Lengths, Starts;   // Starts[i]: the first row of video i
    public readonly int Rows;
    public readonly Tensor Mask, SegMean, RowVideo;

    public RaggedBatch(Graph g, IReadOnlyList<int> lengths)
    {
        if (lengths.Count == 0) throw new ArgumentException("ragged batch: no videos");
        Lengths = lengths.ToArray();
        Starts = new int[Lengths.Length];
        int r = 1;
        for (int i = 0; i < Lengths.Length; i++)
        {
            if (Lengths[i] < 1) throw new ShapeException($"ragged batch: video {i} is empty (T = 0)");
            Starts[i] = r;
            r += Lengths[i] + 1;
        }
        Rows = r;
        var mask = new float[Rows];
        var seg = new float[Lengths.Length * Rows];
        var rowVideo = new float[Rows];
        for (int i = 0; i < Lengths.Length; i++)
            for (int t = Starts[i]; t < Starts[i] + Lengths[i]; t++)
            {
                mask[t] = 1;
                seg[i * Rows + t] = 1f / Lengths[i];
                rowVideo[t] = i;
            }
        Mask = g.FromHost(mask, 1, Rows, 1); SegMean = g.FromHost(seg, Lengths.Length,
            Rows); RowVideo = g.FromHost(rowVideo, 1, Rows);
    }

    public int Count => Lengths.Length;

    /// The packed input split at `half` columns into two (1, R, ·) tensors, the first `half` features of
    /// each row in one and the rest in the other (PVLR's RGB and flow streams), zero rows included: the
    /// model then takes its two streams without slicing copies.
    public (Tensor lo, Tensor hi) PackHalves(Graph g, IReadOnlyList<ReadOnlyMemory<float>> features, int width,
        int half)
    {
        if (half <= 0 || half >= width) throw new ShapeException($"ragged batch: split at {half} of {width} features");
        for (int i = 0; i < Count; i++)
            if (features[i].Length < (long)Lengths[i] * width)
                throw new ShapeException($"ragged batch: video {i} holds {features[i].Length} values, expected "
                    + $"(T={Lengths[i]}, {width})");
        // columns [from, from + w) of every feature row, with the zero rows before, between and after the videos
        Tensor Columns(int from, int w)
        {
            var x = g.New(new[] { 1, Rows, w });
            for (int i = 0; i < Count; i++)
            {
                g.Backend.Fill(x.At((long)(Starts[i] - 1) * w), w, 0f);
                g.Backend.UploadColumns(x.At((long)Starts[i] * w), features[i], Lengths[i], width, from, w);
            }
            g.Backend.Fill(x.At((long)(Rows - 1) * w), w, 0f);
            return x;
        }
        return (Columns(0, half), Columns(half, width - half));
    }

    /// Video i's rows of a downloaded (1, R, width) output.
    public float[] Unpack(float[] packed, int i, int width) => packed.AsSpan(Starts[i] * width,
        Lengths[i] * width).ToArray();
}
