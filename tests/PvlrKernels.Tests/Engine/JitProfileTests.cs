// The CLI's multicore JIT profile (Engine/JitProfile.cs): where it goes, how it is turned off, that a
// folder that cannot be made never stops a run, and that a `pvlr` process really writes one.
using NUnit.Framework;
using PvlrKernels.Engine;

namespace PvlrKernels.Tests;

public sealed class JitProfileTests
{
    static Func<string, string> Env(params (string key, string value)[] vars) =>
        k => vars.FirstOrDefault(v => v.key == k).value;

    [Test]
    public void FolderFollowsTheVariableThenTheXdgCacheThenHome()
    {
        var tmp = Path.GetTempPath();
        Assert.That(JitProfile.Folder(Env((JitProfile.Variable, Path.Combine(tmp, "p")), ("XDG_CACHE_HOME", "/c"))),
            Is.EqualTo(Path.Combine(tmp, "p")));
        Assert.That(JitProfile.Folder(Env((JitProfile.Variable, "off"), ("XDG_CACHE_HOME", "/c"))), Is.Null);
        Assert.That(JitProfile.Folder(Env((JitProfile.Variable, "OFF"))), Is.Null);
        Assert.That(JitProfile.Folder(Env((JitProfile.Variable, ""))), Is.Null);
        Assert.That(JitProfile.Folder(Env(("XDG_CACHE_HOME", "/c"))), Is.EqualTo(Path.Combine("/c", "pvlr", "jit")));
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        Assert.That(JitProfile.Folder(Env()), Is.EqualTo(string.IsNullOrEmpty(home) ? null : Path.Combine(home,
            ".cache", "pvlr", "jit")));
    }

    [Test]
    public void AFolderThatCannotBeMadeTurnsTheProfileOffInsteadOfFailing()
    {
        var file = Path.GetTempFileName();                   // a file where the folder's parent would be
        try { Assert.That(JitProfile.Start("eval", Env((JitProfile.Variable, Path.Combine(file, "jit")))), Is.Null); }
        finally { File.Delete(file); }
        Assert.That(JitProfile.Start("eval", Env((JitProfile.Variable, "off"))), Is.Null);
        foreach (var bad in new[] { "", "../eval", "a/b" })
            Assert.Throws<ArgumentException>(() => JitProfile.Start(bad, Env((JitProfile.Variable, "off"))), bad);
    }

    /// A `pvlr` process (here one that fails fast on a missing folder) leaves its command's profile behind,
    /// also over a corrupt one; with the variable off it leaves nothing.
    [Test]
    public void ThePvlrProcessWritesItsCommandsProfile()
    {
        string dll = Path.Combine(TestContext.CurrentContext.TestDirectory, "pvlr.dll");
        string dotnet = Environment.ProcessPath is { } pp && Path.GetFileNameWithoutExtension(pp) == "dotnet"
            ? pp : "dotnet";
        var dir = Path.Combine(Path.GetTempPath(), $"pvlr-jit-{Guid.NewGuid():N}");
        int Score(string profileDir)
        {
            var psi = new System.Diagnostics.ProcessStartInfo(dotnet,
                $"\"{dll}\" score --annotations \"{Path.Combine(dir, "none")}\" --predictions none.csv")
                { RedirectStandardOutput = true, RedirectStandardError = true };
            psi.Environment[JitProfile.Variable] = profileDir;
            using var p = System.Diagnostics.Process.Start(psi);
            p.StandardOutput.ReadToEnd();
            p.StandardError.ReadToEnd();
            Assert.That(p.WaitForExit(60_000), Is.True, "pvlr score did not exit");
            return p.ExitCode;
        }
        try
        {
            Assert.That(Score("off"), Is.EqualTo(1));
            Assert.That(Directory.Exists(dir), Is.False);
            Assert.That(Score(dir), Is.EqualTo(1));
            var profile = new FileInfo(Path.Combine(dir, "score.jitprofile"));
            Assert.That(profile.Exists && profile.Length > 0, Is.True, $"no profile at {profile.FullName}");
            // a torn or foreign profile: the run is the same, and leaves a profile of its own
            var junk = new byte[4000];
            new Random(3).NextBytes(junk);
            File.WriteAllBytes(profile.FullName, junk);
            Assert.That(Score(dir), Is.EqualTo(1));
            Assert.That(File.ReadAllBytes(profile.FullName), Is.Not.EqualTo(junk));
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }
}
