"""Spectra against weightwatcher's analyze() on the same matrices, in one run: agreement and time ratio.

Cases (each a function returning a dict of figures, so ``benchmarks/run_all.py`` can import and call them):

* :func:`case_model` on a 3M-parameter MLP, the pretrained all-MiniLM-L6-v2 encoder, and a single
  4096x4096 Gaussian matrix.  Rows are matched to weightwatcher's by layer (its ``longname`` column); the
  figures say how many matrices each side analysed and how many matched.  The ``f32`` figures repeat ours
  with float32 eigenvalues.
* :func:`case_checkpoint_7b`: a checkpoint with the shapes of a 7B LLaMA-style model (per decoder layer
  q, k, v, o 4096x4096, gate and up 11008x4096, down 4096x11008; the real model has 32 layers, plus two
  32000x4096 tables left out here), a few layers written as one safetensors shard per layer plus the index
  json in a temporary folder.  Ours streams it from disk (``spectra.analyze(folder)``), one tensor at a
  time; weightwatcher needs a model, so the same matrices are wrapped in an ``nn.Module`` of ``Linear``
  layers for it.  Both times are per layer and extrapolated to 32 layers; the peak memory is the growth
  of the resident set during each run (Linux ``/proc``; ``None`` elsewhere).  To keep the run to minutes
  on 2 cores, weightwatcher is timed by default on one matrix of each shape of a layer (q and gate) and
  its layer time is the count-weighted sum (``--peer all`` runs it on every matrix).

* :func:`case_cuda_7b`: the 224 matrices of all 32 layers of the same shapes, generated on a CUDA device
  and analysed there, against our float64 CPU path on a sample of layers (its time scaled to all layers).

Figures of every case: the row of ``benchmarks/common.py`` (``work``, ``size``, ``ours_s``, ``peer``,
``peer_s``, ``ratio`` = peer / ours, ``floor_s`` = the Gram products and ``eigvalsh`` alone on the same
matrices, ``floor_ratio`` = ours / floor, ``agreement`` = max |alpha ours - alpha peer| over the matched
matrices, ``peak_mb``) and case-specific extras.  Without weightwatcher the peer columns are blank.

Usage: python benchmarks/bench_spectra.py [--quick] [--device auto|cpu|cuda] [--threads N]
                                          [--cases models,checkpoint] [--layers 1] [--dtype float16]
                                          [--peer shapes|all] [--scale 1]
``import workbench`` (first, before torch) sets OMP_WAIT_POLICY=PASSIVE: torch's multi-threaded eigvalsh
otherwise spin-waits and can be 50-100x slower on a busy machine (``workbench.backend``, "Threads").
"""
from __future__ import annotations

import argparse
import functools
import gc
import json
import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional

import workbench  # noqa: F401  (first: the thread policy must precede torch, see workbench.backend)
import numpy as np
import torch
from torch import nn

from common import peak_growth, peer_label, row

LLAMA_7B_LAYER = [("self_attn.q_proj", 4096, 4096), ("self_attn.k_proj", 4096, 4096),
                  ("self_attn.v_proj", 4096, 4096), ("self_attn.o_proj", 4096, 4096),
                  ("mlp.gate_proj", 11008, 4096), ("mlp.up_proj", 11008, 4096), ("mlp.down_proj", 4096, 11008)]
LLAMA_7B_LAYERS = 32


def _quiet():
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)


def measured(fn: Callable, *args, **kwargs):
    """``(result, seconds, peak growth of the resident set in MB or None)`` of ``fn(*args, **kwargs)``.

    ``seconds`` is ``(wall, cpu)``: the CPU time of all the process' threads is less disturbed by other
    work on a shared machine than the wall time.
    """
    from workbench.spectra.checkpoint import release_freed_memory

    gc.collect()
    release_freed_memory()
    clock = {}

    def timed():
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        clock["seconds"] = (time.perf_counter() - t0, time.process_time() - c0)
        return out

    out, peak = peak_growth(timed)
    return out, clock["seconds"], peak


def _weightwatcher(model: nn.Module):
    import weightwatcher as ww

    return ww.WeightWatcher(model=model).analyze()


