"""Spectra against weightwatcher's analyze() on the same models, in one run: agreement and time ratio.

Models: a 3M-parameter MLP, the pretrained all-MiniLM-L6-v2 encoder, a single 4096x4096 Gaussian matrix.
Rows are matched to weightwatcher's by layer (its ``longname`` column); the table says how many matrices
each side analysed and how many matched.  The ``f32`` columns repeat ours with float32 eigenvalues.
Usage: python benchmarks/bench_spectra.py [--quick] [--device auto|cpu|cuda] [--threads N]
On a machine busy with other work, run with OMP_WAIT_POLICY=PASSIVE: torch's multi-threaded eigvalsh
otherwise spin-waits and can be 50-100x slower when its threads are not all scheduled.
"""
from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np
import torch
from torch import nn


def models(quick: bool):
    from workbench.models import MLP, minilm

    torch.manual_seed(0)
    mlp = MLP(in_features=1024, hidden=(1024, 1024, 1024), num_classes=10)  # ~3.2M parameters
    out = [("mlp-3M", mlp)]
    if not quick:
        out.append(("minilm", minilm()))
    big = nn.Linear(4096 if not quick else 1024, 4096 if not quick else 1024, bias=False)
    with torch.no_grad():
        big.weight.normal_()
    out.append((f"linear-{big.in_features}", nn.Sequential(big)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import weightwatcher as ww

    from workbench import spectra

    print(f"{'model':14s} {'ours n':>6s} {'ww n':>5s} {'matched':>7s} {'ours s':>8s} {'ww s':>8s} {'ratio':>7s} "
          f"{'max|dalpha|':>11s} {'max|dalpha_w|':>13s} {'max|dstable|':>12s} {'max|dlognorm|':>13s} "
          f"{'f32 s':>7s} {'f32 ratio':>9s} {'f32 max|dalpha|':>15s}")
    for name, model in models(args.quick):
        spectra.analyze(model, device=args.device, progress=False, bootstrap=0) if name == "mlp-3M" else None
        t0 = time.perf_counter()
        ours = spectra.analyze(model, device=args.device, progress=False).to_frame()
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        theirs = ww.WeightWatcher(model=model).analyze()
        t_ww = time.perf_counter() - t0
        t0 = time.perf_counter()
        fast = spectra.analyze(model, device=args.device, progress=False, dtype=torch.float32).to_frame()
        t_fast = time.perf_counter() - t0
        # match rows by layer: weightwatcher's 'longname' is the module path, ours the parameter name
        key = ours["name"].str.replace(r"\.weight$", "", regex=True)
        mine = ours.assign(key=key).set_index("key")
        common = [n for n in theirs["longname"] if n in mine.index]
        a = mine.loc[common]
        b = theirs.set_index("longname").loc[common]
        d = lambda col: float(np.nanmax(np.abs(a[col].to_numpy(float) - b[col].to_numpy(float)))) if common \
            else float("nan")
        print(f"{name:14s} {len(ours):6d} {len(theirs):5d} {len(common):7d} {t_ours:8.2f} {t_ww:8.2f} "
              f"{t_ww / t_ours:7.1f} {d('alpha'):11.2e} {d('alpha_weighted'):13.2e} {d('stable_rank'):12.2e} "
              f"{d('log_norm'):13.2e} {t_fast:7.2f} {t_ww / t_fast:9.1f} "
              f"{float(np.nanmax(np.abs(fast['alpha'] - ours['alpha']))):15.2e}", flush=True)
        missing = [n for n in ours["name"] if n.removesuffix(".weight") not in set(theirs["longname"])]
        if missing:
            print(f"   not analysed by weightwatcher: {len(missing)} ({', '.join(missing[:4])}"
                  f"{', ...' if len(missing) > 4 else ''})")


if __name__ == "__main__":
    main()
