#!/usr/bin/env python3
"""Writes the committed score-parity fixture: a prediction CSV over the real THUMOS14 test
annotations and the reference evaluator's answer on it (eval_ref.py).

The predictions mix jittered copies of GT segments (hits at every tIoU level), duplicates,
wrong-class copies, random segments, segments in videos with no GT of that class, label names and
label indices. Scores are distinct, so the reference's unstable argsort order is well defined.

With --ties the set is made to hit the reference's sort orders instead: scores rounded to two
decimals (many ties), zero-length predictions (some exactly on zero-length GT, where tIoU is 0/0),
predictions in videos without any test GT (validation videos), and an annotation copy (OUT_DIR/annotations) whose test
videos also hold duplicated GT segments and zero-length GT segments. The answer is scored on that copy.

usage: make_score_fixture.py ANN_DIR OUT_DIR [--rows N] [--seed S] [--ties]
"""
import argparse, json, os, shutil, sys
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eval_ref

p = argparse.ArgumentParser()
p.add_argument('ann'); p.add_argument('out')
p.add_argument('--rows', type=int, default=4000); p.add_argument('--seed', type=int, default=7)
p.add_argument('--ties', action='store_true')
a = p.parse_args()
rng = np.random.default_rng(a.seed)
os.makedirs(a.out, exist_ok=True)
if a.ties:
    # duplicated and zero-length GT in a copy of the annotations (seconds; 25/16 snippets a second)
    ann = os.path.join(a.out, 'annotations')
    shutil.copytree(a.ann, ann, dirs_exist_ok=True)
    subset = np.load(os.path.join(ann, 'subset.npy'), allow_pickle=True)
    segs = np.load(os.path.join(ann, 'segments.npy'), allow_pickle=True)
    labs = np.load(os.path.join(ann, 'labels.npy'), allow_pickle=True)
    test = [i for i in range(len(subset)) if (subset[i].decode() if isinstance(subset[i], bytes) else subset[i]) == 'test' and len(segs[i])]
    for i in rng.choice(test, 40, replace=False):
        segs[i] = list(segs[i]); labs[i] = list(labs[i])
        j = int(rng.integers(len(segs[i])))
        if rng.random() < 0.5:
            segs[i].append(list(segs[i][j])); labs[i].append(labs[i][j])                  # a duplicate
        else:
            t = float(segs[i][j][0]); segs[i].append([t, t + 0.1]); labs[i].append(labs[i][j])   # rounds to zero length
    np.save(os.path.join(ann, 'segments.npy'), segs, allow_pickle=True)
    np.save(os.path.join(ann, 'labels.npy'), labs, allow_pickle=True)
    a.ann = ann
classes, gv, gs, ge, gl = eval_ref.load_gt(a.ann)
videos = sorted(set(gv))
names = [x.decode() if isinstance(x, bytes) else str(x) for x in np.load(os.path.join(a.ann, 'videoname.npy'), allow_pickle=True)]
no_gt = sorted(set(names) - set(gv))               # the validation videos: in the annotations, no test GT
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
    if a.ties and rng.random() < 0.15:
        if u < 0.6 and ge[i] == gs[i]: s = e = gs[i]                 # zero length on a zero-length GT
        elif rng.random() < 0.5: e = s                                # zero length
        else: v = no_gt[rng.integers(len(no_gt))]                      # a video without any GT
    rows.append((v, round(s, 3), round(e, 3), c))
    if rng.random() < 0.05: rows.append(rows[-1])                  # an exact duplicate
rows = rows[:a.rows]
scores = rng.permutation(len(rows)) / len(rows) + rng.uniform(0, 1e-4, len(rows))
if a.ties: scores = np.round(scores, 2)
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
