// The THUMOS14 detection evaluator of PVLR / CO2-Net (ActivityNet-style; PVLR's eval/eval_detection.py and
// eval/utils_eval.py), in snippet units: GT t = round_half_even(seconds * 25/16); per class, predictions sorted by
// score descending; greedy matching in decreasing tIoU (no +1); interpolated (VOC2011 all-point) AP; mAP over 20
// classes. Tie rules: the reference's own. Predictions are ordered by `scores.argsort()[::-1]` and each
// prediction's GT by `tiou.argsort()[::-1]` (eval_detection.py compute_average_precision_detection), with
// numpy 1.24's unstable introsort (Util/ReferenceSorts.cs), so equal scores come out in numpy's order and
// a NaN tIoU (0/0, a zero-length prediction on a zero-length GT) is walked FIRST: argsort puts NaN last,
// the reversal puts it first, and `NaN < thr` is false, so it matches as a true positive.
namespace PvlrKernels.Eval;

public readonly record struct Detection(string Video, double Start, double End, int Label, double Score);
public readonly record struct GtSegment(string Video, double Start, double End, int Label);

public sealed class EvalResult
{
    public double[] Thresholds;
    public double[] Map;                 // percent, per threshold
    public double[,] Ap;                 // (class, threshold), fraction
    public double ClassificationMap = double.NaN;
    public double Avg(double lo, double hi)
    {
        var v = Thresholds.Select((t, i) => (t,
            i)).Where(x => x.t >= lo - 1e-9 && x.t <= hi + 1e-9).Select(x => Map[x.i]).ToArray();
        return v.Length == 0 ? double.NaN : v.Average();
    }
    public double Avg01_07 => Avg(0.1, 0.7);
    public double SumMap01_07 => Thresholds.Select((t, i) => (t, i)).Where(x => x.t <= 0.7 + 1e-9).Sum(x => Map[x.i]);

    /// ActivityNet's thresholds (0.5 and up): mAP@0.5, 0.75, 0.95 and their mean over all ten.
    public bool ActivityNet => IsActivityNet(Thresholds);
    static bool IsActivityNet(double[] thresholds) => thresholds.Min() >= 0.5 - 1e-9;

    /// The average a result is quoted by: mAP@0.1:0.7 on THUMOS, mAP@0.5:0.95 on ActivityNet.
    public (string name, double value) Headline =>
        ActivityNet ? ("AVG mAP@0.5:0.95", Map.Average()) : ("AVG mAP@0.1:0.7", Avg01_07);

    /// What a training run keeps its best checkpoint by (a key for best.json, and the value): THUMOS the sum
    /// of mAP@0.1:0.7 (PVLR main.py), ActivityNet the mean of mAP@0.5:0.95 (CO2-Net main.py:80, PVLR
    /// src/anet/main.py:168).
    public (string key, double value) Selection =>
        (SelectionKey(Thresholds), ActivityNet ? Map.Average() : SumMap01_07);

    /// Selection's key for a benchmark evaluated at `thresholds` (what a resumed run reads from best.json).
    public static string SelectionKey(double[] thresholds) =>
        IsActivityNet(thresholds) ? "avg_map_0.5_0.95" : "sum_map_0.1_0.7";

    public string Table()
    {
        if (ActivityNet)
        {
            double At(double t) => Map[Array.FindIndex(Thresholds, x => Math.Abs(x - t) < 1e-9)];
            return "| mAP@0.5 | mAP@0.75 | mAP@0.95 | AVG(0.5:0.95) |\n|---|---|---|---|\n" +
                $"| {At(0.5):F2} | {At(0.75):F2} | {At(0.95):F2} | {Map.Average():F2} |\n"
                + (double.IsNaN(ClassificationMap) ? "" : $"classification mAP: {ClassificationMap:F2}\n");
        }
        var sb = new System.Text.StringBuilder();
        var cols = Thresholds.Where(t => t <= 0.7 + 1e-9).ToArray();
        sb.AppendLine("| " + string.Join(" | ",
            cols.Select(t => $"mAP@{t:0.0}")) + " | AVG(0.1:0.5) | AVG(0.3:0.7) | AVG(0.1:0.7) |");
        sb.AppendLine("|" + string.Concat(Enumerable.Repeat("---|", cols.Length + 3)));
        sb.AppendLine("| " + string.Join(" | ",
            cols.Select(t => $"{Map[Array.IndexOf(Thresholds, t)]:F2}"))
                + $" | {Avg(0.1, 0.5):F2} | {Avg(0.3, 0.7):F2} | {Avg01_07:F2} |");
        if (!double.IsNaN(ClassificationMap)) sb.AppendLine($"classification mAP: {ClassificationMap:F2}");
        return sb.ToString();
    }

