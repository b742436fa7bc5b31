// `pvlr bench`: the figures a kernel-throughput user asks for, measured in one process and printed as a
// markdown table: the SGEMM at the fusion conv's shape, the fusion Conv1d forward+backward, the CLIP text
// tower forward+backward, one full training step (forward, every loss, backward, Adam), and test-set
// inference plus evaluation over 212 videos of the real THUMOS14 test lengths. GFLOP/s counts the GEMM
// FLOPs issued (Backend.GemmFlops), which dominate every row; elementwise work is not counted.
using System.Diagnostics;
using PvlrKernels.Eval;
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Kernels;
using PvlrKernels.Model;
using PvlrKernels.Methods;
using PvlrKernels.Methods.Pvlr;
using PvlrKernels.Train;

namespace PvlrKernels.Tools;

public sealed record BenchRow(string Name, string Shape, double Seconds, double Flops, string Rate);

public static class Bench
{
    /// Median wall time of `reps` runs after one warm-up, and the GEMM FLOPs of one run.
    static (double sec, double flops) Time(Backend b, int reps, Action run)
    {
        run();
        b.Synchronize();
        // PVLR_PROFILE=1 reports the timed reps, not the warm-up's first touch and JIT
        if (Profiler.Enabled) Profiler.Reset();
        var t = new List<double>();
        long f0 = b.GemmFlops;
        for (int i = 0; i < reps; i++)
        {
            var sw = Stopwatch.StartNew();
            run();
            b.Synchronize();
            t.Add(sw.Elapsed.TotalSeconds);
        }
        t.Sort();
        return (t[t.Count / 2], (double)(b.GemmFlops - f0) / reps);
    }

    static float[] Randn(int n, int seed)
    {
        var r = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(r.NextDouble() * 2 - 1);
        return a;
    }

    /// One benchmark's prepared state and its repeatable body: one product, one conv pass, one step, one
    /// test-set pass. `pvlr bench` times Run here; the BenchmarkDotNet classes (benchmarks/) call it from
    /// their [Benchmark] methods, so both measure the same work. Dispose frees what the setup allocated.
    public sealed class Workload(string name, string shape, Action run, params IDisposable[] owned) : IDisposable
    {
        public string Name => name;
        public string Shape => shape;
        public void Run() => run();
        public void Dispose() { foreach (var d in owned.Reverse()) d.Dispose(); }
    }

    /// The class list the benchmarks build models with: the THUMOS names, repeated past 20 classes.
    public static string[] Classes(MethodConfig cfg) =>
        Enumerable.Range(0, cfg.NumClasses).Select(i =>
            ClassTokens.Names.Keys.ElementAt(i % ClassTokens.Names.Count)).ToArray();

    /// The fusion conv's GEMM, C (m x n) = A (m x k) · W (k x n).
    public static Workload GemmWork(Backend b, int m = 3200, int k = 6144, int n = 2048)
    {
        var a = b.Allocate((long)m * k);
        var w = b.Allocate((long)k * n);
        var c = b.Allocate((long)m * n);
        b.Upload(a.At(0), Randn(m * k, 1));
        b.Upload(w.At(0), Randn(k * n, 2));
        var p = new GemmParams { Batch = 1, M = m, N = n, K = k, RsA = k, CsA = 1, RsB = n, CsB = 1, Ldc = n,
            Alpha = 1, Beta = 0 };
        return new Workload("SGEMM", $"({m}x{k})·({k}x{n})", () => b.Gemm(c.At(0), a.At(0), w.At(0), p), a, w, c);
    }

