// The efficiency study: a method's test-time forward on one video of T snippets, T over a range (200 to
// 3,000 by default), with its time, its activation memory and its multiply-accumulates: what localizing
// a video costs as videos grow, on the machine at hand. `pvlr study` prints and writes the table and
// plots it.
//   seconds      median (and range) of `repeats` forwards after one warm-up, synchronized
//   activation   the peak of the activation arena the forward touches (a fresh arena per T), bytes; the
//                weight layouts derived for the forward (Winograd's transformed kernels) are cached as
//                test-time inference caches them (Graph.FrozenWeights) and reported apart
//   MACs         the GEMM multiply-accumulates the engine runs (Winograd where the config uses it), and
//                the nominal ones of direct convolutions: elementwise ops, softmax and the like are not
//                counted; the text tower's class embeddings (computed once per model) are not either
using System.Diagnostics;
using PvlrKernels.Engine;
using PvlrKernels.Methods;

namespace PvlrKernels.Tools;

public sealed record StudyRow(int T, double Seconds, double Fastest, double Slowest, long ActivationBytes,
    long Macs, long NominalMacs, long DerivedWeightBytes);

public static class Study
{
    /// T = from, from + step, ..., up to `to`; refuses an empty or non-positive range.
    public static int[] Lengths(int from, int to, int step)
    {
        if (from < 1 || step < 1 || to < from)
            throw new ArgumentException($"--lengths {from}:{to}:{step}: need 1 <= from <= to and a step of at least 1");
        return Enumerable.Range(0, (to - from) / step + 1).Select(i => from + i * step).ToArray();
    }

    /// The study of `cfg`'s model (random weights: the cost does not depend on them) on `backend`, and the
    /// model's parameter bytes.
    public static (List<StudyRow> rows, long paramBytes) Run(Backend backend, MethodConfig cfg,
        IReadOnlyList<int> lengths, int repeats, Action<string> progress = null)
    {
        if (repeats < 1) throw new ArgumentException($"--repeats {repeats}: at least 1");
        var classes = Enumerable.Range(0, cfg.NumClasses).Select(i => $"class {i}").ToArray();
        var model = MethodRegistry.Get(cfg.Method).Build(cfg, classes);
        model.Initialize(backend, cfg.Seed);
        using var store = model.Parameters;
        var rows = new List<StudyRow>();
        var rng = new Random(7);
        foreach (int t in lengths)
        {
            var feats = new float[(long)t * cfg.FeatDim];
            for (int i = 0; i < feats.Length; i++) feats[i] = (float)(rng.NextDouble() * 2 - 1);
            (string, ReadOnlyMemory<float>, int)[] video = [("study", feats, t)];
            long Macs(Graph g, float[] text)
            {
                long f0 = backend.GemmFlops;
                model.Signals(g, text, video);
                backend.Synchronize();
                return (backend.GemmFlops - f0) / 2;
            }
            int tile = cfg.WinogradTile;
            long nominal;
            cfg.WinogradTile = 0;                                // the nominal count, on a graph of its own
            try
            {
                using var direct = new Graph(backend, model.Parameters);
                nominal = Macs(direct, model.TestConstants(direct));
            }
            finally { cfg.WinogradTile = tile; }
            float[] text;
            using (var once = new Graph(backend, model.Parameters)) text = model.TestConstants(once);
            using var g = new Graph(backend, model.Parameters);        // the video's forward alone in its arena
            using var frozen = g.FrozenWeights();
            long macs = Macs(g, text);                           // also the warm-up of the configured path
            var times = new double[repeats];
            for (int r = 0; r < repeats; r++)
            {
                var sw = Stopwatch.StartNew();
                model.Signals(g, text, video);
                backend.Synchronize();
                times[r] = sw.Elapsed.TotalSeconds;
            }
            Array.Sort(times);
            var row = new StudyRow(t, times[repeats / 2], times[0], times[^1], g.Act.Touched * 4L, macs, nominal,
                g.FrozenFloats * 4L);
            rows.Add(row);
            progress?.Invoke($"T = {t}: {row.Seconds * 1e3:F2} ms, activations "
                + $"{row.ActivationBytes / 1048576.0:F1} MiB, "
                + $"{row.Macs / 1e9:F3} GMAC ({row.NominalMacs / 1e9:F3} nominal)");
        }
        return (rows, model.Parameters.List.Sum(p => p.Size) * 4L);
    }

    public static string Table(IReadOnlyList<StudyRow> rows, MethodConfig cfg, Backend backend, long paramBytes) =>
        $"{cfg.Method} ({cfg.Preset}, F={cfg.FeatDim}, {cfg.NumClasses} classes) on {backend.Name}: one video's "
        + $"test-time forward; parameters {paramBytes / 1048576.0:F1} MiB, derived weight layouts "
        + $"{(rows.Count > 0 ? rows.Max(r => r.DerivedWeightBytes) : 0) / 1048576.0:F1} MiB\n\n"
        + "| T | ms (median) | ms (range) | activations MiB | GMAC run | GMAC nominal |\n|---|---|---|---|---|---|\n"
        + string.Concat(rows.Select(r => string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"| {r.T} | {r.Seconds * 1e3:F2} | {r.Fastest * 1e3:F2}–{r.Slowest * 1e3:F2} | "
            + $"{r.ActivationBytes / 1048576.0:F1} | {r.Macs / 1e9:F3} | {r.NominalMacs / 1e9:F3} |\n")));

    public static string Csv(IReadOnlyList<StudyRow> rows) =>
        "t,seconds,fastest,slowest,activation_bytes,macs,nominal_macs,derived_weight_bytes\n"
        + string.Concat(rows.Select(r => string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{r.T},{r.Seconds:R},{r.Fastest:R},{r.Slowest:R},{r.ActivationBytes},{r.Macs},{r.NominalMacs},"
            + $"{r.DerivedWeightBytes}\n")));
}
