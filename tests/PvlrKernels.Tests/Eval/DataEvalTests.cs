// Loaders on the real THUMOS14 annotations, the evaluator on hand-built cases with known AP,
// proposals on small hand-built sequences, and clear errors on malformed inputs.
using PvlrKernels.Util;
using System.Runtime.InteropServices;
using System.Text;
using NUnit.Framework;
using PvlrKernels.Data;
using PvlrKernels.Eval;

namespace PvlrKernels.Tests;

public sealed class DataEvalTests
{
    static string AnnDir => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "thumos14");
    static string Tmp() { var d = Path.Combine(Path.GetTempPath(),
        "pvlr-test-" + Guid.NewGuid().ToString("N")[..8]); Directory.CreateDirectory(d); return d; }

    [Test]
    public void RealAnnotationsLoad()
    {
        var a = Annotations.Load(AnnDir);
        Assert.That(a.Classes, Has.Length.EqualTo(20));
        Assert.That(a.Classes[0], Is.EqualTo("BaseballPitch"));
        Assert.That(a.Videos, Has.Count.EqualTo(412));
        Assert.That(a.Train.Count(), Is.EqualTo(200));
        Assert.That(a.Test.Count(), Is.EqualTo(212));
        Assert.That(a.Ambiguous.Values.Sum(l => l.Count), Is.EqualTo(99));
        Assert.That(a.Videos[0].Name, Does.StartWith("video_validation_"));
        Assert.That(a.Test.All(v => v.Segments.Length > 0), Is.True);
        var gt = Evaluator.GroundTruth(a);
        Assert.That(gt.Count, Is.EqualTo(a.Test.Sum(v => v.Segments.Length)));
        Assert.That(gt.All(g => g.End >= g.Start && g.Label is >= 0 and < 20), Is.True);
    }

    [Test]
    public void RoundHalfToEvenInGroundTruth()
    {
        // 1.6 s * 25/16 = 2.5 -> 2 (half to even); 2.24 s -> 3.5 -> 4
        Assert.That(Math.Round(1.6 * Evaluator.SnippetsPerSecond, MidpointRounding.ToEven), Is.EqualTo(2));
        Assert.That(Math.Round(2.24 * Evaluator.SnippetsPerSecond, MidpointRounding.ToEven), Is.EqualTo(4));
    }

    static List<GtSegment> Gt => new() { new("v1", 10, 20, 0), new("v1", 40, 50, 0), new("v2", 0, 10, 0), new("v2", 5,
        15, 1) };

    [Test]
    public void PerfectPredictionsGiveApOne()
    {
        var preds = Gt.Select((g, i) => new Detection(g.Video, g.Start, g.End, g.Label, 1.0 - 0.1 * i)).ToList();
        var r = Evaluator.Evaluate(Gt, preds, 2);
        Assert.That(r.Map, Is.All.EqualTo(100.0).Within(1e-9));
    }

    [Test]
    public void KnownApWithDuplicatesAndFalsePositives()
    {
        // class 0 has 3 GT. Ranked: TP(v1 10-20), duplicate of it (FP), FP in v3 (no GT), TP(v2 0-10).
        // precision 1, 1/2, 1/3, 2/4; recall 1/3, 1/3, 1/3, 2/3 -> interpolated AP = 1/3*1 + 1/3*0.5 = 0.5
        var preds = new List<Detection> { new("v1", 10, 20, 0, 0.9), new("v1", 10, 20, 0, 0.8), new("v3", 0, 5, 0,
            0.7), new("v2", 0, 10, 0, 0.6) };
        var ap = Evaluator.ApDetection(Gt.Where(g => g.Label == 0).ToList(), preds, new[] { 0.5 });
        Assert.That(ap[0], Is.EqualTo(0.5).Within(1e-12));
        // empty class (no predictions) -> 0; mAP averages over both classes
        var r = Evaluator.Evaluate(Gt, preds, 2, new[] { 0.5 });
        Assert.That(r.Map[0], Is.EqualTo(25.0).Within(1e-9));
    }

    [Test]
    public void TiouThresholdAndTies()
    {
        // prediction [10,18] vs GT [10,20]: tIoU 0.8 -> TP at 0.8, FP at 0.9
        var g = new List<GtSegment> { new("v", 10, 20, 0) };
        var ap = Evaluator.ApDetection(g, new List<Detection> { new("v", 10, 18, 0, 1) }, new[] { 0.8, 0.9 });
        Assert.That(ap, Is.EqualTo(new[] { 1.0, 0.0 }));
        // tied scores between two TPs of the same status do not change AP
        var g2 = new List<GtSegment> { new("v", 0, 10, 0), new("v", 20, 30, 0) };
        var a1 = Evaluator.ApDetection(g2, new List<Detection> { new("v", 0, 10, 0, 0.5), new("v", 20, 30, 0, 0.5) },
            new[] { 0.5 });
        var a2 = Evaluator.ApDetection(g2, new List<Detection> { new("v", 20, 30, 0, 0.5), new("v", 0, 10, 0, 0.5) },
            new[] { 0.5 });
        Assert.That(a1[0], Is.EqualTo(1.0));
        Assert.That(a2[0], Is.EqualTo(a1[0]));
    }

    [Test]
    public void EqualTiouWalksTheLaterGtFirst()
    {
        // [10,20] has tIoU 1/3 with both GT; it takes the later one (GT 1), so [15,25], whose only match
        // is GT 1, becomes a false positive: AP = 0.5 (it would be 1 had the earlier GT been taken)
        var g = new List<GtSegment> { new("v", 5, 15, 0), new("v", 15, 25, 0) };
        var ap = Evaluator.ApDetection(g, new List<Detection> { new("v", 10, 20, 0, 0.9), new("v", 15, 25, 0, 0.8) },
            new[] { 0.3 });
        Assert.That(ap[0], Is.EqualTo(0.5).Within(1e-12));
        // a 0/0 tIoU (zero-length prediction on a zero-length GT) sorts last and, as in numpy, is not
        // below the threshold: it matches
        var z = Evaluator.ApDetection(new List<GtSegment> { new("v", 5, 5, 0) }, new List<Detection> { new("v", 5, 5,
            0, 1) }, new[] { 0.5 });
        Assert.That(z[0], Is.EqualTo(1.0));
    }

    [Test]
    public void ClassificationMapKnownValue()
    {
        // one class, scores rank pos, neg, pos -> AP = (1/1 + 2/3)/2, with the precisions summed in float32
        // as classificationMAP.py does: (1f + 0.6666667f) / 2.0
        var m = Evaluator.ClassificationMap(new[] { new[] { 0.9f }, new[] { 0.8f }, new[] { 0.7f } },
            new[] { new[] { 1f }, new[] { 0f }, new[] { 1f } });
        Assert.That(m, Is.EqualTo(100 * (double)(1f + 2f / 3f) / 2).Within(1e-12));
    }

    [Test]
    public void SoftNmsDecaysOverlapsWithPlusOneConvention()
    {
        var boxes = new List<(double, double, double)> { (0.9, 0, 9), (0.8, 0, 9), (0.7, 20, 29) };
        var o = Proposals.SoftNms(boxes, 0.2);
        Assert.That(o.Select(b => b.s), Is.EqualTo(new[] { 0.0, 20.0, 0.0 }));   // identical box decays by exp(-1/0.2)
        Assert.That(o[2].score, Is.EqualTo(0.8 * Math.Exp(-1 / 0.2)).Within(1e-12));
        Assert.That(o[1].score, Is.EqualTo(0.7).Within(1e-12));                 // disjoint: inter = max(9-20+1, 0) = 0
    }

    /// The video score's top-k mean, from a heap, is bit for bit what sorting each column and summing its k
    /// largest (largest first) gives: with ties, signed zeros, NaN (below every number, as Array.Sort has
    /// it) and k from 1 to t.
    [Test]
    public void TopKMeanIsTheSortedColumnsLargestKSummedLargestFirst()
    {
        var rng = new Random(7);
        for (int trial = 0; trial < 400; trial++)
        {
            int t = 1 + rng.Next(120), c1 = 1 + rng.Next(4), k = trial % 4 == 0 ? t : 1 + rng.Next(t);
            var lam = new double[t * c1];
            for (int i = 0; i < lam.Length; i++)
                lam[i] = rng.Next(10) switch { 0 => double.NaN, 1 => -0.0, 2 => 0.0, 3 => Math.Round(rng.NextDouble(),
                    1), _ => rng.NextDouble() * 4 - 2 };
            for (int c = 0; c < c1; c++)
            {
                var col = Enumerable.Range(0, t).Select(i => lam[i * c1 + c]).ToArray();
                Array.Sort(col);
                double want = 0;
                foreach (var v in col.Reverse().Take(k)) want += v;
                want /= k;
                double got = Proposals.TopKMean(lam, t, c1, c, new double[k]);
                Assert.That(BitConverter.DoubleToInt64Bits(got), Is.EqualTo(BitConverter.DoubleToInt64Bits(want)),
                    $"trial {trial}: t={t}, k={k}, column {c}: {got} vs {want}");
            }
        }
    }

    static void CheckSoftNms(string dir)
    {
        var boxes = Npy.Load(Path.Combine(dir, "boxes.npy")).AsDouble(); var want = Npy.Load(Path.Combine(dir,
            "expected.npy")).AsDouble();
        var lengths = Npy.Load(Path.Combine(dir, "lengths.npy")).AsDouble();
        int at = 0, tiedLists = 0;
        foreach (var len in lengths)
        {
            var list = Enumerable.Range(at, (int)len).Select(i => (boxes[4 * i + 1], boxes[4 * i + 2],
                boxes[4 * i + 3])).ToList();
            if (list.Select(b => b.Item1).Distinct().Count() < list.Count) tiedLists++;
            var got = Proposals.SoftNms(list, 0.2);
            for (int i = 0; i < got.Count; i++)
            {
                int r = 4 * (at + i);
                Assert.That((got[i].s, got[i].e), Is.EqualTo((want[r + 2], want[r + 3])),
                    $"list at row {at}, emitted box {i}");
                Assert.That(got[i].score, Is.EqualTo(want[r + 1]).Within(1e-15), $"list at row {at}, emitted box {i}");
            }
            at += (int)len;
        }
        Assert.That(tiedLists, Is.GreaterThan(20), "the fixture must hold tied scores");
    }

    /// Soft-NMS on lists with tied scores emits the boxes in the order, and with the scores, of
    /// wsad_utils.py soft_nms: np.argmax's first maximum, and the row swap that moves the first row into
    /// the emitted row's place (make_softnms_fixture.py).
    [Test]
    public void SoftNmsEqualsTheCommittedReferenceOnTies() =>
        CheckSoftNms(Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "softnms"));

    [Test]
    public void SoftNmsEqualsTheLiveReferenceWhenPythonIsInstalled()
    {
        ReferencePython.WithFixture("make_softnms_fixture.py", "--seed 21 --lists 200", CheckSoftNms);
    }

    [Test]
    public void ProposalsFromHandBuiltCas()
    {
        // T = 20, 2 classes (+bg): class 1 active on snippets 5..9, attention high there.
        int t = 20, c1 = 3;
        var cas = new float[t * c1];
        var attn = new float[t];
        for (int i = 0; i < t; i++)
        {
            attn[i] = i is >= 5 and <= 9 ? 0.95f : 0.05f;
            cas[i * c1 + 1] = i is >= 5 and <= 9 ? 3f : 0.1f;
            cas[i * c1 + 2] = 0.5f;
        }
        var (dets, scores) = Proposals.Generate("v", cas, attn, t, 2, new ProposalConfig());
        Assert.That(scores[1], Is.GreaterThan(scores[0]));
        Assert.That(dets, Is.Not.Empty);
        Assert.That(dets.All(d => d.Label == 1), Is.True);
        var top = dets.OrderByDescending(d => d.Score).First();
        Assert.That((top.Start, top.End), Is.EqualTo((5.0, 10.0)));            // t_end = last + 1
        // an ambiguous segment covering it removes those proposals
        var (filtered, _) = Proposals.Generate("v", cas, attn, t, 2, new ProposalConfig(),
            new List<(double, double)> { (5 / Evaluator.SnippetsPerSecond, 10 / Evaluator.SnippetsPerSecond) });
        Assert.That(filtered.Any(d => d.Start == 5 && d.End == 10), Is.False);
    }

    // ---------------- malformed inputs ----------------
    [Test]
    public void NpyRoundTripAndTruncation()
    {
        var d = Tmp();
        var p = Path.Combine(d, "a.npy");
        Npy.Save(p, new float[] { 1, 2, 3, 4, 5, 6 }, 2, 3);
        var a = Npy.Load(p);
        Assert.That(a.Shape, Is.EqualTo(new[] { 2, 3 })); Assert.That(a.AsFloat(), Is.EqualTo(new float[] { 1, 2, 3,
            4, 5, 6 }));
        var bytes = File.ReadAllBytes(p);
        File.WriteAllBytes(p, bytes[..^5]);
        var ex = Assert.Throws<DataFormatException>(() => Npy.Load(p));
        Assert.That(ex.Message, Does.Contain(p).And.Contain("truncated"));
        File.WriteAllBytes(p, Encoding.ASCII.GetBytes("not a numpy file at all"));
        Assert.That(Assert.Throws<DataFormatException>(() => Npy.Load(p)).Message,
            Does.Contain(p).And.Contain("magic"));
        var lying = Npy.Encode("<f4", new[] { 1000000, 1000 }, new byte[16]);
        File.WriteAllBytes(p, lying);
        Assert.That(Assert.Throws<DataFormatException>(() => Npy.Load(p)).Message,
            Does.Contain("only 16 bytes follow"));
    }

    /// Pickled payloads from 64 KiB on (the per-video features of an object .npy) are read straight into
    /// float storage, which a float32 ndarray then takes as its array: the values, odd-length bytes and a
    /// truncated payload behave as with small ones.
    [Test]
    public void ObjectArraysOfLargeArraysRoundTrip()
    {
        var r = new Random(3);
        var items = new[] { (new[] { 5000, 16 }, new float[80000]), (new[] { 3, 16 }, new float[48]) };
        foreach (var (_, data) in items) for (int i = 0; i < data.Length; i++) data[i] = (float)r.NextDouble() - 0.5f;
        var d = Tmp();
        var p = Path.Combine(d, "feats.npy");
        AtomicFile.Write(p, st => NumpyPickle.WriteObjectArrayOfFloat32(st, items));
        var back = (object[])Npy.Load(p).Data;
        for (int k = 0; k < items.Length; k++)
        {
            var nd = (NpyArray)back[k];
            Assert.That(nd.Shape, Is.EqualTo(items[k].Item1));
            Assert.That(nd.AsFloat(), Is.EqualTo(items[k].Item2));
        }
        var text = new string('a', 65537);                                                  // not a multiple of 4
        var q = Path.Combine(d, "bytes.npy");
        AtomicFile.Write(q, st => NumpyPickle.WriteObjectArray(st, new object[] { Encoding.UTF8.GetBytes(text) }));
        Assert.That(NpyArray.PyText(((object[])Npy.Load(q).Data)[0]), Is.EqualTo(text));
        File.WriteAllBytes(p, File.ReadAllBytes(p)[..200000]);                              // inside the large payload
        Assert.That(Assert.Throws<DataFormatException>(() => Npy.Load(p)).Message,
            Does.Contain(p).And.Contain("exceeds"));
    }

    /// safetensors values stream in chunks of the caller's buffer (a checkpoint load uploads 1M at a time):
    /// F32, F16 and BF16 entries give the same floats chunked as whole, and an entry's offsets are checked
    /// against the file before any value is read.
    [Test]
    public void SafetensorsStreamsValuesInChunks()
    {
        var f32 = Enumerable.Range(0, 23).Select(i => i * 0.37f - 3f).ToArray();
        var f16 = Enumerable.Range(0, 19).Select(i => (Half)(i * 0.5f - 4f)).ToArray();
        var bf16 = Enumerable.Range(0,
            17).Select(i => (ushort)(BitConverter.SingleToInt32Bits(i * 1.5f - 7f) >> 16)).ToArray();
        var data = new List<byte>();
        string Entry(string n, string dt, int count, byte[] bytes)
        {
            string e = $"\"{n}\": {{\"dtype\": \"{dt}\", \"shape\": [{count}], "
                + $"\"data_offsets\": [{data.Count}, {data.Count + bytes.Length}]}}";
            data.AddRange(bytes);
            return e;
        }
        var header = "{" + string.Join(", ", Entry("a", "F32", 23, MemoryMarshal.AsBytes(f32.AsSpan()).ToArray()),
            Entry("h", "F16", 19, MemoryMarshal.AsBytes(f16.AsSpan()).ToArray()),
            Entry("b", "BF16", 17, MemoryMarshal.AsBytes(bf16.AsSpan()).ToArray())) + "}";
        byte[] File(string h)
        {
            var hb = Encoding.UTF8.GetBytes(h);
            return BitConverter.GetBytes((ulong)hb.Length).Concat(hb).Concat(data).ToArray();
        }
        var file = new MemoryStream(File(header));
        var (whole, _) = Safetensors.Read(file, "t.safetensors");
        Assert.That(whole["a"].data, Is.EqualTo(f32));
        Assert.That(whole["h"].data, Is.EqualTo(f16.Select(x => (float)x).ToArray()));
        Assert.That(whole["b"].data, Is.EqualTo(bf16.Select(u => BitConverter.Int32BitsToSingle(u << 16)).ToArray()));
        var (entries, _) = Safetensors.ReadHeader(file, "t.safetensors");
        foreach (var e in entries)
        {
            var got = new float[e.Count];
            var buffer = new float[5];
            int chunks = 0;
            Safetensors.ReadValues(file, e, buffer, (v, at) => { Assert.That(v.Length,
                Is.LessThanOrEqualTo(5)); v.CopyTo(got.AsSpan((int)at)); chunks++; });
            Assert.That(got, Is.EqualTo(whole[e.Name].data), e.Name);
            Assert.That(chunks, Is.EqualTo((e.Count + 4) / 5), e.Name);
        }
        var bad = header.Replace("[0, 92]",
            "[0, 96]");                                   // a's end moved: no longer 23 F32 values
        Assert.That(bad, Is.Not.EqualTo(header));
        Assert.That(Assert.Throws<DataFormatException>(() => Safetensors.ReadHeader(new MemoryStream(File(bad)),
            "bad.safetensors")).Message,
            Does.Contain("bad.safetensors").And.Contain("tensor a"));
    }

    [Test]
    public void PickleRefusesForeignGlobals()
    {
        // protocol 2: GLOBAL os.system, ('echo hi',), REDUCE, STOP
        var evil = new MemoryStream();
        evil.Write(new byte[] { 0x80,
            2 }); evil.Write(Encoding.ASCII.GetBytes("cos\nsystem\n")); evil.WriteByte((byte)'U'); evil.WriteByte(7);
        evil.Write(Encoding.ASCII.GetBytes("echo hi"));
        evil.WriteByte(0x85);
        evil.WriteByte((byte)'R');
        evil.WriteByte((byte)'.');
        evil.Position = 0;
        var ex = Assert.Throws<DataFormatException>(() => new Unpickler(evil, "evil.pkl").Load());
        Assert.That(ex.Message, Does.Contain("evil.pkl").And.Contain("os.system").And.Contain("allowlist"));
        var bad = new MemoryStream(new byte[] { 0x80, 2, 0xff });
        Assert.That(Assert.Throws<DataFormatException>(() => new Unpickler(bad, "x.pkl").Load()).Message,
            Does.Contain("opcode"));
    }

    /// `gen-demo --videos N` keeps both splits in their real proportion (the annotations list all 200
    /// validation videos first, so the first N alone had no test video), each split's first videos.
    [Test]
    public void DemoDataOfFewVideosKeepsBothSplits()
    {
        var dir = Tmp();
        DemoData.WriteAnnotations(dir);
        var all = Annotations.Load(dir).Videos;
        foreach (var (n, train, test) in new[] { (12, 6, 6), (2, 1, 1), (1, 1, 0) })
        {
            var root = Tmp();
            Assert.That(DemoData.Generate(root, new DemoOptions { FeatDim = 16, ClipDim = 8, MaxVideos = n,
                MaxLength = 8 }), Is.EqualTo(n));
            var ds = WtalDataset.Load(root);
            Assert.That(ds.Train.Select(v => v.Name).ToArray(),
                Is.EqualTo(all.Where(v => v.Subset == "validation").Take(train).Select(v => v.Name).ToArray()),
                $"{n} videos");
            Assert.That(ds.Test.Select(v => v.Name).ToArray(),
                Is.EqualTo(all.Where(v => v.Subset == "test").Take(test).Select(v => v.Name).ToArray()), $"{n} videos");
            foreach (var v in ds.Ann.Videos)                                 // every per-video file trimmed alike
            {
                var orig = all.Single(x => x.Name == v.Name);
                Assert.That((v.Subset, v.Duration, v.Labels, v.Segments), Is.EqualTo((orig.Subset, orig.Duration,
                    orig.Labels, orig.Segments)), v.Name);
            }
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => DemoData.Pick(all, 0));
    }

    [Test]
    public void DemoDataRoundTripsAndBadDataIsNamed()
    {
        var root = Tmp();
        int n = DemoData.Generate(root, new DemoOptions { FeatDim = 16, ClipDim = 8, MaxVideos = 412, MaxLength = 24 });
        var ds = WtalDataset.Load(root);
        Assert.That(ds.Ann.Videos, Has.Count.EqualTo(n));
        Assert.That(ds.FeatureDim, Is.EqualTo(16));
        Assert.That(ds.ClipDim, Is.EqualTo(8));
        Assert.That(ds.Train.All(v => v.T is > 0 and <= 24 && v.Features.Length == v.T * 16), Is.True);
        // the object arrays our writer produces read back identically (annotations too)
        var segs = (object[])Npy.Load(Path.Combine(root, WtalDataset.AnnDir, "segments.npy")).Data;
        Assert.That(segs.Length, Is.EqualTo(n));

        // a NaN feature names the file and the video
        var v = ds.Ann.Videos[3];
        var feats = ds.Ann.Videos.Select(x => (new[] { x.T, 16 }, x.Features)).ToList();
        feats[3].Features[5] = float.NaN;
        AtomicFile.Write(Path.Combine(root, WtalDataset.FeatFile), s => NumpyPickle.WriteObjectArrayOfFloat32(s,
            feats));
        var ex = Assert.Throws<DataFormatException>(() => WtalDataset.Load(root));
        Assert.That(ex.Message, Does.Contain(v.Name).And.Contain("non-finite"));
        // a shape mismatch (wrong width) names the video
        feats[3] = (new[] { v.T, 12 }, new float[v.T * 12]);
        AtomicFile.Write(Path.Combine(root, WtalDataset.FeatFile), s => NumpyPickle.WriteObjectArrayOfFloat32(s,
            feats));
        Assert.That(Assert.Throws<DataFormatException>(() => WtalDataset.Load(root)).Message,
            Does.Contain(v.Name).And.Contain("width 12"));
        // an empty video
        feats[3] = (new[] { 0, 16 }, Array.Empty<float>());
        AtomicFile.Write(Path.Combine(root, WtalDataset.FeatFile), s => NumpyPickle.WriteObjectArrayOfFloat32(s,
            feats));
        Assert.That(Assert.Throws<DataFormatException>(() => WtalDataset.Load(root)).Message,
            Does.Contain(v.Name).And.Contain("empty"));
        // a missing CLIP file of a training video
        feats[3] = (new[] { v.T, 16 }, new float[v.T * 16]);
        AtomicFile.Write(Path.Combine(root, WtalDataset.FeatFile), s => NumpyPickle.WriteObjectArrayOfFloat32(s,
            feats));
        var train = ds.Train[0];
        File.Delete(Path.Combine(root, "Thumos14_CLIP", "train", train.Name + ".npy"));
        Assert.That(Assert.Throws<FileNotFoundException>(() => WtalDataset.Load(root)).Message,
            Does.Contain(train.Name));
        // evaluation reads no CLIP features at all
        var noClip = WtalDataset.Load(root, clip: false);
        Assert.That(noClip.ClipDim, Is.EqualTo(0));
        Assert.That(noClip.Ann.Videos.All(x => x.Clip == null), Is.True);
        Assert.That(noClip.Test.Select(x => x.Features), Is.EqualTo(ds.Test.Select(x => x.Features)));
    }

    [Test]
    public void RandomPerturbMatchesTheReferenceRule()
    {
        var r = new Random(5);
        Assert.That(BatchSampler.RandomPerturb(320, 320, r), Is.EqualTo(Enumerable.Range(0, 320)));
        var up = BatchSampler.RandomPerturb(10, 32, r);                 // short video: repeated indices, no padding
        Assert.That(up, Has.Length.EqualTo(32));
        Assert.That(up.All(i => i is >= 0 and < 10), Is.True);
        Assert.That(up.Zip(up.Skip(1)).All(p => p.Second >= p.First), Is.True);
        var down = BatchSampler.RandomPerturb(1000, 32, r);
        for (int i = 0; i < 31; i++) Assert.That(down[i], Is.InRange(i * 1000 / 32, (i + 1) * 1000 / 32));
    }
}
