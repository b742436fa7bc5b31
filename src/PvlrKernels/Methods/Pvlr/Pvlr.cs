// The PVLR network (PVLR's model/wstal.py, model/prob_encoder.py) on the engine's ops, time-major throughout:
//   X (B,T,F) -> RGB V | flow Fl (B,T,F/2)
//   two CO2-Net cross-modal attention modules  -> attention A (B,T,1), filtered features (B,T,F/2)
//   fusion, fusion2 Conv3 F->F                  -> feat (B,T,F), feat_final
//   Gaussian snippet encoder                    -> mu, var = ReLU(.) (B,T,D) (var in training only)
//   CLIP text tower on the learnable prompt     -> text (C+1, D)
//   CAS: train <mean_n emb, text>/8 (mean-first form), test cos(mu, text)/0.03      (B,T,C+1)
// Parameter names are the PyTorch state_dict names of the original.
using PvlrKernels.Engine;

using PvlrKernels.Model;

namespace PvlrKernels.Methods.Pvlr;

public sealed class PvlrOutputs
{
    public Tensor Cas, Attn, VAttn, FAttn, Feat, Mu, Var, Text;
}

public sealed partial class PvlrModel
{
    public readonly PvlrConfig Cfg;
    public readonly ParameterStore P = new();
    public readonly string[] Classes;
    readonly int[][] tokens;
    readonly int vocab;
    // positions per prompt row in the attention layout (13 with truncation, 77 without)
    readonly int promptLen;
    // The text tower's token rows ("nodes"). With SharePromptPrefix, one node per distinct prefix of a
    // prompt row up to its EOT: under the causal mask a position's state depends only on the tokens up to
    // it, so SOT and the 4 prefix rows of E, shared by every class, run once (as do words that classes
    // share at the same place), and no row runs past its EOT: 144 rows instead of 21 x 13 for THUMOS.
    // Otherwise one node per (row, position). The linears and LayerNorms run on the nodes; attention
    // runs on the (C+1, L) layout gathered from them (nodeOf) and its output is read back per node at
    // the node's first (row, position) (nodeAt). Each node's values are those of the (row, position)
    // it stands for, bit for bit.
    readonly float[] nodeE, nodeMask;       // per node: row of E to use, and 1 where E is used
    readonly float[] nodeToken, nodePos;    // per node: token id where E is not (0 elsewhere), position
    readonly float[] nodeOf, nodeAt;        // (C+1, L) -> node; node -> its first (row, position), flat
    readonly float[] eotNode;               // (C+1): the node of each row's EOT
    // one node per (row, position), in layout order: no gathers around attention
    readonly bool nodesAreLayout;

