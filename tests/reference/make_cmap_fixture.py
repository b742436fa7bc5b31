#!/usr/bin/env python3
"""Classification mAP fixtures: video scores with many ties and multi-hot labels, and the answer of a
restatement of PVLR's eval/classificationMAP.py (getAP / getClassificationMAP), which sorts with
np.argsort(-conf) and sums float32 precisions.

  scores.npy  (V, C+1) float32, softmax-like rows rounded to 2 decimals, so most columns hold ties
  labels.npy  (V, C) float64 multi-hot (every class has positives)
  expected.json {"cmap": ...}

usage: make_cmap_fixture.py OUT_DIR [--videos V] [--classes C] [--seed S]
"""
import argparse, json, os
import numpy as np


def get_ap(conf, labels):
    sortind = np.argsort(-conf)
    tp = labels[sortind] == 1; fp = labels[sortind] != 1
    npos = np.sum(labels)
    fp = np.cumsum(fp).astype('float32'); tp = np.cumsum(tp).astype('float32')
    prec = tp / (fp + tp)
    tmp = (labels[sortind] == 1).astype('float32')
    return np.sum(tmp * prec) / npos


def cmap(confidence, labels):
    ap = [get_ap(confidence[:, i], labels[:, i]) for i in range(np.shape(labels)[1])]
    return 100 * sum(ap) / len(ap)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('out'); p.add_argument('--videos', type=int, default=212)
    p.add_argument('--classes', type=int, default=20); p.add_argument('--seed', type=int, default=5)
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)
    labels = np.zeros((a.videos, a.classes))
    labels[np.arange(a.videos), rng.integers(0, a.classes, a.videos)] = 1
    labels[rng.random((a.videos, a.classes)) < 0.05] = 1
    labels[:a.classes, :] = np.maximum(labels[:a.classes, :], np.eye(a.classes))
    logits = rng.standard_normal((a.videos, a.classes + 1)) + 2 * np.hstack([labels, np.zeros((a.videos, 1))])
    e = np.exp(logits); scores = np.round(e / e.sum(1, keepdims=True), 2).astype(np.float32)
    os.makedirs(a.out, exist_ok=True)
    np.save(os.path.join(a.out, 'scores.npy'), scores)
    np.save(os.path.join(a.out, 'labels.npy'), labels)
    with open(os.path.join(a.out, 'expected.json'), 'w') as f:
        json.dump({'cmap': float(cmap(scores, labels))}, f)


if __name__ == '__main__':
    main()
