"""Weight matching speed against a plain NumPy/SciPy implementation, and the LMC phenomenon on digits.

Part 1: Git Re-Basin weight matching for MLPs of width 512 .. 4096 (784 -> w -> w -> w -> 10), model B a
randomly permuted and perturbed copy of A.  ``workbench.connectivity.weight_matching`` (torch on the
chosen device; SciPy assignment) runs beside a plain NumPy/SciPy implementation of the same algorithm
(same random order of permutations); times, ratio and whether the permutations agree are printed.

Part 2: two MLPs trained on digits from different seeds: loss barrier (test split, max_minus_mean,
bn="reset") before and after weight and activation matching, and the L2 distance between them.

    python benchmarks/bench_connectivity.py [--widths 512 1024 2048 4096] [--device auto] [--repeats 3]

Case functions for ``benchmarks/run_all.py`` (rows of ``benchmarks/common.py``): :func:`case_weight_matching`
(one width; on a CUDA device too, against the same NumPy/SciPy implementation on the CPU) and
:func:`case_lmc_digits` (part 2; no peer: the barriers are in the row's extras and note).
"""
from __future__ import annotations

import argparse
import time

import workbench  # noqa: F401  (first: the thread policy must precede torch, see workbench.backend)
import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from common import alternate, best, row
from workbench import backend, connectivity as lmc, data as wdata, models


def numpy_weight_matching(params_a, params_b, spec, *, max_iter=100, seed=0):
    """The reference algorithm in plain NumPy (same loop, same order, same stopping rule)."""
    perms = {p: np.arange(n) for p, n in spec.sizes.items()}
    p2a = spec.perm_to_axes
    names = sorted(spec.sizes)
    rng = np.random.default_rng(seed)
    for _ in range(max_iter):
        improved = False
        for p in rng.permutation(names):
            n = spec.sizes[p]
            cost = np.zeros((n, n), dtype=np.float64)
            for k, i in p2a[p]:
                if k not in params_a:
                    continue
                wa = np.moveaxis(params_a[k], i, 0).reshape(n, -1)
                wb = params_b[k]
                for j, q in enumerate(spec.axes[k]):
                    if q is not None and j != i:
                        wb = np.take(wb, perms[q], axis=j)
                wb = np.moveaxis(wb, i, 0).reshape(n, -1)
                cost += wa @ wb.T
            _, ci = linear_sum_assignment(cost, maximize=True)
            old = cost[np.arange(n), perms[p]].sum()
            new = cost[np.arange(n), ci].sum()
            if new > old + 1e-12 * max(1.0, abs(old)):
                improved = True
                perms[p] = ci
        if not improved:
            break
    return perms


def _matching_pair(width: int, dev, dtype: str):
    a = models.build("mlp", seed=0, in_features=784, hidden=(width, width, width))
    spec = lmc.permutation_spec(a)
    truth = spec.random(seed=1)
    b = lmc.permute(a, truth, spec=spec)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(2)
        for p in b.parameters():
            p.add_(0.5 * p.std() * torch.randn(p.shape, generator=gen))
    tdt = getattr(torch, dtype)
    pa = {k: v.detach().to(dev, tdt) for k, v in a.named_parameters()}
    pb = {k: v.detach().to(dev, tdt) for k, v in b.named_parameters()}
    na = {k: v.detach().numpy().astype(dtype) for k, v in a.named_parameters()}
    nb = {k: v.detach().numpy().astype(dtype) for k, v in b.named_parameters()}
    return spec, truth, pa, pb, na, nb


