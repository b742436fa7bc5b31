// Bad input of every kind a user can give ends in one line "pvlr: error: ..." naming the option or the
// file, a non-zero exit and no stack trace; the run directory is checked and locked before any work.
using System.Text;
using NUnit.Framework;
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Model;
using PvlrKernels.Methods.Pvlr;
using PvlrKernels.Train;

namespace PvlrKernels.Tests;

public sealed class HardeningTests
{
    static string Tmp(string what) => Path.Combine(Path.GetTempPath(),
        $"pvlr-hard-{what}-" + Guid.NewGuid().ToString("N")[..8]);
    static string Pth => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "pth",
        "tiny_state_dict.pth");

    static string AssertOneLineError(string[] args, string mustName)
    {
        var (rc, err, _) = TestData.RunCli(args);
        Assert.That(rc, Is.Not.EqualTo(0), string.Join(" ", args));
        var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines.Last(), Does.StartWith("pvlr: error: ").And.Contain(mustName), err);
        Assert.That(err, Does.Not.Contain("   at "), "no stack trace");
        Assert.That(lines.Last(), Does.Not.Contain("details in"),
            "a user's mistake is not reported as a fault of ours");
        return lines.Last();
    }

    [TestCase("train", "--max-iter", "0", "--preset", "tiny", "--", "--max-iter")]
    [TestCase("fuzz", "--cases", "abc", "--", "--cases")]
    [TestCase("fuzz", "--cases", "-5", "--", "--cases")]
    [TestCase("bench", "--only", "pool", "--peak", "abc", "--", "--peak")]
    [TestCase("score", "--annotations", "A", "--predictions", "P", "--json", "yes", "--", "--json")]
    [TestCase("gen-demo", "--feat-dim", "0", "--", "--feat-dim")]
    [TestCase("gen-demo", "--feat-dim", "7", "--", "--feat-dim")]
    [TestCase("train", "--preset", "tiny", "--mining-ties", "random", "--", "--mining-ties")]
    public void BadOptionsAreNamed(params string[] argsAndName)
    {
        int sep = Array.IndexOf(argsAndName, "--");
        var args = argsAndName[..sep];
        if (args[0] == "gen-demo") args = args.Concat(new[] { "--out", Tmp("demo") }).ToArray();
        AssertOneLineError(args, argsAndName[sep + 1]);
    }

    [Test]
    public void HugeInferRowsAreNamed() =>
        AssertOneLineError(new[] { "eval", "--checkpoint", Pth, "--infer-rows", "2000000000", "--data",
            TrainingTests.TinyDataDir }, "--infer-rows");

    [Test]
    public void AnOutThatIsAFileOrCannotBeCreatedIsNamedBeforeAnyWork()
    {
        var file = Tmp("file");
        File.WriteAllText(file, "x");
        try { AssertOneLineError(new[] { "train", "--preset", "tiny", "--max-iter", "1", "--data", "/nonexistent",
            "--out", file }, "is a file"); }
        finally { File.Delete(file); }
        // /proc takes no new directories, even from root; the data path is not even looked at
        AssertOneLineError(new[] { "train", "--preset", "tiny", "--max-iter", "1", "--data", "/nonexistent", "--out",
            "/proc/pvlr-out" }, "--out /proc/pvlr-out");
    }

    static int Sh(string cmd)
    {
        using var p = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("/bin/sh",
            new[] { "-c", cmd }) { RedirectStandardError = true, RedirectStandardOutput = true });
        p.WaitForExit();
        return p.ExitCode;
    }

    /// A full disk under --out is found by the probe write, before the dataset is read (where root may
    /// mount a 64 KiB tmpfs; elsewhere the case is skipped).
    [Test]
    public void AFullDiskUnderOutIsNamedBeforeAnyWork()
    {
        var mnt = Tmp("full");
        Directory.CreateDirectory(mnt);
        if (Sh($"mount -t tmpfs -o size=64k tmpfs '{mnt}'") != 0)
        {
            Directory.Delete(mnt);
            Assert.Ignore("cannot mount a tmpfs here");
        }
        try
        {
            Sh($"dd if=/dev/zero of='{mnt}/fill' bs=4k count=64 2>/dev/null");
            AssertOneLineError(new[] { "train", "--preset", "tiny", "--max-iter", "1", "--data", "/nonexistent",
                "--out", Path.Combine(mnt, "run") }, "cannot write there");
        }
        finally
        {
            Sh($"umount '{mnt}'");
            Directory.Delete(mnt, true);
        }
    }

    [Test]
    public void ASecondTrainingIntoTheSameOutIsRefusedNamingTheHolder()
    {
        var dir = Tmp("lock");
        try
        {
            using (RunDirectory.Open(dir, "--out"))
            {
                var msg = AssertOneLineError(new[] { "train", "--preset", "tiny", "--max-iter", "1", "--data",
                    TrainingTests.TinyDataDir, "--out", dir }, "in use by another training");
                Assert.That(msg, Does.Contain($"pid {Environment.ProcessId}"));
                // from another process too (the lock is the kernel's, not this process's)
                var dll = Path.Combine(TestContext.CurrentContext.TestDirectory, "pvlr.dll");
                using var p = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("dotnet",
                    $"\"{dll}\" train --preset tiny --max-iter 1 --data \"{TrainingTests.TinyDataDir}\" "
                    + $"--out \"{dir}\"")
                    { RedirectStandardError = true, RedirectStandardOutput = true });
                var err = p.StandardError.ReadToEnd();
                p.WaitForExit();
                Assert.That(p.ExitCode, Is.Not.EqualTo(0));
                Assert.That(err, Does.StartWith("pvlr: error: ").And.Contain("in use by another training")
                    .And.Contain($"pid {Environment.ProcessId}"));
            }
            // released: the same directory trains now, and a killed write's temp file of our naming is removed
            File.WriteAllText(Path.Combine(dir, ".last.safetensors.99999.tmp"), "partial");
            File.WriteAllText(Path.Combine(dir, "notes.tmp"), "not ours");
            var (rc, err2, output) = TestData.RunCli("train", "--preset", "tiny", "--max-iter", "1", "--data",
                TrainingTests.TinyDataDir, "--out", dir);
            Assert.That(rc, Is.EqualTo(0), err2);
            Assert.That(output, Does.Contain(".last.safetensors.99999.tmp"));
            Assert.That(File.Exists(Path.Combine(dir, ".last.safetensors.99999.tmp")), Is.False);
            Assert.That(File.Exists(Path.Combine(dir, "notes.tmp")), Is.True);
            Assert.That(File.Exists(Path.Combine(dir, RunDirectory.LockName)), Is.False,
                "the lock file goes with the run");
            Assert.That(File.Exists(Path.Combine(dir, RunDirectory.HolderName)), Is.False);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void ResumingAFinishedRunSaysSo()
    {
        var dir = Tmp("done");
        try
        {
            Assert.That(TestData.RunCli("train", "--preset", "tiny", "--max-iter", "2", "--data",
                TrainingTests.TinyDataDir, "--out", dir).rc, Is.EqualTo(0));
            AssertOneLineError(new[] { "train", "--resume", dir, "--max-iter", "2", "--data",
                TrainingTests.TinyDataDir }, "already at step 2");
        }
        finally { Directory.Delete(dir, true); }
    }

    static string TinyCheckpoint(Func<string, string> editConfig = null, Action<PvlrModel> editWeights = null)
    {
        var path = Tmp("ckpt") + ".safetensors";
        using var b = new CpuBackend();
        var cfg = PvlrConfig.Tiny();
        var model = new PvlrModel(cfg, ClassTokens.Names.Keys.Take(cfg.NumClasses).ToArray());
        model.Initialize(b, 3);
        using var store = model.P;
        editWeights?.Invoke(model);
        var list = model.P.List.Select(p => (p.Name, p.Shape, model.P.Get(p.Name)));
        var meta = new Dictionary<string, string> { ["config"] = editConfig?.Invoke(cfg.ToJson()) ?? cfg.ToJson(),
            ["classes"] = System.Text.Json.JsonSerializer.Serialize(model.Classes) };
        Safetensors.Save(path, list, meta);
        return path;
    }

    [Test]
    public void BrokenCheckpointsAreNamed()
    {
        var notJson = TinyCheckpoint(_ => "{not json");
        var zeroHeads = TinyCheckpoint(j => j.Replace("\"ClipHeads\": 2", "\"ClipHeads\": 0"));
        var nan = TinyCheckpoint(editWeights: m =>
            { var w = m.P.Get("fusion.0.bias"); w[3] = float.NaN; m.P.Set("fusion.0.bias", w); });
        try
        {
            Assert.That(File.ReadAllText(zeroHeads, Encoding.Latin1), Does.Contain("ClipHeads\\u0022: 0"),
                "the edit took");
            AssertOneLineError(new[] { "eval", "--checkpoint", notJson, "--data", TrainingTests.TinyDataDir }, notJson);
            Assert.That(AssertOneLineError(new[] { "eval", "--checkpoint", zeroHeads, "--data",
                TrainingTests.TinyDataDir }, zeroHeads), Does.Contain("ClipHeads 0"));
            Assert.That(AssertOneLineError(new[] { "eval", "--checkpoint", nan, "--data", TrainingTests.TinyDataDir },
                nan), Does.Contain("fusion.0.bias").And.Contain("element 3"));
        }
        finally
        {
            foreach (var f in new[] { notJson, zeroHeads, nan }) File.Delete(f);
        }
    }

    /// Two tensors whose data_offsets share bytes: refused, naming both.
    [Test]
    public void OverlappingSafetensorsOffsetsAreRefused()
    {
        var header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            + "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
        var ms = new MemoryStream();
        ms.Write(BitConverter.GetBytes((ulong)header.Length));
        ms.Write(Encoding.ASCII.GetBytes(header));
        ms.Write(new byte[12]);
        ms.Position = 0;
        var e = Assert.Throws<DataFormatException>(() => Safetensors.ReadHeader(ms, "x.safetensors"));
        Assert.That(e.Message, Does.Contain("a and b overlap"));
    }

    static string AnnotationCopy()
    {
        var dir = Tmp("ann");
        var src = Path.Combine(TrainingTests.TinyDataDir, WtalDataset.AnnDir);
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(src)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        return dir;
    }

    [Test]
    public void MalformedOrDuplicatedAnnotationsAreNamed()
    {
        var dir = AnnotationCopy();
        try
        {
            var names = Npy.Load(Path.Combine(dir, "videoname.npy")).AsStrings();
            names[7] = names[2];
            Npy.SaveStrings(Path.Combine(dir, "videoname.npy"), names);
            var e = Assert.Throws<DataFormatException>(() => Annotations.Load(dir));
            Assert.That(e.Message, Does.Contain($"'{names[2]}' appears twice, at indices 2 and 7"));
        }
        finally { Directory.Delete(dir, true); }
        dir = AnnotationCopy();
        try
        {
            Npy.Save(Path.Combine(dir, "labels.npy"), new float[] { 1, 2, 3 }, 3);
            var e = Assert.Throws<DataFormatException>(() => Annotations.Load(dir));
            Assert.That(e.Message, Does.Contain("labels.npy").And.Contain("object array"));
            AssertOneLineError(new[] { "score", "--annotations", dir, "--predictions", "x.csv" }, "labels.npy");
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void ACorruptReplayMetaIsNamed()
    {
        var src = Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "replay");
        var d = Tmp("replay");
        foreach (var f in Directory.GetFiles(src, "*", SearchOption.AllDirectories))
        {
            var t = Path.Combine(d, Path.GetRelativePath(src,
                f)); Directory.CreateDirectory(Path.GetDirectoryName(t)); File.Copy(f, t);
        }
        try
        {
            File.WriteAllText(Path.Combine(d, "meta.json"), "{\"heads\": ");
            AssertOneLineError(new[] { "replay", "--state", d, "--out", Tmp("rout") }, "meta.json");
        }
        finally { Directory.Delete(d, true); }
    }

    static string Hostile(string f) => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "hostile", f);

    /// Tiny files that describe huge or endless structures (make_hostile_fixtures.py) are refused at once,
    /// with the file named, in bounded memory, and without a stack overflow.
    [TestCase("laughs_labels.npy", "shared references")]
    [TestCase("selfref_labels.npy", "contains itself")]
    [TestCase("deep_labels.npy", "nested deeper than 64")]
    public void HostileObjectArraysAreRefused(string file, string why)
    {
        long before = GC.GetTotalAllocatedBytes();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var e = Assert.Throws<DataFormatException>(() => Npy.Load(Hostile(file)));
        Assert.That(e.Message, Does.Contain(file).And.Contain(why));
        Assert.That(sw.Elapsed.TotalSeconds, Is.LessThan(5));
        Assert.That(GC.GetTotalAllocatedBytes() - before, Is.LessThan(200L << 20), "bounded memory");
    }

    /// Shared references within the budget keep their sharing: a list used twice is one converted list.
    [Test]
    public void SharedListsStayShared()
    {
        var ms = new MemoryStream();
        var inner = new List<object> { "a", "b" };
        NumpyPickle.WriteObjectArray(ms, new object[] { inner, inner });
        File.WriteAllBytes(Hostile("../../shared.tmp.npy"), ms.ToArray());
        var a = (object[])Npy.Load(Hostile("../../shared.tmp.npy")).Data;
        Assert.That(a[0], Is.EqualTo(new List<object> { "a", "b" }));
        File.Delete(Hostile("../../shared.tmp.npy"));
    }

    [Test]
    public void AZeroStrideTensorIsRefusedBeforeItIsMaterialised()
    {
        long before = GC.GetTotalAllocatedBytes();
        var e = Assert.Throws<DataFormatException>(() => TorchZip.Load(Hostile("stride0.pth")));
        Assert.That(e.Message, Does.Contain("stride0.pth").And.Contain("fusion.0.bias").And.Contain("overlap"));
        Assert.That(GC.GetTotalAllocatedBytes() - before, Is.LessThan(64L << 20));
        AssertOneLineError(new[] { "export", "--checkpoint", Hostile("stride0.pth"), "--format", "safetensors",
            "--out", Tmp("x") + ".safetensors" }, "overlap");
    }

    /// A data.pkl of a .pth in a zip, from raw pickle bytes.
    static string PthOf(byte[] pickle)
    {
        var path = Tmp("pkl") + ".pth";
        using var fs = File.Create(path);
        using var zip = new System.IO.Compression.ZipArchive(fs, System.IO.Compression.ZipArchiveMode.Create);
        using (var es = zip.CreateEntry("archive/data.pkl",
            System.IO.Compression.CompressionLevel.NoCompression).Open()) es.Write(pickle);
        return path;
    }

    /// 120k dict keys i | i << 32, which all share one 32-bit hash under long.GetHashCode: read in well
    /// under a second (the keys are hashed over all their bits with a random seed), then refused as no
    /// state_dict.
    [Test]
    public void CollidingDictKeysStayFast()
    {
        var ms = new MemoryStream();
        var w = new BinaryWriter(ms);
        w.Write((byte)0x80);
        w.Write((byte)2);
        w.Write((byte)'}');
        w.Write((byte)'(');
        for (long i = 1; i <= 120_000; i++)
        {
            w.Write((byte)0x8a);
            w.Write((byte)8);
            w.Write(i | (i << 32));
            w.Write((byte)'K');
            w.Write((byte)0);
        }
        w.Write((byte)'u');
        w.Write((byte)'.');
        var path = PthOf(ms.ToArray());
        try
        {
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var e = Assert.Throws<DataFormatException>(() => TorchZip.Load(path));
            Assert.That(sw.Elapsed.TotalSeconds, Is.LessThan(3), "a quadratic dict takes a minute here");
            Assert.That(e.Message, Does.Contain(path));
        }
        finally { File.Delete(path); }
    }

    /// Tuples nested 200,000 deep in a .pth: read iteratively, refused as no state_dict; the process lives.
    [Test]
    public void DeeplyNestedPthDoesNotOverflowTheStack()
    {
        var ms = new MemoryStream();
        ms.Write(new byte[] { 0x80, 2, (byte)'}', (byte)'X', 1, 0, 0, 0, (byte)'k' });
        for (int i = 0; i < 200_000; i++) ms.WriteByte((byte)'(');
        for (int i = 0; i < 200_000; i++) ms.WriteByte((byte)'t');
        ms.Write(new byte[] { (byte)'s', (byte)'.' });
        var path = PthOf(ms.ToArray());
        try
        {
            var e = Assert.Throws<DataFormatException>(() => TorchZip.Load(path));
            Assert.That(e.Message, Does.Contain(path));
            AssertOneLineError(new[] { "eval", "--checkpoint", path }, path);
        }
        finally { File.Delete(path); }
    }
}
