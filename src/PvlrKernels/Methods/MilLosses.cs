// Losses and scores that several methods share, as CO2-Net wrote them first (harlanhong/MM2021-CO2-Net
// model.py) and PVLR and others copied them: the top-k MIL loss, the co-activity contrast, the
// attention-suppressed CAS, the guide loss, and the video classification scores of the test loop.
using PvlrKernels.Engine;

namespace PvlrKernels.Methods;

public static class MilLosses
{
    /// attn * (cas - min_c cas) + min_c cas (model.py:96-101 `_multiply(include_min=True)`): cas (B, T, C+1),
    /// attn (B, T, 1).
    public static Tensor Suppressed(Graph g, Tensor cas, Tensor attn)
    {
        var mn = g.Min(cas, 2);
        return g.Add(g.Mul(attn, g.Sub(cas, mn)), mn);
    }

    /// mean |1 - a - softmax(cas)_background| (model.py:122-135): the guide loss of one attention (B, T, 1).
    public static Tensor Guide(Graph g, Tensor a, Tensor backgroundProb) =>
        g.MeanAll(g.Abs(g.AddScalar(g.Scale(g.Add(a, backgroundProb), -1f), 1f)));

    /// softmax(cas)'s background column (B, T, 1).
    public static Tensor BackgroundProb(Graph g, Tensor cas) => g.Slice(g.Softmax(cas, 2), 2, cas.Dim(2) - 1, 1);

    /// The top-k MIL loss (CO2-Net model.py:154-183, PVLR loss.py:13-41): -mean_b sum_c yhat log_softmax(mean
    /// of the top k = T / ratio of S over time), yhat = y' / (sum y' + 1e-4), y' = [y, back]. S (B, T, C+1).
    public static Tensor TopKMil(Graph g, Tensor s, float[] labels, int ratio, bool back)
    {
        int b = s.Dim(0), t = s.Dim(1), c = s.Dim(2) - 1, k = Math.Max(1, t / ratio);
        if (labels.Length != b * c)
            throw new ShapeException($"mil: labels hold {labels.Length} values, expected (B={b}, C={c})");
        var mean = g.Mean(g.TopK(s, 1, k).values, 1);                      // (B,1,C+1)
        var ls = g.LogSoftmax(mean, 2);
        var yh = new float[b * (c + 1)];
        for (int i = 0; i < b; i++)
        {
            float sum = back ? 1 : 0;
            for (int j = 0; j < c; j++) sum += labels[i * c + j];
            for (int j = 0; j < c; j++) yh[i * (c + 1) + j] = labels[i * c + j] / (sum + 1e-4f);
            yh[i * (c + 1) + c] = (back ? 1 : 0) / (sum + 1e-4f);
        }
        return g.Scale(g.SumAll(g.Mul(ls, g.FromHost(yh, b, 1, c + 1))), -1f / b);
    }

    /// Co-activity similarity over the hard-coded pairs (0,1), (2,3), (4,5) (CO2-Net model.py:185-212, PVLR
    /// loss.py:43-81): feat (B, T, F), the suppressed CAS (B, T, C+1).
    public static Tensor CoActivity(Graph g, Tensor feat, Tensor ssup, float[] labels)
    {
        int b = ssup.Dim(0), t = ssup.Dim(1), c = ssup.Dim(2) - 1;
        int pairs = Math.Min(3, b / 2), f = feat.Dim(2), c1 = c + 1;
        Tensor Half(Tensor x, int which, int width)
        {
            var rows = g.Reshape(g.SliceRows(x, 0, 2 * pairs), pairs, 2 * t * width);
            return g.Reshape(g.Slice(rows, 1, which * t * width, t * width), pairs, t, width);
        }
        var fi = Half(feat, 0, f);
        var fj = Half(feat, 1, f);
        var ai = g.Softmax(Half(ssup, 0, c1), 1);
        var aj = g.Softmax(Half(ssup, 1, c1), 1);
        float inv = 1f / Math.Max(t - 1, 1);
        Tensor Hf(Tensor x, Tensor a) => g.MatMul(x, a,
            transA: true);                                    // (pairs, F, C+1)
        Tensor Lf(Tensor x, Tensor a) => g.Scale(g.MatMul(x, g.AddScalar(g.Scale(a, -1f), 1f), transA: true), inv);
        Tensor Cos(Tensor x, Tensor y) => g.Sum(g.Mul(g.L2Normalize(x, 1, 0f), g.L2Normalize(y, 1, 0f)),
            1);   // (pairs,1,C+1)
        var hi = Hf(fi, ai);
        var hj = Hf(fj, aj);
        var c1s = Cos(hi, hj);
        var c2s = Cos(hi, Lf(fj, aj));
        var c3s = Cos(hj, Lf(fi, ai));
        // d1 - d2 = c2 - c1 with d = 1 - cos
        var term = g.Scale(g.Add(g.Hinge(g.AddScalar(g.Sub(c2s, c1s), 0.5f)), g.Hinge(g.AddScalar(g.Sub(c3s, c1s),
            0.5f))), 0.5f);
        var w = new float[pairs * c1];
        float n = 0;
        for (int p = 0; p < pairs; p++)
            for (int j = 0; j < c; j++)
            {
                w[p * c1 + j] = labels[2 * p * c + j] * labels[(2 * p + 1) * c + j];
                n += w[p * c1 + j];
            }
        if (n == 0)
            throw new InvalidOperationException("co-activity loss: no pair in rows (0,1),(2,3),(4,5) shares a class; "
                + "the batch sampler must put same-class pairs there");
        return g.Scale(g.SumAll(g.Mul(term, g.FromHost(w, pairs, 1, c1))), 1f / n);
    }

    /// The classification scores the test loops of CO2-Net and PVLR feed to the classification mAP
    /// (test.py:69, eval/inference.py:72): softmax over C+1 of the mean of the top ceil(T/8) raw CAS values
    /// per class, the first C columns, in float32. cas (T, C+1).
    public static float[] ClassificationScores(float[] cas, int t, int c1)
    {
        int k = (t + 7) / 8;
        var mean = new float[c1];
        var column = new float[t];
        for (int c = 0; c < c1; c++)
        {
            for (int i = 0; i < t; i++) column[i] = cas[i * c1 + c];
            Array.Sort(column);
            Array.Reverse(column);
            float sum = 0;
            for (int i = 0; i < k; i++) sum += column[i];
            mean[c] = sum / k;
        }
        float mx = mean.Max(), z = 0;
        var e = new float[c1];
        for (int c = 0; c < c1; c++)
        {
            e[c] = MathF.Exp(mean[c] - mx);
            z += e[c];
        }
        var scores = new float[c1 - 1];
        for (int c = 0; c < c1 - 1; c++) scores[c] = e[c] / z;
        return scores;
    }
}
