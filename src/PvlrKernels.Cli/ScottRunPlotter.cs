// The training run's plots with ScottPlot: one panel per loss term against the step (each term on its
// own scale: distillation is ~100, the contrasts ~0.01), and one panel per test video with the class's
// CAS (min-max normalised, as the proposals use it), the attention and the GT segments, titled with the
// video, the class and the step. If drawing fails (no usable font, a native library missing) the run
// goes on with the library's minimal plots and says so once.
using PvlrKernels.Train;
using ScottPlot;

namespace PvlrKernels.Cli;

public sealed class ScottRunPlotter : IRunPlotter
{
    readonly IRunPlotter fallback = new MinimalPlotter();
    bool failed;

    void Draw(string path, Action<string> scott, Action<string> minimal)
    {
        if (!failed)
        {
            var tmp = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, "." + Path.GetFileName(path) + "." + Environment.ProcessId + ".tmp.png");
            try { scott(tmp); File.Move(tmp, path, overwrite: true); return; }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                try { File.Delete(tmp); } catch (IOException) { }
                failed = true;
                Console.Error.WriteLine($"pvlr: plots without axes from now on: ScottPlot could not draw {path} ({e.GetType().Name}: {e.Message.Split('\n')[0]})");
            }
        }
        minimal(path);
    }

    public void Losses(string path, IReadOnlyList<IReadOnlyDictionary<string, float>> history, int firstStep) => Draw(path, tmp =>
    {
        var terms = history.SelectMany(h => h.Keys).Distinct().OrderBy(k => k == "total" ? "" : k).ToList();
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
        mp.SavePng(tmp, 900, 170 * terms.Count);
    }, p => fallback.Losses(p, history, firstStep));

    public void Videos(string path, int step, IReadOnlyList<VideoPanel> panels) => Draw(path, tmp =>
    {
        var mp = new Multiplot();
        mp.AddPlots(Math.Max(1, panels.Count));
        for (int k = 0; k < panels.Count; k++)
        {
            var p = panels[k]; var plot = mp.GetPlot(k);
            double[] t = Enumerable.Range(0, p.Cas.Length).Select(i => (double)i).ToArray();
            bool first = true;
            foreach (var (s, e) in p.Gt)
            {
                var span = plot.Add.HorizontalSpan(s, e);
                span.FillStyle.Color = Colors.Green.WithAlpha(0.2);
                span.LineStyle.Width = 0;
                if (first) { span.LegendText = "ground truth"; first = false; }
            }
            float lo = p.Cas.Min(), hi = p.Cas.Max(), range = hi > lo ? hi - lo : 1;
            var cas = plot.Add.ScatterLine(t, p.Cas.Select(v => (double)((v - lo) / range)).ToArray());
            cas.LegendText = $"CAS of {p.Class} (min-max)"; cas.Color = Colors.Blue;
            var att = plot.Add.ScatterLine(t, p.Attention.Select(v => (double)v).ToArray());
            att.LegendText = "attention"; att.Color = Colors.Red;
            plot.Title($"{p.Video}: {p.Class}, step {step}");
            plot.XLabel("snippet (16 frames at 25 fps)");
            plot.YLabel("score");
            plot.Axes.SetLimitsY(-0.05, 1.05);
            plot.ShowLegend(Alignment.UpperRight);
        }
        mp.SavePng(tmp, 1000, 260 * Math.Max(1, panels.Count));
    }, p => fallback.Videos(p, step, panels));
}
