#!/usr/bin/env python3
"""Writes OUT/videos.npz-like .npy files and OUT/expected.json: UM's test-time post-processing
(Pilhyeon/WTAL-Uncertainty-Modeling test.py:37-127 and utils.py, restated here with numpy, scipy and torch)
on random raw CAS and feature magnitudes of a few videos, so the C# UmProposals can be compared with it.

Usage: make_um_post_fixture.py OUT [--seed S]. Needs Debian's python3-torch, numpy and scipy.
Nothing here is the original code.
"""
import argparse, json, os
import numpy as np
import torch
from oic_ref import collect, detections, upgrade_resolution, proposal_oic

C, R_ACT, R_BKG, CLASS_TH, SCALE, FPS = 20, 9, 4, 0.2, 24, 25


def minmax_norm(act_map, min_val=None, max_val=None):
    if min_val is None or max_val is None:
        max_val = torch.relu(torch.max(act_map, dim=1)[0])
        min_val = torch.relu(torch.min(act_map, dim=1)[0])
    delta = max_val - min_val
    delta[delta <= 0] = 1
    ret = (act_map - min_val) / delta
    ret[ret > 1] = 1
    ret[ret < 0] = 0
    return ret


def post(cas_raw, mag, v_len):
    n = cas_raw.shape[0]; k_act, k_bkg = n // R_ACT, n // R_BKG
    cas = torch.from_numpy(cas_raw)[None]; feat_mag = torch.from_numpy(mag)[None]
    score_act = torch.softmax(cas.sort(descending=True, dim=1)[0][:, :k_act].mean(1), 1)
    idx_act = feat_mag.sort(descending=True, dim=1)[1][:, :k_act]
    idx_bkg = (feat_mag.max(1, keepdim=True)[0] - feat_mag).sort(descending=True, dim=1)[1][:, :k_bkg]
    m_act = torch.gather(feat_mag, 1, idx_act).mean(1); m_bkg = torch.gather(feat_mag, 1, idx_bkg).mean(1)
    fm = minmax_norm(feat_mag, max_val=m_act, min_val=m_bkg)
    fm = fm.repeat((C, 1, 1)).permute(1, 2, 0)
    cas_n = minmax_norm(torch.softmax(cas, 2) * fm)
    score = score_act[0].numpy()
    pred = np.where(score >= CLASS_TH)[0]
    if len(pred) == 0:
        pred = np.array([np.argmax(score)])
    cas_pred = upgrade_resolution(np.reshape(cas_n[0].numpy()[:, pred], (n, -1, 1)), SCALE)
    fm_np = upgrade_resolution(np.reshape(fm[0].numpy()[:, pred], (n, -1, 1)), SCALE)
    t_factor = (16 * v_len) / (SCALE * n * FPS)
    pd = {}
    for th in np.arange(0.0, 0.25, 0.025):
        ct = cas_pred.copy(); ct[np.where(ct[:, :, 0] < th)] = 0
        seg = [np.where(ct[:, c, 0] > 0) for c in range(len(pred))]
        collect(pd, proposal_oic(seg, ct[:, :, 0], pred, score, t_factor, 0.25, 0.2))
    for th in np.arange(0.4, 0.625, 0.025):
        ct = cas_pred.copy(); ft = fm_np.copy(); ft[np.where(ft[:, :, 0] < th)] = 0
        seg = [np.where(ft[:, c, 0] > 0) for c in range(len(pred))]
        collect(pd, proposal_oic(seg, ct[:, :, 0], pred, score, t_factor, 0.25, 0.2))
    return detections(pd, 0.6), score.tolist()


def main():
    ap = argparse.ArgumentParser(); ap.add_argument('out'); ap.add_argument('--seed', type=int, default=1)
    a = ap.parse_args(); os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(a.seed); expected = []
    for v, (n, v_len) in enumerate([(40, 40), (75, 300), (19, 19), (120, 750)]):
        t = np.arange(n)
        cas = (rng.normal(size=(n, C)) + 3 * np.exp(-((t[:, None] - n / 3) / (n / 8)) ** 2) * (np.arange(C) == v)).astype(np.float32)
        mag = (5 + 20 * np.exp(-((t - n / 3) / (n / 6)) ** 2) + rng.normal(size=n)).astype(np.float32)
        np.save(f'{a.out}/cas{v}.npy', cas); np.save(f'{a.out}/mag{v}.npy', mag)
        dets, score = post(cas, mag, v_len)
        expected.append(dict(video=v, t=v_len, detections=dets, scores=score))
    with open(f'{a.out}/expected.json', 'w') as f:
        json.dump(expected, f, indent=1)


if __name__ == '__main__':
    main()
