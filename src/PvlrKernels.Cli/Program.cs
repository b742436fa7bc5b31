// pvlr: train / eval / infer / score / gen-demo. Errors print one clear line and exit non-zero.
using PvlrKernels.Tools;
using PvlrKernels.Util;
using System.Globalization;
using System.Text.Json;
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Eval;
using PvlrKernels.Methods;
using PvlrKernels.Methods.Pvlr;
using PvlrKernels.Train;

namespace PvlrKernels.Cli;

public static class Program
{
    const string Usage = """
usage:
  pvlr train [--method pvlr|co2net|um|acmnet|ftcl] [--data DIR] [--clip-features DIR] [--device auto|cpu|cuda]
      [--preset demo|paper|tiny] [--max-iter N] [--out DIR] [--resume DIR] [--init FILE]
      [--train-winograd 0|2|4|6] [--clip-weights FILE] [--mining-ties torch|stable]
  pvlr eval --checkpoint FILE [--method pvlr|co2net|um|acmnet|ftcl] [--data DIR] [--device ...]
      [--winograd 0|2|4|6] [--infer-rows N]
  pvlr infer --checkpoint FILE --features FILE.npy --out detections.json [--method pvlr|co2net|um|acmnet|ftcl]
      [--device ...] [--winograd 0|2|4|6]
  pvlr score --annotations DIR|GT.json --predictions FILE.csv|RESULTS.json [--subset NAME]
      [--units snippets|seconds] [--ap interpolated|wtalc] [--json] [--out-json FILE]
  pvlr replay --state DIR --out DIR [--method pvlr|co2net|um|acmnet|ftcl] [--device ...]
      [--train-winograd 0|2|4|6] [--no-savings] [--mining-ties torch|stable]
  pvlr bench [--method pvlr|co2net|um|acmnet|ftcl] [--device ...] [--preset paper|demo]
      [--only gemm,conv,clip,step,align,infer,memory,pool,load] [--steps N] [--infer-passes N] [--peak GFLOPS]
      [--vector256] [--winograd 0|2|4|6] [--train-winograd 0|2|4|6] [--infer-rows N]
      [--torch [--torch-steps N] [--torch-script FILE]] [--ptx [--ptx-dir DIR]] [--out FILE.md]
  pvlr study [--method pvlr|co2net|um|acmnet|ftcl] [--preset P] [--device ...] [--lengths FROM:TO:STEP]
      [--repeats N] [--out DIR]
  pvlr export --checkpoint FILE --format safetensors|pth --out FILE [--method pvlr|co2net|um|acmnet|ftcl]
  pvlr fuzz [--cases N] [--target npy|pickle|pth|safetensors|structure|strides] [--seed S]
  pvlr gen-demo [--out DIR] [--benchmark thumos14|activitynet1.2|activitynet1.3] [--videos N] [--classes N]
      [--max-length T] [--feat-dim F] [--clip-dim D]
--method picks the method (pvlr; a checkpoint names its own, and --method there only checks it).
With no --data, train and eval use the embedded demo dataset (generated on first use under features/demo).
Each command keeps a multicore-JIT profile of its last run, so the next run compiles on an idle core: under
$PVLR_JIT_PROFILE_DIR (off: none), else $XDG_CACHE_HOME/pvlr/jit or ~/.cache/pvlr/jit.
""";

    static readonly Dictionary<string, Func<Opts, int>> Commands = new()
    {
        ["train"] = TrainCmd, ["eval"] = EvalCmd, ["infer"] = InferCmd, ["score"] = ScoreCmd, ["gen-demo"] = GenDemoCmd,
        ["study"] = StudyCmd,
        ["replay"] = ReplayCmd, ["bench"] = BenchCmd, ["export"] = ExportCmd, ["fuzz"] = FuzzCmd,
    };

