"""Engine dispatch: auto falls back to Numba with a reason; an explicit cupy says why it cannot run."""

from __future__ import annotations

import sys
import types

import pytest

from ntlab import _engine
from ntlab.exceptions import ConfigError, EngineUnavailableError


@pytest.fixture(autouse=True)
def _fresh_cache():
    _engine.cupy_available.cache_clear()
    yield
    _engine.cupy_available.cache_clear()


def _fake_cupy(monkeypatch, *, count=None, error=None) -> None:
    def get_count() -> int:
        if error is not None:
            raise error
        return count

    runtime = types.SimpleNamespace(getDeviceCount=get_count)
    fake = types.SimpleNamespace(__version__="13.9", cuda=types.SimpleNamespace(runtime=runtime))
    monkeypatch.setitem(sys.modules, "cupy", fake)


def test_without_cupy_auto_is_numba_and_cupy_raises(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    assert _engine.resolve_engine("auto") == "numba"
    assert _engine.resolve_engine("numba") == "numba"
    with pytest.raises(EngineUnavailableError, match=r"engine='cupy' cannot run: CuPy is not installed .*ntlab\[gpu\].*engine='auto'"):
        _engine.resolve_engine("cupy")
    assert "runs on numba: CuPy is not installed" in _engine.engine_report()


def test_cupy_without_a_device(monkeypatch) -> None:
    _fake_cupy(monkeypatch, error=RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected"))
    assert _engine.resolve_engine("auto") == "numba"
    with pytest.raises(EngineUnavailableError, match="no CUDA device answers .*cudaErrorNoDevice"):
        _engine.resolve_engine("cupy")
    _engine.cupy_available.cache_clear()
    _fake_cupy(monkeypatch, count=0)
    with pytest.raises(EngineUnavailableError, match="has no CUDA device"):
        _engine.resolve_engine("cupy")


def test_cupy_with_a_device_is_chosen_by_auto(monkeypatch) -> None:
    _fake_cupy(monkeypatch, count=2)
    assert _engine.resolve_engine("auto") == "cupy"
    assert _engine.resolve_engine("cupy") == "cupy"
    assert _engine.resolve_engine("numba") == "numba"
    assert _engine.engine_report("auto") == "engine='auto' runs on cupy: CuPy 13.9 with 2 CUDA device(s)"


def test_unknown_engine() -> None:
    with pytest.raises(ConfigError, match=r"engine='gpu' is not known; use one of \('auto', 'numba', 'cupy'\)"):
        _engine.resolve_engine("gpu")
