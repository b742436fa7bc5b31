#!/usr/bin/env python3
"""Writes OUT/model.pth: a state_dict as the originals' training scripts save it (torch.save of
model.state_dict()), from the weights of a replay dump (benchmarks/reference/{co2net,um}_ref.py; CO2-Net's
unused feat_encoder included). Usage: make_state_dict_pth.py OUT DUMP. Needs Debian's python3-torch and numpy."""
import os, sys
import numpy as np
import torch

out, dump = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
sd = {}
for f in sorted(os.listdir(os.path.join(dump, 'weights'))):
    sd[f[:-4]] = torch.from_numpy(np.load(os.path.join(dump, 'weights', f)))
torch.save(sd, os.path.join(out, 'model.pth'))
