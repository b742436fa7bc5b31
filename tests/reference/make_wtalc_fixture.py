#!/usr/bin/env python3
"""Writes a W-TALC-AP parity fixture: a prediction CSV in snippet units over the real THUMOS14 test
annotations and wtalc_ref.py's answer on it (expected.json). Predictions: jittered GT segments (mostly
whole snippet indices as W-TALC's own are, some fractional), wrong-class copies, random segments, copies
of ambiguous segments (dropped by the filter), scores rounded to two decimals (ties everywhere, which
numpy's argsort orders).

usage: make_wtalc_fixture.py ANN_DIR OUT_DIR [--rows N] [--seed S]
"""
import argparse, json, os, sys
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wtalc_ref

p = argparse.ArgumentParser()
p.add_argument('ann'); p.add_argument('out')
p.add_argument('--rows', type=int, default=3000); p.add_argument('--seed', type=int, default=11)
a = p.parse_args()
rng = np.random.default_rng(a.seed)
os.makedirs(a.out, exist_ok=True)
s = wtalc_ref.s
names = [s(x) for x in np.load(os.path.join(a.ann, 'videoname.npy'))]
subset = [s(x) for x in np.load(os.path.join(a.ann, 'subset.npy'))]
classes = [s(x) for x in np.load(os.path.join(a.ann, 'classlist.npy'))]
segments = np.load(os.path.join(a.ann, 'segments.npy'), allow_pickle=True)
labels = np.load(os.path.join(a.ann, 'labels.npy'), allow_pickle=True)
gt = [(names[i], float(g[0]) * wtalc_ref.FACTOR, float(g[1]) * wtalc_ref.FACTOR, classes.index(s(l)))
      for i in range(len(names)) if subset[i] == 'test' for g, l in zip(segments[i], labels[i])]
amb = [x for x in (l.strip('\n').split(' ') for l in open(os.path.join(a.ann, 'Ambiguous_test.txt'))) if x[0] in names]
videos = sorted({g[0] for g in gt})
rows = []
while len(rows) < a.rows:
    u = rng.random()
    if u < 0.65:
        v, gs, ge, c = gt[rng.integers(len(gt))]
        L = max(ge - gs, 1)
        st = gs + rng.normal(0, 0.25) * L; en = ge + rng.normal(0, 0.25) * L
        if rng.random() < 0.1: c = int(rng.integers(len(classes)))
    elif u < 0.72:
        x = amb[rng.integers(len(amb))]
        v, st, en, c = x[0], float(x[2]) * wtalc_ref.FACTOR, float(x[3]) * wtalc_ref.FACTOR + 2, int(rng.integers(len(classes)))
    else:
        v = videos[rng.integers(len(videos))]; c = int(rng.integers(len(classes)))
        st = rng.uniform(0, 3000); en = st + rng.uniform(2, 150)
    if rng.random() < 0.8:
        st, en = float(int(max(st, 0))), float(int(max(en, 0)))
    rows.append((v, round(max(st, 0.0), 3), round(max(en, 0.0), 3), c))
scores = np.round(rng.random(len(rows)), 2)
csv_path = os.path.join(a.out, 'predictions.csv')
with open(csv_path, 'w') as f:
    f.write('video-id,t-start,t-end,label,score\n')
    for k, (v, st, en, c) in enumerate(rows):
        f.write(f'{v},{st!r},{en!r},{classes[c] if k % 2 else c},{scores[k]!r}\n')
res = wtalc_ref.evaluate(a.ann, csv_path)
with open(os.path.join(a.out, 'expected.json'), 'w') as f:
    json.dump(res, f, indent=1)
print(json.dumps(res))
