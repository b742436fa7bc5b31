using System.Diagnostics;
using System.Globalization;
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Kernels;
using PvlrKernels.Model;
using PvlrKernels.Train;

namespace PvlrKernels.Eval;

/// Test-mode inference: the cosine CAS and attention of ragged batches of videos, proposals per video,
/// the THUMOS evaluation, and the panels of a run's video plots.
public static class Inference
{
    public static (List<Detection> dets, float[] scores) LocalizeVideo(PvlrModel model, Graph g, string name, float[] features, int t, float[] textHost,
        List<(double, double)> ambiguous = null, ProposalConfig pc = null)
    {
        var (cas, attn) = Signals(model, g, new[] { (name, features, t) }, textHost)[0];
        using var _ = Profiler.Time("phase inference: proposals", t);
        return Proposals.Generate(name, cas, attn, t, model.Cfg.NumClasses, pc ?? new ProposalConfig(), ambiguous);
    }

    /// Test-mode CAS (T, C+1) and attention (T) of one video.
    public static (float[] cas, float[] attn) Signals(PvlrModel model, Graph g, float[] features, int t, float[] textHost) =>
        Signals(model, g, new[] { ("video", features, t) }, textHost)[0];

    /// Test-mode CAS and attention of each video, forwarded as one ragged batch (RaggedBatch); the caller
    /// keeps a batch within Cfg.InferRows rows (Batches). Names appear in errors only.
    public static (float[] cas, float[] attn)[] Signals(PvlrModel model, Graph g, IReadOnlyList<(string name, float[] features, int t)> videos, float[] textHost) =>
        Signals(model, g, videos.Select(v => (v.name, (ReadOnlyMemory<float>)v.features, v.t)).ToArray(), textHost);

    public static (float[] cas, float[] attn)[] Signals(PvlrModel model, Graph g, IReadOnlyList<(string name, ReadOnlyMemory<float> features, int t)> videos, float[] textHost)
    {
        var cfg = model.Cfg;
        foreach (var (name, f, t) in videos)
        {
            if (t == 0) throw new ShapeException($"{name}: empty video (T = 0)");
            if (f.Length != (long)t * cfg.FeatDim) throw new ShapeException($"{name}: features hold {f.Length} values, expected (T={t}, {cfg.FeatDim})");
        }
        g.Reset(); g.Training = false; g.WinogradTile = cfg.WinogradTile;
        using (g.NoGrad())
        {
            RaggedBatch rag; Tensor xv, xf; PvlrOutputs o; float[] cas, attn;
            using (Profiler.Time("phase inference: pack", videos.Count))
            {
                rag = new RaggedBatch(g, videos.Select(v => v.t).ToArray());
                (xv, xf) = rag.PackHalves(g, videos.Select(v => v.features).ToArray(), cfg.FeatDim, cfg.Half);
            }
            using (Profiler.Time("phase inference: network", rag.Rows, g.Backend))
                o = model.Forward(g, xv, xf, g.FromHost(textHost, cfg.NumClasses + 1, cfg.EmbedDim), rag);
            using (Profiler.Time("phase inference: download", rag.Rows))
            { cas = g.ToHost(o.Cas); attn = g.ToHost(o.Attn); }
            return Enumerable.Range(0, rag.Count).Select(i => (rag.Unpack(cas, i, cfg.NumClasses + 1), rag.Unpack(attn, i, 1))).ToArray();
        }
    }

    /// Consecutive groups of videos of at most maxRows packed rows (a longer video forms its own group).
    public static IEnumerable<List<Video>> Batches(IEnumerable<Video> videos, int maxRows)
    {
        var cur = new List<Video>(); int rows = 1;
        foreach (var v in videos)
        {
            if (cur.Count > 0 && rows + v.T + 1 > maxRows) { yield return cur; cur = new List<Video>(); rows = 1; }
            cur.Add(v); rows += v.T + 1;
        }
        if (cur.Count > 0) yield return cur;
    }

    /// The CAS of each video's first GT class and the attention, with that class's GT segments.
    public static List<VideoPanel> VideoPanels(PvlrModel model, Graph g, Annotations ann, IEnumerable<Video> videos)
    {
        bool wasTraining = g.Training;
        var text = Text(model, g); int c1 = model.Cfg.NumClasses + 1;
        var panels = new List<VideoPanel>();
        foreach (var v in videos)
        {
            var (cas, attn) = Signals(model, g, v.ReadFeatures(), v.T, text);
            string label = v.Segments.Length > 0 ? v.Segments[0].label : v.Labels.FirstOrDefault();
            int c = label != null ? ann.ClassIndex(label) : 0;
            var gt = v.Segments.Where(s => s.label == label).Select(s => (s.start * Evaluator.SnippetsPerSecond, s.end * Evaluator.SnippetsPerSecond)).ToArray();
            panels.Add(new VideoPanel(v.Name, label ?? ann.Classes[c], Enumerable.Range(0, v.T).Select(i => cas[i * c1 + c]).ToArray(), attn, gt));
        }
        g.Training = wasTraining;
        return panels;
    }

