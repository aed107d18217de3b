"""One sweep engine for every grid in the workbench: resumable, atomic, executor-agnostic.

A sweep runs ``fn(**cell)`` for every ``cell`` (a dict of JSON-able settings) of a grid::

    from workbench import sweep
    cells = sweep.grid(density=[0.05, 0.2], epochs=[2, 10])
    res = sweep.run(train_and_prune, cells, store="runs/map")        # local, in this process
    res[{"density": 0.05, "epochs": 2}]                               # a value, looked up by its cell

* ``executor`` is where cells run: ``None`` / ``"serial"`` (this process, one after the other),
  ``"threads"`` or ``"processes"`` (a local pool; ``max_workers=``), any
  :class:`concurrent.futures.Executor`, or a Dask ``distributed.Client`` (its
  ``get_executor(pure=False)`` is used), which is the engine for more than one machine
  (``pip install nn-workbench[dask]``).
* With ``store=`` every finished cell is written to disk atomically (temporary file + ``os.replace``),
  under a key derived from its settings.  Running the same sweep again loads the finished cells instead
  of recomputing them, so an interrupted or crashed sweep resumes where it stopped, and a crash while a
  cell is being written never leaves a half-written result behind.  The driver writes every finished
  cell its own store lacks, so the store is complete whether or not the workers share its directory (a
  shared directory also keeps cells a worker finished just before the driver died).
* ``progress=`` drives one bar across cells (finished cells count at once);
  :func:`estimate_cost` says how long the remaining cells will take before running them.
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import itertools
import json
import math
import os
import pickle
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from .progress import Cancelled, Progress, ProgressLike

__all__ = ["grid", "cell_key", "fingerprint", "ensure_writable", "Store", "SweepResult", "SweepError", "CostEstimate",
           "run", "estimate_cost"]

PathLike = Union[str, os.PathLike]


# --------------------------------------------------------------------------------------------
# cells and keys
# --------------------------------------------------------------------------------------------
def grid(**axes: Sequence[Any]) -> List[Dict[str, Any]]:
    """The cartesian product of ``axes`` as a list of cell dicts (last axis varies fastest)."""
    for name, values in axes.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise TypeError(f"grid axis {name!r} must be a list of values, got {values!r}")
    names = list(axes)
    return [dict(zip(names, combo)) for combo in itertools.product(*(list(axes[n]) for n in names))]


def _canonical(value: Any) -> Any:
    """A JSON-able canonical form of a cell value (so 0.1 and np.float64(0.1) give the same key)."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_canonical(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 2 ** 53:
            return int(value)
        return float(repr(value)) if math.isfinite(value) else repr(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cell value {value!r} ({type(value).__name__}) is not JSON-able; cells must hold "
                    "plain settings (numbers, strings, lists, dicts): pass models and data through fn "
                    "(e.g. functools.partial) and put a fingerprint of them in the cell")


