#!/usr/bin/env python3
"""Soft-NMS fixtures: proposal lists with tied scores and overlapping boxes, and what a restatement of
PVLR's utils/wsad_utils.py soft_nms (gaussian, sigma 0.2) emits for each: np.argmax picks the row,
rows 0 and argmax swap, row 0 is emitted and dropped, the others decay by exp(-iou^2 / sigma) with +1
lengths.

  boxes.npy    (N, 4) float64 rows [class, score, t_start, t_end], lists concatenated
  lengths.npy  (L,) int32, each list's length
  expected.npy (N, 4) float64, the emitted rows, lists concatenated

usage: make_softnms_fixture.py OUT_DIR [--lists L] [--seed S]
"""
import argparse, os
import numpy as np


def soft_nms(dets, sigma=0.2):
    dets = np.array(dets)
    areas = dets[:, 3] - dets[:, 2] + 1
    dets = np.concatenate((dets, areas[:, None]), axis=1)
    out = []
    while dets.size > 0:
        m = np.argmax(dets[:, 1], axis=0)
        dets[[0, m], :] = dets[[m, 0], :]
        out.append(dets[0, :-1].tolist())
        xx1 = np.maximum(dets[0, 2], dets[1:, 2])
        xx2 = np.minimum(dets[0, 3], dets[1:, 3])
        inter = np.maximum(xx2 - xx1 + 1, 0.0)
        iou = inter / (dets[0, -1] + dets[1:, -1] - inter)
        dets[1:, 1] *= np.exp(-(iou * iou) / sigma)
        dets = dets[1:, :]
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument('out'); p.add_argument('--lists', type=int, default=120); p.add_argument('--seed', type=int, default=3)
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)
    boxes, lengths, expected = [], [], []
    for _ in range(a.lists):
        n = int(rng.integers(1, 40))
        s = rng.integers(0, 60, n).astype(float)
        rows = np.stack([np.zeros(n), np.round(rng.random(n), 1), s, s + 1 + rng.integers(0, 20, n)], 1)
        far = rng.random(n) < 0.3
        rows[far, 2] += 1000 * np.arange(1, far.sum() + 1); rows[far, 3] += 1000 * np.arange(1, far.sum() + 1)
        boxes.append(rows); lengths.append(n); expected.append(np.array(soft_nms(rows.tolist())))
    os.makedirs(a.out, exist_ok=True)
    np.save(os.path.join(a.out, 'boxes.npy'), np.concatenate(boxes))
    np.save(os.path.join(a.out, 'lengths.npy'), np.array(lengths, dtype=np.int32))
    np.save(os.path.join(a.out, 'expected.npy'), np.concatenate(expected))


if __name__ == '__main__':
    main()