    /// `prompt` overrides the class tokens: per class [SOT, name tokens..., EOT] ids into a token table of
    /// `vocab` rows (a replayed dump brings CLIP's own tokens this way); by default ClassTokens.Build.
    public PvlrModel(PvlrConfig cfg, IReadOnlyList<string> classes, (int[][] tokens, int vocab)? prompt = null)
    {
        cfg.Validate();
        Cfg = cfg;
        Classes = classes.ToArray();
        if (Classes.Length != cfg.NumClasses)
            throw new ArgumentException($"config has {cfg.NumClasses} classes, the class list {Classes.Length}");
        (tokens, vocab) = prompt ?? ClassTokens.Build(Classes);
        if (tokens.Length != Classes.Length || tokens.Any(t => t.Length < 2 || t.Any(id => id < 0 || id >= vocab)))
            throw new ArgumentException($"prompt tokens: need {Classes.Length} rows of [SOT ... EOT] ids in [0, "
                + $"{vocab})");
        int maxEot = tokens.Max(t => cfg.Prefix + (t.Length - 1) + cfg.Postfix);
        if (maxEot >= cfg.ClipContext)
            throw new ArgumentException($"prompt of {maxEot + 1} tokens exceeds the context {cfg.ClipContext}");
        promptLen = cfg.TruncateText ? maxEot + 1 : cfg.ClipContext;
        int r = Classes.Length + 1, l = promptLen;
        var useE = new bool[r * l];
        var token = new int[r * l];
        var eot = new int[r];
        Array.Fill(useE, true);
        for (int c = 0; c < Classes.Length; c++)
        {
            var t = tokens[c]; int ind = t.Length - 1;        // argmax(tok) = EOT position in the raw tokenization
            void Tok(int pos, int id)
            {
                useE[c * l + pos] = false;
                token[c * l + pos] = id;
            }
            Tok(0, t[0]);
            for (int j = 1; j < ind; j++) Tok(cfg.Prefix + j, t[j]);
            Tok(cfg.Prefix + ind + cfg.Postfix, t[ind]);
            eot[c] = cfg.Prefix + ind + cfg.Postfix;
        }
        eot[Classes.Length] = 0;                                // background: all-zero tokens, argmax = 0
        bool share = cfg.TruncateText && cfg.SharePromptPrefix;
        var node = new Dictionary<(int parent, int row, int input), int>();   // row = -1 when shared
        var nE = new List<float>();
        var nMask = new List<float>();
        var nTok = new List<float>();
        var nPos = new List<float>();
        var nAt = new List<float>();
        nodeOf = new float[r * l];
        eotNode = new float[r];
        for (int row = 0; row < r; row++)
        {
            int parent = -1;
            for (int p = 0; p < l; p++)
            {
                int at = row * l + p;
                if (share && p > eot[row]) { nodeOf[at] = nodeOf[row * l + eot[row]]; continue; }   // never read
                var key = (parent, share ? -1 : row, useE[at] ? p : -1 - token[at]);
                if (!node.TryGetValue(key, out int id))
                {
                    node[key] = id = nE.Count;
                    nE.Add(useE[at] ? p : 0);
                    nMask.Add(useE[at] ? 1 : 0);
                    nTok.Add(useE[at] ? 0 : token[at]);
                    nPos.Add(p);
                    nAt.Add(at);
                }
                nodeOf[at] = parent = id;
            }
            eotNode[row] = nodeOf[row * l + eot[row]];
        }
        nodeE = nE.ToArray();
        nodeMask = nMask.ToArray();
        nodeToken = nTok.ToArray();
        nodePos = nPos.ToArray();
        nodeAt = nAt.ToArray();
        nodesAreLayout = nodeAt.Length == r * l && nodeAt.Select((a, i) => a == i).All(x => x);     // sharing off
        Register();
    }

    void Register()
    {
        int f = Cfg.FeatDim, h = Cfg.Half, a = Cfg.AttnHidden, d = Cfg.EmbedDim, w = Cfg.ClipWidth;
        foreach (var m in new[] { "vAttn", "fAttn" })
        {
            Conv($"{m}.AE_e.0", a, h, 3);
            Conv($"{m}.AE_d.0", h, a, 3);
            Conv($"{m}.bit_wise_attn.0", h, a, 3);
            Conv($"{m}.channel_conv.0", h, h, 3); Conv($"{m}.attention.0", a, h, 3); Conv($"{m}.attention.3", a, a,
                3); Conv($"{m}.attention.5", 1, a, 1);
        }
        Conv("fusion.0", f, f, 3);
        Conv("fusion2.0", f, f, 3);
        P.Add("snippet_prob_encoder.fc_mean.weight", new[] { d, f }); P.Add("snippet_prob_encoder.fc_mean.bias",
            new[] { d });
        P.Add("snippet_prob_encoder.fc_var.weight", new[] { d, f }); P.Add("snippet_prob_encoder.fc_var.bias",
            new[] { d });
        P.Add("embedding.weight", new[] { Cfg.ClipContext, w });
        // frozen CLIP text tower
        P.Add("clipmodel.token_embedding.weight", new[] { vocab, w }, false);
        P.Add("clipmodel.positional_embedding", new[] { Cfg.ClipContext, w }, false);
        for (int i = 0; i < Cfg.ClipLayers; i++)
        {
            string b = $"clipmodel.transformer.resblocks.{i}.";
            P.Add(b + "ln_1.weight", new[] { w }, false);
            P.Add(b + "ln_1.bias", new[] { w }, false);
            P.Add(b + "attn.in_proj_weight", new[] { 3 * w, w }, false); P.Add(b + "attn.in_proj_bias",
                new[] { 3 * w }, false);
            P.Add(b + "attn.out_proj.weight", new[] { w, w }, false); P.Add(b + "attn.out_proj.bias", new[] { w },
                false);
            P.Add(b + "ln_2.weight", new[] { w }, false);
            P.Add(b + "ln_2.bias", new[] { w }, false);
            P.Add(b + "mlp.c_fc.weight", new[] { 4 * w, w }, false);
            P.Add(b + "mlp.c_fc.bias", new[] { 4 * w }, false);
            P.Add(b + "mlp.c_proj.weight", new[] { w, 4 * w }, false);
            P.Add(b + "mlp.c_proj.bias", new[] { w }, false);
        }
        P.Add("clipmodel.ln_final.weight", new[] { w }, false);
        P.Add("clipmodel.ln_final.bias", new[] { w }, false);
        P.Add("clipmodel.text_projection", new[] { w, d }, false);
    }

