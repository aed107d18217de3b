"""Memory-aware chunking without a GPU: under ``backend.memory_limit`` the Hessian products halve their data
batches, spectra splits its eigenvalue batches and TC takes more node passes, with the same numbers."""
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from workbench import backend, spectra
from workbench import landscape as L
from workbench import topology as tp
from workbench.landscape.hessian import HessianOperator

spectra_analyze = sys.modules["workbench.spectra.analyze"]  # the module (the package exports the function)


# --------------------------------------------------------------------------------------------
# the helper
# --------------------------------------------------------------------------------------------
def test_run_halving_records_the_sizes_and_names_the_fix():
    seen, record = [], {}

    def work(start, stop):
        backend.check_allocation(10 * (stop - start), "a chunk of rows")
        return list(range(start, stop))

    with backend.memory_limit(25):  # 2 rows fit (20 bytes), 3 do not
        final = backend.run_halving(11, 8, work, what="rows", fix="pass fewer rows", record=record,
                                    on_done=lambda a, b, v: seen.extend(v))
    assert final == 2 and seen == list(range(11))
    assert record == {"chunks": 6, "halvings": 2, "chunk_sizes": [8, 4, 2]}
    fits_none = r"one of the rows does not fit in memory \(.*a chunk of rows needs 10 bytes.*\): pass fewer"
    with backend.memory_limit(5), pytest.raises(MemoryError, match=fits_none):
        backend.run_halving(11, 8, work, what="rows", fix="pass fewer rows")
    assert backend.memory_budget("cpu", share=0.5, cap=None) > 0
    with backend.memory_limit(1000):
        assert backend.memory_budget("cpu") == 500.0 and backend.memory_budget("cpu", cap=100) == 100.0


