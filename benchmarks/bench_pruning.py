"""Pruning and sweep benchmarks: ours next to the peer implementations, in one run.

* magnitude masks (global and layer-wise) vs ``torch.nn.utils.prune`` (global_unstructured /
  l1_unstructured): time and agreement of the masks;
* linear CKA vs the NumPy Gram-matrix reference formulation (Kornblith et al.'s code): time and agreement;
* the sweep engine: serial vs a thread pool vs a Dask LocalCluster on the same cells, and a resumed run.

Run: ``python benchmarks/bench_pruning.py``
"""
from __future__ import annotations

import copy
import functools
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.utils.prune as tprune

from workbench import sweep
from workbench.pruning import linear_cka, magnitude_mask

torch.set_num_threads(2)


def timed(fn, repeat=3):
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def big_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(784, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 10))


def bench_masks(density=0.05):
    model = big_mlp()
    names = [f"{i}.weight" for i in (0, 2, 4)]
    n = sum(dict(model.named_parameters())[k].numel() for k in names)
    print(f"\n== magnitude masks: MLP 784-2048-2048-10 ({n / 1e6:.1f}M pruned weights), density {density}")
    for scope in ("global", "layer"):
        t_ours, ours = timed(lambda: magnitude_mask(model, density, scope=scope))

        def peer():
            m = copy.deepcopy(model)
            params = [(m[i], "weight") for i in (0, 2, 4)]
            if scope == "global":
                tprune.global_unstructured(params, pruning_method=tprune.L1Unstructured, amount=1 - density)
            else:
                for mod, name in params:
                    tprune.l1_unstructured(mod, name, amount=1 - density)
            return {f"{i}.weight": m[i].weight_mask for i in (0, 2, 4)}

        t_peer, theirs = timed(peer)
        same = sum(int((ours[k] == theirs[k]).sum()) for k in names) / n
        kept_o = sum(int(ours[k].sum()) for k in names)
        kept_t = sum(int(theirs[k].sum()) for k in names)
        print(f"{scope:>6}: ours {t_ours * 1e3:7.1f} ms | torch.nn.utils.prune {t_peer * 1e3:7.1f} ms "
              f"(incl. model copy) | ratio {t_peer / t_ours:5.2f}x | identical entries {same:.6f} | "
              f"kept {kept_o} vs {kept_t}")


def gram_cka_reference(x, y):
    """Kornblith et al.'s reference: CKA from centred linear Gram matrices (NumPy)."""
    def center(g):
        n = g.shape[0]
        h = np.eye(n) - np.ones((n, n)) / n
        return h @ g @ h
    gx, gy = center(x @ x.T), center(y @ y.T)
    return float(np.sum(gx * gy) / (np.linalg.norm(gx) * np.linalg.norm(gy)))


def bench_cka(n=2000, p=256, q=128):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, p))
    y = x[:, :q] @ rng.normal(size=(q, q)) + 0.5 * rng.normal(size=(n, q))
    print(f"\n== linear CKA, n={n}, p={p}, q={q}")
    t_ours, a = timed(lambda: linear_cka(x, y))
    t_ref, b = timed(lambda: gram_cka_reference(x, y), repeat=1)
    print(f"ours {t_ours * 1e3:7.1f} ms | NumPy Gram reference {t_ref * 1e3:8.1f} ms | ratio {t_ref / t_ours:6.1f}x "
          f"| |diff| {abs(a - b):.2e} (cka {a:.6f})")


def slow_cell(x, y, seconds=0.2):
    time.sleep(seconds)
    return {"value": x * y}


def bench_sweep(cells=16):
    grid = sweep.grid(x=list(range(cells // 4)), y=[1, 2, 3, 4])
    print(f"\n== sweep engine: {len(grid)} cells of 0.2 s each (sleep: measures the engine, not compute)")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        serial = sweep.run(slow_cell, grid, store=f"{tmp}/serial", progress=False)
        t_serial = time.perf_counter() - t0
        t0 = time.perf_counter()
        threads = sweep.run(slow_cell, grid, store=f"{tmp}/threads", executor="threads", max_workers=4,
                            progress=False)
        t_threads = time.perf_counter() - t0
        t0 = time.perf_counter()
        sweep.run(slow_cell, grid, store=f"{tmp}/serial", progress=False)
        t_resume = time.perf_counter() - t0
        print(f"serial {t_serial:5.2f} s | threads(4) {t_threads:5.2f} s ({t_serial / t_threads:.1f}x) | "
              f"resumed from store {t_resume * 1e3:.1f} ms")
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            print("dask: not installed (pip install nn-workbench[dask])")
            return
        with LocalCluster(n_workers=4, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
                Client(cl) as client:
            client.run(lambda: None)
            t0 = time.perf_counter()
            dask = sweep.run(slow_cell, grid, store=f"{tmp}/dask", executor=client, progress=False)
            t_dask = time.perf_counter() - t0
        agree = all(dask[c]["value"] == serial[c]["value"] == threads[c]["value"] for c in grid)
        print(f"dask LocalCluster (4 processes) {t_dask:5.2f} s ({t_serial / t_dask:.1f}x vs serial) | "
              f"same values as serial and threads: {agree}")


if __name__ == "__main__":
    bench_masks()
    bench_cka()
    bench_sweep()
