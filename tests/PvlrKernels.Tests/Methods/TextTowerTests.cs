// The text tower with each distinct prompt prefix run once (PvlrConfig.SharePromptPrefix) against the
// tower on every (prompt, position) up to the last EOT, on every backend: the same text features bit for
// bit, and the same gradient into the learnable prompt table E up to the order of its sums. Both layouts
// run the same gathers, so a fault common to both shows in ReplayTests (the step against the PyTorch
// dump, with sharing on there) instead: a node read back from the wrong position fails it.
using NUnit.Framework;
using PvlrKernels.Engine;
using PvlrKernels.Model;
using PvlrKernels.Methods.Pvlr;

namespace PvlrKernels.Tests;

[TestFixtureSource(typeof(Backends), nameof(Backends.All))]
public sealed class TextTowerTests(string backendName)
{
    Backend B => Backends.Get(backendName);

    (float[] text, float[] dE, int rows) Run(bool share)
    {
        // 2 layers; small for the emulator
        var cfg = PvlrConfig.Demo();
        cfg.SharePromptPrefix = share;
        cfg.ClipWidth = 32;
        cfg.ClipHeads = 2;
        var model = new PvlrModel(cfg, ClassTokens.Names.Keys.ToArray());    // the 20 THUMOS classes
        model.Initialize(B, 1);
        try
        {
            using var g = new Graph(B, model.P);
            var text = model.TextFeatures(g);
            var r = new Random(4);
            var weights = Enumerable.Range(0, (int)text.Size).Select(_ => (float)(r.NextDouble() * 2 - 1)).ToArray();
            model.P.ZeroGrad();
            g.Backward(g.SumAll(g.Mul(text, g.FromHost(weights, text.Shape))));
            return (g.ToHost(text), model.P.GetGrad("embedding.weight"), model.TextRows);
        }
        finally { model.P.Dispose(); }
    }

    [Test]
    public void SharedPromptPrefixesGiveTheSameTower()
    {
        var all = Run(share: false);
        var shared = Run(share: true);
        // 21 prompts x 13 positions; shared: SOT and E[1..4] once, every class up to its own EOT (its 1, 2 or 3
        // BPE tokens, 4 postfix rows, the EOT: "diving" 1 token, "clean and jerk" and "volleyball spiking" 3,
        // the others 2), "cricket" once for its two classes, and the background's position 0
        Assert.That(all.rows, Is.EqualTo(21 * 13));
        Assert.That(shared.rows, Is.EqualTo(5 + (1 * 6 + 17 * 7 + 2 * 8) - 1 + 1));
        Check.SameBits(shared.text, all.text, $"text features [{backendName}]");
        Assert.That(all.dE.Any(v => v != 0), "the prompt table gets a gradient");
        // the two layouts hold different rows, so a sum that cancels (one of 2,464 entries here) can differ in its
        // last digits; on the GPU forms, which sum a row's keys lane by lane, by up to 1e-4 of the largest entry
        double scale = all.dE.Max(v => Math.Abs((double)v));
        Check.Close(shared.dE, all.dE.Select(v => (double)v).ToArray(), B.IsGpu || backendName == "ilgpu-cpu"
            ? 1e-4 * scale : 1e-7, 1e-4, $"d embedding.weight [{backendName}]");
    }
}
