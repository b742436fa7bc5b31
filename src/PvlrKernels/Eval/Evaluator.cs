// The THUMOS14 detection evaluator of PVLR / CO2-Net (ActivityNet-style, docs/eval.md), in snippet
// units: GT t = round_half_even(seconds * 25/16); per class, predictions sorted by score descending;
// greedy matching in decreasing tIoU (no +1); interpolated (VOC2011 all-point) AP; mAP over 20 classes.
// Tie rules (stated, since numpy's argsort order is implementation-defined): equal scores keep their
// input order; equal tIoUs against several GT are walked higher GT index first (numpy's
// insertion-sort-then-reverse order for small arrays).
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
        var v = Thresholds.Select((t, i) => (t, i)).Where(x => x.t >= lo - 1e-9 && x.t <= hi + 1e-9).Select(x => Map[x.i]).ToArray();
        return v.Length == 0 ? double.NaN : v.Average();
    }
    public double Avg01_07 => Avg(0.1, 0.7);
    public double SumMap01_07 => Thresholds.Select((t, i) => (t, i)).Where(x => x.t <= 0.7 + 1e-9).Sum(x => Map[x.i]);

    public string Table()
    {
        var sb = new System.Text.StringBuilder();
        var cols = Thresholds.Where(t => t <= 0.7 + 1e-9).ToArray();
        sb.AppendLine("| " + string.Join(" | ", cols.Select(t => $"mAP@{t:0.0}")) + " | AVG(0.1:0.5) | AVG(0.3:0.7) | AVG(0.1:0.7) |");
        sb.AppendLine("|" + string.Concat(Enumerable.Repeat("---|", cols.Length + 3)));
        sb.AppendLine("| " + string.Join(" | ", cols.Select(t => $"{Map[Array.IndexOf(Thresholds, t)]:F2}")) + $" | {Avg(0.1, 0.5):F2} | {Avg(0.3, 0.7):F2} | {Avg01_07:F2} |");
        if (!double.IsNaN(ClassificationMap)) sb.AppendLine($"classification mAP: {ClassificationMap:F2}");
        return sb.ToString();
    }

    public string Json()
    {
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        var m = string.Join(", ", Thresholds.Select((t, i) => $"\"{t.ToString("0.0", inv)}\": {Map[i].ToString("R", inv)}"));
        return $"{{\"map\": {{{m}}}, \"avg_0.1_0.5\": {Avg(0.1, 0.5).ToString("R", inv)}, \"avg_0.3_0.7\": {Avg(0.3, 0.7).ToString("R", inv)}, \"avg_0.1_0.7\": {Avg01_07.ToString("R", inv)}}}";
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
                gt.Add(new GtSegment(v.Name, Math.Round(s * SnippetsPerSecond, MidpointRounding.ToEven), Math.Round(e * SnippetsPerSecond, MidpointRounding.ToEven), ann.ClassIndex(l)));
        return gt;
    }

    public static EvalResult Evaluate(IReadOnlyList<GtSegment> gt, IReadOnlyList<Detection> preds, int numClasses, double[] thresholds = null)
    {
        thresholds ??= Thresholds;
        var ap = new double[numClasses, thresholds.Length];
        var gtByClass = gt.GroupBy(g => g.Label).ToDictionary(g => g.Key, g => g.ToList());
        var predByClass = preds.Select((p, i) => (p, i)).GroupBy(x => x.p.Label).ToDictionary(g => g.Key, g => g.Select(x => x.p).ToList());
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
            double s = 0; for (int c = 0; c < numClasses; c++) s += ap[c, t];
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
        var order = Enumerable.Range(0, preds.Count).OrderByDescending(i => preds[i].Score).ToArray();   // stable
        var gtByVideo = new Dictionary<string, List<int>>();
        for (int i = 0; i < gt.Count; i++)
        {
            if (!gtByVideo.TryGetValue(gt[i].Video, out var l)) gtByVideo[gt[i].Video] = l = new();
            l.Add(i);
        }
        int nT = thresholds.Length, nP = preds.Count;
        var tp = new byte[nT, nP]; var fp = new byte[nT, nP];
        var locked = new bool[nT, npos];
        var sorted = new (double v, int g)[gtByVideo.Values.Max(l => l.Count)];
        for (int r = 0; r < nP; r++)
        {
            var p = preds[order[r]];
            if (!gtByVideo.TryGetValue(p.Video, out var gl)) { for (int t = 0; t < nT; t++) fp[t, r] = 1; continue; }
            // tIoU against the video's GT, in decreasing tIoU with ties walked from the later GT first and a
            // NaN (0/0) last, as numpy's argsort: an insertion sort (a few GT per video) by double.CompareTo
            // that puts each new entry ahead of equal ones
            int n = 0;
            foreach (var gi in gl)
            {
                double inter = Math.Max(0, Math.Min(p.End, gt[gi].End) - Math.Max(p.Start, gt[gi].Start));
                double union = (p.End - p.Start) + (gt[gi].End - gt[gi].Start) - inter;
                double v = inter / union; int at = n++;
                while (at > 0 && sorted[at - 1].v.CompareTo(v) <= 0) { sorted[at] = sorted[at - 1]; at--; }
                sorted[at] = (v, gi);
            }
            for (int t = 0; t < nT; t++)
            {
                for (int q = 0; q < n; q++)
                {
                    var (v, g) = sorted[q];
                    if (v < thresholds[t]) { fp[t, r] = 1; break; }
                    if (locked[t, g]) continue;
                    tp[t, r] = 1; locked[t, g] = true; break;
                }
                if (tp[t, r] == 0 && fp[t, r] == 0) fp[t, r] = 1;
            }
        }
        for (int t = 0; t < nT; t++)
        {
            var prec = new double[nP]; var rec = new double[nP];
            double ctp = 0, cfp = 0;
            for (int r = 0; r < nP; r++) { ctp += tp[t, r]; cfp += fp[t, r]; rec[r] = ctp / npos; prec[r] = ctp / (ctp + cfp); }
            ap[t] = InterpolatedAp(prec, rec);
        }
        return ap;
    }

    /// VOC2011 all-point interpolated AP (utils_eval.py interpolated_prec_rec).
    public static double InterpolatedAp(double[] prec, double[] rec)
    {
        int n = prec.Length;
        var mp = new double[n + 2]; var mr = new double[n + 2];
        mr[n + 1] = 1;
        for (int i = 0; i < n; i++) { mp[i + 1] = prec[i]; mr[i + 1] = rec[i]; }
        for (int i = n; i >= 0; i--) mp[i] = Math.Max(mp[i], mp[i + 1]);
        double ap = 0;
        for (int i = 1; i < n + 2; i++) if (mr[i] != mr[i - 1]) ap += (mr[i] - mr[i - 1]) * mp[i];
        return ap;
    }

    /// Classification mAP (eval/classificationMAP.py): non-interpolated AP per class of the video
    /// scores against the multi-hot labels, mean over classes, percent.
    public static double ClassificationMap(float[][] scores, float[][] labels)
    {
        int c = labels[0].Length; double sum = 0; int used = 0;
        for (int k = 0; k < c; k++)
        {
            var order = Enumerable.Range(0, scores.Length).OrderByDescending(i => scores[i][k]).ToArray();
            double npos = labels.Sum(l => l[k]);
            if (npos == 0) continue;
            double tp = 0, fp = 0, ap = 0;
            foreach (var i in order)
            {
                bool pos = labels[i][k] == 1; if (pos) tp++; else fp++;
                if (pos) ap += tp / (tp + fp);
            }
            sum += ap / npos; used++;
        }
        return used == 0 ? 0 : 100 * sum / c;
    }
}
