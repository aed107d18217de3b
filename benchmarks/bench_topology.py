"""Exact topological concentration: our edge-by-edge method against the earlier block method and against
walk-by-walk expansion, on small graphs, on a hub-heavy graph and at a million edges.

Every case is a function returning one dict (``work``, ``size``, ``ours_s``, ``reference_s`` or
``peer_s``, ``ratio``, ``agreement`` = largest absolute difference of the TC values, plus case details),
so that another script can import and call them:

* :func:`case_million_edges`: K = 3 on a random geometric graph with about a million training edges,
  ours against the earlier block implementation (:func:`reference_concentration`), with the peak memory
  of the process checked against a budget (run first, so the peak is its own);
* :func:`case_hubs`: K = 3 on a power-law cluster graph with 50,000 nodes and 200,000 edges (hubs of
  degree ~1,500 make the k-hop supports of their neighbours nearly dense), ours against the block method;
* :func:`case_subset`: TC of a few hundred nodes only (``nodes=``) against the full computation;
* :func:`case_atc_agreement`: ATC's rank agreement with exact TC on a node sample and on all nodes;
* :func:`case_walks`: K = 1..4 on graphs of about 3,000 nodes against the walk expansion of the public
  reference implementation (``walk_concentration(cache=False)``); when that exceeds its time budget it is
  timed on a node sample and scaled to all nodes (``extrapolated``);
* :func:`case_gpu`: CuPy on CUDA against the CPU, when a GPU is present.

    python benchmarks/bench_topology.py [--threads 2] [--repeats 1]
    python benchmarks/bench_topology.py --smoke        # small sizes, a few seconds
"""
from __future__ import annotations

import argparse
import importlib
import os
import resource
import time

import workbench  # noqa: F401  (first: the thread policy must precede torch, see workbench.backend)
import numpy as np
import torch

from workbench import topology as tp
from workbench.backend import cuda_available, cupy_available

conc = importlib.import_module("workbench.topology.concentration")  # the module (the package exports the function)

SPLITS = ("train", "val", "test")


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def timed(fn, *a, repeats: int = 1, **kw):
    """(result of the last call, best wall time over ``repeats`` calls)."""
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn(*a, **kw)
        best = min(best, time.perf_counter() - t)
    return out, best


def max_diff(a, b) -> float:
    """Largest absolute difference of the train/val/test TC of two results (TCResult or dict of arrays)."""
    get = lambda r, s: r[s] if isinstance(r, dict) else getattr(r, s)  # noqa: E731
    return max(float(np.abs(get(a, s) - get(b, s)).max()) for s in SPLITS)


def reference_concentration(split, *, k: int, max_block_nnz: float = 2e7) -> dict:
    """TC as the workbench computed it before the edge-by-edge method (SciPy, one thread): with S and T
    symmetric the numerator of node i is the column sum ``sum_v S_vi (T N^X)_vi``, accumulated over row
    blocks V, one k-hop expansion of the block giving ``S_V`` and ``T_V``, then ``T_V N^X`` per split."""
    edges, n, _ = conc._resolve_splits(split, None, None, None, True)
    a = conc._adjacency(edges["train"], n)
    nbr = {s: (a if s == "train" else conc._adjacency(edges[s], n)) for s in SPLITS}
    deg = {s: np.asarray(nbr[s].sum(axis=1)).ravel() for s in SPLITS}
    beta = n / (2.0 * len(edges["train"]))
    bk = beta ** np.arange(k)
    walks = conc._walk_counts(a, k + 1)
    est = np.minimum(walks[:k].sum(axis=0) + walks[1:].sum(axis=0) + 1, float(n) * (k + 1))
    num = {s: np.zeros(n) for s in SPLITS}
    for lo, hi in conc._blocks(est, max_block_nnz):
        x = a[lo:hi]
        s_v, t_v = x, _indicator(x)
        for step in range(1, k):
            x = x @ a
            s_v = s_v + x * float(bk[step])
            t_v = t_v + _indicator(x) * float(bk[step])
        for s in SPLITS:
            if len(edges[s]):
                num[s] += np.asarray(s_v.multiply(t_v @ nbr[s]).sum(axis=0)).ravel()
    out = {}
    for s in SPLITS:
        den = bk.sum() * (bk @ walks[:k]) - (1.0 if s == "train" else 0.0)
        ok = (deg[s] > 0) & (den > 0) & (deg["train"] >= (2 if s == "train" else 1))
        out[s] = np.zeros(n)
        out[s][ok] = num[s][ok] / (deg[s][ok] * den[ok])
    return out


def _indicator(x):
    y = x.copy()
    y.data[:] = 1.0
    return y


