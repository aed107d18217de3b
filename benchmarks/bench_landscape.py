"""Loss-landscape benchmark: ours against the public tools, side by side in one run.

(a) a 2-D map against ``loss_landscapes.random_plane`` on the same model, data and number of points
    (points per second and the ratio);
(b) the time of the 2-D map of (a) divided by (number of points x one plain batched forward pass over the
    same data, batch size 1024 like the map): the physical floor of evaluating every point separately;
(c) top Hessian eigenvalue and trace against PyHessian (agreement within the estimators' error; times).

Usage: ``python benchmarks/bench_landscape.py [--model mlp|cnn|resnet] [--steps 21] [--device auto]``
"""
from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
import torch.nn.functional as F

from workbench import landscape as L, models, paramspace as ps
from workbench.backend import describe, resolve_device, synchronize
from workbench.data import digits


def timed(fn, dev, repeat=1):
    best, out = float("inf"), None
    for _ in range(repeat):
        synchronize(dev)
        t = time.perf_counter()
        out = fn()
        synchronize(dev)
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mlp", choices=["mlp", "cnn", "resnet"])
    ap.add_argument("--steps", type=int, default=21, help="grid steps per axis, odd (steps x steps points)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-hessian", action="store_true")
    args = ap.parse_args()
    if args.steps < 3 or args.steps % 2 == 0:
        ap.error(f"--steps {args.steps}: use an odd number >= 3 so that the grid includes the model, "
                 f"e.g. --steps {max(3, args.steps + 1)}")
    torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    print(f"device: {describe(dev)}, torch {torch.__version__}, threads {torch.get_num_threads()}")

    train, _test = digits(image=args.model != "mlp")
    model = models.reference_model(args.model).to(dev).eval()
    X, y = train.X.to(dev), train.y.to(dev)
    P = args.steps ** 2
    n_params = ps.flatten(model)[0].numel()
    print(f"model {args.model} ({n_params} parameters), data {len(train)} examples, grid {args.steps}x{args.steps}"
          f" = {P} points, whole data set per point")

    # warm-up (allocator, vmap tracing)
    L.plane(model, train, steps=3, device=dev, progress=False)

    # (a) ours vs loss_landscapes.random_plane, alternated twice; the best time of each is kept
    try:
        import loss_landscapes
        import loss_landscapes.metrics

        metric = loss_landscapes.metrics.Loss(F.cross_entropy, X, y)

        def peer():
            with torch.no_grad():
                return loss_landscapes.random_plane(copy.deepcopy(model), metric, distance=1, steps=args.steps,
                                                    normalization="filter", deepcopy_model=True)
    except Exception as exc:  # pragma: no cover - the peer is optional
        peer = None
        print(f"  loss-landscapes unavailable: {type(exc).__name__}: {exc}")

    def one_pass(m):
        with torch.no_grad():
            for xb, yb in train.batches(1024, device=dev):
                F.cross_entropy(m(xb), yb, reduction="sum")

    n_floor = min(P, 64)  # plain passes timed per round for (b); the floor is P times the best per-pass time
    t_ours = t_peer = t_vec = t_pass = float("inf")
    for _round in range(2):
        t, res = timed(lambda: L.plane(model, train, steps=args.steps, device=dev, progress=False), dev)
        t_ours = min(t_ours, t)
        t_vec = min(t_vec, timed(lambda: L.plane(model, train, steps=args.steps, device=dev, progress=False,
                                                 vectorize=True), dev)[0])
        if peer is not None:
            t_peer = min(t_peer, timed(peer, dev)[0])
        t_pass = min(t_pass, timed(lambda: [one_pass(model) for _ in range(n_floor)], dev)[0] / n_floor)
    print(f"\n(a) 2-D map, {P} points (best of 2, alternated)")
    print(f"  ours            : {t_ours:8.2f} s  {P / t_ours:9.1f} points/s  (chunk {res.settings['chunk']}, "
          f"vectorized={res.settings['vectorized']}, loss and accuracy)")
    print(f"  ours, vmap      : {t_vec:8.2f} s  {P / t_vec:9.1f} points/s  (vectorize=True)")
    if peer is not None:
        print(f"  loss-landscapes : {t_peer:8.2f} s  {P / t_peer:9.1f} points/s  (loss only)")
        print(f"  speed-up        : {t_peer / t_ours:8.2f} x")

    # agreement: a few grid points re-evaluated one at a time with the plain model
    theta, spec = ps.flatten(model)
    worst = 0.0
    for (i, j) in [(0, 0), (args.steps // 2, args.steps // 2), (args.steps - 1, 1)]:
        m = copy.deepcopy(model)
        ps.load_theta(m, torch.as_tensor(res.theta_at(res.x[i], res.y[j]), dtype=theta.dtype), spec)
        ref = models.evaluate(m, train, device=dev)["loss"]
        worst = max(worst, abs(ref - res.loss["data"][j, i]) / abs(ref))
    print(f"  agreement with one-at-a-time evaluation: max relative difference {worst:.2e}")

    # (b) the physical floor: P plain batched forward passes over the same data (the same batch size as the
    # map), measured in the same rounds as the maps above so that both see the same machine load
    print(f"\n(b) floor: our plane time / ({P} points x one plain batched forward pass over the {len(train)} examples)")
    print(f"  one plain pass  : {t_pass * 1e3:8.3f} ms  (best per-pass time over {n_floor} passes per round)")
    print(f"  ours / floor    : {t_ours / (P * t_pass):8.3f}  (plane {t_ours:.2f} s vs floor {P * t_pass:.2f} s; "
          "target <= 1.1)")
    print(f"  ours, vmap      : {t_vec / (P * t_pass):8.3f}  (vectorize=True)")

    if args.skip_hessian:
        return
    # (c) curvature against PyHessian, on a 500-example subset (PyHessian takes one batch)
    sub = train.subset(500, seed=0)
    Xs, ys = sub.X.to(dev), sub.y.to(dev)
    print(f"\n(c) Hessian on {len(sub)} examples")
    try:
        from pyhessian import hessian
    except Exception as exc:  # pragma: no cover
        hessian = None
        print(f"  PyHessian unavailable: {type(exc).__name__}: {exc}")
    # alternate ours and PyHessian twice and keep the best time of each (the machine may be shared)
    best = {"eig": float("inf"), "tr": float("inf"), "peig": float("inf"), "ptr": float("inf")}
    for _round in range(2):
        t, ev = timed(lambda: L.eigenvalues(model, sub, k=1, tol=1e-3, max_iter=100, device=dev), dev)
        best["eig"] = min(best["eig"], t)
        t, tr = timed(lambda: L.trace(model, sub, n_samples=100, seed=0, device=dev), dev)
        best["tr"] = min(best["tr"], t)
        if hessian is not None:
            torch.manual_seed(0)
            hc = hessian(copy.deepcopy(model), torch.nn.CrossEntropyLoss(), data=(Xs, ys), cuda=dev.type == "cuda")
            t, (peig, _vec) = timed(lambda: hc.eigenvalues(top_n=1, maxIter=100, tol=1e-3), dev)
            best["peig"] = min(best["peig"], t)
            torch.manual_seed(0)
            t, ptr = timed(lambda: hc.trace(maxIter=100, tol=1e-3), dev)
            best["ptr"] = min(best["ptr"], t)
    t_eig, t_tr = best["eig"], best["tr"]
    print(f"  ours   top eigenvalue {ev.eigenvalues[0]:.6f} (residual {ev.residuals[0]:.2e}, {ev.n_iter} HVPs) "
          f"{t_eig:6.2f} s;  trace {tr.trace:.4f} +/- {tr.stderr:.4f} (100 vectors) {t_tr:6.2f} s")
    if hessian is not None:
        t_peig, t_ptr = best["peig"], best["ptr"]
        ptr = np.asarray(ptr, dtype=float)
        p_se = ptr.std(ddof=1) / np.sqrt(len(ptr)) if len(ptr) > 1 else float("nan")
        print(f"  PyHessian top eigenvalue {peig[0]:.6f} {t_peig:6.2f} s;  trace {ptr.mean():.4f} +/- {p_se:.4f} "
              f"({len(ptr)} vectors) {t_ptr:6.2f} s")
        rel = abs(peig[0] - ev.eigenvalues[0]) / abs(ev.eigenvalues[0])
        z = abs(ptr.mean() - tr.trace) / np.hypot(tr.stderr, p_se)
        print(f"  eigenvalue relative difference {rel:.2e} (PyHessian tol 1e-3); trace difference {z:.2f} "
              "combined standard errors")
        print(f"  time ratio (PyHessian / ours): eigenvalue {t_peig / t_eig:.2f} x, trace {t_ptr / t_tr:.2f} x "
              f"(per vector {t_ptr / len(ptr) / (t_tr / 100):.2f} x)")


if __name__ == "__main__":
    main()
