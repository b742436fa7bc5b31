// The training loop of every method (PVLR's main.py, which CO2-Net's and W-TALC's share): one batch per step, Adam
// (L2), evaluation on the test split every `Interval` steps after `WarmupIter`, best checkpoint by sum(mAP@0.1:0.7) and
// last checkpoint, a Performance.txt log, the run's config as JSON, a progress line with loss terms,
// steps/s and ETA. A NaN/Inf loss stops the run naming the step and the term; the last good
// checkpoint stays on disk (checkpoints are written atomically).
using PvlrKernels.Util;
using System.Diagnostics;
using System.Globalization;
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Kernels;
using PvlrKernels.Eval;
using PvlrKernels.Methods;

namespace PvlrKernels.Train;

public sealed class TrainingDivergedException(string m) : Exception(m);

public sealed class Trainer : IDisposable
{
    public readonly MethodConfig Cfg;
    public readonly Backend Backend;
    public readonly IMethodModel Model;
    public readonly Graph G;
    public readonly AdamOptimizer Adam;
    public readonly PhiloxSource Rng;
    readonly WtalDataset ds;
    readonly BatchSampler sampler;
    readonly TextWriter log;
    public int Step;
    public List<Dictionary<string, float>> History = new();
    /// Draws loss.png and cas_attn_<step>.png; the CLI sets a ScottPlot one.
    public IRunPlotter Plotter { get; set; } = new MinimalPlotter();

    public Trainer(MethodConfig cfg, WtalDataset ds, Backend backend, TextWriter log = null) : this(cfg,
        Checked(cfg, ds).Ann.Classes, backend, log)
    {
        this.ds = ds;
        sampler = new BatchSampler(ds, cfg.Seed, cfg.ShortVideo);
        batch = new float[cfg.VideosPerBatch * cfg.MaxSeqLen * cfg.FeatDim];
        clipBatch = ds.ClipDim > 0 && cfg.ClipFeatureWidth > 0
            ? new float[cfg.VideosPerBatch * cfg.MaxSeqLen * cfg.ClipFeatureWidth] : null;
    }

    /// What the run needs of the dataset, refused before any model memory is allocated.
    static WtalDataset Checked(MethodConfig cfg, WtalDataset ds)
    {
        ds.RequireFeatureWidth(cfg.FeatDim, $"the '{cfg.Preset}' preset");
        if (ds.ClipDim != 0 && cfg.ClipFeatureWidth != 0 && ds.ClipDim != cfg.ClipFeatureWidth)
            throw new ShapeException($"CLIP features have width {ds.ClipDim}, the model's embedding is "
                + $"{cfg.ClipFeatureWidth}");
        ds.RequireTest($"training evaluates on them every {cfg.Interval} steps and at the end");
        return ds;
    }

    /// A trainer without a dataset (benchmarks, synthetic batches through StepOn). The config names the
    /// method (MethodConfig.Method) whose model it builds.
    public Trainer(MethodConfig cfg, IReadOnlyList<string> classes, Backend backend, TextWriter log = null)
    {
        Cfg = cfg;
        Backend = backend;
        this.log = log ?? Console.Out;
        Model = MethodRegistry.Get(cfg.Method).Build(cfg, classes);
        Model.Initialize(backend, cfg.Seed);
        Rng = new PhiloxSource((ulong)cfg.Seed);
        G = new Graph(backend, Model.Parameters, Rng) { TrainWinogradTile = cfg.TrainWinogradTile };
        Adam = new AdamOptimizer(Model.Parameters, backend, cfg.Lr, cfg.WeightDecay);
    }

    readonly float[] batch, clipBatch;

