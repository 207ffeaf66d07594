"""Technical indicators as Numba kernels: EMA, WMA, MACD, Bollinger bands, RSI, ATR.

The simple moving average and the other rolling statistics live in :mod:`ntlab.kernels.rolling`;
the volume indicators (cumulative and rolling VWAP, OBV) in :mod:`ntlab.kernels.volume`.

Forms
-----
Each indicator comes in the forms of :mod:`ntlab.kernels` (``NAME_nb``, ``NAME_2d_nb``,
``NAME_grid_nb``, and the streaming ``NAME_state_nb(<params>) -> float64[K]`` /
``NAME_update_nb(state, x)``, callable from njit code; integer slots of a state, counters and
ring positions, are exact float64 values). Specific to this module:

* Indicators with several parameters (MACD, Bollinger) take one grid array per parameter, all
  of length ``P``, *zipped* (column ``p`` uses the ``p``-th entry of each array; build a product
  with ``np.meshgrid``).
* Every batch form takes an optional last argument ``out=None``, as in
  :mod:`ntlab.kernels.rolling` (the result's shape, ``float64``, nothing checked, no overlap
  with the inputs; the same numbers bit for bit); multi-output kernels take a tuple of three.
* Multi-output kernels return tuples (of arrays, or of floats for updates): MACD
  ``(macd, signal, hist)``, Bollinger ``(upper, middle, lower)`` (TA-Lib's orders).

The batch kernels build the same state and loop over the same scalar step function as the
update kernels, so streaming a series event by event gives the batch result bit for bit.

Missing values
--------------
A non-finite input (NaN or +/-inf) is *missing* (the NaN rule of :mod:`ntlab.kernels`, extended
to infinities so that one bad tick cannot poison a recursive state forever). For an event with
several inputs (ATR's high/low/close), the event is missing when any input is.

* Recursive kernels (EMA, MACD, RSI, ATR): a missing event gives NaN for that event and leaves
  the state unchanged (it is skipped); warm-up counts valid events only.
* Window kernels (WMA, Bollinger): a window that contains a missing event gives NaN, and the
  missing event leaves the window ``window`` events later.

Parameters are not validated here (the Python API does it): periods, spans and windows must be
integers >= 1, ``k`` finite, ``high >= low``.

Numerical stability
-------------------
Running sums (WMA) are compensated (Knuth's TwoSum): their error does not grow with the length
of the series. Bollinger bands use Welford add/remove updates with an exact two-pass
recomputation of the window each time the ring buffer wraps (every ``window`` events) and
whenever cancellation threatens the variance (a near-constant window after large moves; the
rounding bound is tracked), so a constant window has zero width and the bands stay within
~1e-9 of the two-pass values.

Implementation
--------------
Each indicator has one scalar step function over tuples of floats (state kept in registers);
the batch loop and the update both call it, and the ring-buffer steps receive the value leaving
the window and return the value to store instead of touching the state array. Kernels compile
with ``error_model="numpy"`` and guard their divisions, so they never raise.

Examples
--------
>>> import numpy as np
>>> x = np.array([1.0, 2.0, np.nan, 3.0, 4.0])
>>> ema_nb(x, 3)
array([  nan,   nan,   nan, 2.25 , 3.125])
>>> state = ema_state_nb(3)
>>> [float(ema_update_nb(state, v)) for v in x]
[nan, nan, nan, 2.25, 3.125]
>>> upper, middle, lower = bollinger_nb(np.array([1.0, 2.0, 3.0]), 2, 2.0)
>>> upper.tolist(), middle.tolist(), lower.tolist()
([nan, 2.5, 3.5], [nan, 1.5, 2.5], [nan, 0.5, 1.5])
>>> rsi_nb(np.array([1.0, 2.0, 1.5, 1.5, 2.5]), 2).round(3).tolist()
[nan, nan, 66.667, 66.667, 90.909]
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ntlab.kernels._common import _KW, _PAR, _add_nb, _store_nb

__all__ = [
    "atr_2d_nb", "atr_grid_nb", "atr_nb", "atr_state_nb", "atr_update_nb",
    "bollinger_2d_nb", "bollinger_grid_nb", "bollinger_nb", "bollinger_state_nb", "bollinger_update_nb",
    "ema_2d_nb", "ema_grid_nb", "ema_nb", "ema_state_nb", "ema_update_nb",
    "macd_2d_nb", "macd_grid_nb", "macd_nb", "macd_state_nb", "macd_update_nb",
    "rsi_2d_nb", "rsi_grid_nb", "rsi_nb", "rsi_state_nb", "rsi_update_nb",
    "wma_2d_nb", "wma_grid_nb", "wma_nb", "wma_state_nb", "wma_update_nb",
]

# Bollinger: recompute the window exactly when M2 < _RECOMPUTE * (sum of the magnitudes of the
# updates since the last recomputation), i.e. when rounding could exceed ~1e-9 of the variance.
_RECOMPUTE = 1e-6


# ---------------------------------------------------------------------------------------------
# EMA. State: span, alpha, beta | count (valid values, capped at span), mean.


@njit(**_KW)
def _ema_step_nb(span: float, alpha: float, beta: float, count: float, mean: float, x: float) -> tuple:
    if not math.isfinite(x):
        return count, mean, np.nan
    if count == 0.0:
        mean = x
    else:
        mean = beta * mean + alpha * x
    if count < span:
        count += 1.0
    return count, mean, mean if count >= span else np.nan


@njit(**_KW)
def ema_state_nb(span: int) -> np.ndarray:
    """Return a fresh streaming state for :func:`ema_nb` (``float64[5]``)."""
    state = np.zeros(5, dtype=np.float64)
    state[0] = span
    state[1] = 2.0 / (state[0] + 1.0)
    state[2] = 1.0 - state[1]
    return state


@njit(**_KW)
def ema_update_nb(state: np.ndarray, x: float) -> float:
    """Feed one value to an :func:`ema_state_nb` state; return the EMA (NaN in warm-up)."""
    count, mean, out = _ema_step_nb(state[0], state[1], state[2], state[3], state[4], x)
    state[3] = count
    state[4] = mean
    return out


@njit(**_KW)
def _ema_run_nb(x: np.ndarray, span: int, out: np.ndarray) -> None:
    s = ema_state_nb(span)
    span_f, alpha, beta, count, mean = s[0], s[1], s[2], s[3], s[4]
    for i in range(x.shape[0]):
        count, mean, v = _ema_step_nb(span_f, alpha, beta, count, mean, x[i])
        out[i] = v


@njit(**_KW)
def ema_nb(x: np.ndarray, span: int, out: np.ndarray | None = None) -> np.ndarray:
    """Exponential moving average with ``alpha = 2 / (span + 1)``.

    Parameters
    ----------
    x : float64[T]
        The series.
    span : int
        The span, >= 1 (``span = 1`` returns ``x`` itself).

    Returns
    -------
    float64[T]

    Notes
    -----
    ``m = x[first]``, then ``m = (1 - alpha) m + alpha x[t]``: the recursion of pandas
    ``ewm(span=span, adjust=False)``, started at the first value. Warm-up: NaN until ``span``
    valid values were seen (the first ``span - 1`` outputs without missing values). A missing
    value gives NaN and is skipped. Reference: pandas
    ``ewm(span=span, adjust=False, ignore_na=True, min_periods=span).mean()``, NaN where the input
    is missing.
    """
    if out is None:
        out = np.empty(x.shape[0], dtype=np.float64)
    _ema_run_nb(x, span, out)
    return out


@njit(**_PAR)
def ema_2d_nb(x: np.ndarray, span: int, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`ema_nb` of each column of ``x`` (``float64[T, N]``)."""
    if out is None:
        out = np.empty(x.shape, dtype=np.float64)
    for j in prange(x.shape[1]):
        _ema_run_nb(x[:, j], span, out[:, j])
    return out


