"""Volume indicators as Numba kernels: cumulative VWAP, rolling VWAP and OBV.

Each indicator follows the forms and conventions of :mod:`ntlab.kernels.indicators`
(``NAME_nb``, ``NAME_2d_nb``, ``NAME_grid_nb`` where there is a parameter, each with an optional
``out=``, and ``NAME_state_nb`` / ``NAME_update_nb``), with two inputs: ``price, volume``
(VWAP) or ``close, volume`` (OBV), arrays of the same shape in every form and
``NAME_update_nb(state, price, volume)``. Cumulative VWAP and OBV have no parameter and no grid
form. The batch kernels loop over the same scalar step function as the update kernels, so
streaming a series event by event gives the batch result bit for bit.

Missing values
--------------
An event is *missing* when either input is non-finite (NaN or +/-inf). Recursive kernels
(cumulative VWAP, OBV): a missing event gives NaN for that event and leaves the state unchanged.
Rolling VWAP: a window that contains a missing event gives NaN, and the missing event leaves
the window ``window`` events later. Parameters are not validated here (the Python API does
it): windows must be integers >= 1, volumes >= 0.

Numerical stability
-------------------
Running sums are compensated (Knuth's TwoSum): their error does not grow with the length of
the series. Volumes far below those of the recent past (1e-200 after 1e6) are beyond any
running sum's resolution: such a rolling VWAP is imprecise or NaN.

Examples
--------
>>> import numpy as np
>>> price = np.array([10.0, 11.0, 12.0, 11.0])
>>> volume = np.array([1.0, 1.0, 2.0, 4.0])
>>> vwap_nb(price, volume).tolist()
[10.0, 10.5, 11.25, 11.125]
>>> obv_nb(price, volume).tolist()
[0.0, 1.0, 3.0, -1.0]
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ntlab.kernels._common import _KW, _PAR, _add_nb, _store_nb

__all__ = [
    "obv_2d_nb",
    "obv_nb",
    "obv_state_nb",
    "obv_update_nb",
    "rolling_vwap_2d_nb",
    "rolling_vwap_grid_nb",
    "rolling_vwap_nb",
    "rolling_vwap_state_nb",
    "rolling_vwap_update_nb",
    "vwap_2d_nb",
    "vwap_nb",
    "vwap_state_nb",
    "vwap_update_nb",
]


# ---------------------------------------------------------------------------------------------
# Cumulative VWAP. State: sum(price * volume) (s, c), sum(volume) (s, c).


@njit(**_KW)
def vwap_state_nb() -> np.ndarray:
    """Return a fresh streaming state for :func:`vwap_nb` (``float64[4]``)."""
    return np.zeros(4, dtype=np.float64)


@njit(**_KW)
def _vwap_step_nb(st: tuple, price: float, volume: float) -> tuple:
    spv, cpv, sv, cv = st
    if not (math.isfinite(price) and math.isfinite(volume)):
        return st, np.nan
    spv, cpv = _add_nb(spv, cpv, price * volume)
    sv, cv = _add_nb(sv, cv, volume)
    den = sv + cv
    return (spv, cpv, sv, cv), (spv + cpv) / den if den != 0.0 else np.nan


@njit(**_KW)
def vwap_update_nb(state: np.ndarray, price: float, volume: float) -> float:
    """Feed one event to a :func:`vwap_state_nb` state; return the VWAP so far."""
    st, out = _vwap_step_nb((state[0], state[1], state[2], state[3]), price, volume)
    _store_nb(state, 0, st)
    return out


@njit(**_KW)
def _vwap_run_nb(price: np.ndarray, volume: np.ndarray, out: np.ndarray) -> None:
    st = (0.0, 0.0, 0.0, 0.0)
    for i in range(price.shape[0]):
        st, v = _vwap_step_nb(st, price[i], volume[i])
        out[i] = v


@njit(**_KW)
def vwap_nb(price: np.ndarray, volume: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Volume-weighted average price, cumulative from the start of the series.

    Parameters
    ----------
    price, volume : float64[T]
        Prices (trade prices, or e.g. the typical price ``(high + low + close) / 3`` of bars) and
        volumes (>= 0).

    Returns
    -------
    float64[T]

    Notes
    -----
    ``VWAP[t] = sum_{i<=t} price[i] volume[i] / sum_{i<=t} volume[i]`` (compensated sums). There is
    no session reset inside the kernel: for a session (e.g. daily) VWAP the caller runs it per
    session, or starts a fresh state at each session open. NaN while the cumulative volume is 0.
    An event with a missing price or volume gives NaN and is skipped. Reference: NumPy ``cumsum``
    in extended precision.
    """
    if out is None:
        out = np.empty(price.shape[0], dtype=np.float64)
    _vwap_run_nb(price, volume, out)
    return out


