import concurrent.futures as cf
import functools
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from workbench import sweep
from workbench.progress import Cancelled


def square_plus(x, y=0, *, log_dir=None, fail_on=None, crash_on=None):
    """x**2 + y, logging each call as a file so tests can count computations per cell."""
    if log_dir is not None:
        d = Path(log_dir)
        d.mkdir(parents=True, exist_ok=True)
        n = len(list(d.glob(f"x{x}_y{y}_*")))
        (d / f"x{x}_y{y}_{n}_{os.getpid()}").touch()
    if crash_on is not None and x == crash_on and not Path(log_dir, "crashed").exists():
        Path(log_dir, "crashed").touch()
        os._exit(3)  # the worker process dies without any cleanup
    if fail_on is not None and x == fail_on and not Path(log_dir, "failed").exists():
        Path(log_dir, "failed").touch()
        raise RuntimeError(f"worker failed on x={x}")
    return {"value": x * x + y, "array": np.arange(x)}


def calls(log_dir, x, y=0):
    return len(list(Path(log_dir).glob(f"x{x}_y{y}_*")))


def test_grid_and_keys():
    cells = sweep.grid(a=[1, 2], b=["u", "v", "w"])
    assert len(cells) == 6 and cells[0] == {"a": 1, "b": "u"} and cells[1] == {"a": 1, "b": "v"}
    # key ignores dict order and numeric representation, distinguishes values
    assert sweep.cell_key({"a": 1, "b": 0.5}) == sweep.cell_key({"b": np.float64(0.5), "a": 1.0})
    assert sweep.cell_key({"a": 1}) != sweep.cell_key({"a": 2})
    with pytest.raises(TypeError, match="not JSON-able"):
        sweep.cell_key({"model": object()})
    with pytest.raises(ValueError, match="same settings twice"):
        sweep.run(square_plus, [{"x": 1}, {"x": 1.0}], progress=False)
    with pytest.raises(ValueError, match="cells is empty"):
        sweep.run(square_plus, [], progress=False)


def test_run_serial_values_keyed_by_cell(tmp_path):
    cells = sweep.grid(x=[1, 2, 3], y=[0, 10])
    seen = []
    res = sweep.run(square_plus, cells, progress=lambda d, t, s: seen.append((d, t)))
    assert len(res) == 6 and res[{"x": 3, "y": 10}]["value"] == 19
    assert res[sweep.cell_key({"y": 0, "x": 2})]["value"] == 4
    assert seen[0] == (0, 6) and seen[-1] == (6, 6)
    frame = res.to_frame()
    assert list(frame["value"]) == [x * x + y for x in [1, 2, 3] for y in [0, 10]]


def test_store_resume_after_failure_recomputes_nothing(tmp_path):
    log, store = tmp_path / "log", tmp_path / "store"
    fn = functools.partial(square_plus, log_dir=str(log), fail_on=3)
    cells = sweep.grid(x=[1, 2, 3, 4, 5])
    with pytest.raises(sweep.SweepError, match="x=3") as info:
        sweep.run(fn, cells, store=store, progress=False)
    assert info.value.cell == {"x": 3}
    assert sorted(sweep.Store(store).keys()) == sorted(sweep.cell_key({"x": x}) for x in (1, 2))
    res = sweep.run(fn, cells, store=store, progress=False)
    assert [calls(log, x) for x in (1, 2, 3, 4, 5)] == [1, 1, 2, 1, 1]
    assert sorted(res.loaded) == sorted(sweep.cell_key({"x": x}) for x in (1, 2))
    assert [res[{"x": x}]["value"] for x in range(1, 6)] == [1, 4, 9, 16, 25]
    # a third run computes nothing at all
    res3 = sweep.run(fn, cells, store=store, progress=False)
    assert res3.computed == [] and sum(calls(log, x) for x in range(1, 6)) == 6


def test_crashed_worker_process_resumes_without_corruption(tmp_path):
    log, store = tmp_path / "log", tmp_path / "store"
    fn = functools.partial(square_plus, log_dir=str(log), crash_on=4)
    cells = sweep.grid(x=[1, 2, 3, 4, 5, 6])
    # a half-written file of an earlier crash must be ignored and cleaned, not read
    Path(store).mkdir(parents=True)
    (Path(store) / f".{sweep.cell_key({'x': 1})}.999.deadbeef.tmp").write_bytes(b"\x80\x04trunc")
    with cf.ProcessPoolExecutor(max_workers=1) as ex:
        with pytest.raises(sweep.SweepError):
            sweep.run(fn, cells, store=store, executor=ex, progress=False)
    st = sweep.Store(store)
    finished = st.keys()
    assert sweep.cell_key({"x": 4}) not in finished and len(finished) >= 3
    for key in finished:  # every stored file is complete and correct
        payload = st.read(key)
        assert payload["value"]["value"] == payload["cell"]["x"] ** 2
    assert not list(Path(store).glob("*.tmp"))
    before = {x: calls(log, x) for x in range(1, 7)}
    res = sweep.run(fn, cells, store=store, executor="processes", max_workers=2, progress=False)
    after = {x: calls(log, x) for x in range(1, 7)}
    for key in finished:  # no finished cell recomputed
        x = st.read(key)["cell"]["x"]
        assert after[x] == before[x] == 1
    assert after[4] == 2
    assert [res[{"x": x}]["value"] for x in range(1, 7)] == [1, 4, 9, 16, 25, 36]