    /// One training step on the sampler's batch for this step number; returns the loss terms.
    public Dictionary<string, float> TrainStep()
    {
        var labels = new float[Cfg.VideosPerBatch * Cfg.NumClasses];
        var rows = Cfg.Batches switch
        {
            BatchOrder.EpochShuffle => sampler.SampleEpoch(Step, Cfg.BatchSize, Cfg.MaxSeqLen, batch, clipBatch, labels,
                Cfg.Resample),
            BatchOrder.LabelPairs => sampler.SamplePairs(Step, Cfg.BatchSize, Cfg.MaxSeqLen, batch, clipBatch, labels,
                Cfg.Resample),
            _ => sampler.Sample(Step, Cfg.BatchSize, Cfg.MaxSeqLen, batch, clipBatch, labels, Cfg.NumSimilar,
                Cfg.SimilarSize, Cfg.Resample),
        };
        string names = string.Join(",", rows.Select(r => r.Name));
        if (rows.Count == Cfg.VideosPerBatch) return StepOn(batch, clipBatch, labels, names);
        long perRow = (long)Cfg.MaxSeqLen * Cfg.FeatDim,
            clipRow = (long)Cfg.MaxSeqLen * Cfg.ClipFeatureWidth;     // an epoch's last, smaller batch
        return StepOn(batch[..(int)(rows.Count * perRow)], clipBatch?[..(int)(rows.Count * clipRow)],
            labels[..(rows.Count * Cfg.NumClasses)], names);
    }

    /// Forward, losses, backward, gradient check and Adam on one batch: feats (B,T,F), clip (B,T,D) or
    /// null (D = Cfg.ClipFeatureWidth), labels (B,C).
    public Dictionary<string, float> StepOn(float[] feats, float[] clip, float[] labels, string batchDesc = "synthetic")
    {
        int b = labels.Length / Cfg.NumClasses, t = Cfg.MaxSeqLen, f = Cfg.FeatDim, d = Cfg.ClipFeatureWidth;
        var ph = Stopwatch.StartNew();
        void Mark(string what)
        {
            if (Profiler.Enabled)
            {
                Backend.Synchronize();
                log.WriteLine($"  {what}: {ph.Elapsed.TotalSeconds:F3} s");
                ph.Restart();
            }
        }
        G.Reset();
        Model.Parameters.ZeroGrad();
        G.Training = true;
        Mark("reset+zero");
        if (Cfg.TrimBatchToLongest && LongestVideo(feats, b, t, f) is var keep && keep < t)
        {
            var kept = new float[(long)b * keep * f];
            for (int i = 0; i < b; i++) Array.Copy(feats, (long)i * t * f, kept, (long)i * keep * f, (long)keep * f);
            feats = kept;
            t = keep;
        }
        var x = G.FromHost(feats, b, t, f);
        var z = clip != null && d > 0 ? G.FromHost(clip, b, t, d) : null;
        var L = Model.Losses(G, x, z, labels);
        Mark("forward and losses");
        var vals = ReadTerms(L);
        foreach (var (k, v) in vals)
            if (!float.IsFinite(v))
            {
                string why = Model.NonFiniteReason(k, labels);
                throw new TrainingDivergedException($"step {Step}: loss term '{k}' is {v} (batch videos: "
                    + $"{batchDesc}); stopped, the last good checkpoint is kept" + (why.Length > 0 ? ". " + why : ""));
            }
        G.Backward(L.Total);
        Mark("backward");
        CheckGradients();
        Mark("check");
        Adam.Step();
        Mark("adam");
        Step++;
        return vals;
    }

    /// Every loss term and the total in one download: each scalar is copied on the device into one small
    /// tensor first (on a GPU each read is a round trip that waits for the device).
    Dictionary<string, float> ReadTerms(LossTerms L)
    {
        var terms = L.Terms.Append(new("total", L.Total)).ToList();
        var packed = G.New([terms.Count]);
        for (int i = 0; i < terms.Count; i++)
        {
            var v = terms[i].Value;
            if (v.Size != 1) throw new ShapeException($"loss term '{terms[i].Key}' has {v.Size} values, not one");
            Backend.Copy4(packed.At(i), new Strides4 { S3 = 1 }, v,
                new Strides4 { S3 = 1 }, new Dims4 { N0 = 1, N1 = 1, N2 = 1, N3 = 1 }, 1f, false);
        }
        var host = G.ToHost(packed);
        return terms.Select((t, i) => (t.Key, host[i])).ToDictionary(x => x.Key, x => x.Item2);
    }