def case_weight_matching(width: int = 1024, device: str = "cpu", repeats: int = 2, dtype: str = "float32") -> dict:
    """Weight matching of MLPs 784-w-w-w-10 (B a permuted, perturbed copy of A) on ``device`` against the plain
    NumPy/SciPy implementation (CPU), alternated, best of ``repeats``; agreement = the fraction of
    permutation entries that differ."""
    dev = backend.resolve_device(device)
    spec, truth, pa, pb, na, nb = _matching_pair(width, dev, dtype)
    if dev.type == "cuda":
        lmc.weight_matching(pa, pb, spec, seed=0)  # warm-up (kernels)
    times, out = alternate({"ours": lambda: lmc.weight_matching(pa, pb, spec, seed=0)[0],
                            "peer": lambda: numpy_weight_matching(na, nb, spec, seed=0)}, repeats, dev)
    perms, ref = out["ours"], out["peer"]
    differ = sum(int((np.asarray(perms[p]) != ref[p]).sum()) for p in perms) / sum(spec.sizes.values())
    recovered = all(np.array_equal(np.asarray(truth[p])[perms[p]], np.arange(spec.sizes[p])) for p in perms)
    return row(f"connectivity: weight matching ({dtype}) on {dev.type}", f"MLP 784-{width}-{width}-{width}-10",
               best(times["ours"]), peer="NumPy/SciPy implementation (CPU)", peer_s=best(times["peer"]),
               agreement=differ, tolerance=0.0, agreement_of="fraction of permutation entries that differ",
               case=f"weight-matching-{width}", device=backend.describe(dev), recovered=recovered,
               note="" if recovered else "the planted permutation was not recovered")


def part1(widths, device, repeats, dtype):
    dev = backend.resolve_device(device)
    print(f"== weight matching, MLP 784-w-w-w-10, device {backend.describe(dev)}, {dtype}")
    print(f"{'width':>6} {'ours (s)':>10} {'numpy (s)':>10} {'ratio':>7} {'agree':>6} {'recovered':>9}")
    for w in widths:
        r = case_weight_matching(w, device, repeats, dtype)
        print(f"{w:>6} {r['ours_s']:>10.3f} {r['peer_s']:>10.3f} {r['ratio']:>7.2f} {str(r['agreement'] == 0):>6} "
              f"{str(r['recovered']):>9}")


def case_lmc_digits(width: int = 512, epochs: float = 20, device: str = "cpu") -> dict:
    """Part 2 as a row: the test loss barrier (max_minus_mean, bn="reset") of two digits MLPs before and after
    weight and activation matching; no peer."""
    train, test = wdata.digits()
    pair = []
    for seed in (0, 1):
        m = models.build("mlp", seed=seed, hidden=(width, width))
        models.train(m, train, epochs=epochs, seed=seed, device="cpu", progress=False)
        pair.append(m)
    t = time.perf_counter()
    res = lmc.analyze(tuple(pair), test, train_data=train, points=25, bn="reset", run_layerwise=False, device=device,
                      progress=False)
    elapsed = time.perf_counter() - t
    s, se = res.summary(), res.summary("error")
    d = res.diagnostics[res.diagnostics["layer"] == "<all parameters>"].set_index("model")
    merged = res.merged.set_index("model")["accuracy"]
    figs = {m: dict(loss_barrier=float(s.loc[(m, "test"), "max_minus_mean"]),
                    error_barrier=float(se.loc[(m, "test"), "max_minus_mean"]), l2=float(d.loc[m, "l2"]),
                    merged_accuracy=float(merged[m])) for m in ("original", "weight", "activation")}
    return row("connectivity: analyze (two alignments, three 25-point curves on train and test)",
               f"two digits MLPs 64-{width}-{width}-10, {epochs:g} epochs", elapsed, case="lmc-digits",
               device=backend.describe(device), barriers=figs,
               note="test loss barrier " + ", ".join(f"{m} {v['loss_barrier']:.3f}" for m, v in figs.items()))


def part2(width, epochs, device):
    print(f"\n== LMC on digits: two MLPs 64-{width}-{width}-10, seeds 0 and 1, {epochs} epochs")
    r = case_lmc_digits(width, epochs, device)
    print(f"{'model':>11} {'loss barrier':>13} {'error barrier':>14} {'L2 to A':>8} {'merged acc':>10}")
    for model, v in r["barriers"].items():
        print(f"{model:>11} {v['loss_barrier']:>13.4f} {v['error_barrier']:>14.4f} {v['l2']:>8.2f} "
              f"{v['merged_accuracy']:>10.3f}")
    print(f"(analyze: {r['ours_s']:.1f} s incl. both alignments and three 25-point curves on train and test)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--lmc-width", type=int, default=512)
    ap.add_argument("--epochs", type=float, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-lmc", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    part1(args.widths, args.device, args.repeats, args.dtype)
    if not args.skip_lmc:
        part2(args.lmc_width, args.epochs, args.device)


if __name__ == "__main__":
    main()
