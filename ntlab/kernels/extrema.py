"""Numba kernels for the rolling minimum and maximum, batch and streaming.

``rolling_min`` and ``rolling_max`` come in the forms and follow the window and missing-value
conventions of :mod:`ntlab.kernels.rolling` (``NAME_nb``, ``NAME_2d_nb``, ``NAME_grid_nb``,
each with an optional ``out=``, and ``NAME_state_nb`` / ``NAME_update_nb``; NaN until the window
is complete; NaN and +-inf are missing, a window that contains one gives NaN, and the missing
value leaves the window ``window`` events later). All forms run one loop over the same state,
so streaming equals batch bit for bit.

Method: a monotonic deque of (event number, value) in the state, best candidate at the front:
O(1) amortised per event (a batch costs about 14 ns per event). Ties keep the newest value.
``window >= 1`` is not checked here (the Python API validates it).

Reference (in the tests): pandas ``rolling(window).min/max``.

Examples
--------
>>> import numpy as np
>>> rolling_min_nb(np.array([3.0, 1.0, 2.0, np.nan, 5.0, 6.0]), 2)
array([nan,  1.,  1., nan, nan,  5.])
>>> state = rolling_max_state_nb(3)
>>> [float(rolling_max_update_nb(state, v)) for v in [3.0, 1.0, 2.0, 0.0]]
[nan, nan, 3.0, 2.0]
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ntlab.kernels._common import _KW, _PAR

__all__ = [
    "rolling_max_2d_nb",
    "rolling_max_grid_nb",
    "rolling_max_nb",
    "rolling_max_state_nb",
    "rolling_max_update_nb",
    "rolling_min_2d_nb",
    "rolling_min_grid_nb",
    "rolling_min_nb",
    "rolling_min_state_nb",
    "rolling_min_update_nb",
]

# Every state is a float64 array: parameters, two scratch slots (the input and output of a
# single update), the scalars of the update rule in the order of its tuple (counters are exact
# float64 integers), then ring buffers.

# Min/max; the deque's event numbers at X_HEAD, its values at X_HEAD + window.
X_WINDOW = 0
X_ISMAX = 1
X_IN = 2
X_OUT = 3
X_COUNT = 4
X_FRONT = 5  # deque position of the best candidate
X_SIZE = 6
X_LEFT = 7  # events until the last missing value has left the window
X_HEAD = 8


# One rule, `_minmax_step_nb`, feeds one event: the batch loop calls it for every event of a
# column, the update for one, so streaming equals batch by construction. Neither slices the
# state (a slice is a new array object: an update through slices cost 60 ns, without 5 ns).

# ---------------------------------------------------------------------------------------------
# Min and max: monotonic deque of (event number, value) in the state, best candidate at the
# front; a candidate is dropped once a newer value is at least as good (so ties keep the newest)


@njit(**_KW)
def _minmax_state_nb(window: int, is_max: bool) -> np.ndarray:
    state = np.zeros(X_HEAD + 2 * window, dtype=np.float64)
    state[X_WINDOW] = window
    state[X_ISMAX] = 1.0 if is_max else 0.0
    return state


@njit(**_KW, inline="always")
def _minmax_step_nb(state: np.ndarray, w: int, is_max: bool, count: int, f: int, n: int, left: int, v: float) -> tuple:
    """Feed ``v``: returns the new ``(count, front, size, left)`` and the window's value.
    The deque's event numbers are at ``state[X_HEAD:][:w]``, its values ``w`` further."""
    idx = X_HEAD
    vals = X_HEAD + w
    while n > 0 and state[idx + f] <= count - w:  # the front left the window
        f = f + 1 if f + 1 < w else 0
        n -= 1
    if np.isfinite(v):
        while n > 0:  # drop the candidates that v dominates, from the back
            b = f + n - 1 if f + n - 1 < w else f + n - 1 - w
            if (state[vals + b] > v) if is_max else (state[vals + b] < v):
                break
            n -= 1
        b = f + n if f + n < w else f + n - w
        state[idx + b] = count
        state[vals + b] = v
        n += 1
    else:
        left = w
    out = state[vals + f] if count + 1 >= w and left == 0 else np.nan
    return count + 1, f, n, max(left - 1, 0), out


