"""Pruning and sweep benchmarks: ours next to the peer implementations, in one run.

* magnitude masks (global and layer-wise) vs ``torch.nn.utils.prune`` (global_unstructured /
  l1_unstructured): time and agreement of the masks;
* linear CKA vs the NumPy Gram-matrix reference formulation (Kornblith et al.'s code): time and agreement;
* the sweep engine: serial vs a thread pool vs a Dask LocalCluster on the same cells, and a resumed run.

Run: ``python benchmarks/bench_pruning.py [--density 0.05] [--cells 16] [--threads 2]``

Case functions for ``benchmarks/run_all.py`` (rows of ``benchmarks/common.py``): :func:`case_masks` (one
scope), :func:`case_cka` and :func:`case_sweep` (no external peer: threads and a resumed run against the
serial engine).
"""
from __future__ import annotations

import argparse
import copy
import functools
import tempfile
import time

import workbench  # noqa: F401  (first: the thread policy must precede torch, see workbench.backend)
import numpy as np
import torch
import torch.nn as nn
import torch.nn.utils.prune as tprune

from common import alternate, best, row
from workbench import sweep
from workbench.pruning import linear_cka, magnitude_mask


def timed(fn, repeat=3):
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def big_mlp(seed=0, width=2048):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(784, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))


def case_masks(scope="global", density=0.05, width=2048, repeats=3):
    """Magnitude masks against ``torch.nn.utils.prune`` (its time includes the model copy it prunes);
    agreement = the fraction of mask entries that differ."""
    model = big_mlp(width=width)
    names = [f"{i}.weight" for i in (0, 2, 4)]
    n = sum(dict(model.named_parameters())[k].numel() for k in names)

    def peer():
        m = copy.deepcopy(model)
        params = [(m[i], "weight") for i in (0, 2, 4)]
        if scope == "global":
            tprune.global_unstructured(params, pruning_method=tprune.L1Unstructured, amount=1 - density)
        else:
            for mod, name in params:
                tprune.l1_unstructured(mod, name, amount=1 - density)
        return {f"{i}.weight": m[i].weight_mask for i in (0, 2, 4)}

    times, out = alternate({"ours": lambda: magnitude_mask(model, density, scope=scope), "peer": peer}, repeats)
    ours, theirs = out["ours"], out["peer"]
    differ = sum(int((ours[k] != theirs[k]).sum()) for k in names) / n
    return row(f"pruning: magnitude mask, {scope}, density {density}", f"MLP 784-{width}-{width}-10 "
               f"({n / 1e6:.1f}M pruned weights)", best(times["ours"]), peer=f"torch.nn.utils.prune (torch "
               f"{torch.__version__.split('+')[0]})", peer_s=best(times["peer"]), agreement=differ, tolerance=0.0,
               agreement_of="fraction of mask entries that differ", case=f"masks-{scope}",
               kept=sum(int(ours[k].sum()) for k in names), peer_kept=sum(int(theirs[k].sum()) for k in names))


def bench_masks(density=0.05):
    print(f"\n== magnitude masks: MLP 784-2048-2048-10, density {density}")
    for scope in ("global", "layer"):
        r = case_masks(scope, density)
        print(f"{scope:>6}: ours {r['ours_s'] * 1e3:7.1f} ms | torch.nn.utils.prune {r['peer_s'] * 1e3:7.1f} ms "
              f"(incl. model copy) | ratio {r['ratio']:5.2f}x | identical entries {1 - r['agreement']:.6f} | "
              f"kept {r['kept']} vs {r['peer_kept']}")


def gram_cka_reference(x, y):
    """Kornblith et al.'s reference: CKA from centred linear Gram matrices (NumPy)."""
    def center(g):
        n = g.shape[0]
        h = np.eye(n) - np.ones((n, n)) / n
        return h @ g @ h
    gx, gy = center(x @ x.T), center(y @ y.T)
    return float(np.sum(gx * gy) / (np.linalg.norm(gx) * np.linalg.norm(gy)))


