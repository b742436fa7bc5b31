// The training run's plots with ScottPlot: one panel per loss term against the step (each term on its
// own scale: distillation is ~100, the contrasts ~0.01), and one panel per test video with the class's
// CAS (min-max normalised, as the proposals use it), the attention and the GT segments, titled with the
// video, the class and the step. If drawing fails (no usable font, a native library missing) the run
// goes on with the library's minimal plots and says so once.
using PvlrKernels.Train;
using PvlrKernels.Util;
using ScottPlot;

namespace PvlrKernels.Cli;

public sealed class ScottRunPlotter : IRunPlotter
{
    readonly IRunPlotter fallback = new MinimalPlotter();
    bool failed;

    /// The PNG from ScottPlot, written atomically; the minimal plot where ScottPlot cannot render.
    void Draw(string path, Func<Multiplot> scott, int width, int height, Action<string> minimal)
    {
        byte[] png = null;
        if (!failed)
            try
            {
                using var image = scott().Render(width, height);
                png = image.GetImageBytes(ImageFormat.Png, 100);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                failed = true;
                Console.Error.WriteLine($"pvlr: plots without axes from now on: ScottPlot could not draw {path} "
                    + $"({e.GetType().Name}: {e.Message.Split('\n')[0]})");
            }
        if (png != null) AtomicFile.WriteAllBytes(path, png);
        else minimal(path);
    }

    public void Losses(string path, IReadOnlyList<IReadOnlyDictionary<string, float>> history, int firstStep)
    {
        var terms = history.SelectMany(h => h.Keys).Distinct().OrderBy(k => k == "total" ? "" : k).ToList();
        Draw(path, () => LossPanels(terms, history, firstStep), 900, 170 * terms.Count, p => fallback.Losses(p,
            history, firstStep));
    }

    static Multiplot LossPanels(List<string> terms, IReadOnlyList<IReadOnlyDictionary<string, float>> history,
        int firstStep)
    {
        var mp = new Multiplot();
        mp.AddPlots(terms.Count);
        double[] steps = Enumerable.Range(0, history.Count).Select(i => (double)(firstStep + i)).ToArray();
        for (int k = 0; k < terms.Count; k++)
        {
            var plot = mp.GetPlot(k);
            double[] ys = history.Select(h => h.TryGetValue(terms[k], out var v) ? (double)v : double.NaN).ToArray();
            plot.Add.ScatterLine(steps, ys);
            plot.Title(terms[k] == "total" ? "total loss" : terms[k]);
            plot.YLabel("loss");
            plot.XLabel(k == terms.Count - 1 ? "step" : "");
        }
        return mp;
    }

    public void Videos(string path, int step, IReadOnlyList<VideoPanel> panels) =>
        Draw(path, () => VideoPanels(step, panels), 1000, 260 * Math.Max(1, panels.Count), p => fallback.Videos(p,
            step, panels));

    static Multiplot VideoPanels(int step, IReadOnlyList<VideoPanel> panels)
    {
        var mp = new Multiplot();
        mp.AddPlots(Math.Max(1, panels.Count));
        for (int k = 0; k < panels.Count; k++)
        {
            var p = panels[k];
            var plot = mp.GetPlot(k);
            double[] t = Enumerable.Range(0, p.Cas.Length).Select(i => (double)i).ToArray();
            bool first = true;
            // as the minimal plot: GT within the snippets drawn
            foreach (var (s, e) in p.Gt.Where(g => g.start < t.Length))
            {
                var span = plot.Add.HorizontalSpan(s, Math.Min(e, t.Length - 1));
                span.FillStyle.Color = Colors.Green.WithAlpha(0.2);
                span.LineStyle.Width = 0;
                if (first)
                {
                    span.LegendText = "ground truth";
                    first = false;
                }
            }
            float lo = p.Cas.Min(), hi = p.Cas.Max(), range = hi > lo ? hi - lo : 1;
            var cas = plot.Add.ScatterLine(t, p.Cas.Select(v => (double)((v - lo) / range)).ToArray());
            cas.LegendText = $"CAS of {p.Class} (min-max)";
            cas.Color = Colors.Blue;
            var att = plot.Add.ScatterLine(t, p.Attention.Select(v => (double)v).ToArray());
            att.LegendText = "attention";
            att.Color = Colors.Red;
            plot.Title($"{p.Video}: {p.Class}, step {step}");
            plot.XLabel("snippet (16 frames at 25 fps)");
            plot.YLabel("score");
            plot.Axes.SetLimitsY(-0.05, 1.05);
            plot.ShowLegend(Alignment.UpperRight);
        }
        return mp;
    }
}