def test_unreadable_store_file_is_recomputed(tmp_path):
    st = sweep.Store(tmp_path)
    st.file(sweep.cell_key({"x": 2})).write_bytes(b"garbage")
    res = sweep.run(square_plus, [{"x": 2}], store=st, progress=False)
    assert res.computed == [sweep.cell_key({"x": 2})] and st.read(sweep.cell_key({"x": 2}))["value"]["value"] == 4


def test_on_error_skip_and_threads(tmp_path):
    fn = functools.partial(square_plus, log_dir=str(tmp_path), fail_on=2)
    res = sweep.run(fn, sweep.grid(x=[1, 2, 3]), executor="threads", max_workers=2, on_error="skip",
                    progress=False)
    assert len(res) == 2 and {"x": 2} not in res and isinstance(res.errors[sweep.cell_key({"x": 2})], RuntimeError)


def test_cancel_from_progress_callback(tmp_path):
    def stop(done, total, desc):
        if done >= 2:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        sweep.run(square_plus, sweep.grid(x=[1, 2, 3, 4]), store=tmp_path, progress=stop)
    assert len(sweep.Store(tmp_path)) == 2


def test_estimate_cost_reuses_measured_cell(tmp_path):
    log = tmp_path / "log"
    fn = functools.partial(square_plus, log_dir=str(log))
    cells = sweep.grid(x=[1, 2, 3], y=[0, 1])
    est = sweep.estimate_cost(fn, cells, store=tmp_path / "s", weight=lambda c: c["x"], workers=2)
    assert est.cells == 6 and est.done == 1 and est.todo == 5 and est.measured_on == [{"x": 1, "y": 0}]
    # remaining weight 1 + 2 + 2 + 3 + 3 = 11 units over 2 workers
    assert est.estimated_seconds == pytest.approx(est.seconds_per_cell * 11 / 2)
    assert "5 of 6 cells" in str(est)
    sweep.run(fn, cells, store=tmp_path / "s", progress=False)
    assert calls(log, 1, 0) == 1  # the timed cell was not run again
    est2 = sweep.estimate_cost(fn, cells, store=tmp_path / "s", seconds_per_cell=2.0)
    assert est2.todo == 0 and est2.estimated_seconds == 0.0


def test_dask_local_cluster_matches_local(tmp_path):
    distributed = pytest.importorskip("distributed")
    cells = sweep.grid(x=[1, 2, 3, 4], y=[0, 5])
    local = sweep.run(square_plus, cells, store=tmp_path / "local", progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        fn = functools.partial(square_plus, log_dir=str(tmp_path / "log"))
        remote = sweep.run(fn, cells, store=tmp_path / "dask", executor=client, progress=False)
        assert remote.settings["executor"] == "dask"
        # resuming on the cluster loads every cell
        again = sweep.run(fn, cells, store=tmp_path / "dask", executor=client.get_executor(pure=False),
                          progress=False)
    assert again.computed == [] and len(again.loaded) == 8
    for cell in cells:
        assert remote[cell]["value"] == local[cell]["value"]
        np.testing.assert_array_equal(remote[cell]["array"], local[cell]["array"])
        assert calls(tmp_path / "log", cell["x"], cell["y"]) == 1
    for key in sweep.Store(tmp_path / "dask").keys():
        with open(sweep.Store(tmp_path / "dask").file(key), "rb") as fh:
            assert pickle.load(fh)["key"] == key


def _own_disk(root, dask_worker=None):
    """Give this Dask worker a private working directory, standing in for a machine with its own disk."""
    d = Path(root) / "".join(ch if ch.isalnum() else "_" for ch in str(dask_worker.name))
    (d / "store").mkdir(parents=True, exist_ok=True)
    os.chdir(d)
    return str(d)


def test_dask_workers_with_their_own_disks_still_fill_the_driver_store(tmp_path, monkeypatch):
    """A relative store path resolves to a different directory on each worker process (as on machines
    with their own disks): the workers write there, and the driver must still write every cell itself."""
    distributed = pytest.importorskip("distributed")
    driver = tmp_path / "driver"
    driver.mkdir()
    monkeypatch.chdir(driver)
    cells = sweep.grid(x=[1, 2, 3], y=[0, 5])
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        disks = client.run(_own_disk, str(tmp_path / "workers"))
        assert len(set(disks.values())) == 2
        fn = functools.partial(square_plus, log_dir=str(tmp_path / "log"))
        res = sweep.run(fn, cells, store="store", executor=client, progress=False)
        assert sorted(res.computed) == sorted(sweep.cell_key(c) for c in cells)
        # the workers did write their own disks, not the driver's
        on_workers = sum(len(sweep.Store(Path(d) / "store").keys()) for d in disks.values())
        assert on_workers == len(cells)
        st = sweep.Store(driver / "store")
        assert sorted(st.keys()) == sorted(sweep.cell_key(c) for c in cells)
        for c in cells:
            assert st.read(sweep.cell_key(c))["value"]["value"] == c["x"] ** 2 + c["y"]
        # resuming from the driver's store computes nothing
        again = sweep.run(fn, cells, store="store", executor=client, progress=False)
    assert again.computed == [] and len(again.loaded) == len(cells)
    assert all(calls(tmp_path / "log", c["x"], c["y"]) == 1 for c in cells)
