#!/usr/bin/env python3
"""Our own PyTorch restatement of one PVLR training step (model/wstal.py, model/loss.py, main.py), written from the original's semantics,
channel-first like the original. Two uses:

  dump OUT  [--seed S] [...dims]   one step in float64 at small shapes, written in the fixture layout
                                   that `pvlr replay` reads (weights/, inputs/, random/, mining/,
                                   losses.json, grads/, meta.json); the C# parity test replays it.
  time      [--preset paper] [--steps N] [--savings]
                                   times full steps (forward, loss, backward, Adam) in float32.
                                   Without --savings it computes what the original computes (the
                                   (B,21,T,P,P) einsum, the text tower on all 77 tokens, AE_d);
                                   --savings applies the exact savings (docs/design.md) that our engine uses.
                                   Prints one JSON line: {"seconds_per_step": ..., ...}.

Needs Debian's python3-torch (1.13), numpy and scipy. Nothing here is the original code.
"""
import json, os, time
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from refcommon import cli, features, labels, save, time_steps

ALPHA = [0.8, 0.8, 0.8, 1.0, 200.0, 0.005, 0.005, 0.005, 0.5]
LOSS_NAMES = ["cls_loss", "norm_loss", "guide_loss", "contra_loss", "distillation_loss",
              "action_prob_contra_loss", "background_prob_contra_loss", "action_prob_vid_contra_loss", "ortho_loss"]


def presets(name):
    paper = dict(B=10, T=320, F=2048, A=512, D=1024, C=20, P=20, W=512, layers=12, heads=8, ctx=77, vocab=49408,
                 k_easy=20, k_hard=5, M=3, m=24, topk=7)
    if name == 'paper':
        return paper
    if name == 'demo':
        return dict(paper, F=256, A=64, D=128, W=64, layers=2, heads=4, vocab=64)
    if name == 'replay':   # the committed replay fixture: every code path, small files
        return dict(paper, T=32, F=32, A=8, D=8, W=32, layers=2, heads=4, vocab=48, k_easy=6, k_hard=3, m=12)
    raise SystemExit(f'unknown preset {name}')


class Draws:
    """Makes every random draw of the step and records it under the tag the C# side uses."""
    def __init__(self, gen, dtype, record):
        self.gen, self.dtype, self.record, self.items = gen, dtype, record, []

    def dropout(self, x, p, tag, train=True):
        if not train or p == 0:
            return x
        keep = (torch.rand(x.shape, generator=self.gen) >= p).to(self.dtype) / (1 - p)
        if self.record:
            self.items.append((tag, keep))
        return x * keep

    def normal(self, shape, std, tag):
        e = (torch.randn(shape, generator=self.gen) * std).float().to(self.dtype)   # float32-representable
        if self.record:
            self.items.append((tag, e))
        return e


