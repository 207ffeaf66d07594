"""CuPy twins of the 2-D batch and grid kernels, for thousands of columns on an NVIDIA GPU.

The CUDA source (``gpu_kernels.cu``, next to this file) runs one thread per output column with
the scalar rules of the Numba kernels, so both engines give the same numbers (bit for bit but
for log returns and realised volatility, which agree to ~1e-15 relative: CUDA's ``log`` is
not correctly rounded). :func:`ntlab.features.batch` and :func:`ntlab.features.grid` call
:func:`run` when the engine resolves to ``"cupy"`` (see :mod:`ntlab._engine`).

Indicators with a twin: :data:`TWINS`. Others run on Numba under ``engine="auto"``; an explicit
``engine="cupy"`` for them raises :class:`~ntlab.exceptions.EngineUnavailableError`.

CuPy is imported only inside :func:`run`, when a GPU is actually used.
"""

from __future__ import annotations

import functools
import math
from importlib import resources
from typing import Any

import numpy as np

__all__ = ["TWINS", "is_gpu_array", "launch_plan", "run", "source"]

# indicator -> (CUDA kernel, its integer argument: a moment kind or the log-returns flag)
TWINS: dict[str, tuple[str, int]] = {
    "returns": ("nt_returns", 0),
    "log_returns": ("nt_returns", 1),
    "rolling_sum": ("nt_moments", 0),
    "rolling_mean": ("nt_moments", 1),
    "rolling_var": ("nt_moments", 2),
    "rolling_std": ("nt_moments", 3),
    "rolling_zscore": ("nt_moments", 4),
    "realised_vol": ("nt_moments", 5),
    "ema": ("nt_ema", 0),
}
# No fused multiply-adds, so that products round as they do in the Numba kernels.
COMPILE_OPTIONS = ("--fmad=false", "-std=c++11")
THREADS_PER_BLOCK = 128


def source() -> str:
    """The CUDA C++ source of the twins."""
    return resources.files("ntlab.kernels").joinpath("gpu_kernels.cu").read_text()


def is_gpu_array(a: Any) -> bool:
    """Whether ``a`` is a CuPy array (without importing CuPy)."""
    return type(a).__module__.split(".")[0] == "cupy"


@functools.cache
def _module() -> Any:  # pragma: no cover - needs a GPU
    import cupy

    return cupy.RawModule(code=source(), options=COMPILE_OPTIONS)


def launch_plan(name: str, x: Any, params: tuple, *, swept: np.ndarray | None = None, xp: Any = np) -> tuple[str, int, tuple, Any]:
    """What :func:`run` launches: ``(kernel name, blocks, kernel arguments, output array)``,
    with arrays made by ``xp`` (CuPy on the GPU; NumPy in the tests' host build of the source).

    ``x`` is ``float64[T, N]`` (one thread per column) or, with ``swept`` (the grid's values of
    the first parameter), ``float64[T]`` (one thread per value). ``params`` are the checked
    parameter values (the first is ignored for a grid). The output is ``float64[T, N]``.
    """
    kernel_name, flag = TWINS[name]
    xd = xp.ascontiguousarray(xp.asarray(x, dtype=xp.float64))
    if swept is None:
        t, n = xd.shape
        xs_t, xs_j = n, 1
        values = np.full(n, params[0] if params else 0, dtype=np.int64)
    else:
        t, n = xd.shape[0], swept.size
        xs_t, xs_j = 1, 0
        values = swept.astype(np.int64)
    out = xp.empty((t, n), dtype=xp.float64)
    blocks = (max(n, 1) + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
    head = (xd, np.int64(xs_t), np.int64(xs_j), np.int64(t), np.int64(n))
    if kernel_name == "nt_returns":
        args = (*head, np.int32(flag), out)
    elif kernel_name == "nt_ema":
        args = (*head, xp.asarray(values), out)
    else:
        scale = math.sqrt(params[1]) if name == "realised_vol" else 1.0
        ring = xp.empty((int(values.max()) if n else 1, n), dtype=xp.float64)
        args = (*head, xp.asarray(values), np.int32(flag), np.float64(scale), ring, out)
    return kernel_name, blocks, args, out


def run(name: str, x: Any, params: tuple, *, swept: np.ndarray | None = None) -> Any:  # pragma: no cover - needs a GPU
    """Indicator ``name`` on the GPU (see :func:`launch_plan`); returns a CuPy ``float64[T, N]``."""
    import cupy

    kernel_name, blocks, args, out = launch_plan(name, x, params, swept=swept, xp=cupy)
    _module().get_function(kernel_name)((blocks,), (THREADS_PER_BLOCK,), args)
    return out
