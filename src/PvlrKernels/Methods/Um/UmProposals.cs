// UM's test-time post-processing of one video (Pilhyeon/WTAL-Uncertainty-Modeling test.py:37-127,
// utils.py): video scores, magnitudes normalised between the background and action means, the CAS
// weighted by them and min-max normalised per class, x24 linear up-sampling (scipy interp1d with
// extrapolation), OIC proposals from thresholds on the CAS and on the magnitudes, hard NMS per class.
// Times are in seconds: t_factor = 16 T / (24 T' 25), T the video's snippets and T' the sampled ones.
using PvlrKernels.Eval;
using PvlrKernels.Util;

namespace PvlrKernels.Methods.Um;

public static class UmProposals
{
    const double Lambda = 0.25, Gamma = 0.2, FeatureFps = 25;

    /// cas (T', C) raw, magnitudes (T') of the sampled snippets; t the video's own snippet count.
    public static (List<Detection> detections, float[] scores) Generate(UmConfig cfg, string video, float[] cas, float[] magnitudes, int t)
    {
        int n = magnitudes.Length, c = cfg.NumClasses;
        if (n == 0 || cas.Length != n * c) throw new ArgumentException($"{video}: cas {cas.Length} / magnitudes {n} do not match C={c}");
        int kAct = Math.Max(1, (int)Math.Floor(n / cfg.RAct)), kBkg = Math.Max(1, (int)Math.Floor(n / cfg.RBkg));
        // score_act: softmax over classes of the mean of the top kAct CAS values (model.py:79-84), float32
        var score = new float[c]; var column = new float[n];
        for (int j = 0; j < c; j++)
        {
            for (int i = 0; i < n; i++) column[i] = cas[i * c + j];
            Array.Sort(column); float sum = 0;
            for (int i = 0; i < kAct; i++) sum += column[n - 1 - i];
            score[j] = sum / kAct;
        }
        Softmax(score);
        // magnitudes between the mean of the background picks and of the action picks (test.py:39-40, 57)
        var order = TorchSort.DescendingOrder<float>(magnitudes);
        float max = magnitudes.Max(), actMean = 0, bkgMean = 0;
        for (int i = 0; i < kAct; i++) actMean += magnitudes[order[i]];
        actMean /= kAct;
        var rev = magnitudes.Select(m => max - m).ToArray();
        var revOrder = TorchSort.DescendingOrder<float>(rev);
        for (int i = 0; i < kBkg; i++) bkgMean += magnitudes[revOrder[i]];
        bkgMean /= kBkg;
        var magNorm = MinMax(magnitudes, bkgMean, actMean);
        // cas = minmax_t(softmax_c(cas) * magnitudes), per class (test.py:60)
        var weighted = new float[n * c];
        for (int i = 0; i < n; i++)
        {
            var row = cas.AsSpan(i * c, c).ToArray(); Softmax(row);
            for (int j = 0; j < c; j++) weighted[i * c + j] = row[j] * magNorm[i];
        }
        var normalized = new float[n * c];
        for (int j = 0; j < c; j++)
        {
            for (int i = 0; i < n; i++) column[i] = weighted[i * c + j];
            float hi = Math.Max(column.Max(), 0f), lo = Math.Max(column.Min(), 0f);
            var mm = MinMax(column, lo, hi);
            for (int i = 0; i < n; i++) normalized[i * c + j] = mm[i];
        }
        var pred = Enumerable.Range(0, c).Where(j => score[j] >= cfg.ClassThresh).ToList();
        if (pred.Count == 0) pred.Add(Array.IndexOf(score, score.Max()));
        double tFactor = 16.0 * t / (cfg.UpScale * n * FeatureFps);
        var magUp = UpSample(magNorm.Select(v => (double)v).ToArray(), cfg.UpScale);
        var byClass = new Dictionary<int, List<(double score, double start, double end)>>();
        var casUp = pred.ToDictionary(j => j, j => UpSample(Enumerable.Range(0, n).Select(i => (double)normalized[i * c + j]).ToArray(), cfg.UpScale));
        for (int th = 0; th < 10; th++)                                  // np.arange(0.0, 0.25, 0.025)
        {
            double thresh = th * 0.025;
            foreach (var j in pred)
            {
                var temp = casUp[j].Select(v => v < thresh ? 0 : v).ToArray();
                Oic(temp, temp, score[j], tFactor, Collect(byClass, j));
            }
        }
        for (int th = 0; th < 9; th++)                                   // np.arange(0.4, 0.625, 0.025)
        {
            double thresh = 0.4 + th * 0.025;
            var sel = magUp.Select(v => v < thresh ? 0 : v).ToArray();
            foreach (var j in pred) Oic(sel, casUp[j], score[j], tFactor, Collect(byClass, j));
        }
        var dets = new List<Detection>();
        foreach (var (j, props) in byClass)
            foreach (var (s, st, en) in Nms(props, cfg.NmsThresh)) dets.Add(new Detection(video, st, en, j, s));
        return (dets, score);
    }