    /// The batch's time length as the original's train loop cuts it (CO2-Net train.py:16-17): the largest
    /// count of snippet rows with any non-zero value, per video; at least 1.
    public static int LongestVideo(float[] feats, int b, int t, int f)
    {
        int longest = 1;
        for (int i = 0; i < b; i++)
        {
            int rows = 0;
            for (int r = 0; r < t; r++)
            {
                var row = feats.AsSpan((int)(((long)i * t + r) * f), f);
                if (row.ContainsAnyExcept(0f, -0f)) rows++;
            }
            longest = Math.Max(longest, rows);
        }
        return longest;
    }

    /// One device-side sum over the gradient arena (non-finite iff some gradient is, short of a 3e38
    /// overflow); only then the arena comes to the host to name the parameter. Downloading it every step
    /// cost 0.3 s of a 0.46 s step on an H100.
    public void CheckGradients()
    {
        var sum = G.New(new[] { 1 });
        Backend.Reduce(sum, Model.Parameters.Grads.At(0), default, 1,
            checked((int)Model.Parameters.Total), 1, ReduceMode.Sum, 1f, false);
        if (float.IsFinite(G.Item(sum))) return;
        var g = new float[Model.Parameters.Total];
        Backend.Download(Model.Parameters.Grads.At(0), g);
        foreach (var p in Model.Parameters.List)
        {
            if (!p.GotGrad) continue;
            for (long i = p.Offset; i < p.Offset + p.Size; i++)
                if (!float.IsFinite(g[i]))
                    throw new TrainingDivergedException($"step {Step}: gradient of '{p.Name}' is {g[i]}; stopped, "
                        + $"the last good checkpoint is kept");
        }
    }

    /// The best evaluation so far (EvalResult.Selection: on THUMOS the sum of mAP@0.1..0.7, main.py:223-230's
    /// criterion; on ActivityNet the mean of mAP@0.5:0.95) and its iteration; kept in the run directory's
    /// best.json, so a resumed run compares against the whole run's best.
    public double BestSum { get; private set; } = double.NegativeInfinity;
    public int BestStep { get; private set; } = -1;

    bool IsPeriodicEval(int itr) => itr > Cfg.WarmupIter && itr % Cfg.Interval == 0;

    /// Performance.txt's blocks ("itr N[ (best)]" and its table) of iterations before `step`: a resumed run
    /// keeps the evaluations its checkpoint had seen and redoes none of them.
    static (System.Text.StringBuilder text, HashSet<int> itrs) PerformanceBefore(string path, int step)
    {
        var sb = new System.Text.StringBuilder();
        var itrs = new HashSet<int>();
        if (step == 0 || !File.Exists(path)) return (sb, itrs);
        bool keep = false;
        foreach (var line in File.ReadAllLines(path))
        {
            if (line.StartsWith("itr ") && int.TryParse(line[4..].Split(' ')[0],
                out int itr)) { keep = itr < step; if (keep) itrs.Add(itr); }
            if (keep) sb.AppendLine(line);
        }
        return (sb, itrs);
    }

