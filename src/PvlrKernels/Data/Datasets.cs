// The datasets of weakly supervised temporal action localization: videos, their video-level labels and
// ground-truth segments, their snippet features (WtalDataset), the training batches (BatchSampler).
// THUMOS14 in the W-TALC / CO2-Net / PVLR layout (PVLR's wsad_dataset.py):
//   <data>/Thumos14reduced-Annotations/{classlist,videoname,subset,duration,labels,labels_all,segments}.npy
//   <data>/Thumos14reduced-Annotations/Ambiguous_test.txt
//   <data>/Thumos14reduced/Thumos14reduced-I3D-JOINTFeatures.npy   object (N,) of (T_i, 2048) float32
//   <clip>/{train,test}/<videoname>.npy                              (T_i, 1024)
// Train = subset 'validation' (200 videos), test = subset 'test' (212).
// ActivityNet 1.2 in the same pack layout (W-TALC; CO2-Net wsad_dataset.py:219-290), read the same way:
//   <data>/ActivityNet1.2-Annotations/..., <data>/ActivityNet1.2-I3D-JOINTFeatures.npy (or under
//   <data>/ActivityNet1.2/); train = subset 'training', test = 'validation'; evaluated at tIoU 0.5:0.95.
// ActivityNet 1.3 as PVLR keeps it (src/anet/wsad_dataset.py:19-40, 63-70, 110-160):
//   <data>/ActivityNet1.3-Annotations/..., per-video features <data>/{train,test}/<video>.npy,
//   <clip>/<video>.npy (PVLR's Anet_CLIP, one folder); train = subset 'train', test = 'val'.
// The two other THUMOS14 layouts the seed methods ship read the same way (GtJsonLayout below):
//   BaS / UM (Pilhyeon/WTAL-Uncertainty-Modeling thumos_features.py:24-98):
//     <data>/{gt.json, split_train.txt, split_test.txt}, <data>/features/{train,test}/{rgb,flow}/<video>.npy
//   ACM-Net / FTCL (ispc-lab/ACM-Net dataset/dataset_class.py:57-75):
//     <data>/{gt.json, split_train.txt, split_test.txt}, <data>/{train,test}/<video>.npy (T, 2048)
namespace PvlrKernels.Data;

/// A benchmark in the W-TALC pack layout: <root>/<Name>-Annotations/ and the I3D feature file
/// <Name>-I3D-JOINTFeatures.npy under <root>/<Name>/ (as PVLR ships THUMOS) or <root>/ (CO2-Net's
/// wsad_dataset.py:14); which subsets train and test; the tIoU thresholds its evaluation reports; where
/// PVLR keeps its CLIP features.
public sealed record WtalcPack(string Name, string TrainSubset, string TestSubset, double[] Thresholds,
    string ClipDir)
{
    /// Features one file a video under <root>/{train,test}/ (PVLR's ActivityNet 1.3), not one pack file.
    public bool PerVideoFeatures { get; init; }
    /// CLIP features one file a video in one folder, not under {train,test}/.
    public bool FlatClip { get; init; }
    public static readonly WtalcPack Thumos14 = new("Thumos14reduced", "validation", "test",
        Eval.Evaluator.Thresholds, "Thumos14_CLIP");
    /// ActivityNet 1.2: subsets 'training' and 'validation' (CO2-Net wsad_dataset.py:284-286), tIoU
    /// 0.5:0.05:0.95 as the literals of CO2-Net test.py:87 and PVLR src/anet/main.py:105 (0.9, where
    /// ActivityNet's own np.linspace gives 0.8999999999999999: a tIoU of exactly 0.9 counts here).
    public static readonly WtalcPack ActivityNet12 = new("ActivityNet1.2", "training", "validation",
        [0.5, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95], "Anet_CLIP");
    /// ActivityNet 1.3 as PVLR's src/anet keeps it: subsets 'train' and 'val' (wsad_dataset.py:65-70), the
    /// tIoU literals of its main.py:105, per-video features and a flat Anet_CLIP folder.
    public static readonly WtalcPack ActivityNet13 = new("ActivityNet1.3", "train", "val", ActivityNet12.Thresholds,
        "Anet_CLIP") { PerVideoFeatures = true, FlatClip = true };
    public static readonly WtalcPack[] All = [Thumos14, ActivityNet12, ActivityNet13];

    public string AnnDir => Name + "-Annotations";
    string FeatName => Name + "-I3D-JOINTFeatures.npy";

    /// The feature file under root: in <root>/<Name>/ where it is there, else in root (per-video features:
    /// root itself).
    public string FeatFile(string root)
    {
        if (PerVideoFeatures) return root;
        var nested = Path.Combine(root, Name, FeatName);
        var flat = Path.Combine(root, FeatName);
        return File.Exists(nested) || !File.Exists(flat) ? nested : flat;
    }

    /// A per-video file in the layouts that split by role: <dir>/{train,test}/<video>.npy.
    public static string SplitFile(string dir, Video v) => Path.Combine(dir, v.IsTrain ? "train" : "test",
        v.Name + ".npy");

    /// A video's CLIP feature file under clipRoot: in one folder (FlatClip) or split by role.
    public string ClipFile(string clipRoot, Video v) =>
        FlatClip ? Path.Combine(clipRoot, v.Name + ".npy") : SplitFile(clipRoot, v);

    /// The pack whose annotation folder root holds (THUMOS14 where none does: its messages then name it).
    public static WtalcPack In(string root) =>
        All.FirstOrDefault(p => Directory.Exists(Path.Combine(root, p.AnnDir))) ?? Thumos14;

    /// The pack whose annotation folder `dir` is, by its name (THUMOS14 for any other name).
    public static WtalcPack OfAnnotations(string dir) =>
        All.FirstOrDefault(p => Path.GetFileName(Path.TrimEndingDirectorySeparator(dir)) == p.AnnDir) ?? Thumos14;
}

