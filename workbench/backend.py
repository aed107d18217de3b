"""Device and array-module resolution: the one place that decides where computation runs.

``device`` everywhere in the workbench accepts ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a
``torch.device``.  ``"auto"`` picks CUDA when a GPU is visible, else the CPU.  The environment
variable ``WORKBENCH_DEVICE`` overrides ``"auto"`` (for example ``WORKBENCH_DEVICE=cpu`` on a GPU
machine to compare numbers).

Non-torch code (SciPy/NumPy sparse work, nearest neighbours, ...) asks :func:`array_module` for the
array module that matches a device: CuPy on a CUDA device when it is installed, NumPy otherwise.

Threads on a shared CPU
-----------------------
The workbench is often run beside other work (a training job, another notebook).  Torch's CPU kernels run
their threads through OpenMP, whose default is to spin for a while at the end of every parallel region
waiting for the next one; when the machine is busy, a spinning thread burns the time slice its partner
needs, and small kernels (many per second) became 5-25x slower instead of the fair-share 2x.  The policy,
chosen by ``$WORKBENCH_THREADS`` (see ``benchmarks/README.md`` for the measurements):

* ``auto`` (the default, also when unset):

  - ``import workbench`` sets ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep at once when they have no work)
    when the variable is unset or empty and torch is not yet imported: the OpenMP runtime reads it once,
    when torch loads it, so a later change has no effect.  A user's own ``OMP_WAIT_POLICY`` is kept;
    with torch imported first the runtime keeps spinning (:func:`thread_settings` says so) and the fix is
    to import workbench first or to export the variable before starting Python.
  - importing this module caps torch's intra-op threads at the CPUs this process may use
    (:func:`affinity_cpus`: the affinity mask of ``taskset`` or a container's CPU set, and a cgroup CPU
    quota such as ``docker --cpus``), unless ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` is set.  Torch
    follows the affinity mask but not a quota, and oversubscribes a container limited to fewer CPUs than
    the machine has.  The count is not lowered by the load average: it lags the load by minutes, and with the
    passive wait two threads on a busy 2-core machine were not slower than one.
* a positive integer ``N``: the passive wait as above and ``torch.set_num_threads(N)``.
* ``off``: neither; torch's defaults (spinning waits, threads = cores).
"""
from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, Mapping, Optional, Union

import numpy as np
import torch

ENV_VAR = "WORKBENCH_DEVICE"
THREADS_VAR = "WORKBENCH_THREADS"

DeviceLike = Union[str, torch.device, None]


class DeviceError(RuntimeError):
    """Raised when a requested device cannot be used."""


def cuda_available() -> bool:
    return bool(torch.cuda.is_available())


