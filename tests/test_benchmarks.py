"""``benchmarks/run_all.py`` end to end on tiny cases (subprocesses), and the CPU thread policy of
``workbench.backend`` with explicit arguments (the thread settings of this process are left alone)."""
from __future__ import annotations

import csv
import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from workbench import backend

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_common", ROOT / "benchmarks" / "common.py")
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)
COLUMNS = _common.COLUMNS


def _run_all(*args, timeout=300):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _rows(out: Path):
    (path,) = out.glob("run_all-*.csv")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def test_run_all_quick_case_writes_the_table(tmp_path):
    proc = _run_all("--quick", "--only", "pruning-cka", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    fields, rows = _rows(tmp_path)
    assert fields == COLUMNS
    assert [r["case"] for r in rows] == ["pruning-cka"]
    r = rows[0]
    ours, peer = float(r["ours_s"]), float(r["peer_s"])
    assert math.isfinite(ours) and ours > 0 and peer > 0
    assert float(r["ratio"]) == pytest.approx(peer / ours, rel=1e-9)
    assert float(r["agreement"]) <= float(r["tolerance"])
    md = (tmp_path / "run_all-cpu-quick.md").read_text()
    assert "| work | size | ours (s) | peer | peer (s) | peer / ours |" in md and "linear CKA" in md
    assert "linear CKA" in proc.stdout  # the table is printed too


def test_run_all_quick_prints_the_whole_table(tmp_path, capsys):
    """The whole ``--quick`` table, as CI shows it: every case ran, every time is finite, every number that has
    a peer agrees with it within the case's tolerance."""
    proc = _run_all("--quick", "--out", str(tmp_path), timeout=900)
    with capsys.disabled():  # the table goes to the CI log
        print("\n" + proc.stdout[-12000:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, rows = _rows(tmp_path)
    assert len(rows) >= 20 and {r["case"].split("-")[0] for r in rows} >= {
        "spectra", "landscape", "connectivity", "id", "topology", "pruning"}
    for r in rows:
        assert math.isfinite(float(r["ours_s"])) and float(r["ours_s"]) > 0, r
        if r["agreement"] and r["tolerance"]:
            assert float(r["agreement"]) <= float(r["tolerance"]), r


def test_missing_peer_gives_a_row_with_a_note(tmp_path):
    proc = _run_all("--quick", "--only", "id-estimators", "--without", "skdim", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    _, rows = _rows(tmp_path)
    assert len(rows) == 3  # TwoNN fit, TwoNN MLE, Levina-Bickel MLE
    for r in rows:
        assert "not installed" in r["peer"] and r["peer_s"] == "" and r["ratio"] == ""
        assert "not installed" in r["note"] and float(r["ours_s"]) > 0


def test_unknown_case_and_missing_cuda_are_refused(tmp_path):
    proc = _run_all("--only", "no-such-case", "--out", str(tmp_path))
    assert proc.returncode == 2 and "no case matches" in proc.stderr and "pruning-cka" in proc.stderr
    if torch.cuda.is_available():
        return
    proc = _run_all("--device", "cuda", "--out", str(tmp_path))
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr
    assert not list(tmp_path.glob("*.csv"))


# ---- the thread policy ---------------------------------------------------------------------------
def _cgroup(tmp_path, **files):
    for name, text in files.items():
        path = tmp_path / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(tmp_path)


def test_cpu_quota_from_cgroup_files(tmp_path):
    assert backend.cpu_quota(_cgroup(tmp_path / "a", **{"cpu.max": "max 100000\n"})) is None
    assert backend.cpu_quota(_cgroup(tmp_path / "b", **{"cpu.max": "150000 100000\n"})) == 2
    assert backend.cpu_quota(_cgroup(tmp_path / "c", **{"cpu.max": "100000 100000\n"})) == 1
    v1 = {"cpu__cpu.cfs_quota_us": "-1\n", "cpu__cpu.cfs_period_us": "100000\n"}
    assert backend.cpu_quota(_cgroup(tmp_path / "d", **v1)) is None
    v1["cpu__cpu.cfs_quota_us"] = "250000\n"
    assert backend.cpu_quota(_cgroup(tmp_path / "e", **v1)) == 3
    assert backend.cpu_quota(str(tmp_path / "none")) is None


def test_thread_policy_values():
    assert backend.thread_policy({}) == "auto"
    assert backend.thread_policy({"WORKBENCH_THREADS": " OFF "}) == "off"
    assert backend.thread_policy({"WORKBENCH_THREADS": "4"}) == "4"
    for bad in ("abc", "0", "-2"):
        with pytest.raises(ValueError, match="WORKBENCH_THREADS"):
            backend.thread_policy({"WORKBENCH_THREADS": bad})


def test_policy_threads_with_explicit_inputs():
    before = torch.get_num_threads()
    assert backend.policy_threads({"OMP_NUM_THREADS": "4"}, current=8, cpus=2) is None
    assert backend.policy_threads({"MKL_NUM_THREADS": "4"}, current=8, cpus=2) is None
    assert backend.policy_threads({"WORKBENCH_THREADS": "off"}, current=8, cpus=2) is None
    assert backend.policy_threads({"WORKBENCH_THREADS": "3"}, current=8, cpus=2) == 3
    assert backend.policy_threads({}, current=8, cpus=2) == 2
    assert backend.policy_threads({"WORKBENCH_THREADS": "auto"}, current=2, cpus=4) is None
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("env, expected", [({}, "PASSIVE"), ({"OMP_WAIT_POLICY": "active"}, "active"),
                                           ({"WORKBENCH_THREADS": "off"}, "None")])
def test_import_sets_the_passive_wait_unless_chosen(env, expected):
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "WORKBENCH_THREADS")}
    base.update(env, PYTHONPATH=str(ROOT))
    code = "import os, workbench; print(os.environ.get('OMP_WAIT_POLICY'))"
    out = subprocess.run([sys.executable, "-c", code], env=base, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected
