#!/usr/bin/env python3
"""A restatement of ActivityNet's detection evaluator (ActivityNet Evaluation/eval_detection.py,
ANETdetection) on eval_ref.py's matching and interpolated AP: ground truth from the ActivityNet JSON
(one subset), classes in order of first appearance, predictions from the results JSON, in seconds,
tIoU np.linspace(0.5, 0.95, 10), mAP over the classes, averaged over the thresholds.

usage: anet_eval_ref.py --annotations GT.json --predictions RESULTS.json [--subset validation]
prints {"map": {"0.50": ..., ...}, "avg_0.5_0.95": ...} in percent, as `pvlr score --json` does.
With --make OUT [--seed S] it writes a synthetic ActivityNet-shaped fixture (gt.json, results.json and
the answer, expected.json) instead.
"""
import argparse, json, os, sys
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eval_ref

eval_ref.THRESHOLDS = np.linspace(0.5, 0.95, 10)


def evaluate(gt_path, pred_path, subset='validation'):
    db = json.load(open(gt_path))['database']
    classes, gv, gseg, gl = [], [], [], []
    for vid, v in db.items():
        if v['subset'] != subset:
            continue
        for a in v['annotations']:
            if a['label'] not in classes:
                classes.append(a['label'])
            gv.append(vid); gseg.append([float(a['segment'][0]), float(a['segment'][1])]); gl.append(classes.index(a['label']))
    pv, pseg, pl, ps = [], [], [], []
    for vid, dets in json.load(open(pred_path))['results'].items():
        for d in dets:
            pv.append(vid); pseg.append([float(d['segment'][0]), float(d['segment'][1])])
            pl.append(classes.index(d['label'])); ps.append(float(d['score']))
    gseg, gl, pseg, pl, ps = np.array(gseg), np.array(gl), np.array(pseg).reshape(-1, 2), np.array(pl), np.array(ps)
    ap = np.zeros((len(classes), len(eval_ref.THRESHOLDS)))
    for c in range(len(classes)):
        gi = np.where(gl == c)[0]; pi = np.where(pl == c)[0]
        ap[c] = eval_ref.ap_detection([gv[i] for i in gi], gseg[gi], [pv[i] for i in pi], pseg[pi], ps[pi])
    m = ap.mean(axis=0) * 100
    return {'map': {f'{t:.2f}': float(m[i]) for i, t in enumerate(eval_ref.THRESHOLDS)}, 'avg_0.5_0.95': float(m.mean())}


def make(out, seed):
    """A synthetic set with ActivityNet's shape: 40 classes, 160 validation and 60 training videos of
    30-200 s with 1-3 long segments, predictions from jittered, wrong-class and random segments, some
    in a video without ground truth, scores with two decimals (ties)."""
    rng = np.random.default_rng(seed)
    os.makedirs(out, exist_ok=True)
    classes = [f'Activity {i:02d}' for i in range(40)]
    db, gts = {}, []
    for k in range(220):
        vid = f'v_{k:05d}'; dur = float(rng.uniform(30, 200)); anns = []
        for _ in range(int(rng.integers(1, 4))):
            s = float(rng.uniform(0, dur * 0.7)); e = min(dur, s + float(rng.uniform(5, dur * 0.6)))
            anns.append({'segment': [round(s, 2), round(e, 2)], 'label': classes[int(rng.integers(40))]})
        subset = 'validation' if k < 160 else 'training'
        db[vid] = {'subset': subset, 'duration': round(dur, 2), 'annotations': anns}
        if subset == 'validation':
            gts += [(vid, a) for a in anns]
    results = {}
    for _ in range(3000):
        u = rng.random()
        if u < 0.6:
            vid, a = gts[int(rng.integers(len(gts)))]
            s, e = a['segment']; L = e - s
            s += rng.normal(0, 0.2) * L; e += rng.normal(0, 0.2) * L
            label = a['label'] if rng.random() > 0.1 else classes[int(rng.integers(40))]
        else:
            vid = f'v_{int(rng.integers(160)):05d}' if rng.random() > 0.05 else 'v_99999'
            s = float(rng.uniform(0, 150)); e = s + float(rng.uniform(1, 80))
            label = classes[int(rng.integers(40))]
        if e <= s:
            e = s + 1
        if label not in {a['label'] for _, a in gts}:
            continue
        results.setdefault(vid, []).append({'label': label, 'score': round(float(rng.random()), 2), 'segment': [round(s, 2), round(e, 2)]})
    json.dump({'database': db}, open(os.path.join(out, 'gt.json'), 'w'))
    json.dump({'results': results}, open(os.path.join(out, 'results.json'), 'w'))
    res = evaluate(os.path.join(out, 'gt.json'), os.path.join(out, 'results.json'))
    json.dump(res, open(os.path.join(out, 'expected.json'), 'w'), indent=1)
    print(json.dumps(res))


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--annotations'); ap.add_argument('--predictions'); ap.add_argument('--subset', default='validation')
    ap.add_argument('--make'); ap.add_argument('--seed', type=int, default=3)
    a = ap.parse_args()
    if a.make:
        make(a.make, a.seed)
    else:
        print(json.dumps(evaluate(a.annotations, a.predictions, a.subset)))