def resolve_device(device: DeviceLike = "auto") -> torch.device:
    """Turn ``device`` into a concrete :class:`torch.device`.

    ``None`` and ``"auto"`` mean: the value of ``$WORKBENCH_DEVICE`` if set, else CUDA when available,
    else CPU.  Asking for CUDA without a GPU raises :class:`DeviceError` with the fix.
    """
    if isinstance(device, torch.device):
        dev = device
    else:
        name = "auto" if device is None else str(device).strip().lower()
        if name == "auto":
            env = os.environ.get(ENV_VAR, "").strip().lower()
            if env and env != "auto":
                name = env
            else:
                return torch.device("cuda") if cuda_available() else torch.device("cpu")
        if name == "gpu":
            name = "cuda"
        try:
            dev = torch.device(name)
        except RuntimeError as exc:
            raise DeviceError(
                f"device={device!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
            ) from exc
    if dev.type == "cuda":
        if not cuda_available():
            raise DeviceError(
                f"device={device!r} asks for CUDA but no CUDA GPU is visible to torch; "
                "use device='auto' or 'cpu' (or unset $WORKBENCH_DEVICE)"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    elif dev.type not in ("cpu", "mps"):
        raise DeviceError(f"device={device!r} is not supported; use 'auto', 'cpu' or 'cuda'")
    return dev


def cupy_available() -> bool:
    try:
        import cupy  # noqa: F401
    except Exception:  # ImportError, or a CUDA runtime mismatch
        return False
    return True


def array_module(device: DeviceLike = "auto") -> ModuleType:
    """NumPy or CuPy, matching ``device``: CuPy on a CUDA device when installed, NumPy otherwise."""
    dev = resolve_device(device)
    if dev.type == "cuda" and cupy_available():
        import cupy

        return cupy
    return np


def to_numpy(x: Any) -> np.ndarray:
    """Bring a torch tensor, CuPy array or array-like back to a NumPy array on the host."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if hasattr(x, "get") and type(x).__module__.startswith("cupy"):
        return x.get()
    return np.asarray(x)


def describe(device: DeviceLike = "auto") -> str:
    """A short human-readable name of the device, for result settings and panels."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        return f"{dev} ({torch.cuda.get_device_name(dev)})"
    return str(dev)


def synchronize(device: DeviceLike) -> None:
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


# --------------------------------------------------------------------------------------------
# memory: how much there is, and work in chunks that halve on out-of-memory
# --------------------------------------------------------------------------------------------
_MEMORY_LIMIT: Optional[int] = None  # bytes; set by ``memory_limit`` (tests) to simulate a small device


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an out-of-memory error (torch CUDA or CPU allocator, NumPy, CuPy, or simulated)."""
    if isinstance(exc, (MemoryError, SimulatedOutOfMemory)) or isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return True
    if type(exc).__name__ == "OutOfMemoryError":  # cupy.cuda.memory.OutOfMemoryError
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg
                                              or "not enough memory" in msg)


class SimulatedOutOfMemory(RuntimeError):
    """Raised by :func:`check_allocation` when a chunk would exceed a simulated memory limit."""


def available_memory(device: DeviceLike = "cpu") -> int:
    """Bytes free on ``device`` (the simulated limit of :func:`memory_limit` when one is set)."""
    if _MEMORY_LIMIT is not None:
        return int(_MEMORY_LIMIT)
    dev = resolve_device(device)
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        return int(free)
    try:
        import psutil  # type: ignore

        return int(psutil.virtual_memory().available)
    except Exception:
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return 2 << 30


def check_allocation(nbytes: float, what: str = "chunk") -> None:
    """Raise :class:`SimulatedOutOfMemory` when ``nbytes`` exceed the simulated limit (no-op otherwise)."""
    if _MEMORY_LIMIT is not None and nbytes > _MEMORY_LIMIT:
        raise SimulatedOutOfMemory(f"out of memory (simulated): {what} needs {int(nbytes)} bytes, "
                                   f"limit {_MEMORY_LIMIT}")


class memory_limit:
    """Context manager simulating a device with ``nbytes`` of memory: :func:`available_memory` reports it
    and :func:`check_allocation` raises above it, so chunked work must halve its chunks (tests)."""

    def __init__(self, nbytes: int):
        self.nbytes = int(nbytes)
        self._saved: Optional[int] = None

    def __enter__(self) -> "memory_limit":
        global _MEMORY_LIMIT
        self._saved, _MEMORY_LIMIT = _MEMORY_LIMIT, self.nbytes
        return self

    def __exit__(self, *exc) -> None:
        global _MEMORY_LIMIT
        _MEMORY_LIMIT = self._saved


def run_in_chunks(total: int, chunk: int, work: Callable[[int, int], Any], *, device: DeviceLike = "cpu",
                  on_done: Optional[Callable[[int, int, Any], None]] = None, what: str = "items") -> int:
    """Call ``work(start, stop)`` over ``range(total)`` in chunks of at most ``chunk``; on out-of-memory the
    chunk is halved and the same range tried again (down to one item, then a ``MemoryError`` naming
    ``what``).  ``on_done(start, stop, value)`` receives each finished chunk.  Returns the final chunk size."""
    dev = resolve_device(device)
    chunk = max(1, int(chunk))
    start = 0
    while start < total:
        stop = min(total, start + chunk)
        try:
            value = work(start, stop)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            if chunk == 1:
                raise MemoryError(f"one of the {what} does not fit in memory; lower the batch size") from exc
            chunk = max(1, chunk // 2)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            continue
        if on_done is not None:
            on_done(start, stop, value)
        start = stop
    return chunk


def run_halving(total: int, chunk: int, work: Callable[[int, int], Any], *, what: str, fix: str,
                device: DeviceLike = "cpu", on_done: Optional[Callable[[int, int, Any], None]] = None,
                record: Optional[dict] = None) -> int:
    """:func:`run_in_chunks` that keeps a record and says what to do when one item does not fit.

    ``record`` (a dict) is filled with ``chunks`` (chunks finished, added to what it holds),
    ``halvings`` (out-of-memory retries, likewise) and ``chunk_sizes`` (every chunk size tried, in
    order, appended).  When even one of the ``what`` does not fit, the ``MemoryError`` names them, the
    cause and ``fix`` (the argument or setting that helps).  Returns the final chunk size.
    """
    rec = record if record is not None else {}
    rec.setdefault("chunks", 0)
    rec.setdefault("halvings", 0)
    sizes = rec.setdefault("chunk_sizes", [])
    chunk = max(1, int(chunk))
    if not sizes or sizes[-1] != chunk:
        sizes.append(chunk)

    def attempt(start: int, stop: int):
        try:
            return work(start, stop)
        except Exception as exc:
            if is_out_of_memory(exc) and sizes[-1] > 1:
                rec["halvings"] += 1
                sizes.append(sizes[-1] // 2)  # what run_in_chunks tries next
            raise

    def done(start: int, stop: int, value: Any) -> None:
        rec["chunks"] += 1
        if on_done is not None:
            on_done(start, stop, value)

    try:
        return run_in_chunks(total, chunk, attempt, device=device, on_done=done, what=what)
    except MemoryError as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        raise MemoryError(f"one of the {what} does not fit in memory ({cause}): {fix}") from exc


class MemoryBudgetError(MemoryError, ValueError):
    """A memory budget (a ``max_memory``-like argument, or by default the memory available) too small for
    even one item of the work: both a ``MemoryError`` and an error in the argument's value."""


def memory_budget(device: DeviceLike = "cpu", *, share: float = 0.5, cap: Optional[float] = None) -> float:
    """``share`` of :func:`available_memory` on ``device`` (the simulated limit when one is set), at most
    ``cap`` bytes: the default budget of work that sizes its passes itself."""
    budget = share * available_memory(device)
    return float(budget if cap is None else min(budget, cap))


# --------------------------------------------------------------------------------------------
# threads: the policy of the module docstring ("Threads on a shared CPU")
# --------------------------------------------------------------------------------------------
def cpu_quota(root: str = "/sys/fs/cgroup") -> Optional[int]:
    """The CPUs a cgroup CPU quota allows (``docker --cpus``), rounded up, or ``None`` without a quota.

    Reads cgroup v2 ``cpu.max`` (``"<quota> <period>"`` or ``"max ..."``), else cgroup v1
    ``cpu/cpu.cfs_quota_us`` and ``cpu/cpu.cfs_period_us`` (quota ``-1``: none)."""
    base = Path(root)
    try:
        text = (base / "cpu.max").read_text().split()
        quota, period = text[0], text[1]
    except (OSError, IndexError):
        try:
            quota = (base / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (base / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1"):
        return None
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return max(1, -(-q // p)) if q > 0 and p > 0 else None


def affinity_cpus() -> int:
    """How many CPUs this process may use: its affinity mask (``os.cpu_count()`` where there is none),
    capped by a cgroup CPU quota (:func:`cpu_quota`)."""
    try:
        n = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        n = max(1, os.cpu_count() or 1)
    quota = cpu_quota()
    return min(n, quota) if quota else n


def thread_policy(environ: Optional[Mapping[str, str]] = None) -> str:
    """``"auto"``, ``"off"`` or a thread count (as a string) from ``$WORKBENCH_THREADS``; anything else is
    refused with the fix."""
    env = os.environ if environ is None else environ
    value = env.get(THREADS_VAR, "").strip().lower() or "auto"
    if value in ("auto", "off") or (value.isdigit() and int(value) > 0):
        return value
    raise ValueError(f"${THREADS_VAR}={env.get(THREADS_VAR)!r}: use 'auto' (the default), 'off' (torch's own "
                     "thread settings) or a positive number of threads")


def policy_threads(environ: Optional[Mapping[str, str]] = None, current: Optional[int] = None,
                   cpus: Optional[int] = None) -> Optional[int]:
    """The intra-op thread count the policy asks for, or ``None`` to leave torch's setting alone."""
    env = os.environ if environ is None else environ
    policy = thread_policy(env)
    if policy == "off":
        return None
    if policy != "auto":
        return int(policy)
    if env.get("OMP_NUM_THREADS", "").strip() or env.get("MKL_NUM_THREADS", "").strip():
        return None  # the user chose
    current = torch.get_num_threads() if current is None else int(current)
    cpus = affinity_cpus() if cpus is None else int(cpus)
    return cpus if current > cpus else None


def apply_thread_policy() -> Dict[str, Any]:
    """Apply the thread count of the policy to torch (run once when this module is imported); returns
    :func:`thread_settings`."""
    n = policy_threads()
    if n is not None and n != torch.get_num_threads():
        torch.set_num_threads(n)
    return thread_settings()


def thread_settings() -> Dict[str, Any]:
    """What the CPU threads are set to: ``policy``, torch's ``threads``, the ``cpus`` of the affinity mask,
    ``wait_policy`` (``OMP_WAIT_POLICY`` or ``"spinning (OpenMP default)"``), ``wait_set_by`` (``"workbench"``,
    ``"user"``, or ``"nobody"``) and the 1-minute ``load`` average."""
    import workbench

    wait = os.environ.get("OMP_WAIT_POLICY", "").strip()
    by = "workbench" if getattr(workbench, "_WAIT_POLICY_SET", False) else ("user" if wait else "nobody")
    try:
        load: Optional[float] = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = None
    return {"policy": thread_policy(), "threads": torch.get_num_threads(), "cpus": affinity_cpus(),
            "wait_policy": wait.upper() or "spinning (OpenMP default)", "wait_set_by": by, "load": load}


apply_thread_policy()
