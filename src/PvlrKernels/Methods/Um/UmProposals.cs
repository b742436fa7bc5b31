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
    public static (List<Detection> detections, float[] scores) Generate(UmConfig cfg, string video, float[] cas,
        float[] magnitudes, int t)
    {
        int n = magnitudes.Length, c = cfg.NumClasses;
        if (n == 0 || cas.Length != n * c)
            throw new ArgumentException($"{video}: cas {cas.Length} / magnitudes {n} do not match C={c}");
        int kAct = Math.Max(1, (int)Math.Floor(n / cfg.RAct)), kBkg = Math.Max(1, (int)Math.Floor(n / cfg.RBkg));
        // score_act: softmax over classes of the mean of the top kAct CAS values (model.py:79-84), float32
        var score = new float[c];
        var column = new float[n];
        for (int j = 0; j < c; j++)
        {
            for (int i = 0; i < n; i++) column[i] = cas[i * c + j];
            Array.Sort(column);
            float sum = 0;
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
            var row = cas.AsSpan(i * c, c).ToArray();
            Softmax(row);
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
        var magUp = OicProposals.UpSample(magNorm.Select(v => (double)v).ToArray(), cfg.UpScale);
        var byClass = new Dictionary<int, List<(double score, double start, double end)>>();
        var casUp = pred.ToDictionary(j => j, j => OicProposals.UpSample(Enumerable.Range(0,
            n).Select(i => (double)normalized[i * c + j]).ToArray(), cfg.UpScale));
        for (int th = 0; th < 10; th++)                                  // np.arange(0.0, 0.25, 0.025)
        {
            double thresh = th * 0.025;
            foreach (var j in pred)
            {
                var temp = casUp[j].Select(v => v < thresh ? 0 : v).ToArray();
                OicProposals.Oic(temp, temp, Lambda, Gamma * score[j], tFactor, Collect(byClass, j));
            }
        }
        for (int th = 0; th < 9; th++)                                   // np.arange(0.4, 0.625, 0.025)
        {
            double thresh = 0.4 + th * 0.025;
            var sel = magUp.Select(v => v < thresh ? 0 : v).ToArray();
            foreach (var j in pred) OicProposals.Oic(sel, casUp[j], Lambda, Gamma * score[j], tFactor,
                Collect(byClass, j));
        }
        var dets = new List<Detection>();
        foreach (var (j, props) in byClass)
            foreach (var (s, st, en) in OicProposals.Nms(props, cfg.NmsThresh)) dets.Add(new Detection(video, st, en,
                j, s));
        return (dets, score);
    }

    internal static List<(double, double, double)> Collect(Dictionary<int, List<(double, double, double)>> byClass,
        int c) => byClass.TryGetValue(c, out var l) ? l : byClass[c] = [];

    static void Softmax(float[] v)
    {
        float mx = v.Max(), z = 0;
        for (int i = 0; i < v.Length; i++)
        {
            v[i] = MathF.Exp(v[i] - mx);
            z += v[i];
        }
        for (int i = 0; i < v.Length; i++) v[i] /= z;
    }

    /// utils.minmax_norm with given bounds: (x - lo) / (hi - lo), a delta <= 0 taken as 1, clipped to [0, 1].
    static float[] MinMax(float[] x, float lo, float hi)
    {
        float delta = hi - lo;
        if (delta <= 0) delta = 1;
        return x.Select(v => Math.Clamp((v - lo) / delta, 0f, 1f)).ToArray();
    }
}
