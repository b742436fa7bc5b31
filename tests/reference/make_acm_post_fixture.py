#!/usr/bin/env python3
"""Writes OUT/cas<v>.npy, OUT/att<v>.npy and OUT/expected.json: ACM-Net's THUMOS14 test-time
post-processing (ispc-lab/ACM-Net main_thu.py:160-266 and utils/net_evaluation.py, restated here with
numpy, scipy and torch) on random CAS x a_inst and instance attention of a few videos, so the C#
AcmNetProposals can be compared with it.

Usage: make_acm_post_fixture.py OUT [--seed S]. Needs Debian's python3-torch, numpy and scipy.
Nothing here is the original code.
"""
import argparse, json, os
import numpy as np
import torch
from oic_ref import collect, detections, upgrade_resolution, proposal_oic

C, INS_TOPK, CLS_TH, SCALE, NMS_TH = 20, 8, 0.25, 20, 0.55


def post(cas_w, att, vid_len):
    n = cas_w.shape[0]; k = max(n // INS_TOPK, 1)
    w = torch.from_numpy(cas_w)[None]; a = torch.from_numpy(att)[None, :, None]
    p_inst = torch.softmax(torch.sort(w, dim=1, descending=True)[0][:, :k, :].mean(1), dim=1)
    temp_cas = torch.softmax(w, dim=2)
    t_factor = (16 * vid_len) / (25 * SCALE * n)
    score = p_inst[:, :C].numpy().reshape(-1)
    cls_scores = np.reshape(temp_cas[:, :, :C].numpy(), (n, C, 1))
    att_ins = np.reshape(a.expand([-1, -1, C]).numpy(), (n, C, 1))
    pred = np.array(np.where(score > CLS_TH)[0]) if score.max() > CLS_TH else np.array([np.argmax(score)])
    cls_up = upgrade_resolution(cls_scores[:, pred], SCALE); att_up = upgrade_resolution(att_ins[:, pred], SCALE)
    pd = {}
    for th in np.arange(0.15, 0.25, 0.05):
        t = cls_up.copy(); t[np.where(t < th)] = 0
        seg = [np.where(t[:, c] >= th) for c in range(len(pred))]
        collect(pd, proposal_oic(seg, (1.0 * t + 0.0 * att_up)[:, :, 0], pred, score, t_factor, 0.2, 0.0))
    for th in np.arange(0.15, 1.00, 0.05):
        t = att_up.copy(); t[np.where(t < th)] = 0
        seg = [np.where(t[:, c] >= th) for c in range(len(pred))]
        collect(pd, proposal_oic(seg, (1.0 * cls_up + 0.0 * t)[:, :, 0], pred, score, t_factor, 0.2, 0.0))
    return detections(pd, NMS_TH), score.tolist()


def main():
    ap = argparse.ArgumentParser(); ap.add_argument('out'); ap.add_argument('--seed', type=int, default=1)
    a = ap.parse_args(); os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(a.seed); expected = []
    for v, (n, v_len) in enumerate([(40, 40), (75, 300), (19, 19), (120, 750)]):
        t = np.arange(n); bump = np.exp(-((t - n / 3) / (n / 8)) ** 2)
        att = (0.1 + 0.8 * bump + 0.05 * rng.random(n)).clip(0, 1).astype(np.float32)
        cas = ((rng.normal(size=(n, C + 1)) + 4 * bump[:, None] * (np.arange(C + 1) == v)) * att[:, None]).astype(np.float32)
        np.save(f'{a.out}/cas{v}.npy', cas); np.save(f'{a.out}/att{v}.npy', att)
        dets, score = post(cas, att, v_len)
        expected.append(dict(video=v, t=v_len, detections=dets, scores=score))
    with open(f'{a.out}/expected.json', 'w') as f:
        json.dump(expected, f, indent=1)


if __name__ == '__main__':
    main()
