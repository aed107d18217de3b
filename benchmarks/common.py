"""What every benchmark case shares: alternated timing of ours and a peer, peak memory, optional peers,
the row every case returns, and the CSV / Markdown table ``run_all.py`` writes.

A case is a function returning one row (a dict) or a list of rows with the keys of :data:`COLUMNS`
(missing ones are blank) plus any extras of its own:

* ``work``, ``size``: what was measured, with the sizes;
* ``ours_s``, ``peer``, ``peer_s``: seconds of ours and of the named peer (best of the alternated repeats);
  ``ratio`` = peer / ours (> 1: ours is faster);
* ``floor``, ``floor_s``: the physical floor of the work (e.g. the Gram product and ``eigvalsh`` alone) and
  its seconds; ``floor_ratio`` = ours / floor (1 = ours costs what the floor costs);
* ``agreement``: the largest difference of the numbers against the peer (``agreement_of`` says which
  numbers), ``tolerance`` the largest difference that counts as agreeing;
* ``peak_mb``: peak memory of ours where the case measures it; ``note``: anything else a reader needs
  (a missing peer, an extrapolated time, the load).
"""
from __future__ import annotations

import csv
import gc
import importlib
import importlib.util
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

COLUMNS = ["case", "work", "size", "device", "ours_s", "peer", "peer_s", "ratio", "floor", "floor_s",
           "floor_ratio", "agreement", "agreement_of", "tolerance", "peak_mb", "note"]
# the Markdown table: (column key, header)
MARKDOWN = [("work", "work"), ("size", "size"), ("ours_s", "ours (s)"), ("peer", "peer"), ("peer_s", "peer (s)"),
            ("ratio", "peer / ours"), ("floor_ratio", "ours / floor"), ("agreement", "agreement"),
            ("peak_mb", "peak MB"), ("note", "note")]


# optional peers to treat as not installed (``run_all.py --without``): the missing-peer path, on purpose
HIDDEN_PEERS: Set[str] = set()


def peer_version(module: str) -> Optional[str]:
    """The installed version of an optional peer package, or ``None`` when it cannot be imported (or is in
    :data:`HIDDEN_PEERS`)."""
    if module in HIDDEN_PEERS or importlib.util.find_spec(module) is None:
        return None
    try:
        mod = importlib.import_module(module)
    except Exception:  # installed but broken (a missing dependency of its own)
        return None
    version = getattr(mod, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as dist_version

            version = dist_version({"skdim": "scikit-dimension", "pyhessian": "PyHessian",
                                    "loss_landscapes": "loss_landscapes"}.get(module, module))
        except Exception:
            version = "?"
    return str(version)


def peer_label(module: str, label: Optional[str] = None) -> Tuple[str, bool]:
    """``(label with version, available)`` of an optional peer; ``(... not installed, False)`` without it."""
    version = peer_version(module)
    name = label or module
    return (f"{name} {version}", True) if version is not None else (f"{name} (not installed)", False)


def _sync(device: Any) -> None:
    if device is not None and str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def alternate(fns: Dict[str, Optional[Callable[[], Any]]], repeats: int = 3, device: Any = None):
    """Call the functions in turn, ``repeats`` rounds (ours and the peer see the same machine load).

    Returns ``(times, outputs)``: every function's list of wall seconds and its last output.  A ``None``
    function is skipped (a missing peer)."""
    times: Dict[str, List[float]] = {k: [] for k, f in fns.items() if f is not None}
    outputs: Dict[str, Any] = {}
    for _ in range(max(1, int(repeats))):
        for name, fn in fns.items():
            if fn is None:
                continue
            _sync(device)
            t = time.perf_counter()
            outputs[name] = fn()
            _sync(device)
            times[name].append(time.perf_counter() - t)
    return times, outputs


def best(times: Sequence[float]) -> float:
    return min(times) if times else float("nan")


def median(times: Sequence[float]) -> float:
    return statistics.median(times) if times else float("nan")


def _status(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))
    except (OSError, StopIteration):
        return None


def peak_growth(fn: Callable[[], Any], device: Any = None) -> Tuple[Any, Optional[float]]:
    """``(fn(), peak memory growth in MB)``: the resident set on the CPU (Linux ``/proc``; ``None``
    elsewhere), the allocated memory on a CUDA device."""
    gc.collect()
    if device is not None and str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        out = fn()
        torch.cuda.synchronize()
        return out, (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    try:
        with open("/proc/self/clear_refs", "w") as f:  # VmHWM back to the current resident size
            f.write("5")
        base = _status("VmRSS")
    except OSError:
        base = None
    out = fn()
    peak = _status("VmHWM")
    return out, (peak - base) / 2 ** 20 if base is not None and peak is not None else None


def ratio(num: Optional[float], den: Optional[float]) -> Optional[float]:
    if num is None or den is None or not (math.isfinite(num) and math.isfinite(den)) or den <= 0:
        return None
    return num / den


def row(work: str, size: str, ours_s: float, *, peer: str = "", peer_s: Optional[float] = None,
        floor: str = "", floor_s: Optional[float] = None, agreement: Optional[float] = None,
        agreement_of: str = "", tolerance: Optional[float] = None, peak_mb: Optional[float] = None,
        note: str = "", **extra: Any) -> Dict[str, Any]:
    """One row of the table, ratios filled in from the times."""
    out = {"work": work, "size": size, "ours_s": ours_s, "peer": peer, "peer_s": peer_s,
           "ratio": ratio(peer_s, ours_s), "floor": floor, "floor_s": floor_s,
           "floor_ratio": ratio(ours_s, floor_s), "agreement": agreement, "agreement_of": agreement_of,
           "tolerance": tolerance, "peak_mb": peak_mb, "note": note}
    out.update(extra)
    return out


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


# --------------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------------
def _fmt(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        if key in ("agreement", "tolerance"):
            return "0" if value == 0 else f"{value:.1e}"
        if key in ("ratio", "floor_ratio"):
            return f"{value:.2f}"
        if key == "peak_mb":
            return f"{value:.0f}"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def _csv_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return ""
    return "" if value is None else value


def write_tables(rows: Iterable[Dict[str, Any]], out: Path, name: str = "results",
                 header: Sequence[str] = ()) -> Tuple[Path, Path]:
    """``name.csv`` (every column of :data:`COLUMNS`) and ``name.md`` (the table, after ``header``
    lines) in ``out``; returns their paths."""
    rows = list(rows)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / f"{name}.csv", out / f"{name}.md"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_value(r.get(k)) for k in COLUMNS})
    md_path.write_text(markdown(rows, header))
    return csv_path, md_path


def markdown(rows: Iterable[Dict[str, Any]], header: Sequence[str] = ()) -> str:
    lines = list(header) + ([""] if header else [])
    lines.append("| " + " | ".join(h for _, h in MARKDOWN) + " |")
    lines.append("|" + "|".join("---" for _ in MARKDOWN) + "|")
    for r in rows:
        cells = [_fmt(k, r.get(k)).replace("|", "/") for k, _ in MARKDOWN]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