@njit(**_PAR)
def vwap_2d_nb(price: np.ndarray, volume: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`vwap_nb` of each column of ``price``, ``volume`` (``float64[T, N]`` each)."""
    if out is None:
        out = np.empty(price.shape, dtype=np.float64)
    for j in prange(price.shape[1]):
        _vwap_run_nb(price[:, j], volume[:, j], out[:, j])
    return out


# ---------------------------------------------------------------------------------------------
# Rolling VWAP. State: window | head, filled, n_missing, n_nonzero_volume, sum(pv) (s, c),
# sum(v) (s, c) | ring buffers of price * volume and of volume (NaN marks a missing event).

_RV_BUF = 9


@njit(**_KW)
def rolling_vwap_state_nb(window: int) -> np.ndarray:
    """Return a fresh streaming state for :func:`rolling_vwap_nb` (``float64[9 + 2 window]``)."""
    state = np.zeros(_RV_BUF + 2 * window, dtype=np.float64)
    state[0] = window
    return state


@njit(**_KW)
def _rv_step_nb(n: float, st: tuple, old_pv: float, old_v: float, price: float, volume: float) -> tuple:
    head, filled, bad, nz, spv, cpv, sv, cv = st
    if filled == n:
        if math.isnan(old_v):
            bad -= 1.0
        else:
            spv, cpv = _add_nb(spv, cpv, -old_pv)
            sv, cv = _add_nb(sv, cv, -old_v)
            nz -= 1.0 if old_v != 0.0 else 0.0
    else:
        filled += 1.0
    if math.isfinite(price) and math.isfinite(volume):
        pv = price * volume
        spv, cpv = _add_nb(spv, cpv, pv)
        sv, cv = _add_nb(sv, cv, volume)
        nz += 1.0 if volume != 0.0 else 0.0
    else:
        pv = volume = np.nan
        bad += 1.0
    head = head + 1.0 if head + 1.0 < n else 0.0
    den = sv + cv
    out = (spv + cpv) / den if filled == n and bad == 0.0 and nz > 0.0 and den != 0.0 else np.nan
    return (head, filled, bad, nz, spv, cpv, sv, cv), pv, volume, out


@njit(**_KW)
def rolling_vwap_update_nb(state: np.ndarray, price: float, volume: float) -> float:
    """Feed one event to a :func:`rolling_vwap_state_nb` state; return the window's VWAP."""
    j = _RV_BUF + int(state[1])
    k = j + int(state[0])
    st = (state[1], state[2], state[3], state[4], state[5], state[6], state[7], state[8])
    st, state[j], state[k], out = _rv_step_nb(state[0], st, state[j], state[k], price, volume)
    _store_nb(state, 1, st)
    return out


@njit(**_KW)
def _rv_run_nb(price: np.ndarray, volume: np.ndarray, window: int, out: np.ndarray) -> None:
    state = rolling_vwap_state_nb(window)
    n = state[0]
    st = (state[1], state[2], state[3], state[4], state[5], state[6], state[7], state[8])
    for i in range(price.shape[0]):
        j = _RV_BUF + int(st[0])
        k = j + window
        st, state[j], state[k], v = _rv_step_nb(n, st, state[j], state[k], price[i], volume[i])
        out[i] = v


@njit(**_KW)
def rolling_vwap_nb(price: np.ndarray, volume: np.ndarray, window: int,
                    out: np.ndarray | None = None) -> np.ndarray:
    """Volume-weighted average price over the last ``window`` events.

    Parameters
    ----------
    price, volume : float64[T]
        Prices and volumes (>= 0), as for :func:`vwap_nb`.
    window : int
        The window in events, >= 1.

    Returns
    -------
    float64[T]

    Notes
    -----
    ``sum(price * volume) / sum(volume)`` over the window (compensated running sums). Warm-up:
    NaN for the first ``window - 1`` events; a window containing a missing price or volume gives
    NaN, and so does a window whose volumes are all 0. Windows run across session boundaries:
    the caller resets per session if wanted. Reference: NumPy ``sliding_window_view`` sums of
    ``price * volume`` and of ``volume``; pandas ``rolling(window).sum()``.
    """
    if out is None:
        out = np.empty(price.shape[0], dtype=np.float64)
    _rv_run_nb(price, volume, window, out)
    return out


@njit(**_PAR)
def rolling_vwap_2d_nb(price: np.ndarray, volume: np.ndarray, window: int,
                       out: np.ndarray | None = None) -> np.ndarray:
    """:func:`rolling_vwap_nb` of each column of ``price``, ``volume`` (``float64[T, N]`` each)."""
    if out is None:
        out = np.empty(price.shape, dtype=np.float64)
    for j in prange(price.shape[1]):
        _rv_run_nb(price[:, j], volume[:, j], window, out[:, j])
    return out


@njit(**_PAR)
def rolling_vwap_grid_nb(price: np.ndarray, volume: np.ndarray, windows: np.ndarray,
                         out: np.ndarray | None = None) -> np.ndarray:
    """:func:`rolling_vwap_nb` for each window in ``windows`` (``int64[P]``): ``float64[T, P]``."""
    if out is None:
        out = np.empty((price.shape[0], windows.shape[0]), dtype=np.float64)
    for p in prange(windows.shape[0]):
        _rv_run_nb(price, volume, windows[p], out[:, p])
    return out


# ---------------------------------------------------------------------------------------------
# OBV. State: seen (0/1), prev close, OBV (s, c).


@njit(**_KW)
def obv_state_nb() -> np.ndarray:
    """Return a fresh streaming state for :func:`obv_nb` (``float64[4]``)."""
    return np.zeros(4, dtype=np.float64)


@njit(**_KW)
def _obv_step_nb(st: tuple, close: float, volume: float) -> tuple:
    seen, prev, s, c = st
    if not (math.isfinite(close) and math.isfinite(volume)):
        return st, np.nan
    if seen != 0.0:
        if close > prev:
            s, c = _add_nb(s, c, volume)
        elif close < prev:
            s, c = _add_nb(s, c, -volume)
    return (1.0, close, s, c), s + c


@njit(**_KW)
def obv_update_nb(state: np.ndarray, close: float, volume: float) -> float:
    """Feed one event to an :func:`obv_state_nb` state; return the OBV so far."""
    st, out = _obv_step_nb((state[0], state[1], state[2], state[3]), close, volume)
    _store_nb(state, 0, st)
    return out


@njit(**_KW)
def _obv_run_nb(close: np.ndarray, volume: np.ndarray, out: np.ndarray) -> None:
    st = (0.0, 0.0, 0.0, 0.0)
    for i in range(close.shape[0]):
        st, v = _obv_step_nb(st, close[i], volume[i])
        out[i] = v


@njit(**_KW)
def obv_nb(close: np.ndarray, volume: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """On-Balance Volume, Joseph Granville (1963).

    Parameters
    ----------
    close, volume : float64[T]
        Closes and volumes.

    Returns
    -------
    float64[T]

    Notes
    -----
    ``OBV = 0`` at the first valid event, then ``OBV += volume`` on an up close,
    ``OBV -= volume`` on a down close, unchanged on an equal close (compensated sum). An event
    with a missing close or volume gives NaN and is skipped (the next comparison uses the last
    valid close). Reference: NumPy ``cumsum(sign(diff(close)) * volume)`` in extended precision.
    """
    if out is None:
        out = np.empty(close.shape[0], dtype=np.float64)
    _obv_run_nb(close, volume, out)
    return out


@njit(**_PAR)
def obv_2d_nb(close: np.ndarray, volume: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`obv_nb` of each column of ``close``, ``volume`` (``float64[T, N]`` each)."""
    if out is None:
        out = np.empty(close.shape, dtype=np.float64)
    for j in prange(close.shape[1]):
        _obv_run_nb(close[:, j], volume[:, j], out[:, j])
    return out