def _versus_reference(work: str, graph, k: int, repeats: int, budget_gb: float = None) -> dict:
    split = tp.split_edges(graph, seed=0)
    rss0 = peak_rss_gb()
    ours, t_ours = timed(tp.concentration, split, k=k, device="cpu", repeats=repeats)
    peak = peak_rss_gb()
    ref, t_ref = timed(reference_concentration, split, k=k)
    out = {"work": work, "size": f"{graph.num_nodes:,} nodes, {len(split.train):,} training edges, max degree "
           f"{int(graph.degrees().max())}", "k": k, "ours_s": t_ours, "reference_s": t_ref,
           "ratio": t_ref / t_ours, "agreement": max_diff(ours, ref), "threads": ours.settings["threads"],
           "peak_gb": peak, "peak_before_gb": rss0, "load": os.getloadavg()[0]}
    if budget_gb is not None:
        out["budget_gb"], out["memory"] = budget_gb, "PASS" if peak <= budget_gb else "FAIL"
    return out


def case_million_edges(nodes: int = 290_000, degree: float = 10.0, k: int = 3, repeats: int = 1,
                       budget_gb: float = 24.0) -> dict:
    """Random geometric graph, about a million training edges at the defaults (run it first: peak RSS)."""
    g = tp.builtin("random_geometric", n=nodes, degree=degree, seed=0)
    return _versus_reference(f"K={k} random geometric {len(g.edges) / 1e6:.1f}M edges vs blocks", g, k, repeats,
                             budget_gb)


def case_hubs(nodes: int = 50_000, m: int = 4, k: int = 3, repeats: int = 1) -> dict:
    """Power-law cluster graph (Holme-Kim, ``m`` edges per new node): 200,000 edges at the defaults."""
    g = tp.builtin("powerlaw_cluster", n=nodes, m=m, seed=0)
    return _versus_reference(f"K={k} power-law cluster {g.num_edges / 1e3:.0f}k edges vs blocks", g, k, repeats)


def case_subset(nodes: int = 50_000, m: int = 4, k: int = 3, sample: int = 500, repeats: int = 1) -> dict:
    """TC of ``sample`` random nodes (``nodes=``) against the same nodes of the full computation."""
    split = tp.split_edges(tp.builtin("powerlaw_cluster", n=nodes, m=m, seed=0), seed=0)
    pick = np.sort(np.random.default_rng(0).choice(split.num_nodes, sample, replace=False))
    part, t_part = timed(tp.concentration, split, k=k, nodes=pick, device="cpu", repeats=repeats)
    full, t_full = timed(tp.concentration, split, k=k, device="cpu")
    agree = max(float(np.abs(getattr(part, s)[pick] - getattr(full, s)[pick]).max()) for s in SPLITS)
    return {"work": f"K={k} {sample} nodes of the power-law graph vs all",
            "size": f"{nodes:,} nodes, power-law cluster",
            "k": k, "ours_s": t_part, "reference_s": t_full, "ratio": t_full / t_part, "agreement": agree}


def case_atc_agreement(nodes: int = 50_000, m: int = 4, k: int = 3, sample: int = 500) -> dict:
    """ATC's Spearman rank agreement with exact TC (val, test) as ``topology.analyze`` measures it when it
    uses ATC (exact TC of a seeded sample of nodes with val/test neighbours), against all nodes."""
    from scipy import stats

    split = tp.split_edges(tp.builtin("powerlaw_cluster", n=nodes, m=m, seed=0), seed=0)
    atc, t_atc = timed(tp.approximate_concentration, split, k=k, seed=0, device="cpu")
    held = np.unique(np.concatenate([split.val.ravel(), split.test.ravel()]))
    pick = np.sort(np.random.default_rng(0).choice(held, size=min(sample, len(held)), replace=False))
    part, t_part = timed(tp.concentration, split, k=k, nodes=pick, device="cpu")
    full, t_full = timed(tp.concentration, split, k=k, device="cpu")
    out = {"work": f"K={k} ATC agreement on {sample} nodes vs all", "size": f"{nodes:,} nodes, power-law cluster",
           "k": k, "ours_s": t_atc + t_part, "reference_s": t_full, "ratio": t_full / (t_atc + t_part),
           "agreement": max(float(np.abs(getattr(part, s)[pick] - getattr(full, s)[pick]).max()) for s in SPLITS)}
    for s in ("val", "test"):
        for name, r in (("sample", part), ("all", full)):
            ok = r.defined(s)
            out[f"spearman_{s}_{name}"] = float(stats.spearmanr(getattr(atc, s)[ok], getattr(r, s)[ok])[0])
            out[f"n_{s}_{name}"] = int(ok.sum())
    return out


