"""Weight matching speed against a plain NumPy/SciPy implementation, and the LMC phenomenon on digits.

Part 1: Git Re-Basin weight matching for MLPs of width 512 .. 4096 (784 -> w -> w -> w -> 10), model B a
randomly permuted and perturbed copy of A.  ``workbench.connectivity.weight_matching`` (torch on the
chosen device; SciPy assignment) runs beside a plain NumPy/SciPy implementation of the same algorithm
(same random order of permutations); times, ratio and whether the permutations agree are printed.

Part 2: two MLPs trained on digits from different seeds: loss barrier (test split, max_minus_mean,
bn="reset") before and after weight and activation matching, and the L2 distance between them.

    python benchmarks/bench_connectivity.py [--widths 512 1024 2048 4096] [--device auto] [--repeats 3]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

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


def part1(widths, device, repeats, dtype):
    dev = backend.resolve_device(device)
    print(f"== weight matching, MLP 784-w-w-w-10, device {backend.describe(dev)}, {dtype}")
    print(f"{'width':>6} {'ours (s)':>10} {'numpy (s)':>10} {'ratio':>7} {'agree':>6} {'recovered':>9}")
    tdt = getattr(torch, dtype)
    for w in widths:
        a = models.build("mlp", seed=0, in_features=784, hidden=(w, w, w))
        spec = lmc.permutation_spec(a)
        truth = spec.random(seed=1)
        b = lmc.permute(a, truth, spec=spec)
        with torch.no_grad():
            gen = torch.Generator().manual_seed(2)
            for p in b.parameters():
                p.add_(0.5 * p.std() * torch.randn(p.shape, generator=gen))
        pa = {k: v.detach().to(dev, tdt) for k, v in a.named_parameters()}
        pb = {k: v.detach().to(dev, tdt) for k, v in b.named_parameters()}
        na = {k: v.detach().numpy().astype(dtype) for k, v in a.named_parameters()}
        nb = {k: v.detach().numpy().astype(dtype) for k, v in b.named_parameters()}
        ours, ref = [], []
        for _ in range(repeats):
            backend.synchronize(dev)
            t = time.perf_counter()
            perms, _ = lmc.weight_matching(pa, pb, spec, seed=0)
            backend.synchronize(dev)
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            ref_perms = numpy_weight_matching(na, nb, spec, seed=0)
            ref.append(time.perf_counter() - t)
        agree = all(np.array_equal(perms[p], ref_perms[p]) for p in perms)
        recovered = all(np.array_equal(np.asarray(truth[p])[perms[p]], np.arange(spec.sizes[p])) for p in perms)
        to, tr = min(ours), min(ref)
        print(f"{w:>6} {to:>10.3f} {tr:>10.3f} {tr / to:>7.2f} {str(agree):>6} {str(recovered):>9}")


def part2(width, epochs, device):
    print(f"\n== LMC on digits: two MLPs 64-{width}-{width}-10, seeds 0 and 1, {epochs} epochs")
    train, test = wdata.digits()
    pair = []
    for seed in (0, 1):
        m = models.build("mlp", seed=seed, hidden=(width, width))
        models.train(m, train, epochs=epochs, seed=seed, device="cpu", progress=False)
        pair.append(m)
    a, b = pair
    rows = []
    t = time.perf_counter()
    res = lmc.analyze((a, b), test, train_data=train, points=25, bn="reset", run_layerwise=False, device=device)
    elapsed = time.perf_counter() - t
    s = res.summary()
    d = res.diagnostics[res.diagnostics["layer"] == "<all parameters>"].set_index("model")
    print(f"{'model':>11} {'loss barrier':>13} {'error barrier':>14} {'L2 to A':>8} {'merged acc':>10}")
    se = res.summary("error")
    merged = res.merged.set_index("model")["accuracy"]
    for model in ("original", "weight", "activation"):
        rows.append(model)
        print(f"{model:>11} {s.loc[(model, 'test'), 'max_minus_mean']:>13.4f} "
              f"{se.loc[(model, 'test'), 'max_minus_mean']:>14.4f} {d.loc[model, 'l2']:>8.2f} {merged[model]:>10.3f}")
    print(f"(analyze: {elapsed:.1f} s incl. both alignments and three 25-point curves on train and test)")


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
