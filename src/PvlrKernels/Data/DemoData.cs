// The embedded demo dataset: the REAL THUMOS14 annotations (videos, durations, GT segments, classes,
// ambiguous list; embedded in the assembly from features/thumos14/) with synthetic I3D-like and
// CLIP-like features, written in the exact W-TALC / PVLR layout so the loader cannot tell it apart.
//
// What the features are: each snippet = Gaussian noise + background clutter (a random mixture of 8
// shared "scene" components that drifts over time) + a video-level context vector of the video's
// classes present at every snippet (weak, so background next to an action looks a bit like it) +
// inside GT segments a class prototype whose strength ramps up over ~2 snippets at each boundary
// (blurred boundaries) with a per-instance amplitude. Prototypes are mixes of a class-own and a
// group-shared direction (e.g. the jumps and throws share components), and RGB and flow halves carry
// the class signal with different, class-dependent strengths. CLIP-like features are a fixed random
// projection of the same latent signal plus noise.
// ActivityNet-shaped demo (DemoOptions.Benchmark = ActivityNet12): the same features over synthetic
// annotations with ActivityNet's shape, in the W-TALC ActivityNet1.2 pack layout: 200 classes, one class
// per video in one to three instances that cover most of it (ActivityNet's actions fill about two
// thirds of their videos), videos of 15 to 75 s (23 to 117 snippets: short, as PVLR's ActivityNet runs
// sample 60), 1,600 training and 800 validation videos; subsets 'training' and 'validation'.
// What they are not: real video features. mAP on them measures the engine and the method's
// mechanics, not THUMOS accuracy. A good model lands well below 100 mAP (noise, clutter, context and
// shared components make the classes and the boundaries ambiguous).
using PvlrKernels.Util;
using System.Reflection;
using System.Text;
using PvlrKernels.Data;

namespace PvlrKernels.Data;

public sealed class DemoOptions
{
    public int FeatDim = 256, ClipDim = 128, MaxVideos = int.MaxValue, MaxLength = int.MaxValue, Seed = 2024;
    public float Noise = 1.0f, Signal = 1.6f, Context = 0.35f, Clutter = 0.8f;
    /// THUMOS14 (its real annotations) or ActivityNet12 (synthetic annotations of ActivityNet's shape).
    public WtalcPack Benchmark = WtalcPack.Thumos14;
    /// The ActivityNet-shaped set's classes and videos (training + validation, 2 : 1).
    public int Classes = 200, Videos = 2400;
}

public static class DemoData
{
    public static string[] AnnotationFiles => new[] { "classlist.npy", "videoname.npy", "subset.npy", "duration.npy",
        "labels.npy", "labels_all.npy",
        "segments.npy", "original_fps.npy", "extracted_fps.npy", "Ambiguous_test.txt" };

    /// Writes the real annotation files (from the assembly) into dir.
    public static void WriteAnnotations(string dir)
    {
        Directory.CreateDirectory(dir);
        var asm = typeof(DemoData).Assembly;
        foreach (var f in AnnotationFiles)
        {
            var res = asm.GetManifestResourceNames().FirstOrDefault(n => n.EndsWith("thumos14." + f))
                ?? throw new FileNotFoundException($"embedded annotation {f} missing from the assembly");
            using var s = asm.GetManifestResourceStream(res)!;
            var ms = new MemoryStream();
            s.CopyTo(ms);
            AtomicFile.WriteAllBytes(Path.Combine(dir, f), ms.ToArray());
        }
    }

