"""Benchmark: representation-ID estimators against scikit-dimension, and Fastfood against dense projections.

Run:  python benchmarks/bench_intrinsic_dimension.py [--n 10000] [--features 768] [--device auto]

1. TwoNN (fit and MLE) and Levina-Bickel MLE (k=20) on ``n`` points in ``features`` dimensions (a
   20-dimensional curved manifold embedded linearly, plus small noise): workbench vs
   ``skdim.id.TwoNN`` / ``skdim.id.MLE``, times, speed-up and agreement.
2. Projections at D = 10^6 for d = 10^3 .. 10^5: time per training step (forward + backward of the
   projection) and the memory the projection holds, for Fastfood, sparse and dense (dense is timed only
   where its stored matrix fits in ``--dense-max-gb``; its size is always reported; the regenerating
   dense variant, which holds O(d) memory, is timed at the smallest d).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from workbench.backend import describe, resolve_device, synchronize  # noqa: E402
from workbench.intrinsic_dimension import make_projection, mle, projection_memory, twonn  # noqa: E402


def timed(fn, repeat=1):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def manifold(n, features, dim=20, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, dim + 1))
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)  # a curved dim-sphere
    X = Z @ rng.standard_normal((dim + 1, features)) + 1e-3 * rng.standard_normal((n, features))
    return X.astype(np.float32)


def bench_estimators(n, features, device):
    import skdim

    X = manifold(n, features)
    print(f"\n## Representation ID: {n} points in {features} dimensions (20-dim sphere), device {describe(device)}")
    print(f"{'estimator':<12}{'workbench s':>12}{'skdim s':>10}{'speed-up':>10}{'workbench':>11}{'skdim':>9}")
    rows = []
    cases = [
        ("twonn-fit", lambda: twonn(X, device=device).dimension, lambda: skdim.id.TwoNN().fit(X).dimension_),
        ("twonn-mle", lambda: twonn(X, method="mle", device=device).dimension,
         lambda: skdim.id.TwoNN(method="mle", discard_fraction=0.0).fit(X).dimension_),
        ("mle k=20", lambda: mle(X, k=20, device=device).dimension, lambda: skdim.id.MLE().fit(X).dimension_),
    ]
    for name, ours, theirs in cases:
        t_ours, d_ours = timed(ours)
        t_them, d_them = timed(theirs)
        rows.append((name, t_ours, t_them, d_ours, d_them))
        print(f"{name:<12}{t_ours:>12.2f}{t_them:>10.2f}{t_them / t_ours:>9.1f}x{d_ours:>11.3f}{d_them:>9.3f}")
    return rows


def step_time(proj, device, repeat=3):
    d = proj.d
    theta = torch.zeros(d, device=device, requires_grad=True)
    g = torch.randn(proj.D, device=device)

    def step():
        theta.grad = None
        y = proj(theta)
        (y * g).sum().backward()
        synchronize(device)

    step()  # warm up
    return timed(step, repeat)[0]


def bench_projections(D, dims, device, dense_max_gb):
    dev = resolve_device(device)
    print(f"\n## Projections at D = {D:,}: seconds per step (forward + backward) and memory held, device "
          f"{describe(dev)}")
    print(f"{'projection':<20}{'d':>9}{'build s':>9}{'step s':>9}{'held MiB':>11}{'peak GPU MiB':>14}")
    rows = []
    for d in dims:
        for kind in ("fastfood", "sparse", "dense"):
            mem = projection_memory(kind, D, d)
            if kind == "dense" and mem > dense_max_gb * 2 ** 30:
                print(f"{kind + ' (stored)':<20}{d:>9}{'-':>9}{'-':>9}{mem / 2**20:>11.0f}{'':>14}  "
                      f"(does not fit in {dense_max_gb} GiB)")
                rows.append((kind, d, float("nan"), float("nan"), mem))
                continue
            if kind == "sparse" and mem > dense_max_gb * 2 ** 30:
                print(f"{kind:<20}{d:>9}{'-':>9}{'-':>9}{mem / 2**20:>11.0f}{'':>14}  (over the memory budget)")
                continue
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            t0 = time.perf_counter()
            proj = make_projection(kind, D, d, seed=0, device=dev)
            build = time.perf_counter() - t0
            t = step_time(proj, dev)
            peak = torch.cuda.max_memory_allocated(dev) / 2 ** 20 if dev.type == "cuda" else float("nan")
            print(f"{kind:<20}{d:>9}{build:>9.2f}{t:>9.4f}{proj.nbytes / 2**20:>11.1f}{peak:>14.1f}")
            rows.append((kind, d, build, t, proj.nbytes))
            del proj
    # dense without storing the matrix: O(d) memory, regenerated from the seed every step
    d = dims[0]
    t0 = time.perf_counter()
    proj = make_projection("dense", D, d, seed=0, device=dev, store=False, chunk_rows=16384)
    build = time.perf_counter() - t0
    t = step_time(proj, dev, repeat=1)
    print(f"{'dense (regenerated)':<20}{d:>9}{build:>9.2f}{t:>9.4f}{proj.nbytes / 2**20:>11.3f}")
    rows.append(("dense-regenerated", d, build, t, proj.nbytes))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--features", type=int, default=768)
    ap.add_argument("--D", type=int, default=10 ** 6)
    ap.add_argument("--dims", type=int, nargs="+", default=[100, 1000, 10000, 100000])
    ap.add_argument("--dense-max-gb", type=float, default=1.0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-estimators", action="store_true")
    ap.add_argument("--skip-projections", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if not args.skip_estimators:
        bench_estimators(args.n, args.features, args.device)
    if not args.skip_projections:
        bench_projections(args.D, args.dims, args.device, args.dense_max_gb)


if __name__ == "__main__":
    main()
