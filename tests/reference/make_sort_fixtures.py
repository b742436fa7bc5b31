#!/usr/bin/env python3
"""Tie-heavy arrays and the orders the original code's sorts give them, for Util/ReferenceSorts.cs.

  lengths.npy           (R,) int32, each row's length
  keys_<dtype>.npy      the rows' keys, concatenated (float64 and float32)
  numpy_<dtype>.npy     int32, np.argsort(row) per row (numpy's default kind), concatenated
  heap_<dtype>.npy      int32, np.argsort(row, kind='heapsort') (the introsort's depth-limit fallback)
  torch_<dtype>.npy     int32, row.sort(descending=True)[1] per row on CPU torch (the loss.py:128 mining
                        sort), concatenated

Rows: lengths 0..40 and a spread up to 1500, keys drawn from 1 to 6 distinct values (so most keys tie),
some rows with NaN, some all-equal, some with +-0.0, a few with distinct keys.

usage: make_sort_fixtures.py OUT_DIR [--seed S] [--rows R]
"""
import argparse, os
import numpy as np
import torch


def rows(rng, count):
    lengths = list(range(0, 41)) + [int(x) for x in rng.integers(41, 1500, count - 41)]
    out = []
    for n in lengths:
        kind = rng.integers(0, 6)
        if kind == 0:
            v = np.zeros(n)                                  # all equal (the hard-mining ties at 0)
        elif kind == 1:
            v = rng.random(n)                                # distinct
        else:
            levels = rng.standard_normal(int(rng.integers(1, 7)))
            v = levels[rng.integers(0, len(levels), n)]
            if kind == 3 and n:
                v[rng.random(n) < 0.1] = np.nan
            if kind == 4 and n:
                v = np.where(rng.random(n) < 0.5, 0.0, -0.0)
        out.append(v)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('out')
    ap.add_argument('--seed', type=int, default=7)
    ap.add_argument('--rows', type=int, default=70)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    rs = rows(rng, a.rows)
    np.save(os.path.join(a.out, 'lengths.npy'), np.array([len(r) for r in rs], dtype=np.int32))
    for dtype in (np.float64, np.float32):
        name = np.dtype(dtype).name
        typed = [r.astype(dtype) for r in rs]
        np.save(os.path.join(a.out, f'keys_{name}.npy'), np.concatenate(typed))
        np.save(os.path.join(a.out, f'numpy_{name}.npy'), np.concatenate([np.argsort(r) for r in typed]).astype(np.int32))
        np.save(os.path.join(a.out, f'heap_{name}.npy'), np.concatenate([np.argsort(r, kind='heapsort') for r in typed]).astype(np.int32))
        torch_idx = [torch.from_numpy(r).sort(descending=True)[1].numpy() for r in typed]
        np.save(os.path.join(a.out, f'torch_{name}.npy'), np.concatenate(torch_idx).astype(np.int32))


if __name__ == '__main__':
    main()
