"""What the PyTorch restatements (pvlr_ref.py, co2net_ref.py, um_ref.py, acmnet_ref.py) share: recorded
dropout draws, random batches, the dump layout `pvlr replay` reads, the step timer and its BLAS report,
and the command line. Nothing here is any original's code."""
import argparse, json, os, re, time
import numpy as np
import torch


class Draws:
    """Makes every dropout draw of a step and records it under the tag the C# side uses; with
    `time_major`, the tensor is (B, T, ...) and is recorded transposed to the channel-first layout."""
    def __init__(self, gen, dtype, record):
        self.gen, self.dtype, self.record, self.items = gen, dtype, record, []

    def dropout(self, x, p, tag, time_major=False):
        keep = (torch.rand(x.shape, generator=self.gen) >= p).to(self.dtype) / (1 - p)
        if self.record:
            self.items.append((tag, keep.transpose(1, 2) if time_major else keep))
        return x * keep


def labels(B, C, gen, dtype, pairs):
    """Multi-hot labels (B, C): with `pairs`, rows (0,1), (2,3), (4,5) share a class (W-TALC's sampler);
    the rest one random class each; one video (row 1 with pairs, else row 0) gets a second label."""
    y = torch.zeros((B, C), dtype=dtype)
    first = 0
    if pairs:
        cls = torch.randperm(C, generator=gen)[:3]
        for k in range(3):
            y[2 * k, cls[k]] = 1; y[2 * k + 1, cls[k]] = 1
        first = 6
    for b in range(first, B):
        y[b, torch.randint(0, C, (1,), generator=gen)] = 1
    row = 1 if pairs else 0
    y[row, (int(y[row].argmax()) + 1) % C] = 1
    return y


def features(cfg, gen, dtype):
    return torch.randn((cfg['B'], cfg['T'], cfg['F']), generator=gen).float().to(dtype)


def dump_step_inputs(args, presets, init_params, pairs):
    """A dump's float64 start: the preset, its parameters, one batch (features, labels; W-TALC's similar
    pairs with `pairs`) and a recorder of the step's dropout draws, all from one generator seeded by
    args.seed, in that order."""
    cfg = presets(args.preset); torch.set_default_dtype(torch.float64)
    gen = torch.Generator().manual_seed(args.seed); dt = torch.float64
    p = init_params(cfg, gen, dt)
    X = features(cfg, gen, dt); y = labels(cfg['B'], cfg['C'], gen, dt, pairs=pairs)
    return cfg, p, X, y, Draws(gen, dt, record=True)


def save(path, t):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, t.detach().cpu().numpy() if torch.is_tensor(t) else t)


def write_dump(out, params, inputs, draws, terms, total, meta, extra=None):
    """weights/ and grads/ of every parameter, inputs/, random/, any extra arrays (mining/...),
    losses.json (each term and total_loss) and meta.json (with random_order); prints the losses."""
    for k, v in params.items():
        save(f'{out}/weights/{k}.npy', v.float())
        if v.grad is not None:
            save(f'{out}/grads/{k}.npy', v.grad)
    for k, v in inputs.items():
        save(f'{out}/inputs/{k}.npy', v.float() if torch.is_tensor(v) and v.is_floating_point() else v)
    for tag, t in draws.items:
        save(f'{out}/random/{tag}.npy', t.float())
    for k, v in (extra or {}).items():
        save(f'{out}/{k}.npy', v)
    vals = {k: float(v) for k, v in terms.items()}; vals['total_loss'] = float(total)
    with open(f'{out}/losses.json', 'w') as f:
        json.dump(vals, f, indent=1)
    meta = dict(meta, random_order=[t for t, _ in draws.items], dtype='float64 compute, float32 inputs')
    with open(f'{out}/meta.json', 'w') as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(vals))


def blas_library():
    """The BLAS torch's matmuls run on, as the process maps it: Debian's torch links the libblas.so.3 of
    the alternatives system, OpenBLAS where libopenblas0-pthread is installed, else the reference BLAS."""
    torch.randn(64, 64) @ torch.randn(64, 64)
    with open('/proc/self/maps') as f:
        libs = {line.split()[-1] for line in f if 'blas' in line.lower() or 'mkl' in line.lower()}
    libs = sorted(l for l in libs if os.path.basename(l).startswith(('libblas', 'libopenblas', 'libmkl', 'libblis', 'libcblas')))
    return ', '.join(libs) if libs else 'none mapped'


def config_blas():
    """torch.__config__'s BLAS_INFO: the BLAS interface torch was built against ('generic' on Debian,
    which then runs whichever libblas.so.3 the alternatives system maps, as blas_library() reports)."""
    found = re.search(r'BLAS_INFO=([^,\s]+)', torch.__config__.show())
    return found.group(1) if found else 'unknown'


def blas_gflops():
    """torch's fp32 matmul rate at 1024^3 with the threads set: the reference BLAS gives a few GFLOP/s,
    OpenBLAS or MKL tens to hundreds, whatever the libraries' names say."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    t0 = time.perf_counter()
    for _ in range(3):
        a @ b
    return 3 * 2 * 1024 ** 3 / (time.perf_counter() - t0) / 1e9


def time_steps(args, step, extra=None):
    """Times `step()` (one full training step, its own batch drawn first) after args.warmup untimed ones
    and prints one JSON line: the median seconds per step, torch's version and BLAS."""
    torch.set_num_threads(args.threads or os.cpu_count())
    times = []
    for s in range(args.warmup + args.steps):
        t0 = step()
        if s >= args.warmup:
            times.append(time.perf_counter() - t0)
    print(json.dumps(dict(extra or {}, preset=args.preset, threads=torch.get_num_threads(), steps=len(times),
                          seconds_per_step=float(np.median(times)), all=times, torch=torch.__version__,
                          blas=blas_library(), blas_built=config_blas(), blas_gflops=blas_gflops(),
                          openblas_coretype=os.environ.get('OPENBLAS_CORETYPE'))))


def time_training(args, params, batch, loss, **adam):
    """Times full training steps: `batch()` draws a step's inputs (untimed), `loss(*inputs)` is the step's
    loss; Adam (with `adam`'s settings) over the parameters that take a gradient."""
    opt = torch.optim.Adam([v for v in params.values() if v.requires_grad], **adam)

    def step():
        inputs = batch()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss(*inputs).backward()
        opt.step()
        return t0
    time_steps(args, step)


def cli(dump, timing, savings=False):
    ap = argparse.ArgumentParser()
    sp = ap.add_subparsers(dest='mode', required=True)
    d = sp.add_parser('dump'); d.add_argument('out'); d.add_argument('--preset', default='replay'); d.add_argument('--seed', type=int, default=5)
    t = sp.add_parser('time'); t.add_argument('--preset', default='paper'); t.add_argument('--steps', type=int, default=1)
    t.add_argument('--warmup', type=int, default=0); t.add_argument('--threads', type=int, default=0)
    if savings:
        t.add_argument('--savings', action='store_true')
    a = ap.parse_args()
    dump(a) if a.mode == 'dump' else timing(a)