public sealed class Video
{
    public int Index;
    public string Name, Subset;
    /// The video's role: training or test (its pack's subsets, or the split lists); neither for others.
    public bool IsTrain, IsTest;
    public double Duration;
    public string[] Labels = Array.Empty<string>();        // distinct video-level labels
    public (double start, double end, string label)[] Segments = Array.Empty<(double, double, string)>();
    public float[] Features;                                // (T, F) row-major, null until loaded
    public int T;
    public float[] Clip;                                    // (T_clip, Dc) or null
    public int ClipT;
    NpyArray source; string sourceName;                     // where Features are read on demand, when not loaded

    /// Features whose reading is left for later (WtalDataset.Load's `load`): ReadFeatures reads them.
    internal void ReadLater(NpyArray nd, string name)
    {
        source = nd;
        sourceName = name;
    }

    /// The features: the loaded array, or else (a video left in its file) read now, checked for non-finite
    /// values and not kept.
    public float[] ReadFeatures()
    {
        if (Features != null) return Features;
        var f = GC.AllocateUninitializedArray<float>(checked(T * StoredWidth));
        ReadFeatures(f, 0);
        return f;
    }

    /// The same into buffer[offset..] (T x F values), unless they are loaded, when that array is returned:
    /// a caller that runs batch after batch (test-set evaluation) reuses one buffer instead of
    /// first-touching new memory for every video.
    public ReadOnlyMemory<float> ReadFeatures(float[] buffer, long offset)
    {
        if (Features != null) return Features;
        var dst = buffer.AsMemory(checked((int)offset), checked(T * StoredWidth));
        source.ReadInto(dst.Span, sourceName);
        WtalDataset.CheckFinite(dst.Span, sourceName, StoredWidth);
        return dst;
    }

    /// Values per snippet of the features as stored (loaded or in the file), whatever width a model expects.
    internal int StoredWidth => Features != null ? (T > 0 ? Features.Length / T : 0)
        : source?.Shape[1] ?? throw new InvalidOperationException($"video {Name}: its features are not loaded");
}

public sealed class Annotations
{
    public string[] Classes;
    public List<Video> Videos = new();
    public Dictionary<string, List<(double start, double end)>> Ambiguous = new();
    public string Dir;
    /// The benchmark: which subsets train and test, and the thresholds of its evaluation.
    public WtalcPack Pack = WtalcPack.Thumos14;

    public int ClassIndex(string name)
    {
        int i = Array.IndexOf(Classes, name);
        return i >= 0 ? i : throw new DataFormatException($"{Dir}: label '{name}' is not in classlist.npy");
    }