def spectra_floor(subject, device: str = "auto", dtype: torch.dtype = torch.float64) -> float:
    """Seconds of the Gram products and ``eigvalsh`` alone on the matrices ``spectra.analyze`` finds in
    ``subject`` (a model or a state dict), one matrix at a time, already in memory: the physical floor."""
    from workbench.backend import resolve_device, synchronize
    from workbench.spectra.extract import iter_matrices

    dev = resolve_device(device)
    entries, _ = iter_matrices(subject)
    total = 0.0
    for e in entries:
        w = e.slices.to(dev, dtype) * e.scale
        synchronize(dev)
        t = time.perf_counter()
        torch.linalg.eigvalsh(w.transpose(1, 2) @ w)
        synchronize(dev)
        total += time.perf_counter() - t
        del w
    return total


def _match(ours, theirs):
    """Our rows and weightwatcher's for the layers both analysed (its 'longname' is the module path)."""
    key = ours["name"].str.replace(r"\.weight$", "", regex=True)
    mine = ours.assign(key=key).set_index("key")
    common = [n for n in theirs["longname"] if n in mine.index]
    return mine.loc[common], theirs.set_index("longname").loc[common], common


def _max_diff(a, b, col: str) -> float:
    if not len(a):
        return float("nan")
    return float(np.nanmax(np.abs(a[col].to_numpy(float) - b[col].to_numpy(float))))


def models(quick: bool):
    from workbench.models import MLP, minilm

    torch.manual_seed(0)
    mlp = MLP(in_features=1024, hidden=(1024, 1024, 1024), num_classes=10)  # ~3.2M parameters
    out = [("mlp-3M", mlp)]
    if not quick:
        out.append(("minilm", minilm()))
    big = nn.Linear(4096 if not quick else 1024, 4096 if not quick else 1024, bias=False)
    with torch.no_grad():
        big.weight.normal_()
    out.append((f"linear-{big.in_features}", nn.Sequential(big)))
    return out


def case_model(name: str, model: nn.Module, device: str = "auto", warm_up: bool = False) -> Dict:
    """Ours (float64, and float32) against weightwatcher on one model in memory."""
    from workbench import spectra

    _quiet()
    peer, have_peer = peer_label("weightwatcher")
    if warm_up:
        spectra.analyze(model, device=device, progress=False, bootstrap=0)
    ours, t_ours, peak = measured(lambda: spectra.analyze(model, device=device, progress=False).to_frame())
    theirs, t_ww, peer_peak = measured(_weightwatcher, model) if have_peer else (None, (None, None), None)
    fast, t_fast, _ = measured(lambda: spectra.analyze(model, device=device, progress=False,
                                                       dtype=torch.float32).to_frame())
    floor = min(spectra_floor(model, device) for _ in range(2))
    (t_ours, c_ours), (t_ww, c_ww), (t_fast, _) = t_ours, t_ww, t_fast
    params = sum(p.numel() for p in model.parameters())
    out = row(f"spectra: analyze {len(ours)} matrices (bootstrap 200, MP fit)", f"{name}, {params / 1e6:.1f}M "
              "parameters", t_ours, peer=peer, peer_s=t_ww, floor="Gram + eigvalsh, float64", floor_s=floor,
              agreement_of="alpha", tolerance=1e-6, peak_mb=peak, case=name, ours_cpu_s=c_ours,
              ours_n=len(ours), f32_s=t_fast, f32_max_dalpha=float(np.nanmax(np.abs(fast["alpha"] - ours["alpha"]))))
    if not have_peer:
        return out
    a, b, common = _match(ours, theirs)
    missing = [n for n in ours["name"] if n.removesuffix(".weight") not in set(theirs["longname"])]
    out.update(agreement=_max_diff(a, b, "alpha"), peer_cpu_s=c_ww, cpu_ratio=c_ww / c_ours,
               peer_peak_mb=peer_peak, peer_n=len(theirs), matched=len(common),
               max_dalpha_weighted=_max_diff(a, b, "alpha_weighted"),
               max_dstable_rank=_max_diff(a, b, "stable_rank"), max_dlog_norm=_max_diff(a, b, "log_norm"),
               f32_ratio=t_ww / t_fast, not_in_peer=missing)
    if missing:
        out["note"] = f"{len(missing)} matrices not analysed by the peer"
    return out


