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

Figures of every case: ``case``, ``work``, ``size``, ``ours_s``, ``peer_s``, ``ratio`` (peer / ours),
``agreement`` (max |alpha ours - alpha weightwatcher| over the matched matrices), ``peak_mb`` (ours) and
case-specific extras.

Usage: python benchmarks/bench_spectra.py [--quick] [--device auto|cpu|cuda] [--threads N]
                                          [--cases models,checkpoint] [--layers 1] [--dtype float16]
                                          [--peer shapes|all]
On a machine busy with other work, run with OMP_WAIT_POLICY=PASSIVE: torch's multi-threaded eigvalsh
otherwise spin-waits and can be 50-100x slower when its threads are not all scheduled.
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from torch import nn

LLAMA_7B_LAYER = [("self_attn.q_proj", 4096, 4096), ("self_attn.k_proj", 4096, 4096),
                  ("self_attn.v_proj", 4096, 4096), ("self_attn.o_proj", 4096, 4096),
                  ("mlp.gate_proj", 11008, 4096), ("mlp.up_proj", 11008, 4096), ("mlp.down_proj", 4096, 11008)]
LLAMA_7B_LAYERS = 32


def _quiet():
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)


def _status(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))
    except (OSError, StopIteration):
        return None


def measured(fn: Callable, *args, **kwargs):
    """``(result, seconds, peak growth of the resident set in MB or None)`` of ``fn(*args, **kwargs)``.

    ``seconds`` is ``(wall, cpu)``: the CPU time of all the process' threads is less disturbed by other
    work on a shared machine than the wall time.
    """
    from workbench.spectra.checkpoint import release_freed_memory

    gc.collect()
    release_freed_memory()
    try:
        with open("/proc/self/clear_refs", "w") as f:  # VmHWM back to the current resident size
            f.write("5")
        base = _status("VmRSS")
    except OSError:
        base = None
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    seconds = (time.perf_counter() - t0, time.process_time() - c0)
    peak = _status("VmHWM")
    return out, seconds, (peak - base) / 2 ** 20 if base is not None and peak is not None else None


def _weightwatcher(model: nn.Module):
    import weightwatcher as ww

    return ww.WeightWatcher(model=model).analyze()


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
    if warm_up:
        spectra.analyze(model, device=device, progress=False, bootstrap=0)
    ours, t_ours, peak = measured(lambda: spectra.analyze(model, device=device, progress=False).to_frame())
    theirs, t_ww, peer_peak = measured(_weightwatcher, model)
    fast, t_fast, _ = measured(lambda: spectra.analyze(model, device=device, progress=False,
                                                       dtype=torch.float32).to_frame())
    (t_ours, c_ours), (t_ww, c_ww), (t_fast, _) = t_ours, t_ww, t_fast
    a, b, common = _match(ours, theirs)
    missing = [n for n in ours["name"] if n.removesuffix(".weight") not in set(theirs["longname"])]
    params = sum(p.numel() for p in model.parameters())
    return {"case": name, "work": f"analyze {len(ours)} matrices (bootstrap 200, MP fit)",
            "size": f"{params / 1e6:.1f}M parameters", "ours_s": t_ours, "peer_s": t_ww, "ratio": t_ww / t_ours,
            "ours_cpu_s": c_ours, "peer_cpu_s": c_ww, "cpu_ratio": c_ww / c_ours,
            "agreement": _max_diff(a, b, "alpha"), "peak_mb": peak, "peer_peak_mb": peer_peak,
            "ours_n": len(ours), "peer_n": len(theirs), "matched": len(common),
            "max_dalpha_weighted": _max_diff(a, b, "alpha_weighted"),
            "max_dstable_rank": _max_diff(a, b, "stable_rank"), "max_dlog_norm": _max_diff(a, b, "log_norm"),
            "f32_s": t_fast, "f32_ratio": t_ww / t_fast,
            "f32_max_dalpha": float(np.nanmax(np.abs(fast["alpha"] - ours["alpha"]))),
            "not_in_peer": missing}


def write_llama_layers(folder: Path, layers: int, dtype: torch.dtype = torch.float16, seed: int = 0) -> int:
    """``layers`` decoder layers with 7B LLaMA shapes, one safetensors shard per layer plus the index json.

    The weights are Gaussian (std 0.02) with a rank-8 signal on top, so the spectra have a few outliers
    above the bulk as trained weights do.  Returns the bytes written.  One layer is in memory at a time.
    """
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    weight_map, total = {}, 0
    for i in range(layers):
        shard = {}
        for part, rows, cols in LLAMA_7B_LAYER:
            w = torch.randn(rows, cols, generator=g).mul_(0.02)
            u, v = torch.randn(rows, 8, generator=g), torch.randn(8, cols, generator=g)
            w.add_((u * torch.linspace(0.05, 0.2, 8)) @ v / cols ** 0.5)
            shard[f"model.layers.{i}.{part}.weight"] = w.to(dtype)
            del w, u, v
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