@njit(**_KW)
def _minmax_run_nb(state: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    w = np.int64(state[X_WINDOW])
    is_max = state[X_ISMAX] > 0.0
    count = np.int64(state[X_COUNT])
    f = np.int64(state[X_FRONT])
    n = np.int64(state[X_SIZE])
    left = np.int64(state[X_LEFT])
    for i in range(x.shape[0]):
        count, f, n, left, out[i] = _minmax_step_nb(state, w, is_max, count, f, n, left, x[i])
    state[X_COUNT] = count
    state[X_FRONT] = f
    state[X_SIZE] = n
    state[X_LEFT] = left


@njit(**_KW)
def _minmax_update_nb(state: np.ndarray, x: float) -> float:
    w = np.int64(state[X_WINDOW])
    count, f, n, left, out = _minmax_step_nb(
        state, w, state[X_ISMAX] > 0.0, np.int64(state[X_COUNT]), np.int64(state[X_FRONT]),
        np.int64(state[X_SIZE]), np.int64(state[X_LEFT]), x,
    )
    state[X_COUNT] = count
    state[X_FRONT] = f
    state[X_SIZE] = n
    state[X_LEFT] = left
    return out


@njit(**_KW)
def _minmax_into_nb(x: np.ndarray, window: int, is_max: bool, out: np.ndarray) -> None:
    _minmax_run_nb(_minmax_state_nb(window, is_max), x, out)


@njit(**_PAR)
def _minmax_2d_nb(x: np.ndarray, window: int, is_max: bool, out: np.ndarray) -> np.ndarray:
    for j in prange(x.shape[1]):
        _minmax_into_nb(x[:, j], window, is_max, out[:, j])
    return out


@njit(**_PAR)
def _minmax_grid_nb(
    x: np.ndarray, windows: np.ndarray, is_max: bool, out: np.ndarray
) -> np.ndarray:
    for p in prange(windows.shape[0]):
        _minmax_into_nb(x, windows[p], is_max, out[:, p])
    return out


# ---------------------------------------------------------------------------------------------
# Public kernels. The 2-D and grid forms call the parallel loops above.


@njit(**_KW)
def rolling_min_nb(x: np.ndarray, window: int, out: np.ndarray | None = None) -> np.ndarray:
    """Rolling minimum (monotonic deque). Reference: ``pd.Series(x).rolling(window).min()``."""
    if out is None:
        out = np.empty(x.shape[0], dtype=np.float64)
    _minmax_into_nb(x, window, False, out)
    return out


@njit(**_KW)
def rolling_min_2d_nb(x: np.ndarray, window: int, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`rolling_min_nb` of each column of ``x[T, N]``."""
    if out is None:
        out = np.empty(x.shape, dtype=np.float64)
    return _minmax_2d_nb(x, window, False, out)


@njit(**_KW)
def rolling_min_grid_nb(
    x: np.ndarray, windows: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """:func:`rolling_min_nb` of ``x`` for each of ``windows``: ``float64[T, P]``."""
    if out is None:
        out = np.empty((x.shape[0], windows.shape[0]), dtype=np.float64)
    return _minmax_grid_nb(x, windows, False, out)


@njit(**_KW)
def rolling_min_state_nb(window: int) -> np.ndarray:
    """State of streaming :func:`rolling_min_nb` (the deque lives in it)."""
    return _minmax_state_nb(window, False)


@njit(**_KW)
def rolling_min_update_nb(state: np.ndarray, x: float) -> float:
    """Feed one value; return the minimum of the window ending at it."""
    return _minmax_update_nb(state, x)


@njit(**_KW)
def rolling_max_nb(x: np.ndarray, window: int, out: np.ndarray | None = None) -> np.ndarray:
    """Rolling maximum (monotonic deque). Reference: ``pd.Series(x).rolling(window).max()``."""
    if out is None:
        out = np.empty(x.shape[0], dtype=np.float64)
    _minmax_into_nb(x, window, True, out)
    return out


@njit(**_KW)
def rolling_max_2d_nb(x: np.ndarray, window: int, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`rolling_max_nb` of each column of ``x[T, N]``."""
    if out is None:
        out = np.empty(x.shape, dtype=np.float64)
    return _minmax_2d_nb(x, window, True, out)


@njit(**_KW)
def rolling_max_grid_nb(
    x: np.ndarray, windows: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """:func:`rolling_max_nb` of ``x`` for each of ``windows``: ``float64[T, P]``."""
    if out is None:
        out = np.empty((x.shape[0], windows.shape[0]), dtype=np.float64)
    return _minmax_grid_nb(x, windows, True, out)


@njit(**_KW)
def rolling_max_state_nb(window: int) -> np.ndarray:
    """State of streaming :func:`rolling_max_nb` (the deque lives in it)."""
    return _minmax_state_nb(window, True)


@njit(**_KW)
def rolling_max_update_nb(state: np.ndarray, x: float) -> float:
    """Feed one value; return the maximum of the window ending at it."""
    return _minmax_update_nb(state, x)
