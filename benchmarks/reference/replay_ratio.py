#!/usr/bin/env python3
"""How close `pvlr replay` came to a dump: the worst |ours - ref| / (1e-4 + 1e-3 |ref|) over every
gradient and over the loss terms, in percent of that tolerance (100 % = at the limit).

usage: replay_ratio.py DUMP_DIR REPLAY_OUT_DIR      (REPLAY_OUT_DIR from `pvlr replay --out`)"""
import glob, json, os, sys
import numpy as np

dump, ours = sys.argv[1], sys.argv[2]
ratio = lambda ref, got: float(np.max(np.abs(got - ref) / (1e-4 + 1e-3 * np.abs(ref))))
grads = {os.path.basename(f)[:-4]: ratio(np.load(f).astype(np.float64), np.load(os.path.join(ours, 'grads', os.path.basename(f))).astype(np.float64))
         for f in glob.glob(os.path.join(dump, 'grads', '*.npy'))}
ref, got = json.load(open(os.path.join(dump, 'losses.json'))), json.load(open(os.path.join(ours, 'losses.json')))
loss = max(ratio(np.float64(ref[k]), np.float64(got[k])) for k in ref)
worst = max(grads, key=grads.get)
print(f'worst gradient {100 * grads[worst]:.3f} % ({worst}), worst loss term {100 * loss:.3f} %')