    /// `pack`: the benchmark (by default the one whose folder name `dir` has, else THUMOS14).
    public static Annotations Load(string dir, WtalcPack pack = null)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"{dir}: annotation directory not found");
        string P(string f) => Path.Combine(dir, f);
        var a = new Annotations { Dir = dir, Pack = pack ?? WtalcPack.OfAnnotations(dir) };
        a.Classes = Npy.Load(P("classlist.npy")).AsStrings(P("classlist.npy"));
        var names = Npy.Load(P("videoname.npy")).AsStrings(P("videoname.npy"));
        var subset = Npy.Load(P("subset.npy")).AsStrings(P("subset.npy"));
        var dur = Npy.Load(P("duration.npy")).AsDouble(P("duration.npy"));
        object[] Objects(string f) => Npy.Load(P(f)).Data as object[]
            ?? throw new DataFormatException($"{P(f)}: expected an object array (one list per video)");
        var labelsAll = Objects("labels_all.npy");
        var labels = Objects("labels.npy");
        var segs = Objects("segments.npy");
        int n = names.Length;
        var firstIndex = new Dictionary<string, int>();
        for (int i = 0; i < n; i++)
            if (!firstIndex.TryAdd(names[i],
                i)) throw new DataFormatException($"{P("videoname.npy")}: video '{names[i]}' appears twice, at "
                    + $"indices {firstIndex[names[i]]} and {i}");
        void Same(string f,
            long len) { if (len != n) throw new DataFormatException($"{P(f)}: {len} entries, videoname.npy has {n}"); }
        Same("subset.npy", subset.Length); Same("duration.npy", dur.Length); Same("labels_all.npy",
            labelsAll.Length); Same("labels.npy", labels.Length); Same("segments.npy", segs.Length);
        List<object> ListOf(object[] arr, int i,
            string f) => arr[i] as List<object>
                ?? throw new DataFormatException($"{P(f)}: video {i} ('{names[i]}') holds "
                    + $"{arr[i]?.GetType().Name ?? "None"}, not a list");
        for (int i = 0; i < n; i++)
        {
            var v = new Video { Index = i, Name = names[i], Subset = subset[i], Duration = dur[i],
                IsTrain = subset[i] == a.Pack.TrainSubset, IsTest = subset[i] == a.Pack.TestSubset };
            v.Labels = ListOf(labelsAll, i, "labels_all.npy").Select(NpyArray.PyText).Distinct().ToArray();
            var ls = ListOf(labels, i, "labels.npy");
            var ss = ListOf(segs, i, "segments.npy");
            if (ls.Count != ss.Count)
                throw new DataFormatException($"{P("segments.npy")}: video {v.Name} has {ss.Count} segments but "
                    + $"{ls.Count} labels");
            v.Segments = ss.Select((s, k) =>
            {
                var pair = s is List<object> l ? l.ToArray() : s is object[] t ? t : s is NpyArray nd
                    ? nd.AsDouble().Cast<object>().ToArray() : null;
                if (pair is not { Length: 2 } || pair[0] is not (double or long or float or int)
                    || pair[1] is not (double or long or float or int))
                    throw new DataFormatException($"{P("segments.npy")}: video {v.Name} segment {k} is not a [start, "
                        + $"end] pair of numbers");
                return (Convert.ToDouble(pair[0]), Convert.ToDouble(pair[1]), NpyArray.PyText(ls[k]));
            }).ToArray();
            foreach (var l in v.Labels) a.ClassIndex(l);
            a.Videos.Add(v);
        }
        var amb = P("Ambiguous_test.txt");
        if (File.Exists(amb)) a.Ambiguous = ReadAmbiguous(amb);
        return a;
    }

    /// Ambiguous_test.txt: "video  start end" per line (two spaces: fields 2 and 3).
    public static Dictionary<string, List<(double start, double end)>> ReadAmbiguous(string amb)
    {
        var r = new Dictionary<string, List<(double start, double end)>>();
        foreach (var (line, ln) in File.ReadAllLines(amb).Select((l, i) => (l, i + 1)))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            var f = line.Split(' ');
            if (f.Length < 4 || !double.TryParse(f[2], System.Globalization.CultureInfo.InvariantCulture,
                out var s) || !double.TryParse(f[3], System.Globalization.CultureInfo.InvariantCulture, out var e))
                throw new DataFormatException($"{amb}:{ln}: expected 'video  start end'");
            if (!r.TryGetValue(f[0], out var list)) r[f[0]] = list = new();
            list.Add((s, e));
        }
        return r;
    }

    public IEnumerable<Video> Train => Videos.Where(v => v.IsTrain);
    public IEnumerable<Video> Test => Videos.Where(v => v.IsTest);
}

/// A dataset on disk in one of the layouts above: its annotations, its training and test videos, their
/// feature widths.
public sealed class WtalDataset
{
    public Annotations Ann;
    public List<Video> Train, Test;
    public int FeatureDim, ClipDim;
    public string Root;
    /// Where the features were read from, for messages (null: the W-TALC feature file under Root).
    public string FeatureSource;

    /// THUMOS14's annotation folder and feature file (WtalcPack names every pack's).
    public const string AnnDir = "Thumos14reduced-Annotations";
    public const string FeatFile = "Thumos14reduced/Thumos14reduced-I3D-JOINTFeatures.npy";
    public WtalcPack Pack => Ann.Pack;

