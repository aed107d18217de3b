"""Every benchmark case in one run, one table: the case functions of the six ``bench_*.py`` scripts (and the
wait-policy case of ``bench_threads.py``), called in this process one after another.

    python benchmarks/run_all.py [--quick] [--device cpu|cuda] [--out DIR] [--only PATTERN] [--list]
                                 [--without PEER]

The table has the columns of ``benchmarks/common.py`` (work, size, ours s, peer, peer s, peer / ours,
ours / floor, agreement, peak MB, note); it is printed and written as ``run_all-<device>[-quick].csv`` and
``.md`` into ``--out`` (default ``benchmarks/results/``).  ``--quick`` shrinks every size (a few minutes on
2 busy cores); ``--only`` keeps the cases whose name contains the pattern or matches it as a shell pattern
(comma-separated patterns: any of them).  A peer that is not installed (or hidden with ``--without``,
repeatable) leaves its columns blank with a note.  A case that fails gives a row whose note names the
error, and the run exits with status 1 after writing the table.

``--device cuda`` runs the cases that use a device on the GPU (and the CUDA-only cases); the CPU-only cases
are left out.  Without a CUDA device it is refused: no CPU times under a GPU heading.
"""
from __future__ import annotations

import argparse
import fnmatch
import importlib
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import workbench  # noqa: E402,F401  (first: the thread policy must precede torch, see workbench.backend)
import common  # noqa: E402

Case = Tuple[str, str, Callable[[Any], Any]]  # (name, module, fn(module) -> row or rows)
CPU, CUDA, BOTH = ("cpu",), ("cuda",), ("cpu", "cuda")


def _spectra(q: bool, dev: str) -> List[Tuple[str, str, Callable, tuple]]:
    def mlp(m):
        import torch
        from workbench.models import MLP

        torch.manual_seed(0)
        w = 512 if q else 1024
        return m.case_model(f"mlp-{'0.8' if q else '3'}M", MLP(in_features=w, hidden=(w, w, w), num_classes=10),
                            dev, warm_up=True)

    def linear(m):
        import torch

        side = 1024 if q else 4096
        lin = torch.nn.Linear(side, side, bias=False)
        with torch.no_grad():
            lin.weight.normal_(generator=torch.Generator().manual_seed(0))
        return m.case_model(f"linear-{side}", torch.nn.Sequential(lin), dev)

    def minilm(m):
        from workbench.models import minilm as load

        return m.case_model("minilm", load(), dev)

    out = [("spectra-mlp", "bench_spectra", mlp, BOTH), ("spectra-linear", "bench_spectra", linear, BOTH)]
    if not q:
        out.append(("spectra-minilm", "bench_spectra", minilm, BOTH))
    out += [("spectra-checkpoint", "bench_spectra",
             lambda m: m.case_checkpoint_7b(1, device=dev, scale=8 if q else 1), BOTH),
            ("spectra-cuda-7b", "bench_spectra", lambda m: m.case_cuda_7b(scale=4 if q else 1, device=dev), CUDA)]
    return out


def _landscape(q: bool, dev: str):
    return [("landscape-plane", "bench_landscape",
             lambda m: m.case_plane("mlp", 9 if q else 21, dev, repeats=1 if q else 2), BOTH),
            ("landscape-hessian", "bench_landscape",
             lambda m: m.case_hessian("mlp", 200 if q else 500, dev, trace_vectors=20 if q else 100,
                                      repeats=1 if q else 2), BOTH),
            ("landscape-cuda-resnet18", "bench_landscape",
             lambda m: m.case_cuda_plane(11 if q else 51, 2000 if q else 10_000, dev), CUDA)]


def _connectivity(q: bool, dev: str):
    out = [(f"connectivity-wm-{w}", "bench_connectivity",
            (lambda w: lambda m: m.case_weight_matching(w, dev, repeats=1 if q else 2))(w), BOTH)
           for w in ((256,) if q else (512, 1024, 2048, 4096))]
    out.append(("connectivity-lmc-digits", "bench_connectivity",
                lambda m: m.case_lmc_digits(64 if q else 512, 2 if q else 20, dev), BOTH))
    return out


