// A training run's output directory, checked and held for the run:
// - it must be a directory (or creatable as one) where a file can be written and flushed, checked before
//   any data is read, so a read-only or full disk or a file in its place is found at once;
// - a lock file (.pvlr.lock, held open with FileShare.None, which .NET enforces between processes with an
//   advisory lock; the kernel drops it when the holder dies) stops a second training into the same
//   directory, naming the holder (written beside it, .pvlr.lock.holder, since the held file cannot be read);
// - temporary files of our AtomicFile naming (".<name>.<pid>.tmp") left by a killed write are removed.
using System.Text.RegularExpressions;

namespace PvlrKernels.Train;

public sealed class RunDirectory : IDisposable
{
    public const string LockName = ".pvlr.lock", HolderName = ".pvlr.lock.holder";
    static readonly Regex TempFile = new(@"^\..+\.\d+\.tmp$", RegexOptions.Compiled);

    readonly FileStream lockStream;
    public readonly string Path;
    public readonly List<string> RemovedTemp = new();

    RunDirectory(string path, FileStream lockStream) { Path = path; this.lockStream = lockStream; }

    /// `option` names where the directory came from (--out, --resume) in the errors.
    public static RunDirectory Open(string dir, string option)
    {
        if (File.Exists(dir)) throw new ArgumentException($"{option} {dir} is a file, not a directory");
        try { Directory.CreateDirectory(dir); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ArgumentException($"{option} {dir}: cannot create the directory ({e.Message})");
        }
        FileStream held;
        var lockPath = System.IO.Path.Combine(dir, LockName);
        try
        {
            held = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 4096,
                FileOptions.DeleteOnClose);
        }
        catch (UnauthorizedAccessException e) { throw new ArgumentException($"{option} {dir}: cannot write there "
            + $"({e.Message})"); }
        catch (IOException e) when (File.Exists(lockPath))
        {
            string holder;
            try { holder = File.ReadAllText(System.IO.Path.Combine(dir, HolderName)).Trim(); }
            catch (Exception) { holder = ""; }
            throw new ArgumentException($"{option} {dir} is in use by another training "
                + $"({(holder.Length > 0 ? holder : e.Message)}); "
                + "give it another directory or wait for that run to end");
        }
        catch (IOException e) { throw new ArgumentException($"{option} {dir}: cannot write there ({e.Message})"); }
        var run = new RunDirectory(dir, held);
        try
        {
            File.WriteAllText(System.IO.Path.Combine(dir, HolderName),
                $"pid {Environment.ProcessId} on {Environment.MachineName}, "
                + $"since {DateTime.Now:yyyy-MM-dd HH:mm:ss}\n");
            // a write that must reach the disk: a full or read-only file system fails here, not after the data is read
            var probe = System.IO.Path.Combine(dir, $".pvlr-probe.{Environment.ProcessId}.tmp");
            using (var f = new FileStream(probe, FileMode.Create, FileAccess.Write, FileShare.None, 4096,
                FileOptions.DeleteOnClose))
            {
                f.Write(new byte[1 << 16]);
                f.Flush(flushToDisk: true);
            }
            foreach (var f in Directory.EnumerateFiles(dir))
            {
                var name = System.IO.Path.GetFileName(f);
                if (!TempFile.IsMatch(name)) continue;
                File.Delete(f);
                run.RemovedTemp.Add(name);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            run.Dispose();
            throw new ArgumentException($"{option} {dir}: cannot write there ({e.Message})");
        }
        return run;
    }

    public void Dispose()
    {
        try { File.Delete(System.IO.Path.Combine(Path, HolderName)); } catch (IOException) { }
        lockStream.Dispose();
    }
}
