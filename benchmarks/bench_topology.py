"""Exact topological concentration: sparse matrices against walk-by-walk expansion, and at scale.

One run prints:

1. K = 1..4 on graphs of about 3,000 nodes: ``workbench.topology.concentration`` (sparse, all three
   splits) against the straightforward method that expands every walk node by node (the approach of the
   public reference implementation, ``walk_concentration``), with the ratio and the largest difference.
   For large K the walk expansion is timed on a random sample of nodes and scaled to all nodes (marked
   "extrapolated"); agreement is checked on the sample.
2. Exact TC at K = 3 on a graph with about a million training edges, with the peak memory of the
   process (run first, so the peak is its own) checked against the memory budget (``--budget-gb``,
   24 GB on this machine): PASS or FAIL.
3. The same on CUDA (CuPy sparse) when a GPU is present.

The last line is one summary of the ratios (walk expansion time / sparse time per graph and K, CPU / GPU)
and the memory verdict.

    python benchmarks/bench_topology.py [--nodes 3000] [--big-nodes 290000] [--walk-budget 30]
    python benchmarks/bench_topology.py --nodes 200 --kmax 2 --big-nodes 2000 --walk-budget 1  # smoke
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from workbench import topology as tp
from workbench.backend import cuda_available, cupy_available


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def timed(fn, *a, **kw):
    t = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=3000)
    ap.add_argument("--degree", type=float, default=8.0)
    ap.add_argument("--kmax", type=int, default=4)
    ap.add_argument("--walk-budget", type=float, default=30.0,
                    help="seconds per K for the walk expansion before it switches to a node sample")
    ap.add_argument("--big-nodes", type=int, default=290_000)
    ap.add_argument("--big-degree", type=float, default=10.0)
    ap.add_argument("--budget-gb", type=float, default=24.0, help="memory budget of the big K=3 run")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    big, t_gen = timed(tp.builtin, "random_geometric", n=args.big_nodes, degree=args.big_degree, seed=0)
    bsplit = tp.split_edges(big, seed=0)
    print(f"big graph: {big} generated in {t_gen:.1f} s; train {len(bsplit.train)} edges")
    rss0 = peak_rss_gb()
    res, t_big = timed(tp.concentration, bsplit, k=3, device="cpu")
    peak = peak_rss_gb()
    verdict = "PASS" if peak <= args.budget_gb else "FAIL"
    print(f"exact TC K=3, all splits, CPU (SciPy): {t_big:.1f} s in {res.settings['blocks']} blocks; {res!r}")
    print(f"  memory: peak RSS {peak:.2f} GB (before the run: {rss0:.2f} GB) against the {args.budget_gb:g} GB "
          f"budget: {verdict} ({len(bsplit.train):,} training edges)")
    summary = [f"big K=3 ({len(bsplit.train) / 1e6:.2f}M train edges) {t_big:.1f} s, "
               f"peak {peak:.1f}/{args.budget_gb:g} GB {verdict}"]
    shift = tp.distribution_shift(res)
    print(f"  distribution shift: mean Train-TC {shift['mean_train']:.3f} vs Test-TC {shift['mean_test']:.3f}")
    print()

    graphs = [tp.builtin("random_geometric", n=args.nodes, degree=args.degree, seed=0),
              tp.builtin("powerlaw_cluster", n=args.nodes, m=3, seed=0)]
    for g in graphs:
        ratios = []
        split = tp.split_edges(g, seed=0)
        print(f"graph: {g}  (train {len(split.train)}, val {len(split.val)}, test {len(split.test)} edges, "
              f"max degree {g.degrees().max()})")
        print(f"{'K':>2} {'sparse s':>10} {'walks s':>10} {'ratio':>9} {'max |diff|':>11}  note")
        rng = np.random.default_rng(0)
        for k in range(1, args.kmax + 1):
            fast, t_fast = timed(tp.concentration, split, k=k, device="cpu")
            # the public reference re-expands every neighbour's walks per pair (cache=False); probe a few
            # nodes to decide whether all nodes fit in the time budget
            probe = rng.choice(g.num_nodes, size=min(20, g.num_nodes), replace=False)
            _, t_setup = timed(tp.walk_concentration, split, k=k, nodes=[], cache=False)
            _, t_probe = timed(tp.walk_concentration, split, k=k, nodes=probe, cache=False)
            per_node = max(t_probe - t_setup, 1e-9) / len(probe)
            if t_setup + per_node * g.num_nodes <= args.walk_budget:
                slow, t_slow = timed(tp.walk_concentration, split, k=k, cache=False)
                nodes, note = np.arange(g.num_nodes), "all nodes"
            else:
                m = max(20, int(args.walk_budget / per_node / 2))
                nodes = np.sort(rng.choice(g.num_nodes, size=min(m, g.num_nodes), replace=False))
                slow, t_part = timed(tp.walk_concentration, split, k=k, nodes=nodes, cache=False)
                t_slow = t_setup + (t_part - t_setup) * g.num_nodes / len(nodes)
                note = f"extrapolated from {len(nodes)} random nodes"
            ours = fast.to_frame().loc[nodes, ["train", "val", "test"]].to_numpy()
            diff = float(np.abs(ours - slow[["train", "val", "test"]].to_numpy()).max())
            print(f"{k:>2} {t_fast:>10.3f} {t_slow:>10.2f} {t_slow / t_fast:>8.0f}x {diff:>11.2e}  {note}")
            ratios.append(f"K={k} {t_slow / t_fast:.0f}x" + ("*" if note != "all nodes" else ""))
        print()
        summary.append(f"{g.name.split('(')[0]} walks/sparse " + " ".join(ratios))

    if cuda_available() and cupy_available():
        print()
        gratios = []
        for k in range(1, args.kmax + 1):
            split = tp.split_edges(graphs[0], seed=0)
            cpu, t_c = timed(tp.concentration, split, k=k, device="cpu")
            tp.concentration(split, k=k, device="cuda")  # warm-up
            gpu, t_g = timed(tp.concentration, split, k=k, device="cuda")
            d = max(float(np.abs(getattr(cpu, s) - getattr(gpu, s)).max()) for s in ("train", "val", "test"))
            print(f"GPU K={k}: CPU {t_c:.3f} s, CUDA {t_g:.3f} s, ratio {t_c / t_g:.1f}x, max |diff| {d:.1e}")
            gratios.append(f"K={k} {t_c / t_g:.1f}x")
        gres, t_bg = timed(tp.concentration, bsplit, k=3, device="cuda")
        print(f"GPU big graph K=3: {t_bg:.1f} s (CPU {t_big:.1f} s), max |diff| "
              f"{float(np.abs(gres.test - res.test).max()):.1e}")
        summary.append("CPU/GPU " + " ".join(gratios) + f" big {t_big / t_bg:.1f}x")
    else:
        print("no CUDA GPU with CuPy here: GPU figures skipped")
        summary.append("GPU skipped")
    print()
    print("summary (* = walk time extrapolated from a node sample): " + "; ".join(summary))


if __name__ == "__main__":
    main()