    /// Loads annotations, the I3D feature file and (optionally) the CLIP features, validating every video.
    /// `clip` false (evaluation, which never reads them): the CLIP features are not loaded at all.
    /// `load`: the videos whose features are read now (default all). The others keep their shape and
    /// their place in the file, and Video.ReadFeatures reads them when they are needed: `pvlr eval` reads
    /// each test video during the evaluation and never reads the training videos' features.
    public static WtalDataset Load(string root, string clipRoot = null, bool clip = true,
        IProgress<string> log = null, Func<Video, bool> load = null)
    {
        var pack = WtalcPack.In(root);
        if (!Directory.Exists(Path.Combine(root, pack.AnnDir)) && File.Exists(Path.Combine(root, GtJsonLayout.GtFile)))
            return GtJsonLayout.Load(root, clip ? clipRoot : null, log);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var ds = new WtalDataset { Root = root, Ann = Annotations.Load(Path.Combine(root, pack.AnnDir), pack) };
        var featPath = pack.FeatFile(root);
        log?.Report($"reading {featPath}");
        var items = pack.PerVideoFeatures ? PerVideo(ds, root) : PackFile(ds, featPath);
        for (int i = 0; i < items.Length; i++)
        {
            var v = ds.Ann.Videos[i];
            if (pack.PerVideoFeatures && items[i] == null) continue;         // neither a training nor a test video
            if (pack.PerVideoFeatures) featPath = WtalcPack.SplitFile(root, v);
            var nd = items[i] as NpyArray
                ?? throw new DataFormatException($"{featPath}: entry {i} ({v.Name}) is not an array");
            if (nd.Shape.Length != 2)
                throw new DataFormatException($"{featPath}: video {v.Name} has shape ({string.Join(",", nd.Shape)}), "
                    + $"expected (T, F)");
            if (nd.Shape[0] == 0) throw new DataFormatException($"{featPath}: video {v.Name} is empty (T = 0)");
            if (ds.FeatureDim == 0) ds.FeatureDim = nd.Shape[1];
            if (nd.Shape[1] != ds.FeatureDim || ds.FeatureDim % 2 != 0)
                throw new DataFormatException($"{featPath}: video {v.Name} has feature width {nd.Shape[1]}, expected "
                    + $"{ds.FeatureDim} (even: RGB | flow)");
            v.T = nd.Shape[0];
            v.ReadLater(nd, $"{featPath}: video {v.Name}");
        }
        // the videos to load, read on every core (most of a read is the first write of new memory, which
        // scales with cores); a failure is reported for the first such video in file order
        Engine.CpuPool.ForOrdered(items.Length, i =>
        {
            var v = ds.Ann.Videos[i];
            if (items[i] != null && (load == null || load(v))) v.Features = v.ReadFeatures();
        });
        var loaded = ds.Ann.Videos.Where(v => v.Features != null).ToList();
        log?.Report($"read the features of {loaded.Count} of {items.Length} videos ({loaded.Sum(v => (long)v.T)} "
            + $"snippets, {loaded.Sum(v => 4L * v.Features.Length) / 1e6:F0} MB) in {sw.Elapsed.TotalSeconds:F2} s");
        if (clip)
        {
            sw.Restart();
            LoadClip(ds, clipRoot ?? Path.Combine(root, pack.ClipDir));
            log?.Report($"read the CLIP features of {ds.Ann.Videos.Count(v => v.Clip != null)} videos "
                + $"({ds.Ann.Videos.Where(v => v.Clip != null).Sum(v => 4L * v.Clip.Length) / 1e6:F0} MB) in "
                    + $"{sw.Elapsed.TotalSeconds:F2} s");
        }
        ds.Train = ds.Ann.Train.ToList();
        ds.Test = ds.Ann.Test.ToList();
        if (ds.Train.Count == 0)
            throw new DataFormatException($"{root}: no training videos (subset '{pack.TrainSubset}')");
        return ds;
    }

    /// The W-TALC pack's object array of per-video features, one entry per annotated video.
    static object[] PackFile(WtalDataset ds, string featPath)
    {
        var feats = Npy.Load(featPath, lazy: true);
        if (feats.Data is not object[] items)
            throw new DataFormatException($"{featPath}: expected an object array of per-video features, got "
                + $"{feats.Descr}");
        if (items.Length != ds.Ann.Videos.Count)
            throw new DataFormatException($"{featPath}: {items.Length} videos, the annotations list "
                + $"{ds.Ann.Videos.Count}");
        return items;
    }

    /// Per-video feature files, <root>/train/<video>.npy for training videos and <root>/test/<video>.npy for
    /// test videos (PVLR src/anet/wsad_dataset.py:116-118), opened lazily; null for the other videos.
    static object[] PerVideo(WtalDataset ds, string root)
    {
        var videos = ds.Ann.Videos;
        var items = new object[videos.Count];
        Engine.CpuPool.ForOrdered(videos.Count, i =>
        {
            var v = videos[i];
            if (!v.IsTrain && !v.IsTest) return;
            var path = WtalcPack.SplitFile(root, v);
            if (!File.Exists(path))
                throw new FileNotFoundException($"{path}: the features of {(v.IsTrain ? "training" : "test")} "
                    + $"video {v.Name} are missing", path);
            items[i] = Npy.Load(path, lazy: true);
        });
        return items;
    }

