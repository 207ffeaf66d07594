"""Numba kernels for the rolling correlation and beta of two series, batch and streaming.

``rolling_corr`` and ``rolling_beta`` come in the forms of :mod:`ntlab.kernels.rolling`
(``NAME_nb``, ``NAME_2d_nb``, ``NAME_grid_nb``, each with an optional ``out=``, and
``NAME_state_nb`` / ``NAME_update_nb``), but take two inputs ``x`` and ``y`` of the same shape in
every form, and ``NAME_update_nb(state, x, y)``. All forms run one loop over the same state, so
streaming equals batch bit for bit (a batch costs about 23 ns per event).

Conventions
-----------
* Window: as in :mod:`ntlab.kernels.rolling` (NaN until the window is complete); sample
  statistics with ``ddof=1``, NaN for ``window=1``.
* Missing values: an event is missing when ``x`` or ``y`` is NaN or +-inf; a window that
  contains one gives NaN, and the missing event leaves the window ``window`` events later.
* Constant windows are detected exactly (by the run of equal consecutive values): the
  correlation is NaN, and beta is NaN when ``y`` is constant and ``0.0`` when only ``x`` is.
* ``window >= 1`` is not checked here (the Python API validates it).

Numerical method: compensated sums of values shifted by the window means, with periodic and
adaptive exact recomputation, as described in :mod:`ntlab.kernels.rolling`.

References (in the tests): exact rational arithmetic per window, pandas
``rolling(window).corr/cov`` and two-pass NumPy windows.

Examples
--------
>>> import numpy as np
>>> x = np.array([1.0, 2.0, 4.0, 3.0, 5.0])
>>> y = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
>>> rolling_corr_nb(x, y, 3).round(4).tolist()
[nan, nan, 0.982, 0.5, 0.5]
>>> rolling_beta_nb(x, y, 3)
array([nan, nan, 1.5, 0.5, 0.5])
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ntlab.kernels._common import _KW, _PAR, RECOMPUTE_RATIO, _nsum_nb, _period_nb

__all__ = [
    "rolling_beta_2d_nb",
    "rolling_beta_grid_nb",
    "rolling_beta_nb",
    "rolling_beta_state_nb",
    "rolling_beta_update_nb",
    "rolling_corr_2d_nb",
    "rolling_corr_grid_nb",
    "rolling_corr_nb",
    "rolling_corr_state_nb",
    "rolling_corr_update_nb",
]

# Kinds of the bivariate kernels.
K_CORR = 0
K_BETA = 1

# Every state is a float64 array: parameters, two scratch slots (the input and output of a
# single update), the scalars of the update rule in the order of its tuple (counters are exact
# float64 integers), then ring buffers.

# Correlation and beta; ring buffers of x at B_HEAD and of y at B_HEAD + window.
B_WINDOW = 0
B_INX = 1
B_INY = 2
B_OUT = 3
B_COUNT = 4
B_POS = 5
B_UNTIL = 6
B_NBAD = 7
B_RUNX = 8
B_LASTX = 9
B_RUNY = 10
B_LASTY = 11
B_SHX = 12
B_SHY = 13
B_SUMS = 14  # 12 slots: compensated sums of dx, dy, dx*dx, dy*dy, dx*dy, then errors of xx, yy
B_HEAD = 26


# Each family has one loop, `_*_run_nb(state, x, ..., out)`: it loads the scalars of the state
# into a tuple, feeds the events in order and stores the tuple back. The batch kernels run it
# over a whole column, the update kernels over one event held in the state's scratch slots, so
# streaming equals batch by construction. The rules inside the loop are functions of scalars
# (a function that takes an array and calls another one with it costs two atomic reference
# counts per event, a 3x slowdown here); only the loop touches the ring buffers.

# ---------------------------------------------------------------------------------------------
# Correlation and beta
#   st = (count, pos, until, nbad, runx, lastx, runy, lasty, shx, shy, sums)
#   sums = (sx, sxc, sy, syc, sxx, sxxc, syy, syyc, sxy, sxyc, exx, eyy): compensated sums of
#   dx = x - shx, dy = y - shy, their squares and product; exx, eyy: the squares added and
#   removed since the last exact recomputation.

ZERO_SUMS = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@njit(**_KW)
def _bivar_state_nb(window: int) -> np.ndarray:
    state = np.zeros(B_HEAD + 2 * window, dtype=np.float64)
    state[B_WINDOW] = window
    state[B_UNTIL] = _period_nb(window)
    state[B_LASTX] = np.nan
    state[B_LASTY] = np.nan
    state[B_SHX] = np.nan
    state[B_SHY] = np.nan
    return state


@njit(**_KW)
def _bivar_acc_nb(sums: tuple, dx: float, dy: float, sign: float) -> tuple:
    """Add (``sign=1``) or remove (``sign=-1``) the shifted pair ``(dx, dy)``."""
    sx, sxc, sy, syc, sxx, sxxc, syy, syyc, sxy, sxyc, exx, eyy = sums
    sx, sxc = _nsum_nb(sx, sxc, sign * dx)
    sy, syc = _nsum_nb(sy, syc, sign * dy)
    sxx, sxxc = _nsum_nb(sxx, sxxc, sign * (dx * dx))
    syy, syyc = _nsum_nb(syy, syyc, sign * (dy * dy))
    sxy, sxyc = _nsum_nb(sxy, sxyc, sign * (dx * dy))
    return sx, sxc, sy, syc, sxx, sxxc, syy, syyc, sxy, sxyc, exx + dx * dx, eyy + dy * dy


@njit(**_KW)
def _bivar_push_nb(st: tuple, ox: float, oy: float, x: float, y: float, w: int) -> tuple:
    """Move the window on: ``(ox, oy)`` leaves (once the window is full), ``(x, y)`` enters."""
    count, pos, until, nbad, runx, lastx, runy, lasty, shx, shy, sums = st
    if count >= w:
        if np.isfinite(ox) and np.isfinite(oy):
            sums = _bivar_acc_nb(sums, ox - shx, oy - shy, -1.0)
        else:
            nbad -= 1.0
    if np.isfinite(x) and np.isfinite(y):
        if np.isnan(shx):  # no pair in the window: the sums are zero
            shx, shy = x, y
        sums = _bivar_acc_nb(sums, x - shx, y - shy, 1.0)
        runx = runx + 1.0 if runx > 0.0 and x == lastx else 1.0
        runy = runy + 1.0 if runy > 0.0 and y == lasty else 1.0
    else:
        nbad += 1.0
        runx, runy = 0.0, 0.0
    pos = pos + 1.0 if pos + 1.0 < w else 0.0
    return (count + 1.0, pos, until - 1.0, nbad, runx, x, runy, y, shx, shy, sums)


@njit(**_KW)
def _bivar_centred_nb(sums: tuple, w: int) -> tuple[float, float, float]:
    """Centred ``(sxx, syy, sxy)`` of the window from the shifted sums."""
    sx = sums[0] + sums[1]
    sy = sums[2] + sums[3]
    cxx = (sums[4] + sums[5]) - sx * sx / w
    cyy = (sums[6] + sums[7]) - sy * sy / w
    return cxx, cyy, (sums[8] + sums[9]) - sx * sy / w


@njit(**_KW)
def _bivar_defined_nb(st: tuple, kind: int, w: int) -> bool:
    """Whether the window is complete, without missing pairs, and neither side is degenerate."""
    count, nbad, runx, runy = st[0], st[3], st[4], st[6]
    ok = count >= w and nbad == 0.0 and w >= 2 and runy < w
    return ok and (runx < w or kind == K_BETA)


@njit(**_KW)
def _bivar_check_nb(st: tuple, kind: int, w: int) -> bool:
    """Whether an exact recomputation is due: periodic, or the (co)variances are too inexact."""
    if st[2] == 0.0:
        return True
    if not _bivar_defined_nb(st, kind, w) or st[4] >= w:
        return False
    cxx, cyy, _cxy = _bivar_centred_nb(st[10], w)
    return cxx < RECOMPUTE_RATIO * st[10][10] or cyy < RECOMPUTE_RATIO * st[10][11]


@njit(**_KW)
def _bivar_exact_nb(st: tuple, rx: np.ndarray, ry: np.ndarray) -> tuple:
    """Recompute the sums of the full window exactly (two-pass; the shifts become the means)."""
    count, pos, until, nbad, runx, lastx, runy, lasty, shx, shy, sums = st
    n = 0
    sx, sxc, sy, syc = 0.0, 0.0, 0.0, 0.0
    for i in range(rx.shape[0]):
        if np.isfinite(rx[i]) and np.isfinite(ry[i]):
            n += 1
            sx, sxc = _nsum_nb(sx, sxc, rx[i])
            sy, syc = _nsum_nb(sy, syc, ry[i])
    shx = (sx + sxc) / n if n > 0 else np.nan
    shy = (sy + syc) / n if n > 0 else np.nan
    sums = ZERO_SUMS
    for i in range(rx.shape[0]):
        if np.isfinite(rx[i]) and np.isfinite(ry[i]):
            sums = _bivar_acc_nb(sums, rx[i] - shx, ry[i] - shy, 1.0)
    sums = sums[:10] + (sums[4] + sums[5], sums[6] + sums[7])
    until = _period_nb(rx.shape[0]) if until == 0.0 else until
    return (count, pos, until, nbad, runx, lastx, runy, lasty, shx, shy, sums)


@njit(**_KW)
def _bivar_value_nb(st: tuple, kind: int, w: int) -> float:
    if not _bivar_defined_nb(st, kind, w):
        return np.nan
    if st[4] >= w:
        return 0.0  # beta of a constant x
    cxx, cyy, cxy = _bivar_centred_nb(st[10], w)
    if cyy <= 0.0 or (kind == K_CORR and cxx <= 0.0):
        return np.nan
    if kind == K_BETA:
        return cxy / cyy
    den = math.sqrt(cxx * cyy)
    if den == 0.0 or den == math.inf:  # the product under- or overflowed
        den = math.sqrt(cxx) * math.sqrt(cyy)
    return min(max(cxy / den, -1.0), 1.0)


@njit(**_KW)
def _bivar_run_nb(state: np.ndarray, x: np.ndarray, y: np.ndarray, kind: int, out: np.ndarray) -> None:
    w = np.int64(state[B_WINDOW])
    rx = state[B_HEAD : B_HEAD + w]
    ry = state[B_HEAD + w : B_HEAD + 2 * w]
    s = state
    b = B_SUMS
    sums = (s[b], s[b + 1], s[b + 2], s[b + 3], s[b + 4], s[b + 5], s[b + 6], s[b + 7], s[b + 8],
            s[b + 9], s[b + 10], s[b + 11])  # fmt: skip
    st = (s[B_COUNT], s[B_POS], s[B_UNTIL], s[B_NBAD], s[B_RUNX], s[B_LASTX], s[B_RUNY],
          s[B_LASTY], s[B_SHX], s[B_SHY], sums)  # fmt: skip
    for i in range(x.shape[0]):
        k = np.int64(st[1])
        st = _bivar_push_nb(st, rx[k], ry[k], x[i], y[i], w)
        rx[k] = x[i]
        ry[k] = y[i]
        if _bivar_check_nb(st, kind, w):
            st = _bivar_exact_nb(st, rx, ry)
        out[i] = _bivar_value_nb(st, kind, w)
    head, sums = st[:10], st[10]
    for j in range(10):
        state[B_COUNT + j] = head[j]
    for j in range(12):
        state[B_SUMS + j] = sums[j]


@njit(**_KW)
def _bivar_update_nb(state: np.ndarray, x: float, y: float, kind: int) -> float:
    state[B_INX] = x
    state[B_INY] = y
    x1, y1, out1 = state[B_INX : B_INX + 1], state[B_INY : B_INY + 1], state[B_OUT : B_OUT + 1]
    _bivar_run_nb(state, x1, y1, kind, out1)
    return state[B_OUT]


@njit(**_KW)
def _bivar_into_nb(x: np.ndarray, y: np.ndarray, window: int, kind: int, out: np.ndarray) -> None:
    _bivar_run_nb(_bivar_state_nb(window), x, y, kind, out)


@njit(**_PAR)
def _bivar_2d_nb(
    x: np.ndarray, y: np.ndarray, window: int, kind: int, out: np.ndarray
) -> np.ndarray:
    for j in prange(x.shape[1]):
        _bivar_into_nb(x[:, j], y[:, j], window, kind, out[:, j])
    return out


@njit(**_PAR)
def _bivar_grid_nb(
    x: np.ndarray, y: np.ndarray, windows: np.ndarray, kind: int, out: np.ndarray
) -> np.ndarray:
    for p in prange(windows.shape[0]):
        _bivar_into_nb(x, y, windows[p], kind, out[:, p])
    return out


# ---------------------------------------------------------------------------------------------
# Public kernels. The 2-D and grid forms call the parallel loops above.


@njit(**_KW)
def rolling_corr_nb(
    x: np.ndarray, y: np.ndarray, window: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Rolling Pearson correlation ``cov(x, y) / (std(x) std(y))``, clipped to [-1, 1].

    NaN when ``x`` or ``y`` is constant over the window. Reference:
    ``pd.Series(x).rolling(window).corr(pd.Series(y))``.
    """
    if out is None:
        out = np.empty(x.shape[0], dtype=np.float64)
    _bivar_into_nb(x, y, window, K_CORR, out)
    return out