    /// Generates the dataset under root (returns the number of videos written). Deterministic in the options.
    public static int Generate(string root, DemoOptions o, IProgress<string> log = null)
    {
        var pack = o.Benchmark;
        var annDir = Path.Combine(root, pack.AnnDir);
        if (pack != WtalcPack.Thumos14) WriteActivityNetAnnotations(annDir, o);
        else WriteAnnotations(annDir);
        var ann = Annotations.Load(annDir, pack);
        var rng = new Random(o.Seed);
        int f = o.FeatDim, h = f / 2, dc = o.ClipDim, nc = ann.Classes.Length, latent = 32;
        float N() { double u1 = 1 - rng.NextDouble(),
            u2 = rng.NextDouble(); return (float)(Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2)); }
        float[] Unit(int n)
        {
            var v = new float[n];
            double s = 0;
            for (int i = 0; i < n; i++)
            {
                v[i] = N();
                s += v[i] * v[i];
            }
            s = Math.Sqrt(s);
            for (int i = 0; i < n; i++) v[i] /= (float)s;
            return v;
        }
        // latent class codes: own + group-shared direction (groups of related classes)
        int groups = 6;
        var groupCode = Enumerable.Range(0, groups).Select(_ => Unit(latent)).ToArray();
        var classCode = Enumerable.Range(0,
            nc).Select(c => { var own = Unit(latent); var gc = groupCode[c % groups]; return own.Select((v,
            i) => 0.75f * v + 0.66f * gc[i]).ToArray(); }).ToArray();
        var clutterCode = Enumerable.Range(0, 8).Select(_ => Unit(latent)).ToArray();
        var projI3d = Enumerable.Range(0,
            f).Select(_ => Unit(latent)).ToArray();             // (F, latent) random projection
        var projClip = Enumerable.Range(0, dc).Select(_ => Unit(latent)).ToArray();
        var rgbGain = Enumerable.Range(0, nc).Select(_ => 0.4f + 1.2f * (float)rng.NextDouble()).ToArray();
        var flowGain = rgbGain.Select(g => 2f - g).ToArray();
        var videos = Pick(ann.Videos, o.MaxVideos);
        var feats = new List<(int[] shape, float[] data)>();
        var clipRoot = Path.Combine(root, pack.ClipDir);
        foreach (var v in videos)
        {
            int t = Math.Max(1, Math.Min(o.MaxLength, (int)Math.Round(v.Duration * 25 / 16)));
            var strength = new float[t, nc];
            foreach (var (s, e, l) in v.Segments)
            {
                int c = ann.ClassIndex(l);
                float amp = 0.5f + (float)rng.NextDouble();
                double ss = s * 25 / 16, ee = e * 25 / 16;
                for (int i = Math.Max(0, (int)ss - 3); i < Math.Min(t, (int)ee + 4); i++)
                {
                    double ramp = Math.Min(Math.Clamp((i + 0.5 - ss) / 2.0 + 0.5, 0, 1),
                        Math.Clamp((ee - i - 0.5) / 2.0 + 0.5, 0, 1));
                    strength[i, c] = Math.Max(strength[i, c], (float)(amp * ramp));
                }
            }
            var ctx = new float[latent];
            foreach (var l in v.Labels)
            {
                var cc = classCode[ann.ClassIndex(l)];
                for (int k = 0; k < latent; k++) ctx[k] += o.Context * cc[k];
            }
            var mix = new float[8];
            for (int k = 0; k < 8; k++) mix[k] = N();
            var x = new float[t * f];
            var z = new float[t * dc];
            var lat = new float[latent];
            var latR = new float[latent];
            var latF = new float[latent];
            for (int i = 0; i < t; i++)
            {
                for (int k = 0; k < 8; k++) mix[k] = 0.95f * mix[k] + 0.3f * N();
                for (int k = 0; k < latent; k++)
                {
                    float bg = ctx[k];
                    for (int q = 0; q < 8; q++) bg += o.Clutter * 0.35f * mix[q] * clutterCode[q][k];
                    float act = 0, ar = 0, af = 0;
                    for (int c = 0; c < nc; c++) if (strength[i, c] > 0)
                    {
                        float sv = strength[i, c] * classCode[c][k];
                        act += sv;
                        ar += rgbGain[c] * sv;
                        af += flowGain[c] * sv;
                    }
                    lat[k] = bg + o.Signal * act;
                    latR[k] = bg + o.Signal * ar;
                    latF[k] = bg + o.Signal * af;
                }
                for (int j = 0; j < f; j++)
                {
                    var src = j < h ? latR : latF;
                    double s = 0;
                    for (int k = 0; k < latent; k++) s += projI3d[j][k] * src[k];
                    x[i * f + j] = (float)(s * Math.Sqrt(latent) / 4) + o.Noise * N();
                }
                for (int j = 0; j < dc; j++)
                {
                    double s = 0;
                    for (int k = 0; k < latent; k++) s += projClip[j][k] * lat[k];
                    z[i * dc + j] = (float)s + 0.5f * o.Noise * N();
                }
            }
            void Save(string path, float[] data, int width)
            {
                Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                Npy.Save(path, data, t, width);
            }
            if (pack.PerVideoFeatures && (v.IsTrain || v.IsTest)) Save(WtalcPack.SplitFile(root, v), x, f);
            else feats.Add((new[] { t, f }, x));
            if (v.IsTrain || v.IsTest) Save(pack.ClipFile(clipRoot, v), z, dc);
        }
        if (videos.Count < ann.Videos.Count) TrimAnnotations(annDir, videos.Select(v => v.Index).ToArray());
        if (!pack.PerVideoFeatures)
        {
            var featPath = pack.FeatFile(root);
            Directory.CreateDirectory(Path.GetDirectoryName(featPath)!);
            AtomicFile.Write(featPath, s => NumpyPickle.WriteObjectArrayOfFloat32(s, feats));
        }
        log?.Report($"demo data ({pack.Name}): {videos.Count} videos, F={f}, CLIP {dc}, written to {root}");
        return videos.Count;
    }

    /// Synthetic annotations of ActivityNet's shape in the W-TALC pack's files (see the file comment), with
    /// the benchmark's subset names.
    static void WriteActivityNetAnnotations(string dir, DemoOptions o)
    {
        if (o.Classes < 1 || o.Videos < 2)
            throw new ArgumentException($"demo data: {o.Classes} classes and {o.Videos} videos; at least 1 and 2");
        Directory.CreateDirectory(dir);
        var rng = new Random(o.Seed + 1);
        string P(string f) => Path.Combine(dir, f);
        var classes = Enumerable.Range(0, o.Classes).Select(c => $"activity {c:000}").ToArray();
        int n = o.Videos, nTrain = (int)Math.Round(n * 2.0 / 3);
        var names = new string[n];
        var subsets = new string[n];
        var durations = new double[n];
        var labels = new List<object>();
        var labelsAll = new List<object>();
        var segments = new List<object>();
        for (int i = 0; i < n; i++)
        {
            names[i] = $"v_demo{i:00000}";
            subsets[i] = i < nTrain ? o.Benchmark.TrainSubset : o.Benchmark.TestSubset;
            double dur = Math.Round(15 + 60 * rng.NextDouble(), 2);
            durations[i] = dur;
            string label = classes[i % o.Classes];
            // one to three instances that together cover 40 to 90 % of the video, in order, apart
            int k = 1 + rng.Next(3);
            double cover = dur * (0.4 + 0.5 * rng.NextDouble()), gap = (dur - cover) / (k + 1), at = gap;
            var segs = new List<object>();
            var ls = new List<object>();
            for (int j = 0; j < k; j++)
            {
                double len = cover / k;
                segs.Add(new List<object> { Math.Round(at, 2), Math.Round(at + len, 2) });
                ls.Add(label);
                at += len + gap;
            }
            segments.Add(segs);
            labels.Add(ls);
            labelsAll.Add(new List<object> { label });
        }
        Npy.SaveStrings(P("classlist.npy"), classes);
        Npy.SaveStrings(P("videoname.npy"), names);
        Npy.SaveStrings(P("subset.npy"), subsets);
        Npy.Save(P("duration.npy"), durations, n, 1);
        AtomicFile.Write(P("labels.npy"), s => NumpyPickle.WriteObjectArray(s, labels));
        AtomicFile.Write(P("labels_all.npy"), s => NumpyPickle.WriteObjectArray(s, labelsAll));
        AtomicFile.Write(P("segments.npy"), s => NumpyPickle.WriteObjectArray(s, segments));
    }

    /// At most n videos, both splits kept in their real proportion (200 validation : 212 test), at least one
    /// of each from n = 2 on, each split's first videos in annotation order. (The annotations list the
    /// validation videos first: the first n alone would leave a small dataset without a test split.)
    public static List<Video> Pick(IReadOnlyList<Video> all, int n)
    {
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), $"demo data: {n} videos; at least 1");
        if (n >= all.Count) return all.ToList();
        var test = all.Where(v => v.IsTest).ToList();
        var train = all.Where(v => v.IsTrain).ToList();
        int nTest = n < 2 ? 0 : Math.Clamp((int)Math.Round((double)n * test.Count / all.Count), 1, n - 1);
        nTest = Math.Min(nTest, test.Count); int nTrain = Math.Min(n - nTest,
            train.Count); nTest = Math.Min(n - nTrain, test.Count);
        return train.Take(nTrain).Concat(test.Take(nTest)).OrderBy(v => v.Index).ToList();
    }

    /// Keeps only the videos at `keep` (ascending) in every per-video annotation file (for small datasets).
    static void TrimAnnotations(string dir, int[] keep)
    {
        string P(string x) => Path.Combine(dir, x);
        T[] Kept<T>(IReadOnlyList<T> a) => keep.Select(i => a[i]).ToArray();
        Npy.SaveStrings(P("videoname.npy"), Kept(Npy.Load(P("videoname.npy")).AsStrings()));
        Npy.SaveStrings(P("subset.npy"), Kept(Npy.Load(P("subset.npy")).AsStrings()));
        Npy.Save(P("duration.npy"), Kept(Npy.Load(P("duration.npy")).AsDouble()), keep.Length, 1);
        foreach (var f in new[] { "labels.npy", "labels_all.npy", "segments.npy" })
        {
            var items = Kept((object[])Npy.Load(P(f)).Data).ToList();
            AtomicFile.Write(P(f), s => NumpyPickle.WriteObjectArray(s, items));
        }
    }
}