# --------------------------------------------------------------------------------------------
# Hessian-vector products
# --------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _one_thread():
    """The models here are tiny: intra-op threads only add contention on a shared machine."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def _problem(n=32):
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    X = torch.randn(n, 4, generator=g, dtype=torch.float64)
    return model, (X, torch.randint(0, 3, (n,), generator=g))


def _limit(model, data, examples, vectors, params=None):
    """A memory limit that holds a batch of ``examples`` times ``vectors`` products and no more."""
    return int(HessianOperator(model, data, params=params, batch_size=len(data[0]), device="cpu")
               .batch_bytes(examples, vectors)) + 1


def test_the_batch_estimate_grows_with_examples_and_vectors():
    model, data = _problem()
    op = HessianOperator(model, data, batch_size=32, device="cpu")
    fixed, per = op._measure_graph()
    # a Linear-Tanh-Linear batch saves at least the input of the second layer, the Tanh output and the
    # logits for the double backward: (6 + 3) float64 numbers per example
    assert per >= 9 * 8 and fixed >= 0
    assert op.batch_bytes(16, 1) == pytest.approx(fixed + 2 * 16 * per + 2 * op.dim * 8)
    assert op.batch_bytes(32, 1) > op.batch_bytes(16, 2) > op.batch_bytes(16, 1)


def test_hessian_products_halve_the_batch_with_the_same_numbers():
    model, data = _problem()
    ref_op = HessianOperator(model, data, batch_size=32, device="cpu")
    dense = ref_op.dense()  # one batch, no limit
    V = torch.randn(3, ref_op.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    op = HessianOperator(model, data, batch_size=32, device="cpu")
    with backend.memory_limit(_limit(model, data, 8, 3)):
        got = op.matmat(V)
    assert op.memory == {"chunks": 4, "halvings": 2, "chunk_sizes": [32, 16, 8]} and op.batch_size == 8
    assert not op.cache_graph
    np.testing.assert_allclose(got.numpy(), (V @ dense).numpy(), rtol=1e-12, atol=1e-14)


def test_eigenvalues_trace_and_density_under_a_memory_limit():
    model, data = _problem()
    kw = dict(batch_size=32, device="cpu", progress=False)
    ev0 = L.eigenvalues(model, data, k=2, max_iter=51, tol=1e-10, **kw)
    tr0 = L.trace(model, data, n_samples=6, block=3, **kw)
    de0 = L.density(model, data, n_runs=2, steps=12, **kw)
    with backend.memory_limit(_limit(model, data, 8, 2)):  # Lanczos: 1 vector; the residuals: 2 at once
        ev = L.eigenvalues(model, data, k=2, max_iter=51, tol=1e-10, **kw)
    with backend.memory_limit(_limit(model, data, 8, 3)):  # 3 vectors per pass
        tr = L.trace(model, data, n_samples=6, block=3, **kw)
    with backend.memory_limit(_limit(model, data, 8, 1)):
        de = L.density(model, data, n_runs=2, steps=12, **kw)
    for res, ref in ((ev, ev0), (tr, tr0), (de, de0)):
        assert ref.settings["batch_size"] == 32 and ref.settings["batch_halvings"] == 0
        assert res.settings["batch_size"] == 8 and res.settings["batch_halvings"] == 2  # 32 -> 16 -> 8
    dense = HessianOperator(model, data, batch_size=32, device="cpu").dense().numpy()
    np.testing.assert_allclose(ev0.eigenvalues, np.linalg.eigvalsh(dense)[::-1][:2], rtol=1e-10)
    np.testing.assert_allclose(ev.eigenvalues, ev0.eigenvalues, rtol=1e-12)
    assert ev.n_iter == ev0.n_iter
    np.testing.assert_allclose(np.abs(ev.eigenvectors @ ev0.eigenvectors.T), np.eye(2), atol=1e-8)
    np.testing.assert_allclose(tr.samples, tr0.samples, rtol=1e-12)
    np.testing.assert_allclose(de.nodes, de0.nodes, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(de.weights, de0.weights, rtol=1e-8, atol=1e-12)


def test_layerwise_halves_and_keeps_the_smaller_batch():
    model, data = _problem()
    kw = dict(k=1, n_samples=4, max_iter=20, batch_size=32, device="cpu", progress=False)
    ref = L.layerwise(model, data, **kw)
    # the first block (layer 0, the larger graph) fits 8 examples times 4 vectors, not 16; the second
    # block would fit 32 examples for Lanczos and halve twice again for the trace were it to start over
    with backend.memory_limit(_limit(model, data, 8, 4, params=["0.weight", "0.bias"])):
        got = L.layerwise(model, data, **kw)
    assert ref.settings["batch_halvings"] == 0 and got.settings["batch_halvings"] == 2
    assert got.settings["batch_size"] == 8
    pd.testing.assert_series_equal(got.frame["n_iter"], ref.frame["n_iter"])
    for col in ("top_eigenvalue", "trace"):
        np.testing.assert_allclose(got.frame[col], ref.frame[col], rtol=1e-12)


def test_hessian_refuses_a_limit_below_one_example():
    model, data = _problem()
    with backend.memory_limit(_limit(model, data, 1, 1) - 2):
        with pytest.raises(MemoryError, match=r"one of the examples in a batch of Hessian-vector products does "
                                              r"not fit.*1 examples times 1.*raise the memory limit"):
            L.eigenvalues(model, data, batch_size=32, device="cpu", progress=False)
    with pytest.raises(ValueError, match="batch_size=0"):
        HessianOperator(model, data, batch_size=0, device="cpu")


# --------------------------------------------------------------------------------------------
# spectra
# --------------------------------------------------------------------------------------------
def _net():
    torch.manual_seed(1)
    return nn.Sequential(*[nn.Linear(24, 24) for _ in range(8)], nn.Conv2d(3, 6, 3), nn.Linear(24, 40))


def test_spectra_splits_a_batch_that_does_not_fit(monkeypatch):
    calls = []
    real = spectra_analyze._batch_eigenvalues

    def spy(entries, batch, *args, **kw):
        calls.append(len(batch))
        return real(entries, batch, *args, **kw)

    kw = dict(device="cpu", bootstrap=0, progress=False)
    monkeypatch.setattr(spectra_analyze, "_batch_eigenvalues", spy)
    ref = spectra.analyze(_net(), **kw)
    assert sorted(calls) == [1, 1, 8] and ref.settings["eigen_halvings"] == 0
    entries = spectra_analyze.open_matrices(_net()).entries
    square = [i for i, e in enumerate(entries) if e.shape == (24, 24)]
    two = spectra_analyze.eigen_bytes(entries, square[:2], torch.float64, "gram")
    assert two == 2 * (24 * 24 + 2 * 24 * 24) * 8
    calls.clear()
    with backend.memory_limit(two):  # 8 and 4 square matrices do not fit, 2 do
        got = spectra.analyze(_net(), **kw)
    assert sorted(calls) == [1, 1, 2, 2, 2, 2] and got.settings["eigen_halvings"] == 2
    # on a CPU the batched kernels give each matrix the same bits as alone
    pd.testing.assert_frame_equal(got.table, ref.table, check_exact=True)
    np.testing.assert_array_equal(got.evals, ref.evals)
    with backend.memory_limit(two // 2 - 1), pytest.raises(
            MemoryError, match=r"one of the 24x24 weight matrices \(from 0.weight\) does not fit.*raise the memory "
                               r"limit, pass dtype=torch.float32"):
        spectra.analyze(_net(), **kw)


# --------------------------------------------------------------------------------------------
# topological concentration
# --------------------------------------------------------------------------------------------
def test_tc_passes_follow_the_memory_available():
    split = tp.split_edges(tp.builtin("powerlaw_cluster", n=800, m=3, seed=1), seed=0)
    kw = dict(k=3, device="cpu", max_block_nnz=2e4)
    one = tp.concentration(split, **kw)
    assert one.settings["passes"] == 1 and one.settings["max_memory"] <= 4e9
    with backend.memory_limit(int(2e6)):  # max_memory defaults to half of it
        few = tp.concentration(split, **kw)
    assert few.settings["max_memory"] == 1e6 and few.settings["passes"] > 2  # at least two halvings
    same = tp.concentration(split, max_memory=1e6, **kw)  # what the default became, given by hand
    assert same.settings["passes"] == few.settings["passes"]
    for s in ("train", "val", "test"):  # a node's edges are summed in the same order in any pass
        np.testing.assert_array_equal(getattr(few, s), getattr(same, s))
        np.testing.assert_array_equal(getattr(few, s), getattr(one, s))
    with backend.memory_limit(200), pytest.raises(MemoryError, match=r"max_memory=100 bytes cannot hold the "
                                                                     r"3-hop rows.*half the memory available"):
        tp.concentration(split, **kw)