    public static int Main(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help")
        {
            Console.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }
        // multicore JIT from the last run of this command (Engine/JitProfile.cs); only as the process's own
        // entry point, not when a test host calls Main
        bool known = Commands.TryGetValue(args[0], out var command);
        if (known && System.Reflection.Assembly.GetEntryAssembly() == typeof(Program).Assembly)
            JitProfile.Start(args[0]);
        try
        {
            var o = Opts.Parse(args.Skip(1).ToArray());
            o.Allow(args[0], Options(args[0]));
            foreach (var sw in Switches(args[0])) o.Flag(sw);          // "--json yes" is refused before any work
            return known ? command(o) : throw new ArgumentException($"unknown command '{args[0]}'\n{Usage}");
        }
        catch (Exception e) when (e is ArgumentException or DataFormatException or FileNotFoundException
                                   or DirectoryNotFoundException or ShapeException or TrainingDivergedException
                                   or OutOfMemoryException or InvalidOperationException or IOException
                                   or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"pvlr: error: {OneLine(e.Message)}");
            return 1;
        }
        catch (Exception e)
        {
            // anything else is a fault of ours: one line here, the trace in a report file for a bug report
            string report = Path.Combine(Path.GetTempPath(), $"pvlr-crash-{Environment.ProcessId}.txt");
            try { File.WriteAllText(report, $"pvlr {string.Join(" ", args)}\n{e}\n"); } catch { report = null; }
            Console.Error.WriteLine($"pvlr: error: {e.GetType().Name}: {OneLine(e.Message)}"
                + (report != null ? $" (details in {report})" : ""));
            return 70;
        }
    }

    static string OneLine(string m) => m.Replace('\n', ' ').Replace('\r', ' ').Trim();

    /// A command's usage entry: its "  pvlr CMD" line and the indented lines that continue it, as one line.
    static string UsageOf(string cmd) =>
        string.Join(" ", Usage.Split('\n').SkipWhile(l => !l.StartsWith($"  pvlr {cmd} "))
            .TakeWhile((l, i) => i == 0 || l.StartsWith("      ")).Select(l => l.Trim()));

    /// A command's options, as its usage entry lists them (none for an unknown command, which fails anyway).
    static string[] Options(string cmd) =>
        System.Text.RegularExpressions.Regex.Matches(UsageOf(cmd), "--([a-z][a-z0-9-]*)")
            .Select(m => m.Groups[1].Value).ToArray();

    /// A command's switches: the options its usage entry shows without a value ("[--json]", "[--torch [...").
    static string[] Switches(string cmd) =>
        System.Text.RegularExpressions.Regex.Matches(UsageOf(cmd), @"--([a-z][a-z0-9-]*)(?=\]| \[)")
            .Select(m => m.Groups[1].Value).ToArray();

    public static Backend MakeBackend(string device)
    {
        switch (device ?? "auto")
        {
            case "cpu": return new CpuBackend();
            case "cuda":
                if (IlgpuBackend.CudaAvailable()) return IlgpuBackend.CreateCuda();
                Console.Error.WriteLine("pvlr: no CUDA device found; falling back to the CPU backend");
                return new CpuBackend();
            case "auto": return IlgpuBackend.CudaAvailable() ? IlgpuBackend.CreateCuda() : new CpuBackend();
            default: throw new ArgumentException($"--device must be auto, cpu or cuda, not '{device}'");
        }
    }

    /// The demo dataset directory, generated on first use.
    public static string DemoDir(MethodConfig cfg)
    {
        var env = Environment.GetEnvironmentVariable("PVLR_DEMO_DIR");
        string root = env ?? (Directory.Exists("features") ? Path.Combine("features",
            "demo") : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache",
            "pvlr-demo"));
        // a method without CLIP features shares the demo set of its feature width (and ignores its CLIP files)
        int clip = cfg.ClipFeatureWidth > 0 ? cfg.ClipFeatureWidth : new DemoOptions().ClipDim;
        root = Path.Combine(root, $"F{cfg.FeatDim}-D{clip}");
        if (!File.Exists(Path.Combine(root, WtalDataset.FeatFile)))
        {
            Console.WriteLine($"generating the demo dataset (real THUMOS14 annotations, synthetic features "
                + $"F={cfg.FeatDim}, CLIP {clip}) in {root} ...");
            DemoData.Generate(root, new DemoOptions { FeatDim = cfg.FeatDim, ClipDim = clip },
                new Progress<string>(Console.WriteLine));
        }
        return root;
    }

    /// --method NAME, when given (null: the default or what a checkpoint names).
    static IMethod MethodOption(Opts o) => o.Has("method") ? MethodRegistry.Get(o.Get("method")) : null;

    /// The PVLR config behind an option only PVLR has (its snippet mining, CLIP text tower, savings switches).
    static PvlrConfig PvlrOnly(MethodConfig cfg, string option) =>
        cfg as PvlrConfig ?? throw new ArgumentException($"{option} applies to PVLR, not to the {cfg.Method} method");

    /// --mining-ties torch|stable: the tie order of the snippet mining's sorts (Methods/Pvlr/Mining.cs).
    static MiningTies? MiningTiesOption(Opts o) => o.Get("mining-ties") switch
    {
        null => null, "torch" => MiningTies.Torch, "stable" => MiningTies.Stable,
        var v => throw new ArgumentException($"--mining-ties must be torch or stable, not '{v}'"),
    };

    static int TrainCmd(Opts o)
    {
        string resume = o.Get("resume");
        if (resume != null && !File.Exists(Path.Combine(resume,
            "config.json"))) throw new FileNotFoundException($"{resume}: no config.json; --resume takes a run "
                + $"directory written by pvlr train");
        var method = MethodOption(o);
        MethodConfig cfg;
        if (resume != null)
        {
            cfg = MethodRegistry.ConfigFromJson(File.ReadAllText(Path.Combine(resume, "config.json")));
            if (method != null && method.Name != cfg.Method)
                throw new ArgumentException($"--method {method.Name}: {resume} is a {cfg.Method} run");
        }
        else cfg = (method ?? MethodRegistry.Get("pvlr")).Preset(o.Get("preset", "demo"));
        if (o.Has("max-iter")) cfg.MaxIter = o.Count("max-iter", cfg.MaxIter);
        TrainWinograd(o, cfg);
        string init = o.Get("init");
        if (init != null && resume != null)
            throw new ArgumentException("--init starts a run; a resumed run keeps the weights its checkpoint holds");
        if (init != null && !File.Exists(init)) throw new FileNotFoundException($"--init: {init} not found", init);
        if (MiningTiesOption(o) is { } ties) PvlrOnly(cfg, "--mining-ties").MiningTies = ties;
        ClipWeights clip = null;
        if (o.Has("clip-weights"))
        {
            if (resume != null)
                throw new ArgumentException("--clip-weights starts a run; a resumed run keeps the text tower its "
                    + "checkpoint holds");
            var pvlrCfg = PvlrOnly(cfg, "--clip-weights");
            clip = ClipWeights.Load(o.Get("clip-weights"));
            clip.Configure(pvlrCfg);
            Console.WriteLine($"CLIP text tower from {clip.Path}: width {clip.Width}, {clip.Layers} layers, "
                + $"{pvlrCfg.ClipHeads} heads, projection {clip.ProjectionWidth}");
        }
        string outDir = resume ?? o.Get("out", Path.Combine("runs", $"{cfg.Preset}-{DateTime.Now:yyyyMMdd-HHmmss}"));
        // the output directory is checked and locked before any data is read: a read-only or full disk, a
        // file in its place or a second training into it is found at once
        using var runDir = RunDirectory.Open(outDir, resume != null ? "--resume" : "--out");
        foreach (var t in runDir.RemovedTemp)
            Console.WriteLine($"removed {Path.Combine(outDir, t)}, left by an interrupted write");
        string data = o.Get("data") ?? DemoDir(cfg);
        var ds = WtalDataset.Load(data, o.Get("clip-features"), log: new Progress<string>(Console.WriteLine));
        if (resume == null && ds.Ann.Classes.Length != cfg.NumClasses)
        {   // a new run takes the data's classes (a preset names THUMOS14's 20); a resumed one keeps its own
            Console.WriteLine($"{ds.Ann.Classes.Length} classes in {data} ({ds.Pack.Name}); the {cfg.Preset} preset "
                + $"has {cfg.NumClasses}: training with {ds.Ann.Classes.Length}");
            cfg.NumClasses = ds.Ann.Classes.Length;
        }
        using var backend = MakeBackend(o.Get("device"));
        using var tr = new Trainer(cfg, ds, backend) { Plotter = new ScottRunPlotter() };
        clip?.Apply((PvlrModel)tr.Model);
        if (init != null) Console.Write(Checkpoint.InitFrom(init, tr.Model, backend));
        if (resume != null)
        {
            var last = Path.Combine(resume, "last.safetensors");
            if (!File.Exists(last))
                throw new FileNotFoundException($"{resume}: no last.safetensors to resume from (one is written every "
                    + $"{cfg.Interval} steps)", last);
            tr.Resume(last);
            if (tr.Step >= cfg.MaxIter)
                throw new ArgumentException($"{resume} is already at step {tr.Step} of --max-iter {cfg.MaxIter}; "
                    + $"pass a larger --max-iter to continue it");
            Console.WriteLine($"resuming {resume} at step {tr.Step}");
        }
        Console.WriteLine($"training {cfg.Method} ({cfg.Preset}) on {backend.Name}: {ds.Train.Count} train / "
            + $"{ds.Test.Count} test videos, {cfg.MaxIter} steps, batch {cfg.BatchSize}x{cfg.MaxSeqLen}; "
            + $"output {outDir}");
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var r = tr.Run(outDir, cfg.MaxIter);
        Console.WriteLine($"trained {cfg.MaxIter} steps in {sw.Elapsed.TotalSeconds:F1} s "
            + $"({sw.Elapsed.TotalSeconds / cfg.MaxIter:F3} s/step incl. evaluation)");
        var protocol = tr.Model.Evaluation;
        Console.WriteLine($"final detection mAP ({ds.Pack.Name} protocol, test split, "
            + $"{ds.Test.Count(v => !protocol.Excluded.Contains(v.Name))} videos"
                + (protocol.Seconds ? ", in seconds" : "") + "):");
        Console.Write(r.Table());
        return 0;
    }

    /// --train-winograd 0|2|4|6: how the training forward and input gradients of the k = 3 convs run.
    static void TrainWinograd(Opts o, MethodConfig cfg)
    {
        if (!o.Has("train-winograd")) return;
        cfg.TrainWinogradTile = o.Int("train-winograd");
        if (cfg.TrainWinogradTile != 0 && !Engine.Winograd.Supported(cfg.TrainWinogradTile))
            throw new ArgumentException($"--train-winograd must be 0, 2, 4 or 6, not {cfg.TrainWinogradTile}");
    }

    /// --winograd 0|2|4|6 and --infer-rows N: how test-time inference runs (results equal up to rounding).
    static void TestTime(Opts o, MethodConfig cfg)
    {
        if (o.Has("winograd")) cfg.WinogradTile = o.Int("winograd");
        if (o.Has("infer-rows")) cfg.InferRows = o.Count("infer-rows",
            cfg.InferRows) is var n && n <= MethodConfig.MaxInferRows ? n
            : throw new ArgumentException($"--infer-rows must be at most {MethodConfig.MaxInferRows}, not "
                + $"{o.Get("infer-rows")}");
        cfg.Validate();
    }

    static int EvalCmd(Opts o)
    {
        using var backend = MakeBackend(o.Get("device"));
        var (model, step, _) = LoadForInference(o.Req("checkpoint"), backend, Console.Out, MethodOption(o));
        TestTime(o, model.Config);
        string data = o.Get("data") ?? DemoDir(model.Config);
        // the test videos' features are read one batch at a time during the evaluation, the training
        // videos' never: no copy of the whole feature file in memory
        var ds = WtalDataset.Load(data, clip: false, load: _ => false);
        ds.RequireTest("pvlr eval scores the test split");
        ds.RequireFeatureWidth(model.Config.FeatDim, $"the checkpoint {o.Req("checkpoint")}");
        using var g = new Graph(backend, model.Parameters);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var r = Inference.Evaluate(model, g, ds.Ann, ds.Test, Console.Error.WriteLine);      // progress every 2 s
        Console.WriteLine($"inference + evaluation of {ds.Test.Count} test videos ({ds.Test.Sum(v => (long)v.T)} "
            + $"snippets) in {sw.Elapsed.TotalSeconds:F2} s");
        if (Profiler.Enabled) Console.Error.WriteLine($"profile of the evaluation:\n{Profiler.Report()}");
        Console.WriteLine($"checkpoint {o.Req("checkpoint")} (step {step}), {ds.Test.Count} test videos:");
        Console.Write(r.Table());
        return 0;
    }

    /// The weights of a checkpoint, without its Adam moments, with the time it took.
    static (IMethodModel model, int step, long rng) LoadForInference(string path, Backend backend, TextWriter log,
        IMethod method)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var r = Checkpoint.Load(path, backend, report: log, optimizer: false, method: method);
        log.WriteLine($"loaded {path} ({r.model.Config.Method}, {r.model.Parameters.Total * 4 / 1e6:F0} MB of "
            + $"weights) in {sw.Elapsed.TotalSeconds:F2} s");
        return r;
    }

    static int InferCmd(Opts o)
    {
        using var backend = MakeBackend(o.Get("device"));
        var (model, _, _) = LoadForInference(o.Req("checkpoint"), backend, Console.Error, MethodOption(o));
        TestTime(o, model.Config);
        var path = o.Req("features");
        var nd = Npy.Load(path);
        if (nd.Shape.Length != 2 || nd.Shape[1] != model.Config.FeatDim)
            throw new ShapeException($"{path}: shape ({string.Join(",", nd.Shape)}), expected (T, "
                + $"{model.Config.FeatDim})");
        if (nd.Shape[0] == 0) throw new ShapeException($"{path}: shape (0,{nd.Shape[1]}), no snippets to localize");
        var feats = nd.AsFloat(path);
        WtalDataset.CheckFinite(feats, path, nd.Shape[1]);
        using var g = new Graph(backend, model.Parameters);
        var name = Path.GetFileNameWithoutExtension(path);
        var (dets, _) = Inference.LocalizeVideo(model, g, name, feats, nd.Shape[0], Inference.TestConstants(model, g));
        var outPath = o.Req("out");
        AtomicFile.WriteAllText(outPath, ActivityNetJson(dets, model.Classes, model.Evaluation.Seconds));
        Console.WriteLine($"{dets.Count} detections written to {outPath}");
        return 0;
    }

    /// ActivityNet-format results JSON, times in seconds (detections in snippets unless `inSeconds`).
    public static string ActivityNetJson(IEnumerable<Detection> dets, string[] classes, bool inSeconds = false)
    {
        double k = inSeconds ? 1 : Evaluator.SnippetsPerSecond;
        var results = dets.GroupBy(d => d.Video).ToDictionary(g => g.Key,
            g => g.Select(d => new Dictionary<string, object>
        {
            ["label"] = classes[d.Label], ["score"] = d.Score,
            ["segment"] = new[] { d.Start / k, d.End / k }
        }).ToList());
        return JsonSerializer.Serialize(new Dictionary<string, object> { ["version"] = "THUMOS14",
            ["results"] = results, ["external_data"] = new { } }, new JsonSerializerOptions { WriteIndented = true });
    }

    static int ScoreCmd(Opts o)
    {
        if (o.Req("annotations").EndsWith(".json", StringComparison.OrdinalIgnoreCase))
        {   // ActivityNet: ground truth and predictions as JSON, in seconds, tIoU 0.5:0.05:0.95
            if (o.Has("units") || o.Has("ap") || o.Has("out-json"))
                throw new ArgumentException("--units, --ap and --out-json are THUMOS options; an ActivityNet ground "
                    + "truth (.json) is scored in seconds");
            var sw0 = System.Diagnostics.Stopwatch.StartNew();
            var anet = ActivityNetEval.Evaluate(o.Req("annotations"), o.Req("predictions"), o.Get("subset",
                "validation"));
            if (o.Flag("json")) Console.WriteLine(anet.Json());
            else
            {
                Console.Write(anet.Table());
                Console.WriteLine($"scored in {sw0.Elapsed.TotalMilliseconds:F0} ms");
            }
            return 0;
        }
        if (o.Has("subset"))
            throw new ArgumentException("--subset selects the ActivityNet ground truth's subset; THUMOS annotations "
                + "split by subset.npy");
        var ann = Annotations.Load(o.Req("annotations"));
        var path = o.Req("predictions");
        bool seconds = o.Get("units", "snippets") switch { "snippets" => false, "seconds" => true,
            var u => throw new ArgumentException($"--units must be snippets or seconds, not '{u}'") };
        bool wtalc = o.Get("ap", "interpolated") switch { "interpolated" => false, "wtalc" => true,
            var a => throw new ArgumentException($"--ap must be interpolated or wtalc, not '{a}'") };
        if (wtalc && ann.Pack != WtalcPack.Thumos14)
            throw new ArgumentException($"--ap wtalc: W-TALC's AP is THUMOS14's (detectionMAP.py:51-59 fixes its "
                + $"subsets and tIoU 0.1:0.5); {ann.Dir} is {ann.Pack.Name}");
        var dets = PredictionCsv.Read(path, ann, seconds);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var r = wtalc ? WtalcEvaluator.Evaluate(ann, dets) : Evaluator.Evaluate(Evaluator.GroundTruth(ann), dets,
            ann.Classes.Length, ann.Pack.Thresholds);
        sw.Stop();
        if (o.Has("out-json")) AtomicFile.WriteAllText(o.Get("out-json"), ActivityNetJson(dets, ann.Classes));
        if (o.Flag("json")) Console.WriteLine(r.Json());
        else
        {
            Console.Write(r.Table());
            Console.WriteLine($"{dets.Count} predictions scored in {sw.Elapsed.TotalMilliseconds:F0} ms");
        }
        return 0;
    }

    static int ReplayCmd(Opts o)
    {
        using var backend = MakeBackend(o.Get("device", "cpu"));
        bool exact = o.Flag("no-savings");
        var ties = MiningTiesOption(o);
        var method = MethodOption(o) ?? MethodRegistry.Get("pvlr");
        var r = method.Replay(o.Req("state"), backend, c =>
        {
            TrainWinograd(o, c);
            if (exact)
            {
                var p = PvlrOnly(c, "--no-savings");
                p.TruncateText = false;
                p.SkipAeDecoder = false;
            }
            if (ties != null) PvlrOnly(c, "--mining-ties").MiningTies = ties.Value;
        });
        var outDir = o.Req("out");
        Replay.Write(r, outDir);
        foreach (var (k, v) in r.Losses) Console.WriteLine($"{k,-30} {v,14:G9}");
        foreach (var n in r.Notes) Console.WriteLine($"note: {n}");
        if (r.Mining.Count > 0)
            Console.WriteLine($"our mining ({r.MiningTies} tie order) on {r.MiningSource}, picks equal to the dump's: "
                + string.Join(", ", r.Mining.Select(kv => $"{kv.Key} {kv.Value.same}/{kv.Value.total}")));
        Console.WriteLine($"wrote {outDir}/losses.json, {(r.Mining.Count > 0 ? $"{outDir}/mining.json " : "")}and "
            + $"{r.Grads.Count} gradients to {outDir}/grads/");
        return 0;
    }

    static int BenchCmd(Opts o)
    {
        if (o.Flag("ptx"))
        {   // every kernel compiled to PTX for sm_80 and sm_90, assembled by ptxas where it is found
            var ptxas = Ptx.FindPtxas();
            var kernelTable = Ptx.Table(Ptx.Assemble(Ptx.CompileAll(ILGPU.Runtime.Cuda.CudaArchitecture.SM_80,
                ILGPU.Runtime.Cuda.CudaArchitecture.SM_90), ptxas, o.Has("ptx-dir") ? o.Get("ptx-dir") : null), ptxas);
            Console.WriteLine(kernelTable);
            if (o.Has("out")) AtomicFile.WriteAllText(o.Get("out"), kernelTable);
            return 0;
        }
        using var backend = MakeBackend(o.Get("device", "auto"));
        var cfg = (MethodOption(o) ?? MethodRegistry.Get("pvlr")).Preset(o.Get("preset", "paper"));
        TestTime(o, cfg);
        TrainWinograd(o, cfg);
        var only = o.Get("only", "gemm,conv,clip,step,infer").Split(',').ToHashSet();
        // the CPU GEMMs on the AVX2 microkernel, as without AVX-512
        CpuGemm.Vector256Only = o.Flag("vector256");
        int steps = o.Count("steps", 3), passes = o.Count("infer-passes", 1), torchSteps = o.Count("torch-steps",
            1);   // refused here, before any row runs
        double? peakOption = o.Has("peak") ? o.Positive("peak") : null;        // refused here, before any row runs
        (string key, Func<IEnumerable<BenchRow>> run)[] benches =
        [
            ("gemm", () => [Bench.Gemm(backend)]),
            ("conv", () => [Bench.Conv(backend)]),
            ("clip", () => cfg is PvlrConfig p ? Bench.ClipTower(backend, p) : []),
            ("step", () => [Bench.TrainStep(backend, cfg, steps, Console.Error)]),
            ("align", () => Bench.Alignment(backend, cfg, steps)),
            ("infer", () => Bench.TestSetInference(backend, cfg, passes)),
            ("memory", () => Bench.FirstTouch(backend)),
            ("pool", () => Bench.LoopOverhead()),
            ("load", () => Bench.CheckpointLoad(backend, cfg, Bench.Classes(cfg))),
        ];
        if (only.Except(benches.Select(b => b.key)).FirstOrDefault() is { } bad)
            throw new ArgumentException($"--only: unknown benchmark '{bad}' (use "
                + $"{string.Join(",", benches.Select(b => b.key))})");
        var rows = new List<BenchRow>();
        foreach (var (key, run) in benches.Where(b => only.Contains(b.key)))
        {
            Console.Error.WriteLine($"bench: {key} ...");
            foreach (var r in run())
            {
                rows.Add(r);
                Console.Error.WriteLine($"bench: {r.Name}: {r.Seconds:F4} s");
            }
        }
        // the backend's fp32 FMA peak (CPU: measured now, after the rows, when the process's start-up work is
        // done; CUDA: from the device's SMs and clock); --peak overrides
        double peak = peakOption ?? backend.PeakGflops;
        var table = Bench.Table(rows, peak,
            $"{backend.Name} ({Environment.ProcessorCount} "
                + $"cores{(CpuGemm.Vector256Only ? ", Vector256 GEMM microkernel" : "")})");
        if (o.Flag("torch") && rows.FirstOrDefault(r => r.Name.StartsWith("training step")) is { } ours)
            table += TorchSideBySide(cfg, torchSteps, ours.Seconds, o.Get("torch-script"));
        if (o.Flag("torch") && rows.FirstOrDefault(r => r.Name.StartsWith("FTCL contrasts")) is { } contrasts)
            table += TorchSideBySide(cfg, torchSteps, contrasts.Seconds, o.Get("torch-script"), "time-align",
                "contrasts LCS + FSD");
        Console.WriteLine(table);
        if (Profiler.Enabled) Console.Error.WriteLine(Profiler.Report());
        if (o.Has("out")) AtomicFile.WriteAllText(o.Get("out"), table);
        return 0;
    }

    /// Times the method's PyTorch restatement (benchmarks/reference/<method>_ref.py) at the same shapes in
    /// this run: PVLR's as the original computes (P^2 einsum, 77-token tower, AE_d) and with the same
    /// savings as ours; CO2-Net's as the original computes. It says which BLAS torch ran on; against
    /// Debian's single-threaded reference BLAS no ratio is printed, since no user timing torch would run it so.
    /// `mode` "time-align" times FTCL's contrasts alone (`what`) instead of a step.
    static string TorchSideBySide(MethodConfig cfg, int steps, double ours, string script, string mode = "time",
        string what = null)
    {
        string unit = what == null ? "s/step" : "s/batch";
        static string Secs(double s) => s < 0.1 ? $"{s:F4}" : $"{s:F2}";
        script ??= Path.Combine("benchmarks", "reference", $"{cfg.Method}_ref.py");
        if (!File.Exists(script))
            throw new FileNotFoundException($"{script}: the PyTorch reference script (run from the repository root "
                + $"or pass --torch-script)");
        (string label, string args)[] variants = cfg is PvlrConfig
            ? [("as the original computes", ""), ("same exact savings as ours", " --savings")]
            : [("as the original computes", "")];
        var sb = new System.Text.StringBuilder($"\n| PyTorch restatement (same run) | {unit} | ours {unit} | "
            + $"speed-up |\n|---|---|---|---|\n");
        string blasNote = null;
        foreach (var (label, extra) in variants)
        {
            Console.Error.WriteLine($"bench: torch, {label} ...");
            var psi = new System.Diagnostics.ProcessStartInfo("/usr/bin/python3",
                $"\"{script}\" {mode} --preset {cfg.Preset} --steps {steps}{extra}")
            { RedirectStandardOutput = true, RedirectStandardError = true };
            using var p = System.Diagnostics.Process.Start(psi)
                ?? throw new InvalidOperationException("could not start /usr/bin/python3");
            var err = p.StandardError.ReadToEndAsync();
            var outp = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            if (p.ExitCode != 0)
                throw new InvalidOperationException($"the PyTorch reference failed (is Debian's python3-torch "
                    + $"installed?): {err.Result.Trim().Split('\n').Last()}");
            using var doc = JsonDocument.Parse(outp.Trim().Split('\n').Last());
            double t = doc.RootElement.GetProperty("seconds_per_step").GetDouble();
            string torchV = doc.RootElement.GetProperty("torch").GetString();
            string blas = doc.RootElement.TryGetProperty("blas", out var b) ? b.GetString() : "unknown";
            string built = doc.RootElement.TryGetProperty("blas_built", out var bb) ? bb.GetString() : null;
            double rate = doc.RootElement.TryGetProperty("blas_gflops", out var g) ? g.GetDouble() : double.NaN;
            string coretype = doc.RootElement.TryGetProperty("openblas_coretype",
                out var ct) && ct.ValueKind == JsonValueKind.String ? ct.GetString() : null;
            bool reference = TorchBlasIsReference(blas, rate);
            blasNote = $"torch's BLAS: {blas}" + (built != null ? $" (torch.__config__: BLAS_INFO={built})" : "")
                + $", {rate:F1} GFLOP/s on a 1024^3 matmul" + (coretype != null
                ? $" (OPENBLAS_CORETYPE={coretype}: OpenBLAS runs that core's kernels)" : "")
                + (reference ? ". That is the speed of Debian's reference BLAS (libblas3, one thread): no speed-up is "
                + "printed; install libopenblas0-pthread" : "");
            sb.AppendLine($"| torch {torchV}, {cfg.Method} {(what != null ? what + ", " : "")}{label} | {Secs(t)} | "
                + $"{Secs(ours)} | {(reference ? "—" : $"{t / ours:F1}x")} |");
        }
        sb.AppendLine().AppendLine(blasNote);
        return sb.ToString();
    }

    /// The reference BLAS by its rate (a few GFLOP/s where OpenBLAS or MKL give tens to hundreds, whatever
    /// else is mapped beside it) or, without a rate, by its path (Debian's .../blas/libblas.so.3 alone).
    public const double ReferenceBlasGflops = 20;
    public static bool TorchBlasIsReference(string mapped, double gflops) =>
        double.IsFinite(gflops) ? gflops < ReferenceBlasGflops
            : mapped.Split(", ").Any(l => l.Contains("/blas/libblas",
                StringComparison.Ordinal)) && !mapped.Contains("openblas",
                StringComparison.OrdinalIgnoreCase) && !mapped.Contains("mkl", StringComparison.OrdinalIgnoreCase);

    /// Our checkpoint (or a .pth) out as safetensors (with Adam state and metadata when the source has
    /// them: a plain copy) or as a PyTorch state_dict (weights only) that torch.load reads.
    static int ExportCmd(Opts o)
    {
        string src = o.Req("checkpoint"), dst = o.Req("out"), fmt = o.Get("format",
            Path.GetExtension(dst).TrimStart('.'));
        using var backend = new CpuBackend();
        var (model, step, rng) = Checkpoint.Load(src, backend, report: Console.Error, method: MethodOption(o));
        using var store = model.Parameters;
        switch (fmt)
        {
            case "safetensors": Checkpoint.Save(dst, model, backend, step, rng, includeOptimizer: true); break;
            case "pth": case "pt": Checkpoint.SaveTorch(dst, model); break;
            default: throw new ArgumentException($"--format must be safetensors or pth, not '{fmt}'");
        }
        Console.WriteLine($"wrote {dst} ({model.Parameters.List.Count} tensors, {fmt})");
        return 0;
    }

    static int FuzzCmd(Opts o)
    {
        long cases = o.Has("cases") ? o.CountLong("cases") : 1_000_000;
        int seed = o.Has("seed") ? o.Int("seed") : Environment.TickCount;
        var targets = Fuzz.Targets().Where(t => !o.Has("target") || t.Name == o.Get("target")).ToList();
        if (targets.Count == 0)
            throw new ArgumentException($"unknown --target '{o.Get("target")}' (npy, pickle, pth, safetensors, "
                + $"structure, strides)");
        int findings = 0;
        foreach (var t in targets)
        {
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var rep = Fuzz.Run(t, cases, seed, TimeSpan.FromSeconds(5),
                r => Console.Error.Write($"\r{t.Name}: {r.Cases} cases, {r.Findings.Count} findings, "
                    + $"{r.Cases / sw.Elapsed.TotalSeconds:F0}/s   "));
            Console.Error.WriteLine();
            Console.WriteLine($"{t.Name}: {rep} (seed {seed}, {sw.Elapsed.TotalSeconds:F0} s)");
            foreach (var f in rep.Findings) Console.WriteLine("  " + f);
            findings += rep.Findings.Count;
        }
        return findings == 0 ? 0 : 3;
    }

    /// The efficiency study (Tools/Study.cs): one video's test-time forward at T = FROM, FROM + STEP, ... TO.
    static int StudyCmd(Opts o)
    {
        var cfg = (MethodOption(o) ?? MethodRegistry.Get("pvlr")).Preset(o.Get("preset", "paper"));
        var spec = o.Get("lengths", "200:3000:200");
        var parts = spec.Split(':');
        var n = new int[3];
        if (parts.Length != 3 || !parts.Select((p, i) => int.TryParse(p, NumberStyles.None,
                CultureInfo.InvariantCulture, out n[i])).All(ok => ok))
            throw new ArgumentException($"--lengths {spec}: FROM:TO:STEP, whole numbers of snippets");
        var lengths = Study.Lengths(n[0], n[1], n[2]);
        int repeats = o.Count("repeats", 3);
        string outDir = o.Get("out", Path.Combine("runs", $"study-{cfg.Method}-{cfg.Preset}"));
        using var runDir = RunDirectory.Open(outDir, "--out");
        using var backend = MakeBackend(o.Get("device", "auto"));
        Console.Error.WriteLine($"study of {cfg.Method} ({cfg.Preset}) on {backend.Name}: T = {string.Join(", ",
            lengths)}, {repeats} timed forwards each");
        var (rows, paramBytes) = Study.Run(backend, cfg, lengths, repeats, Console.Error.WriteLine);
        var table = Study.Table(rows, cfg, backend, paramBytes);
        Console.Write(table);
        AtomicFile.WriteAllText(Path.Combine(outDir, "study.md"), table);
        AtomicFile.WriteAllText(Path.Combine(outDir, "study.csv"), Study.Csv(rows));
        try
        {
            StudyPlot.Write(Path.Combine(outDir, "study.png"), rows, $"{cfg.Method} ({cfg.Preset}) on {backend.Name}");
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Console.Error.WriteLine($"pvlr: no plot: ScottPlot could not draw {outDir}/study.png ({e.Message})");
        }
        Console.WriteLine($"wrote {outDir}/study.md, study.csv and study.png");
        return 0;
    }

    static int GenDemoCmd(Opts o)
    {
        var opt = new DemoOptions();
        var bench = o.Get("benchmark", "thumos14");
        opt.Benchmark = bench switch
        {
            "thumos14" => WtalcPack.Thumos14,
            "activitynet1.2" => WtalcPack.ActivityNet12,
            "activitynet1.3" => WtalcPack.ActivityNet13,
            _ => throw new ArgumentException($"--benchmark {bench}: use thumos14, activitynet1.2 or activitynet1.3"),
        };
        bool anet = opt.Benchmark != WtalcPack.Thumos14;
        if (o.Has("classes") && !anet)
            throw new ArgumentException("--classes: THUMOS14's demo keeps its 20 real classes; it applies to "
                + "--benchmark activitynet1.2");
        if (o.Has("classes")) opt.Classes = o.Count("classes", 1);
        if (o.Has("videos") && anet) opt.Videos = o.Count("videos", 2);
        else if (o.Has("videos")) opt.MaxVideos = o.Count("videos", 0);
        if (o.Has("max-length")) opt.MaxLength = o.Count("max-length", 0);
        if (o.Has("feat-dim")) opt.FeatDim = o.Count("feat-dim", 0);
        if (o.Has("clip-dim")) opt.ClipDim = o.Count("clip-dim", 0);
        if (opt.FeatDim % 2 != 0)
            throw new ArgumentException($"--feat-dim {opt.FeatDim} must be even: the features are RGB | flow halves");
        DemoData.Generate(o.Get("out", Path.Combine("features", "demo", "custom")), opt,
            new Progress<string>(Console.WriteLine));
        return 0;
    }
}