    static List<(double, double, double)> Collect(Dictionary<int, List<(double, double, double)>> byClass, int c) =>
        byClass.TryGetValue(c, out var l) ? l : byClass[c] = [];

    static void Softmax(float[] v)
    {
        float mx = v.Max(), z = 0;
        for (int i = 0; i < v.Length; i++) { v[i] = MathF.Exp(v[i] - mx); z += v[i]; }
        for (int i = 0; i < v.Length; i++) v[i] /= z;
    }

    /// utils.minmax_norm with given bounds: (x - lo) / (hi - lo), a delta <= 0 taken as 1, clipped to [0, 1].
    static float[] MinMax(float[] x, float lo, float hi)
    {
        float delta = hi - lo; if (delta <= 0) delta = 1;
        return x.Select(v => Math.Clamp((v - lo) / delta, 0f, 1f)).ToArray();
    }

    /// utils.upgrade_resolution: scipy's linear interp1d with extrapolation at x_i = i / scale, i < n scale.
    public static double[] UpSample(double[] y, int scale)
    {
        int n = y.Length;
        var up = new double[n * scale];
        double step = 1.0 / scale;
        for (int i = 0; i < up.Length; i++)
        {
            if (n == 1) { up[i] = y[0]; continue; }
            double x = i * step;
            int hi = Math.Clamp((int)Math.Ceiling(x), 1, n - 1), lo = hi - 1;     // searchsorted(left), clipped
            up[i] = (y[hi] - y[lo]) / (hi - lo) * (x - lo) + y[lo];
        }
        return up;
    }

    /// utils.get_proposal_oic: runs of positions where sel > 0 (a run of one is dropped; a lone index 0 is
    /// skipped, as `temp_list.any()` does), scored by the mean of w inside minus the mean in the lambda
    /// margins outside, plus gamma times the video score.
    static void Oic(double[] sel, double[] w, double videoScore, double tFactor, List<(double, double, double)> outp)
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
            double inner = 0; for (int k = s; k <= e; k++) inner += w[k];
            inner /= len;
            int os = Math.Max(0, (int)(s - Lambda * len)), oe = Math.Min(w.Length - 1, (int)(e + Lambda * len));
            double outer = 0; int count = 0;
            for (int k = os; k < s; k++) { outer += w[k]; count++; }
            for (int k = e + 1; k <= oe; k++) { outer += w[k]; count++; }
            outer = count == 0 ? 0 : outer / count;
            outp.Add((inner - outer + Gamma * videoScore, s * tFactor, (e + 1) * tFactor));
        }
    }

    /// utils.nms: scores.argsort()[::-1] (numpy's order), then every proposal whose IoU with the kept one
    /// (areas e - s + 1) is >= thresh is dropped.
    static List<(double score, double start, double end)> Nms(List<(double score, double start, double end)> props, double thresh)
    {
        var keep = new List<(double, double, double)>();
        var order = NumpySort.ArgsortReversed<double>(props.Select(p => p.score).ToArray()).ToList();
        while (order.Count > 0)
        {
            var best = props[order[0]]; keep.Add(best);
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
