"""Spectra against weightwatcher's analyze() on the same models, in one run: agreement and time ratio.

Models: a 3M-parameter MLP, the pretrained all-MiniLM-L6-v2 encoder, a single 4096x4096 Gaussian matrix.
Usage: python benchmarks/bench_spectra.py [--quick] [--device auto|cpu|cuda] [--threads N]
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

    print(f"{'model':14s} {'matrices':>8s} {'ours s':>8s} {'ww s':>8s} {'ratio':>7s} {'max|dalpha|':>11s} "
          f"{'max|dstable|':>12s} {'max|dlognorm|':>13s}")
    for name, model in models(args.quick):
        spectra.analyze(model, device=args.device, progress=False, bootstrap=0) if name == "mlp-3M" else None
        t0 = time.perf_counter()
        ours = spectra.analyze(model, device=args.device, progress=False).to_frame()
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        theirs = ww.WeightWatcher(model=model).analyze()
        t_ww = time.perf_counter() - t0
        # weightwatcher names layers by module; match rows in order on the layers both analysed
        ours_fit = ours[ours["num_evals"] >= 8].reset_index(drop=True)
        n = min(len(ours_fit), len(theirs))
        d = lambda col: float(np.nanmax(np.abs(ours_fit[col].to_numpy()[:n] - theirs[col].to_numpy()[:n])))
        print(f"{name:14s} {len(ours):8d} {t_ours:8.2f} {t_ww:8.2f} {t_ww / t_ours:7.1f} {d('alpha'):11.2e} "
              f"{d('stable_rank'):12.2e} {d('log_norm'):13.2e}", flush=True)
        if len(theirs) != len(ours_fit):
            print(f"   note: weightwatcher analysed {len(theirs)} matrices, ours {len(ours)}")


if __name__ == "__main__":
    main()