def init_params(cfg, gen, dtype):
    """PyTorch default init (U(+-1/sqrt(fan_in))), N(0, 0.01^2) prompt, a CLIP-style random text tower."""
    p = {}
    H, A, Fd, D, W = cfg['F'] // 2, cfg['A'], cfg['F'], cfg['D'], cfg['W']

    def U(shape, fan_in):
        return (torch.rand(shape, generator=gen) * 2 - 1) / fan_in ** 0.5

    def conv(name, cout, cin, k):
        p[name + '.weight'] = U((cout, cin, k), cin * k); p[name + '.bias'] = U((cout,), cin * k)
    for m in ('vAttn', 'fAttn'):
        conv(f'{m}.AE_e.0', A, H, 3); conv(f'{m}.AE_d.0', H, A, 3); conv(f'{m}.bit_wise_attn.0', H, A, 3)
        conv(f'{m}.channel_conv.0', H, H, 3); conv(f'{m}.attention.0', A, H, 3); conv(f'{m}.attention.3', A, A, 3)
        conv(f'{m}.attention.5', 1, A, 1)
    conv('fusion.0', Fd, Fd, 3); conv('fusion2.0', Fd, Fd, 3)
    for n in ('fc_mean', 'fc_var'):
        p[f'snippet_prob_encoder.{n}.weight'] = U((D, Fd), Fd); p[f'snippet_prob_encoder.{n}.bias'] = U((D,), Fd)
    p['embedding.weight'] = torch.randn((cfg['ctx'], W), generator=gen) * 0.01
    N = lambda shape, std: torch.randn(shape, generator=gen) * std
    p['clipmodel.token_embedding.weight'] = N((cfg['vocab'], W), 0.02)
    p['clipmodel.positional_embedding'] = N((cfg['ctx'], W), 0.01)
    for i in range(cfg['layers']):
        b = f'clipmodel.transformer.resblocks.{i}.'
        p[b + 'ln_1.weight'] = 1 + N((W,), 0.1); p[b + 'ln_1.bias'] = N((W,), 0.1)
        p[b + 'attn.in_proj_weight'] = N((3 * W, W), W ** -0.5); p[b + 'attn.in_proj_bias'] = N((3 * W,), 0.02)
        p[b + 'attn.out_proj.weight'] = N((W, W), W ** -0.5); p[b + 'attn.out_proj.bias'] = N((W,), 0.02)
        p[b + 'ln_2.weight'] = 1 + N((W,), 0.1); p[b + 'ln_2.bias'] = N((W,), 0.1)
        p[b + 'mlp.c_fc.weight'] = N((4 * W, W), W ** -0.5); p[b + 'mlp.c_fc.bias'] = N((4 * W,), 0.02)
        p[b + 'mlp.c_proj.weight'] = N((W, 4 * W), (4 * W) ** -0.5); p[b + 'mlp.c_proj.bias'] = N((W,), 0.02)
    p['clipmodel.ln_final.weight'] = 1 + N((W,), 0.1); p['clipmodel.ln_final.bias'] = N((W,), 0.1)
    p['clipmodel.text_projection'] = N((W, D), W ** -0.5)
    out = {}
    for k, v in p.items():
        t = v.float().to(dtype)                       # float32-representable values in every dtype
        t.requires_grad_(not k.startswith('clipmodel.'))
        out[k] = t
    return out


def class_tokens(cfg, gen):
    """Per class [SOT, 1-3 name tokens, EOT] ids, zero-padded to ctx; EOT is the largest id (argmax)."""
    V = cfg['vocab']; toks = torch.zeros((cfg['C'], cfg['ctx']), dtype=torch.long)
    for c in range(cfg['C']):
        n = 1 + c % 3
        ids = [V - 2] + (1 + torch.randint(0, V - 3, (n,), generator=gen)).tolist() + [V - 1]
        toks[c, :len(ids)] = torch.tensor(ids)
    return toks


def lrelu(x):
    return F.leaky_relu(x, 0.2)


def attn_module(p, m, V, Fx, dr, train, skip_ae_d):
    conv = lambda x, n, pad=1: F.conv1d(x, p[f'{m}.{n}.weight'], p[f'{m}.{n}.bias'], padding=pad)
    fz = dr.dropout(lrelu(conv(Fx, 'AE_e.0')), 0.5, f'{m}.AE_e', train)
    if not skip_ae_d:
        dr.dropout(lrelu(conv(fz, 'AE_d.0')), 0.5, f'{m}.AE_d', train)          # n_*feat: no loss uses it
    g = V.mean(2, keepdim=True)
    c = dr.dropout(lrelu(conv(g, 'channel_conv.0')), 0.5, f'{m}.channel_conv', train)
    cn = c / torch.norm(c, p=2, dim=1, keepdim=True)
    bw = dr.dropout(lrelu(conv(fz, 'bit_wise_attn.0')), 0.5, f'{m}.bit_wise_attn', train)
    bwn = bw / torch.norm(bw, p=2, dim=1, keepdim=True)
    tau = torch.einsum('bdn,bdt->bnt', cn, bwn)
    ff = torch.sigmoid(bw * tau) * V
    h1 = dr.dropout(lrelu(conv(ff, 'attention.0')), 0.5, f'{m}.attention.2', train)
    h2 = lrelu(conv(h1, 'attention.3'))
    a = dr.dropout(conv(h2, 'attention.5', pad=0), 0.5, f'{m}.attention.6', train)
    return torch.sigmoid(a / 1.0), ff


