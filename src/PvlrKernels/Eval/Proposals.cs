// From the test-mode outputs of one video to detections (PVLR's eval/proposal_methods.py:44-169, utils/wsad_utils.py):
// video scores from the attention-weighted CAS, multi-threshold grouping of the min-max CAS and of the
// actionness, outer-inner-contrast scores, Gaussian soft-NMS (+1 area convention, exp(-IoU^2/sigma))
// and ambiguous-segment filtering. Times are in snippets.
namespace PvlrKernels.Eval;

public sealed class ProposalConfig
{
    public int TestTopK = 20;
    public double VidThresh = 0.2, CasLambda = 0.1, CasGamma = 0.5, ActLambda = 0.1, ActGamma = 0.05, NmsSigma = 0.2;
    public double[] CasThresholds = Linspace(0.1, 0.95, 10), ActThresholds = Linspace(0.1, 0.95, 10);
    public static double[] Linspace(double a, double b, int n) => Enumerable.Range(0,
        n).Select(i => n == 1 ? a : a + (b - a) * i / (n - 1)).ToArray();
}

public static class Proposals
{
    /// cas (T, C+1) with the background last, attn (T). Returns detections and the video class scores (C).
    public static (List<Detection> dets, float[] videoScores) Generate(string video, float[] cas, float[] attn, int t,
        int numClasses,
        ProposalConfig cfg, List<(double start, double end)> ambiguous = null)
    {
        int c1 = numClasses + 1;
        if (cas.Length != (long)t * c1 || attn.Length != t)
            throw new ArgumentException($"{video}: cas {cas.Length} / attn {attn.Length} do not match T={t}, "
                + $"C={numClasses}");
        // 1. weighted CAS and video scores: softmax over C+1 of the mean of the top-k over t
        var lam = new double[t * c1];
        for (int i = 0; i < t; i++) for (int c = 0; c < c1; c++) lam[i * c1 + c] = cas[i * c1 + c] * attn[i];
        int k = Math.Max(1, t / cfg.TestTopK);
        var mean = new double[c1];
        var top = new double[k];
        for (int c = 0; c < c1; c++) mean[c] = TopKMean(lam, t, c1, c, top);
        double mx = mean.Max(), z = mean.Sum(v => Math.Exp(v - mx));
        var score = new float[numClasses];
        for (int c = 0; c < numClasses; c++) score[c] = (float)(Math.Exp(mean[c] - mx) / z);
        // 2. predicted classes
        var pred = Enumerable.Range(0, numClasses).Where(c => score[c] >= cfg.VidThresh).ToList();
        if (pred.Count == 0) pred.Add(Array.IndexOf(score, score.Max()));
        var dets = new List<Detection>();
        var act = Array.ConvertAll(attn, v => (double)v);
        foreach (var c in pred)
        {
            var raw = new double[t];
            for (int i = 0; i < t; i++) raw[i] = lam[i * c1 + c];
            double lo = raw.Min(), hi = raw.Max();
            // no guard, as the original (NaN -> no proposals)
            var mm = raw.Select(v => (v - lo) / (hi - lo)).ToArray();
            var props = new List<(double score, double s, double e)>();
            foreach (var th in cfg.CasThresholds)
                Group(mm, th, mm, cfg.CasLambda, cfg.CasGamma * score[c], props);
            foreach (var th in cfg.ActThresholds) Group(act, th, raw, cfg.ActLambda, cfg.ActGamma * score[c], props);
            foreach (var (s, st, en) in SoftNms(props, cfg.NmsSigma))
                if (!Ambiguous(st, en, ambiguous)) dets.Add(new Detection(video, st, en, c, s));
        }
        return (dets, score);
    }

    /// Positions where sel > th, grouped into runs; each run scored by outer-inner contrast on w.
    static void Group(double[] sel, double th, double[] w, double lambda, double bonus,
        List<(double, double, double)> outp)
    {
        int t = sel.Length;
        var pos = new List<int>();
        for (int i = 0; i < t; i++) if (sel[i] > th) pos.Add(i);
        if (!pos.Any(p => p != 0)) return;          // quirk: `if temp_list.any()` skips a lone index 0
        int start = 0;
        for (int i = 1; i <= pos.Count; i++)
        {
            if (i < pos.Count && pos[i] == pos[i - 1] + 1) continue;
            int s = pos[start], e = pos[i - 1];
            start = i;
            double inner = 0;
            for (int j = s; j <= e; j++) inner += w[j];
            int len = e - s + 1;
            inner /= len;
            int os = Math.Max(0, (int)(s - lambda * len)), oe = Math.Min(t - 1, (int)(e + lambda * len));
            double outer = 0;
            int n = 0;
            for (int j = os; j < s; j++)
            {
                outer += w[j];
                n++;
            }
            for (int j = e + 1; j <= oe; j++)
            {
                outer += w[j];
                n++;
            }
            outer = n > 0 ? outer / n : 0;
            outp.Add((inner - outer + bonus, s, e + 1));
        }
    }

