// ACM-Net's THUMOS14 test-time post-processing of one video (ispc-lab/ACM-Net main_thu.py:160-266 and
// utils/net_evaluation.py): video scores from the instance branch, the instance-branch class activation
// and attention up-sampled x20, OIC proposals (lambda 0.2, gamma 0) at CAS thresholds 0.15, 0.2 and
// attention thresholds 0.15..0.95, hard NMS per class at 0.55. Times in seconds:
// t_factor = 16 T / (25 x 20 x T'), T the video's snippets and T' the sampled ones.
using PvlrKernels.Eval;

namespace PvlrKernels.Methods.AcmNet;

public static class AcmNetProposals
{
    const double Lambda = 0.2, FeatureFps = 25;

    /// cas: CAS x a_inst (T', C+1) raw; attn: a_inst (T'); t the video's own snippet count.
    public static (List<Detection> detections, float[] scores) Generate(AcmNetConfig cfg, string video, float[] cas,
        float[] attn, int t)
    {
        int n = attn.Length, c = cfg.NumClasses, c1 = c + 1;
        if (n == 0 || cas.Length != n * c1)
            throw new ArgumentException($"{video}: cas {cas.Length} / attention {n} do not match C={c}");
        int k = Math.Max(n / cfg.InsTopK, 1);
        // act_inst_cls: softmax over C+1 of the mean of the top k of CAS x a_inst, float32; its first C
        var mean = new float[c1];
        var column = new float[n];
        for (int j = 0; j < c1; j++)
        {
            for (int i = 0; i < n; i++) column[i] = cas[i * c1 + j];
            Array.Sort(column);
            float sum = 0;
            for (int i = 0; i < k; i++) sum += column[n - 1 - i];
            mean[j] = sum / k;
        }
        var all = Softmax(mean);
        var score = all[..c];
        var pred = score.Max() > cfg.ClsThreshold ? Enumerable.Range(0,
            c).Where(j => score[j] > cfg.ClsThreshold).ToList() : [Array.IndexOf(score, score.Max())];
        // softmax over C+1 per snippet of CAS x a_inst (act_inst_cas), the predicted classes, and a_inst
        var soft = new float[n * c1];
        for (int i = 0; i < n; i++) Softmax(cas.AsSpan(i * c1, c1).ToArray()).CopyTo(soft, i * c1);
        double tFactor = 16.0 * t / (FeatureFps * cfg.UpScale * n);
        var attUp = OicProposals.UpSample(attn.Select(v => (double)v).ToArray(), cfg.UpScale);
        var casUp = pred.ToDictionary(j => j, j => OicProposals.UpSample(Enumerable.Range(0,
            n).Select(i => (double)soft[i * c1 + j]).ToArray(), cfg.UpScale));
        var byClass = new Dictionary<int, List<(double score, double start, double end)>>();
        for (int th = 0; th < 2; th++)                                   // np.arange(0.15, 0.25, 0.05)
        {
            double thresh = 0.15 + th * 0.05;
            foreach (var j in pred)
            {
                var temp = casUp[j].Select(v => v < thresh ? 0 : v).ToArray();
                OicProposals.Oic(temp.Select(v => v >= thresh ? v : 0).ToArray(), temp, Lambda, 0, tFactor,
                    Collect(byClass, j));
            }
        }
        for (int th = 0; th < 17; th++)                                  // np.arange(0.15, 1.00, 0.05)
        {
            double thresh = 0.15 + th * 0.05;
            var sel = attUp.Select(v => v >= thresh ? v : 0).ToArray();
            foreach (var j in pred) OicProposals.Oic(sel, casUp[j], Lambda, 0, tFactor, Collect(byClass, j));
        }
        var dets = new List<Detection>();
        foreach (var (j, props) in byClass)
            foreach (var (s, st, en) in OicProposals.Nms(props, cfg.NmsThresh)) dets.Add(new Detection(video, st, en,
                j, s));
        return (dets, score);
    }

    static List<(double, double, double)> Collect(Dictionary<int, List<(double, double, double)>> byClass, int c) =>
        byClass.TryGetValue(c, out var l) ? l : byClass[c] = [];

    static float[] Softmax(float[] v)
    {
        float mx = v.Max(), z = 0;
        var r = new float[v.Length];
        for (int i = 0; i < v.Length; i++)
        {
            r[i] = MathF.Exp(v[i] - mx);
            z += r[i];
        }
        for (int i = 0; i < v.Length; i++) r[i] /= z;
        return r;
    }
}