@njit(**_PAR)
def ema_grid_nb(x: np.ndarray, spans: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`ema_nb` of ``x`` for each span in ``spans`` (``int64[P]``): ``float64[T, P]``."""
    if out is None:
        out = np.empty((x.shape[0], spans.shape[0]), dtype=np.float64)
    for p in prange(spans.shape[0]):
        _ema_run_nb(x, spans[p], out[:, p])
    return out


# ---------------------------------------------------------------------------------------------
# MACD. State: (span, alpha, beta) for fast, slow, signal | (count, mean) for each.


@njit(**_KW)
def _macd_step_nb(cfg: tuple, st: tuple, x: float) -> tuple:
    nf, af, bf, ns, a_s, bs, ng, ag, bg = cfg
    cf, mf, cs, ms, cg, mg = st
    cf, mf, ef = _ema_step_nb(nf, af, bf, cf, mf, x)
    cs, ms, es = _ema_step_nb(ns, a_s, bs, cs, ms, x)
    m = ef - es  # NaN in warm-up and for a missing x: the signal EMA then skips it
    cg, mg, sg = _ema_step_nb(ng, ag, bg, cg, mg, m)
    return (cf, mf, cs, ms, cg, mg), m, sg, m - sg


@njit(**_KW)
def macd_state_nb(fast: int, slow: int, signal: int) -> np.ndarray:
    """Return a fresh streaming state for :func:`macd_nb` (``float64[15]``)."""
    state = np.zeros(15, dtype=np.float64)
    state[0] = fast
    state[3] = slow
    state[6] = signal
    for i in range(0, 9, 3):
        state[i + 1] = 2.0 / (state[i] + 1.0)
        state[i + 2] = 1.0 - state[i + 1]
    return state


@njit(**_KW)
def _macd_load_nb(s: np.ndarray) -> tuple:
    return (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8]), (s[9], s[10], s[11], s[12], s[13], s[14])


@njit(**_KW)
def macd_update_nb(state: np.ndarray, x: float) -> tuple[float, float, float]:
    """Feed one value to a :func:`macd_state_nb` state; return ``(macd, signal, hist)``."""
    cfg, st = _macd_load_nb(state)
    st, m, sg, h = _macd_step_nb(cfg, st, x)
    _store_nb(state, 9, st)
    return m, sg, h


@njit(**_KW)
def _macd_run_nb(x: np.ndarray, fast: int, slow: int, signal: int, o_m: np.ndarray, o_s: np.ndarray,
                 o_h: np.ndarray) -> None:
    cfg, st = _macd_load_nb(macd_state_nb(fast, slow, signal))
    for i in range(x.shape[0]):
        st, m, sg, h = _macd_step_nb(cfg, st, x[i])
        o_m[i] = m
        o_s[i] = sg
        o_h[i] = h


@njit(**_KW)
def macd_nb(x: np.ndarray, fast: int, slow: int, signal: int,
            out: tuple | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Moving Average Convergence/Divergence (Gerald Appel): ``(macd, signal, hist)``.

    Parameters
    ----------
    x : float64[T]
        The series.
    fast, slow, signal : int
        EMA spans, each >= 1 (usually ``fast < slow``; 12, 26, 9 are Appel's).

    Returns
    -------
    macd, signal, hist : float64[T]
        ``macd = EMA_fast(x) - EMA_slow(x)``, ``signal = EMA_signal(macd)``,
        ``hist = macd - signal``.

    Notes
    -----
    Every EMA is :func:`ema_nb` (the pandas ``ewm(adjust=False)`` recursion). Warm-up: the MACD
    line starts when both EMAs are out of warm-up (at the ``max(fast, slow)``-th valid value);
    the signal EMA starts its recursion at the first MACD value and gives its first value when
    the MACD line has ``signal`` values, i.e. at index ``max(fast, slow) + signal - 2`` without
    missing values; ``hist`` starts with the signal. A missing ``x`` gives NaN in all three and
    is skipped. Reference: pandas ``ewm`` as for :func:`ema_nb`, the signal's applied to the
    MACD line.
    """
    n = x.shape[0]
    if out is None:
        o_m = np.empty(n, dtype=np.float64)
        o_s = np.empty(n, dtype=np.float64)
        o_h = np.empty(n, dtype=np.float64)
    else:
        o_m, o_s, o_h = out
    _macd_run_nb(x, fast, slow, signal, o_m, o_s, o_h)
    return o_m, o_s, o_h


@njit(**_PAR)
def macd_2d_nb(x: np.ndarray, fast: int, slow: int, signal: int,
               out: tuple | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`macd_nb` of each column of ``x`` (``float64[T, N]``): three ``float64[T, N]``."""
    if out is None:
        o_m = np.empty(x.shape, dtype=np.float64)
        o_s = np.empty(x.shape, dtype=np.float64)
        o_h = np.empty(x.shape, dtype=np.float64)
    else:
        o_m, o_s, o_h = out
    for j in prange(x.shape[1]):
        _macd_run_nb(x[:, j], fast, slow, signal, o_m[:, j], o_s[:, j], o_h[:, j])
    return o_m, o_s, o_h


@njit(**_PAR)
def macd_grid_nb(x: np.ndarray, fasts: np.ndarray, slows: np.ndarray, signals: np.ndarray,
                 out: tuple | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`macd_nb` of ``x`` for zipped ``int64[P]`` spans: three ``float64[T, P]``.

    Column ``p`` uses ``(fasts[p], slows[p], signals[p])``; the three arrays have length ``P``.
    """
    shape = (x.shape[0], fasts.shape[0])
    if out is None:
        o_m = np.empty(shape, dtype=np.float64)
        o_s = np.empty(shape, dtype=np.float64)
        o_h = np.empty(shape, dtype=np.float64)
    else:
        o_m, o_s, o_h = out
    for p in prange(fasts.shape[0]):
        _macd_run_nb(x, fasts[p], slows[p], signals[p], o_m[:, p], o_s[:, p], o_h[:, p])
    return o_m, o_s, o_h


# ---------------------------------------------------------------------------------------------
# WMA. State: window, denominator | head, filled, n_missing, S (s, c), W (s, c) | ring buffer.
# The step functions of the ring-buffer kernels take the value leaving the window and return
# the value to store: they never see the state array, so they stay in registers.

_WMA_BUF = 9


@njit(**_KW)
def wma_state_nb(window: int) -> np.ndarray:
    """Return a fresh streaming state for :func:`wma_nb` (``float64[9 + window]``)."""
    state = np.zeros(_WMA_BUF + window, dtype=np.float64)
    state[0] = window
    state[1] = window * (window + 1.0) / 2.0
    return state


@njit(**_KW)
def _wma_step_nb(n: float, denom: float, st: tuple, old: float, x: float) -> tuple:
    head, filled, bad, ss, sc, ws, wc = st
    # Every value in the window loses one unit of weight (the oldest drops to 0): W -= S.
    ws, wc = _add_nb(ws, wc, -ss)
    ws, wc = _add_nb(ws, wc, -sc)
    if filled == n:
        if math.isnan(old):
            bad -= 1.0
        else:
            ss, sc = _add_nb(ss, sc, -old)
    else:
        filled += 1.0
    if math.isfinite(x):
        ss, sc = _add_nb(ss, sc, x)
        ws, wc = _add_nb(ws, wc, n * x)
    else:
        x = np.nan
        bad += 1.0
    head = head + 1.0 if head + 1.0 < n else 0.0
    out = (ws + wc) / denom if filled == n and bad == 0.0 else np.nan
    return (head, filled, bad, ss, sc, ws, wc), x, out


@njit(**_KW)
def wma_update_nb(state: np.ndarray, x: float) -> float:
    """Feed one value to a :func:`wma_state_nb` state; return the WMA (NaN in warm-up)."""
    j = _WMA_BUF + int(state[2])
    st = (state[2], state[3], state[4], state[5], state[6], state[7], state[8])
    st, state[j], out = _wma_step_nb(state[0], state[1], st, state[j], x)
    _store_nb(state, 2, st)
    return out


@njit(**_KW)
def _wma_run_nb(x: np.ndarray, window: int, out: np.ndarray) -> None:
    state = wma_state_nb(window)
    n, denom = state[0], state[1]
    st = (state[2], state[3], state[4], state[5], state[6], state[7], state[8])
    for i in range(x.shape[0]):
        j = _WMA_BUF + int(st[0])
        st, state[j], v = _wma_step_nb(n, denom, st, state[j], x[i])
        out[i] = v


@njit(**_KW)
def wma_nb(x: np.ndarray, window: int, out: np.ndarray | None = None) -> np.ndarray:
    """Linearly weighted moving average, weights ``1..window`` (the newest weighs ``window``).

    Parameters
    ----------
    x : float64[T]
        The series.
    window : int
        The window ``n``, >= 1.

    Returns
    -------
    float64[T]

    Notes
    -----
    ``WMA[t] = sum_{j=0}^{n-1} (n - j) x[t - j] / (n (n + 1) / 2)``. O(1) per event from the
    running sum ``S`` and weighted sum ``W`` of the window: ``W <- W - S + n x[t]``, then
    ``S <- S - x[t - n] + x[t]`` (both compensated). Warm-up: NaN for the first ``window - 1``
    events; a window containing a missing value gives NaN. Reference: NumPy
    ``sliding_window_view(x, n) @ arange(1, n + 1) / (n (n + 1) / 2)``.
    """
    if out is None:
        out = np.empty(x.shape[0], dtype=np.float64)
    _wma_run_nb(x, window, out)
    return out


@njit(**_PAR)
def wma_2d_nb(x: np.ndarray, window: int, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`wma_nb` of each column of ``x`` (``float64[T, N]``)."""
    if out is None:
        out = np.empty(x.shape, dtype=np.float64)
    for j in prange(x.shape[1]):
        _wma_run_nb(x[:, j], window, out[:, j])
    return out


@njit(**_PAR)
def wma_grid_nb(x: np.ndarray, windows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`wma_nb` of ``x`` for each window in ``windows`` (``int64[P]``): ``float64[T, P]``."""
    if out is None:
        out = np.empty((x.shape[0], windows.shape[0]), dtype=np.float64)
    for p in prange(windows.shape[0]):
        _wma_run_nb(x, windows[p], out[:, p])
    return out


# ---------------------------------------------------------------------------------------------
# Bollinger bands. State: window, k | head, filled, n_missing, count, mean, M2, err | ring
# buffer (err bounds the rounding accumulated in M2 since the last exact recomputation).

_BB_BUF = 9


@njit(**_KW)
def bollinger_state_nb(window: int, k: float) -> np.ndarray:
    """Return a fresh streaming state for :func:`bollinger_nb` (``float64[9 + window]``)."""
    state = np.zeros(_BB_BUF + window, dtype=np.float64)
    state[0] = window
    state[1] = k
    return state


@njit(**_KW)
def _bb_step_nb(n: float, st: tuple, old: float, x: float) -> tuple:
    """Push ``x`` (``old`` leaves a full window); return ``(st, value to store, recompute?)``."""
    head, filled, bad, cnt, mean, m2, err = st
    if filled == n:
        if math.isnan(old):
            bad -= 1.0
    else:
        filled += 1.0
        old = np.nan
    good = math.isfinite(x)
    old_ok = not math.isnan(old)
    if good and old_ok:  # replace old by x, count unchanged
        d = x - old
        mean0 = mean
        mean = mean0 + d / cnt
        a = x - mean
        b = old - mean0
        m2 += d * (a + b)
        err += abs(d) * (abs(a) + abs(b))
    elif good:  # add x
        cnt += 1.0
        d = x - mean
        mean += d / cnt
        a = x - mean
        m2 += d * a
        err += abs(d * a)
    elif old_ok:  # remove old
        cnt -= 1.0
        d = old - mean
        mean = mean - d / cnt if cnt > 0.0 else 0.0
        m2 = m2 - d * (old - mean) if cnt > 0.0 else 0.0
        err += abs(d * (old - mean))
    if not good:
        x = np.nan
        bad += 1.0
    head = head + 1.0 if head + 1.0 < n else 0.0
    exact = head == 0.0 or (filled == n and bad == 0.0 and m2 < _RECOMPUTE * err)
    return (head, filled, bad, cnt, mean, m2, err), x, exact


@njit(**_KW)
def _bb_exact_nb(st: tuple, state: np.ndarray) -> tuple:
    """``st`` with count, mean and M2 recomputed from the ring buffer (two passes)."""
    end = _BB_BUF + int(state[0])
    cnt = 0.0
    total = 0.0
    for i in range(_BB_BUF, end):
        if not math.isnan(state[i]):
            cnt += 1.0
            total += state[i]
    mean = total / cnt if cnt > 0.0 else 0.0
    m2 = 0.0
    for i in range(_BB_BUF, end):
        if not math.isnan(state[i]):
            m2 += (state[i] - mean) * (state[i] - mean)
    return st[0], st[1], st[2], cnt, mean, m2, 0.0


@njit(**_KW)
def _bb_value_nb(n: float, k: float, st: tuple) -> tuple[float, float, float]:
    if st[1] < n or st[2] > 0.0:
        return np.nan, np.nan, np.nan
    mean, m2 = st[4], st[5]
    sd = math.sqrt(m2 / n) if m2 > 0.0 else 0.0
    return mean + k * sd, mean, mean - k * sd


@njit(**_KW)
def bollinger_update_nb(state: np.ndarray, x: float) -> tuple[float, float, float]:
    """Feed one value to a :func:`bollinger_state_nb` state; return ``(upper, middle, lower)``."""
    j = _BB_BUF + int(state[2])
    st = (state[2], state[3], state[4], state[5], state[6], state[7], state[8])
    st, state[j], exact = _bb_step_nb(state[0], st, state[j], x)
    if exact:
        st = _bb_exact_nb(st, state)
    _store_nb(state, 2, st)
    return _bb_value_nb(state[0], state[1], st)


@njit(**_KW)
def _bb_run_nb(x: np.ndarray, window: int, k: float, o_u: np.ndarray, o_m: np.ndarray, o_l: np.ndarray) -> None:
    state = bollinger_state_nb(window, k)
    n, k = state[0], state[1]
    st = (state[2], state[3], state[4], state[5], state[6], state[7], state[8])
    for i in range(x.shape[0]):
        j = _BB_BUF + int(st[0])
        st, state[j], exact = _bb_step_nb(n, st, state[j], x[i])
        if exact:
            st = _bb_exact_nb(st, state)
        o_u[i], o_m[i], o_l[i] = _bb_value_nb(n, k, st)


@njit(**_KW)
def bollinger_nb(x: np.ndarray, window: int, k: float,
                 out: tuple | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bollinger bands: ``(upper, middle, lower)``.

    Parameters
    ----------
    x : float64[T]
        The series.
    window : int
        The window, >= 1 (20 is John Bollinger's default).
    k : float
        Width in standard deviations, finite (2.0 is the default).

    Returns
    -------
    upper, middle, lower : float64[T]
        ``middle = mean(window)``, ``upper/lower = middle +/- k * std(window)``.

    Notes
    -----
    The standard deviation is the *population* one (``ddof=0``), as John Bollinger defines the
    bands (pandas' ``rolling().std()`` default is ``ddof=1``). Warm-up: NaN for the first
    ``window - 1`` events; a window containing a missing value gives NaN. A constant window gives
    ``upper == middle == lower`` (up to the rounding of the mean). Reference: NumPy
    ``sliding_window_view`` ``mean`` and ``std``; pandas ``rolling(window).mean()`` and
    ``.std(ddof=0)``.
    """
    n = x.shape[0]
    if out is None:
        o_u = np.empty(n, dtype=np.float64)
        o_m = np.empty(n, dtype=np.float64)
        o_l = np.empty(n, dtype=np.float64)
    else:
        o_u, o_m, o_l = out
    _bb_run_nb(x, window, k, o_u, o_m, o_l)
    return o_u, o_m, o_l


@njit(**_PAR)
def bollinger_2d_nb(x: np.ndarray, window: int, k: float,
                    out: tuple | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`bollinger_nb` of each column of ``x`` (``float64[T, N]``): three ``float64[T, N]``."""
    if out is None:
        o_u = np.empty(x.shape, dtype=np.float64)
        o_m = np.empty(x.shape, dtype=np.float64)
        o_l = np.empty(x.shape, dtype=np.float64)
    else:
        o_u, o_m, o_l = out
    for j in prange(x.shape[1]):
        _bb_run_nb(x[:, j], window, k, o_u[:, j], o_m[:, j], o_l[:, j])
    return o_u, o_m, o_l


@njit(**_PAR)
def bollinger_grid_nb(x: np.ndarray, windows: np.ndarray, ks: np.ndarray,
                      out: tuple | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`bollinger_nb` of ``x`` for zipped ``windows`` (``int64[P]``) and ``ks`` (``float64[P]``).

    Returns three ``float64[T, P]``; column ``p`` uses ``(windows[p], ks[p])``.
    """
    shape = (x.shape[0], windows.shape[0])
    if out is None:
        o_u = np.empty(shape, dtype=np.float64)
        o_m = np.empty(shape, dtype=np.float64)
        o_l = np.empty(shape, dtype=np.float64)
    else:
        o_u, o_m, o_l = out
    for p in prange(windows.shape[0]):
        _bb_run_nb(x, windows[p], ks[p], o_u[:, p], o_m[:, p], o_l[:, p])
    return o_u, o_m, o_l


# ---------------------------------------------------------------------------------------------
# Wilder smoothing (RSI, ATR): alpha = 1 / n, i.e. avg = ((n - 1) avg + new) / n.
# RSI state: period, alpha, beta | count (valid values, capped at period + 1), prev, average
# gain, average loss (plain sums of the first changes until the seed).


@njit(**_KW)
def rsi_state_nb(period: int) -> np.ndarray:
    """Return a fresh streaming state for :func:`rsi_nb` (``float64[7]``)."""
    state = np.zeros(7, dtype=np.float64)
    state[0] = period
    state[1] = 1.0 / state[0]
    state[2] = 1.0 - state[1]
    return state


@njit(**_KW)
def _rsi_step_nb(cfg: tuple, st: tuple, x: float) -> tuple:
    n, alpha, beta = cfg
    count, prev, ag, al = st
    if not math.isfinite(x):
        return st, np.nan
    if count == 0.0:
        return (1.0, x, ag, al), np.nan
    d = x - prev
    g = max(0.0, d)
    loss = max(0.0, -d)
    if count > n:
        ag = beta * ag + alpha * g
        al = beta * al + alpha * loss
    else:
        ag += g
        al += loss
        count += 1.0
        if count <= n:
            return (count, x, ag, al), np.nan
        ag = ag / n  # the seed: simple averages of the first n changes
        al = al / n
    total = ag + al
    return (count, x, ag, al), 100.0 * (ag / total) if total > 0.0 else 50.0


@njit(**_KW)
def rsi_update_nb(state: np.ndarray, x: float) -> float:
    """Feed one value to an :func:`rsi_state_nb` state; return the RSI (NaN in warm-up)."""
    st, out = _rsi_step_nb((state[0], state[1], state[2]), (state[3], state[4], state[5], state[6]), x)
    _store_nb(state, 3, st)
    return out


@njit(**_KW)
def _rsi_run_nb(x: np.ndarray, period: int, out: np.ndarray) -> None:
    s = rsi_state_nb(period)
    cfg = (s[0], s[1], s[2])
    st = (s[3], s[4], s[5], s[6])
    for i in range(x.shape[0]):
        st, v = _rsi_step_nb(cfg, st, x[i])
        out[i] = v


@njit(**_KW)
def rsi_nb(x: np.ndarray, period: int, out: np.ndarray | None = None) -> np.ndarray:
    """Relative Strength Index, J. Welles Wilder (1978), in ``[0, 100]``.

    Parameters
    ----------
    x : float64[T]
        The series (closes).
    period : int
        The period ``n``, >= 1 (14 is Wilder's).

    Returns
    -------
    float64[T]

    Notes
    -----
    Changes ``d = x[t] - x[t-1]``, gains ``max(d, 0)``, losses ``max(-d, 0)``. The average gain and
    loss are seeded with the simple means of the first ``n`` changes, then smoothed by Wilder:
    ``avg = ((n - 1) avg + new) / n`` (an EMA with ``alpha = 1 / n``).
    ``RSI = 100 - 100 / (1 + avg_gain / avg_loss) = 100 (avg_gain / (avg_gain + avg_loss))``:
    100 when there are only gains, and 50 (neutral) when there was no change at all (0/0).
    Warm-up: the first value is at the ``(n + 1)``-th valid value (index ``n`` without missing
    values). A missing value gives NaN and is skipped (the next change is taken from the last
    valid value). Reference: a NumPy loop of Wilder's definition, and pandas
    ``ewm(alpha=1/n, adjust=False)`` of gains and losses after the seed.
    """
    if out is None:
        out = np.empty(x.shape[0], dtype=np.float64)
    _rsi_run_nb(x, period, out)
    return out


@njit(**_PAR)
def rsi_2d_nb(x: np.ndarray, period: int, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`rsi_nb` of each column of ``x`` (``float64[T, N]``)."""
    if out is None:
        out = np.empty(x.shape, dtype=np.float64)
    for j in prange(x.shape[1]):
        _rsi_run_nb(x[:, j], period, out[:, j])
    return out


@njit(**_PAR)
def rsi_grid_nb(x: np.ndarray, periods: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`rsi_nb` of ``x`` for each period in ``periods`` (``int64[P]``): ``float64[T, P]``."""
    if out is None:
        out = np.empty((x.shape[0], periods.shape[0]), dtype=np.float64)
    for p in prange(periods.shape[0]):
        _rsi_run_nb(x, periods[p], out[:, p])
    return out


# ---------------------------------------------------------------------------------------------
# ATR. State: period, alpha, beta | count (valid bars, capped at period), prev close, ATR (the
# plain sum of the first true ranges until the seed).


@njit(**_KW)
def atr_state_nb(period: int) -> np.ndarray:
    """Return a fresh streaming state for :func:`atr_nb` (``float64[6]``)."""
    state = np.zeros(6, dtype=np.float64)
    state[0] = period
    state[1] = 1.0 / state[0]
    state[2] = 1.0 - state[1]
    return state


@njit(**_KW)
def _atr_step_nb(cfg: tuple, st: tuple, high: float, low: float, close: float) -> tuple:
    n, alpha, beta = cfg
    count, pc, atr = st
    if not (math.isfinite(high) and math.isfinite(low) and math.isfinite(close)):
        return st, np.nan
    tr = high - low
    if count > 0.0:
        tr = max(tr, abs(high - pc), abs(low - pc))
    if count >= n:
        atr = beta * atr + alpha * tr
    else:
        atr += tr
        count += 1.0
        if count < n:
            return (count, close, atr), np.nan
        atr = atr / n  # the seed: the mean of the first n true ranges
    return (count, close, atr), atr


@njit(**_KW)
def atr_update_nb(state: np.ndarray, high: float, low: float, close: float) -> float:
    """Feed one bar to an :func:`atr_state_nb` state; return the ATR (NaN in warm-up)."""
    st, out = _atr_step_nb((state[0], state[1], state[2]), (state[3], state[4], state[5]), high, low, close)
    _store_nb(state, 3, st)
    return out


@njit(**_KW)
def _atr_run_nb(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int, out: np.ndarray) -> None:
    s = atr_state_nb(period)
    cfg = (s[0], s[1], s[2])
    st = (s[3], s[4], s[5])
    for i in range(high.shape[0]):
        st, v = _atr_step_nb(cfg, st, high[i], low[i], close[i])
        out[i] = v


@njit(**_KW)
def atr_nb(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int,
           out: np.ndarray | None = None) -> np.ndarray:
    """Average True Range, J. Welles Wilder (1978).

    Parameters
    ----------
    high, low, close : float64[T]
        The bars (``high >= low``).
    period : int
        The period ``n``, >= 1 (14 is Wilder's).

    Returns
    -------
    float64[T]

    Notes
    -----
    ``TR[t] = max(high - low, |high - close[t-1]|, |low - close[t-1]|)`` and ``TR[0] = high - low``.
    The ATR is seeded with the mean of the first ``n`` true ranges (``TR[0]`` included), then
    smoothed by Wilder: ``ATR = ((n - 1) ATR + TR) / n`` (alpha = 1/n). Warm-up: the first value
    is at the ``n``-th valid bar (index ``n - 1``; TA-Lib skips ``TR[0]`` and starts at index
    ``n``). A bar with a missing high, low or close gives NaN and is skipped (the next true range
    uses the last valid close). Reference: a NumPy loop of Wilder's definition.
    """
    if out is None:
        out = np.empty(high.shape[0], dtype=np.float64)
    _atr_run_nb(high, low, close, period, out)
    return out


@njit(**_PAR)
def atr_2d_nb(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int,
              out: np.ndarray | None = None) -> np.ndarray:
    """:func:`atr_nb` of each column of ``high``, ``low``, ``close`` (``float64[T, N]`` each)."""
    if out is None:
        out = np.empty(high.shape, dtype=np.float64)
    for j in prange(high.shape[1]):
        _atr_run_nb(high[:, j], low[:, j], close[:, j], period, out[:, j])
    return out


@njit(**_PAR)
def atr_grid_nb(high: np.ndarray, low: np.ndarray, close: np.ndarray, periods: np.ndarray,
                out: np.ndarray | None = None) -> np.ndarray:
    """:func:`atr_nb` for each period in ``periods`` (``int64[P]``): ``float64[T, P]``."""
    if out is None:
        out = np.empty((high.shape[0], periods.shape[0]), dtype=np.float64)
    for p in prange(periods.shape[0]):
        _atr_run_nb(high, low, close, periods[p], out[:, p])
    return out
