// PVLR's replay: ONE training step recorded from a PyTorch implementation of PVLR (the fixture layout of
// ../shared/fixtures/README.md, also written by benchmarks/reference/pvlr_ref.py dump):
//   weights/<state_dict name>.npy   every parameter (torch layouts: conv (Cout,Cin,K), linear (out,in))
//   inputs/features.npy (B,T,F), labels.npy (B,C), clip.npy (B,T,D);
//   inputs/actiontoken.npy (C,L) CLIP token ids, actiondict.npy (C,L,W) their embeddings (optional:
//       derived from clipmodel.token_embedding.weight when absent)
//   random/<tag>.npy                dropout masks (channel-first (B,C,T) or time-major) and eps (P,B,T,D)
//   mining/<easy|hard>_<act|bkg>_idx.npy   (B,k) snippet indices
//   mining/attention.npy            (B,T) the attention the dump mined (optional; without it the replay's
//                                   own attention is mined)
//   meta.json                       random_order, heads, mask_layout (channel_first, the default, or
//                                   time_major), and optional hyper-parameters
// and writes losses.json (the same keys, plus total_loss) and grads/<name>.npy for every trainable
// parameter that receives a gradient. Every dimension comes from the dump's shapes. The step itself
// uses the dump's mining indices; the project's own mining (Methods/Pvlr/Mining.cs, in the config's tie order)
// is also run on the dump's attention and dropout mask, and its picks are compared with the dump's
// (mining.json).
using System.Text.Json;
using PvlrKernels.Data;
using PvlrKernels.Engine;
using PvlrKernels.Train;

namespace PvlrKernels.Methods.Pvlr;

public static class PvlrReplay
{
    /// The dimensions of the dump, from its shapes; hyper-parameters from meta.json where given.
    public static PvlrConfig ConfigOf(ReplayDump dump)
    {
        string dir = dump.Dir;
        var meta = dump.Meta;
        int[] S(string name) => dump.Load(Path.Combine("weights", name + ".npy")).Shape;
        var feats = dump.Load("inputs/features.npy").Shape;
        var labels = dump.Load("inputs/labels.npy").Shape;
        if (feats.Length != 3)
            throw new ShapeException($"replay dump {dir}: inputs/features.npy must be (B,T,F), got "
                + $"{Tensor.ShapeStr(feats)}");
        int layers = Directory.GetFiles(Path.Combine(dir, "weights"),
            "clipmodel.transformer.resblocks.*.ln_1.weight.npy").Length;
        int Meta(string k, int dflt) => meta.TryGetProperty(k, out var v) ? v.GetInt32() : dflt;
        var cfg = PvlrConfig.FromShapes(S, layers, labels[1], "replay", meta.TryGetProperty("heads",
            out var h) ? h.GetInt32() : (int?)null);
        cfg.BatchSize = feats[0];
        cfg.MaxSeqLen = feats[1];
        cfg.KEasy = dump.Load("mining/easy_act_idx.npy").Shape[1];
        cfg.KHard = dump.Load("mining/hard_act_idx.npy").Shape[1];
        cfg.NumSamples = Meta("num_samples", dump.Load("random/eps.npy").Shape[0]);
        cfg.TrainTopK = Meta("train_topk", cfg.TrainTopK); cfg.BigM = Meta("M", cfg.BigM); cfg.SmallM = Meta("m",
            cfg.SmallM);
        if (meta.TryGetProperty("eps_std", out var e)) cfg.EpsStd = e.GetSingle();
        if (meta.TryGetProperty("alpha",
            out var a)) cfg.Alpha = a.EnumerateArray().Select(x => x.GetSingle()).ToArray();
        if (feats[2] != cfg.FeatDim)
            throw new ShapeException(
                $"replay dump {dir}: features have width {feats[2]}, fusion.0.weight {cfg.FeatDim}");
        return cfg;
    }

