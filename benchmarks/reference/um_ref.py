#!/usr/bin/env python3
"""Our own PyTorch restatement of one UM training step (Pilhyeon/WTAL-Uncertainty-Modeling model.py and
train.py: the CAS module, the magnitude-based selection through a dropout mask on ones, the BCE
classification and background-entropy losses and the uncertainty (magnitude) loss), written from the
original's semantics. Two uses:

  dump OUT  [--seed S] [--preset replay]   one step in float64 at small shapes, in the layout that
                                           `pvlr replay --method um` reads (weights/, inputs/, random/,
                                           mining/, losses.json, grads/, meta.json).
  time      [--preset paper] [--steps N]   times full steps (forward, loss, backward, Adam) in float32
                                           and prints one JSON line {"seconds_per_step": ...}.

Needs Debian's python3-torch (1.13) and numpy. Nothing here is the original code.
"""
import torch
import torch.nn.functional as F
from refcommon import Draws, cli, dump_step_inputs, features, labels, time_training, write_dump

ALPHA, BETA, MARGIN = 0.0005, 1.0, 100.0             # options.py:14-16
LOSS_NAMES = ["cls_loss", "um_loss", "be_loss"]


def presets(name):
    paper = dict(B=16, T=750, F=2048, H=2048, C=20, r_act=9, r_bkg=4)     # config.py, options.py
    if name == 'paper':
        return paper
    if name == 'demo':
        return dict(paper, T=320, F=256, H=256)
    if name == 'replay':
        return dict(paper, B=4, T=40, F=32, H=24)
    raise SystemExit(f'unknown preset {name}')


def init_params(cfg, gen, dtype):
    """PyTorch's default Conv1d init: U(+-1/sqrt(fan_in)) weights and biases; the classifier has no bias."""
    F_, H, C = cfg['F'], cfg['H'], cfg['C']
    U = lambda shape, fan_in: (torch.rand(shape, generator=gen) * 2 - 1) / fan_in ** 0.5
    p = {'cas_module.conv.0.weight': U((H, F_, 3), F_ * 3), 'cas_module.conv.0.bias': U((H,), F_ * 3),
         'cas_module.classifier.0.weight': U((C, H, 1), H)}
    out = {}
    for k, v in p.items():
        t = v.float().to(dtype); t.requires_grad_(True); out[k] = t
    return out


def forward(p, cfg, X, dr):
    """Model.forward (model.py:56-97); the selection runs on the dropout mask of a tensor of ones."""
    T = X.shape[1]; k_act = int(T // cfg['r_act']); k_bkg = int(T // cfg['r_bkg'])
    out = F.relu(F.conv1d(X.transpose(1, 2), p['cas_module.conv.0.weight'], p['cas_module.conv.0.bias'], padding=1))
    features = out.transpose(1, 2)
    out = dr.dropout(out, 0.7, 'cas_module.drop_out')
    cas = F.conv1d(out, p['cas_module.classifier.0.weight']).transpose(1, 2)
    mag = torch.norm(features, p=2, dim=2)
    select = dr.dropout(torch.ones_like(mag), 0.7, 'drop_out')
    mag_drop = mag * select
    rev_drop = (torch.max(mag, dim=1, keepdim=True)[0] - mag) * select
    idx_act = mag_drop.sort(descending=True, dim=1)[1][:, :k_act]
    idx_bkg = rev_drop.sort(descending=True, dim=1)[1][:, :k_bkg]
    feat_act = torch.gather(features, 1, idx_act.unsqueeze(2).expand(-1, -1, features.shape[2]))
    feat_bkg = torch.gather(features, 1, idx_bkg.unsqueeze(2).expand(-1, -1, features.shape[2]))
    score_act = torch.softmax(cas.sort(descending=True, dim=1)[0][:, :k_act].mean(1), 1)
    score_bkg = torch.softmax(torch.gather(cas, 1, idx_bkg.unsqueeze(2).expand(-1, -1, cas.shape[2])).mean(1), 1)
    return dict(score_act=score_act, score_bkg=score_bkg, feat_act=feat_act, feat_bkg=feat_bkg,
                idx_act=idx_act, idx_bkg=idx_bkg, mag=mag.detach(), cas=cas)


def losses(o, y):
    """UM_loss (train.py:5-37), each term with its weight."""
    yn = y / y.sum(1, keepdim=True)
    cls = F.binary_cross_entropy(o['score_act'], yn)
    be = F.binary_cross_entropy(o['score_bkg'], torch.ones_like(yn) / yn.shape[1])
    act = MARGIN - torch.norm(o['feat_act'].mean(1), p=2, dim=1)
    act = act.clamp(min=0)
    bkg = torch.norm(o['feat_bkg'].mean(1), p=2, dim=1)
    um = ((act + bkg) ** 2).mean()
    return {'cls_loss': cls, 'um_loss': ALPHA * um, 'be_loss': BETA * be}


def dump(args):
    cfg, p, X, y, dr = dump_step_inputs(args, presets, init_params, pairs=False)
    o = forward(p, cfg, X, dr)
    L = losses(o, y)
    total = sum(L.values()); total.backward()
    write_dump(args.out, p, dict(features=X, labels=y), dr, L, total,
               dict(method='um', mask_layout='channel_first', r_act=cfg['r_act'], r_bkg=cfg['r_bkg'], alpha=ALPHA, beta=BETA,
                    margin=MARGIN, seed=args.seed),
               {'mining/act_idx': o['idx_act'], 'mining/bkg_idx': o['idx_bkg'], 'mining/magnitudes': o['mag']})


def timing(args):
    cfg = presets(args.preset)
    gen = torch.Generator().manual_seed(0); dt = torch.float32
    p = init_params(cfg, gen, dt)
    time_training(args, p, lambda: (features(cfg, gen, dt), labels(cfg['B'], cfg['C'], gen, dt, pairs=False)),
                  lambda X, y: sum(losses(forward(p, cfg, X, Draws(gen, dt, record=False)), y).values()),
                  lr=1e-4, betas=(0.9, 0.999), weight_decay=5e-4)


if __name__ == '__main__':
    cli(dump, timing)
