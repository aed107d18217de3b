"""Loss-landscape benchmark: ours against the public tools, side by side in one run.

Cases (each a function returning a row of ``benchmarks/common.py``, so ``benchmarks/run_all.py`` can call
them):

* :func:`case_plane`: a 2-D map against ``loss_landscapes.random_plane`` on the same model, data and
  number of points, alternated (best of ``repeats``); the physical floor is the number of points times
  one plain batched forward pass over the same data (batch size 1024 like the map), measured in the same
  rounds.  Agreement: our map at three grid points against the peer's own evaluation of the model at
  those points (``loss_landscapes.point``), or against ``models.evaluate`` when the peer is missing.
* :func:`case_hessian`: top Hessian eigenvalue and trace against PyHessian (agreement within the
  estimators' error; times).
* :func:`case_cuda_plane`: a filter-normalised plane of a ResNet-18 (CIFAR layout, 11M parameters) on
  CIFAR-size images (3x32x32, random) on a CUDA device; the peer, when installed, is timed on a smaller
  grid and scaled to the same number of points.

Usage: ``python benchmarks/bench_landscape.py [--model mlp|cnn|resnet] [--steps 21] [--device auto]``
"""
from __future__ import annotations

import argparse
import copy
from typing import Dict, Optional

import workbench  # noqa: F401  (first: the thread policy must precede torch, see workbench.backend)
import numpy as np
import torch
import torch.nn.functional as F

from common import alternate, best, peak_growth, peer_label, row
from workbench import landscape as L, models, paramspace as ps
from workbench.backend import describe, resolve_device
from workbench.data import Dataset, digits


def _peer_plane(model, data: Dataset, steps: int):
    import loss_landscapes
    import loss_landscapes.metrics

    metric = loss_landscapes.metrics.Loss(F.cross_entropy, data.X, data.y)

    def peer():
        with torch.no_grad():
            return loss_landscapes.random_plane(copy.deepcopy(model), metric, distance=1, steps=steps,
                                                normalization="filter", deepcopy_model=True)
    return peer, metric


def _one_pass(model, data: Dataset, dev):
    with torch.no_grad():
        for xb, yb in data.batches(1024, device=dev):
            F.cross_entropy(model(xb), yb, reduction="sum")


