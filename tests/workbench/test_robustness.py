"""Long work interrupted (SIGINT, SIGKILL) resumes with nothing recomputed and nothing corrupted; an output
folder that cannot take the results is refused before any work starts."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench import report, sweep

ROOT = Path(__file__).resolve().parents[2]


def _child(code: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # Ctrl-C reaches the child as from a terminal even where this run was started in the background (a
    # shell without job control starts background work with SIGINT ignored, and Python then keeps ignoring it)
    return subprocess.Popen([sys.executable, "-c", code], cwd=str(ROOT), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(predicate, proc, timeout=120):
    start = time.time()
    while not predicate():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() - start < timeout, "the child never got there"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_an_interrupted_sweep_resumes_where_it_stopped(tmp_path, sig):
    store = tmp_path / "store"
    proc = _child("from workbench import sweep; from tests.inputs.slow import square\n"
                  f"sweep.run(square, sweep.grid(i=list(range(8))), store={str(store)!r}, progress=False)")
    _wait_for(lambda: len(list(store.glob("*.pkl"))) >= 3, proc)
    proc.send_signal(sig)
    proc.wait(30)
    done = len(list(store.glob("*.pkl")))
    assert 3 <= done < 8
    from tests.inputs.slow import square

    res = sweep.run(square, sweep.grid(i=list(range(8))), store=store, progress=False)
    assert len(res.loaded) == done and len(res.computed) == 8 - done  # nothing finished is run again
    assert [res[{"i": i}] for i in range(8)] == [i * i for i in range(8)]  # and nothing is corrupted
    assert not list(store.glob(".*.tmp"))


def test_an_interrupted_d_int90_search_resumes(tmp_path):
    code = ("import torch; from workbench import data, models, intrinsic_dimension as I\n"
            "tr, _ = data.digits(); tr = tr.subset(200, seed=1)\n"
            "I.analyze(lambda s: models.build('mlp', seed=s, hidden=(32,)), tr, seeds=2, epochs=3, batch_size=16,"
            " d_min=2, d_max=300, tolerance=0.3, baseline=0.6, device='cpu', bootstrap=50, progress=False,"
            f" cache_dir={str(tmp_path / 'trials')!r})")
    proc = _child(code)
    _wait_for(lambda: len(list((tmp_path / "trials").glob("*.pkl"))) >= 2, proc)
    proc.kill()
    proc.wait(30)
    done = len(list((tmp_path / "trials").glob("*.pkl")))
    from workbench import data, models
    from workbench import intrinsic_dimension as I

    tr, _ = data.digits()
    tr = tr.subset(200, seed=1)
    kw = dict(seeds=2, epochs=3, batch_size=16, d_min=2, d_max=300, tolerance=0.3, baseline=0.6, device="cpu",
              bootstrap=50, progress=False)
    net = lambda s: models.build("mlp", seed=s, hidden=(32,))  # noqa: E731
    resumed = I.analyze(net, tr, cache_dir=tmp_path / "trials", **kw)
    fresh = I.analyze(net, tr, cache_dir=tmp_path / "other", **kw)
    assert resumed.trials["cached"].sum() == done > 0
    assert resumed.d_int90 == fresh.d_int90 and resumed.summary.equals(fresh.summary)


def _notebook(path: Path, seconds: float) -> None:
    cells = [{"cell_type": "code", "execution_count": None, "id": "p0", "metadata": {"tags": ["parameters"]},
              "outputs": [], "source": [f"delay = {seconds}  # [float >= 0] seconds to wait"]},
             {"cell_type": "code", "execution_count": None, "id": "c1", "metadata": {}, "outputs": [],
              "source": ["import time\n", "time.sleep(delay)\n", "print('done')"]}]
    nb = {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                                      "name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))


def test_an_interrupted_report_keeps_the_notebooks_it_finished(tmp_path):
    nbdir, out = tmp_path / "nbs", tmp_path / "out"
    nbdir.mkdir()
    _notebook(nbdir / "a_first.ipynb", 0.0)
    _notebook(nbdir / "b_second.ipynb", 60.0)
    proc = _child(f"from workbench import cli; cli.main(['report', '--notebooks', {str(nbdir)!r}, '--out', "
                  f"{str(out)!r}])")
    _wait_for(lambda: (out / "a_first.html").exists() and len(list((out / ".runs").glob("*.pkl"))) == 1, proc,
              timeout=240)
    proc.send_signal(signal.SIGINT)
    proc.wait(60)
    _notebook(nbdir / "b_second.ipynb", 0.0)  # the second notebook changed: it runs; the first is kept
    res = report.report(out=out, notebooks_dir=nbdir, progress=False)
    runs = {r["notebook"]: r for r in res.runs}
    assert res.ok and runs["a_first"]["resumed"] and not runs["b_second"]["resumed"]
    again = report.report(out=out, notebooks_dir=nbdir, progress=False)
    assert all(r["resumed"] for r in again.runs)
    (out / "a_first.html").unlink()  # a kept run whose files are gone runs again
    third = report.report(out=out, notebooks_dir=nbdir, progress=False)
    assert {r["notebook"]: r["resumed"] for r in third.runs} == {"a_first": False, "b_second": True}


def test_an_output_folder_that_cannot_take_the_report_is_refused_first(tmp_path, monkeypatch):
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    _notebook(nbdir / "a.ipynb", 0.0)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="--out .* is not writable"):
        report.report(out=blocker / "out", notebooks_dir=nbdir, progress=False)
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10 << 30, 10 << 30, 1 << 20))
    with pytest.raises(OSError, match=r"1 MiB free, less than the 64 MiB"):
        report.report(out=tmp_path / "out", notebooks_dir=nbdir, progress=False)
    assert not (tmp_path / "out" / "a.ipynb").exists()
    with pytest.raises(OSError, match="store .* MiB free"):
        sweep.Store(tmp_path / "store")
