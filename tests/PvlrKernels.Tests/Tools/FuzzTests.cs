// The file readers under random mutation and under generated hostile structures (shared references,
// self-containing lists, deep nesting, colliding keys, overlapping strides): only DataFormatException may
// come out, no hang, no huge allocation. CI runs 3000 cases per target; `pvlr fuzz --cases N` runs more.
using NUnit.Framework;
using PvlrKernels.Tools;
using PvlrKernels.Data;

namespace PvlrKernels.Tests;

public sealed class FuzzTests
{
    static IEnumerable<string> Names => Fuzz.Targets().Select(t => t.Name);

    [TestCaseSource(nameof(Names))]
    public void ReaderSurvivesMutations(string name)
    {
        var t = Fuzz.Targets().Single(x => x.Name == name);
        foreach (var seed in t.Seeds) Assert.DoesNotThrow(() => t.Parse(seed),
            $"{name}: the unmutated seed must parse");
        var rep = Fuzz.Run(t, 3000, seed: 12345, TimeSpan.FromSeconds(2));
        TestContext.Out.WriteLine($"{name}: {rep}");
        Assert.That(rep.Findings, Is.Empty, string.Join("\n", rep.Findings));
        Assert.That(rep.Rejected, Is.GreaterThan(100), "the mutations must actually break files");
    }
}