def llama_shapes(scale: int = 1):
    """The matrices of one decoder layer, ``(part, rows, cols)``, each side divided by ``scale``."""
    return [(part, rows // scale, cols // scale) for part, rows, cols in LLAMA_7B_LAYER]


def llama_layer(i: int, g: torch.Generator, dtype: torch.dtype = torch.float16, device="cpu",
                scale: int = 1) -> Dict[str, torch.Tensor]:
    """Decoder layer ``i`` of 7B LLaMA shapes (divided by ``scale``): Gaussian weights (std 0.02) with a
    rank-8 signal on top, so the spectra have a few outliers above the bulk as trained weights do."""
    shard = {}
    for part, rows, cols in llama_shapes(scale):
        w = torch.randn(rows, cols, generator=g, device=device).mul_(0.02)
        u, v = torch.randn(rows, 8, generator=g, device=device), torch.randn(8, cols, generator=g, device=device)
        w.add_((u * torch.linspace(0.05, 0.2, 8, device=device)) @ v / cols ** 0.5)
        shard[f"model.layers.{i}.{part}.weight"] = w.to(dtype)
        del w, u, v
    return shard


def write_llama_layers(folder: Path, layers: int, dtype: torch.dtype = torch.float16, seed: int = 0,
                       scale: int = 1) -> int:
    """``layers`` decoder layers (:func:`llama_layer`), one safetensors shard per layer plus the index json.

    Returns the bytes written.  One layer is in memory at a time.
    """
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    weight_map, total = {}, 0
    for i in range(layers):
        shard = llama_layer(i, g, dtype, scale=scale)
        fname = f"model-{i + 1:05d}-of-{layers:05d}.safetensors"
        save_file(shard, str(folder / fname))
        weight_map.update({name: fname for name in shard})
        total += (folder / fname).stat().st_size
        del shard
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                     "weight_map": weight_map}))
    return total


def _peer_model(folder: Path, names: List[str]) -> nn.Module:
    """The named checkpoint tensors as bias-free ``Linear`` layers of one module (for weightwatcher)."""
    from safetensors import safe_open

    index = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    model = nn.Module()
    for name in names:
        with safe_open(str(folder / index[name]), framework="pt") as f:
            w = f.get_tensor(name).float()
        lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
        lin.weight = nn.Parameter(w, requires_grad=False)
        model.add_module(name.removesuffix(".weight").replace(".", "__"), lin)
    return model


def _peer_on_checkpoint(path: Path, ours, peer: str, scale: int):
    """weightwatcher on the checkpoint's matrices (one model per matrix): per-matrix seconds (wall, cpu), the
    shape counts of a layer when it ran on one matrix per shape, max |dalpha| and its peak memory."""
    if peer == "all":
        names, counts = list(ours["name"]), None
    else:  # one matrix of each shape of layer 0, weighted by how often the shape occurs in a layer
        names = ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.gate_proj.weight"]
        counts = {names[0]: 4, names[1]: 3}  # gate, up and down: the same (11008, 4096) slices
    peer_s, peer_cpu, dalpha, peer_peak = {}, {}, [], None
    for name in names:
        model = _peer_model(path, [name])
        theirs, seconds, mb = measured(_weightwatcher, model)
        peer_s[name], peer_cpu[name] = seconds
        if mb is not None:
            peer_peak = mb if peer_peak is None else max(peer_peak, mb)
        dalpha.append(abs(float(theirs["alpha"].iloc[0]) - float(ours.set_index("name").loc[name, "alpha"])))
        del model
    return names, counts, peer_s, peer_cpu, max(dalpha), peer_peak


def _checkpoint_floor(path: Path, device: str) -> float:
    """:func:`spectra_floor` over every shard of the checkpoint (one shard in memory at a time)."""
    from safetensors.torch import load_file

    return sum(spectra_floor(load_file(str(f)), device) for f in sorted(path.glob("*.safetensors")))


