#!/usr/bin/env python3
"""Our own PyTorch restatement of one CO2-Net training step (harlanhong/MM2021-CO2-Net model.py:23-152, the
CO2 model with the BWA_fusion_dropout_feat_v2 modules, as run.sh trains it), written from the original's
semantics, channel-first like the original. The ActivityNet presets restate ANT_CO2 (model.py:222-260): the same
network with its four outputs smoothed by AvgPool1d((T // t) // 2 * 2 + 1, 1, padding k // 2,
count_include_pad=True) (model.py:239-241, 256-259) and the mutual loss summed unweighted. Two uses:

  dump OUT  [--seed S] [--preset replay|anet-replay]   one step in float64 at small shapes, in the layout that
                                           `pvlr replay --method co2net` reads (weights/, inputs/,
                                           random/, losses.json, grads/, meta.json).
  time      [--preset paper] [--steps N]   times full steps (forward, loss, backward, Adam) in float32
                                           and prints one JSON line {"seconds_per_step": ...}.

Needs Debian's python3-torch (1.13) and numpy. Nothing here is the original code.
"""
import torch
import torch.nn.functional as F
from refcommon import Draws, cli, dump_step_inputs, features, labels, time_training, write_dump
# PVLR's loss.py copies CO2-Net's topkloss and Contrastive (model.py:154-212): one restatement serves both
from pvlr_ref import coactivity as contrastive, topk_mil

ALPHA = dict(alpha1=0.8, alpha2=0.8, alpha3=1.0, alpha4=1.0)          # options.py:45-48
LOSS_NAMES = ["mil_loss", "mil_supp_loss", "contrastive_loss", "mutual_loss", "norm_loss", "guide_loss"]


def presets(name):
    paper = dict(B=10, T=500, F=2048, A=512, C=20, k=7)                 # run.sh: --max-seqlen 500 --k 7
    if name == 'paper':
        return paper
    if name == 'demo':
        return dict(paper, T=320, F=256, A=64)
    if name == 'replay':
        return dict(paper, T=32, F=32, A=8)
    anet = dict(B=10, T=60, F=2048, A=512, C=100, k=5, t=5)            # run.sh: ANT_CO2 --k 5 --max-seqlen 60
    if name == 'anet':
        return anet
    if name == 'anet-replay':
        return dict(anet, T=24, F=32, A=8, C=20)                         # AvgPool1d of (24 // 5) // 2 * 2 + 1 = 5 taps
    raise SystemExit(f'unknown preset {name}')


def init_params(cfg, gen, dtype):
    """model.py:13-21: kaiming_uniform_ weights (bound sqrt(6/fan_in)), zero biases."""
    p = {}
    H, A, Fd, C = cfg['F'] // 2, cfg['A'], cfg['F'], cfg['C']

    def conv(name, cout, cin, k):
        p[name + '.weight'] = (torch.rand((cout, cin, k), generator=gen) * 2 - 1) * (6 / (cin * k)) ** 0.5
        p[name + '.bias'] = torch.zeros(cout)
    for m in ('vAttn', 'fAttn'):
        conv(f'{m}.bit_wise_attn.0', H, H, 3); conv(f'{m}.channel_conv.0', H, H, 3)
        conv(f'{m}.attention.0', A, H, 3); conv(f'{m}.attention.3', A, A, 3); conv(f'{m}.attention.5', 1, A, 1)
    conv('feat_encoder.0', Fd, Fd, 3)                                   # defined, never called in forward
    conv('fusion.0', Fd, Fd, 1)
    conv('classifier.1', Fd, Fd, 3); conv('classifier.4', C + 1, Fd, 1)
    out = {}
    for k, v in p.items():
        t = v.float().to(dtype)
        t.requires_grad_(True)
        out[k] = t
    return out


def lrelu(x):
    return F.leaky_relu(x, 0.2)


def bwa(p, m, V, Fx, dr):
    """BWA_fusion_dropout_feat_v2 (model.py:23-45): V the module's own modality, Fx the other one."""
    conv = lambda x, n, pad=1: F.conv1d(x, p[f'{m}.{n}.weight'], p[f'{m}.{n}.bias'], padding=pad)
    ca = dr.dropout(lrelu(conv(V.mean(2, keepdim=True), 'channel_conv.0')), 0.5, f'{m}.channel_conv')
    bw = dr.dropout(lrelu(conv(Fx, 'bit_wise_attn.0')), 0.5, f'{m}.bit_wise_attn')
    ff = torch.sigmoid(bw * ca) * V
    h1 = dr.dropout(lrelu(conv(ff, 'attention.0')), 0.5, f'{m}.attention.2')
    h2 = lrelu(conv(h1, 'attention.3'))
    a = dr.dropout(conv(h2, 'attention.5', pad=0), 0.5, f'{m}.attention.6')
    return torch.sigmoid(a), ff