    /// The fusion Conv1d ch -> ch, k = 3, through the tape: forward and backward, or forward alone.
    public static Workload ConvWork(Backend b, int bt = 10, int t = 320, int ch = 2048, bool backward = true)
    {
        var ps = new ParameterStore();
        ps.Add("w", new[] { ch, ch, 3 });
        ps.Add("b", new[] { ch });
        ps.Allocate(b);
        ps.Set("w", Randn(ch * ch * 3, 3));
        var g = new Graph(b, ps);
        var x = Randn(bt * t * ch, 4);
        void Run()
        {
            g.Reset();
            ps.ZeroGrad();
            if (!backward)
            {
                using (g.NoGrad()) g.Conv1d(g.FromHost(x, bt, t, ch), ps["w"].Value, ps["b"].Value);
                return;
            }
            var xt = g.FromHost(x, bt, t, ch);
            xt.RequiresGrad = true;
            g.Backward(g.MeanAll(g.Conv1d(xt, ps["w"].Value, ps["b"].Value)));
        }
        return new Workload(backward ? "fusion Conv1d fwd+bwd" : "fusion Conv1d fwd", $"B={bt} T={t} {ch}→{ch} k=3",
            Run, g, ps);
    }

    /// The CLIP text tower on the learnable prompt, forward and backward (into the prompt table).
    public static Workload ClipTowerWork(Backend b, PvlrConfig cfg)
    {
        var classes = Classes(cfg);
        var model = new PvlrModel(cfg, classes);
        model.Initialize(b, 1);
        var g = new Graph(b, model.P);
        string rows = !cfg.TruncateText ? $"{cfg.ClipContext} tokens each" : cfg.SharePromptPrefix
            ? "shared prefixes" : "every position to the last EOT";
        return new Workload("CLIP text tower fwd+bwd",
            $"{classes.Length + 1} prompts, {cfg.ClipLayers}x{cfg.ClipWidth}, {cfg.ClipHeads} heads, "
                + $"{model.TextRows} token rows ({rows})",
            () => { g.Reset(); model.P.ZeroGrad(); g.Backward(g.MeanAll(g.Square(model.TextFeatures(g)))); }, model.P,
                g);
    }

    /// One full training step (forward, every loss, backward, Adam) on a synthetic batch of the config's
    /// shapes; each step is logged as done (with PVLR_PROFILE=1, after its phases).
    public static Workload TrainStepWork(Backend b, MethodConfig cfg, TextWriter log = null)
    {
        var tr = new Trainer(cfg, Classes(cfg), b,
            log ?? TextWriter.Null);    // PVLR_PROFILE=1: its per-phase lines too
        int bs = cfg.VideosPerBatch, t = cfg.MaxSeqLen;
        var feats = Randn(bs * t * cfg.FeatDim,
            5); var clip = cfg.ClipFeatureWidth > 0 ? Randn(bs * t * cfg.ClipFeatureWidth, 6) : null;
        var labels = new float[bs * cfg.NumClasses];
        var r = new Random(7);
        for (int i = 0; i < bs; i++) labels[i * cfg.NumClasses + (i < 6 ? i / 2 : r.Next(cfg.NumClasses))] = 1;
        int done = 0;
        string shape = $"B={bs} T={t} F={cfg.FeatDim}" + (cfg is PvlrConfig pv
            ? $" D={pv.EmbedDim} P={pv.NumSamples}" : "");
        return new Workload($"training step ({cfg.Method} {cfg.Preset})", shape,
            () => { tr.StepOn(feats, clip, labels); log?.WriteLine($"  step {++done} done"); }, tr);
    }

    /// Test-mode inference on 212 videos with the real THUMOS14 test lengths (random features) and the
    /// full evaluation against the real GT (the annotations embedded with the demo data); one pass per Run.
    public static Workload InferenceWork(Backend b, MethodConfig cfg) => InferenceWork(b, cfg, out _, out _);

    static Workload InferenceWork(Backend b, MethodConfig cfg, out Graph graph, out int videoCount)
    {
        var dir = Path.Combine(Path.GetTempPath(), "pvlr-bench-ann-" + Environment.ProcessId);
        DemoData.WriteAnnotations(dir);
        var ann = Annotations.Load(dir);
        Directory.Delete(dir, true);
        var videos = ann.Test.ToList();
        var r = new Random(8);
        foreach (var v in videos)
        {
            v.T = Math.Max(1, (int)Math.Round(v.Duration * Eval.Evaluator.SnippetsPerSecond));
            v.Features = new float[(long)v.T * cfg.FeatDim];
            for (long i = 0; i < v.Features.Length; i++) v.Features[i] = (float)(r.NextDouble() - 0.5);
        }
        var model = MethodRegistry.Get(cfg.Method).Build(cfg, ann.Classes);
        model.Initialize(b, 1);
        var g = new Graph(b, model.Parameters);
        graph = g;
        videoCount = videos.Count;
        return new Workload($"test-set inference + eval ({cfg.Method} {cfg.Preset})",
            $"{videos.Count} videos, {videos.Sum(v => v.T)} snippets",
            () => Inference.Evaluate(model, g, ann, videos), model.Parameters, g);
    }