    public string Json()
    {
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        if (ActivityNet)
            return "{\"map\": {" + string.Join(", ", Thresholds.Select((t, i) =>
            $"\"{t.ToString("0.00", inv)}\": {Map[i].ToString("R", inv)}"))
            + $"}}, \"avg_0.5_0.95\": {Map.Average().ToString("R", inv)}}}";
        var m = string.Join(", ", Thresholds.Select((t,
            i) => $"\"{t.ToString("0.0", inv)}\": {Map[i].ToString("R", inv)}"));
        return $"{{\"map\": {{{m}}}, \"avg_0.1_0.5\": {Avg(0.1, 0.5).ToString("R", inv)}, "
            + $"\"avg_0.3_0.7\": {Avg(0.3, 0.7).ToString("R", inv)}, \"avg_0.1_0.7\": {Avg01_07.ToString("R", inv)}}}";
    }
}

public static class Evaluator
{
    public static readonly double[] Thresholds = Enumerable.Range(1, 9).Select(i => i / 10.0).ToArray();
    public const double SnippetsPerSecond = 25.0 / 16.0;

    /// GT of the test subset: videos with at least one segment, seconds -> snippets, half-to-even.
    public static List<GtSegment> GroundTruth(Data.Annotations ann)
    {
        var gt = new List<GtSegment>();
        foreach (var v in ann.Test)
            foreach (var (s, e, l) in v.Segments)
                gt.Add(new GtSegment(v.Name, Math.Round(s * SnippetsPerSecond, MidpointRounding.ToEven),
                    Math.Round(e * SnippetsPerSecond, MidpointRounding.ToEven), ann.ClassIndex(l)));
        return gt;
    }

    public static EvalResult Evaluate(IReadOnlyList<GtSegment> gt, IReadOnlyList<Detection> preds, int numClasses,
        double[] thresholds = null)
    {
        thresholds ??= Thresholds;
        var ap = new double[numClasses, thresholds.Length];
        var gtByClass = gt.GroupBy(g => g.Label).ToDictionary(g => g.Key, g => g.ToList());
        var predByClass = preds.Select((p, i) => (p, i)).GroupBy(x => x.p.Label).ToDictionary(g => g.Key,
            g => g.Select(x => x.p).ToList());
        Engine.CpuPool.For(numClasses, c =>
        {
            var g = gtByClass.TryGetValue(c, out var gl) ? gl : new List<GtSegment>();
            var p = predByClass.TryGetValue(c, out var pl) ? pl : new List<Detection>();
            var row = ApDetection(g, p, thresholds);
            for (int t = 0; t < thresholds.Length; t++) ap[c, t] = row[t];
        });
        var map = new double[thresholds.Length];
        for (int t = 0; t < thresholds.Length; t++)
        {
            double s = 0;
            for (int c = 0; c < numClasses; c++) s += ap[c, t];
            map[t] = 100.0 * s / numClasses;
        }
        return new EvalResult { Thresholds = thresholds, Map = map, Ap = ap };
    }