    /// The mean of the k = top.Length largest values of column c of lam (t rows, c1 columns), summed largest
    /// first: what sorting the column and summing its last k gives, bit for bit (NaN sorts below every
    /// number, as Array.Sort puts it), from a k-element min-heap instead of a sort of all t.
    public static double TopKMean(double[] lam, int t, int c1, int c, double[] top)
    {
        int k = top.Length;
        if (k < 1 || k > t) throw new ArgumentException($"top-k mean: k = {k} of T = {t} values");
        static bool Below(double a, double b) => a < b || (double.IsNaN(a) && !double.IsNaN(b));
        for (int i = 0; i < t; i++)
        {
            double v = lam[i * c1 + c];
            if (i < k)
            {   // sift up
                int j = i;
                while (j > 0 && Below(v, top[(j - 1) / 2]))
                {
                    top[j] = top[(j - 1) / 2];
                    j = (j - 1) / 2;
                }
                top[j] = v;
            }
            else if (Below(top[0], v))
            {   // replace the smallest kept value, sift down
                int j = 0;
                while (true)
                {
                    int l = 2 * j + 1;
                    if (l >= k) break;
                    if (l + 1 < k && Below(top[l + 1], top[l])) l++;
                    if (!Below(top[l], v)) break;
                    top[j] = top[l];
                    j = l;
                }
                top[j] = v;
            }
        }
        Array.Sort(top);
        double s = 0;
        for (int j = k - 1; j >= 0; j--) s += top[j];
        return s / k;
    }

    /// Gaussian soft-NMS (wsad_utils.py soft_nms): emit the row `np.argmax` picks (the first maximum, or the
    /// first NaN), decay the rest by exp(-IoU^2 / sigma); nothing is removed. The order of the rows left
    /// is the reference's too, since it decides which of equal scores the next argmax picks: the emitted
    /// row is swapped with row 0 (`dets[[0, max_idx]] = dets[[max_idx, 0]]`) and row 0 dropped, so the
    /// first row takes the emitted row's place.
    public static List<(double score, double s, double e)> SoftNms(List<(double score, double s, double e)> boxes,
        double sigma)
    {
        int m = boxes.Count;
        var sc = new double[m];
        var bs = new double[m];
        var be = new double[m];
        for (int i = 0; i < m; i++) (sc[i], bs[i], be[i]) = boxes[i];
        var outp = new List<(double, double, double)>(m);
        int first = 0;                                  // rows first..first+m-1 are the reference's dets
        while (m > 0)
        {
            int bi = first;
            for (int i = first; i < first + m; i++)
            {
                if (double.IsNaN(sc[i]))
                {
                    bi = i;
                    break;
                }
                if (sc[i] > sc[bi]) bi = i;
            }
            double s = bs[bi], e = be[bi], len = e - s + 1;
            outp.Add((sc[bi], s, e));
            (sc[bi], bs[bi], be[bi]) = (sc[first], bs[first], be[first]);
            first++;
            m--;
            for (int i = first; i < first + m; i++)
            {
                double inter = Math.Max(Math.Min(e, be[i]) - Math.Max(s, bs[i]) + 1, 0);
                if (inter == 0) continue;                   // IoU 0: the decay is exp(0) = 1 exactly
                double iou = inter / (len + (be[i] - bs[i] + 1) - inter);
                sc[i] *= Math.Exp(-iou * iou / sigma);
            }
        }
        return outp;
    }

    /// range(int(s), int(e)) intersects range(round(a_s*25/16), round(a_e*25/16)) for any ambiguous segment.
    static bool Ambiguous(double s, double e, List<(double start, double end)> amb)
    {
        if (amb == null) return false;
        int ps = (int)s, pe = (int)e;
        foreach (var (a, b) in amb)
        {
            int qs = (int)Math.Round(a * Evaluator.SnippetsPerSecond, MidpointRounding.ToEven),
                qe = (int)Math.Round(b * Evaluator.SnippetsPerSecond, MidpointRounding.ToEven);
            if (Math.Max(ps, qs) < Math.Min(pe, qe)) return true;
        }
        return false;
    }
}
