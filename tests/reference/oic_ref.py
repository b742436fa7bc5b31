"""The proposal pieces UM's utils.py and ACM-Net's utils/net_evaluation.py both have (restated here, not
their code): scipy interp1d up-sampling, outer-inner-contrast proposals and hard NMS with +1 areas."""
import numpy as np
from scipy.interpolate import interp1d


def upgrade_resolution(arr, scale):
    f = interp1d(np.arange(0, arr.shape[0]), arr, kind='linear', axis=0, fill_value='extrapolate')
    return f(np.arange(0, arr.shape[0], 1 / scale))


def grouping(arr):
    return np.split(arr, np.where(np.diff(arr) != 1)[0] + 1)


def proposal_oic(seg, scores, c_pred, c_scores, t_factor, lam, gamma):
    """seg[i]: np.where positions of class c_pred[i]; scores (T, len(c_pred))."""
    out = []
    for i in range(len(seg)):
        c_temp = []
        tl = np.array(seg[i])[0]
        if tl.any():
            for g in grouping(tl):
                if len(g) < 2:
                    continue
                inner = np.mean(scores[g, i]); ln = len(g)
                os_ = max(0, int(g[0] - lam * ln)); oe = min(int(scores.shape[0] - 1), int(g[-1] + lam * ln))
                oidx = list(range(os_, int(g[0]))) + list(range(int(g[-1] + 1), oe + 1))
                outer = 0 if len(oidx) == 0 else np.mean(scores[oidx, i])
                c_temp.append([c_pred[i], inner - outer + gamma * c_scores[c_pred[i]], g[0] * t_factor, (g[-1] + 1) * t_factor])
            out.append(c_temp)
    return out


def nms(props, thresh):
    props = np.array(props); x1, x2, s = props[:, 2], props[:, 3], props[:, 1]
    areas = x2 - x1 + 1; order = s.argsort()[::-1]; keep = []
    while order.size > 0:
        i = order[0]; keep.append(props[i].tolist())
        xx1 = np.maximum(x1[i], x1[order[1:]]); xx2 = np.minimum(x2[i], x2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1 + 1)
        order = order[np.where(inter / (areas[i] + areas[order[1:]] - inter) < thresh)[0] + 1]
    return keep


def collect(pd, props_list):
    for pl in props_list:
        if len(pl):
            pd.setdefault(pl[0][0], []).extend(pl)


def detections(pd, thresh):
    return [dict(label=int(l), score=float(s), start=float(st), end=float(en)) for c in pd for l, s, st, en in nms(pd[c], thresh)]
