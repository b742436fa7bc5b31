#!/usr/bin/env python3
"""Writes OUT/co2net.pth: a CO2-Net state_dict as the original's main.py saves it (torch.save of
model.state_dict(), feat_encoder included), from the weights of a replay dump (benchmarks/reference/co2net_ref.py).
Usage: make_co2net_pth.py OUT DUMP. Needs Debian's python3-torch and numpy."""
import os, sys
import numpy as np
import torch

out, dump = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
sd = {}
for f in sorted(os.listdir(os.path.join(dump, 'weights'))):
    sd[f[:-4]] = torch.from_numpy(np.load(os.path.join(dump, 'weights', f)))
torch.save(sd, os.path.join(out, 'co2net.pth'))
