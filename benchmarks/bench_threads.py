"""The OpenMP wait policy on a busy CPU: a small-kernel workload with torch's default (spinning) wait against
``OMP_WAIT_POLICY=PASSIVE``, the setting ``import workbench`` makes (``workbench.backend``, "Threads on a
shared CPU").

While ``--burners`` busy loops (``python -c 'while True: pass'``) occupy the CPUs, each repeat runs the
workload in two fresh processes, one per policy, alternated (the OpenMP runtime reads the variable once,
when torch loads it).  Both processes run with ``WORKBENCH_THREADS=off`` and the same explicit thread count,
so the wait policy is the only difference.  The workloads:

* ``plane``: a ``steps x steps`` loss map (``landscape.plane``) of the untrained digits MLP: thousands of
  small forward passes;
* ``matmul``: ``calls`` products of two 64 x 64 matrices.

Case function for ``benchmarks/run_all.py``: :func:`case_wait_policy` (ours = PASSIVE, the peer = the
default wait; ratio = default / passive, > 1: the passive wait is faster).

    python benchmarks/bench_threads.py [--workload plane|matmul] [--steps 21] [--repeats 3] [--burners 2]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

from common import load_average, row

_CHILD = r"""
import json, sys, time
kind, size, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
import torch
torch.set_num_threads(threads)
if kind == "plane":
    from workbench import landscape as L, models
    from workbench.data import digits
    data, _ = digits()
    model = models.build("mlp", seed=0).eval()
    work = lambda: L.plane(model, data, steps=size, device="cpu", progress=False)
    L.plane(model, data, steps=3, device="cpu", progress=False)
else:
    a, b = torch.randn(64, 64), torch.randn(64, 64)
    def work():
        for _ in range(size):
            torch.mm(a, b)
    work()
t = time.perf_counter()
work()
print(json.dumps({"seconds": time.perf_counter() - t, "threads": torch.get_num_threads()}))
"""

POLICIES = {"passive": "PASSIVE", "default": None}


def _run_child(kind: str, size: int, threads: int, wait: Optional[str]) -> Dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env["WORKBENCH_THREADS"] = "off"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                    env.get("PYTHONPATH")) if p)
    if wait is not None:
        env["OMP_WAIT_POLICY"] = wait
    out = subprocess.run([sys.executable, "-c", _CHILD, kind, str(size), str(threads)], env=env,
                         capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"the {kind} workload failed (OMP_WAIT_POLICY={wait}): {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_burners(n: int) -> List[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_burners(procs: List[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def case_wait_policy(workload: str = "plane", steps: int = 21, calls: int = 20_000, repeats: int = 3,
                     burners: int = 2, threads: Optional[int] = None) -> Dict:
    """The workload under both wait policies, each in a fresh process, alternated ``repeats`` times beside
    ``burners`` busy loops; times are medians."""
    if workload not in ("plane", "matmul"):
        raise ValueError(f"workload={workload!r}: use 'plane' or 'matmul'")
    threads = threads or max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                             else os.cpu_count() or 1)
    size = steps if workload == "plane" else calls
    times: Dict[str, List[float]] = {k: [] for k in POLICIES}
    load_before = load_average()
    procs = start_burners(burners)
    try:
        time.sleep(1.0)
        for _ in range(max(1, repeats)):
            for name, wait in POLICIES.items():
                times[name].append(_run_child(workload, size, threads, wait)["seconds"])
    finally:
        stop_burners(procs)
    what = (f"{steps}x{steps} plane of the digits MLP" if workload == "plane"
            else f"{calls} products of 64x64 matrices")
    return row(f"threads: {what}, OMP_WAIT_POLICY=PASSIVE", f"{threads} threads beside {burners} busy loops",
               statistics.median(times["passive"]), peer="OpenMP default wait (spinning)",
               peer_s=statistics.median(times["default"]), case=f"threads-{workload}", device="cpu",
               passive_s=times["passive"], default_s=times["default"], load_before=load_before,
               note=f"median of {len(times['passive'])} fresh processes per policy, alternated; load before "
                    f"{load_before.split(' (')[0]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default="plane", choices=["plane", "matmul"])
    ap.add_argument("--steps", type=int, default=21, help="grid steps per axis of the plane workload")
    ap.add_argument("--calls", type=int, default=20_000, help="products of the matmul workload")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--burners", type=int, default=2, help="busy loops beside the workload (0: an idle machine)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the CPUs this process may use)")
    args = ap.parse_args()
    r = case_wait_policy(args.workload, args.steps, args.calls, args.repeats, args.burners, args.threads)
    print(f"{r['work']}; {r['size']}")
    print("  passive : " + ", ".join(f"{t:.2f}" for t in r["passive_s"]) + f" s (median {r['ours_s']:.2f})")
    print("  default : " + ", ".join(f"{t:.2f}" for t in r["default_s"]) + f" s (median {r['peer_s']:.2f})")
    print(f"  default / passive: {r['ratio']:.2f}x; load before {r['load_before']}")


if __name__ == "__main__":
    main()
