#!/usr/bin/env python3
"""Our own PyTorch restatement of one ACM-Net training step on THUMOS14 (ispc-lab/ACM-Net model/ACMNet.py,
utils/net_utils.py ACMLoss), written from the original's semantics. Two uses:

  dump OUT  [--seed S] [--preset replay]   one step in float64 at small shapes, in the layout that
                                           `pvlr replay --method acmnet` reads (weights/, inputs/,
                                           random/, mining/, losses.json, grads/, meta.json).
  time      [--preset paper] [--steps N]   times full steps (forward, loss, backward, Adam) in float32
                                           and prints one JSON line {"seconds_per_step": ...}.

Needs Debian's python3-torch (1.13) and numpy. Nothing here is the original code.
"""
import torch
import torch.nn.functional as F
from refcommon import Draws, cli, dump_step_inputs, features, labels, time_training, write_dump

TOPK, LAMB, MARGIN = (8, 3, 3), (2e-3, 5e-5, 2e-4), 50.0     # config/model_config.py THUMOS, net_utils.py
LOSS_NAMES = ["inst_loss", "cont_loss", "back_loss", "guide_loss", "feat_loss", "sparse_loss"]


def presets(name):
    paper = dict(B=16, T=750, F=2048, C=20)
    if name == 'paper':
        return paper
    if name == 'demo':
        return dict(paper, T=320, F=256)
    if name == 'replay':
        return dict(paper, B=4, T=40, F=32)
    raise SystemExit(f'unknown preset {name}')


def init_params(cfg, gen, dtype):
    F_, C = cfg['F'], cfg['C']
    U = lambda shape, fan_in: (torch.rand(shape, generator=gen) * 2 - 1) / fan_in ** 0.5
    p = {'feature_embedding.0.weight': U((F_, F_, 3), F_ * 3), 'feature_embedding.0.bias': U((F_,), F_ * 3),
         'att_branch.weight': U((3, F_, 1), F_), 'att_branch.bias': U((3,), F_),
         'snippet_cls.weight': U((C + 1, F_), F_), 'snippet_cls.bias': U((C + 1,), F_)}
    out = {}
    for k, v in p.items():
        t = v.float().to(dtype); t.requires_grad_(True); out[k] = t
    return out


def forward(p, cfg, X, dr, tags=''):
    """ACMNet.forward (model/ACMNet.py:37-103), THUMOS branch; `tags` prefixes the draws' names."""
    B, T = X.shape[0], X.shape[1]
    ks = [max(T // r, 1) for r in TOPK]
    emb = F.relu(F.conv1d(X.transpose(1, 2), p['feature_embedding.0.weight'], p['feature_embedding.0.bias'], padding=1))
    att = torch.softmax(F.conv1d(emb, p['att_branch.weight'], p['att_branch.bias']).transpose(1, 2), dim=2)
    emb = emb.transpose(1, 2)
    sel = dr.dropout(torch.ones((B, T, 1)), 0.7, tags + 'select', time_major=True)
    cas = F.linear(dr.dropout(emb * sel, 0.7, tags + 'snippet_cls', time_major=True), p['snippet_cls.weight'], p['snippet_cls.bias'])
    o = dict(att=att, idx={}, emb=emb)
    for i, name in enumerate(['inst', 'cont', 'back']):
        a = att[:, :, i].unsqueeze(2)
        w = cas * a
        o['p_' + name] = torch.softmax(torch.sort(w, dim=1, descending=True)[0][:, :ks[i], :].mean(1), dim=1)
        if i == 0:
            o['inst_cas'] = torch.softmax(w, dim=2)
        idx = torch.sort(a, dim=1, descending=True)[1][:, :ks[i], :]
        o['idx'][name] = idx[:, :, 0]
        o['f_' + name] = torch.gather(emb, 1, idx.expand(-1, -1, emb.shape[2])).mean(1)
    return o


def losses(o, y):
    B = y.shape[0]
    lab = lambda yy, bg: (lambda l: l / l.sum(1, keepdim=True))(torch.hstack((yy, torch.full((B, 1), bg))))
    cls = lambda pp, l: -torch.mean(torch.sum(torch.log(pp) * l, dim=1))
    L = {'inst_loss': cls(o['p_inst'], lab(y, 0.0)), 'cont_loss': cls(o['p_cont'], lab(y, 1.0)),
         'back_loss': cls(o['p_back'], lab(torch.zeros_like(y), 1.0))}
    guide = torch.sum(torch.abs(1 - o['inst_cas'][:, :, -1] - o['att'][:, :, 0].detach()), dim=1).mean()
    ni, nc, nb = (torch.norm(o['f_' + n], p=2, dim=1) for n in ('inst', 'cont', 'back'))
    f1 = (MARGIN - ni + nc).clamp(min=0); f2 = (MARGIN - nc + nb).clamp(min=0)
    feat = torch.mean((f1 + f2 + nb) ** 2)
    sparse = torch.sum(o['att'][:, :, :2], dim=1).mean()
    L['guide_loss'] = LAMB[0] * guide; L['feat_loss'] = LAMB[1] * feat; L['sparse_loss'] = LAMB[2] * sparse
    return L


def total(L):
    return (L['inst_loss'] + L['cont_loss'] + L['back_loss']) + (L['guide_loss'] + L['feat_loss'] + L['sparse_loss'])


def dump(args):
    cfg, p, X, y, dr = dump_step_inputs(args, presets, init_params, pairs=False)
    o = forward(p, cfg, X, dr)
    L = losses(o, y)
    tot = total(L); tot.backward()
    extra = {f'mining/{n}_idx': idx for n, idx in o['idx'].items()}
    extra['mining/attention'] = o['att'].detach()
    write_dump(args.out, p, dict(features=X, labels=y), dr, L, tot,
               dict(method='acmnet', mask_layout='channel_first', topk=TOPK, lamb=LAMB, margin=MARGIN, seed=args.seed), extra)


def timing(args):
    cfg = presets(args.preset)
    gen = torch.Generator().manual_seed(0); dt = torch.float32
    p = init_params(cfg, gen, dt)
    time_training(args, p, lambda: (features(cfg, gen, dt), labels(cfg['B'], cfg['C'], gen, dt, pairs=False)),
                  lambda X, y: total(losses(forward(p, cfg, X, Draws(gen, dt, record=False)), y)),
                  lr=1e-4, weight_decay=5e-5)


if __name__ == '__main__':
    cli(dump, timing)