def _intrinsic_dimension(q: bool, dev: str):
    out = [("id-estimators", "bench_intrinsic_dimension",
            lambda m: m.case_estimators(2000 if q else 10_000, 64 if q else 768, dev, repeats=1 if q else 2), BOTH)]
    out += [(f"id-twonn-low-{kind}", "bench_intrinsic_dimension",
             (lambda kind: lambda m: m.case_twonn_low_dim(10_000 if q else 100_000, 10, kind, dev))(kind), BOTH)
            for kind in ("gaussian", "sphere5")]
    out += [(f"id-projection-d{d}", "bench_intrinsic_dimension",
             (lambda d: lambda m: m.case_projection(10 ** 5 if q else 10 ** 6, d, dev))(d), BOTH)
            for d in ((100,) if q else (100, 1000))]
    out.append(("id-cuda-twonn", "bench_intrinsic_dimension",
                lambda m: m.case_cuda_twonn(20_000 if q else 100_000, 768, dev), CUDA))
    return out


def _topology(q: bool, dev: str):
    hub = 2000 if q else 50_000
    out = [("topology-million-edges", "bench_topology",
            lambda m: m.case_million_edges(3000 if q else 290_000), CPU),
           ("topology-hubs", "bench_topology", lambda m: m.case_hubs(hub), CPU),
           ("topology-subset", "bench_topology", lambda m: m.case_subset(hub, sample=min(500, hub // 4)), CPU),
           ("topology-atc", "bench_topology", lambda m: m.case_atc_agreement(hub, sample=min(500, hub // 4)), CPU)]
    for graph in ("random_geometric",) if q else ("random_geometric", "powerlaw_cluster"):
        for k in (1, 2) if q else (1, 2, 3, 4):
            out.append((f"topology-walks-{graph}-k{k}", "bench_topology",
                        (lambda g, k: lambda m: m.case_walks(g, 300 if q else 3000, k,
                                                             walk_budget=1.0 if q else 30.0))(graph, k), CPU))
    out.append(("topology-cuda", "bench_topology",
                lambda m: m.case_gpu(3000, big_nodes=30_000 if q else 290_000), CUDA))
    return out


def _pruning(q: bool, dev: str):
    return [(f"pruning-masks-{scope}", "bench_pruning",
             (lambda s: lambda m: m.case_masks(s, width=512 if q else 2048, repeats=2 if q else 3))(scope), CPU)
            for scope in ("global", "layer")] + [
        ("pruning-cka", "bench_pruning", lambda m: m.case_cka(500 if q else 2000), CPU),
        ("pruning-sweep", "bench_pruning", lambda m: m.case_sweep(8 if q else 16, 0.05 if q else 0.2), CPU)]


def _threads(q: bool, dev: str):
    return [("threads-busy-plane", "bench_threads",
             lambda m: m.case_wait_policy("plane", 11 if q else 21, repeats=2 if q else 3), CPU)]


GROUPS = (_spectra, _landscape, _connectivity, _intrinsic_dimension, _topology, _pruning, _threads)


def cases(quick: bool, device: str) -> List[Case]:
    """The cases that run on ``device``, in order."""
    return [(name, mod, fn) for group in GROUPS for name, mod, fn, devices in group(quick, device)
            if device in devices]


def selected(names: List[str], only: str) -> List[str]:
    pats = [p.strip() for p in (only or "").split(",") if p.strip()]
    return [n for n in names if not pats or any(p in n or fnmatch.fnmatch(n, p) for p in pats)]


def from_topology(r: Dict[str, Any]) -> Dict[str, Any]:
    """A ``bench_topology`` case's dict as a row of ``common.py``."""
    if "skipped" in r:
        return common.row(r["work"], r.get("size", ""), None, note=f"skipped: {r['skipped']}")
    if "reference_s" in r:
        peer = "ours on the CPU" if "CUDA" in r["work"] else (
            "ours, all nodes" if " vs all" in r["work"] else "the earlier block method (SciPy)")
        peer_s = r["reference_s"]
    else:
        peer, peer_s = "walk expansion (reference implementation)", r.get("peer_s")
    extra = {k: v for k, v in r.items() if k not in ("work", "size", "ours_s", "peer_s", "reference_s", "ratio",
                                                     "agreement", "note")}
    # its peak_gb is the process's lifetime peak (ru_maxrss), not this case's growth: kept out of peak MB
    return common.row("topology: " + r["work"], r["size"], r["ours_s"], peer=peer, peer_s=peer_s,
                      agreement=r.get("agreement"), agreement_of="max |TC difference|", tolerance=1e-10,
                      note=r.get("note", ""), **extra)


def run_case(name: str, module: str, fn: Callable, device: str) -> List[Dict[str, Any]]:
    """The case's rows, named; a failure gives one row whose note names the error."""
    t = time.perf_counter()
    try:
        out = fn(importlib.import_module(module))
        rows = out if isinstance(out, list) else [out]
        if module == "bench_topology":
            rows = [from_topology(r) for r in rows]
    except Exception as exc:
        traceback.print_exc()
        rows = [common.row(name, "", None, note=f"failed: {type(exc).__name__}: {str(exc)[:200]}", failed=True)]
    for r in rows:
        r["case"] = name if len(rows) == 1 else f"{name}/{r.get('case', '')}"
        r.setdefault("device", device)
        if "not installed" in str(r.get("peer", "")) and not r.get("note"):
            r["note"] = "peer not installed: its columns are blank"
        r["wall_s"] = time.perf_counter() - t
    return rows


def header(device: str, quick: bool, load_before: str) -> List[str]:
    import torch

    from workbench.backend import describe, thread_settings

    th = thread_settings()
    return [f"run_all {'--quick ' if quick else ''}--device {device}, {time.strftime('%Y-%m-%d %H:%M')}, "
            f"{describe(device)}, torch {torch.__version__}, {th['threads']} threads ({th['cpus']} CPUs "
            f"usable), OpenMP wait {th['wait_policy']}",
            f"load average before: {load_before}; after: {common.load_average()}"]


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: minutes on 2 busy cores")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    ap.add_argument("--only", default="", help="keep the cases whose name contains or matches this (a,b: either)")
    ap.add_argument("--without", action="append", default=[], metavar="PEER",
                    help="run as if this optional peer were not installed (pyhessian, loss_landscapes, "
                         "weightwatcher, skdim)")
    ap.add_argument("--list", action="store_true", help="print the case names and exit")
    args = ap.parse_args(argv)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            ap.error("--device cuda: no CUDA device (torch.cuda.is_available() is False); run with --device cpu, "
                     "or on a machine with a CUDA GPU")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    common.HIDDEN_PEERS.update(args.without)
    todo = cases(args.quick, args.device)
    names = selected([n for n, _, _ in todo], args.only)
    if args.list:
        print("\n".join(names))
        return 0
    if not names:
        print(f"--only {args.only!r}: no case matches; the cases are: {', '.join(n for n, _, _ in todo)}",
              file=sys.stderr)
        return 2
    load_before = common.load_average()
    rows: List[Dict[str, Any]] = []
    for name, module, fn in todo:
        if name in names:
            print(f"[run_all] {name} ...", file=sys.stderr, flush=True)
            rows += run_case(name, module, fn, args.device)
            print(f"[run_all] {name}: {rows[-1]['wall_s']:.1f} s", file=sys.stderr, flush=True)
    head = header(args.device, args.quick, load_before)
    stem = f"run_all-{args.device}{'-quick' if args.quick else ''}"
    csv_path, md_path = common.write_tables(rows, Path(args.out), stem, head)
    print(common.markdown(rows, head))
    print(f"written: {csv_path}, {md_path}")
    failed = [r["case"] for r in rows if r.get("failed")]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