    /// A row of a workload's median time over `reps` runs after a warm-up run.
    static BenchRow Row(Backend b, Workload w, int reps, Func<double, string> rate = null)
    {
        using (w)
        {
            var (s, f) = Time(b, reps, w.Run);
            return new BenchRow(w.Name, w.Shape, s, f, rate?.Invoke(s) ?? "");
        }
    }

    public static BenchRow Gemm(Backend b, int m = 3200, int k = 6144, int n = 2048, int reps = 5) => Row(b,
        GemmWork(b, m, k, n), reps);

    public static BenchRow Conv(Backend b, int bt = 10, int t = 320, int ch = 2048, int reps = 3) => Row(b,
        ConvWork(b, bt, t, ch), reps);

    /// The text tower as configured; with shared prompt prefixes (the default), then also on every prompt
    /// position up to the last EOT, so that the saving is measured in the same run.
    public static BenchRow[] ClipTower(Backend b, PvlrConfig cfg, int reps = 3)
    {
        var rows = new List<BenchRow> { Row(b, ClipTowerWork(b, cfg), reps) };
        if (cfg.TruncateText && cfg.SharePromptPrefix)
        {
            var all = PvlrConfig.FromJson(cfg.ToJson());
            all.SharePromptPrefix = false;
            rows.Add(Row(b, ClipTowerWork(b, all), reps));
        }
        return rows.ToArray();
    }

    /// FTCL's two contrasts alone, forward and backward, for one batch of pairs of random candidate sets
    /// (every second pair positive), as `ftcl_ref.py time-align` times the original's cell-by-cell form.
    /// Empty for other methods.
    public static BenchRow[] Alignment(Backend b, MethodConfig cfg, int reps = 3) =>
        cfg is Methods.Ftcl.FtclConfig f ? [Row(b, AlignmentWork(b, f), reps)] : [];

    public static Workload AlignmentWork(Backend b, Methods.Ftcl.FtclConfig cfg)
    {
        int n = cfg.BatchSize;
        var ps = new ParameterStore();
        string[] names = ["lcs0", "lcs1", "act0", "act1", "bak1"];
        foreach (var name in names)
            ps.Add(name, name.StartsWith("lcs") ? [n, cfg.LcsLen, cfg.FeatDim] : [n, cfg.FsdLen, cfg.FcDim]);
        ps.Allocate(b);
        int seed = 11;
        foreach (var p in ps.List)
            ps.Set(p.Name, p.Name.StartsWith("lcs") ? Randn((int)p.Size,
                seed++).Select(Math.Abs).ToArray() : Randn((int)p.Size, seed++));
        var pair = Enumerable.Range(0, n).Select(i => (float)(i % 2)).ToArray();
        var g = new Graph(b, ps);
        return new Workload($"FTCL contrasts LCS + FSD ({cfg.Preset}), forward + backward",
            $"{n} pairs, LCS {cfg.LcsLen}x{cfg.FeatDim}, FSD {cfg.FsdLen}x{cfg.FcDim}", () =>
            {
                g.Reset();
                ps.ZeroGrad();
                var (lcs, fsd) = Methods.Ftcl.FtclModel.Contrasts(g, cfg, ps["lcs0"].Value, ps["lcs1"].Value,
                    ps["act0"].Value, ps["act1"].Value, ps["bak1"].Value, pair);
                g.Backward(g.Add(lcs, fsd));
            }, ps, g);
    }