    /// Trains to MaxIter, evaluating and checkpointing into outDir. Returns the final evaluation. A resumed
    /// run continues Performance.txt and the best-so-far of the run it resumes; an evaluation its checkpoint
    /// was written for but that had not reached Performance.txt (a kill in between) is done first.
    public EvalResult Run(string outDir, int maxIter, Action<int, EvalResult> onEval = null)
    {
        Directory.CreateDirectory(outDir);
        AtomicFile.WriteAllText(Path.Combine(outDir, "config.json"), Cfg.ToJson());
        var perfPath = Path.Combine(outDir, "Performance.txt");
        var bestPath = Path.Combine(outDir, "best.json");
        var (perf, done) = PerformanceBefore(perfPath, Step);
        if (Step > 0 && File.Exists(bestPath))
        {   // last.safetensors is written before its evaluation: the best that evaluation found is in best.json
            var b = Data.Malformed.Guard(bestPath,
                () => System.Text.Json.JsonSerializer.Deserialize<Dictionary<string,
                    double>>(File.ReadAllText(bestPath)));
            string key = "best_" + EvalResult.SelectionKey(ds.Pack.Thresholds);
            if (b.TryGetValue("best_step", out var bstep) && bstep < Step && done.Contains((int)bstep)
                && b.TryGetValue(key, out var bsum) && bsum > BestSum)
                (BestSum, BestStep) = (bsum, (int)bstep);
            if (BestStep >= 0) log.WriteLine($"best so far: step {BestStep}, {key[5..]} {BestSum:F2}");
        }
        var sw = Stopwatch.StartNew();
        EvalResult last = null;
        int start = Step;
        void EvaluateAt(int itr)
        {
            var r = Evaluate(ds.Test);
            last = r;
            onEval?.Invoke(itr, r);
            var sel = r.Selection;
            bool isBest = sel.value > BestSum;
            if (isBest)
            {
                BestSum = sel.value;
                BestStep = itr;
                SaveCheckpoint(Path.Combine(outDir, "best.safetensors"));
                AtomicFile.WriteAllText(bestPath, System.Text.Json.JsonSerializer.Serialize(
                    new Dictionary<string, double> { ["best_" + sel.key] = BestSum, ["best_step"] = BestStep }));
            }
            perf.AppendLine($"itr {itr}{(isBest ? " (best)" : "")}");
            perf.Append(r.Table());
            AtomicFile.WriteAllText(perfPath, perf.ToString());
            log.WriteLine($"eval at step {itr}: {r.Headline.name} = {r.Headline.value:F2}"
                + (isBest ? " (best so far)" : ""));
        }
        if (Step > 0 && IsPeriodicEval(Step - 1) && !done.Contains(Step - 1))
        {
            log.WriteLine($"the evaluation at step {Step - 1} did not reach Performance.txt before the run stopped; "
                + $"doing it now");
            EvaluateAt(Step - 1);
        }
        while (Step < maxIter)
        {
            var v = TrainStep();
            History.Add(v);
            int itr = Step - 1;
            double sps = (Step - start) / sw.Elapsed.TotalSeconds;
            if (itr % 10 == 0 || Step == maxIter)
            {
                double eta = (maxIter - Step) / Math.Max(sps, 1e-9);
                var terms = string.Join(" ",
                    Model.ProgressTerms.Select(p => string.Format(CultureInfo.InvariantCulture, "{0} {1:F3}", p.label,
                    v.GetValueOrDefault(p.term))));
                log.WriteLine(string.Format(CultureInfo.InvariantCulture,
                    "step {0,5}/{1} | loss {2,9:F4} | {3} | {4:F2} steps/s | ETA {5}",
                    itr, maxIter, v["total"], terms, sps, TimeSpan.FromSeconds((int)eta)));
            }
            bool evalNow = IsPeriodicEval(itr) || Step == maxIter;
            if (!evalNow && Step % Cfg.Interval == 0) SaveCheckpoint(Path.Combine(outDir,
                "last.safetensors"));   // resumable before warm-up ends
            if (evalNow)
            {
                SaveCheckpoint(Path.Combine(outDir,
                    "last.safetensors"));      // first: a failing evaluation loses no training
                EvaluateAt(itr);
                Plotter.Losses(Path.Combine(outDir, "loss.png"), History, start);
                Plotter.Videos(Path.Combine(outDir, $"cas_attn_{itr:D5}.png"), itr, Inference.VideoPanels(Model, G,
                    ds.Ann, ds.Test.Take(4)));
            }
        }
        return last;
    }

    public EvalResult Evaluate(List<Video> videos) => Inference.Evaluate(Model, G, ds.Ann, videos);

    /// Continues from a checkpoint of this configuration: weights, Adam state, step, RNG counter (the
    /// batch sampler is counter-based), so the losses continue exactly as the uninterrupted run's.
    public void Resume(string path)
    {
        var (step, rng) = Checkpoint.Restore(path, Model, Backend);
        Step = step;
        Rng.Counter = rng;
    }

    public void SaveCheckpoint(string path) => Checkpoint.Save(path, Model, Backend, Step, Rng.Counter,
        includeOptimizer: true);

    public void Dispose()
    {
        G.Dispose();
        Model.Parameters.Dispose();
    }
}
