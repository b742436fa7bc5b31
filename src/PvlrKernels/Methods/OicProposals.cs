// The proposal pieces UM and ACM-Net share (UM utils.py, ACM-Net utils/net_evaluation.py, the same
// functions): scipy interp1d up-sampling, outer-inner-contrast proposals, hard NMS with the "+1" areas.
using PvlrKernels.Util;

namespace PvlrKernels.Methods;

public static class OicProposals
{
    /// utils.upgrade_resolution: scipy's linear interp1d with extrapolation at x_i = i / scale, i < n scale.
    public static double[] UpSample(double[] y, int scale)
    {
        int n = y.Length;
        var up = new double[n * scale];
        double step = 1.0 / scale;
        for (int i = 0; i < up.Length; i++)
        {
            if (n == 1)
            {
                up[i] = y[0];
                continue;
            }
            double x = i * step;
            int hi = Math.Clamp((int)Math.Ceiling(x), 1, n - 1), lo = hi - 1;     // searchsorted(left), clipped
            up[i] = (y[hi] - y[lo]) / (hi - lo) * (x - lo) + y[lo];
        }
        return up;
    }

    /// utils.get_proposal_oic: runs of positions where sel > 0 (a run of one is dropped; a lone index 0 is
    /// skipped, as `temp_list.any()` does), scored by the mean of w inside minus the mean in the lambda
    /// margins outside, plus `bonus` (gamma times the video score).
    public static void Oic(double[] sel, double[] w, double lambda, double bonus, double tFactor,
        List<(double, double, double)> outp)
    {
        var pos = new List<int>();
        for (int i = 0; i < sel.Length; i++) if (sel[i] > 0) pos.Add(i);
        if (!pos.Any(p => p != 0)) return;
        int start = 0;
        for (int i = 1; i <= pos.Count; i++)
        {
            if (i < pos.Count && pos[i] == pos[i - 1] + 1) continue;
            int s = pos[start], e = pos[i - 1], len = e - s + 1;
            start = i;
            if (len < 2) continue;
            double inner = 0;
            for (int k = s; k <= e; k++) inner += w[k];
            inner /= len;
            int os = Math.Max(0, (int)(s - lambda * len)), oe = Math.Min(w.Length - 1, (int)(e + lambda * len));
            double outer = 0;
            int count = 0;
            for (int k = os; k < s; k++)
            {
                outer += w[k];
                count++;
            }
            for (int k = e + 1; k <= oe; k++)
            {
                outer += w[k];
                count++;
            }
            outer = count == 0 ? 0 : outer / count;
            outp.Add((inner - outer + bonus, s * tFactor, (e + 1) * tFactor));
        }
    }

    /// utils.nms: scores.argsort()[::-1] (numpy's order), then every proposal whose IoU with the kept one
    /// (areas e - s + 1) is >= thresh is dropped.
    public static List<(double score, double start, double end)> Nms(List<(double score, double start,
        double end)> props, double thresh)
    {
        var keep = new List<(double, double, double)>();
        var order = NumpySort.ArgsortReversed<double>(props.Select(p => p.score).ToArray()).ToList();
        while (order.Count > 0)
        {
            var best = props[order[0]];
            keep.Add(best);
            var rest = new List<int>();
            for (int k = 1; k < order.Count; k++)
            {
                var p = props[order[k]];
                double inter = Math.Max(0, Math.Min(best.end, p.end) - Math.Max(best.start, p.start) + 1);
                double iou = inter / ((best.end - best.start + 1) + (p.end - p.start + 1) - inter);
                if (iou < thresh) rest.Add(order[k]);
            }
            order = rest;
        }
        return keep;
    }
}
