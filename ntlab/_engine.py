"""Compute-engine dispatch: ``engine="auto" | "numba" | "cupy"``.

``"auto"`` picks CuPy when it is installed and a CUDA device answers, otherwise Numba, and
:func:`engine_report` says which and why. An explicit ``"cupy"`` that cannot be honoured raises
:class:`~ntlab.exceptions.EngineUnavailableError` with the reason. CuPy is imported only here,
lazily, and only when a GPU engine is considered.
"""

from __future__ import annotations

import functools
from typing import Literal

from ntlab.exceptions import ConfigError, EngineUnavailableError

__all__ = ["Engine", "cupy_available", "engine_report", "resolve_engine"]

Engine = Literal["auto", "numba", "cupy"]
_ENGINES = ("auto", "numba", "cupy")


@functools.cache
def cupy_available() -> tuple[bool, str]:
    """Whether CuPy can run here, with the reason (cached for the process)."""
    try:
        import cupy
    except ImportError:
        return False, "CuPy is not installed (install the extra: pip install 'ntlab[gpu]')"
    try:
        devices = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # CUDARuntimeError and friends, whatever the CuPy version
        return False, f"CuPy is installed but no CUDA device answers ({type(exc).__name__}: {exc})"
    if devices < 1:
        return False, "CuPy is installed but the machine has no CUDA device"
    return True, f"CuPy {cupy.__version__} with {devices} CUDA device(s)"


def resolve_engine(engine: str) -> Literal["numba", "cupy"]:
    """The engine that will run for ``engine``.

    Raises
    ------
    ConfigError
        For an engine name that is not ``"auto"``, ``"numba"`` or ``"cupy"``.
    EngineUnavailableError
        For ``"cupy"`` when CuPy cannot run here (the message says why).
    """
    if engine not in _ENGINES:
        msg = f"engine={engine!r} is not known; use one of {_ENGINES}"
        raise ConfigError(msg)
    if engine == "numba":
        return "numba"
    ok, reason = cupy_available()
    if engine == "cupy" and not ok:
        msg = f"engine='cupy' cannot run: {reason}; use engine='auto' to fall back to Numba"
        raise EngineUnavailableError(msg)
    return "cupy" if ok else "numba"


def engine_report(engine: str = "auto") -> str:
    """One line: which engine ``engine`` resolves to here, and why."""
    chosen = resolve_engine(engine)
    _, reason = cupy_available()
    return f"engine={engine!r} runs on {chosen}: {reason}"
