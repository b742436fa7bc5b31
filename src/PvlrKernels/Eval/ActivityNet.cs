// ActivityNet detection mAP (ActivityNet's Evaluation/eval_detection.py, ANETdetection): the same
// matching and interpolated AP as the THUMOS evaluator (Evaluator.ApDetection), in seconds, at
// tIoU np.linspace(0.5, 0.95, 10), averaged over the classes that have ground truth in the subset; the
// reported figure is the mean over the ten thresholds. Ground truth: the ActivityNet JSON
// ({"database": {video: {"subset", "duration", "annotations": [{"segment": [s, e], "label"}]}}});
// predictions: the results JSON ({"results": {video: [{"label", "score", "segment": [s, e]}]}}).
using System.Text.Json;
using PvlrKernels.Data;

namespace PvlrKernels.Eval;

public static class ActivityNetEval
{
    /// np.linspace(0.5, 0.95, 10) to the bit: i * 0.05 + 0.5, the last exactly 0.95 (0.9 comes out as
    /// 0.8999999999999999, so a tIoU of exactly 0.9 counts there).
    public static readonly double[] Thresholds =
        Enumerable.Range(0, 10).Select(i => i == 9 ? 0.95 : i * ((0.95 - 0.5) / 9) + 0.5).ToArray();

    /// The subset's segments in seconds and its classes in order of first appearance (the reference's
    /// activity_index).
    public static (string[] classes, List<GtSegment> gt) GroundTruth(string path, string subset = "validation")
    {
        using var doc = Read(path);
        if (!doc.RootElement.TryGetProperty("database", out var db) || db.ValueKind != JsonValueKind.Object)
            throw new DataFormatException($"{path}: no 'database' object (ActivityNet format)");
        var classes = new List<string>();
        var index = new Dictionary<string, int>();
        var gt = new List<GtSegment>();
        Malformed.Guard(path, () =>
        {
            foreach (var v in db.EnumerateObject())
            {
                if (!v.Value.TryGetProperty("subset", out var s) || s.GetString() != subset) continue;
                foreach (var a in v.Value.GetProperty("annotations").EnumerateArray())
                {
                    string label = a.GetProperty("label").GetString();
                    var seg = a.GetProperty("segment");
                    if (seg.GetArrayLength() != 2)
                        throw new DataFormatException($"{path}: video {v.Name}: a segment is not [start, end]");
                    if (!index.TryGetValue(label, out int c))
                    {
                        index[label] = c = classes.Count;
                        classes.Add(label);
                    }
                    gt.Add(new GtSegment(v.Name, seg[0].GetDouble(), seg[1].GetDouble(), c));
                }
            }
            return 0;
        });
        if (gt.Count == 0) throw new DataFormatException($"{path}: no ground truth in subset '{subset}'");
        return (classes.ToArray(), gt);
    }

    /// The results JSON's detections; a label outside `classes` is an error naming it (the reference
    /// stops with a KeyError there).
    public static List<Detection> Predictions(string path, string[] classes)
    {
        using var doc = Read(path);
        if (!doc.RootElement.TryGetProperty("results", out var res) || res.ValueKind != JsonValueKind.Object)
            throw new DataFormatException($"{path}: no 'results' object (ActivityNet results format)");
        var index = classes.Select((c, i) => (c, i)).ToDictionary(x => x.c, x => x.i);
        var dets = new List<Detection>();
        Malformed.Guard(path, () =>
        {
            foreach (var v in res.EnumerateObject())
                foreach (var d in v.Value.EnumerateArray())
                {
                    string label = d.GetProperty("label").GetString();
                    if (!index.TryGetValue(label, out int c))
                        throw new DataFormatException($"{path}: video {v.Name}: label '{label}' has no ground truth "
                            + $"in the subset");
                    var seg = d.GetProperty("segment");
                    double s = seg[0].GetDouble(), e = seg[1].GetDouble(), score = d.GetProperty("score").GetDouble();
                    if (!double.IsFinite(s) || !double.IsFinite(e) || !double.IsFinite(score))
                        throw new DataFormatException($"{path}: video {v.Name}: a non-finite segment or score");
                    dets.Add(new Detection(v.Name, s, e, c, score));
                }
            return 0;
        });
        return dets;
    }

    public static EvalResult Evaluate(string gtPath, string predPath, string subset = "validation")
    {
        var (classes, gt) = GroundTruth(gtPath, subset);
        return Evaluator.Evaluate(gt, Predictions(predPath, classes), classes.Length, Thresholds);
    }

    static JsonDocument Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: not found", path);
        return Malformed.Guard(path, () => JsonDocument.Parse(File.ReadAllText(path)));
    }
}