def text_features(p, cfg, actiondict, actiontoken, truncate):
    """Prompt (model/wstal.py:125-144): E everywhere, class rows get SOT at 0, name tokens at 5.., EOT at ind+8."""
    E = p['embedding.weight']; C, L = actiontoken.shape; pre = post = 4
    X = E.unsqueeze(0).repeat(C + 1, 1, 1)
    toks = torch.zeros((C + 1, L), dtype=torch.long)
    rows = []
    for i in range(C):
        ind = int(actiontoken[i].argmax())
        r = X[i].clone()
        r[0] = actiondict[i, 0]; toks[i, 0] = actiontoken[i, 0]
        r[pre + 1:pre + ind] = actiondict[i, 1:ind]; toks[i, pre + 1:pre + ind] = actiontoken[i, 1:ind]
        r[pre + ind + post] = actiondict[i, ind]; toks[i, pre + ind + post] = actiontoken[i, ind]
        rows.append(r)
    X = torch.stack(rows + [X[C]])
    eot = toks.argmax(-1)
    n = int(eot.max()) + 1 if truncate else L        # the causal mask makes the truncation exact
    x = X[:, :n] + p['clipmodel.positional_embedding'][:n]
    W, Hh = x.shape[-1], cfg['heads']; dh = W // Hh
    mask = torch.full((n, n), float('-inf'), dtype=x.dtype).triu(1)
    for i in range(cfg['layers']):
        b = f'clipmodel.transformer.resblocks.{i}.'
        h = F.layer_norm(x, (W,), p[b + 'ln_1.weight'], p[b + 'ln_1.bias'], 1e-5)
        q, k, v = F.linear(h, p[b + 'attn.in_proj_weight'], p[b + 'attn.in_proj_bias']).chunk(3, -1)
        sh = lambda z: z.reshape(C + 1, n, Hh, dh).transpose(1, 2)
        att = torch.softmax(sh(q) @ sh(k).transpose(-1, -2) / dh ** 0.5 + mask, -1) @ sh(v)
        att = att.transpose(1, 2).reshape(C + 1, n, W)
        x = x + F.linear(att, p[b + 'attn.out_proj.weight'], p[b + 'attn.out_proj.bias'])
        h = F.layer_norm(x, (W,), p[b + 'ln_2.weight'], p[b + 'ln_2.bias'], 1e-5)
        h = F.linear(h, p[b + 'mlp.c_fc.weight'], p[b + 'mlp.c_fc.bias'])
        h = h * torch.sigmoid(1.702 * h)
        x = x + F.linear(h, p[b + 'mlp.c_proj.weight'], p[b + 'mlp.c_proj.bias'])
    x = F.layer_norm(x, (W,), p['clipmodel.ln_final.weight'], p['clipmodel.ln_final.bias'], 1e-5)
    return x[torch.arange(C + 1), eot] @ p['clipmodel.text_projection']