    /// The CLIP features of the training (required) and test (optional) videos, under clipRoot/{train,test}
    /// (or in clipRoot itself for a pack with FlatClip):
    /// the files read on every core, then checked in file order (the first bad video is the one named).
    internal static void LoadClip(WtalDataset ds, string clipRoot)
    {
        var videos = ds.Ann.Videos.Where(v => v.IsTrain || v.IsTest).ToArray();
        var read = new (string path, NpyArray nd, Exception failed)[videos.Length];
        Parallel.For(0, videos.Length, i =>
        {
            var cp = ds.Pack.ClipFile(clipRoot, videos[i]);
            try { read[i] = (cp, File.Exists(cp) ? Npy.Load(cp) : null, null); } catch (Exception e) { read[i] = (cp,
                null, e); }
        });
        for (int i = 0; i < videos.Length; i++)
        {
            var (v, (cp, c, failed)) = (videos[i], read[i]);
            if (failed != null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failed);
            if (c == null)
            {
                if (v.IsTrain)
                    throw new FileNotFoundException($"{cp}: CLIP features missing for training video {v.Name}", cp);
                continue;
            }
            if (c.Shape.Length != 2)
                throw new DataFormatException($"{cp}: shape ({string.Join(",", c.Shape)}), expected (T, D)");
            if (ds.ClipDim == 0) ds.ClipDim = c.Shape[1];
            if (c.Shape[1] != ds.ClipDim)
                throw new DataFormatException($"{cp}: width {c.Shape[1]}, other videos have {ds.ClipDim}");
            if (v.IsTrain && c.Shape[0] < v.T)
                throw new DataFormatException($"{cp}: {c.Shape[0]} rows but the I3D features of {v.Name} have {v.T} "
                    + $"snippets");
            v.Clip = c.AsFloat(cp);
            v.ClipT = c.Shape[0];
            CheckFinite(v.Clip, cp, ds.ClipDim);
        }
    }

    /// Evaluation needs the test split: a dataset without one is refused before any work is done.
    public void RequireTest(string why)
    {
        if (Test.Count == 0)
            throw new DataFormatException($"{Root}: no test videos (subset '{Pack.TestSubset}' in "
                + $"{Pack.AnnDir}/subset.npy); {why}");
    }

    /// The features are `width` wide, as `whose` (a preset, a checkpoint) reads them; else the error names the file.
    public void RequireFeatureWidth(int width, string whose)
    {
        if (FeatureDim != width)
            throw new Engine.ShapeException($"{FeatureSource ?? Pack.FeatFile(Root)}: feature width "
                + $"{FeatureDim}, {whose} expects {width}");
    }

    /// Every value is finite; else the error names `what` and, for rows `width` values wide, the snippet
    /// and the feature of the first bad value as well as its element.
    public static void CheckFinite(ReadOnlySpan<float> a, string what, int width = 0)
    {
        int i = 0;
        if (System.Numerics.Vector.IsHardwareAccelerated)         // x * 0 is 0 (or -0) exactly when x is finite
            for (int w = System.Numerics.Vector<float>.Count; i + w <= a.Length; i += w)
            {
                var v = new System.Numerics.Vector<float>(a[i..]);
                if (!System.Numerics.Vector.EqualsAll(v * 0f,
                    System.Numerics.Vector<float>.Zero)) break;   // the loop below names it
            }
        for (; i < a.Length; i++)
            if (!float.IsFinite(a[i]))
                throw new DataFormatException($"{what}: non-finite value {a[i]} at "
                    + (width > 0 ? $"snippet {i / width}, feature {i % width} (element {i})" : $"element {i}"));
    }

    public float[] Labels(Video v)
    {
        var y = new float[Ann.Classes.Length];
        foreach (var l in v.Labels) y[Ann.ClassIndex(l)] = 1f;
        return y;
    }
}

/// The PVLR training batch (wsad_dataset.py:144-207): rows (0,1),(2,3),(4,5) are two distinct videos of each of 3
/// classes drawn with replacement; the rest are uniform training videos with replacement; every video
/// is temporally resampled to exactly T snippets with random_perturb.
/// Counter-based: the draws of step s come from a generator seeded by (seed, s) alone, so a run resumed
/// at step s samples exactly the batches the uninterrupted run would have.
public sealed class BatchSampler
{
    readonly WtalDataset ds;
    readonly int seed;
    readonly List<Video>[] byClass;
    readonly List<Video> train;

    /// `shortVideo`: training videos of at most this many snippets are never drawn (MethodConfig.ShortVideo).
    public BatchSampler(WtalDataset ds, int seed, int shortVideo = 0)
    {
        this.ds = ds;
        this.seed = seed;
        train = ds.Train.Where(v => v.T > shortVideo).ToList();
        if (train.Count == 0)
            throw new DataFormatException($"{ds.Root}: no training video is longer than {shortVideo} snippets");
        byClass = Enumerable.Range(0, ds.Ann.Classes.Length)
            .Select(c => train.Where(v => v.Labels.Contains(ds.Ann.Classes[c])).ToList()).ToArray();
    }

    /// SplitMix64 of (seed, step): deterministic across processes (HashCode.Combine is randomized per process).
    public Random ForStep(long step)
    {
        ulong z = ((ulong)(uint)seed << 32) ^ (ulong)step;
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return new Random((int)(z & 0x7FFFFFFF));
    }