def case_walks(graph: str = "random_geometric", nodes: int = 3000, k: int = 2, degree: float = 8.0,
               walk_budget: float = 30.0, repeats: int = 3) -> dict:
    """Ours against the walk-by-walk expansion (``cache=False``, as the public reference implementation)."""
    kw = {"degree": degree} if graph == "random_geometric" else {"m": 3}
    g = tp.builtin(graph, n=nodes, seed=0, **kw)
    split = tp.split_edges(g, seed=0)
    fast, t_fast = timed(tp.concentration, split, k=k, device="cpu", repeats=repeats)
    rng = np.random.default_rng(k)
    probe = rng.choice(g.num_nodes, size=min(20, g.num_nodes), replace=False)
    _, t_setup = timed(tp.walk_concentration, split, k=k, nodes=[], cache=False)
    _, t_probe = timed(tp.walk_concentration, split, k=k, nodes=probe, cache=False)
    per_node = max(t_probe - t_setup, 1e-9) / len(probe)
    if t_setup + per_node * g.num_nodes <= walk_budget:
        slow, t_slow = timed(tp.walk_concentration, split, k=k, cache=False)
        picked, note = np.arange(g.num_nodes), "all nodes"
    else:
        size = max(20, int(walk_budget / per_node / 2))
        picked = np.sort(rng.choice(g.num_nodes, size=min(size, g.num_nodes), replace=False))
        slow, t_part = timed(tp.walk_concentration, split, k=k, nodes=picked, cache=False)
        t_slow = t_setup + (t_part - t_setup) * g.num_nodes / len(picked)
        note = f"extrapolated from {len(picked)} random nodes"
    ours = fast.to_frame().loc[picked, list(SPLITS)].to_numpy()
    return {"work": f"K={k} {graph} vs walk expansion", "size": f"{g.num_nodes:,} nodes, "
            f"{len(split.train):,} training edges, max degree {int(g.degrees().max())}", "k": k,
            "ours_s": t_fast, "peer_s": t_slow, "ratio": t_slow / t_fast, "note": note,
            "agreement": float(np.abs(ours - slow[list(SPLITS)].to_numpy()).max())}


def case_gpu(nodes: int = 3000, k: int = 3, big_nodes: int = 290_000, repeats: int = 3) -> dict:
    """CuPy (cuSPARSE) on CUDA against the CPU: a small graph (timed after a warm-up) and the big one."""
    if not (cuda_available() and cupy_available()):
        return {"work": "CUDA vs CPU", "size": "-", "skipped": "no CUDA GPU with CuPy"}
    out = {"work": f"K={k} CUDA vs CPU", "k": k}
    for name, n in (("small", nodes), ("big", big_nodes)):
        split = tp.split_edges(tp.builtin("random_geometric", n=n, seed=0), seed=0)
        cpu, t_c = timed(tp.concentration, split, k=k, device="cpu")
        tp.concentration(split, k=k, device="cuda")  # warm-up (CuPy kernels compile on first use)
        gpu, t_g = timed(tp.concentration, split, k=k, device="cuda", repeats=repeats)
        out.update({f"{name}_size": f"{n:,} nodes", f"{name}_cpu_s": t_c, f"{name}_gpu_s": t_g,
                    f"{name}_agreement": max_diff(gpu, cpu)})
    out.update(size=out["big_size"], ours_s=out["big_gpu_s"], reference_s=out["big_cpu_s"],
               ratio=out["big_cpu_s"] / out["big_gpu_s"], agreement=max(out["small_agreement"],
                                                                         out["big_agreement"]))
    return out


def _show(r: dict) -> None:
    if "skipped" in r:
        print(f"{r['work']}: skipped ({r['skipped']})")
        return
    other = "reference_s" if "reference_s" in r else "peer_s"
    extra = {k: v for k, v in r.items() if k not in ("work", "size", "ours_s", other, "ratio", "agreement")}
    print(f"{r['work']} [{r['size']}]: ours {r['ours_s']:.3f} s, {other[:-2]} {r[other]:.3f} s, "
          f"ratio {r['ratio']:.1f}x, max |diff| {r['agreement']:.1e}; "
          + ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in extra.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="timings of ours on the big graphs (best of)")
    ap.add_argument("--nodes", type=int, default=3000)
    ap.add_argument("--kmax", type=int, default=4)
    ap.add_argument("--walk-budget", type=float, default=30.0)
    ap.add_argument("--big-nodes", type=int, default=290_000)
    ap.add_argument("--hub-nodes", type=int, default=50_000)
    ap.add_argument("--budget-gb", type=float, default=24.0)
    ap.add_argument("--smoke", action="store_true", help="small sizes: a check that every case runs")
    args = ap.parse_args()
    if args.smoke:
        args.nodes, args.kmax, args.walk_budget, args.big_nodes, args.hub_nodes = 300, 2, 1.0, 3000, 2000
    torch.set_num_threads(args.threads)
    results = [case_million_edges(args.big_nodes, repeats=args.repeats, budget_gb=args.budget_gb),
               case_hubs(args.hub_nodes, repeats=args.repeats),
               case_subset(args.hub_nodes, sample=min(500, args.hub_nodes // 4)),
               case_atc_agreement(args.hub_nodes, sample=min(500, args.hub_nodes // 4))]
    for graph in ("random_geometric", "powerlaw_cluster"):
        results += [case_walks(graph, args.nodes, k, walk_budget=args.walk_budget) for k in range(1, args.kmax + 1)]
    results.append(case_gpu(args.nodes, big_nodes=args.big_nodes))
    for r in results:
        _show(r)
    print("summary (time of the other method / ours): " + "; ".join(
        f"{r['work']} {r['ratio']:.1f}x" + ("*" if "extrapolated" in r.get("note", "") else "")
        for r in results if "ratio" in r) + "  (* walk time extrapolated from a node sample)")


if __name__ == "__main__":
    main()