def forward(p, cfg, X, dr):
    """CO2.forward (model.py:74-92)."""
    H = cfg['F'] // 2; x = X.transpose(1, 2)
    v_atn, vfeat = bwa(p, 'vAttn', x[:, :H], x[:, H:], dr)
    f_atn, ffeat = bwa(p, 'fAttn', x[:, H:], x[:, :H], dr)
    attn = (f_atn + v_atn) / 2
    nfeat = dr.dropout(lrelu(F.conv1d(torch.cat([vfeat, ffeat], 1), p['fusion.0.weight'], p['fusion.0.bias'])), 0.7, 'fusion')
    h = dr.dropout(nfeat, 0.7, 'classifier.0')
    h = dr.dropout(lrelu(F.conv1d(h, p['classifier.1.weight'], p['classifier.1.bias'], padding=1)), 0.7, 'classifier.3')
    cas = F.conv1d(h, p['classifier.4.weight'], p['classifier.4.bias'])
    if cfg.get('t'):
        k = (cfg['T'] // cfg['t']) // 2 * 2 + 1
        pool = lambda z: F.avg_pool1d(z, k, 1, padding=k // 2, count_include_pad=True)
        cas, attn, f_atn, v_atn = pool(cas), pool(attn), pool(f_atn), pool(v_atn)
    return dict(feat=nfeat.transpose(1, 2), cas=cas.transpose(1, 2), attn=attn.transpose(1, 2),
                v_atn=v_atn.transpose(1, 2), f_atn=f_atn.transpose(1, 2))


def losses(o, y, cfg):
    """CO2.criterion (model.py:103-152), each term with its weight."""
    S, A, Av, Af = o['cas'], o['attn'], o['v_atn'], o['f_atn']
    mn = S.min(-1, keepdim=True)[0]
    Ssup = A * (S - mn) + mn
    pbg = S.softmax(-1)[..., [-1]]
    L = {}
    L['mil_loss'] = topk_mil(S, y, True, cfg['k'])
    L['mil_supp_loss'] = topk_mil(Ssup, y, False, cfg['k'])
    L['contrastive_loss'] = ALPHA['alpha3'] * contrastive(o['feat'], Ssup, y)
    mutual = 0.5 * F.mse_loss(Av, Af.detach()) + 0.5 * F.mse_loss(Af, Av.detach())
    L['mutual_loss'] = mutual if cfg.get('t') else ALPHA['alpha4'] * mutual          # ANT_CO2: unweighted
    L['norm_loss'] = ALPHA['alpha1'] * (A.mean() + Av.mean() + Af.mean()) / 3
    L['guide_loss'] = ALPHA['alpha2'] * sum((1 - a - pbg).abs().mean() for a in (A, Av, Af)) / 3
    return L


def dump(args):
    cfg, p, X, y, dr = dump_step_inputs(args, presets, init_params, pairs=True)
    L = losses(forward(p, cfg, X, dr), y, cfg)
    total = sum(L.values()); total.backward()
    write_dump(args.out, p, dict(features=X, labels=y), dr, L, total,
               dict(method='co2net', mask_layout='channel_first', k=cfg['k'], alpha=ALPHA, seed=args.seed,
                    **({'pool_t': cfg['t']} if cfg.get('t') else {}),
                    layouts='dropout masks in the channel-first layout of the tensor they multiply'))


def timing(args):
    cfg = presets(args.preset)
    gen = torch.Generator().manual_seed(0); dt = torch.float32
    p = init_params(cfg, gen, dt)
    p['feat_encoder.0.weight'].requires_grad_(False); p['feat_encoder.0.bias'].requires_grad_(False)
    time_training(args, p, lambda: (features(cfg, gen, dt), labels(cfg['B'], cfg['C'], gen, dt, pairs=True)),
                  lambda X, y: sum(losses(forward(p, cfg, X, Draws(gen, dt, record=False)), y, cfg).values()),
                  lr=5e-5, weight_decay=1e-3)


if __name__ == '__main__':
    cli(dump, timing)