def case_cka(n=2000, p=256, q=128, repeats=2):
    """Linear CKA against the NumPy Gram-matrix formulation; agreement = |difference|."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, p))
    y = x[:, :q] @ rng.normal(size=(q, q)) + 0.5 * rng.normal(size=(n, q))
    times, out = alternate({"ours": lambda: linear_cka(x, y), "peer": lambda: gram_cka_reference(x, y)}, repeats)
    return row("pruning: linear CKA", f"n = {n}, p = {p}, q = {q}", best(times["ours"]),
               peer="NumPy Gram-matrix reference", peer_s=best(times["peer"]),
               agreement=abs(out["ours"] - out["peer"]), tolerance=1e-10, agreement_of="|CKA difference|",
               case="cka", cka=float(out["ours"]))


def bench_cka(n=2000, p=256, q=128):
    print(f"\n== linear CKA, n={n}, p={p}, q={q}")
    r = case_cka(n, p, q)
    print(f"ours {r['ours_s'] * 1e3:7.1f} ms | NumPy Gram reference {r['peer_s'] * 1e3:8.1f} ms | ratio "
          f"{r['ratio']:6.1f}x | |diff| {r['agreement']:.2e} (cka {r['cka']:.6f})")


def slow_cell(x, y, seconds=0.2):
    time.sleep(seconds)
    return {"value": x * y}


def case_sweep(cells=16, seconds=0.2, workers=4):
    """The sweep engine on ``cells`` cells that sleep ``seconds`` each (measures the engine, not compute): a
    thread pool against the serial run (the row's peer), and a run resumed from the store."""
    grid = sweep.grid(x=list(range(cells // 4)), y=[1, 2, 3, 4])
    cell = functools.partial(slow_cell, seconds=seconds)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        serial = sweep.run(cell, grid, store=f"{tmp}/serial", progress=False)
        t_serial = time.perf_counter() - t0
        t0 = time.perf_counter()
        threads = sweep.run(cell, grid, store=f"{tmp}/threads", executor="threads", max_workers=workers,
                            progress=False)
        t_threads = time.perf_counter() - t0
        t0 = time.perf_counter()
        sweep.run(cell, grid, store=f"{tmp}/serial", progress=False)
        t_resume = time.perf_counter() - t0
    differ = sum(serial[c]["value"] != threads[c]["value"] for c in grid)
    return row(f"sweep: {len(grid)} cells, thread pool of {workers}", f"{len(grid)} cells of {seconds} s (sleep)",
               t_threads, peer="the serial engine", peer_s=t_serial, agreement=float(differ), tolerance=0.0,
               agreement_of="cells whose values differ", case="sweep", resume_s=t_resume,
               note=f"resumed from the store in {t_resume * 1e3:.1f} ms")


def bench_sweep(cells=16):
    r = case_sweep(cells)
    grid = sweep.grid(x=list(range(cells // 4)), y=[1, 2, 3, 4])
    print(f"\n== sweep engine: {len(grid)} cells of 0.2 s each (sleep: measures the engine, not compute)")
    print(f"serial {r['peer_s']:5.2f} s | threads(4) {r['ours_s']:5.2f} s ({r['ratio']:.1f}x) | "
          f"resumed from store {r['resume_s'] * 1e3:.1f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        serial = sweep.run(slow_cell, grid, store=f"{tmp}/serial", progress=False)
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
        agree = all(dask[c]["value"] == serial[c]["value"] for c in grid)
        print(f"dask LocalCluster (4 processes) {t_dask:5.2f} s ({r['peer_s'] / t_dask:.1f}x vs serial) | "
              f"same values as serial: {agree}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--density", type=float, default=0.05, help="fraction of weights the masks keep")
    ap.add_argument("--cells", type=int, default=16, help="sweep cells (a multiple of 4)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.cells < 4 or args.cells % 4:
        ap.error(f"--cells {args.cells}: use a positive multiple of 4, e.g. --cells {max(4, args.cells // 4 * 4)}")
    torch.set_num_threads(args.threads)
    bench_masks(args.density)
    bench_cka()
    bench_sweep(args.cells)


if __name__ == "__main__":
    main()