    /// Full training steps on synthetic batches of the config's shapes; the row's time is s/step.
    public static BenchRow TrainStep(Backend b, MethodConfig cfg, int steps = 3, TextWriter log = null) =>
        Row(b, TrainStepWork(b, cfg, log), steps, s => $"{1 / s:F3} steps/s");

    /// Test-set inference plus evaluation (InferenceWork) with one graph: the first pass (JIT compilation,
    /// first touch of the activation arena and of the transformed weights), then `passes` steady passes (a
    /// trainer's periodic evaluation, a service), reported as their median with the range beside it, as
    /// the training-step row reports its steps: on a shared host one pass can land in a slow phase. Each row
    /// also says how busy the pass kept the cores (Profiler.Busy), so time lost to waiting shows apart from
    /// time lost to slow cores.
    public static BenchRow[] TestSetInference(Backend b, MethodConfig cfg, int passes = 1)
    {
        if (passes < 1) throw new ArgumentOutOfRangeException(nameof(passes),
            $"--infer-passes {passes}: at least one steady pass is needed");
        using var w = InferenceWork(b, cfg, out var g, out int count);
        BenchRow Pass(string name)
        {
            long f0 = b.GemmFlops;
            var jit0 = System.Runtime.JitInfo.GetCompilationTime();
            long cpu0 = Profiler.WorkNanoseconds();
            var sw = Stopwatch.StartNew();
            w.Run();
            b.Synchronize();
            double s = sw.Elapsed.TotalSeconds;
            double jit = (System.Runtime.JitInfo.GetCompilationTime() - jit0).TotalSeconds;
            double busy = Profiler.Busy(s, Profiler.WorkNanoseconds() - cpu0);
            // each pass apart
            if (Profiler.Enabled)
            {
                Console.Error.WriteLine($"profile of {name}:\n{Profiler.Report()}\n");
                Profiler.Reset();
            }
            return new BenchRow(name, w.Shape, s, b.GemmFlops - f0,
                $"{count / s:F1} videos/s, arena {g.Act.Touched * 4 >> 20} MiB, JIT {jit:F2} s, cores busy "
                    + $"{100 * busy:F0} %");
        }
        var first = Pass($"{w.Name}, first pass");
        var steady = Enumerable.Range(0, passes).Select(_ => Pass(w.Name)).OrderBy(r => r.Seconds).ToArray();
        var median = steady[steady.Length / 2];
        if (passes > 1)
            median = median with { Rate = median.Rate
                + $", median of {passes} passes ({steady[0].Seconds:F2} to {steady[^1].Seconds:F2} s)" };
        return new[] { first, median };
    }

    /// Loading a checkpoint of the config's model, written with its Adam moments to a temporary file (so
    /// read from the page cache, not the disk): the weights only, as pvlr eval and infer load it, and
    /// whole, as a resumed run does. The rate is MB of the file read per second.
    public static BenchRow[] CheckpointLoad(Backend b, MethodConfig cfg, string[] classes)
    {
        var path = Path.Combine(Path.GetTempPath(), $"pvlr-bench-{Environment.ProcessId}.safetensors");
        var model = MethodRegistry.Get(cfg.Method).Build(cfg, classes);
        model.Initialize(b, 1);
        try
        {
            Checkpoint.Save(path, model, b, 0, 0, includeOptimizer: true);
            double file = new FileInfo(path).Length / 1e6, weights = model.Parameters.List.Sum(p => p.Size) * 4 / 1e6;
            BenchRow Load(string name, bool optimizer, double mb)
            {
                var sw = Stopwatch.StartNew();
                var (m, _, _) = Checkpoint.Load(path, b, optimizer: optimizer);
                b.Synchronize();
                double s = sw.Elapsed.TotalSeconds;
                m.Parameters.Dispose();
                return new BenchRow(name, $"{mb:0.##} MB of a {file:0.##} MB file", s, 0, $"{mb / s:0} MB/s");
            }
            return new[] { Load($"checkpoint load, weights ({cfg.Preset})", false, weights),
                Load($"checkpoint load, with Adam moments ({cfg.Preset})", true, file) };
        }
        finally
        {
            model.Parameters.Dispose();
            File.Delete(path);
        }
    }