    public static float[] Text(PvlrModel model, Graph g)
    {
        g.Reset();
        using (g.NoGrad()) return g.ToHost(model.TextFeatures(g));
    }

    /// The THUMOS evaluation of `videos`. `progress`, if given, hears how many videos are done (and their
    /// snippets and the time so far) after each batch once `every` has passed since the last report, so a
    /// long run shows it is moving and a short one stays quiet.
    public static EvalResult Evaluate(PvlrModel model, Graph g, Annotations ann, List<Video> videos, Action<string> progress = null, TimeSpan? every = null)
    {
        if (videos.Count == 0) throw new ArgumentException("evaluation: no videos to evaluate");
        var clock = System.Diagnostics.Stopwatch.StartNew(); var lastReport = TimeSpan.Zero; var interval = every ?? TimeSpan.FromSeconds(2);
        int done = 0; long doneSnippets = 0, allSnippets = videos.Sum(v => (long)v.T);
        bool wasTraining = g.Training;
        float[] text;
        using (Profiler.Time("phase inference: text", 1)) text = Text(model, g);
        var dets = new List<Detection>(); var scores = new List<float[]>(); var labels = new List<float[]>();
        using var frozen = g.FrozenWeights();
        float[] buffer = null;                  // the batch's videos, when they are read from their file now
        foreach (var batch in Batches(videos, model.Cfg.InferRows))
        {
            (float[] cas, float[] attn)[] sig;
            var feats = new ReadOnlyMemory<float>[batch.Count];
            var at = new long[batch.Count + 1];
            // each video's slot holds its stored width, so a file wider than the model still reads into
            // its own slot, and Signals names the video whose width is wrong
            for (int i = 0; i < batch.Count; i++) at[i + 1] = at[i] + (batch[i].Features != null ? 0 : (long)batch[i].T * batch[i].StoredWidth);
            if (at[^1] > (buffer?.Length ?? 0)) buffer = GC.AllocateUninitializedArray<float>(checked((int)Math.Max(at[^1], (long)model.Cfg.InferRows * model.Cfg.FeatDim)));
            using (Profiler.Time("phase inference: read", batch.Count))
                CpuPool.ForOrdered(batch.Count, i => feats[i] = batch[i].ReadFeatures(buffer, at[i]));
            using (Profiler.Time("phase inference: forward", batch.Sum(v => v.T)))
                sig = Signals(model, g, batch.Select((v, i) => (v.Name, feats[i], v.T)).ToArray(), text);
            var found = new (List<Detection> d, float[] s)[batch.Count];
            using (Profiler.Time("phase inference: proposals", batch.Sum(v => v.T)))
                CpuPool.For(batch.Count, i => found[i] = Proposals.Generate(batch[i].Name, sig[i].cas, sig[i].attn, batch[i].T, model.Cfg.NumClasses,
                    new ProposalConfig(), ann.Ambiguous.GetValueOrDefault(batch[i].Name)));
            for (int i = 0; i < batch.Count; i++)
            {
                dets.AddRange(found[i].d); scores.Add(found[i].s);
                var y = new float[ann.Classes.Length]; foreach (var l in batch[i].Labels) y[ann.ClassIndex(l)] = 1; labels.Add(y);
            }
            done += batch.Count; doneSnippets += batch.Sum(v => (long)v.T);
            if (progress != null && done < videos.Count && clock.Elapsed - lastReport >= interval)
            {
                lastReport = clock.Elapsed;
                progress($"evaluation: {done}/{videos.Count} videos ({doneSnippets}/{allSnippets} snippets) in {lastReport.TotalSeconds:F1} s");
            }
        }
        g.Training = wasTraining;
        var names = videos.Select(v => v.Name).ToHashSet();
        using var _ = Profiler.Time("phase inference: evaluation", dets.Count);
        var r = Evaluator.Evaluate(Evaluator.GroundTruth(ann).Where(x => names.Contains(x.Video)).ToList(), dets, ann.Classes.Length);
        r.ClassificationMap = Evaluator.ClassificationMap(scores.ToArray(), labels.ToArray());
        return r;
    }
}
