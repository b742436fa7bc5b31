// The Debian python3 that runs the reference scripts (tests/reference, benchmarks/reference) for the
// live comparisons. A test that needs it is ignored where python3 or a module it imports is missing.
using System.Diagnostics;
using NUnit.Framework;

namespace PvlrKernels.Tests;

public static class ReferencePython
{
    const string Exe = "/usr/bin/python3";

    /// A path under the repository root (the test binaries sit in tests/PvlrKernels.Tests/bin/<cfg>/<tfm>).
    public static string RepoPath(params string[] parts) =>
        Path.GetFullPath(Path.Combine(new[] { TestContext.CurrentContext.TestDirectory, "..", "..", "..", "..",
            ".." }.Concat(parts).ToArray()));

    public static (int rc, string stdout, string stderr) Run(string args)
    {
        if (!File.Exists(Exe)) Assert.Ignore($"{Exe} is not installed");
        using var p = Process.Start(new ProcessStartInfo(Exe, args) { RedirectStandardOutput = true,
            RedirectStandardError = true });
        var so = p.StandardOutput.ReadToEndAsync();
        var se = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        if (p.ExitCode != 0 && se.Result.Contains("No module named"))
            Assert.Ignore("python3 lacks a module: " + se.Result.Trim().Split('\n').Last());
        return (p.ExitCode, so.Result, se.Result);
    }

    /// Runs tests/reference/SCRIPT with a fresh temporary output directory as its first argument, then
    /// `check` on that directory, and removes it. The case is ignored where python3 or a module is missing.
    public static void WithFixture(string script, string args, Action<string> check)
    {
        var dir = Path.Combine(Path.GetTempPath(), "pvlr-ref-" + Guid.NewGuid().ToString("N")[..8]);
        var (rc, so, se) = Run($"\"{RepoPath("tests", "reference", script)}\" \"{dir}\" {args}");
        Assert.That(rc, Is.EqualTo(0), so + se);
        try { check(dir); }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }
}