    /// Runs the step. `configure` may change the savings switches (TruncateText, and with it SharePromptPrefix;
    /// SkipAeDecoder).
    public static ReplayResult Run(string dir, Backend backend, Action<PvlrConfig> configure = null)
    {
        using var dump = new ReplayDump(dir);
        var cfg = dump.Config(_ => ConfigOf(dump));
        configure?.Invoke(cfg);
        var res = new ReplayResult { Config = cfg, MiningTies = cfg.MiningTies.ToString().ToLowerInvariant() };

        // CLIP's own class tokens: class c's [SOT .. EOT] ids become rows c*L+p of a token table built from
        // actiondict, so the prompt positions (model/wstal.py:125-144) follow the dump's tokenization exactly.
        var tok = dump.Load("inputs/actiontoken.npy");
        int c = cfg.NumClasses, l = tok.Shape[^1], w = cfg.ClipWidth;
        if (tok.Count != (long)c * l)
            throw new ShapeException($"replay dump {dir}: actiontoken {Tensor.ShapeStr(tok.Shape)} does not hold {c} "
                + $"classes");
        var ids = tok.AsDouble("actiontoken");
        float[] table;
        if (File.Exists(Path.Combine(dir, "inputs/actiondict.npy")))
        {
            var ad = dump.Load("inputs/actiondict.npy");
            if (ad.Count != (long)c * l * w)
                throw new ShapeException($"replay dump {dir}: actiondict {Tensor.ShapeStr(ad.Shape)}, expected ({c}, "
                    + $"{l}, {w})");
            table = ad.AsFloat("actiondict");
        }
        else
        {
            var te = dump.Load("weights/clipmodel.token_embedding.weight.npy").AsFloat();
            table = new float[c * l * w];
            for (int i = 0; i < c * l; i++) Array.Copy(te, (long)ids[i] * w, table, (long)i * w, w);
            res.Notes.Add("actiondict derived from clipmodel.token_embedding.weight");
        }
        var tokens = new int[c][];
        for (int i = 0; i < c; i++)
        {
            // argmax, first maximum
            int eot = 0;
            for (int p = 1; p < l; p++) if (ids[i * l + p] > ids[i * l + eot]) eot = p;
            tokens[i] = Enumerable.Range(0, eot + 1).Select(p => i * l + p).ToArray();
        }
        var model = new PvlrModel(cfg, Enumerable.Range(0, c).Select(i => $"class{i}").ToArray(), (tokens, c * l));
        using var store = model.P;
        store.Allocate(backend);
        foreach (var p in model.P.List)
        {
            if (p.Name == "clipmodel.token_embedding.weight")
            {
                model.P.Set(p.Name, table);
                continue;
            }
            var a = dump.Load(Path.Combine("weights", p.Name + ".npy"));
            if (!a.Shape.SequenceEqual(p.Shape))
                throw new ShapeException($"replay dump {dir}: weights/{p.Name}.npy has shape "
                    + $"{Tensor.ShapeStr(a.Shape)}, the model expects {Tensor.ShapeStr(p.Shape)}");
            model.P.Set(p.Name, a.AsFloat(p.Name));
        }
        var known = model.P.List.Select(p => p.Name).ToHashSet();
        var extra = Directory.GetFiles(Path.Combine(dir, "weights"),
            "*.npy").Select(f => Path.GetFileNameWithoutExtension(f)).Where(n => !known.Contains(n)
                && n != "clipmodel.token_embedding.weight").ToList();
        if (extra.Count > 0) res.Notes.Add($"weights not used by the text/snippet model: {string.Join(", ", extra)}");

        var rng = dump.Random();
        var mining = new Dictionary<string, float[]>();
        foreach (var k in new[] { "easy_act", "easy_bkg", "hard_act", "hard_bkg" })
            mining[k] = dump.Load($"mining/{k}_idx.npy").AsFloat(k);

        using var g = new Graph(backend, model.P, rng) { Training = true, TrainWinogradTile = cfg.TrainWinogradTile };
        int b = cfg.BatchSize, t = cfg.MaxSeqLen;
        var x = g.FromHost(dump.Features.AsFloat("features"), b, t, cfg.FeatDim);
        var clip = dump.Load("inputs/clip.npy");
        if (clip.Count != (long)b * t * cfg.EmbedDim)
            throw new ShapeException($"replay dump {dir}: clip.npy {Tensor.ShapeStr(clip.Shape)}, expected ({b}, "
                + $"{t}, {cfg.EmbedDim})");
        var z = g.FromHost(clip.AsFloat("clip"), b, t, cfg.EmbedDim);
        ReplayDump.Step(g, model.P, rng, () =>
        {
            var o = model.Forward(g, x);
            var L = PvlrLoss.Compute(g, cfg, o, dump.Labels.AsFloat("labels"), z, mining);
            CompareMining(dump, cfg, g.ToHost(o.Attn), mining, res);
            return L;
        }, res, cfg.SkipAeDecoder ? " (AE_d is skipped in training; it feeds no loss)" : "");
        return res;
    }

    /// Runs Mining.Easy/Hard on the dump's attention (float64, mining/attention.npy) or else on the replay's
    /// own (float32), with the dump's easy-mining dropout mask, and counts the picks equal to the dump's.
    static void CompareMining(ReplayDump dump, PvlrConfig cfg, float[] ownAttention, Dictionary<string, float[]> dumped,
        ReplayResult res)
    {
        string dir = dump.Dir;
        int b = cfg.BatchSize, t = cfg.MaxSeqLen;
        var mask = dump.Load("random/easy_mining.npy");
        if (mask.Count != (long)b * t)
            throw new ShapeException($"replay dump {dir}: random/easy_mining.npy {Tensor.ShapeStr(mask.Shape)}, "
                + $"expected ({b}, {t})");
        Dictionary<string, float[]> ours;
        if (File.Exists(Path.Combine(dir, "mining", "attention.npy")))
        {
            var att = dump.Load("mining/attention.npy");
            if (att.Count != (long)b * t)
                throw new ShapeException($"replay dump {dir}: mining/attention.npy {Tensor.ShapeStr(att.Shape)}, "
                    + $"expected ({b}, {t})");
            ours = Mining.All(att.AsDouble("attention"), mask.AsDouble("easy_mining"), cfg, b, t);
            res.MiningSource = "the dump's float64 attention";
        }
        else
        {
            ours = Mining.All(ownAttention, mask.AsFloat("easy_mining"), cfg, b, t);
            res.MiningSource = "the replay's float32 attention";
        }
        foreach (var (k, want) in dumped)
        {
            var got = ours[k];
            int same = 0;
            for (int i = 0; i < want.Length; i++) if (got[i] == want[i]) same++;
            res.Mining[k] = (same, want.Length);
        }
    }
}
