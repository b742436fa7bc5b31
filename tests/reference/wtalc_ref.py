#!/usr/bin/env python3
"""A restatement, in numpy, of W-TALC's THUMOS14 detection mAP (sujoyp/wtalc-pytorch detectionMAP.py:
getLocMAP from its segment list on, :104-160, and filter_segments, :17-29), applied to a prediction CSV
in snippet units instead of the segments W-TALC derives from its own logits. Written from the
original's semantics; nothing here is its code.

usage: wtalc_ref.py --annotations DIR --predictions FILE.csv
prints {"map": {"0.1": ..., ...}, "avg_0.1_0.5": ...} in percent, as `pvlr score --ap wtalc --json`.
"""
import argparse, csv, json, os
import numpy as np

FACTOR = 25.0 / 16.0
THRESHOLDS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]     # literals, as detectionMAP.py:164 lists them


def s(x):
    return x.decode() if isinstance(x, bytes) else str(x)


def set_iou(a, b):
    a, b = set(a), set(b)
    union = len(a | b)
    return 0.0 if union == 0 else len(a & b) / union


def evaluate(ann_dir, pred_path):
    names = [s(x) for x in np.load(os.path.join(ann_dir, 'videoname.npy'))]
    subset = [s(x) for x in np.load(os.path.join(ann_dir, 'subset.npy'))]
    classes = [s(x) for x in np.load(os.path.join(ann_dir, 'classlist.npy'))]
    segments = np.load(os.path.join(ann_dir, 'segments.npy'), allow_pickle=True)
    labels = np.load(os.path.join(ann_dir, 'labels.npy'), allow_pickle=True)
    amb = [l.strip('\n').split(' ') for l in open(os.path.join(ann_dir, 'Ambiguous_test.txt'))]
    # the test videos with GT, in annotation order
    vids = [i for i in range(len(names)) if subset[i] == 'test' and len(segments[i])]
    vn = [names[i] for i in vids]
    index = {v: k for k, v in enumerate(vn)}
    cats = sorted(set(s(l) for i in vids for l in labels[i]))
    preds = []
    with open(pred_path, newline='') as f:
        for r in csv.DictReader(f):
            lab = r['label'].strip()
            c = int(lab) if lab.lstrip('-').isdigit() else classes.index(lab)
            if r['video-id'].strip() in index:
                preds.append((index[r['video-id'].strip()], float(r['t-start']), float(r['t-end']), c, float(r['score'])))

    def filtered(sp):
        keep = []
        for p in sp:
            bad = False
            for a in amb:
                if a[0] == vn[int(p[0])]:
                    gt = range(int(round(float(a[2]) * FACTOR)), int(round(float(a[3]) * FACTOR)))
                    if set_iou(gt, range(int(p[1]), int(p[2]))) > 0:
                        bad = True
            if not bad:
                keep.append(p)
        return np.array(keep)

    def loc_map(th):
        ap = []
        for name in cats:
            c = classes.index(name)
            sp = filtered([[i, a, b, sc] for (i, a, b, cc, sc) in preds if cc == c])
            if len(sp) == 0:
                return 0.0
            sp = sp[np.argsort(-sp[:, 3])]
            gt = [[k, float(seg[0]), float(seg[1])] for k, i in enumerate(vids)
                  for seg, l in zip(segments[i], labels[i]) if s(l) == name]
            npos = len(gt)
            tp, fp = [], []
            for p in sp:
                flag = 0.
                for j in range(len(gt)):
                    if p[0] == gt[j][0]:
                        g = range(int(round(gt[j][1] * FACTOR)), int(round(gt[j][2] * FACTOR)))
                        if set_iou(g, range(int(p[1]), int(p[2]))) >= th:
                            flag = 1.
                            del gt[j]
                            break
                tp.append(flag); fp.append(1. - flag)
            tp_c, fp_c = np.cumsum(tp), np.cumsum(fp)
            ap.append(0. if sum(tp) == 0 else np.sum((tp_c / (fp_c + tp_c)) * tp) / npos)
        return 100 * np.mean(ap)

    m = {f'{t:.1f}': loc_map(t) for t in THRESHOLDS}
    v = list(m.values())
    return {'map': m, 'avg_0.1_0.5': float(np.mean(v[:5])), 'avg_0.3_0.7': float(np.mean(v[2:7])),
            'avg_0.1_0.7': float(np.mean(v[:7]))}


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--annotations', required=True); ap.add_argument('--predictions', required=True)
    a = ap.parse_args()
    print(json.dumps(evaluate(a.annotations, a.predictions)))
