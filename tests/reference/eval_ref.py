#!/usr/bin/env python3
"""A restatement, in numpy, of the THUMOS14 evaluator that PVLR / CO2-Net use
(src/thumos/eval/eval_detection.py: ANETdetection, compute_average_precision_detection;
utils_eval.py: segment_iou, interpolated_prec_rec), written from the reference's semantics.

It follows the reference line for line where the order matters: predictions sorted with
`argsort()[::-1]`, GT walked in `tiou.argsort()[::-1]` order, lock_gt per threshold, all-point
interpolated AP. pandas is replaced by plain dicts (same grouping, same order).

usage: eval_ref.py --annotations DIR --predictions FILE.csv [--units snippets|seconds] [--activitynet]
prints {"map": {"0.1": ..., ...}, "avg_0.1_0.5": ..., "avg_0.3_0.7": ..., "avg_0.1_0.7": ...} in percent.
--activitynet: the W-TALC ActivityNet1.2 pack as CO2-Net's test.py:85-90 scores it: the 'validation'
subset, tIoU [0.5, 0.55, ..., 0.95] as literals; prints {"map": {"0.50": ...}, "avg_0.5_0.95": ...}.
"""
import argparse, csv, json, os
import numpy as np

THRESHOLDS = np.linspace(0.1, 0.9, 9)


def load_gt(ann_dir, test_subset='test'):
    s = lambda x: x.decode() if isinstance(x, bytes) else str(x)
    names = [s(x) for x in np.load(os.path.join(ann_dir, 'videoname.npy'))]
    subset = [s(x) for x in np.load(os.path.join(ann_dir, 'subset.npy'))]
    classes = [s(x) for x in np.load(os.path.join(ann_dir, 'classlist.npy'))]
    segments = np.load(os.path.join(ann_dir, 'segments.npy'), allow_pickle=True)
    labels = np.load(os.path.join(ann_dir, 'labels.npy'), allow_pickle=True)
    vid, ts, te, lab = [], [], [], []
    for i, n in enumerate(names):
        if subset[i] != test_subset or len(segments[i]) == 0:
            continue
        for (a, b), l in zip(segments[i], labels[i]):
            vid.append(n)
            ts.append(round(float(a) * 25 / 16))   # Python round: half to even
            te.append(round(float(b) * 25 / 16))
            lab.append(classes.index(s(l)))
    return classes, vid, np.array(ts, float), np.array(te, float), np.array(lab)


def load_pred(path, classes, seconds):
    vid, ts, te, lab, sc = [], [], [], [], []
    with open(path, newline='') as f:
        for row in csv.DictReader(f):
            l = row['label']
            lab.append(int(l) if l.strip().lstrip('-').isdigit() else classes.index(l))
            k = 25 / 16 if seconds else 1.0
            vid.append(row['video-id']); ts.append(float(row['t-start']) * k); te.append(float(row['t-end']) * k)
            sc.append(float(row['score']))
    return vid, np.array(ts), np.array(te), np.array(lab), np.array(sc)


def segment_iou(seg, segs):
    tt1 = np.maximum(seg[0], segs[:, 0])
    tt2 = np.minimum(seg[1], segs[:, 1])
    inter = (tt2 - tt1).clip(0)
    union = (segs[:, 1] - segs[:, 0]) + (seg[1] - seg[0]) - inter
    return inter.astype(float) / union


def interpolated_prec_rec(prec, rec):
    mprec = np.hstack([[0], prec, [0]])
    mrec = np.hstack([[0], rec, [1]])
    for i in range(len(mprec) - 1)[::-1]:
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.where(mrec[1::] != mrec[0:-1])[0] + 1
    return np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx])


def ap_detection(gt_vid, gt_seg, p_vid, p_seg, p_score):
    ap = np.zeros(len(THRESHOLDS))
    if len(p_vid) == 0:
        return ap
    npos = float(len(gt_vid))
    lock_gt = np.ones((len(THRESHOLDS), len(gt_vid))) * -1
    order = p_score.argsort()[::-1]
    tp = np.zeros((len(THRESHOLDS), len(order)))
    fp = np.zeros((len(THRESHOLDS), len(order)))
    by_video = {}
    for i, v in enumerate(gt_vid):
        by_video.setdefault(v, []).append(i)
    for idx, k in enumerate(order):
        if p_vid[k] not in by_video:
            fp[:, idx] = 1
            continue
        gidx = np.array(by_video[p_vid[k]])
        tiou = segment_iou(p_seg[k], gt_seg[gidx])
        walk = tiou.argsort()[::-1]
        for t, thr in enumerate(THRESHOLDS):
            for j in walk:
                if tiou[j] < thr:
                    fp[t, idx] = 1
                    break
                if lock_gt[t, gidx[j]] >= 0:
                    continue
                tp[t, idx] = 1
                lock_gt[t, gidx[j]] = idx
                break
            if fp[t, idx] == 0 and tp[t, idx] == 0:
                fp[t, idx] = 1
    tpc = np.cumsum(tp, axis=1).astype(float)
    fpc = np.cumsum(fp, axis=1).astype(float)
    rec = tpc / npos
    prec = tpc / (tpc + fpc)
    for t in range(len(THRESHOLDS)):
        ap[t] = interpolated_prec_rec(prec[t, :], rec[t, :])
    return ap


def class_map(ann_dir, pred_path, seconds, test_subset='test'):
    """mAP per threshold in percent: per class AP over the test subset's GT, averaged over the classes."""
    classes, gv, gs, ge, gl = load_gt(ann_dir, test_subset)
    pv, ps, pe, pl, psc = load_pred(pred_path, classes, seconds)
    gseg = np.stack([gs, ge], 1)
    pseg = np.stack([ps, pe], 1)
    ap = np.zeros((len(classes), len(THRESHOLDS)))
    for c in range(len(classes)):
        gi = np.where(gl == c)[0]
        pi = np.where(pl == c)[0]
        ap[c] = ap_detection([gv[i] for i in gi], gseg[gi], [pv[i] for i in pi], pseg[pi], psc[pi])
    return ap.mean(axis=0) * 100


def evaluate(ann_dir, pred_path, seconds=False):
    m = class_map(ann_dir, pred_path, seconds)
    return {"map": {f"{t:.1f}": float(m[i]) for i, t in enumerate(THRESHOLDS)},
            "avg_0.1_0.5": float(m[:5].mean()), "avg_0.3_0.7": float(m[2:7].mean()), "avg_0.1_0.7": float(m[:7].mean())}


ANET_THRESHOLDS = [0.5, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95]   # CO2-Net test.py:87


def evaluate_activitynet(ann_dir, pred_path, seconds=False):
    global THRESHOLDS
    THRESHOLDS = np.array(ANET_THRESHOLDS)
    m = class_map(ann_dir, pred_path, seconds, 'validation')
    return {"map": {f"{t:.2f}": float(m[i]) for i, t in enumerate(THRESHOLDS)}, "avg_0.5_0.95": float(m.mean())}


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--annotations', required=True)
    ap.add_argument('--predictions', required=True)
    ap.add_argument('--units', default='snippets', choices=['snippets', 'seconds'])
    ap.add_argument('--activitynet', action='store_true')
    a = ap.parse_args()
    score = evaluate_activitynet if a.activitynet else evaluate
    print(json.dumps(score(a.annotations, a.predictions, a.units == 'seconds')))