def case_checkpoint_7b(layers: int = 1, dtype: torch.dtype = torch.float16, device: str = "auto",
                       peer: str = "shapes", folder: Optional[str] = None, scale: int = 1) -> Dict:
    """Stream a 7B-shaped checkpoint (sides divided by ``scale``) from disk and compare with weightwatcher on
    the same matrices.  Times are per layer."""
    from workbench import spectra

    _quiet()
    label, have_peer = peer_label("weightwatcher")
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        path = Path(tmp)
        size = write_llama_layers(path, layers, dtype, scale=scale)
        res, t_ours, peak = measured(spectra.analyze, path, device=device, progress=False, bootstrap=0)
        ours = res.to_frame()
        floor = _checkpoint_floor(path, device) / layers
        if have_peer:
            names, counts, peer_s, peer_cpu, dalpha, peer_peak = _peer_on_checkpoint(path, ours, peer, scale)
    ours_layer, ours_cpu = t_ours[0] / layers, t_ours[1] / layers
    params = sum(r * c for _, r, c in llama_shapes(scale)) * layers
    shape = "7B LLaMA shapes" if scale == 1 else f"7B LLaMA shapes / {scale}"
    out = row(f"spectra: stream {len(ours)} matrices of a sharded safetensors folder (bootstrap 0, MP fit), "
              "per layer", f"{layers} layer{'s' if layers > 1 else ''} of {shape}, {params / 1e6:.0f}M parameters, "
              f"{size / 2 ** 20:.0f} MiB {str(dtype).replace('torch.', '')}", ours_layer, peer=label,
              floor="Gram + eigvalsh, float64, in memory", floor_s=floor, agreement_of="alpha", tolerance=1e-6,
              peak_mb=peak, case=f"llama-7b-checkpoint ({layers} layer{'s' if layers > 1 else ''})",
              ours_cpu_s=ours_cpu, per="layer", ours_32_layers_s=ours_layer * LLAMA_7B_LAYERS,
              file_mb=size / 2 ** 20, matrices_per_layer=len(LLAMA_7B_LAYER),
              alpha_range=(float(ours["alpha"].min()), float(ours["alpha"].max())))
    if have_peer:
        def per_layer(seconds):
            return sum(seconds.values()) / layers if counts is None else sum(counts[n] * seconds[n] for n in names)

        peer_layer, peer_cpu_layer = per_layer(peer_s), per_layer(peer_cpu)
        out.update(peer_s=peer_layer, ratio=peer_layer / ours_layer, peer_cpu_s=peer_cpu_layer,
                   cpu_ratio=peer_cpu_layer / ours_cpu, agreement=dalpha, peer_peak_mb=peer_peak,
                   peer_32_layers_s=peer_layer * LLAMA_7B_LAYERS, peer_timed_on=names if counts else "all",
                   peer_matrix_s=peer_s)
        if counts:
            out["note"] = "peer timed on q_proj and gate_proj of layer 0, weighted by the shapes of a layer"
    return out


def _alphas(subject, device: str, dtype: torch.dtype = torch.float64):
    from workbench import spectra

    return spectra.analyze(subject, device=device, progress=False, bootstrap=0, dtype=dtype).to_frame()


def case_cuda_7b(layers: int = LLAMA_7B_LAYERS, cpu_layers: int = 1, scale: int = 1,
                 dtype: torch.dtype = torch.float16, device: str = "cuda") -> Dict:
    """All ``layers`` x 7 matrices of 7B shapes generated on ``device`` and analysed there (float64), against
    the float64 CPU path on the first ``cpu_layers`` layers, whose time is scaled to all layers.

    ``device="cpu"`` runs the same code on the CPU (a dry run of the CUDA path at small ``scale``)."""
    from workbench.backend import resolve_device, synchronize

    dev = resolve_device(device)
    g = torch.Generator(device=dev).manual_seed(0)
    state: Dict[str, torch.Tensor] = {}
    for i in range(layers):
        state.update(llama_layer(i, g, dtype, device=dev, scale=scale))
    _alphas({k: state[k] for k in list(state)[:2]}, str(dev))  # warm-up (kernels, workspaces)
    synchronize(dev)
    t0 = time.perf_counter()
    ours, peak = peak_growth(functools.partial(_alphas, state, str(dev)), str(dev))  # growth above the weights
    synchronize(dev)
    t_ours = time.perf_counter() - t0
    sample = {k: v for k, v in state.items() if int(k.split(".")[2]) < cpu_layers}
    floor = spectra_floor(sample, str(dev)) * layers / cpu_layers
    cpu_state = {k: v.cpu() for k, v in sample.items()}
    del state
    ref, (t_cpu, _), _ = measured(_alphas, cpu_state, "cpu")
    mine = ours.set_index("name").loc[list(ref["name"]), "alpha"].to_numpy(float)
    n = layers * len(LLAMA_7B_LAYER)
    return row(f"spectra: {n} matrices of 7B shapes on {dev.type} (float64, bootstrap 0, MP fit)",
               f"{layers} layers of 7B LLaMA shapes{'' if scale == 1 else f' / {scale}'} "
               f"({n} matrices)", t_ours, peer="ours, float64 on the CPU", peer_s=t_cpu * layers / cpu_layers,
               floor=f"Gram + eigvalsh on {dev.type}, float64", floor_s=floor,
               agreement=float(np.nanmax(np.abs(mine - ref["alpha"].to_numpy(float)))), agreement_of="alpha",
               tolerance=1e-6, peak_mb=peak, device=str(dev), case="llama-7b-cuda",
               note=f"CPU and floor timed on {cpu_layers} of {layers} layers and scaled")


