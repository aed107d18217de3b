"""Benchmark: representation-ID estimators against scikit-dimension, and Fastfood against dense projections.

Run:  python benchmarks/bench_intrinsic_dimension.py [--n 10000] [--features 768] [--device auto]

1. TwoNN (fit and MLE) and Levina-Bickel MLE (k=20) on ``n`` points in ``features`` dimensions (a
   20-dimensional curved manifold embedded linearly, plus small noise): workbench vs
   ``skdim.id.TwoNN`` / ``skdim.id.MLE``, times, speed-up and agreement.
   The speed-up is also printed as a ratio to the 10x target (>= 1 meets it).
1b. TwoNN on many points in few dimensions (``--low-n`` points, default 100,000, in ``--low-features``,
   default 10): a full-rank Gaussian (the hardest case for a tree search) and a 5-dimensional sphere
   embedded linearly, against ``skdim.id.TwoNN``; the neighbour search ``knn`` chose is printed (a
   k-d tree on the CPU uses all cores, whatever ``--threads`` says; scikit-dimension's search runs on
   one).  ``--repeat`` times each side of cases 1 and 1b that many times (best of).
2. Projections at D = 10^6 for d = 10^3, 10^4, 10^5: time per training step (forward + backward of the
   projection), the memory the projection holds, and the measured peak memory of building it and
   taking one step (peak RSS increase on CPU, ``torch.cuda.max_memory_allocated`` on GPU; each
   configuration runs in a fresh process), for Fastfood, sparse, the stored dense matrix (built only
   where it fits in ``--dense-max-gb``; its size is always reported) and the dense projection
   regenerated chunk by chunk from its seed (O(d) memory held; one step redraws all D x d numbers twice,
   so it is timed up to ``--regen-max-d`` and its step time is extrapolated linearly in d above that).

Smoke run:  python benchmarks/bench_intrinsic_dimension.py --n 500 --features 32 --low-n 6000 --D 20000 --dims 100

Case functions for ``benchmarks/run_all.py`` (each returns rows of ``benchmarks/common.py``):
:func:`case_estimators` (case 1, with the distance GEMM as the floor), :func:`case_twonn_low_dim`
(case 1b), :func:`case_projection` (case 2 in one process, one ``d``) and :func:`case_cuda_twonn`
(TwoNN on a CUDA device against our CPU path on the same points).  Without scikit-dimension the peer
columns are blank.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time

import workbench  # noqa: F401  (first: the thread policy must precede torch, see workbench.backend)
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from common import alternate, best, peak_growth, peer_label, row  # noqa: E402
from workbench.backend import describe, resolve_device, synchronize  # noqa: E402
from workbench.intrinsic_dimension import make_projection, mle, projection_memory, twonn  # noqa: E402
from workbench.intrinsic_dimension.estimators import choose_knn_method  # noqa: E402


def timed(fn, repeat=1):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def timed_cpu(fn, repeat=1):
    """Best wall-clock and best CPU seconds (all threads of the process) over ``repeat`` calls."""
    wall = cpu = float("inf")
    out = None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = min(wall, time.perf_counter() - t), min(cpu, time.process_time() - c)
    return wall, cpu, out


def manifold(n, features, dim=20, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, dim + 1))
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)  # a curved dim-sphere
    X = Z @ rng.standard_normal((dim + 1, features)) + 1e-3 * rng.standard_normal((n, features))
    return X.astype(np.float32)


TARGET_SPEEDUP = 10.0  # the target: at least 10x faster than scikit-dimension on CPU


def bench_estimators(n, features, device, repeat=1):
    """Case 1: the estimators on ``n`` x ``features``; one dict of figures per estimator."""
    import skdim

    X = manifold(n, features)
    print(f"\n## Representation ID: {n} points in {features} dimensions (20-dim sphere), device {describe(device)}")
    print(f"{'estimator':<12}{'workbench s':>12}{'skdim s':>10}{'speed-up':>10}{'/ 10x target':>14}"
          f"{'workbench':>11}{'skdim':>9}")
    rows = []
    cases = [
        ("twonn-fit", lambda: twonn(X, device=device).dimension, lambda: skdim.id.TwoNN().fit(X).dimension_),
        ("twonn-mle", lambda: twonn(X, method="mle", device=device).dimension,
         lambda: skdim.id.TwoNN(method="mle", discard_fraction=0.0).fit(X).dimension_),
        ("mle k=20", lambda: mle(X, k=20, device=device).dimension, lambda: skdim.id.MLE().fit(X).dimension_),
    ]
    for name, ours, theirs in cases:
        t_ours, d_ours = timed(ours, repeat)
        t_them, d_them = timed(theirs, repeat)
        rows.append(dict(work=name, size=f"{n} x {features}", ours_s=t_ours, peer_s=t_them, dimension=d_ours,
                         peer_dimension=float(d_them), agreement=float(abs(d_ours - d_them) / abs(d_them))))
        speedup = t_them / t_ours
        verdict = "meets" if speedup >= TARGET_SPEEDUP else "below"
        print(f"{name:<12}{t_ours:>12.2f}{t_them:>10.2f}{speedup:>9.1f}x{speedup / TARGET_SPEEDUP:>8.2f} {verdict:<5}"
              f"{d_ours:>11.3f}{d_them:>9.3f}")
    return rows


def low_dim_points(n, features, kind="gaussian", seed=0):
    """``n`` points in ``features`` dimensions: a full-rank Gaussian, or a 5-sphere embedded linearly."""
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return rng.standard_normal((n, features))
    Z = rng.standard_normal((n, 6))
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    return Z @ rng.standard_normal((6, features))


def bench_twonn_low_dim(n=100_000, features=10, device="auto", kind="gaussian", repeat=1):
    """Case 1b: TwoNN (fit) on many points in few dimensions against ``skdim.id.TwoNN``, one dict of figures."""
    import skdim

    X = low_dim_points(n, features, kind)
    t_ours, c_ours, est = timed_cpu(lambda: twonn(X, device=device), repeat)
    t_them, c_them, d_them = timed_cpu(lambda: skdim.id.TwoNN().fit(X).dimension_, repeat)
    return dict(work=f"twonn-fit ({kind})", size=f"{n} x {features}", ours_s=t_ours, peer_s=t_them,
                ours_cpu_s=c_ours, peer_cpu_s=c_them, dimension=est.dimension, peer_dimension=float(d_them),
                agreement=float(abs(est.dimension - d_them) / abs(d_them)), knn=est.settings["knn"])


def report_twonn_low_dim(n, features, device, repeat):
    print(f"\n## TwoNN on {n} points in {features} dimensions, device {describe(device)} (best of {repeat})")
    print("(wall-clock seconds, and CPU seconds of all threads: the CPU figures are the steadier on a shared machine)")
    print(f"{'data':<22}{'knn':>6}{'workbench s':>13}{'skdim s':>9}{'speed-up':>10}{'cpu s':>8}{'skdim cpu':>11}"
          f"{'workbench':>12}{'skdim':>12}{'rel. diff':>11}")
    rows = []
    for kind in ("gaussian", "sphere5"):
        r = bench_twonn_low_dim(n, features, device, kind, repeat)
        rows.append(r)
        print(f"{r['work']:<22}{r['knn']:>6}{r['ours_s']:>13.2f}{r['peer_s']:>9.2f}{r['peer_s'] / r['ours_s']:>9.2f}x"
              f"{r['ours_cpu_s']:>8.2f}{r['peer_cpu_s']:>11.2f}{r['dimension']:>12.6f}{r['peer_dimension']:>12.6f}"
              f"{r['agreement']:>11.1e}", flush=True)
    return rows


def gemm_floor(X, device="auto", repeat=1):
    """Seconds of the distance GEMM alone: every row block of the centred float32 points times all points,
    in the row blocks the brute search uses (about 64 MB of products per block, at most 4096 rows)."""
    dev = resolve_device(device)
    Xw = torch.as_tensor(np.asarray(X), dtype=torch.float32).to(dev)
    Xw = Xw - Xw.mean(0, keepdim=True)
    n = Xw.shape[0]
    chunk = max(1, min(n, (64 * 1024 ** 2 // 4) // max(n, 1), 4096))

    def products():
        for start in range(0, n, chunk):
            torch.mm(Xw[start:start + chunk], Xw.T)
        synchronize(dev)
    return timed(products, repeat)[0]


def _skdim_cases(X):
    import skdim

    return {"twonn-fit": lambda: skdim.id.TwoNN().fit(X).dimension_,
            "twonn-mle": lambda: skdim.id.TwoNN(method="mle", discard_fraction=0.0).fit(X).dimension_,
            "mle k=20": lambda: skdim.id.MLE().fit(X).dimension_}


def case_estimators(n=10_000, features=768, device="cpu", repeats=2):
    """Case 1 as rows: TwoNN (fit, MLE) and Levina-Bickel MLE against scikit-dimension, alternated (best of
    ``repeats``); the floor is the distance GEMM of the brute search (blank where the k-d tree is used)."""
    X = manifold(n, features)
    label, have_peer = peer_label("skdim", "scikit-dimension")
    ours = {"twonn-fit": lambda: twonn(X, device=device).dimension,
            "twonn-mle": lambda: twonn(X, method="mle", device=device).dimension,
            "mle k=20": lambda: mle(X, k=20, device=device).dimension}
    theirs = _skdim_cases(X) if have_peer else {}
    brute = choose_knn_method(n, features, device) == "brute"
    floor = gemm_floor(X, device, repeat=repeats) if brute else None
    rows = []
    for name, fn in ours.items():
        times, out = alternate({"ours": fn, "peer": theirs.get(name)}, repeats, device)
        agree = abs(out["ours"] - out["peer"]) / abs(out["peer"]) if have_peer else None
        rows.append(row(f"intrinsic dimension: {name}", f"{n} x {features} (20-dim sphere)", best(times["ours"]),
                        peer=label, peer_s=best(times["peer"]) if have_peer else None,
                        floor="distance GEMM (float32)" if brute else "", floor_s=floor, agreement=agree,
                        tolerance=1e-6, agreement_of="relative dimension", case=name, device=describe(device),
                        dimension=float(out["ours"]),
                        peer_dimension=float(out["peer"]) if have_peer else None))
    return rows


def case_twonn_low_dim(n=100_000, features=10, kind="gaussian", device="cpu", repeats=1):
    """Case 1b as a row (the k-d tree search on the CPU: no GEMM floor)."""
    label, have_peer = peer_label("skdim", "scikit-dimension")
    if not have_peer:
        X = low_dim_points(n, features, kind)
        t, _, est = timed_cpu(lambda: twonn(X, device=device), repeats)
        r = dict(work=f"twonn-fit ({kind})", size=f"{n} x {features}", ours_s=t, peer_s=None,
                 dimension=est.dimension, agreement=None, knn=est.settings["knn"])
    else:
        r = bench_twonn_low_dim(n, features, device, kind, repeats)
    brute = r["knn"] == "brute"
    return row(f"intrinsic dimension: {r['work']}, {r['knn']} search", f"{r['size']} ({kind})", r["ours_s"],
               peer=label, peer_s=r["peer_s"], agreement=r["agreement"], tolerance=1e-6,
               agreement_of="relative dimension", floor="distance GEMM (float32)" if brute else "",
               floor_s=gemm_floor(low_dim_points(n, features, kind), device) if brute else None,
               case=f"twonn-low-{kind}", device=describe(device), dimension=r["dimension"])


def case_projection(D=10 ** 6, d=1000, device="cpu"):
    """Case 2 in this process for one ``d``: a Fastfood step against the stored dense projection's step
    (seconds per forward + backward), with the peak memory of building Fastfood and taking a step."""
    dev = resolve_device(device)
    fast, peak = peak_growth(lambda: make_projection("fastfood", D, d, seed=0, device=dev), dev)
    t_fast = step_time(fast, dev)
    dense_bytes = projection_memory("dense", D, d)
    t_dense = step_time(make_projection("dense", D, d, seed=0, device=dev, store=True), dev) \
        if dense_bytes <= 2 ** 30 else None
    return row("intrinsic dimension: Fastfood projection, one step (forward + backward)", f"D = {D:,}, d = {d:,}",
               t_fast, peer="dense projection, stored (ours)", peer_s=t_dense, peak_mb=peak,
               case=f"projection-d{d}", device=describe(dev), held_mb=fast.nbytes / 2 ** 20,
               dense_mb=dense_bytes / 2 ** 20,
               note=f"the dense projection holds {dense_bytes / 2 ** 20:.0f} MiB, Fastfood "
               f"{fast.nbytes / 2 ** 20:.1f} MiB"
               + ("" if t_dense is not None else "; dense not built (over 1 GiB)"))


def case_cuda_twonn(n=100_000, features=768, device="cuda", repeats=2):
    """TwoNN (fit) on ``device`` against our CPU path on the same points; the floor is the distance GEMM on
    ``device``."""
    dev = resolve_device(device)
    X = manifold(n, features)
    twonn(X[: min(n, 2000)], device=dev)  # warm-up (kernels, workspaces)
    times, out = alternate({"ours": lambda: twonn(X, device=dev).dimension}, repeats, dev)
    _, peak = peak_growth(lambda: twonn(X, device=dev), dev)
    t_cpu, cpu = timed(lambda: twonn(X, device="cpu").dimension)
    return row(f"intrinsic dimension: twonn-fit on {dev.type}", f"{n} x {features} (20-dim sphere)",
               best(times["ours"]), peer="ours on the CPU", peer_s=t_cpu, floor=f"distance GEMM on {dev.type}",
               floor_s=gemm_floor(X, dev, repeat=repeats), agreement=abs(out["ours"] - cpu) / abs(cpu),
               tolerance=1e-6, agreement_of="relative dimension", peak_mb=peak, case="twonn-cuda",
               device=describe(dev), dimension=float(out["ours"]))


def step_time(proj, device, repeat=3, warm=True):
    d = proj.d
    theta = torch.zeros(d, device=device, requires_grad=True)
    g = torch.randn(proj.D, device=device)

    def step():
        theta.grad = None
        y = proj(theta)
        (y * g).sum().backward()
        synchronize(device)

    if warm:
        step()
    return timed(step, repeat)[0]


def _status_bytes(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    raise KeyError(field)


def _reset_peak_rss():
    """Start the peak-RSS counter (VmHWM) afresh; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes():
    try:
        return _status_bytes("VmHWM")  # this process's own peak (a spawned process starts a new one)
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _one_configuration(kind, D, d, device, threads, options, queue):
    """Build one projection and time one step, in a fresh process, so its memory peak is its own."""
    try:
        torch.set_num_threads(threads)
        dev = resolve_device(device)
        torch.zeros(8, device=dev)  # initialise the device before the baseline
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            before = torch.cuda.memory_allocated(dev)
        _reset_peak_rss()
        before_rss = _status_bytes("VmRSS")
        t0 = time.perf_counter()
        proj = make_projection(kind, D, d, seed=0, device=dev, **options)
        build = time.perf_counter() - t0
        regenerated = kind == "dense" and not getattr(proj, "stored", True)
        t = step_time(proj, dev, repeat=1 if regenerated else 3, warm=not regenerated)
        if dev.type == "cuda":
            peak = torch.cuda.max_memory_allocated(dev) - before
        else:
            peak = _peak_rss_bytes() - before_rss
        queue.put(dict(build=build, step=t, held=proj.nbytes, peak=peak))
    except Exception as exc:  # reported by the parent
        queue.put(dict(error=f"{type(exc).__name__}: {exc}"))