    /// The batch of `step`: its videos, with feats (B, T, F), clip (B, T, Dc) and labels (B, C) filled.
    public List<Video> Sample(long step, int batch, int t, float[] feats, float[] clip, float[] labels,
        int numSimilar = 3, int similarSize = 2,
        Methods.Resampling resample = Methods.Resampling.Perturb)
    {
        var rng = ForStep(step);
        var rows = Pick(rng, batch, numSimilar, similarSize);
        Fill(rng, rows, t, feats, clip, labels, resample);
        return rows;
    }

    /// The batch of `step` in epoch order (UM's DataLoader(shuffle=True), drop_last False): each epoch a
    /// fresh permutation of the training videos (seeded by (seed, epoch)), cut into batches of `batch`,
    /// the last one smaller; every video resampled to exactly T snippets. Returns the batch's videos;
    /// feats, clip and labels are filled for them (their first rows).
    public List<Video> SampleEpoch(long step, int batch, int t, float[] feats, float[] clip, float[] labels,
        Methods.Resampling resample = Methods.Resampling.Perturb)
    {
        var rows = EpochBatch(step, batch, train.Count).Select(i => train[i]).ToList();
        Fill(ForStep(step), rows, t, feats, clip, labels, resample);
        return rows;
    }

    /// The indices of `step`'s batch in an epoch order over n items: each epoch a fresh permutation
    /// (Fisher-Yates, seeded by (seed, epoch)) cut into batches of `batch`, the last one smaller.
    IEnumerable<int> EpochBatch(long step, int batch, int n)
    {
        int perEpoch = (n + batch - 1) / batch;
        long epoch = step / perEpoch;
        int at = (int)(step % perEpoch) * batch;
        var order = Enumerable.Range(0, n).ToArray();
        var shuffle = ForStep(-1 - epoch);
        for (int i = n - 1; i > 0; i--)
        {
            int j = shuffle.Next(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order.Skip(at).Take(batch);
    }

    List<(int first, int second)> pairs;
    readonly Dictionary<int, int[]> frozen = new();

    /// FTCL's pair list (dataset/dataset_class.py:190-203), made once: every pair (i < j) of training
    /// videos with equal label vectors, and as many pairs with disjoint labels drawn without replacement
    /// (all of them where there are fewer), the disjoint ones first.
    public IReadOnlyList<(int first, int second)> LabelPairs()
    {
        if (pairs != null) return pairs;
        var labels = train.Select(v => ds.Labels(v)).ToArray();
        var same = new List<(int, int)>();
        var disjoint = new List<(int, int)>();
        for (int i = 0; i < labels.Length; i++)
            for (int j = i + 1; j < labels.Length; j++)
            {
                if (labels[i].AsSpan().SequenceEqual(labels[j])) same.Add((i, j));
                else if (!labels[i].Where((v, k) => v > 0 && labels[j][k] > 0).Any()) disjoint.Add((i, j));
            }
        if (same.Count == 0)
            throw new ArgumentException("no two training videos have the same labels: FTCL's pair batches need at "
                + "least one such pair");
        var rng = ForStep(long.MinValue);
        for (int i = disjoint.Count - 1; i > 0; i--)
        {
            int j = rng.Next(i + 1);
            (disjoint[i], disjoint[j]) = (disjoint[j], disjoint[i]);
        }
        pairs = disjoint.Take(same.Count).Concat(same).ToList();
        return pairs;
    }

    /// The batch of `step` in FTCL's order: each epoch a fresh permutation of LabelPairs() cut into batches
    /// of `batch` pairs, the last one smaller; rows 0..k-1 hold the pairs' first videos, rows k..2k-1 their
    /// second. Each video is resampled to T snippets once for the whole run (FTCLDataset samples at
    /// construction, :205-215). Returns the 2k videos in row order.
    public List<Video> SamplePairs(long step, int batch, int t, float[] feats, float[] clip, float[] labels,
        Methods.Resampling resample = Methods.Resampling.AcmRandom)
    {
        var list = LabelPairs();
        var chosen = EpochBatch(step, batch, list.Count).Select(i => list[i]).ToList();
        var ids = chosen.Select(p => p.first).Concat(chosen.Select(p => p.second)).ToList();
        var rows = ids.Select(i => train[i]).ToList();
        Fill(null, rows, t, feats, clip, labels, resample, k => Frozen(ids[k], t, resample));
        return rows;
    }

    int[] Frozen(int video, int t, Methods.Resampling resample)
    {
        if (frozen.TryGetValue(video, out var idx)) return idx;
        var rng = ForStep(long.MinValue + 1 + video);
        int length = train[video].T;
        return frozen[video] = resample == Methods.Resampling.AcmRandom ? AcmRandomSample(length, t, rng)
            : RandomPerturb(length, t, rng);
    }

    public List<Video> Pick(Random rng, int batch, int numSimilar = 3, int similarSize = 2)
    {
        var rows = new List<Video>();
        var eligible = Enumerable.Range(0, byClass.Length).Where(c => byClass[c].Count >= similarSize).ToArray();
        if (eligible.Length == 0) numSimilar = 0;
        for (int s = 0; s < numSimilar && rows.Count + similarSize <= batch; s++)
        {
            var pool = byClass[eligible[rng.Next(eligible.Length)]];
            var chosen = new HashSet<int>();
            while (chosen.Count < similarSize) chosen.Add(rng.Next(pool.Count));
            foreach (var i in chosen.OrderBy(x => x)) rows.Add(pool[i]);
        }
        while (rows.Count < batch) rows.Add(train[rng.Next(train.Count)]);
        return rows;
    }

    /// random_perturb(L) to N indices (wsad_dataset.py:280-298), including the inclusive upper bound.
    public static int[] RandomPerturb(int length, int n, Random rng)
    {
        var idx = new int[n];
        if (length == n)
        {
            for (int i = 0; i < n; i++) idx[i] = i;
            return idx;
        }
        for (int i = 0; i < n; i++)
        {
            int a = (int)(i * (double)length / n);
            if (i < n - 1)
            {
                int b = (int)((i + 1) * (double)length / n);
                idx[i] = a != b ? rng.Next(a, b + 1) : a;
            }
            else idx[i] = a < length - 1 ? rng.Next(a, length) : a;
        }
        return idx;
    }

    /// ACM-Net's random_sample (dataset/dataset_class.py:24-39): a shorter video takes n sorted draws with
    /// replacement; a longer one one index per stratum [int(s_i), int(s_(i+1) + 1)), s_i = i L / n, the last
    /// from [the previous pick, L).
    public static int[] AcmRandomSample(int length, int n, Random rng)
    {
        var idx = new int[n];
        if (length == n)
        {
            for (int i = 0; i < n; i++) idx[i] = i;
            return idx;
        }
        if (length < n)
        {
            for (int i = 0; i < n; i++) idx[i] = rng.Next(length);
            Array.Sort(idx);
            return idx;
        }
        for (int i = 0; i < n - 1; i++)
            idx[i] = rng.Next((int)((double)i * length / n), (int)((double)(i + 1) * length / n + 1));
        idx[n - 1] = rng.Next(n >= 2 ? idx[n - 2] : 0, length);
        return idx;
    }

    /// Fills feats (B, T, F), clip (B, T, Dc) and labels (B, C) for the chosen videos.
    /// `indicesOf` (row -> its T snippet indices) replaces the draws from `rng` where given.
    public void Fill(Random rng, List<Video> rows, int t, float[] feats, float[] clip, float[] labels,
        Methods.Resampling resample = Methods.Resampling.Perturb, Func<int, int[]> indicesOf = null)
    {
        int f = ds.FeatureDim, c = ds.Ann.Classes.Length, dc = ds.ClipDim;
        for (int b = 0; b < rows.Count; b++)
        {
            var v = rows[b];
            var idx = indicesOf != null ? indicesOf(b) : resample == Methods.Resampling.AcmRandom
                ? AcmRandomSample(v.T, t, rng) : RandomPerturb(v.T, t, rng);
            for (int k = 0; k < t; k++)
            {
                Array.Copy(v.Features, (long)idx[k] * f, feats, ((long)b * t + k) * f, f);
                if (clip != null && v.Clip != null) Array.Copy(v.Clip, (long)idx[k] * dc, clip,
                    ((long)b * t + k) * dc, dc);
            }
            ds.Labels(v).CopyTo(labels, b * c);
        }
    }
}

/// THUMOS14 in the BaS / UM and ACM-Net / FTCL layouts: ActivityNet-format gt.json (database/<video>/
/// {subset, duration, annotations[{segment: [s, e], label}]}), the training and test video lists, and
/// per-video features, either joint (T, 2048) files or RGB and flow (T, 1024) files concatenated as the
/// originals do. Classes: the labels in gt.json, sorted (the THUMOS14 order both originals use). Train
/// videos take subset 'validation' and test videos 'test', as in the W-TALC annotations.
public static class GtJsonLayout
{
    public const string GtFile = "gt.json";

    /// `clipRoot`: PVLR's per-video CLIP features under clipRoot/{train,test}, when given.
    public static WtalDataset Load(string root, string clipRoot = null, IProgress<string> log = null)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        string gtPath = Path.Combine(root, GtFile);
        var ann = new Annotations { Dir = root };
        using var doc = Malformed.Guard(gtPath, () => System.Text.Json.JsonDocument.Parse(File.ReadAllText(gtPath)));
        if (!doc.RootElement.TryGetProperty("database", out var db)
            || db.ValueKind != System.Text.Json.JsonValueKind.Object)
            throw new DataFormatException($"{gtPath}: no 'database' object (ActivityNet format)");
        string[] Split(string f)
        {
            var p = Path.Combine(root, f);
            if (!File.Exists(p)) throw new FileNotFoundException($"{p}: the video list of this layout is missing", p);
            return File.ReadAllLines(p).Select(l => l.Trim()).Where(l => l.Length > 0).ToArray();
        }
        var entries = new List<(string name, string subset, System.Text.Json.JsonElement e)>();
        foreach (var (list, subset) in new[] { (Split("split_train.txt"), "validation"), (Split("split_test.txt"),
            "test") })
            foreach (var name in list)
                entries.Add((name, subset, db.TryGetProperty(name, out var e) ? e
                    : throw new DataFormatException($"{gtPath}: video '{name}' of the split lists is not in the "
                        + $"database")));
        var videos = entries.Select((x, i) => Malformed.Guard(gtPath, () =>
        {
            var v = new Video { Index = i, Name = x.name, Subset = x.subset, IsTrain = x.subset == "validation",
                IsTest = x.subset == "test",
                Duration = x.e.TryGetProperty("duration", out var d) ? d.GetDouble() : 0 };
            v.Segments = x.e.GetProperty("annotations").EnumerateArray().Select(a =>
            {
                var seg = a.GetProperty("segment");
                if (seg.GetArrayLength() != 2)
                    throw new DataFormatException($"{gtPath}: video {x.name}: a segment is not [start, end]");
                return (seg[0].GetDouble(), seg[1].GetDouble(), a.GetProperty("label").GetString());
            }).ToArray();
            v.Labels = v.Segments.Select(s => s.label).Distinct().ToArray();
            return v;
        })).ToList();
        ann.Classes = videos.SelectMany(v => v.Labels).Distinct().Order(StringComparer.Ordinal).ToArray();
        ann.Videos.AddRange(videos);
        var amb = Path.Combine(root, "Ambiguous_test.txt");
        if (File.Exists(amb)) ann.Ambiguous = Annotations.ReadAmbiguous(amb);
        var ds = new WtalDataset { Root = root, Ann = ann };
        bool split = Directory.Exists(Path.Combine(root, "features"));
        Engine.CpuPool.ForOrdered(videos.Count, i =>
        {
            var v = videos[i];
            string dir = v.IsTrain ? "train" : "test";
            float[] f;
            int t, w;
            if (split)
            {
                var rgb = Npy.Load(Path.Combine(root, "features", dir, "rgb", v.Name + ".npy"));
                var flow = Npy.Load(Path.Combine(root, "features", dir, "flow", v.Name + ".npy"));
                if (rgb.Shape.Length != 2 || flow.Shape.Length != 2 || rgb.Shape[0] != flow.Shape[0]
                    || rgb.Shape[1] != flow.Shape[1])
                    throw new DataFormatException($"{root}/features/{dir}: video {v.Name}: rgb "
                        + $"{Engine.Tensor.ShapeStr(rgb.Shape)} and flow {Engine.Tensor.ShapeStr(flow.Shape)} "
                        + "must be (T, F/2) each");
                (t, w) = (rgb.Shape[0], 2 * rgb.Shape[1]);
                var r = rgb.AsFloat(v.Name);
                var fl = flow.AsFloat(v.Name);
                int h = w / 2;
                f = new float[(long)t * w];
                for (int k = 0; k < t; k++)
                {
                    Array.Copy(r, (long)k * h, f, (long)k * w, h);
                    Array.Copy(fl, (long)k * h, f, (long)k * w + h, h);
                }
            }
            else
            {
                var path = WtalcPack.SplitFile(root, v);
                var nd = Npy.Load(path);
                if (nd.Shape.Length != 2)
                    throw new DataFormatException($"{path}: shape {Engine.Tensor.ShapeStr(nd.Shape)}, expected (T, F)");
                (t, w, f) = (nd.Shape[0], nd.Shape[1], nd.AsFloat(path));
            }
            if (t == 0) throw new DataFormatException($"{root}: video {v.Name} is empty (T = 0)");
            WtalDataset.CheckFinite(f, $"{root}: video {v.Name}", w);
            v.T = t;
            v.Features = f;
        });
        ds.FeatureDim = videos[0].Features.Length / videos[0].T;
        if (videos.FirstOrDefault(v => v.Features.Length != (long)v.T * ds.FeatureDim) is { } odd)
            throw new DataFormatException($"{root}: video {odd.Name} has feature width "
                + $"{odd.Features.Length / odd.T}, the first video {ds.FeatureDim}");
        if (ds.FeatureDim % 2 != 0)
            throw new DataFormatException($"{root}: feature width {ds.FeatureDim} must be even (RGB | flow)");
        if (clipRoot != null) WtalDataset.LoadClip(ds, clipRoot);
        ds.FeatureSource = split ? Path.Combine(root, "features") : root;
        ds.Train = ann.Train.ToList();
        ds.Test = ann.Test.ToList();
        if (ds.Train.Count == 0) throw new DataFormatException($"{root}: split_train.txt lists no videos");
        log?.Report($"read {root} ({(split ? "BaS/UM" : "ACM-Net")} layout): {ds.Train.Count} train / "
            + $"{ds.Test.Count} test videos, {videos.Sum(v => (long)v.T)} snippets, in {sw.Elapsed.TotalSeconds:F2} s");
        return ds;
    }
}
