#!/usr/bin/env python3
"""Our own PyTorch restatement of one FTCL training step on THUMOS14 (MengyuanChen21/CVPR2022-FTCL
model/FTCLNet.py, utils/ftcl_criterion.py), written from the original's semantics: ACM-Net's forward
and loss (acmnet_ref.py) per half of a batch of pairs, plus the LCS and FSD contrasts computed cell by
cell as the original does (an autograd op per cell; FSD rebuilding its table through a mask per cell,
LCS branching in Python on each cell's similarity). Three uses:

  dump OUT  [--seed S] [--preset replay]   one step in float64 at small shapes, in the layout that
                                           `pvlr replay --method ftcl` reads.
  time      [--preset paper] [--steps N]   times full steps (forward, loss, backward, Adam) in float32
                                           and prints one JSON line {"seconds_per_step": ...}.
  time-align [--preset paper] [--steps N]  times the LCS + FSD losses alone (forward and backward) for one
                                           batch of pairs of candidate sets, as `pvlr bench --only align`.

Needs Debian's python3-torch (1.13) and numpy. Nothing here is the original code.
"""
import time
import numpy as np
import torch
import torch.nn.functional as F
import acmnet_ref as acm
from refcommon import Draws, cli, features, time_steps, time_training, write_dump

LCS_LEN, FSD_LEN, THRES, GAMMA, LAMB_LCS, LAMB_FSD = 30, 5, 0.92, 0.1, 0.1, 0.8   # config/model_config.py


def presets(name):
    paper = dict(B=16, T=750, F=2048, C=20, FC=1024, thres=THRES)
    if name == 'paper':
        return paper
    if name == 'demo':
        return dict(paper, T=320, F=256, FC=128)
    if name == 'replay':
        return dict(paper, B=4, T=40, F=32, FC=16, thres=0.65)
    raise SystemExit(f'unknown preset {name}')


def init_params(cfg, gen, dtype):
    p = acm.init_params(cfg, gen, dtype)
    F_, FC = cfg['F'], cfg['FC']
    for k, shape in (('feature_trans.weight', (FC, F_)), ('feature_trans.bias', (FC,))):
        t = ((torch.rand(shape, generator=gen) * 2 - 1) / F_ ** 0.5).float().to(dtype)
        t.requires_grad_(True); p[k] = t
    return p


def forward_once(p, cfg, X, dr, tags):
    """FTCLNet.forward_once (model/FTCLNet.py:52-123): ACM-Net's outputs plus the candidate sets."""
    o = acm.forward(p, cfg, X, dr, tags)
    order = torch.sort(o['att'][:, :, 0].unsqueeze(2), dim=1, descending=True)[1]
    emb = o['emb']
    take = lambda idx: torch.gather(emb, 1, idx.expand(-1, -1, emb.shape[2]))
    proj = lambda v: F.linear(v, p['feature_trans.weight'], p['feature_trans.bias'])
    cand = {'lcs': torch.sort(order[:, :LCS_LEN, :], dim=1)[0], 'fsd_act': torch.sort(order[:, :FSD_LEN, :], dim=1)[0],
            'fsd_bak': torch.sort(order[:, FSD_LEN:2 * FSD_LEN, :], dim=1)[0]}
    o['lcs'] = take(cand['lcs']); o['fsd_act'] = proj(take(cand['fsd_act'])); o['fsd_bak'] = proj(take(cand['fsd_bak']))
    for k, v in cand.items():
        o['idx'][k] = v[:, :, 0]
    return o


def similarity(a, b):
    """get_similarity (utils/net_utils.py:44-48)."""
    a = a / torch.linalg.vector_norm(a, ord=2, dim=1, keepdim=True)
    b = b / torch.linalg.vector_norm(b, ord=2, dim=1, keepdim=True)
    return torch.mm(a, b.T)


def max_gamma(z, gamma=GAMMA):
    """maxGamma (utils/net_utils.py:8-18)."""
    zi = z / gamma
    m = torch.max(zi)
    return gamma * (m + torch.log(torch.sum(torch.exp(zi - m))))


def assign(C, i, j, v):
    """assign2Tensor (utils/net_utils.py:51-59): a fresh table through a mask."""
    mask = np.ones(C.shape); mask[i, j] = 0
    mask = torch.tensor(mask, dtype=C.dtype)
    return C * mask + v * (1 - mask)


def fsd_pair(a, b, length=FSD_LEN):
    """dp_for_fsd (utils/ftcl_criterion.py:100-117), cell by cell."""
    h = a.shape[-1] // 2
    m, g = similarity(a[:, :h], b[:, :h]), similarity(a[:, h:], b[:, h:])
    C = torch.zeros((length + 1, length + 1), dtype=a.dtype)
    for i in range(1, length + 1):
        for j in range(1, length + 1):
            nb = torch.stack([C[i - 1, j - 1], g[i - 1, j - 1] + C[i - 1, j], g[i - 1, j - 1] + C[i, j - 1]])
            C = assign(C, i, j, m[i - 1, j - 1] + max_gamma(nb))
    return C[-1, -1]


def lcs_pairs(c0, c1, thres, length=LCS_LEN):
    """dp_for_lcs (utils/ftcl_criterion.py:128-146): Python's max keeps C[i-1, j] on a tie."""
    out = torch.zeros(c0.shape[0], dtype=c0.dtype)
    for idx in range(c0.shape[0]):
        s = similarity(c0[idx], c1[idx])
        C = torch.zeros((length + 1, length + 1), dtype=c0.dtype)
        for i in range(1, length + 1):
            for j in range(1, length + 1):
                if s[i - 1, j - 1] > thres:
                    C[i, j] = C[i - 1, j - 1] + s[i - 1, j - 1]
                else:
                    C[i, j] = max(C[i - 1, j], C[i, j - 1])
        out[idx] = C[-1, -1]
    return out