/// Prediction CSV: header video-id,t-start,t-end,label,score; label is a class name or index.
public static class PredictionCsv
{
    public static List<Detection> Read(string path, Annotations ann, bool seconds)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: predictions file not found", path);
        var lines = File.ReadAllLines(path);
        if (lines.Length == 0 || lines[0].Trim().Replace(" ", "") != "video-id,t-start,t-end,label,score")
            throw new DataFormatException($"{path}: the header must be 'video-id,t-start,t-end,label,score'");
        var list = new List<Detection>();
        var known = ann.Videos.Select(v => v.Name).ToHashSet();
        for (int i = 1; i < lines.Length; i++)
        {
            if (string.IsNullOrWhiteSpace(lines[i])) continue;
            var f = lines[i].Split(',');
            if (f.Length != 5) throw new DataFormatException($"{path}:{i + 1}: expected 5 fields, got {f.Length}");
            var inv = CultureInfo.InvariantCulture;
            if (!double.TryParse(f[1], NumberStyles.Float, inv, out var s) || !double.TryParse(f[2],
                NumberStyles.Float, inv, out var e) || !double.TryParse(f[4], NumberStyles.Float, inv, out var sc))
                throw new DataFormatException($"{path}:{i + 1}: t-start, t-end and score must be numbers");
            if (!double.IsFinite(s) || !double.IsFinite(e) || !double.IsFinite(sc))
                throw new DataFormatException($"{path}:{i + 1}: non-finite value");
            string lab = f[3].Trim();
            int c = int.TryParse(lab, out var ci) ? ci : Array.IndexOf(ann.Classes, lab);
            if (c < 0 || c >= ann.Classes.Length)
                throw new DataFormatException($"{path}:{i + 1}: unknown label '{lab}'");
            var vid = f[0].Trim();
            if (!known.Contains(vid))
                throw new DataFormatException($"{path}:{i + 1}: video '{vid}' is not in the annotations");
            double k = seconds ? Evaluator.SnippetsPerSecond : 1;
            list.Add(new Detection(vid, s * k, e * k, c, sc));
        }
        return list;
    }
}