def forward(p, cfg, X, actiondict, actiontoken, dr, savings):
    H = cfg['F'] // 2; x = X.transpose(1, 2)
    v_atn, vfeat = attn_module(p, 'vAttn', x[:, :H], x[:, H:], dr, True, savings)
    f_atn, ffeat = attn_module(p, 'fAttn', x[:, H:], x[:, :H], dr, True, savings)
    attn = 0.5 * f_atn + 0.5 * v_atn
    nfeat = torch.cat([vfeat, ffeat], 1)
    feat = dr.dropout(lrelu(F.conv1d(nfeat, p['fusion.0.weight'], p['fusion.0.bias'], padding=1)), 0.7, 'fusion')
    ffin = dr.dropout(lrelu(F.conv1d(feat, p['fusion2.0.weight'], p['fusion2.0.bias'], padding=1)), 0.7, 'fusion2')
    f = ffin.transpose(1, 2)
    mu = F.linear(f, p['snippet_prob_encoder.fc_mean.weight'], p['snippet_prob_encoder.fc_mean.bias'])
    var = F.relu(F.linear(f, p['snippet_prob_encoder.fc_var.weight'], p['snippet_prob_encoder.fc_var.bias']))
    B, T, D = mu.shape; P = cfg['P']
    eps = dr.normal((P, B, T, D), 0.005, 'eps')
    text = text_features(p, cfg, actiondict, actiontoken, savings)
    if savings:   # mean over n first (docs/design.md): exact
        cas = (mu + eps.mean(0) * torch.exp(0.5 * var)) @ text.t() / 8.0
    else:
        emb = mu.unsqueeze(1) + eps.transpose(0, 1) * torch.exp(0.5 * var).unsqueeze(1)      # (B,P,T,D)
        rep = text.unsqueeze(0).unsqueeze(0).expand(B, P, -1, -1)
        cas = torch.einsum('bntd,bmcd->bctnm', emb, rep).div(8.0).mean((-1, -2)).transpose(1, 2)
    return dict(cas=cas, attn=attn.transpose(1, 2), v_atn=v_atn.transpose(1, 2), f_atn=f_atn.transpose(1, 2),
                feat=feat.transpose(1, 2), mu=mu, var=var, text=text)


