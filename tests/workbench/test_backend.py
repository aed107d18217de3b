import numpy as np
import pytest
import torch

from workbench import backend


def test_auto_resolves_to_available_device(monkeypatch):
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    dev = backend.resolve_device("auto")
    assert dev.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert backend.resolve_device(None) == dev


def test_env_override(monkeypatch):
    monkeypatch.setenv(backend.ENV_VAR, "cpu")
    assert backend.resolve_device("auto") == torch.device("cpu")
    # an explicit device wins over the environment
    assert backend.resolve_device(torch.device("cpu")).type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_cuda_without_gpu_is_clear_error():
    with pytest.raises(backend.DeviceError, match="no CUDA GPU"):
        backend.resolve_device("cuda")


def test_bad_device_name():
    with pytest.raises(backend.DeviceError, match="not a device"):
        backend.resolve_device("tpu-please")


def test_array_module_cpu_is_numpy():
    assert backend.array_module("cpu") is np
    assert isinstance(backend.to_numpy(torch.ones(3)), np.ndarray)


@pytest.mark.gpu
def test_array_module_cuda():
    xp = backend.array_module("cuda")
    assert xp.__name__ in ("cupy", "numpy")