public sealed class Opts
{
    readonly Dictionary<string, string> v = new();
    public static Opts Parse(string[] a)
    {
        var o = new Opts();
        for (int i = 0; i < a.Length; i++)
        {
            if (!a[i].StartsWith("--")) throw new ArgumentException($"unexpected argument '{a[i]}'");
            string k = a[i][2..];
            if (i + 1 < a.Length && !a[i + 1].StartsWith("--")) o.v[k] = a[++i]; else o.v[k] = "true";
        }
        return o;
    }
    /// Refuses an option the command does not take (a misspelt option would otherwise be ignored).
    public void Allow(string cmd, string[] options)
    {
        if (options.Length == 0) return;
        if (v.Keys.FirstOrDefault(k => !options.Contains(k)) is { } bad)
            throw new ArgumentException($"pvlr {cmd}: unknown option --{bad}; it takes "
                + $"{string.Join(", ", options.Select(x => "--" + x))}");
    }
    /// A repeat count (steps, passes): at least 1, else `d` when the option is absent.
    public int Count(string k, int d) => !Has(k) ? d : int.TryParse(Get(k), NumberStyles.None,
        CultureInfo.InvariantCulture, out var n) && n >= 1
        ? n : throw new ArgumentException($"--{k} must be a whole number of at least 1, not '{Get(k)}'");
    public long CountLong(string k) => long.TryParse(Get(k), NumberStyles.None, CultureInfo.InvariantCulture,
        out var n) && n >= 1
            ? n : throw new ArgumentException($"--{k} must be a whole number of at least 1, not '{Get(k)}'");
    public double Positive(string k) => double.TryParse(Get(k), NumberStyles.Float, CultureInfo.InvariantCulture,
        out var x) && double.IsFinite(x) && x > 0
            ? x : throw new ArgumentException($"--{k} must be a positive number, not '{Get(k)}'");
    public bool Has(string k) => v.ContainsKey(k);
    /// A switch: present or not. A value after it ("--json yes") is refused, not read as absent.
    public bool Flag(string k) => v.TryGetValue(k, out var s)
        && (s == "true" ? true : throw new ArgumentException($"--{k} is a switch and takes no value (got '{s}')"));
    public string Get(string k, string d = null) => v.TryGetValue(k, out var s) ? s : d;
    public string Req(string k) => Get(k) ?? throw new ArgumentException($"--{k} is required");
    public int Int(string k) => int.TryParse(Get(k),
        out var n) && n >= 0 ? n : throw new ArgumentException($"--{k} must be a non-negative integer");
}