def case_checkpoint_7b(layers: int = 1, dtype: torch.dtype = torch.float16, device: str = "auto",
                       peer: str = "shapes", folder: Optional[str] = None) -> Dict:
    """Stream a 7B-shaped checkpoint from disk and compare with weightwatcher on the same matrices."""
    from workbench import spectra

    _quiet()
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        path = Path(tmp)
        size = write_llama_layers(path, layers, dtype)
        res, t_ours, peak = measured(spectra.analyze, path, device=device, progress=False, bootstrap=0)
        ours = res.to_frame()
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
            dalpha.append(abs(float(theirs["alpha"].iloc[0]) -
                              float(ours.set_index("name").loc[name, "alpha"])))
            del model
    def per_layer(seconds):
        return sum(seconds.values()) / layers if counts is None else sum(counts[n] * seconds[n] for n in names)

    ours_layer, ours_cpu = t_ours[0] / layers, t_ours[1] / layers
    peer_layer, peer_cpu_layer = per_layer(peer_s), per_layer(peer_cpu)
    params = sum(r * c for _, r, c in LLAMA_7B_LAYER) * layers
    return {"case": f"llama-7b-checkpoint ({layers} layer{'s' if layers > 1 else ''})",
            "work": f"stream {len(ours)} matrices from a sharded safetensors folder (bootstrap 0, MP fit)",
            "size": f"{params / 1e6:.0f}M parameters, {size / 2 ** 20:.0f} MiB {str(dtype).replace('torch.', '')}",
            "ours_s": ours_layer, "peer_s": peer_layer, "ratio": peer_layer / ours_layer,
            "ours_cpu_s": ours_cpu, "peer_cpu_s": peer_cpu_layer, "cpu_ratio": peer_cpu_layer / ours_cpu,
            "agreement": max(dalpha), "peak_mb": peak, "peer_peak_mb": peer_peak,
            "per": "layer", "ours_32_layers_s": ours_layer * LLAMA_7B_LAYERS,
            "peer_32_layers_s": peer_layer * LLAMA_7B_LAYERS, "peer_timed_on": names if counts else "all",
            "peer_matrix_s": peer_s, "file_mb": size / 2 ** 20, "matrices_per_layer": len(LLAMA_7B_LAYER),
            "alpha_range": (float(ours["alpha"].min()), float(ours["alpha"].max()))}


def run(quick: bool = False, device: str = "auto", cases=("models", "checkpoint"), layers: int = 1,
        dtype: torch.dtype = torch.float16, peer: str = "shapes") -> List[Dict]:
    """Every case's figures, in order (printing nothing)."""
    out = []
    if "models" in cases:
        for i, (name, model) in enumerate(models(quick)):
            out.append(case_model(name, model, device, warm_up=i == 0))
    if "checkpoint" in cases:
        out.append(case_checkpoint_7b(layers, dtype, device, peer))
    return out


def _print(fig: Dict) -> None:
    peak = f"{fig['peak_mb']:.0f} MB" if fig.get("peak_mb") is not None else "n/a"
    peer_peak = f"{fig['peer_peak_mb']:.0f} MB" if fig.get("peer_peak_mb") is not None else "n/a"
    per = f" per {fig['per']}" if fig.get("per") else ""
    print(f"{fig['case']}: {fig['work']}; {fig['size']}")
    print(f"   ours {fig['ours_s']:.2f} s{per}, weightwatcher {fig['peer_s']:.2f} s{per}, "
          f"ratio {fig['ratio']:.1f}x, max|dalpha| {fig['agreement']:.2e}, "
          f"peak memory ours {peak}, weightwatcher {peer_peak}")
    print(f"   CPU time (all threads): ours {fig['ours_cpu_s']:.2f} s{per}, "
          f"weightwatcher {fig['peer_cpu_s']:.2f} s{per}, ratio {fig['cpu_ratio']:.1f}x")
    if "matched" in fig:
        print(f"   matrices ours {fig['ours_n']}, weightwatcher {fig['peer_n']}, matched {fig['matched']}; "
              f"max|d alpha_weighted| {fig['max_dalpha_weighted']:.2e}, max|d stable_rank| "
              f"{fig['max_dstable_rank']:.2e}, max|d log_norm| {fig['max_dlog_norm']:.2e}; float32: "
              f"{fig['f32_s']:.2f} s, ratio {fig['f32_ratio']:.1f}x, "
              f"max|dalpha| vs float64 {fig['f32_max_dalpha']:.2e}")
        if fig["not_in_peer"]:
            miss = fig["not_in_peer"]
            more = ", ..." if len(miss) > 4 else ""
            print(f"   not analysed by weightwatcher: {len(miss)} ({', '.join(miss[:4])}{more})")
    if "ours_32_layers_s" in fig:
        print(f"   extrapolated to {LLAMA_7B_LAYERS} layers: ours {fig['ours_32_layers_s'] / 60:.1f} min, "
              f"weightwatcher {fig['peer_32_layers_s'] / 60:.1f} min; weightwatcher timed on "
              f"{fig['peer_timed_on']}: " + ", ".join(f"{n.split('.')[-2]} {s:.1f} s" for n, s in
                                                       fig["peer_matrix_s"].items())
              + f"; alpha range {fig['alpha_range'][0]:.2f}..{fig['alpha_range'][1]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cases", default="models,checkpoint", help="comma-separated: models, checkpoint")
    ap.add_argument("--layers", type=int, default=1, help="decoder layers of the 7B-shaped checkpoint")
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    ap.add_argument("--peer", default="shapes", choices=["shapes", "all"],
                    help="weightwatcher on one matrix per shape of a layer, or on every matrix")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cases = args.cases.split(",")
    dtype = getattr(torch, args.dtype)
    if "models" in cases:
        for i, (name, model) in enumerate(models(args.quick)):
            _print(case_model(name, model, args.device, warm_up=i == 0))
    if "checkpoint" in cases:
        _print(case_checkpoint_7b(args.layers, dtype, args.device, args.peer))


if __name__ == "__main__":
    main()
