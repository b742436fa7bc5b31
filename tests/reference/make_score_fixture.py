#!/usr/bin/env python3
"""Writes the committed score-parity fixture: a prediction CSV over the real THUMOS14 test
annotations and the reference evaluator's answer on it (eval_ref.py).

The predictions mix jittered copies of GT segments (hits at every tIoU level), duplicates,
wrong-class copies, random segments, segments in videos with no GT of that class, label names and
label indices. Scores are distinct, so the reference's unstable argsort order is well defined.

usage: make_score_fixture.py ANN_DIR OUT_DIR [--rows N] [--seed S]
"""
import argparse, json, os, sys
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eval_ref

p = argparse.ArgumentParser()
p.add_argument('ann'); p.add_argument('out')
p.add_argument('--rows', type=int, default=4000); p.add_argument('--seed', type=int, default=7)
a = p.parse_args()
rng = np.random.default_rng(a.seed)
classes, gv, gs, ge, gl = eval_ref.load_gt(a.ann)
videos = sorted(set(gv))
rows = []
while len(rows) < a.rows:
    u = rng.random()
    if u < 0.6:                       # a jittered GT segment
        i = rng.integers(len(gv)); L = ge[i] - gs[i]
        s = gs[i] + rng.normal(0, 0.3) * L; e = ge[i] + rng.normal(0, 0.3) * L
        v, c = gv[i], gl[i]
        if rng.random() < 0.1: c = rng.integers(len(classes))      # wrong class
    else:                             # a random segment anywhere
        v = videos[rng.integers(len(videos))]; c = rng.integers(len(classes))
        s = rng.uniform(0, 2000); e = s + rng.uniform(1, 100)
    if e <= s: e = s + 1
    rows.append((v, round(s, 3), round(e, 3), c))
    if rng.random() < 0.05: rows.append(rows[-1])                  # an exact duplicate
rows = rows[:a.rows]
scores = rng.permutation(len(rows)) / len(rows) + rng.uniform(0, 1e-4, len(rows))
os.makedirs(a.out, exist_ok=True)
csv_path = os.path.join(a.out, 'predictions.csv')
with open(csv_path, 'w') as f:
    f.write('video-id,t-start,t-end,label,score\n')
    for k, (v, s, e, c) in enumerate(rows):
        label = classes[c] if k % 2 == 0 else str(c)
        f.write(f'{v},{s!r},{e!r},{label},{scores[k]!r}\n')
res = eval_ref.evaluate(a.ann, csv_path)
with open(os.path.join(a.out, 'expected.json'), 'w') as f:
    json.dump(res, f, indent=1)
print(json.dumps(res))