def cell_key(cell: Mapping[str, Any]) -> str:
    """A stable key of a cell's settings: ``sha1`` of its canonical JSON (order of keys ignored)."""
    if not isinstance(cell, Mapping):
        raise TypeError(f"a cell must be a dict of settings, got {type(cell).__name__}")
    text = json.dumps(_canonical(dict(cell)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def _digest(h: "hashlib._Hash", obj: Any) -> None:
    """Feed ``obj`` into the hash ``h``: tensors and arrays by dtype, shape and bytes; state dicts and
    mappings key by key; a Dataset by its inputs and targets; a module by its class and state dict."""
    import torch

    if isinstance(obj, torch.nn.Module):
        h.update(type(obj).__qualname__.encode())
        obj = obj.state_dict()
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update((t.float() if t.dtype == torch.bfloat16 else t).numpy().tobytes())
    elif isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        h.update(str((a.shape, str(a.dtype))).encode())
        h.update(a.tobytes())
    elif isinstance(obj, Mapping):
        for k in sorted(obj, key=str):
            h.update(str(k).encode())
            _digest(h, obj[k])
    elif hasattr(obj, "X") and hasattr(obj, "y"):  # a workbench Dataset
        _digest(h, obj.X)
        _digest(h, obj.y)
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            _digest(h, item)
    else:
        h.update(json.dumps(_canonical(obj), sort_keys=True).encode() if _jsonable(obj) else repr(obj).encode())


def _jsonable(obj: Any) -> bool:
    try:
        _canonical(obj)
        return True
    except TypeError:
        return False


def fingerprint(*objs: Any) -> str:
    """A stable content hash of models, state dicts, tensors, arrays, data sets and plain settings, for cell
    keys: the same content gives the same fingerprint in any process, on any device."""
    h = hashlib.sha1()
    for obj in objs:
        _digest(h, obj)
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# the on-disk store
# --------------------------------------------------------------------------------------------
MIN_FREE_BYTES = 64 << 20  # a store or a report refuses to start on a disk with less free space


def ensure_writable(directory: PathLike, *, what: str = "directory", need: int = MIN_FREE_BYTES) -> Path:
    """Create ``directory`` if needed and check, before any work, that files can be written there and that
    the disk has at least ``need`` bytes free; a ``OSError`` names the directory and the fix otherwise."""
    import shutil

    path = Path(directory).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise OSError(f"{what} {str(path)!r} is not writable ({type(exc).__name__}: {exc}); pass a folder you can "
                      "write to") from exc
    free = shutil.disk_usage(path).free
    if free < need:
        raise OSError(f"{what} {str(path)!r} is on a disk with {free / 2**20:.0f} MiB free, less than the "
                      f"{need / 2**20:.0f} MiB this needs; free some space or pass a folder on another disk")
    return path


class Store:
    """A directory of finished cells, one ``<key>.pkl`` file each, written atomically.

    Each file holds ``{"cell": settings, "value": result, "seconds": runtime}``.  Files are written to
    a unique temporary name in the same directory and renamed into place, so a reader sees either the
    whole file or none; leftover temporary files of a crashed writer are ignored (and removed by
    :meth:`clean`).
    """

    SUFFIX = ".pkl"

    def __init__(self, path: PathLike, *, create: bool = True):
        self.path = Path(path)
        if create:
            ensure_writable(self.path, what="store")

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, {len(self)} cells)"

    def file(self, key: str) -> Path:
        return self.path / f"{key}{self.SUFFIX}"

    def __contains__(self, key: str) -> bool:
        return self.file(key).exists()

    def __len__(self) -> int:
        return sum(1 for _ in self.path.glob(f"*{self.SUFFIX}"))

    def keys(self) -> List[str]:
        return sorted(p.name[: -len(self.SUFFIX)] for p in self.path.glob(f"*{self.SUFFIX}"))

    def write(self, key: str, cell: Mapping[str, Any], value: Any, seconds: float = float("nan")) -> Path:
        target = self.file(key)
        tmp = self.path / f".{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        payload = {"cell": dict(cell), "value": value, "seconds": float(seconds), "key": key}
        try:
            with open(tmp, "wb") as fh:
                pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
        return target

    def read(self, key: str) -> Dict[str, Any]:
        with open(self.file(key), "rb") as fh:
            payload = pickle.load(fh)
        if not isinstance(payload, dict) or payload.get("key") != key:
            raise ValueError(f"{self.file(key)} is not a finished cell of this store")
        return payload

    def clean(self) -> int:
        """Remove temporary files left by crashed writers; returns how many were removed."""
        n = 0
        for p in self.path.glob(".*.tmp"):
            p.unlink(missing_ok=True)
            n += 1
        return n


def _as_store(store: Union[None, PathLike, Store]) -> Optional[Store]:
    if store is None or isinstance(store, Store):
        return store
    return Store(store)


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------
class SweepError(RuntimeError):
    """A cell failed; ``.cell`` is its settings, ``.__cause__`` the original exception."""

    def __init__(self, message: str, cell: Optional[Dict[str, Any]] = None):
        super().__init__(message)
        self.cell = cell


class SweepResult(Mapping):
    """Values of a sweep keyed by cell: ``res[cell_dict]`` or ``res[cell_key(cell)]``.

    Iterating gives the cell keys in grid order; :meth:`items_by_cell` gives ``(cell, value)`` pairs,
    ``computed`` / ``loaded`` say which cells ran now and which came from the store, ``seconds`` the
    runtime of each cell and ``errors`` the failures (with ``on_error="skip"``).
    """

    def __init__(self, cells: List[Dict[str, Any]], values: Dict[str, Any], *, computed: List[str],
                 loaded: List[str], seconds: Dict[str, float], errors: Dict[str, BaseException],
                 settings: Dict[str, Any]):
        self.cells = cells
        self._values = values
        self._order = [k for k in (cell_key(c) for c in cells) if k in values]
        self.computed = computed
        self.loaded = loaded
        self.seconds = seconds
        self.errors = errors
        self.settings = settings

    def _key(self, item: Union[str, Mapping[str, Any]]) -> str:
        return item if isinstance(item, str) else cell_key(item)

    def __getitem__(self, item: Union[str, Mapping[str, Any]]) -> Any:
        return self._values[self._key(item)]

    def __contains__(self, item: object) -> bool:
        try:
            return self._key(item) in self._values  # type: ignore[arg-type]
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def __repr__(self) -> str:
        return (f"SweepResult({len(self)}/{len(self.cells)} cells, {len(self.computed)} computed, "
                f"{len(self.loaded)} loaded, {len(self.errors)} failed)")

    def items_by_cell(self) -> List[Tuple[Dict[str, Any], Any]]:
        return [(c, self._values[cell_key(c)]) for c in self.cells if cell_key(c) in self._values]

    def to_frame(self) -> pd.DataFrame:
        """One row per finished cell: its settings, then the value (a dict's scalar items become columns)."""
        rows = []
        for cell, value in self.items_by_cell():
            row = dict(cell)
            if isinstance(value, Mapping):
                row.update({k: v for k, v in value.items() if np.isscalar(v) or v is None})
            elif hasattr(value, "to_dict") and not isinstance(value, pd.DataFrame):
                row.update(value.to_dict())
            else:
                row["value"] = value
            row["seconds"] = self.seconds.get(cell_key(cell), float("nan"))
            rows.append(row)
        return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# executors
# --------------------------------------------------------------------------------------------
def _resolve_executor(executor: Any, max_workers: Optional[int]) -> Tuple[Optional[cf.Executor], bool, str]:
    """(executor or None for serial, whether we own it and must shut it down, a name for settings)."""
    if executor is None or executor == "serial":
        return None, False, "serial"
    if executor == "threads":
        return cf.ThreadPoolExecutor(max_workers=max_workers), True, "threads"
    if executor == "processes":
        return cf.ProcessPoolExecutor(max_workers=max_workers), True, "processes"
    if isinstance(executor, cf.Executor):
        return executor, False, type(executor).__name__
    if hasattr(executor, "get_executor") and hasattr(executor, "scheduler_info"):  # distributed.Client
        return executor.get_executor(pure=False), False, "dask"
    raise TypeError(f"executor={executor!r}: pass None/'serial', 'threads', 'processes', a "
                    "concurrent.futures.Executor, or a dask distributed.Client")


def _run_cell(fn: Callable[..., Any], cell: Dict[str, Any], key: str,
              store_path: Optional[str]) -> Tuple[str, Any, float, bool]:
    """Worker side: compute one cell and store it; returns (key, value, seconds, stored).

    The worker writes the cell only where the store's directory already exists on its machine (it never
    creates one), so a crash after the computation loses nothing on a shared store.  ``stored`` says
    whether this worker wrote a file, not whether the driver can see it: on a machine with its own disk
    the file lands there, so the driver always checks its own store (see :func:`run`).
    """
    start = time.perf_counter()
    value = fn(**cell)
    seconds = time.perf_counter() - start
    stored = False
    if store_path is not None and os.path.isdir(store_path):
        try:
            Store(store_path, create=False).write(key, cell, value, seconds)
            stored = True
        except OSError:  # e.g. a read-only or vanished directory on this worker: the driver writes it
            stored = False
    return key, value, seconds, stored


# --------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------
def _prepare(cells: Iterable[Mapping[str, Any]]) -> Tuple[List[Dict[str, Any]], List[str]]:
    cells = [dict(c) for c in cells]
    if not cells:
        raise ValueError("cells is empty; pass at least one cell (a dict of settings), e.g. sweep.grid(...)")
    keys = [cell_key(c) for c in cells]
    seen: Dict[str, Dict[str, Any]] = {}
    for c, k in zip(cells, keys):
        if k in seen:
            raise ValueError(f"cells holds the same settings twice: {c}; every cell must be distinct")
        seen[k] = c
    return cells, keys


def _load_stored(st: Optional[Store], cells, keys, recompute: bool):
    """``(values, seconds, loaded keys, cells to run)``: what the store already holds, and the rest."""
    values: Dict[str, Any] = {}
    seconds: Dict[str, float] = {}
    loaded: List[str] = []
    todo: List[Tuple[Dict[str, Any], str]] = []
    for cell, key in zip(cells, keys):
        if st is not None and not recompute and key in st:
            try:
                payload = st.read(key)
            except Exception:  # unreadable file (foreign or damaged): compute the cell again
                todo.append((cell, key))
                continue
            values[key] = payload["value"]
            seconds[key] = payload.get("seconds", float("nan"))
            loaded.append(key)
        else:
            todo.append((cell, key))
    return values, seconds, loaded, todo


def _run_serial(fn, todo, store_path, finish, errors, on_error, bar) -> Optional[Tuple[str, BaseException]]:
    for cell, key in todo:
        try:
            finish(*_run_cell(fn, cell, key, store_path))
        except (Cancelled, KeyboardInterrupt):
            raise
        except Exception as exc:
            errors[key] = exc
            if on_error == "raise":
                return key, exc
        bar.update()
    return None


def _run_pool(ex, fn, todo, store_path, finish, errors, on_error, bar) -> Optional[Tuple[str, BaseException]]:
    futures = {ex.submit(_run_cell, fn, cell, key, store_path): key for cell, key in todo}
    pending = set(futures)
    first_error: Optional[Tuple[str, BaseException]] = None
    try:
        while pending:
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                key = futures[fut]
                if fut.cancelled():
                    continue
                exc = fut.exception()
                if exc is None:
                    finish(*fut.result())
                else:
                    errors[key] = exc
                    if on_error == "raise" and first_error is None:
                        first_error = (key, exc)
                        for other in pending:  # stop what has not started yet
                            other.cancel()
                bar.update()
    except BaseException:
        for fut in pending:
            fut.cancel()
        raise
    return first_error


def run(fn: Callable[..., Any], cells: Iterable[Mapping[str, Any]], *, store: Union[None, PathLike, Store] = None,
        executor: Any = None, max_workers: Optional[int] = None, progress: ProgressLike = True,
        on_error: str = "raise", recompute: bool = False) -> SweepResult:
    """Run ``fn(**cell)`` for every cell and return the values keyed by cell.

    Parameters
    ----------
    fn : a picklable callable (a module-level function or a ``functools.partial`` of one) for process
        and Dask executors.  Its return value is stored with :mod:`pickle`.
    cells : list of dicts of JSON-able settings; each is a cell of the grid (see :func:`grid`).
    store : a directory (or :class:`Store`); finished cells are written there and reused on the next run.
    executor : ``None``/``"serial"``, ``"threads"``, ``"processes"``, a ``concurrent.futures.Executor``
        or a Dask ``distributed.Client``.  An executor passed in is not shut down.
    on_error : ``"raise"`` (default: stop submitting, let running cells finish and be stored, then raise
        :class:`SweepError`) or ``"skip"`` (record the failure in ``result.errors`` and go on).
    recompute : ignore (and overwrite) cells already in the store.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error={on_error!r}; choose 'raise' or 'skip'")
    cells, keys = _prepare(cells)
    st = _as_store(store)
    if st is not None:
        st.clean()
    values, seconds, loaded, todo = _load_stored(st, cells, keys, recompute)
    ex, owned, ex_name = _resolve_executor(executor, max_workers)
    settings = dict(executor=ex_name, store=str(st.path) if st else None, cells=len(cells), on_error=on_error)
    computed: List[str] = []
    errors: Dict[str, BaseException] = {}
    store_path = str(st.path) if st is not None else None
    by_key = dict(zip(keys, cells))

    def finish(key: str, value: Any, secs: float, stored: bool) -> None:
        # whatever the worker reported: a worker on another machine may have written its own disk
        if st is not None and (recompute or key not in st):
            st.write(key, by_key[key], value, secs)
        values[key] = value
        seconds[key] = secs
        computed.append(key)

    with Progress(len(cells), "sweep", progress) as bar:
        if loaded:
            bar.update(len(loaded))
        try:
            if ex is None:
                first_error = _run_serial(fn, todo, store_path, finish, errors, on_error, bar)
            else:
                first_error = _run_pool(ex, fn, todo, store_path, finish, errors, on_error, bar)
        finally:
            if owned and ex is not None:
                ex.shutdown(wait=True, cancel_futures=True)
    if first_error is not None:
        key, exc = first_error
        raise SweepError(f"cell {by_key[key]} failed with {type(exc).__name__}: {exc} "
                         f"({len(values)}/{len(cells)} cells are finished"
                         + (f" and stored in {st.path}; run again to resume)" if st else
                            "; pass store= to keep them across runs)"), by_key[key]) from exc
    return SweepResult(cells, values, computed=computed, loaded=loaded, seconds=seconds, errors=errors,
                       settings=settings)


# --------------------------------------------------------------------------------------------
# cost estimate
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class CostEstimate:
    """What a sweep will cost: cells left to run and the estimated wall time."""

    cells: int
    done: int
    todo: int
    seconds_per_cell: float
    workers: int
    estimated_seconds: float
    measured_on: List[Dict[str, Any]]
    setup_seconds: float = 0.0  # work before the cells (e.g. dense training), included in estimated_seconds

    def __str__(self) -> str:
        setup = f", {_fmt_seconds(self.setup_seconds)} of it before the cells" if self.setup_seconds else ""
        return (f"{self.todo} of {self.cells} cells to run ({self.done} stored), about "
                f"{_fmt_seconds(self.estimated_seconds)} on {self.workers} worker(s) "
                f"({self.seconds_per_cell:.2f} s per unit cell{setup})")


def _fmt_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "unknown time"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def estimate_cost(fn: Callable[..., Any], cells: Iterable[Mapping[str, Any]], *,
                  store: Union[None, PathLike, Store] = None, sample: int = 1,
                  weight: Optional[Callable[[Dict[str, Any]], float]] = None,
                  seconds_per_cell: Optional[float] = None, workers: int = 1) -> CostEstimate:
    """Estimate the wall time of :func:`run` before running it.

    Times ``sample`` cells for real (the cheapest by ``weight``; with a ``store`` they are stored, so
    the run reuses them), or uses stored runtimes / ``seconds_per_cell`` when given, and extrapolates to
    the cells not yet stored.  ``weight(cell)`` is the relative cost of a cell (e.g. epochs x seeds;
    default 1 each); ``workers`` divides the total for a pool.
    """
    cells, keys = _prepare(cells)
    st = _as_store(store)
    w = [float(weight(c)) if weight else 1.0 for c in cells]
    if any(x < 0 or not math.isfinite(x) for x in w):
        raise ValueError("weight(cell) must be a finite, non-negative number for every cell")
    stored = [st is not None and k in st for k in keys]
    measured: List[Tuple[float, float, Dict[str, Any]]] = []  # (seconds, weight, cell)
    if seconds_per_cell is None and st is not None:
        for c, k, wi, s in zip(cells, keys, w, stored):
            if s:
                try:
                    secs = float(st.read(k).get("seconds", float("nan")))
                except Exception:
                    continue
                if math.isfinite(secs) and wi > 0:
                    measured.append((secs, wi, c))
    if seconds_per_cell is None and not measured:
        order = sorted((i for i in range(len(cells)) if not stored[i] and w[i] > 0), key=lambda i: w[i])
        for i in order[:max(1, int(sample))]:
            _, value, secs, _ = _run_cell(fn, cells[i], keys[i], str(st.path) if st else None)
            if st is not None and keys[i] not in st:
                st.write(keys[i], cells[i], value, secs)
            measured.append((secs, w[i], cells[i]))
            if st is not None:
                stored[i] = True
    if seconds_per_cell is None:
        if not measured:
            seconds_per_cell = 0.0
        else:
            seconds_per_cell = sum(s for s, _, _ in measured) / sum(wi for _, wi, _ in measured)
    todo_weight = sum(wi for wi, s in zip(w, stored) if not s)
    n_todo = sum(1 for s in stored if not s)
    workers = max(1, int(workers))
    return CostEstimate(cells=len(cells), done=len(cells) - n_todo, todo=n_todo,
                        seconds_per_cell=float(seconds_per_cell), workers=workers,
                        estimated_seconds=float(seconds_per_cell) * todo_weight / workers,
                        measured_on=[c for _, _, c in measured])
