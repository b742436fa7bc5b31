using System.Diagnostics;
using System.Globalization;
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Kernels;
using PvlrKernels.Methods;
using PvlrKernels.Train;

namespace PvlrKernels.Eval;

/// Test-mode inference of any method (Methods/Method.cs): the signals of ragged batches of videos,
/// detections per video, the THUMOS evaluation, and the panels of a run's video plots.
public static class Inference
{
    public static (List<Detection> dets, float[] scores) LocalizeVideo(IMethodModel model, Graph g, string name,
        float[] features, int t,
        float[] testConstants, List<(double, double)> ambiguous = null)
    {
        var (cas, attn) = Signals(model, g, new[] { (name, features, t) }, testConstants)[0];
        using var _ = Profiler.Time("phase inference: proposals", t);
        return model.Detect(name, cas, attn, t, ambiguous);
    }

    /// Test-mode CAS (T, C+1) and attention (T) of one video.
    public static (float[] cas, float[] attn) Signals(IMethodModel model, Graph g, float[] features, int t,
        float[] testConstants) =>
        Signals(model, g, new[] { ("video", features, t) }, testConstants)[0];

    /// Test-mode CAS and attention of each video, forwarded as one ragged batch; the caller keeps a batch
    /// within Config.InferRows rows (Batches). Names appear in errors only.
    public static (float[] cas, float[] attn)[] Signals(IMethodModel model, Graph g,
        IReadOnlyList<(string name, float[] features, int t)> videos,
        float[] testConstants) =>
        model.Signals(g, testConstants, videos.Select(v => (v.name, (ReadOnlyMemory<float>)v.features, v.t)).ToArray());

    /// Refuses an empty video or one whose features are not (T, featDim), naming it.
    public static void CheckVideos(IReadOnlyList<(string name, ReadOnlyMemory<float> features, int t)> videos,
        int featDim)
    {
        foreach (var (name, f, t) in videos)
        {
            if (t == 0) throw new ShapeException($"{name}: empty video (T = 0)");
            if (f.Length != (long)t * featDim)
                throw new ShapeException($"{name}: features hold {f.Length} values, expected (T={t}, {featDim})");
        }
    }

    /// The feature rows `rows` of a (T, featDim) video, in that order (a test-time sampling).
    public static float[] SampleRows(ReadOnlySpan<float> features, int featDim, IReadOnlyList<int> rows)
    {
        var x = new float[(long)rows.Count * featDim];
        for (int i = 0; i < rows.Count; i++) features.Slice(rows[i] * featDim, featDim).CopyTo(x.AsSpan(i * featDim));
        return x;
    }

    /// What every test video's forward reads, computed once (PVLR: the class text features).
    public static float[] TestConstants(IMethodModel model, Graph g) => model.TestConstants(g);

    /// Consecutive groups of videos of at most maxRows packed rows (a longer video forms its own group).
    public static IEnumerable<List<Video>> Batches(IEnumerable<Video> videos, int maxRows)
    {
        var cur = new List<Video>();
        int rows = 1;
        foreach (var v in videos)
        {
            if (cur.Count > 0 && rows + v.T + 1 > maxRows)
            {
                yield return cur;
                cur = new List<Video>();
                rows = 1;
            }
            cur.Add(v);
            rows += v.T + 1;
        }
        if (cur.Count > 0) yield return cur;
    }

    /// The CAS of each video's first GT class and the attention, with that class's GT segments.
    public static List<VideoPanel> VideoPanels(IMethodModel model, Graph g, Annotations ann, IEnumerable<Video> videos)
    {
        bool wasTraining = g.Training;
        var text = model.TestConstants(g);
        var panels = new List<VideoPanel>();
        foreach (var v in videos)
        {
            var (cas, attn) = Signals(model, g, v.ReadFeatures(), v.T, text);
            string label = v.Segments.Length > 0 ? v.Segments[0].label : v.Labels.FirstOrDefault();
            int c = label != null ? ann.ClassIndex(label) : 0;
            // a method may forward fewer rows than the video has (UM samples long videos): GT at that scale
            int rows = attn.Length, width = cas.Length / rows;
            double k = Evaluator.SnippetsPerSecond * rows / v.T;
            var gt = v.Segments.Where(s => s.label == label).Select(s => (s.start * k, s.end * k)).ToArray();
            panels.Add(new VideoPanel(v.Name, label ?? ann.Classes[c], Enumerable.Range(0,
                rows).Select(i => cas[i * width + c]).ToArray(), attn, gt));
        }
        g.Training = wasTraining;
        return panels;
    }