    void Conv(string name, int cout, int cin, int k) { P.Add(name + ".weight", new[] { cout, cin,
        k }); P.Add(name + ".bias", new[] { cout }); }

    /// Allocates the arenas and draws the PyTorch default init (U(+-1/sqrt(fan_in)) for conv/linear,
    /// N(0, 0.01^2) for the prompt table) and a CLIP-style random init for the frozen text tower.
    public void Initialize(Backend backend, int seed)
    {
        P.Allocate(backend);
        var rng = new Random(seed);
        float N(double std) { double u1 = 1 - rng.NextDouble(),
            u2 = rng.NextDouble(); return (float)(std * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2)); }
        int w = Cfg.ClipWidth;
        double projStd = Math.Pow(w, -0.5) * Math.Pow(2 * Cfg.ClipLayers, -0.5);
        foreach (var p in P.List)
        {
            var a = new float[p.Size];
            string n = p.Name;
            if (n.EndsWith("ln_1.weight") || n.EndsWith("ln_2.weight") || n.EndsWith("ln_final.weight")) Array.Fill(a,
                1f);
            else if (n.StartsWith("clipmodel") && (n.EndsWith(".bias") || n.EndsWith("in_proj_bias"))) { }
            else if (n == "embedding.weight") for (int i = 0; i < a.Length; i++) a[i] = N(0.01);
            else if (n == "clipmodel.token_embedding.weight") for (int i = 0; i < a.Length; i++) a[i] = N(0.02);
            else if (n == "clipmodel.positional_embedding") for (int i = 0; i < a.Length; i++) a[i] = N(0.01);
            else if (n.EndsWith("in_proj_weight")) for (int i = 0; i < a.Length; i++) a[i] = N(Math.Pow(w, -0.5));
            else if (n.EndsWith("out_proj.weight") || n.EndsWith("c_proj.weight"))
                for (int i = 0; i < a.Length; i++) a[i] = N(projStd);
            else if (n.EndsWith("c_fc.weight")) for (int i = 0; i < a.Length; i++) a[i] = N(Math.Pow(2 * w, -0.5));
            else if (n == "clipmodel.text_projection") for (int i = 0; i < a.Length; i++) a[i] = N(Math.Pow(w, -0.5));
            else a = TorchInit.Uniform(rng, p.Size, TorchInit.DefaultBound(P, n));
            P.Set(n, a);
        }
    }

    Tensor W(string n) => P[n].Value;

    /// Token rows the text tower's linears run on (the nodes above).
    public int TextRows => nodeE.Length;

    // ---------------- the cross-modal attention module (CO2-Net, wstal.py:11-50) ----------------
    (Tensor attn, Tensor filtered) Attn(Graph g, string m, Tensor v, Tensor f, RaggedBatch rag)
    {
        float pd = Cfg.DropAttn;
        // conv + LeakyReLU(0.2) (slope 1: none); over a ragged batch the rows between videos are re-zeroed
        Tensor Cv(Tensor x, string layer, float slope = 0.2f, bool mask = true) =>
            g.ConvAct(x, W($"{m}.{layer}.weight"), W($"{m}.{layer}.bias"), slope, mask ? rag?.Mask : null);
        var fz = g.Dropout(Cv(f, "AE_e.0"), pd, $"{m}.AE_e");
        // AE_d's output feeds no loss and no test-time output: computed only in training with the saving off
        if (g.Training && !Cfg.SkipAeDecoder) g.Dropout(Cv(fz, "AE_d.0"), pd, $"{m}.AE_d");
        int h = v.Dim(2);
        var gpool = rag == null ? g.Mean(v, 1)                                          // (B,1,H)
            : g.Reshape(g.MatMul(rag.SegMean, g.Reshape(v, rag.Rows, h)), rag.Count, 1, h);
        var c = g.Dropout(Cv(gpool, "channel_conv.0", mask: false), pd, $"{m}.channel_conv");
        // eps 1e-12 instead of the original unguarded division: identical except where dropout zeroes every
        // channel (probability ~2^-H, reachable only at tiny widths), where the original gives NaN.
        var cn = g.L2Normalize(c, 2, 1e-12f);
        var bw = g.Dropout(Cv(fz, "bit_wise_attn.0"), pd, $"{m}.bit_wise_attn");
        g.Release(fz);                                                                  // test time: dead from here on
        var bwn = g.L2Normalize(bw, 2, 1e-12f);
        var tau = rag == null ? g.MatMul(bwn, cn, transB: true)                         // (B,T,1)
            : g.Reshape(g.Gather(g.MatMul(g.Reshape(bwn, rag.Rows, h), g.Reshape(cn, rag.Count, h), transB: true),
                 // (R, videos):
                1, g.Reshape(rag.RowVideo, rag.Rows, 1), perInner: false), 1, rag.Rows,
                    1);                        // each row's own video
        g.Release(bwn);
        var ff = g.SigmoidGate(bw, tau, v);
        g.Release(bw);
        var h1 = g.Dropout(Cv(ff, "attention.0"), pd, $"{m}.attention.2");
        var h2 = Cv(h1, "attention.3", mask: false);                                    // feeds only the k=1 conv
        g.Release(h1);
        var a = g.Dropout(Cv(h2, "attention.5", 1f, mask: false), pd, $"{m}.attention.6");
        g.Release(h2);
        return (g.Sigmoid(g.Scale(a, 1f / Cfg.SigTAttn)), ff);
    }

    // ---------------- CLIP text tower on the learnable prompt (wstal.py:125-163) ----------------
    public Tensor TextFeatures(Graph g)
    {
        int r = Classes.Length + 1, l = promptLen, w = Cfg.ClipWidth, u = nodeE.Length;
        Tensor Rows(Tensor table, float[] idx) => g.Gather(table, 1, g.FromHost(idx, 1, idx.Length), perInner: false);
        var fromE = Rows(g.Reshape(W("embedding.weight"), 1, Cfg.ClipContext, w), nodeE);                 // (1, U, W)
        var tok = Rows(g.Reshape(W("clipmodel.token_embedding.weight"), 1, -1, w), nodeToken);
        var x = g.Add(g.Mul(fromE, g.FromHost(nodeMask, 1, u, 1)), g.Mul(tok,
            g.FromHost(nodeMask.Select(v => 1 - v).ToArray(), 1, u, 1)));
        x = g.Add(x, Rows(g.Reshape(W("clipmodel.positional_embedding"), 1, Cfg.ClipContext, w), nodePos));
        var toLayout = nodesAreLayout ? null : g.FromHost(nodeOf, 1,
            r * l); var toNodes = nodesAreLayout ? null : g.FromHost(nodeAt, 1, u);
        for (int i = 0; i < Cfg.ClipLayers; i++)
        {
            string b = $"clipmodel.transformer.resblocks.{i}.";
            var h = g.LayerNorm(x, W(b + "ln_1.weight"), W(b + "ln_1.bias"));
            var qkv = g.Linear(h, W(b + "attn.in_proj_weight"),
                W(b + "attn.in_proj_bias"));                // (1, U, 3W)
            var att = g.Attention(g.Reshape(nodesAreLayout ? qkv : g.Gather(qkv, 1, toLayout, perInner: false), r, l,
                3 * w), Cfg.ClipHeads, causal: true);
            att = nodesAreLayout ? g.Reshape(att, 1, u, w) : g.Gather(g.Reshape(att, 1, r * l, w), 1, toNodes,
                perInner: false);   // (1, U, W)
            x = g.Add(x, g.Linear(att, W(b + "attn.out_proj.weight"), W(b + "attn.out_proj.bias")));
            h = g.LayerNorm(x, W(b + "ln_2.weight"), W(b + "ln_2.bias"));
            h = g.QuickGelu(g.Linear(h, W(b + "mlp.c_fc.weight"), W(b + "mlp.c_fc.bias")));
            x = g.Add(x, g.Linear(h, W(b + "mlp.c_proj.weight"), W(b + "mlp.c_proj.bias")));
        }
        x = g.LayerNorm(x, W("clipmodel.ln_final.weight"), W("clipmodel.ln_final.bias"));
        return g.MatMul(g.Reshape(Rows(x, eotNode), r, w), W("clipmodel.text_projection"));                  // (R, D)
    }

    // ---------------- the whole forward ----------------
    /// x (B, T, F); with `rag`, x is the ragged batch's packed (1, R, F) (test mode) and every output is (1, R, .).
    public PvlrOutputs Forward(Graph g, Tensor x, Tensor precomputedText = null, RaggedBatch rag = null)
    {
        if (x.Rank != 3 || x.Dim(2) != Cfg.FeatDim)
            throw new ShapeException($"pvlr: input must be (B, T, {Cfg.FeatDim}), got {x}");
        int h = Cfg.Half;
        return Forward(g, g.Slice(x, 2, 0, h), g.Slice(x, 2, h, h), precomputedText, rag);
    }

    /// The same with the RGB (v) and flow (fl) halves of the features given apart, (B, T, F/2) each:
    /// inference packs its ragged batches that way (RaggedBatch.PackHalves), so nothing is sliced.
    public PvlrOutputs Forward(Graph g, Tensor v, Tensor fl, Tensor precomputedText, RaggedBatch rag)
    {
        int h = Cfg.Half;
        if (v.Rank != 3 || v.Dim(2) != h || !v.Shape.SequenceEqual(fl.Shape))
            throw new ShapeException($"pvlr: the RGB and flow halves must both be (B, T, {h}), got {v} and {fl}");
        if (rag != null && (v.Dim(0) != 1 || v.Dim(1) != rag.Rows))
            throw new ShapeException($"pvlr: a ragged batch of {rag.Rows} rows needs halves (1, {rag.Rows}, {h}), "
                + $"got {v}");
        var (va, vfeat) = Attn(g, "vAttn", v, fl, rag);
        var (fa, ffeat) = Attn(g, "fAttn", fl, v, rag);
        var attn = g.Add(g.Scale(fa, Cfg.ConvexAlpha), g.Scale(va, 1 - Cfg.ConvexAlpha));
        var feat = g.Dropout(g.ConvAct(new[] { vfeat, ffeat }, W("fusion.0.weight"), W("fusion.0.bias"), 0.2f,
            rag?.Mask), Cfg.DropFusion, "fusion");   // of nfeat = [vfeat | ffeat]
        // test time: the fusion consumed them
        g.Release(vfeat, ffeat);
        var featFinal = g.Dropout(g.ConvAct(feat, W("fusion2.0.weight"), W("fusion2.0.bias"), 0.2f), Cfg.DropFusion,
            "fusion2");
        var mu = g.Linear(featFinal, W("snippet_prob_encoder.fc_mean.weight"), W("snippet_prob_encoder.fc_mean.bias"));
        // the variance feeds the training losses only; test mode (CAS and attention) leaves it null
        var var_ = g.Training ? g.Relu(g.Linear(featFinal, W("snippet_prob_encoder.fc_var.weight"),
            W("snippet_prob_encoder.fc_var.bias"))) : null;
        g.Release(featFinal);
        var text = precomputedText ?? TextFeatures(g);
        Tensor cas;
        if (g.Training)
        {
            // mean_n emb = mu + exp(var/2) * mean_n eps; cas = <mean_n emb, text> / sig_T_train (the mean-first form,
            // docs/design.md)
            var epsMean = g.New(mu.Shape);
            g.Rng.NormalMean(g, epsMean, Cfg.EpsStd, Cfg.NumSamples, "eps");
            var emb = g.Add(mu, g.Mul(g.Exp(var_, 0.5f), epsMean));
            cas = g.Scale(g.Linear(emb, text), 1f / Cfg.SigTTrain);
        }
        else cas = g.Scale(g.Linear(g.L2Normalize(mu, 2, 1e-12f), g.L2Normalize(text, 1, 1e-12f)), 1f / Cfg.SigTInfer);
        return new PvlrOutputs { Cas = cas, Attn = attn, VAttn = va, FAttn = fa, Feat = feat, Mu = mu, Var = var_,
            Text = text };
    }
}
