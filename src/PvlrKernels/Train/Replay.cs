// The result of replaying one dumped training step of a method's reference restatement (each method's
// replay is IMethod.Replay; PVLR's is Methods/Pvlr/PvlrReplay.cs) and how it is written:
// losses.json (every term, plus total_loss), mining.json (the method's own host-side picks against the
// dump's, where it has any) and grads/<name>.npy for every trainable parameter that got a gradient.
using PvlrKernels.Util;
using System.Text.Json;
using PvlrKernels.Data;
using PvlrKernels.Methods;

namespace PvlrKernels.Train;

public sealed class ReplayResult
{
    public Dictionary<string, double> Losses = new();
    public Dictionary<string, (float[] grad, int[] shape)> Grads = new();
    public List<string> Notes = new();
    public MethodConfig Config;
    /// Per mining set (easy_act, ...): how many of the (B, k) picks equal the dump's, position by position.
    public Dictionary<string, (int same, int total)> Mining = new();
    public string MiningSource;
    /// The tie order the method's own mining used ("torch", "stable"), where it mines.
    public string MiningTies;
}

public static class Replay
{
    public static void Write(ReplayResult r, string outDir)
    {
        Directory.CreateDirectory(Path.Combine(outDir, "grads"));
        AtomicFile.WriteAllText(Path.Combine(outDir, "losses.json"), JsonSerializer.Serialize(r.Losses,
            new JsonSerializerOptions { WriteIndented = true }));
        if (r.Mining.Count > 0)
        {
            var mining = r.Mining.ToDictionary(kv => kv.Key, kv => new { same = kv.Value.same,
                total = kv.Value.total });
            AtomicFile.WriteAllText(Path.Combine(outDir, "mining.json"),
                JsonSerializer.Serialize(new { source = r.MiningSource, ties = r.MiningTies, picks = mining },
                    new JsonSerializerOptions { WriteIndented = true }));
        }
        foreach (var (name, (grad, shape)) in r.Grads)
            Npy.Save(Path.Combine(outDir, "grads", name + ".npy"), grad, shape);
    }
}