    /// What new memory costs, apart from any compute: writing `mib` MiB of a freshly allocated buffer (as
    /// the first inference pass writes the transformed weights and the activation arena), then the same
    /// in a buffer allocated after freeing the first (as the steady state does). On a host that backs
    /// guest pages on first use, the first row is many times the second.
    public static BenchRow[] FirstTouch(Backend b, int mib = 384)
    {
        if (mib < 1) throw new ArgumentOutOfRangeException(nameof(mib),
            $"first-touch size {mib} MiB must be at least 1");
        long n = (long)mib << 18;                                        // floats
        BenchRow Write(string name)
        {
            using var s = b.Allocate(n);
            var sw = Stopwatch.StartNew();
            b.Fill(s.At(0), n, 1f);
            b.Synchronize();
            double t = sw.Elapsed.TotalSeconds;
            return new BenchRow(name, $"{mib} MiB", t, 0, $"{mib / 1024.0 / t:F2} GiB/s");
        }
        return new[] { Write("first write of new memory"), Write("the same, in memory freed before") };
    }

    /// What starting a parallel loop costs the CPU backend: `loops` loops of one `workUs` item per core,
    /// each after `gapUs` of serial work on the calling thread (as between a model's kernels), run on
    /// CpuPool and on Parallel.For in alternating rounds. Each row is the mean time a loop took beyond its
    /// items' own. After a gap, Parallel.For's workers have blocked and wait for their cores to wake.
    public static BenchRow[] LoopOverhead(int loops = 1000, double workUs = 1000, double gapUs = 500)
    {
        if (loops < 1) throw new ArgumentOutOfRangeException(nameof(loops), $"{loops} loops: at least one is needed");
        int width = CpuPool.Width;
        const int Rounds = 4;
        static void Spin(double us)
        {
            long end = Stopwatch.GetTimestamp() + (long)(us * Stopwatch.Frequency / 1e6);
            while (Stopwatch.GetTimestamp() < end) Thread.SpinWait(8);
        }
        var extra = new double[2];
        for (int round = 0; round < Rounds; round++)
            for (int way = 0; way < 2; way++)
                for (int l = round * loops / Rounds; l < (round + 1) * loops / Rounds; l++)
                {
                    Spin(gapUs);
                    long t0 = Stopwatch.GetTimestamp();
                    if (way == 0) CpuPool.For(width, _ => Spin(workUs));
                    else Parallel.For(0, width, _ => Spin(workUs));
                    extra[way] += Stopwatch.GetElapsedTime(t0).TotalSeconds - workUs * 1e-6;
                }
        string shape = $"{width} items of {workUs / 1000:0.###} ms after {gapUs / 1000:0.###} ms serial, {loops} loops";
        BenchRow Row(string name, double total) => new(name, shape, total / loops, 0,
            $"{total / loops * 1e6:F1} us per loop");
        return new[] { Row("parallel loop overhead, CpuPool", extra[0]), Row("parallel loop overhead, Parallel.For",
            extra[1]) };
    }

    public static string Table(IEnumerable<BenchRow> rows, double peakGflops, string device)
    {
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"device: {device}; peak used for %: {peakGflops:F0} GFLOP/s (fp32 FMA, measured on the cores "
            + $"unless --peak sets it)");
        sb.AppendLine();
        sb.AppendLine("| benchmark | shape | time (s) | GFLOP/s | % of peak | rate |");
        sb.AppendLine("|---|---|---|---|---|---|");
        foreach (var r in rows)
        {
            double gf = r.Flops / r.Seconds / 1e9;
            string rate = r.Flops > 0 ? $"{gf:F1}" : "n/a",
                pct = r.Flops > 0 && peakGflops > 0 ? $"{100 * gf / peakGflops:F0}%" : "n/a";
            sb.AppendLine($"| {r.Name} | {r.Shape} | {r.Seconds:F4} | {rate} | {pct} | {r.Rate} |");
        }
        return sb.ToString();
    }
}
