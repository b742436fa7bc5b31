// The efficiency study's plot (pvlr study): time, activation memory and multiply-accumulates against the
// number of snippets, one panel each, titled with the method, preset and device.
using PvlrKernels.Tools;
using PvlrKernels.Util;
using ScottPlot;

namespace PvlrKernels.Cli;

public static class StudyPlot
{
    public static void Write(string path, IReadOnlyList<StudyRow> rows, string title)
    {
        double[] t = rows.Select(r => (double)r.T).ToArray();
        var mp = new Multiplot();
        mp.AddPlots(3);
        var time = mp.GetPlot(0);
        var median = time.Add.ScatterLine(t, rows.Select(r => r.Seconds * 1e3).ToArray());
        median.LegendText = "median";
        var fastest = time.Add.ScatterLine(t, rows.Select(r => r.Fastest * 1e3).ToArray());
        fastest.LegendText = "fastest";
        fastest.LinePattern = LinePattern.Dotted;
        time.Title($"{title}: one video's test-time forward");
        time.YLabel("milliseconds");
        time.ShowLegend(Alignment.UpperLeft);
        var memory = mp.GetPlot(1);
        memory.Add.ScatterLine(t, rows.Select(r => r.ActivationBytes / 1048576.0).ToArray());
        memory.Title("activation memory (peak of the arena)");
        memory.YLabel("MiB");
        var macs = mp.GetPlot(2);
        var run = macs.Add.ScatterLine(t, rows.Select(r => r.Macs / 1e9).ToArray());
        run.LegendText = "run (Winograd where configured)";
        var nominal = macs.Add.ScatterLine(t, rows.Select(r => r.NominalMacs / 1e9).ToArray());
        nominal.LegendText = "nominal (direct convolutions)";
        nominal.LinePattern = LinePattern.Dashed;
        macs.Title("GEMM multiply-accumulates");
        macs.YLabel("GMAC");
        macs.XLabel("snippets T");
        macs.ShowLegend(Alignment.UpperLeft);
        using var image = mp.Render(900, 900);
        AtomicFile.WriteAllBytes(path, image.GetImageBytes(ImageFormat.Png, 100));
    }
}