@njit(**_KW)
def rolling_corr_2d_nb(
    x: np.ndarray, y: np.ndarray, window: int, out: np.ndarray | None = None
) -> np.ndarray:
    """:func:`rolling_corr_nb` of each column pair of ``x[T, N]`` and ``y[T, N]``."""
    if out is None:
        out = np.empty(x.shape, dtype=np.float64)
    return _bivar_2d_nb(x, y, window, K_CORR, out)


@njit(**_KW)
def rolling_corr_grid_nb(
    x: np.ndarray, y: np.ndarray, windows: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """:func:`rolling_corr_nb` of ``x, y`` for each of ``windows``: ``float64[T, P]``."""
    if out is None:
        out = np.empty((x.shape[0], windows.shape[0]), dtype=np.float64)
    return _bivar_grid_nb(x, y, windows, K_CORR, out)


@njit(**_KW)
def rolling_corr_state_nb(window: int) -> np.ndarray:
    """State of streaming :func:`rolling_corr_nb`."""
    return _bivar_state_nb(window)


@njit(**_KW)
def rolling_corr_update_nb(state: np.ndarray, x: float, y: float) -> float:
    """Feed one pair; return the correlation of the window ending at it."""
    return _bivar_update_nb(state, x, y, K_CORR)


@njit(**_KW)
def rolling_beta_nb(
    x: np.ndarray, y: np.ndarray, window: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Rolling beta of ``x`` on ``y``: ``cov(x, y) / var(y)`` (sample, ddof=1 in both).

    The least-squares slope of ``x`` regressed on ``y`` (asset returns ``x`` on market returns
    ``y``). NaN when ``y`` is constant over the window, ``0.0`` when only ``x`` is.
    Reference: ``sx.rolling(w).cov(sy) / sy.rolling(w).var()``.
    """
    if out is None:
        out = np.empty(x.shape[0], dtype=np.float64)
    _bivar_into_nb(x, y, window, K_BETA, out)
    return out


@njit(**_KW)
def rolling_beta_2d_nb(
    x: np.ndarray, y: np.ndarray, window: int, out: np.ndarray | None = None
) -> np.ndarray:
    """:func:`rolling_beta_nb` of each column pair of ``x[T, N]`` and ``y[T, N]``."""
    if out is None:
        out = np.empty(x.shape, dtype=np.float64)
    return _bivar_2d_nb(x, y, window, K_BETA, out)


@njit(**_KW)
def rolling_beta_grid_nb(
    x: np.ndarray, y: np.ndarray, windows: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """:func:`rolling_beta_nb` of ``x, y`` for each of ``windows``: ``float64[T, P]``."""
    if out is None:
        out = np.empty((x.shape[0], windows.shape[0]), dtype=np.float64)
    return _bivar_grid_nb(x, y, windows, K_BETA, out)


@njit(**_KW)
def rolling_beta_state_nb(window: int) -> np.ndarray:
    """State of streaming :func:`rolling_beta_nb`."""
    return _bivar_state_nb(window)


@njit(**_KW)
def rolling_beta_update_nb(state: np.ndarray, x: float, y: float) -> float:
    """Feed one pair; return the beta of ``x`` on ``y`` over the window ending at it."""
    return _bivar_update_nb(state, x, y, K_BETA)
