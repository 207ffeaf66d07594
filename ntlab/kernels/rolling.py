"""Numba kernels for returns and rolling-window statistics, batch and streaming.

Indicators: simple and log returns, rolling sum, mean (SMA), variance, standard deviation,
z-score, min, max, correlation, beta, and realised volatility.

Forms
-----
Every indicator ``NAME`` comes in these forms, which give the same numbers bit for bit: each
batch form loops the streaming update rule over the input (one column or window at a time).

* ``NAME_nb(x, <params>)``: ``float64[T]`` in, ``float64[T]`` out.
* ``NAME_2d_nb(x, <params>)``: ``float64[T, N]`` (time x columns) in and out; columns run in
  parallel (``prange``), each computed exactly as by ``NAME_nb``.
* ``NAME_grid_nb(x, windows, ...)``: ``float64[T]`` and ``int64[P]`` window lengths in,
  ``float64[T, P]`` out; column ``p`` equals ``NAME_nb(x, windows[p], ...)``. Returns take no
  parameter and have no grid form.
* ``NAME_state_nb(<params>)`` makes a small ``float64`` state array (ring buffers inside) and
  ``NAME_update_nb(state, x)`` feeds one event and returns its value (NaN during warm-up).
  Both are callable from other njit code (the live engine).

Correlation and beta take two inputs ``x`` and ``y`` of the same shape in every form, and
``NAME_update_nb(state, x, y)``.

Conventions
-----------
* Window: the value at ``t`` covers events ``t - window + 1 .. t`` and is NaN until the window
  is complete (``t < window - 1``), like pandas ``rolling(window)`` (``min_periods=window``).
  Sample statistics (variance, std, z-score, correlation, beta, realised volatility) use
  ``ddof=1`` and are NaN for ``window=1``.
* Missing values: NaN and +-inf are missing. A window that contains one gives NaN, and the
  missing value leaves the window ``window`` events later. For correlation and beta an event is
  missing when ``x`` or ``y`` is. (pandas agrees for NaN; it propagates +-inf instead.)
* Returns: ``r[t] = (x[t] - x[t-1]) / x[t-1]`` and ``log1p(r[t])`` (= ``log(x[t] / x[t-1])``);
  NaN at ``t = 0``, where ``x[t]`` or ``x[t-1]`` is missing, where ``x[t-1] == 0``, and (log)
  where ``x[t] / x[t-1] <= 0``. Undefined returns are NaN, never +-inf.
* Constant windows are detected exactly (by the run of equal consecutive values, as pandas
  does): variance and std are ``0.0``, the mean is that value, the z-score and correlation are
  NaN, and beta is NaN when ``y`` is constant and ``0.0`` when only ``x`` is.
* Parameters are not checked here (the Python API validates them): ``window >= 1``,
  ``periods_per_year > 0``.

Numerical method
----------------
Sums run add/remove over the window with Neumaier-compensated accumulators; second moments
are sums of *shifted* values ``x - shift`` (``shift`` is the window mean at the last exact
recomputation), so a level of 1e4 and a spread of 1 lose no digits. Every ``window`` events,
and whenever a centred sum of squares falls below ``1e-5`` of the squares added and removed
since the last recomputation (its rounding-error bound; this happens after a burst of
volatility leaves the window), the accumulators are recomputed exactly from the ring buffer
(two-pass). So nothing drifts on long series, the relative error of a variance stays near
``1e-11``, and each event costs O(1) amortised. Min and max keep a monotonic deque in the
state: O(1) amortised per event.

References (in the tests): pandas ``Series.rolling(window).sum/mean/var/std/min/max/corr``,
``pct_change(fill_method=None)``, ``np.log(x).diff()``, and two-pass NumPy windows.

Examples
--------
>>> import numpy as np
>>> x = np.array([1.0, 2.0, 4.0, np.nan, 5.0, 6.0, 7.0])
>>> rolling_mean_nb(x, 2)
array([nan, 1.5, 3. , nan, nan, 5.5, 6.5])
>>> state = rolling_max_state_nb(3)
>>> [float(rolling_max_update_nb(state, v)) for v in [3.0, 1.0, 2.0, 0.0]]
[nan, nan, 3.0, 2.0]
>>> returns_nb(np.array([100.0, 110.0, 99.0]))
array([ nan,  0.1, -0.1])
>>> vol = realised_vol_nb(np.array([100.0, 101.0, 100.0, 102.0]), 3, periods_per_year=252.0)
>>> bool(np.isnan(vol[2])), round(float(vol[3]), 4)
(True, 0.2554)
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = [
    "log_returns_2d_nb",
    "log_returns_nb",
    "log_returns_state_nb",
    "log_returns_update_nb",
    "realised_vol_2d_nb",
    "realised_vol_grid_nb",
    "realised_vol_nb",
    "realised_vol_state_nb",
    "realised_vol_update_nb",
    "returns_2d_nb",
    "returns_nb",
    "returns_state_nb",
    "returns_update_nb",
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
    "rolling_max_2d_nb",
    "rolling_max_grid_nb",
    "rolling_max_nb",
    "rolling_max_state_nb",
    "rolling_max_update_nb",
    "rolling_mean_2d_nb",
    "rolling_mean_grid_nb",
    "rolling_mean_nb",
    "rolling_mean_state_nb",
    "rolling_mean_update_nb",
    "rolling_min_2d_nb",
    "rolling_min_grid_nb",
    "rolling_min_nb",
    "rolling_min_state_nb",
    "rolling_min_update_nb",
    "rolling_std_2d_nb",
    "rolling_std_grid_nb",
    "rolling_std_nb",
    "rolling_std_state_nb",
    "rolling_std_update_nb",
    "rolling_sum_2d_nb",
    "rolling_sum_grid_nb",
    "rolling_sum_nb",
    "rolling_sum_state_nb",
    "rolling_sum_update_nb",
    "rolling_var_2d_nb",
    "rolling_var_grid_nb",
    "rolling_var_nb",
    "rolling_var_state_nb",
    "rolling_var_update_nb",
    "rolling_zscore_2d_nb",
    "rolling_zscore_grid_nb",
    "rolling_zscore_nb",
    "rolling_zscore_state_nb",
    "rolling_zscore_update_nb",
]

# Recompute exactly when a centred sum of squares is below this fraction of its error scale.
RECOMPUTE_RATIO = 1e-5

# Kinds of the univariate moment kernels (one state layout, one update rule).
K_SUM = 0
K_MEAN = 1
K_VAR = 2
K_STD = 3
K_ZSCORE = 4
K_RVOL = 5
# Kinds of the bivariate kernels.
K_CORR = 0
K_BETA = 1

# Univariate moment state: header, then the ring buffer of the last `window` inputs.
U_WINDOW = 0
U_COUNT = 1  # events seen
U_NBAD = 2  # missing values in the window
U_RUN = 3  # length of the run of equal consecutive values ending at the last event
U_LAST = 4  # last value (NaN if missing)
U_SHIFT = 5  # shift of the second-moment sums (NaN until a value is seen)
U_S = 6  # sum of x (Neumaier: value, compensation)
U_SC = 7
U_S1 = 8  # sum of x - shift
U_S1C = 9
U_S2 = 10  # sum of (x - shift)**2
U_S2C = 11
U_ERR = 12  # squares added and removed since the last exact recomputation
U_PREV = 13  # previous price (realised volatility)
U_SCALE = 14  # sqrt(periods_per_year) (realised volatility)
U_HEAD = 15

# Min/max state: header, then the deque's event numbers and values (two blocks of `window`).
X_WINDOW = 0
X_COUNT = 1
X_BADLEFT = 2  # events until the last missing value has left the window
X_ISMAX = 3
X_FRONT = 4
X_SIZE = 5
X_HEAD = 6

# Bivariate state: header, then the ring buffers of x and y (two blocks of `window`).
B_WINDOW = 0
B_COUNT = 1
B_NBAD = 2
B_RUNX = 3
B_LASTX = 4
B_RUNY = 5
B_LASTY = 6
B_SHX = 7
B_SHY = 8
B_SX = 9  # sums of shifted values, each a Neumaier pair
B_SXC = 10
B_SY = 11
B_SYC = 12
B_SXX = 13
B_SXXC = 14
B_SYY = 15
B_SYYC = 16
B_SXY = 17
B_SXYC = 18
B_EXX = 19
B_EYY = 20
B_HEAD = 21


# ---------------------------------------------------------------------------------------------
# Shared scalar rules


@njit(cache=True, nogil=True)
def _nsum_nb(s: float, c: float, v: float) -> tuple[float, float]:
    """Neumaier step: add ``v`` to the compensated sum ``s + c``."""
    t = s + v
    if abs(s) >= abs(v):
        c += (s - t) + v
    else:
        c += (v - t) + s
    return t, c


@njit(cache=True, nogil=True)
def _return_nb(prev: float, x: float) -> float:
    if np.isfinite(prev) and np.isfinite(x) and prev != 0.0:
        return (x - prev) / prev
    return np.nan


@njit(cache=True, nogil=True)
def _log_return_nb(prev: float, x: float) -> float:
    r = _return_nb(prev, x)
    if r > -1.0:  # False for NaN
        return math.log1p(r)
    return np.nan


@njit(cache=True, nogil=True)
def _run_nb(run: float, last: float, x: float) -> float:
    """Length of the run of equal values ending at ``x`` (``x`` is not missing)."""
    if run > 0.0 and x == last:
        return run + 1.0
    return 1.0


# ---------------------------------------------------------------------------------------------
# Univariate moments: sum, mean, var, std, z-score, realised volatility


@njit(cache=True, nogil=True)
def _moments_state_nb(window: int, scale: float) -> np.ndarray:
    state = np.zeros(U_HEAD + window, dtype=np.float64)
    state[U_WINDOW] = window
    state[U_LAST] = np.nan
    state[U_SHIFT] = np.nan
    state[U_PREV] = np.nan
    state[U_SCALE] = scale
    return state


@njit(cache=True, nogil=True)
def _moments_recompute_nb(state: np.ndarray) -> None:
    """Recompute the sums of a full ring buffer exactly (two-pass, shift = the mean)."""
    w = np.int64(state[U_WINDOW])
    n = 0
    s = 0.0
    sc = 0.0
    for i in range(U_HEAD, U_HEAD + w):
        v = state[i]
        if np.isfinite(v):
            n += 1
            s, sc = _nsum_nb(s, sc, v)
    shift = (s + sc) / n if n > 0 else np.nan
    s1 = 0.0
    s1c = 0.0
    s2 = 0.0
    s2c = 0.0
    for i in range(U_HEAD, U_HEAD + w):
        v = state[i]
        if np.isfinite(v):
            d = v - shift
            s1, s1c = _nsum_nb(s1, s1c, d)
            s2, s2c = _nsum_nb(s2, s2c, d * d)
    state[U_SHIFT] = shift
    state[U_S] = s
    state[U_SC] = sc
    state[U_S1] = s1
    state[U_S1C] = s1c
    state[U_S2] = s2
    state[U_S2C] = s2c
    state[U_ERR] = s2 + s2c


@njit(cache=True, nogil=True)
def _moments_push_nb(state: np.ndarray, x: float) -> None:
    """Move the window one event on: drop the oldest value, add ``x``."""
    w = np.int64(state[U_WINDOW])
    t = np.int64(state[U_COUNT])
    k = U_HEAD + t % w
    shift = state[U_SHIFT]
    nbad = state[U_NBAD]
    run = state[U_RUN]
    s = state[U_S]
    sc = state[U_SC]
    s1 = state[U_S1]
    s1c = state[U_S1C]
    s2 = state[U_S2]
    s2c = state[U_S2C]
    err = state[U_ERR]
    if t >= w:
        old = state[k]
        if np.isfinite(old):
            s, sc = _nsum_nb(s, sc, -old)
            d = old - shift
            s1, s1c = _nsum_nb(s1, s1c, -d)
            s2, s2c = _nsum_nb(s2, s2c, -(d * d))
            err += d * d
        else:
            nbad -= 1.0
    if np.isfinite(x):
        if np.isnan(shift):  # no value in the window: the sums are zero
            shift = x
        s, sc = _nsum_nb(s, sc, x)
        d = x - shift
        s1, s1c = _nsum_nb(s1, s1c, d)
        s2, s2c = _nsum_nb(s2, s2c, d * d)
        err += d * d
        run = _run_nb(run, state[U_LAST], x)
    else:
        nbad += 1.0
        run = 0.0
    state[k] = x
    state[U_LAST] = x
    state[U_SHIFT] = shift
    state[U_NBAD] = nbad
    state[U_RUN] = run
    state[U_S] = s
    state[U_SC] = sc
    state[U_S1] = s1
    state[U_S1C] = s1c
    state[U_S2] = s2
    state[U_S2C] = s2c
    state[U_ERR] = err
    state[U_COUNT] = t + 1
    if (t + 1) % w == 0:
        _moments_recompute_nb(state)


@njit(cache=True, nogil=True)
def _moments_m2_nb(state: np.ndarray) -> float:
    """Centred sum of squares of a full window, recomputed exactly when its error is too large."""
    w = state[U_WINDOW]
    s1 = state[U_S1] + state[U_S1C]
    m2 = (state[U_S2] + state[U_S2C]) - s1 * s1 / w
    if m2 < RECOMPUTE_RATIO * state[U_ERR]:
        _moments_recompute_nb(state)
        s1 = state[U_S1] + state[U_S1C]
        m2 = (state[U_S2] + state[U_S2C]) - s1 * s1 / w
    return max(m2, 0.0)


@njit(cache=True, nogil=True)
def _moments_value_nb(state: np.ndarray, x: float, kind: int) -> float:
    """The statistic ``kind`` of the current window (``x`` is the last input, for z-scores)."""
    w = np.int64(state[U_WINDOW])
    if state[U_COUNT] < w or state[U_NBAD] > 0.0:
        return np.nan
    if kind == K_SUM:
        return state[U_S] + state[U_SC]
    constant = state[U_RUN] >= w
    mean = state[U_LAST] if constant else (state[U_S] + state[U_SC]) / w
    if kind == K_MEAN:
        return mean
    if w < 2:
        return np.nan
    var = 0.0 if constant else _moments_m2_nb(state) / (w - 1)
    if kind == K_VAR:
        return var
    std = math.sqrt(var)
    if kind == K_STD:
        return std
    if kind == K_RVOL:
        return std * state[U_SCALE]
    if std == 0.0:
        return np.nan
    return (x - mean) / std


@njit(cache=True, nogil=True)
def _moments_step_nb(state: np.ndarray, x: float, kind: int) -> float:
    if kind == K_RVOL:
        prev = state[U_PREV]
        state[U_PREV] = x
        x = _log_return_nb(prev, x)
    _moments_push_nb(state, x)
    return _moments_value_nb(state, x, kind)


@njit(cache=True, nogil=True)
def _moments_into_nb(x: np.ndarray, window: int, kind: int, scale: float, out: np.ndarray) -> None:
    state = _moments_state_nb(window, scale)
    for i in range(x.shape[0]):
        out[i] = _moments_step_nb(state, x[i], kind)


# ---------------------------------------------------------------------------------------------
# Min and max: monotonic deque


@njit(cache=True, nogil=True)
def _minmax_state_nb(window: int, is_max: bool) -> np.ndarray:
    state = np.zeros(X_HEAD + 2 * window, dtype=np.float64)
    state[X_WINDOW] = window
    state[X_ISMAX] = 1.0 if is_max else 0.0
    return state


@njit(cache=True, nogil=True)
def _minmax_step_nb(state: np.ndarray, x: float) -> float:
    """Feed ``x``; the deque holds the candidates (event number, value), best at the front."""
    w = np.int64(state[X_WINDOW])
    t = np.int64(state[X_COUNT])
    front = np.int64(state[X_FRONT])
    size = np.int64(state[X_SIZE])
    left = state[X_BADLEFT]
    vals = X_HEAD + w
    while size > 0 and state[X_HEAD + front] <= t - w:  # expired
        front = front + 1 if front + 1 < w else 0
        size -= 1
    if np.isfinite(x):
        is_max = state[X_ISMAX] > 0.0
        while size > 0:  # drop candidates that x dominates
            b = front + size - 1
            if b >= w:
                b -= w
            v = state[vals + b]
            if (is_max and v <= x) or (not is_max and v >= x):
                size -= 1
            else:
                break
        b = front + size
        if b >= w:
            b -= w
        state[X_HEAD + b] = t
        state[vals + b] = x
        size += 1
    else:
        left = float(w)
    out = np.nan
    if t + 1 >= w and left == 0.0:
        out = state[vals + front]
    if left > 0.0:
        left -= 1.0
    state[X_COUNT] = t + 1
    state[X_FRONT] = front
    state[X_SIZE] = size
    state[X_BADLEFT] = left
    return out


@njit(cache=True, nogil=True)
def _minmax_into_nb(x: np.ndarray, window: int, is_max: bool, out: np.ndarray) -> None:
    state = _minmax_state_nb(window, is_max)
    for i in range(x.shape[0]):
        out[i] = _minmax_step_nb(state, x[i])


# ---------------------------------------------------------------------------------------------
# Bivariate: correlation and beta


@njit(cache=True, nogil=True)
def _bivar_state_nb(window: int) -> np.ndarray:
    state = np.zeros(B_HEAD + 2 * window, dtype=np.float64)
    state[B_WINDOW] = window
    state[B_LASTX] = np.nan
    state[B_LASTY] = np.nan
    state[B_SHX] = np.nan
    state[B_SHY] = np.nan
    return state


@njit(cache=True, nogil=True)
def _bivar_recompute_nb(state: np.ndarray) -> None:
    w = np.int64(state[B_WINDOW])
    n = 0
    sx, sxc, sy, syc = 0.0, 0.0, 0.0, 0.0
    for i in range(B_HEAD, B_HEAD + w):
        vx = state[i]
        vy = state[i + w]
        if np.isfinite(vx) and np.isfinite(vy):
            n += 1
            sx, sxc = _nsum_nb(sx, sxc, vx)
            sy, syc = _nsum_nb(sy, syc, vy)
    shx = (sx + sxc) / n if n > 0 else np.nan
    shy = (sy + syc) / n if n > 0 else np.nan
    sx, sxc, sy, syc = 0.0, 0.0, 0.0, 0.0
    sxx, sxxc, syy, syyc, sxy, sxyc = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    for i in range(B_HEAD, B_HEAD + w):
        vx = state[i]
        vy = state[i + w]
        if np.isfinite(vx) and np.isfinite(vy):
            dx = vx - shx
            dy = vy - shy
            sx, sxc = _nsum_nb(sx, sxc, dx)
            sy, syc = _nsum_nb(sy, syc, dy)
            sxx, sxxc = _nsum_nb(sxx, sxxc, dx * dx)
            syy, syyc = _nsum_nb(syy, syyc, dy * dy)
            sxy, sxyc = _nsum_nb(sxy, sxyc, dx * dy)
    state[B_SHX] = shx
    state[B_SHY] = shy
    state[B_SX] = sx
    state[B_SXC] = sxc
    state[B_SY] = sy
    state[B_SYC] = syc
    state[B_SXX] = sxx
    state[B_SXXC] = sxxc
    state[B_SYY] = syy
    state[B_SYYC] = syyc
    state[B_SXY] = sxy
    state[B_SXYC] = sxyc
    state[B_EXX] = sxx + sxxc
    state[B_EYY] = syy + syyc


@njit(cache=True, nogil=True)
def _bivar_push_nb(state: np.ndarray, x: float, y: float) -> None:
    w = np.int64(state[B_WINDOW])
    t = np.int64(state[B_COUNT])
    kx = B_HEAD + t % w
    ky = kx + w
    shx = state[B_SHX]
    shy = state[B_SHY]
    nbad = state[B_NBAD]
    sx, sxc, sy, syc = state[B_SX], state[B_SXC], state[B_SY], state[B_SYC]
    sxx, sxxc, syy, syyc = state[B_SXX], state[B_SXXC], state[B_SYY], state[B_SYYC]
    sxy, sxyc, exx, eyy = state[B_SXY], state[B_SXYC], state[B_EXX], state[B_EYY]
    if t >= w:
        ox = state[kx]
        oy = state[ky]
        if np.isfinite(ox) and np.isfinite(oy):
            dx = ox - shx
            dy = oy - shy
            sx, sxc = _nsum_nb(sx, sxc, -dx)
            sy, syc = _nsum_nb(sy, syc, -dy)
            sxx, sxxc = _nsum_nb(sxx, sxxc, -(dx * dx))
            syy, syyc = _nsum_nb(syy, syyc, -(dy * dy))
            sxy, sxyc = _nsum_nb(sxy, sxyc, -(dx * dy))
            exx += dx * dx
            eyy += dy * dy
        else:
            nbad -= 1.0
    if np.isfinite(x) and np.isfinite(y):
        if np.isnan(shx):  # no pair in the window: the sums are zero
            shx = x
            shy = y
        dx = x - shx
        dy = y - shy
        sx, sxc = _nsum_nb(sx, sxc, dx)
        sy, syc = _nsum_nb(sy, syc, dy)
        sxx, sxxc = _nsum_nb(sxx, sxxc, dx * dx)
        syy, syyc = _nsum_nb(syy, syyc, dy * dy)
        sxy, sxyc = _nsum_nb(sxy, sxyc, dx * dy)
        exx += dx * dx
        eyy += dy * dy
        state[B_RUNX] = _run_nb(state[B_RUNX], state[B_LASTX], x)
        state[B_RUNY] = _run_nb(state[B_RUNY], state[B_LASTY], y)
    else:
        nbad += 1.0
        state[B_RUNX] = 0.0
        state[B_RUNY] = 0.0
    state[kx] = x
    state[ky] = y
    state[B_LASTX] = x
    state[B_LASTY] = y
    state[B_SHX] = shx
    state[B_SHY] = shy
    state[B_NBAD] = nbad
    state[B_SX], state[B_SXC], state[B_SY], state[B_SYC] = sx, sxc, sy, syc
    state[B_SXX], state[B_SXXC], state[B_SYY], state[B_SYYC] = sxx, sxxc, syy, syyc
    state[B_SXY], state[B_SXYC], state[B_EXX], state[B_EYY] = sxy, sxyc, exx, eyy
    state[B_COUNT] = t + 1
    if (t + 1) % w == 0:
        _bivar_recompute_nb(state)


@njit(cache=True, nogil=True)
def _bivar_moments_nb(state: np.ndarray) -> tuple[float, float, float]:
    """Centred ``(sxx, syy, sxy)`` of a full window, recomputed exactly when too inexact."""
    for attempt in range(2):
        w = state[B_WINDOW]
        sx = state[B_SX] + state[B_SXC]
        sy = state[B_SY] + state[B_SYC]
        cxx = (state[B_SXX] + state[B_SXXC]) - sx * sx / w
        cyy = (state[B_SYY] + state[B_SYYC]) - sy * sy / w
        if attempt == 0 and (cxx < RECOMPUTE_RATIO * state[B_EXX] or cyy < RECOMPUTE_RATIO * state[B_EYY]):
            _bivar_recompute_nb(state)
            continue
        cxy = (state[B_SXY] + state[B_SXYC]) - sx * sy / w
        return max(cxx, 0.0), max(cyy, 0.0), cxy
    return np.nan, np.nan, np.nan  # not reached


@njit(cache=True, nogil=True)
def _bivar_step_nb(state: np.ndarray, x: float, y: float, kind: int) -> float:
    _bivar_push_nb(state, x, y)
    w = np.int64(state[B_WINDOW])
    if state[B_COUNT] < w or state[B_NBAD] > 0.0 or w < 2:
        return np.nan
    const_x = state[B_RUNX] >= w
    const_y = state[B_RUNY] >= w
    if const_y or (const_x and kind == K_CORR):
        return np.nan
    if const_x:
        return 0.0  # beta of a constant x
    cxx, cyy, cxy = _bivar_moments_nb(state)
    if kind == K_BETA:
        return cxy / cyy if cyy > 0.0 else np.nan
    if cxx <= 0.0 or cyy <= 0.0:
        return np.nan
    return min(max(cxy / (math.sqrt(cxx) * math.sqrt(cyy)), -1.0), 1.0)


@njit(cache=True, nogil=True)
def _bivar_into_nb(x: np.ndarray, y: np.ndarray, window: int, kind: int, out: np.ndarray) -> None:
    state = _bivar_state_nb(window)
    for i in range(x.shape[0]):
        out[i] = _bivar_step_nb(state, x[i], y[i], kind)


# ---------------------------------------------------------------------------------------------
# Returns


@njit(cache=True, nogil=True)
def _returns_step_nb(state: np.ndarray, x: float, log: bool) -> float:
    prev = state[0]
    state[0] = x
    return _log_return_nb(prev, x) if log else _return_nb(prev, x)


@njit(cache=True, nogil=True)
def _returns_into_nb(x: np.ndarray, log: bool, out: np.ndarray) -> None:
    state = np.full(1, np.nan)
    for i in range(x.shape[0]):
        out[i] = _returns_step_nb(state, x[i], log)


@njit(cache=True, nogil=True)
def returns_nb(x: np.ndarray) -> np.ndarray:
    """Simple 1-period returns ``(x[t] - x[t-1]) / x[t-1]``; NaN at ``t = 0``.

    NaN where either value is missing or ``x[t-1] == 0``. Reference:
    ``pd.Series(x).pct_change(fill_method=None)``.
    """
    out = np.empty(x.shape[0], dtype=np.float64)
    _returns_into_nb(x, False, out)
    return out


@njit(cache=True, nogil=True, parallel=True)
def returns_2d_nb(x: np.ndarray) -> np.ndarray:
    """:func:`returns_nb` of each column of ``x[T, N]``."""
    out = np.empty(x.shape, dtype=np.float64)
    for j in prange(x.shape[1]):
        _returns_into_nb(x[:, j], False, out[:, j])
    return out


@njit(cache=True, nogil=True)
def returns_state_nb() -> np.ndarray:
    """State of a streaming :func:`returns_nb`: ``[previous value]``, NaN at first."""
    return np.full(1, np.nan)


@njit(cache=True, nogil=True)
def returns_update_nb(state: np.ndarray, x: float) -> float:
    """Feed one value; return its simple return (NaN for the first)."""
    return _returns_step_nb(state, x, False)


@njit(cache=True, nogil=True)
def log_returns_nb(x: np.ndarray) -> np.ndarray:
    """Log 1-period returns ``log1p((x[t] - x[t-1]) / x[t-1])`` = ``log(x[t] / x[t-1])``.

    NaN at ``t = 0``, where either value is missing, ``x[t-1] == 0`` or the ratio is ``<= 0``.
    Reference: ``np.log(pd.Series(x)).diff()``.
    """
    out = np.empty(x.shape[0], dtype=np.float64)
    _returns_into_nb(x, True, out)
    return out


@njit(cache=True, nogil=True, parallel=True)
def log_returns_2d_nb(x: np.ndarray) -> np.ndarray:
    """:func:`log_returns_nb` of each column of ``x[T, N]``."""
    out = np.empty(x.shape, dtype=np.float64)
    for j in prange(x.shape[1]):
        _returns_into_nb(x[:, j], True, out[:, j])
    return out


@njit(cache=True, nogil=True)
def log_returns_state_nb() -> np.ndarray:
    """State of a streaming :func:`log_returns_nb`: ``[previous value]``, NaN at first."""
    return np.full(1, np.nan)


@njit(cache=True, nogil=True)
def log_returns_update_nb(state: np.ndarray, x: float) -> float:
    """Feed one value; return its log return (NaN for the first)."""
    return _returns_step_nb(state, x, True)


# ---------------------------------------------------------------------------------------------
# Public moment kernels


@njit(cache=True, nogil=True)
def rolling_sum_nb(x: np.ndarray, window: int) -> np.ndarray:
    """Rolling sum over ``window`` events (compensated). Reference: ``rolling(window).sum()``."""
    out = np.empty(x.shape[0], dtype=np.float64)
    _moments_into_nb(x, window, K_SUM, 1.0, out)
    return out


@njit(cache=True, nogil=True, parallel=True)
def rolling_sum_2d_nb(x: np.ndarray, window: int) -> np.ndarray:
    """:func:`rolling_sum_nb` of each column of ``x[T, N]``."""
    out = np.empty(x.shape, dtype=np.float64)
    for j in prange(x.shape[1]):
        _moments_into_nb(x[:, j], window, K_SUM, 1.0, out[:, j])
    return out


@njit(cache=True, nogil=True, parallel=True)
def rolling_sum_grid_nb(x: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """:func:`rolling_sum_nb` of ``x`` for each of ``windows``: ``float64[T, P]``."""
    out = np.empty((x.shape[0], windows.shape[0]), dtype=np.float64)
    for p in prange(windows.shape[0]):
        _moments_into_nb(x, windows[p], K_SUM, 1.0, out[:, p])
    return out


@njit(cache=True, nogil=True)
def rolling_sum_state_nb(window: int) -> np.ndarray:
    """State of a streaming :func:`rolling_sum_nb`."""
    return _moments_state_nb(window, 1.0)


@njit(cache=True, nogil=True)
def rolling_sum_update_nb(state: np.ndarray, x: float) -> float:
    """Feed one value; return the sum of the window ending at it."""
    return _moments_step_nb(state, x, K_SUM)


@njit(cache=True, nogil=True)
def rolling_mean_nb(x: np.ndarray, window: int) -> np.ndarray:
    """Rolling mean (SMA): compensated sum / ``window``; a constant window gives its value.

    Reference: ``rolling(window).mean()``.
    """
    out = np.empty(x.shape[0], dtype=np.float64)
    _moments_into_nb(x, window, K_MEAN, 1.0, out)
    return out


@njit(cache=True, nogil=True, parallel=True)
def rolling_mean_2d_nb(x: np.ndarray, window: int) -> np.ndarray:
    """:func:`rolling_mean_nb` of each column of ``x[T, N]``."""
    out = np.empty(x.shape, dtype=np.float64)
    for j in prange(x.shape[1]):
        _moments_into_nb(x[:, j], window, K_MEAN, 1.0, out[:, j])
    return out


@njit(cache=True, nogil=True, parallel=True)
def rolling_mean_grid_nb(x: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """:func:`rolling_mean_nb` of ``x`` for each of ``windows``: ``float64[T, P]``."""
    out = np.empty((x.shape[0], windows.shape[0]), dtype=np.float64)
    for p in prange(windows.shape[0]):
        _moments_into_nb(x, windows[p], K_MEAN, 1.0, out[:, p])
    return out


@njit(cache=True, nogil=True)
def rolling_mean_state_nb(window: int) -> np.ndarray:
    """State of a streaming :func:`rolling_mean_nb`."""
    return _moments_state_nb(window, 1.0)


@njit(cache=True, nogil=True)
def rolling_mean_update_nb(state: np.ndarray, x: float) -> float:
    """Feed one value; return the mean of the window ending at it."""
    return _moments_step_nb(state, x, K_MEAN)


@njit(cache=True, nogil=True)
def rolling_var_nb(x: np.ndarray, window: int) -> np.ndarray:
    """Rolling sample variance ``sum((x - mean)**2) / (window - 1)``; ``0.0`` if constant.

    Reference: ``rolling(window).var()`` (ddof=1), two-pass ``np.var(w, ddof=1)``.
    """
    out = np.empty(x.shape[0], dtype=np.float64)
    _moments_into_nb(x, window, K_VAR, 1.0, out)
    return out


@njit(cache=True, nogil=True, parallel=True)
def rolling_var_2d_nb(x: np.ndarray, window: int) -> np.ndarray:
    """:func:`rolling_var_nb` of each column of ``x[T, N]``."""
    out = np.empty(x.shape, dtype=np.float64)
    for j in prange(x.shape[1]):
        _moments_into_nb(x[:, j], window, K_VAR, 1.0, out[:, j])
    return out


@njit(cache=True, nogil=True, parallel=True)
def rolling_var_grid_nb(x: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """:func:`rolling_var_nb` of ``x`` for each of ``windows``: ``float64[T, P]``."""
    out = np.empty((x.shape[0], windows.shape[0]), dtype=np.float64)
    for p in prange(windows.shape[0]):
        _moments_into_nb(x, windows[p], K_VAR, 1.0, out[:, p])
    return out


@njit(cache=True, nogil=True)
def rolling_var_state_nb(window: int) -> np.ndarray:
    """State of a streaming :func:`rolling_var_nb`."""
    return _moments_state_nb(window, 1.0)


@njit(cache=True, nogil=True)
def rolling_var_update_nb(state: np.ndarray, x: float) -> float:
    """Feed one value; return the variance of the window ending at it."""
    return _moments_step_nb(state, x, K_VAR)


@njit(cache=True, nogil=True)
def rolling_std_nb(x: np.ndarray, window: int) -> np.ndarray:
    """Rolling sample standard deviation ``sqrt(rolling_var)``. Reference: ``rolling(window).std()``."""
    out = np.empty(x.shape[0], dtype=np.float64)
    _moments_into_nb(x, window, K_STD, 1.0, out)
    return out


@njit(cache=True, nogil=True, parallel=True)
def rolling_std_2d_nb(x: np.ndarray, window: int) -> np.ndarray:
    """:func:`rolling_std_nb` of each column of ``x[T, N]``."""
    out = np.empty(x.shape, dtype=np.float64)
    for j in prange(x.shape[1]):
        _moments_into_nb(x[:, j], window, K_STD, 1.0, out[:, j])
    return out


@njit(cache=True, nogil=True, parallel=True)
def rolling_std_grid_nb(x: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """:func:`rolling_std_nb` of ``x`` for each of ``windows``: ``float64[T, P]``."""
    out = np.empty((x.shape[0], windows.shape[0]), dtype=np.float64)
    for p in prange(windows.shape[0]):
        _moments_into_nb(x, windows[p], K_STD, 1.0, out[:, p])
    return out


@njit(cache=True, nogil=True)
def rolling_std_state_nb(window: int) -> np.ndarray:
    """State of a streaming :func:`rolling_std_nb`."""
    return _moments_state_nb(window, 1.0)


@njit(cache=True, nogil=True)
def rolling_std_update_nb(state: np.ndarray, x: float) -> float:
    """Feed one value; return the standard deviation of the window ending at it."""
    return _moments_step_nb(state, x, K_STD)


@njit(cache=True, nogil=True)
def rolling_zscore_nb(x: np.ndarray, window: int) -> np.ndarray:
    """Rolling z-score ``(x[t] - mean) / std`` over the window ending at ``t`` (ddof=1).

    NaN when the std is 0. Equals ``(x - rolling_mean_nb(x, w)) / rolling_std_nb(x, w)`` bit
    for bit. Reference: ``(s - s.rolling(w).mean()) / s.rolling(w).std()``.
    """
    out = np.empty(x.shape[0], dtype=np.float64)
    _moments_into_nb(x, window, K_ZSCORE, 1.0, out)
    return out


@njit(cache=True, nogil=True, parallel=True)
def rolling_zscore_2d_nb(x: np.ndarray, window: int) -> np.ndarray:
    """:func:`rolling_zscore_nb` of each column of ``x[T, N]``."""
    out = np.empty(x.shape, dtype=np.float64)
    for j in prange(x.shape[1]):
        _moments_into_nb(x[:, j], window, K_ZSCORE, 1.0, out[:, j])
    return out


@njit(cache=True, nogil=True, parallel=True)
def rolling_zscore_grid_nb(x: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """:func:`rolling_zscore_nb` of ``x`` for each of ``windows``: ``float64[T, P]``."""
    out = np.empty((x.shape[0], windows.shape[0]), dtype=np.float64)
    for p in prange(windows.shape[0]):
        _moments_into_nb(x, windows[p], K_ZSCORE, 1.0, out[:, p])
    return out


@njit(cache=True, nogil=True)
def rolling_zscore_state_nb(window: int) -> np.ndarray:
    """State of a streaming :func:`rolling_zscore_nb`."""
    return _moments_state_nb(window, 1.0)


@njit(cache=True, nogil=True)
def rolling_zscore_update_nb(state: np.ndarray, x: float) -> float:
    """Feed one value; return its z-score in the window ending at it."""
    return _moments_step_nb(state, x, K_ZSCORE)


@njit(cache=True, nogil=True)
def realised_vol_nb(x: np.ndarray, window: int, periods_per_year: float = 252.0) -> np.ndarray:
    """Realised volatility of prices ``x``: rolling std of log returns x ``sqrt(periods_per_year)``.

    The log returns are those of :func:`log_returns_nb` (NaN at ``t = 0``), so the first value
    is at ``t = window``; the std is the sample std (ddof=1) of the last ``window`` returns.
    ``periods_per_year`` annualises: 252 (default) for daily bars, 52 weekly, 12 monthly,
    ``252 * 390`` for US-equity 1-minute bars, ``365 * 1440`` for 24/7 crypto minutes.
    Reference: ``np.log(s).diff().rolling(window).std() * np.sqrt(periods_per_year)``.
    """
    out = np.empty(x.shape[0], dtype=np.float64)
    _moments_into_nb(x, window, K_RVOL, math.sqrt(periods_per_year), out)
    return out


@njit(cache=True, nogil=True, parallel=True)
def realised_vol_2d_nb(x: np.ndarray, window: int, periods_per_year: float = 252.0) -> np.ndarray:
    """:func:`realised_vol_nb` of each column of ``x[T, N]``."""
    out = np.empty(x.shape, dtype=np.float64)
    for j in prange(x.shape[1]):
        _moments_into_nb(x[:, j], window, K_RVOL, math.sqrt(periods_per_year), out[:, j])
    return out


@njit(cache=True, nogil=True, parallel=True)
def realised_vol_grid_nb(x: np.ndarray, windows: np.ndarray, periods_per_year: float = 252.0) -> np.ndarray:
    """:func:`realised_vol_nb` of ``x`` for each of ``windows``: ``float64[T, P]``."""
    out = np.empty((x.shape[0], windows.shape[0]), dtype=np.float64)
    for p in prange(windows.shape[0]):
        _moments_into_nb(x, windows[p], K_RVOL, math.sqrt(periods_per_year), out[:, p])
    return out


@njit(cache=True, nogil=True)
def realised_vol_state_nb(window: int, periods_per_year: float = 252.0) -> np.ndarray:
    """State of a streaming :func:`realised_vol_nb` (it keeps the previous price)."""
    return _moments_state_nb(window, math.sqrt(periods_per_year))


@njit(cache=True, nogil=True)
def realised_vol_update_nb(state: np.ndarray, x: float) -> float:
    """Feed one price; return the annualised volatility of the window ending at it."""
    return _moments_step_nb(state, x, K_RVOL)


# ---------------------------------------------------------------------------------------------
# Public min/max kernels


@njit(cache=True, nogil=True)
def rolling_min_nb(x: np.ndarray, window: int) -> np.ndarray:
    """Rolling minimum (monotonic deque, O(1) amortised). Reference: ``rolling(window).min()``."""
    out = np.empty(x.shape[0], dtype=np.float64)
    _minmax_into_nb(x, window, False, out)
    return out


@njit(cache=True, nogil=True, parallel=True)
def rolling_min_2d_nb(x: np.ndarray, window: int) -> np.ndarray:
    """:func:`rolling_min_nb` of each column of ``x[T, N]``."""
    out = np.empty(x.shape, dtype=np.float64)
    for j in prange(x.shape[1]):
        _minmax_into_nb(x[:, j], window, False, out[:, j])
    return out


@njit(cache=True, nogil=True, parallel=True)
def rolling_min_grid_nb(x: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """:func:`rolling_min_nb` of ``x`` for each of ``windows``: ``float64[T, P]``."""
    out = np.empty((x.shape[0], windows.shape[0]), dtype=np.float64)
    for p in prange(windows.shape[0]):
        _minmax_into_nb(x, windows[p], False, out[:, p])
    return out


@njit(cache=True, nogil=True)
def rolling_min_state_nb(window: int) -> np.ndarray:
    """State of a streaming :func:`rolling_min_nb` (the deque lives in it)."""
    return _minmax_state_nb(window, False)


@njit(cache=True, nogil=True)
def rolling_min_update_nb(state: np.ndarray, x: float) -> float:
    """Feed one value; return the minimum of the window ending at it."""
    return _minmax_step_nb(state, x)


@njit(cache=True, nogil=True)
def rolling_max_nb(x: np.ndarray, window: int) -> np.ndarray:
    """Rolling maximum (monotonic deque, O(1) amortised). Reference: ``rolling(window).max()``."""
    out = np.empty(x.shape[0], dtype=np.float64)
    _minmax_into_nb(x, window, True, out)
    return out


@njit(cache=True, nogil=True, parallel=True)
def rolling_max_2d_nb(x: np.ndarray, window: int) -> np.ndarray:
    """:func:`rolling_max_nb` of each column of ``x[T, N]``."""
    out = np.empty(x.shape, dtype=np.float64)
    for j in prange(x.shape[1]):
        _minmax_into_nb(x[:, j], window, True, out[:, j])
    return out


@njit(cache=True, nogil=True, parallel=True)
def rolling_max_grid_nb(x: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """:func:`rolling_max_nb` of ``x`` for each of ``windows``: ``float64[T, P]``."""
    out = np.empty((x.shape[0], windows.shape[0]), dtype=np.float64)
    for p in prange(windows.shape[0]):
        _minmax_into_nb(x, windows[p], True, out[:, p])
    return out


@njit(cache=True, nogil=True)
def rolling_max_state_nb(window: int) -> np.ndarray:
    """State of a streaming :func:`rolling_max_nb` (the deque lives in it)."""
    return _minmax_state_nb(window, True)


@njit(cache=True, nogil=True)
def rolling_max_update_nb(state: np.ndarray, x: float) -> float:
    """Feed one value; return the maximum of the window ending at it."""
    return _minmax_step_nb(state, x)


# ---------------------------------------------------------------------------------------------
# Public bivariate kernels


@njit(cache=True, nogil=True)
def rolling_corr_nb(x: np.ndarray, y: np.ndarray, window: int) -> np.ndarray:
    """Rolling Pearson correlation ``cov(x, y) / (std(x) std(y))``, clipped to [-1, 1].

    NaN when ``x`` or ``y`` is constant over the window. Reference:
    ``pd.Series(x).rolling(window).corr(pd.Series(y))``.
    """
    out = np.empty(x.shape[0], dtype=np.float64)
    _bivar_into_nb(x, y, window, K_CORR, out)
    return out


@njit(cache=True, nogil=True, parallel=True)
def rolling_corr_2d_nb(x: np.ndarray, y: np.ndarray, window: int) -> np.ndarray:
    """:func:`rolling_corr_nb` of each column pair of ``x[T, N]`` and ``y[T, N]``."""
    out = np.empty(x.shape, dtype=np.float64)
    for j in prange(x.shape[1]):
        _bivar_into_nb(x[:, j], y[:, j], window, K_CORR, out[:, j])
    return out


@njit(cache=True, nogil=True, parallel=True)
def rolling_corr_grid_nb(x: np.ndarray, y: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """:func:`rolling_corr_nb` of ``x, y`` for each of ``windows``: ``float64[T, P]``."""
    out = np.empty((x.shape[0], windows.shape[0]), dtype=np.float64)
    for p in prange(windows.shape[0]):
        _bivar_into_nb(x, y, windows[p], K_CORR, out[:, p])
    return out


@njit(cache=True, nogil=True)
def rolling_corr_state_nb(window: int) -> np.ndarray:
    """State of a streaming :func:`rolling_corr_nb`."""
    return _bivar_state_nb(window)


@njit(cache=True, nogil=True)
def rolling_corr_update_nb(state: np.ndarray, x: float, y: float) -> float:
    """Feed one pair; return the correlation of the window ending at it."""
    return _bivar_step_nb(state, x, y, K_CORR)


@njit(cache=True, nogil=True)
def rolling_beta_nb(x: np.ndarray, y: np.ndarray, window: int) -> np.ndarray:
    """Rolling beta of ``x`` on ``y``: ``cov(x, y) / var(y)`` (sample, ddof=1 in both).

    The slope of the least-squares regression of ``x`` on ``y`` (e.g. asset returns ``x`` on
    market returns ``y``). NaN when ``y`` is constant over the window. Reference:
    ``sx.rolling(w).cov(sy) / sy.rolling(w).var()``.
    """
    out = np.empty(x.shape[0], dtype=np.float64)
    _bivar_into_nb(x, y, window, K_BETA, out)
    return out


@njit(cache=True, nogil=True, parallel=True)
def rolling_beta_2d_nb(x: np.ndarray, y: np.ndarray, window: int) -> np.ndarray:
    """:func:`rolling_beta_nb` of each column pair of ``x[T, N]`` and ``y[T, N]``."""
    out = np.empty(x.shape, dtype=np.float64)
    for j in prange(x.shape[1]):
        _bivar_into_nb(x[:, j], y[:, j], window, K_BETA, out[:, j])
    return out


@njit(cache=True, nogil=True, parallel=True)
def rolling_beta_grid_nb(x: np.ndarray, y: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """:func:`rolling_beta_nb` of ``x, y`` for each of ``windows``: ``float64[T, P]``."""
    out = np.empty((x.shape[0], windows.shape[0]), dtype=np.float64)
    for p in prange(windows.shape[0]):
        _bivar_into_nb(x, y, windows[p], K_BETA, out[:, p])
    return out


@njit(cache=True, nogil=True)
def rolling_beta_state_nb(window: int) -> np.ndarray:
    """State of a streaming :func:`rolling_beta_nb`."""
    return _bivar_state_nb(window)


@njit(cache=True, nogil=True)
def rolling_beta_update_nb(state: np.ndarray, x: float, y: float) -> float:
    """Feed one pair; return the beta of ``x`` on ``y`` over the window ending at it."""
    return _bivar_step_nb(state, x, y, K_BETA)
