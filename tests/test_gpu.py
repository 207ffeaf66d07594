"""CuPy twins of the 2-D and grid kernels (ntlab/kernels/gpu_kernels.cu) against the Numba kernels.

Two ways to run the CUDA source:

* host build: the source compiled as C++ by g++ (tests/gpu_host.cpp emulates the launch grid
  with loops), fed the arguments :func:`ntlab.kernels.gpu.launch_plan` builds. This checks the
  kernels' arithmetic and indexing on every machine, bit for bit against Numba (same libm);
* the GPU: through :func:`ntlab.features.batch` / :func:`ntlab.features.grid` with
  ``engine="cupy"``, only where CuPy and a CUDA device are available.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ntlab import _engine
from ntlab import features as F
from ntlab.exceptions import EngineUnavailableError
from ntlab.features import compute
from ntlab.features.registry import indicator
from ntlab.kernels import gpu

PROPERTY = settings(deadline=None, max_examples=30, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
# Bit for bit on the host (same libm); on a GPU CUDA's log/log1p are within 1 ulp.
LOG_TWINS = {"log_returns", "realised_vol"}
GPU_OK, GPU_REASON = _engine.cupy_available()
needs_gpu = pytest.mark.skipif(not GPU_OK, reason=f"needs CuPy and an NVIDIA GPU: {GPU_REASON}")


@pytest.fixture(scope="module")
def host(tmp_path_factory) -> ctypes.CDLL:
    """The CUDA source built for the CPU."""
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip(reason="g++ is not installed: the host build of the CUDA source needs it (make test installs it)")
    here = Path(__file__).parent
    lib = tmp_path_factory.mktemp("gpu_host") / "gpu_host.so"
    source = Path(gpu.__file__).with_name("gpu_kernels.cu")
    cmd = [compiler, "-std=c++11", "-O2", "-ffp-contract=off", "-shared", "-fPIC", f'-DNT_SOURCE="{source}"', str(here / "gpu_host.cpp"), "-o", str(lib)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(lib))


def _c(arg: object) -> object:
    if isinstance(arg, np.ndarray):
        return arg.ctypes.data_as(ctypes.c_void_p)
    if isinstance(arg, np.int64):
        return ctypes.c_long(int(arg))
    if isinstance(arg, np.int32):
        return ctypes.c_int(int(arg))
    return ctypes.c_double(float(arg))


def host_run(lib: ctypes.CDLL, name: str, x: np.ndarray, params: tuple, swept: np.ndarray | None = None) -> np.ndarray:
    kernel, blocks, args, out = gpu.launch_plan(name, x, params, swept=swept)
    getattr(lib, f"launch_{kernel}")(ctypes.c_long(blocks), ctypes.c_long(gpu.THREADS_PER_BLOCK), *map(_c, args))
    return out


def params_for(name: str, window: int) -> tuple:
    spec = indicator(name)
    given_ = {spec.params[0].name: window} if spec.params else {}
    return spec.check(given_)


def numba_2d(name: str, x: np.ndarray, params: tuple) -> np.ndarray:
    return indicator(name).kernel("2d")(np.ascontiguousarray(x), *params)


def numba_grid(name: str, x: np.ndarray, swept: np.ndarray, params: tuple) -> np.ndarray:
    return indicator(name).kernel("grid")(x, swept, *params[1:])


values = st.one_of(
    st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False),
    st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 100.0, 100.0]),  # missing values, zeros, runs of equal values
)


@PROPERTY
@given(
    data=st.lists(values, min_size=0, max_size=60),
    columns=st.integers(1, 3),
    window=st.integers(1, 12),
)
@pytest.mark.parametrize("name", sorted(gpu.TWINS))
def test_host_build_equals_numba_bit_for_bit(host, name, data, columns, window) -> None:
    params = params_for(name, max(window, 2) if name in {"rolling_var", "rolling_std", "rolling_zscore", "realised_vol"} else window)
    base = np.asarray(data, dtype=np.float64)
    x = np.column_stack([np.roll(base, k) * (1 + k) for k in range(columns)]) if base.size else np.empty((0, columns))
    np.testing.assert_array_equal(host_run(host, name, x, params), numba_2d(name, x, params))
    if indicator(name).params:
        swept = np.array([params[0], params[0] + 1, params[0] + 5], dtype=np.int64)
        np.testing.assert_array_equal(host_run(host, name, base, params, swept), numba_grid(name, base, swept, params))


def test_host_build_on_long_series_with_recomputations(host) -> None:
    """3 k events at a level of 1e4 cross the periodic and the accuracy-triggered exact
    recomputations; 130 columns span two thread blocks."""
    rng = np.random.default_rng(7)
    x = 1e4 + np.cumsum(rng.standard_normal((3_000, 130)), axis=0)
    x[1000:1050, 3] = 1e4  # a constant stretch, then a volatility burst leaving the window
    x[2000:2003, 3] += 1e3
    for name in ("rolling_std", "rolling_zscore", "realised_vol", "ema"):
        params = params_for(name, 37)
        np.testing.assert_array_equal(host_run(host, name, x, params), numba_2d(name, x, params))


def test_launch_plan_layouts() -> None:
    x = np.zeros((5, 300))
    kernel, blocks, args, out = gpu.launch_plan("rolling_std", x, (4,))
    assert (kernel, blocks, out.shape) == ("nt_moments", 3, (5, 300))
    assert [int(a) for a in args[1:5]] == [300, 1, 5, 300]  # strides of a C-ordered block, T, N
    assert args[5].tolist() == [4] * 300 and args[8].shape == (4, 300)  # windows, ring
    kernel, blocks, args, out = gpu.launch_plan("realised_vol", np.zeros(5), (3, 252.0), swept=np.array([3, 9]))
    assert (kernel, blocks, out.shape) == ("nt_moments", 1, (5, 2))
    assert [int(a) for a in args[1:5]] == [1, 0, 5, 2]  # one series: every column reads it
    assert float(args[7]) == pytest.approx(252.0**0.5) and args[8].shape == (9, 2)
    assert gpu.launch_plan("log_returns", x, ())[0:2] == ("nt_returns", 3)
    assert "extern \"C\" __global__ void nt_ema" in gpu.source()


def test_dispatch_rules_without_a_gpu(monkeypatch) -> None:
    monkeypatch.setattr(_engine, "cupy_available", lambda: (False, "CuPy is not installed"))
    x = np.ones((10, 2))
    assert not compute._on_gpu("rolling_mean", "auto", [x], want=True)  # falls back to Numba
    with pytest.raises(EngineUnavailableError, match="engine='cupy' cannot run: CuPy is not installed"):
        F.batch("rolling_mean", x, window=3, engine="cupy")
    with pytest.raises(EngineUnavailableError, match="engine='cupy' cannot run"):
        F.grid(x[:, 0], "ema", [2, 3], engine="cupy")
    fake_device_array = type("ndarray", (), {"__module__": "cupy._core.core", "shape": (10, 2)})()
    assert gpu.is_gpu_array(fake_device_array) and not gpu.is_gpu_array(x)
    with pytest.raises(EngineUnavailableError, match=r"inputs are CuPy arrays but engine='numba'; pass NumPy arrays \(a.get\(\)\)"):
        F.batch("rolling_mean", fake_device_array, window=3, engine="numba")


def test_dispatch_rules_with_a_gpu(monkeypatch) -> None:
    monkeypatch.setattr(_engine, "cupy_available", lambda: (True, "CuPy 13 with 1 CUDA device(s)"))
    x = np.ones((10, 2))
    assert compute._on_gpu("rolling_mean", "auto", [x], want=True)  # 2-D work goes to the GPU
    assert not compute._on_gpu("rolling_mean", "auto", [x[:, 0]], want=False)  # 1-D stays on Numba
    assert compute._on_gpu("rolling_mean", "cupy", [x[:, 0]], want=False)
    assert not compute._on_gpu("rsi", "auto", [x], want=True)  # no twin: Numba
    with pytest.raises(EngineUnavailableError, match=r"rsi has no CuPy twin \(twins: returns, .*engine='auto'"):
        compute._on_gpu("rsi", "cupy", [x], want=True)
    assert not compute._on_gpu("rolling_mean", "numba", [x], want=True)


@needs_gpu
@pytest.mark.parametrize("name", sorted(gpu.TWINS))
def test_gpu_equals_numba(name) -> None:  # pragma: no cover - needs a GPU
    import cupy

    rng = np.random.default_rng(3)
    x = 100 + np.cumsum(rng.standard_normal((5_000, 1_000)), axis=0)
    x[rng.random(x.shape) < 0.001] = np.nan
    params = params_for(name, 20)
    kwargs = dict(zip([p.name for p in indicator(name).params], params, strict=True))
    on_gpu = F.batch(name, x, engine="cupy", **kwargs)
    assert isinstance(on_gpu, np.ndarray)
    stays = F.batch(name, cupy.asarray(x), **kwargs)
    assert isinstance(stays, cupy.ndarray)
    reference = numba_2d(name, x, params)
    if name in LOG_TWINS:
        np.testing.assert_allclose(on_gpu, reference, rtol=1e-12, atol=1e-15)
    else:
        np.testing.assert_array_equal(on_gpu, reference)
        np.testing.assert_array_equal(stays.get(), reference)
    if indicator(name).params:
        swept = [5, 20, 60]
        grid = F.grid(x[:, 0], name, swept, engine="cupy", **dict(list(kwargs.items())[1:]))
        ref = numba_grid(name, x[:, 0], np.array(swept), params)
        np.testing.assert_allclose(grid.to_numpy(), ref, rtol=1e-12 if name in LOG_TWINS else 0, atol=0)
