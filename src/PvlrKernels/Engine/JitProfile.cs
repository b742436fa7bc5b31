// Multicore JIT (System.Runtime.ProfileOptimization) for the CLI's processes: each run records which
// methods it compiled, and the next run of the same command compiles them on an idle core ahead of their
// first call, while the checkpoint and the features load. Without it, a one-shot `pvlr eval` or the first
// inference pass of `pvlr bench` spends about 0.4-0.5 s compiling on the critical path.
// The profile only says which methods to compile early, never what code to run: a lost profile, a torn
// one or one left by another build can cost that run its head start, not its results. Where it lives:
//   PVLR_JIT_PROFILE_DIR=DIR   that folder; "off" (or empty) turns the profile off
//   otherwise                  $XDG_CACHE_HOME/pvlr/jit, else ~/.cache/pvlr/jit
namespace PvlrKernels.Engine;

public static class JitProfile
{
    public const string Variable = "PVLR_JIT_PROFILE_DIR";

    /// The folder the profiles go to, or null when turned off or when no home folder is known.
    public static string Folder(Func<string, string> env = null)
    {
        env ??= Environment.GetEnvironmentVariable;
        var set = env(Variable);
        if (set != null) return set.Length == 0 || set.Equals("off",
            StringComparison.OrdinalIgnoreCase) ? null : Path.GetFullPath(set);
        var cache = env("XDG_CACHE_HOME");
        if (string.IsNullOrEmpty(cache))
        {
            var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            if (string.IsNullOrEmpty(home)) return null;
            cache = Path.Combine(home, ".cache");
        }
        return Path.Combine(cache, "pvlr", "jit");
    }

    /// Starts recording (and replaying, if a profile of `name` exists) for this process. Returns the
    /// profile's path, or null when the profile is off or its folder cannot be created (a read-only home
    /// in a deployment): the run goes on, compiling on first call as without it.
    public static string Start(string name, Func<string, string> env = null)
    {
        if (string.IsNullOrEmpty(name) || name.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0 || name.Contains(".."))
            throw new ArgumentException($"JIT profile name '{name}' is not a plain file name");
        var dir = Folder(env);
        if (dir == null) return null;
        try { Directory.CreateDirectory(dir); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
        System.Runtime.ProfileOptimization.SetProfileRoot(dir);
        System.Runtime.ProfileOptimization.StartProfile(name + ".jitprofile");
        return Path.Combine(dir, name + ".jitprofile");
    }
}