def topk_mil(S, y, back, rat):
    B, T, C1 = S.shape; k = max(1, T // rat)
    s = S.topk(k, dim=1)[0].mean(1)
    yb = torch.cat([y, torch.full((B, 1), 1.0 if back else 0.0, dtype=y.dtype)], 1)
    yb = yb / (yb.sum(1, keepdim=True) + 1e-4)
    return -(yb * F.log_softmax(s, 1)).sum(1).mean()


def coactivity(Fe, Ssup, y):
    B, T, C1 = Ssup.shape
    yb = torch.cat([y, torch.zeros((B, 1), dtype=y.dtype)], 1)
    tot, n = 0.0, 0.0
    cos = lambda a, b: (a * b).sum(0) / (a.norm(dim=0) * b.norm(dim=0))
    for i in range(0, 6, 2):
        j = i + 1
        Ai, Aj = torch.softmax(Ssup[i], 0), torch.softmax(Ssup[j], 0)
        Hi, Hj = Fe[i].t() @ Ai, Fe[j].t() @ Aj
        Li, Lj = Fe[i].t() @ (1 - Ai) / max(T - 1, 1), Fe[j].t() @ (1 - Aj) / max(T - 1, 1)
        d1, d2, d3 = 1 - cos(Hi, Hj), 1 - cos(Hi, Lj), 1 - cos(Hj, Li)
        w = yb[i] * yb[j]
        tot = tot + (0.5 * (F.relu(d1 - d2 + 0.5) + F.relu(d1 - d3 + 0.5)) * w).sum()
        n = n + w.sum()
    return tot / n


def kl(mp, vp, mq, vq):
    vp, vq = vp + 1e-5, vq + 1e-5
    return 0.5 * ((mq - mp) ** 2 / vq).sum(-1) + 0.5 * (torch.log(vq).sum(-1) - torch.log(vp).sum(-1)) \
        + 0.5 * (vp / vq).sum(-1) - mp.shape[-1] / 2


def sim(P, Q):
    """mean over all pairs of 1/(1+KL(P_i || Q_j)): a Python double loop, as the original."""
    (mp, vp), (mq, vq) = P, Q; s = 0
    for i in range(mp.shape[1]):
        for j in range(mq.shape[1]):
            s = s + 1 / (1 + kl(mp[:, i], vp[:, i], mq[:, j], vq[:, j]))
    return s / (mp.shape[1] * mq.shape[1])


def intra(Hs, Ep, En):
    pos = 0.5 * (sim(Hs, Ep) + sim(Ep, Hs)); neg = 0.5 * (sim(Hs, En) + sim(En, Hs))
    return (-torch.log(pos) - torch.log(1 - neg)).mean()


def inter(a, mu, var, y):
    B, T, _ = mu.shape
    m = (a.unsqueeze(-1) * mu).sum(1) / T
    v = (a.unsqueeze(-1) * (mu ** 2 + var)).sum(1) / T - m ** 2 + 1e-5
    Pm = torch.stack([torch.stack([1 / (1 + kl(m[i], v[i] - 1e-5, m[j], v[j] - 1e-5)) for j in range(B)]) for i in range(B)])
    Y = (y @ y.t()) >= 1
    return -torch.log(Pm[Y]).mean() - torch.log(1 - Pm[~Y]).mean()


def mining(a, r, cfg):
    """Easy (loss.py:134-151) and hard (loss.py:153-174) mining; torch.sort (unstable) as the original."""
    take = lambda s, k: torch.sort(s, dim=1, descending=True)[1][:, :k]
    act = a * r; bkg = (a.max(1, keepdim=True)[0] - a) * r
    an = a.detach().cpu().numpy()
    binm = an > np.median(an, 1, keepdims=True)
    E = lambda k: ndimage.binary_erosion(binm, structure=np.ones((1, k))).astype(np.float64)
    Dl = lambda k: ndimage.binary_dilation(binm, structure=np.ones((1, k))).astype(np.float64)
    inner = torch.tensor(E(cfg['m']) - E(cfg['M']), dtype=a.dtype)
    outer = torch.tensor(Dl(cfg['M']) - Dl(cfg['m']), dtype=a.dtype)
    return dict(easy_act=take(act.detach(), cfg['k_easy']), easy_bkg=take(bkg.detach(), cfg['k_easy']),
                hard_act=take((a * inner).detach(), cfg['k_hard']), hard_bkg=take((a * outer).detach(), cfg['k_hard']))


def losses(o, y, Z, cfg, dr):
    S, A, Av, Af = o['cas'], o['attn'], o['v_atn'], o['f_atn']
    mn = S.min(2, keepdim=True)[0]
    Ssup = A * (S - mn) + mn
    L = {}
    L['cls_loss'] = ALPHA[0] * (topk_mil(S, y, True, cfg['topk']) + topk_mil(Ssup, y, False, cfg['topk']))
    L['norm_loss'] = ALPHA[1] * (A.mean() + Av.mean() + Af.mean()) / 3
    pbg = torch.softmax(S, 2)[..., -1:]
    L['guide_loss'] = ALPHA[2] * sum((1 - x - pbg).abs().mean() for x in (A, Av, Af)) / 3
    L['contra_loss'] = ALPHA[3] * coactivity(o['feat'], Ssup, y)
    a = A.squeeze(-1)
    r = dr.dropout(torch.ones_like(a), 0.6, 'easy_mining')
    idx = mining(a, r, cfg)
    g = lambda t, i: torch.gather(t, 1, i.unsqueeze(-1).expand(-1, -1, t.shape[-1]))
    pick = lambda name: (g(o['mu'], idx[name]), g(o['var'], idx[name]))
    ea, eb, ha, hb = pick('easy_act'), pick('easy_bkg'), pick('hard_act'), pick('hard_bkg')
    mu_n = F.normalize(o['mu'], dim=-1); z_n = F.normalize(Z, dim=-1)
    L['distillation_loss'] = ALPHA[4] * -torch.log(((1 + (mu_n * z_n).sum(-1)) / 2).mean())
    L['action_prob_contra_loss'] = ALPHA[5] * intra(ha, ea, eb)
    L['background_prob_contra_loss'] = ALPHA[6] * intra(hb, eb, ea)
    L['action_prob_vid_contra_loss'] = ALPHA[7] * inter(a, o['mu'], o['var'], y)
    N = F.normalize(o['text'], dim=-1)
    L['ortho_loss'] = ALPHA[8] * torch.norm(N @ N.detach().t() - torch.eye(N.shape[0], dtype=N.dtype))
    return L, idx, a.detach()


def make_batch(cfg, gen, dtype):
    X = features(cfg, gen, dtype)
    Z = torch.randn((cfg['B'], cfg['T'], cfg['D']), generator=gen).float().to(dtype)
    return X, Z, labels(cfg['B'], cfg['C'], gen, dtype, pairs=True)


def dump(args):
    cfg = presets(args.preset); torch.set_default_dtype(torch.float64)
    gen = torch.Generator().manual_seed(args.seed); dt = torch.float64
    p = init_params(cfg, gen, dt)
    toks = class_tokens(cfg, gen)
    actiondict = p['clipmodel.token_embedding.weight'].detach()[toks]          # (C, ctx, W), constant
    X, Z, y = make_batch(cfg, gen, dt)
    dr = Draws(gen, dt, record=True)
    o = forward(p, cfg, X, actiondict, toks, dr, savings=False)
    L, idx, attention = losses(o, y, Z, cfg, dr)
    total = sum(L.values()); total.backward()
    out = args.out
    for k, v in p.items():
        save(f'{out}/weights/{k}.npy', v.float())
        if v.grad is not None:
            save(f'{out}/grads/{k}.npy', v.grad)
    save(f'{out}/inputs/features.npy', X.float()); save(f'{out}/inputs/clip.npy', Z.float())
    save(f'{out}/inputs/labels.npy', y.float())
    save(f'{out}/inputs/actiontoken.npy', toks); save(f'{out}/inputs/actiondict.npy', actiondict.float())
    for tag, t in dr.items:
        save(f'{out}/random/{tag}.npy', t.float())
    for k, v in idx.items():
        save(f'{out}/mining/{k}_idx.npy', v)
    save(f'{out}/mining/attention.npy', attention)                 # float64 (B,T): what was mined
    vals = {k: float(v) for k, v in L.items()}; vals['total_loss'] = float(total)
    with open(f'{out}/losses.json', 'w') as f:
        json.dump(vals, f, indent=1)
    meta = dict(random_order=[t for t, _ in dr.items], mask_layout='channel_first', heads=cfg['heads'], num_samples=cfg['P'], eps_std=0.005,
                k_easy=cfg['k_easy'], k_hard=cfg['k_hard'], M=cfg['M'], m=cfg['m'], train_topk=cfg['topk'],
                alpha=ALPHA, dtype='float64 compute, float32 inputs', seed=args.seed,
                layouts='dropout masks in the channel-first layout of the conv they follow; eps (P,B,T,D)')
    with open(f'{out}/meta.json', 'w') as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(vals))


def timing(args):
    cfg = presets(args.preset)
    gen = torch.Generator().manual_seed(0); dt = torch.float32
    p = init_params(cfg, gen, dt)
    toks = class_tokens(cfg, gen); actiondict = p['clipmodel.token_embedding.weight'][toks]
    train = [v for v in p.values() if v.requires_grad]
    opt = torch.optim.Adam(train, lr=5e-5, weight_decay=1e-3)

    def step():
        X, Z, y = make_batch(cfg, gen, dt)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        dr = Draws(gen, dt, record=False)
        o = forward(p, cfg, X, actiondict, toks, dr, args.savings)
        L, _, _ = losses(o, y, Z, cfg, dr)
        sum(L.values()).backward()
        opt.step()
        return t0
    time_steps(args, step, dict(savings=args.savings))


if __name__ == '__main__':
    cli(dump, timing, savings=True)
