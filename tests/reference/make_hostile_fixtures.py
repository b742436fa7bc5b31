#!/usr/bin/env python3
"""Small hostile files for the readers' budgets (HardeningTests). Each is valid for numpy or torch and
tiny on disk, but costs far more to read naively:

  laughs_labels.npy   an object array whose list holds a list of two references to one list, 40 times
                      nested: 2^40 elements when read as a tree (a "billion laughs" of shared references)
  selfref_labels.npy  an object array whose list contains itself
  deep_labels.npy     lists nested 3000 deep
  stride0.pth         a state_dict whose tensor is a (30000, 30000) view with strides (0, 0) of a
                      one-element storage: 3.6 GB of float32 when materialised

usage: make_hostile_fixtures.py OUT_DIR
"""
import os, sys
import numpy as np
import torch

out = sys.argv[1]
os.makedirs(out, exist_ok=True)

a = ['Billiards']
for _ in range(40):
    a = [a, a]
arr = np.empty(1, dtype=object); arr[0] = a
np.save(os.path.join(out, 'laughs_labels.npy'), arr, allow_pickle=True)

s = ['x']; s.append(s)
arr = np.empty(1, dtype=object); arr[0] = s
np.save(os.path.join(out, 'selfref_labels.npy'), arr, allow_pickle=True)

sys.setrecursionlimit(20000)
d = []
for _ in range(3000):
    d = [d]
arr = np.empty(1, dtype=object); arr[0] = d
np.save(os.path.join(out, 'deep_labels.npy'), arr, allow_pickle=True)

torch.save({'fusion.0.bias': torch.zeros(1).expand(30000, 30000)}, os.path.join(out, 'stride0.pth'))
