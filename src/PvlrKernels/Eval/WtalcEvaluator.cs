// W-TALC's THUMOS14 detection mAP (sujoyp/wtalc-pytorch detectionMAP.py:31-160, getLocMAP), applied to
// given detections in snippet units. It differs from the ActivityNet-style evaluator (Evaluator.cs) in
// every step after the proposals:
//   * IoU between snippet index sets: GT range(round(s * 25/16), round(e * 25/16)) with Python's
//     round-half-even, prediction range(int(s), int(e)), |intersection| / |union| (:143-145);
//   * a prediction overlapping any ambiguous segment of its video (set IoU > 0) is dropped (:17-29);
//   * predictions by np.argsort(-score) (numpy's introsort, ties in its order), each matched to the FIRST
//     remaining GT of its video and class in annotation order with IoU >= th, which is then removed
//     (:139-149), not the best one;
//   * AP = sum(precision at each true positive) / #GT, not interpolated (:152-158); mAP over the classes
//     with test GT (:84-89);
//   * if a class has no predictions left, the whole threshold's mAP is 0 (:129-130).
// A prediction and a GT whose index ranges are both empty make the original divide 0 by 0 and stop; here
// that IoU is 0.
using PvlrKernels.Data;
using PvlrKernels.Util;

namespace PvlrKernels.Eval;

public static class WtalcEvaluator
{
    const double Factor = 25.0 / 16.0;

    static (int lo, int hi) GtRange(double s, double e) =>
        ((int)Math.Round(s * Factor, MidpointRounding.ToEven), (int)Math.Round(e * Factor, MidpointRounding.ToEven));

    /// |[a0, a1) n [b0, b1)| / |[a0, a1) u [b0, b1)| for integer ranges (empty when hi <= lo).
    public static double SetIou(int a0, int a1, int b0, int b1)
    {
        int la = Math.Max(0, a1 - a0), lb = Math.Max(0, b1 - b0);
        int inter = la == 0 || lb == 0 ? 0 : Math.Max(0, Math.Min(a1, b1) - Math.Max(a0, b0));
        int union = la + lb - inter;
        return union == 0 ? 0 : (double)inter / union;
    }

    /// mAP (percent) per threshold of detections (Start/End in snippets) against the test GT of `ann`.
    public static EvalResult Evaluate(Annotations ann, IReadOnlyList<Detection> dets, double[] thresholds = null)
    {
        thresholds ??= Evaluator.Thresholds;
        var test = ann.Test.Where(v => v.Segments.Length > 0).ToList();
        var withGt = test.Select(v => v.Name).ToHashSet();
        var classes = test.SelectMany(v => v.Segments.Select(s =>
            ann.ClassIndex(s.label))).Distinct().Order().ToArray();
        var ap = new double[ann.Classes.Length, thresholds.Length];
        var map = new double[thresholds.Length];
        // per class, the predictions that survive the ambiguous filter, by descending score (np.argsort(-score))
        var ranked = classes.ToDictionary(c => c, c =>
        {
            var kept = dets.Where(d => d.Label == c && withGt.Contains(d.Video) && !Ambiguous(ann, d)).ToArray();
            var order = NumpySort.Argsort<double>(kept.Select(d => -d.Score).ToArray());
            return order.Select(i => kept[i]).ToArray();
        });
        for (int t = 0; t < thresholds.Length; t++)
        {
            if (ranked.Values.Any(r => r.Length == 0))
            {
                map[t] = 0;
                continue;
            }
            double sum = 0;
            foreach (var c in classes)
            {
                var gt = test.SelectMany(v => v.Segments.Where(s => ann.ClassIndex(s.label) == c)
                    .Select(s => (v.Name, range: GtRange(s.start, s.end)))).ToList();
                int npos = gt.Count, tp = 0, seen = 0;
                double precisionSum = 0;
                foreach (var d in ranked[c])
                {
                    seen++;
                    int p0 = (int)Math.Truncate(d.Start), p1 = (int)Math.Truncate(d.End);
                    int hit = gt.FindIndex(g =>
                        g.Name == d.Video && SetIou(g.range.lo, g.range.hi, p0, p1) >= thresholds[t]);
                    if (hit < 0) continue;
                    gt.RemoveAt(hit);
                    tp++;
                    precisionSum += (double)tp / seen;
                }
                ap[c, t] = tp == 0 ? 0 : precisionSum / npos;
                sum += ap[c, t];
            }
            map[t] = 100 * sum / classes.Length;
        }
        return new EvalResult { Thresholds = thresholds, Map = map, Ap = ap };
    }

    static bool Ambiguous(Annotations ann, Detection d)
    {
        if (!ann.Ambiguous.TryGetValue(d.Video, out var list)) return false;
        int p0 = (int)Math.Truncate(d.Start), p1 = (int)Math.Truncate(d.End);
        return list.Any(a => { var (lo, hi) = GtRange(a.start, a.end); return SetIou(lo, hi, p0, p1) > 0; });
    }
}
