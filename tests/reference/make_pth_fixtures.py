#!/usr/bin/env python3
"""Writes the committed .pth fixtures (Debian python3-torch) for the C# PyTorch-checkpoint tests:
  tiny_state_dict.pth   a plain fp32 state_dict of a tiny PVLR (F=16, A=4, D=8, CLIP 1x64), plus two
                        entries our model does not use (clipmodel.logit_scale, clipmodel.visual.proj)
  tiny_wrapped_fp16.pth {'model': the same state_dict with the clipmodel.* tensors in fp16 (as CLIP's
                        convert_weights leaves them), 'epoch': 3}; fusion.0.bias is a view at storage
                        offset 10 of a larger storage and fusion.0.weight a non-contiguous transpose
  evil.pth              a checkpoint whose pickle calls os.system: it must be refused
  expected/<name>.npy   every tensor as float32 (the fp16 ones as their fp16 values)
usage: make_pth_fixtures.py OUT_DIR
"""
import collections, os, sys
import numpy as np
import torch
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'benchmarks', 'reference'))
import pvlr_ref

out = sys.argv[1]
torch.manual_seed(0)
os.makedirs(os.path.join(out, 'expected'), exist_ok=True)
cfg = dict(pvlr_ref.presets('paper'), F=16, A=4, D=8, W=64, layers=1, heads=1, vocab=40)
p = pvlr_ref.init_params(cfg, torch.Generator().manual_seed(3), torch.float32)
sd = collections.OrderedDict((k, v.detach().clone()) for k, v in p.items())
sd['clipmodel.logit_scale'] = torch.tensor(4.6052)
sd['clipmodel.visual.proj'] = torch.randn(8, 4)
torch.save(sd, os.path.join(out, 'tiny_state_dict.pth'))
for k, v in sd.items():
    np.save(os.path.join(out, 'expected', k + '.npy'), v.numpy().astype(np.float32))

wrapped = collections.OrderedDict()
for k, v in sd.items():
    wrapped[k] = v.half() if k.startswith('clipmodel.') else v
big = torch.arange(100, dtype=torch.float32) / 7
wrapped['fusion.0.bias'] = big[10:10 + 16]
w = sd['fusion.0.weight']                                  # (16,16,3) -> a non-contiguous view with the same values
wrapped['fusion.0.weight'] = w.permute(2, 1, 0).contiguous().permute(2, 1, 0)
assert not wrapped['fusion.0.weight'].is_contiguous()
torch.save({'model': wrapped, 'epoch': 3}, os.path.join(out, 'tiny_wrapped_fp16.pth'))
os.makedirs(os.path.join(out, 'expected_fp16'), exist_ok=True)
for k, v in wrapped.items():
    np.save(os.path.join(out, 'expected_fp16', k + '.npy'), v.float().numpy().copy(order='C'))


class Evil:
    def __reduce__(self):
        return (os.system, ('echo pwned > /tmp/pvlr-pwned',))


torch.save({'embedding.weight': torch.zeros(2), 'x': Evil()}, os.path.join(out, 'evil.pth'))
print('wrote', out)