def run(quick: bool = False, device: str = "auto", cases=("models", "checkpoint"), layers: int = 1,
        dtype: torch.dtype = torch.float16, peer: str = "shapes", scale: int = 1) -> List[Dict]:
    """Every case's figures, in order (printing nothing)."""
    out = []
    if "models" in cases:
        for i, (name, model) in enumerate(models(quick)):
            out.append(case_model(name, model, device, warm_up=i == 0))
    if "checkpoint" in cases:
        out.append(case_checkpoint_7b(layers, dtype, device, peer, scale=scale))
    return out


def _print(fig: Dict) -> None:
    def num(key, fmt=".2f", unit=" s"):
        value = fig.get(key)
        return "n/a" if value is None else f"{value:{fmt}}{unit}"

    per = f" per {fig['per']}" if fig.get("per") else ""
    print(f"{fig['case']}: {fig['work']}; {fig['size']}")
    print(f"   ours {num('ours_s')}{per}, {fig['peer']} {num('peer_s')}{per}, ratio {num('ratio', '.1f', 'x')}, "
          f"max|dalpha| {num('agreement', '.2e', '')}, floor (Gram + eigvalsh) {num('floor_s')}{per}, "
          f"ours / floor {num('floor_ratio', '.2f', '')}, peak memory ours {num('peak_mb', '.0f', ' MB')}, "
          f"peer {num('peer_peak_mb', '.0f', ' MB')}")
    if "ours_cpu_s" in fig:
        print(f"   CPU time (all threads): ours {num('ours_cpu_s')}{per}, peer {num('peer_cpu_s')}{per}, "
              f"ratio {num('cpu_ratio', '.1f', 'x')}")
    if "f32_s" in fig:
        print(f"   matrices ours {fig['ours_n']}, peer {fig.get('peer_n', 'n/a')}, matched "
              f"{fig.get('matched', 'n/a')}; max|d alpha_weighted| {num('max_dalpha_weighted', '.2e', '')}, "
              f"max|d stable_rank| {num('max_dstable_rank', '.2e', '')}, max|d log_norm| "
              f"{num('max_dlog_norm', '.2e', '')}; float32: {num('f32_s')}, ratio {num('f32_ratio', '.1f', 'x')}, "
              f"max|dalpha| vs float64 {num('f32_max_dalpha', '.2e', '')}")
        miss = fig.get("not_in_peer") or []
        if miss:
            more = ", ..." if len(miss) > 4 else ""
            print(f"   not analysed by weightwatcher: {len(miss)} ({', '.join(miss[:4])}{more})")
    if "ours_32_layers_s" in fig:
        timed_on = "; weightwatcher timed on " + ", ".join(
            f"{n.split('.')[-2]} {s:.1f} s" for n, s in fig["peer_matrix_s"].items()) if "peer_matrix_s" in fig else ""
        peer32 = fig.get("peer_32_layers_s")
        print(f"   extrapolated to {LLAMA_7B_LAYERS} layers: ours {fig['ours_32_layers_s'] / 60:.1f} min, "
              f"peer {'n/a' if peer32 is None else f'{peer32 / 60:.1f} min'}{timed_on}; alpha range "
              f"{fig['alpha_range'][0]:.2f}..{fig['alpha_range'][1]:.2f}")
    if fig.get("note"):
        print(f"   note: {fig['note']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cases", default="models,checkpoint", help="comma-separated: models, checkpoint, cuda")
    ap.add_argument("--layers", type=int, default=1, help="decoder layers of the 7B-shaped checkpoint")
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    ap.add_argument("--peer", default="shapes", choices=["shapes", "all"],
                    help="weightwatcher on one matrix per shape of a layer, or on every matrix")
    ap.add_argument("--scale", type=int, default=1, help="divide every side of the 7B shapes by this")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cases = args.cases.split(",")
    dtype = getattr(torch, args.dtype)
    if "models" in cases:
        for i, (name, model) in enumerate(models(args.quick)):
            _print(case_model(name, model, args.device, warm_up=i == 0))
    if "checkpoint" in cases:
        _print(case_checkpoint_7b(args.layers, dtype, args.device, args.peer, scale=args.scale))
    if "cuda" in cases:
        _print(case_cuda_7b(scale=args.scale, device=args.device if args.device != "auto" else "cuda"))


if __name__ == "__main__":
    main()