def measure(kind, D, d, device, threads, **options):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_one_configuration, args=(kind, D, d, device, threads, options, queue))
    proc.start()
    out = queue.get()
    proc.join()
    if "error" in out:
        raise RuntimeError(f"{kind} d={d}: {out['error']}")
    return out


def bench_projections(D, dims, device, dense_max_gb, threads, chunk_rows, regen_max_d):
    dev = resolve_device(device)
    mem_label = "peak GPU MiB" if dev.type == "cuda" else "peak RSS MiB"
    print(f"\n## Projections at D = {D:,}: seconds per step (forward + backward of the projection), memory the "
          f"projection holds, and the {'peak GPU memory allocated' if dev.type == 'cuda' else 'peak RSS increase'} "
          f"of building it and taking one step (each configuration in a fresh process), device {describe(dev)}")
    print(f"{'projection':<20}{'d':>9}{'build s':>9}{'step s':>10}{'held MiB':>11}{mem_label:>14}"
          f"{'step / fastfood':>17}")
    rows = []
    for d in dims:
        fastfood_step = None
        for kind, options in (("fastfood", {}), ("sparse", {}), ("dense", {"store": True}),
                              ("dense", {"store": False, "chunk_rows": chunk_rows})):
            label = kind if kind != "dense" else ("dense (stored)" if options["store"] else "dense (regenerated)")
            mem = projection_memory(kind, D, d)
            if kind in ("dense", "sparse") and options.get("store", True) and mem > dense_max_gb * 2 ** 30:
                print(f"{label:<20}{d:>9}{'-':>9}{'-':>10}{mem / 2**20:>11.0f}{'-':>14}{'-':>17}  "
                      f"(does not fit in --dense-max-gb {dense_max_gb})")
                rows.append(dict(projection=label, d=d, build=float("nan"), step=float("nan"), held=mem,
                                 peak=float("nan")))
                continue
            if kind == "dense" and not options["store"] and d > regen_max_d:
                timed = [r for r in rows if r["projection"] == label and np.isfinite(r["step"])]
                est = timed[-1]["step"] * d / timed[-1]["d"] if timed else float("nan")
                ratio = est / fastfood_step if fastfood_step else float("nan")
                print(f"{label:<20}{d:>9}{'-':>9}{est:>10.1f}{'0.00':>11}{'-':>14}{ratio:>16.1f}x  "
                      f"(extrapolated from d={timed[-1]['d'] if timed else '-'}; above --regen-max-d {regen_max_d})")
                rows.append(dict(projection=label, d=d, build=float("nan"), step=est, held=0, peak=float("nan")))
                continue
            r = measure(kind, D, d, device, threads, **options)
            if kind == "fastfood":
                fastfood_step = r["step"]
            ratio = r["step"] / fastfood_step if fastfood_step else float("nan")
            print(f"{label:<20}{d:>9}{r['build']:>9.2f}{r['step']:>10.4f}{r['held'] / 2**20:>11.2f}"
                  f"{r['peak'] / 2**20:>14.1f}{ratio:>16.1f}x", flush=True)
            rows.append(dict(projection=label, d=d, **r))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--features", type=int, default=768)
    ap.add_argument("--D", type=int, default=10 ** 6)
    ap.add_argument("--dims", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--dense-max-gb", type=float, default=1.0,
                    help="largest stored dense (or sparse) projection built, in GiB")
    ap.add_argument("--chunk-rows", type=int, default=16384, help="rows per block of the regenerated dense projection")
    ap.add_argument("--regen-max-d", type=int, default=1000,
                    help="largest d at which the regenerated dense projection is timed (slower above: extrapolated)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--low-n", type=int, default=100_000, help="points of the few-dimensions TwoNN case")
    ap.add_argument("--low-features", type=int, default=10, help="dimensions of the few-dimensions TwoNN case")
    ap.add_argument("--repeat", type=int, default=1, help="timings per estimator case (best of)")
    ap.add_argument("--skip-estimators", action="store_true")
    ap.add_argument("--skip-low-dim", action="store_true")
    ap.add_argument("--skip-projections", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if not args.skip_estimators:
        bench_estimators(args.n, args.features, args.device, args.repeat)
    if not args.skip_low_dim:
        report_twonn_low_dim(args.low_n, args.low_features, args.device, args.repeat)
    if not args.skip_projections:
        bench_projections(args.D, args.dims, args.device, args.dense_max_gb, args.threads, args.chunk_rows,
                          args.regen_max_d)


if __name__ == "__main__":
    main()