def _agreement(model, res, data: Dataset, steps: int, dev, metric=None) -> float:
    """Largest relative difference of our map against a plain evaluation of the model at three grid points:
    the peer's (``loss_landscapes.point``) when ``metric`` is given, else ``models.evaluate``."""
    theta, spec = ps.flatten(model)
    worst = 0.0
    for (i, j) in [(0, 0), (steps // 2, steps // 2), (steps - 1, 1)]:
        m = copy.deepcopy(model)
        ps.load_theta(m, torch.as_tensor(res.theta_at(res.x[i], res.y[j]), dtype=theta.dtype, device=theta.device),
                      spec)
        if metric is not None:
            import loss_landscapes

            with torch.no_grad():
                ref = float(loss_landscapes.point(m, metric))
        else:
            ref = models.evaluate(m, data, device=dev)["loss"]
        worst = max(worst, abs(ref - float(res.loss["data"][j, i])) / abs(ref))
    return worst


def case_plane(model_name: str = "mlp", steps: int = 21, device: str = "cpu", repeats: int = 2,
               vmap: bool = False, model=None, data: Optional[Dataset] = None, peer_steps: Optional[int] = None,
               size: str = "") -> Dict:
    """Our ``steps x steps`` plane against ``loss_landscapes.random_plane`` (the peer on ``peer_steps``,
    default the same grid, its time scaled to ``steps**2`` points), with the forward-pass floor."""
    dev = resolve_device(device)
    if data is None:
        data, _ = digits(image=model_name != "mlp")
    data = data.to(dev)
    model = (models.build(model_name, seed=0) if model is None else model).to(dev).eval()
    P, peer_steps = steps ** 2, peer_steps or steps
    label, have_peer = peer_label("loss_landscapes", "loss-landscapes")
    peer, metric = _peer_plane(model, data, peer_steps) if have_peer else (None, None)
    ours = lambda: L.plane(model, data, steps=steps, device=dev, progress=False)  # noqa: E731
    L.plane(model, data, steps=3, device=dev, progress=False)  # warm-up (allocator, vmap tracing)
    note = ""
    if have_peer:  # the peer's warm-up, on the smallest grid; a peer that fails leaves its columns blank
        try:
            _peer_plane(model, data, 3)[0]()
        except Exception as exc:
            label, have_peer, peer, metric = label, False, None, None
            note = f"peer failed: {type(exc).__name__}: {exc}"
    n_floor = min(P, 16)
    fns = {"ours": ours, "peer": peer, "floor": lambda: [_one_pass(model, data, dev) for _ in range(n_floor)]}
    if vmap:
        fns["vmap"] = lambda: L.plane(model, data, steps=steps, device=dev, progress=False, vectorize=True)
    times, out = alternate(fns, repeats, dev)
    _, peak = peak_growth(ours, dev)
    res = out["ours"]
    n_params = ps.flatten(model)[0].numel()
    peer_s = best(times["peer"]) * P / peer_steps ** 2 if have_peer else None
    if have_peer and peer_steps != steps:
        note = f"peer timed on {peer_steps}x{peer_steps} and scaled to {P} points"
    extra = {"vmap_s": best(times["vmap"])} if vmap else {}
    return row(f"landscape: {steps}x{steps} plane, filter-normalised, loss and accuracy", size or
               f"{model_name} ({n_params / 1e3:.0f}k parameters, untrained), {len(data)} examples", best(times["ours"]),
               peer=label, peer_s=peer_s, floor=f"{P} plain forward passes (batch 1024)",
               floor_s=best(times["floor"]) / n_floor * P,
               agreement=_agreement(model, res, data, steps, dev, metric), tolerance=1e-4,
               agreement_of="relative loss at 3 grid points vs " + ("the peer's evaluation" if have_peer else
                                                                    "models.evaluate"),
               peak_mb=peak, device=describe(dev), case=f"plane-{model_name}", chunk=res.settings["chunk"],
               vectorized=res.settings["vectorized"], note=note, **extra)


def resnet18(num_classes: int = 10):
    """ResNet-18 in the CIFAR layout (3x3 stem, four stages of two basic blocks, 64..512 channels)."""
    return models.build("resnet", seed=0, in_channels=3, width=64, blocks=(2, 2, 2, 2), num_classes=num_classes)


def cifar_like(n: int, seed: int = 0, side: int = 32) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    return Dataset(torch.randn(n, 3, side, side, generator=g), torch.randint(0, 10, (n,), generator=g), "cifar-like")


def case_cuda_plane(steps: int = 51, n: int = 10_000, device: str = "cuda", width: int = 64, side: int = 32,
                    peer_steps: int = 11, repeats: int = 1) -> Dict:
    """A ``steps x steps`` filter-normalised plane of a ResNet-18 on ``n`` CIFAR-size images on ``device``
    (``width`` and ``side`` shrink it for a dry run on the CPU)."""
    model = models.build("resnet", seed=0, in_channels=3, width=width, blocks=(2, 2, 2, 2), num_classes=10)
    n_params = sum(p.numel() for p in model.parameters())
    size = (f"ResNet-18 layout, width {width} ({n_params / 1e6:.1f}M parameters, untrained), {n} images "
            f"3x{side}x{side}")
    return case_plane("resnet18", steps, device, repeats, model=model, data=cifar_like(n, side=side),
                      peer_steps=min(peer_steps, steps), size=size)


def case_hessian(model_name: str = "mlp", n: int = 500, device: str = "cpu", trace_vectors: int = 100,
                 repeats: int = 2) -> Dict:
    """Top Hessian eigenvalue and trace (``trace_vectors`` Hutchinson vectors) against PyHessian on ``n``
    examples (PyHessian takes one batch); alternated, best of ``repeats``."""
    dev = resolve_device(device)
    train, _ = digits(image=model_name != "mlp")
    sub = train.subset(n, seed=0)
    model = models.reference_model(model_name).to(dev).eval()
    label, have_peer = peer_label("pyhessian", "PyHessian")
    hc = None
    if have_peer:
        from pyhessian import hessian

        hc = hessian(copy.deepcopy(model), torch.nn.CrossEntropyLoss(), data=(sub.X.to(dev), sub.y.to(dev)),
                     cuda=dev.type == "cuda")

    def peer_eig():
        torch.manual_seed(0)
        return hc.eigenvalues(top_n=1, maxIter=100, tol=1e-3)

    def peer_trace():
        torch.manual_seed(0)
        return hc.trace(maxIter=trace_vectors, tol=1e-3)

    times, out = alternate({
        "eig": lambda: L.eigenvalues(model, sub, k=1, tol=1e-3, max_iter=100, device=dev),
        "trace": lambda: L.trace(model, sub, n_samples=trace_vectors, seed=0, device=dev),
        "peig": peer_eig if have_peer else None, "ptrace": peer_trace if have_peer else None}, repeats, dev)
    ev, tr = out["eig"], out["trace"]
    extra = dict(eigenvalue=float(ev.eigenvalues[0]), trace=float(tr.trace), trace_stderr=float(tr.stderr),
                 trace_s=best(times["trace"]), hvps=int(ev.n_iter))
    rel = None
    if have_peer:
        peig, ptr = out["peig"][0][0], np.asarray(out["ptrace"], dtype=float)
        p_se = ptr.std(ddof=1) / np.sqrt(len(ptr)) if len(ptr) > 1 else float("nan")
        rel = abs(peig - ev.eigenvalues[0]) / abs(ev.eigenvalues[0])
        extra.update(peer_eigenvalue=float(peig), peer_trace=float(ptr.mean()), peer_trace_stderr=float(p_se),
                     peer_trace_s=best(times["ptrace"]), peer_trace_vectors=len(ptr),
                     trace_z=float(abs(ptr.mean() - tr.trace) / np.hypot(tr.stderr, p_se)))
    return row("landscape: top Hessian eigenvalue (power iteration, tol 1e-3)",
               f"{model_name} (trained on digits), {len(sub)} examples", best(times["eig"]), peer=label,
               peer_s=best(times["peig"]) if have_peer else None, agreement=rel, tolerance=1e-2,
               agreement_of="relative top eigenvalue (both stop at tol 1e-3)", device=describe(dev),
               case=f"hessian-{model_name}",
               note=(f"trace: ours {tr.trace:.3f} +/- {tr.stderr:.3f}, peer {extra['peer_trace']:.3f} "
                     f"+/- {extra['peer_trace_stderr']:.3f} ({extra['trace_z']:.2f} combined SE)") if have_peer
               else "", **extra)


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
    r = case_plane(args.model, args.steps, str(dev), repeats=2, vmap=True)
    P = args.steps ** 2
    print(f"\n(a) 2-D map, {r['size']}, {P} points (best of 2, alternated)")
    print(f"  ours            : {r['ours_s']:8.2f} s  {P / r['ours_s']:9.1f} points/s  (chunk {r['chunk']}, "
          f"vectorized={r['vectorized']}, loss and accuracy)")
    print(f"  ours, vmap      : {r['vmap_s']:8.2f} s  {P / r['vmap_s']:9.1f} points/s  (vectorize=True)")
    if r["peer_s"] is not None:
        print(f"  {r['peer']:<16}: {r['peer_s']:8.2f} s  {P / r['peer_s']:9.1f} points/s  (loss only)")
        print(f"  speed-up        : {r['ratio']:8.2f} x")
    print(f"  agreement ({r['agreement_of']}): {r['agreement']:.2e}")
    print(f"\n(b) floor: {r['floor']}: {r['floor_s']:.2f} s; ours / floor {r['floor_ratio']:.3f} (target <= 1.1); "
          f"vmap / floor {r['vmap_s'] / r['floor_s']:.3f}")
    if args.skip_hessian:
        return
    h = case_hessian(args.model, device=str(dev))
    print(f"\n(c) Hessian on {h['size']}")
    print(f"  ours   top eigenvalue {h['eigenvalue']:.6f} ({h['hvps']} HVPs) {h['ours_s']:6.2f} s;  trace "
          f"{h['trace']:.4f} +/- {h['trace_stderr']:.4f} (100 vectors) {h['trace_s']:6.2f} s")
    if h["peer_s"] is not None:
        print(f"  {h['peer']} top eigenvalue {h['peer_eigenvalue']:.6f} {h['peer_s']:6.2f} s;  trace "
              f"{h['peer_trace']:.4f} +/- {h['peer_trace_stderr']:.4f} ({h['peer_trace_vectors']} vectors) "
              f"{h['peer_trace_s']:6.2f} s")
        print(f"  eigenvalue relative difference {h['agreement']:.2e}; trace difference {h['trace_z']:.2f} combined "
              f"standard errors; time ratio (PyHessian / ours): eigenvalue {h['ratio']:.2f} x, trace "
              f"{h['peer_trace_s'] / h['trace_s']:.2f} x")


if __name__ == "__main__":
    main()
