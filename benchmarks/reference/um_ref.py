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
import argparse, json, os, time
import numpy as np
import torch
import torch.nn.functional as F
from pvlr_ref import blas_gflops, blas_library      # which BLAS torch runs on, and its matmul rate

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


class Draws:
    def __init__(self, gen, dtype, record):
        self.gen, self.dtype, self.record, self.items = gen, dtype, record, []

    def dropout(self, x, p, tag):
        keep = (torch.rand(x.shape, generator=self.gen) >= p).to(self.dtype) / (1 - p)
        if self.record:
            self.items.append((tag, keep))
        return x * keep


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


def make_batch(cfg, gen, dtype):
    B, T, C = cfg['B'], cfg['T'], cfg['C']
    X = torch.randn((B, T, cfg['F']), generator=gen).float().to(dtype)
    y = torch.zeros((B, C), dtype=dtype)
    for b in range(B):
        y[b, torch.randint(0, C, (1,), generator=gen)] = 1
    y[0, (int(y[0].argmax()) + 1) % C] = 1                       # a video with two labels
    return X, y


def save(path, t):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, t.detach().cpu().numpy() if torch.is_tensor(t) else t)


def dump(args):
    cfg = presets(args.preset); torch.set_default_dtype(torch.float64)
    gen = torch.Generator().manual_seed(args.seed); dt = torch.float64
    p = init_params(cfg, gen, dt)
    X, y = make_batch(cfg, gen, dt)
    dr = Draws(gen, dt, record=True)
    o = forward(p, cfg, X, dr)
    L = losses(o, y)
    total = sum(L.values()); total.backward()
    out = args.out
    for k, v in p.items():
        save(f'{out}/weights/{k}.npy', v.float())
        save(f'{out}/grads/{k}.npy', v.grad)
    save(f'{out}/inputs/features.npy', X.float()); save(f'{out}/inputs/labels.npy', y.float())
    for tag, t in dr.items:
        save(f'{out}/random/{tag}.npy', t.float())
    save(f'{out}/mining/act_idx.npy', o['idx_act']); save(f'{out}/mining/bkg_idx.npy', o['idx_bkg'])
    save(f'{out}/mining/magnitudes.npy', o['mag'])                   # float64 (B,T): what was sorted
    vals = {k: float(v) for k, v in L.items()}; vals['total_loss'] = float(total)
    with open(f'{out}/losses.json', 'w') as f:
        json.dump(vals, f, indent=1)
    meta = dict(method='um', random_order=[t for t, _ in dr.items], mask_layout='channel_first', r_act=cfg['r_act'], r_bkg=cfg['r_bkg'],
                alpha=ALPHA, beta=BETA, margin=MARGIN, dtype='float64 compute, float32 inputs', seed=args.seed)
    with open(f'{out}/meta.json', 'w') as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(vals))


def timing(args):
    cfg = presets(args.preset); torch.set_num_threads(args.threads or os.cpu_count())
    gen = torch.Generator().manual_seed(0); dt = torch.float32
    p = init_params(cfg, gen, dt)
    opt = torch.optim.Adam(list(p.values()), lr=1e-4, betas=(0.9, 0.999), weight_decay=5e-4)
    times = []
    for s in range(args.warmup + args.steps):
        X, y = make_batch(cfg, gen, dt)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        sum(losses(forward(p, cfg, X, Draws(gen, dt, record=False)), y).values()).backward()
        opt.step()
        if s >= args.warmup:
            times.append(time.perf_counter() - t0)
    print(json.dumps(dict(preset=args.preset, threads=torch.get_num_threads(), steps=len(times),
                          seconds_per_step=float(np.median(times)), all=times, torch=torch.__version__,
                          blas=blas_library(), blas_gflops=blas_gflops(), openblas_coretype=os.environ.get('OPENBLAS_CORETYPE'))))


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    sp = ap.add_subparsers(dest='mode', required=True)
    d = sp.add_parser('dump'); d.add_argument('out'); d.add_argument('--preset', default='replay'); d.add_argument('--seed', type=int, default=5)
    t = sp.add_parser('time'); t.add_argument('--preset', default='paper'); t.add_argument('--steps', type=int, default=1)
    t.add_argument('--warmup', type=int, default=0); t.add_argument('--threads', type=int, default=0)
    a = ap.parse_args()
    dump(a) if a.mode == 'dump' else timing(a)