def contrast(values, pair):
    """get_lcs_loss / get_fsd_loss's mean over negative pairs minus mean over positive ones."""
    pos = torch.sum(pair); neg = pair.shape[0] - pos
    return torch.sum(values * (1 - pair)) / (neg + 1e-10) - torch.sum(values * pair) / (pos + 1e-10)


def align_losses(o0, o1, pair, thres):
    lcs = lcs_pairs(o0['lcs'], o1['lcs'], thres)
    fsd = torch.zeros(pair.shape[0], dtype=o0['lcs'].dtype)
    for i in range(pair.shape[0]):
        fsd[i] = fsd_pair(o0['fsd_act'][i], (o1['fsd_act'] if pair[i] == 1 else o1['fsd_bak'])[i])
    return LAMB_LCS * contrast(lcs, pair), LAMB_FSD * contrast(fsd, pair)


def pair_labels(cfg, gen, dtype):
    """Labels of B pairs: odd pairs share their class (positive), even ones have disjoint classes."""
    B, C = cfg['B'], cfg['C']
    y0 = torch.zeros((B, C), dtype=dtype); y1 = torch.zeros((B, C), dtype=dtype)
    for b in range(B):
        c = int(torch.randint(0, C, (1,), generator=gen))
        y0[b, c] = 1
        y1[b, c if b % 2 else (c + 1 + int(torch.randint(0, C - 1, (1,), generator=gen))) % C] = 1
    y0[0, (int(y0[0].argmax()) + 3) % C] = 1                      # one video with two labels
    return y0, y1


def step_losses(p, cfg, X, y0, y1, dr):
    B = cfg['B']
    o0 = forward_once(p, cfg, X[:B], dr, 'v0_'); o1 = forward_once(p, cfg, X[B:], dr, 'v1_')
    L0, L1 = acm.losses(o0, y0), acm.losses(o1, y1)
    L = {k: (L0[k] + L1[k]) / 2 for k in L0}
    pair = (torch.sum(y0 * y1, dim=1) > 0).to(X.dtype)
    L['lcs_loss'], L['fsd_loss'] = align_losses(o0, o1, pair, cfg['thres'])
    total = (acm.total(L0) + acm.total(L1)) / 2 + L['lcs_loss'] + L['fsd_loss']
    return L, total, o0, o1


def dump(args):
    cfg = presets(args.preset); torch.set_default_dtype(torch.float64)
    gen = torch.Generator().manual_seed(args.seed); dt = torch.float64
    p = init_params(cfg, gen, dt)
    X = features(dict(cfg, B=2 * cfg['B']), gen, dt); y0, y1 = pair_labels(cfg, gen, dt)
    dr = Draws(gen, dt, record=True)
    L, tot, o0, o1 = step_losses(p, cfg, X, y0, y1, dr)
    tot.backward()
    extra = {}
    for half, o in (('v0', o0), ('v1', o1)):
        for n, idx in o['idx'].items():
            extra[f'mining/{half}_{n}_idx'] = idx
        extra[f'mining/{half}_attention'] = o['att'].detach()
    write_dump(args.out, p, dict(features=X, labels=torch.cat([y0, y1])), dr, L, tot,
               dict(method='ftcl', mask_layout='channel_first', topk=acm.TOPK, lens=(LCS_LEN, FSD_LEN),
                    fc_dim=cfg['FC'], thres=cfg['thres'], seed=args.seed), extra)


def timing(args):
    cfg = presets(args.preset)
    gen = torch.Generator().manual_seed(0); dt = torch.float32
    p = init_params(cfg, gen, dt)
    time_training(args, p, lambda: (features(dict(cfg, B=2 * cfg['B']), gen, dt), *pair_labels(cfg, gen, dt)),
                  lambda X, y0, y1: step_losses(p, cfg, X, y0, y1, Draws(gen, dt, record=False))[1],
                  lr=1e-4, weight_decay=5e-5)


def timing_align(args):
    """The contrasts alone on random candidate sets of one batch (B pairs), forward and backward."""
    cfg = presets(args.preset)
    gen = torch.Generator().manual_seed(0)
    B, F_, FC = cfg['B'], cfg['F'], cfg['FC']

    def step():
        o0, o1 = ({'lcs': torch.rand((B, LCS_LEN, F_), generator=gen).requires_grad_(True),
                   'fsd_act': torch.randn((B, FSD_LEN, FC), generator=gen).requires_grad_(True),
                   'fsd_bak': torch.randn((B, FSD_LEN, FC), generator=gen).requires_grad_(True)} for _ in range(2))
        pair = (torch.arange(B) % 2).float()
        t0 = time.perf_counter()
        lcs, fsd = align_losses(o0, o1, pair, cfg['thres'])
        (lcs + fsd).backward()
        return t0
    time_steps(args, step, extra=dict(what='lcs+fsd losses, forward and backward'))


if __name__ == '__main__':
    import sys
    if len(sys.argv) > 1 and sys.argv[1] == 'time-align':
        sys.argv[1] = 'time'
        cli(dump, timing_align)
    else:
        cli(dump, timing)