    /// compute_average_precision_detection for one class.
    public static double[] ApDetection(List<GtSegment> gt, List<Detection> preds, double[] thresholds)
    {
        var ap = new double[thresholds.Length];
        int npos = gt.Count;
        if (preds.Count == 0 || npos == 0) return ap;          // no prediction (or no GT): AP 0
        var scores = new double[preds.Count];
        for (int i = 0; i < scores.Length; i++) scores[i] = preds[i].Score;
        var order = Util.NumpySort.ArgsortReversed<double>(scores);
        var gtByVideo = new Dictionary<string, List<int>>();
        for (int i = 0; i < gt.Count; i++)
        {
            if (!gtByVideo.TryGetValue(gt[i].Video, out var l)) gtByVideo[gt[i].Video] = l = new();
            l.Add(i);
        }
        int nT = thresholds.Length, nP = preds.Count;
        var tp = new byte[nT, nP];
        var fp = new byte[nT, nP];
        var locked = new bool[nT, npos];
        for (int r = 0; r < nP; r++)
        {
            var p = preds[order[r]];
            if (!gtByVideo.TryGetValue(p.Video, out var gl))
            {
                for (int t = 0; t < nT; t++) fp[t, r] = 1;
                continue;
            }
            var tiou = new double[gl.Count];
            for (int q = 0; q < gl.Count; q++)
            {
                var g = gt[gl[q]];
                double inter = Math.Max(0, Math.Min(p.End, g.End) - Math.Max(p.Start, g.Start));
                double union = (p.End - p.Start) + (g.End - g.Start) - inter;
                tiou[q] = inter / union;
            }
            var walk = Util.NumpySort.ArgsortReversed<double>(tiou);
            for (int t = 0; t < nT; t++)
            {
                foreach (var q in walk)
                {
                    double v = tiou[q];
                    int g = gl[q];
                    if (v < thresholds[t]) { fp[t, r] = 1; break; }       // false for NaN
                    if (locked[t, g]) continue;
                    tp[t, r] = 1;
                    locked[t, g] = true;
                    break;
                }
                if (tp[t, r] == 0 && fp[t, r] == 0) fp[t, r] = 1;
            }
        }
        for (int t = 0; t < nT; t++)
        {
            var prec = new double[nP];
            var rec = new double[nP];
            double ctp = 0, cfp = 0;
            for (int r = 0; r < nP; r++)
            {
                ctp += tp[t, r];
                cfp += fp[t, r];
                rec[r] = ctp / npos;
                prec[r] = ctp / (ctp + cfp);
            }
            ap[t] = InterpolatedAp(prec, rec);
        }
        return ap;
    }

    /// VOC2011 all-point interpolated AP (utils_eval.py interpolated_prec_rec).
    public static double InterpolatedAp(double[] prec, double[] rec)
    {
        int n = prec.Length;
        var mp = new double[n + 2];
        var mr = new double[n + 2];
        mr[n + 1] = 1;
        for (int i = 0; i < n; i++)
        {
            mp[i + 1] = prec[i];
            mr[i + 1] = rec[i];
        }
        for (int i = n; i >= 0; i--) mp[i] = Math.Max(mp[i], mp[i + 1]);
        double ap = 0;
        for (int i = 1; i < n + 2; i++) if (mr[i] != mr[i - 1]) ap += (mr[i] - mr[i - 1]) * mp[i];
        return ap;
    }

    /// Classification mAP (classificationMAP.py getAP / getClassificationMAP): per class, the video scores
    /// (float32 softmax outputs) ordered by `np.argsort(-conf)`, cumulative TP/FP counts and precision in
    /// float32, `np.sum(tmp * prec)` in float32 (numpy's pairwise sum), divided by the float64 count of
    /// positives; then 100 * sum(AP) / C in float64. One departure: a class without positives counts as
    /// AP 0 (the reference divides 0 by 0 and prints nan).
    public static double ClassificationMap(float[][] scores, float[][] labels)
    {
        int c = labels[0].Length, n = scores.Length;
        double sum = 0;
        var negated = new float[n];
        var terms = new float[n];
        for (int k = 0; k < c; k++)
        {
            for (int i = 0; i < n; i++) negated[i] = -scores[i][k];
            var order = Util.NumpySort.Argsort<float>(negated);
            double npos = 0;
            foreach (var l in labels) npos += l[k];
            if (npos == 0) continue;
            float tp = 0, fp = 0;
            for (int r = 0; r < n; r++)
            {
                bool pos = labels[order[r]][k] == 1;
                if (pos) tp++; else fp++;
                terms[r] = pos ? tp / (fp + tp) : 0f;        // tmp * prec, tmp in {0, 1}
            }
            sum += PairwiseSum(terms.AsSpan(0, n)) / npos;
        }
        return 100 * sum / c;
    }

    /// numpy's float32 `add.reduce` over a contiguous array (loops_utils.h pairwise_sum): under 8 values
    /// in order, up to 128 in eight interleaved partial sums, above that split in halves of multiples of 8.
    public static float PairwiseSum(ReadOnlySpan<float> a)
    {
        int n = a.Length;
        if (n < 8)
        {
            float res = 0f;
            for (int i = 0; i < n; i++) res += a[i];
            return res;
        }
        if (n <= 128)
        {
            Span<float> r = stackalloc float[8];
            a[..8].CopyTo(r);
            int i = 8;
            for (; i < n - n % 8; i += 8)
                for (int j = 0; j < 8; j++) r[j] += a[i + j];
            float res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
            for (; i < n; i++) res += a[i];
            return res;
        }
        int n2 = n / 2;
        n2 -= n2 % 8;
        return PairwiseSum(a[..n2]) + PairwiseSum(a[n2..]);
    }
}