    /// The videos an evaluation runs, and those whose ground truth it scores: the protocol's exclusions
    /// leave both; a video of at most `shortVideo` snippets is scored (its ground truth counts) but not run
    /// (MethodConfig.ShortVideo).
    public static (List<Video> run, HashSet<string> scored) Scored(IEnumerable<Video> videos,
        EvaluationProtocol protocol, int shortVideo)
    {
        var kept = videos.Where(v => !protocol.Excluded.Contains(v.Name)).ToList();
        return (kept.Where(v => v.T > shortVideo).ToList(), kept.Select(v => v.Name).ToHashSet());
    }

    /// The evaluation of `videos` at their benchmark's thresholds (THUMOS 0.1:0.9, ActivityNet 0.5:0.95).
    /// `progress`, if given, hears how many videos are done (and their snippets and the time so far) after
    /// each batch once `every` has passed since the last report, so a long run shows it is moving and a
    /// short one stays quiet.
    public static EvalResult Evaluate(IMethodModel model, Graph g, Annotations ann, List<Video> videos,
        Action<string> progress = null, TimeSpan? every = null)
    {
        var protocol = model.Evaluation;
        (videos, var names) = Scored(videos, protocol, model.Config.ShortVideo);
        if (videos.Count == 0) throw new ArgumentException("evaluation: no videos to evaluate");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var lastReport = TimeSpan.Zero;
        var interval = every ?? TimeSpan.FromSeconds(2);
        int done = 0;
        long doneSnippets = 0, allSnippets = videos.Sum(v => (long)v.T);
        bool wasTraining = g.Training;
        float[] text;
        using (Profiler.Time("phase inference: text", 1)) text = model.TestConstants(g);
        var dets = new List<Detection>();
        var scores = new List<float[]>();
        var labels = new List<float[]>();
        using var frozen = g.FrozenWeights();
        float[] buffer = null;                  // the batch's videos, when they are read from their file now
        foreach (var batch in Batches(videos, model.Config.InferRows))
        {
            (float[] cas, float[] attn)[] sig;
            var feats = new ReadOnlyMemory<float>[batch.Count];
            var at = new long[batch.Count + 1];
            // each video's slot holds its stored width, so a file wider than the model still reads into
            // its own slot, and Signals names the video whose width is wrong
            for (int i = 0; i < batch.Count; i++)
                at[i + 1] = at[i] + (batch[i].Features != null ? 0 : (long)batch[i].T * batch[i].StoredWidth);
            if (at[^1] > (buffer?.Length ?? 0))
                buffer = GC.AllocateUninitializedArray<float>(checked((int)Math.Max(at[^1],
                    (long)model.Config.InferRows * model.Config.FeatDim)));
            using (Profiler.Time("phase inference: read", batch.Count))
                CpuPool.ForOrdered(batch.Count, i => feats[i] = batch[i].ReadFeatures(buffer, at[i]));
            using (Profiler.Time("phase inference: forward", batch.Sum(v => v.T)))
                sig = model.Signals(g, text, batch.Select((v, i) => (v.Name, feats[i], v.T)).ToArray());
            var found = new (List<Detection> d, float[] s)[batch.Count];
            using (Profiler.Time("phase inference: proposals", batch.Sum(v => v.T)))
                CpuPool.For(batch.Count, i => found[i] = model.Detect(batch[i].Name, sig[i].cas, sig[i].attn,
                batch[i].T, ann.Ambiguous.GetValueOrDefault(batch[i].Name)));
            for (int i = 0; i < batch.Count; i++)
            {
                dets.AddRange(found[i].d);
                scores.Add(found[i].s);
                var y = new float[ann.Classes.Length];
                foreach (var l in batch[i].Labels) y[ann.ClassIndex(l)] = 1;
                labels.Add(y);
            }
            done += batch.Count;
            doneSnippets += batch.Sum(v => (long)v.T);
            if (progress != null && done < videos.Count && clock.Elapsed - lastReport >= interval)
            {
                lastReport = clock.Elapsed;
                progress($"evaluation: {done}/{videos.Count} videos ({doneSnippets}/{allSnippets} snippets) in "
                    + $"{lastReport.TotalSeconds:F1} s");
            }
        }
        g.Training = wasTraining;
        using var _ = Profiler.Time("phase inference: evaluation", dets.Count);
        var r = Evaluator.Evaluate(protocol.GroundTruth(ann).Where(x => names.Contains(x.Video)).ToList(), dets,
            ann.Classes.Length, ann.Pack.Thresholds);
        r.ClassificationMap = Evaluator.ClassificationMap(scores.ToArray(), labels.ToArray());
        return r;
    }
}
