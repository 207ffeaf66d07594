"""Indicator kernels: 1-D = 2-D = grid column = streaming (bit for bit) = reference (1e-9).

The references are written here from the definitions, independently of the kernels: pandas
``ewm``/``rolling`` and NumPy loops, ``sliding_window_view`` and extended-precision ``cumsum``.
Missing values are NaN or +/-inf (the kernels treat both as missing); the references first
turn them into NaN and then apply the documented rules. Tolerance: ``rtol=1e-9`` and
``atol=1e-9 * scale``, where ``scale`` is the size of the data, for values that cancel to near 0
(MACD histogram, OBV).
"""

from __future__ import annotations

import doctest
import math

import numba
import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

import ntlab.datasets
from ntlab.kernels import indicators as ki
from ntlab.kernels import volume as kv

# The indicator kernel modules: technical indicators, volume indicators.
MODULES = (ki, kv)

NO_JIT = bool(numba.config.DISABLE_JIT)
PROPERTY = settings(
    deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
MISSING = (np.nan, np.inf, -np.inf)
PERIOD = st.integers(1, 12)


# ---------------------------------------------------------------------------------------------
# Data and comparisons


@st.composite
def series(draw: st.DrawFn, lo: float = -1e4, hi: float = 1e4, missing: bool = True) -> np.ndarray:
    """Up to 40 values: arbitrary floats mixed with small steps (repeats, flat runs), some missing."""
    n = draw(st.integers(0, 40))
    small = st.integers(0, 8).map(lambda i: min(max(lo + i * 0.25 + 1.0, lo), hi))
    elems = st.one_of(st.floats(lo, hi, allow_nan=False, allow_infinity=False), small)
    x = np.array(draw(st.lists(elems, min_size=n, max_size=n)), dtype=np.float64)
    if missing and n:
        for i in draw(st.lists(st.integers(0, n - 1), max_size=3)):
            x[i] = draw(st.sampled_from(MISSING))
    return x


@st.composite
def bars(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """High, low, close with high >= low; close anywhere (gaps make the |high - prev close| terms win)."""
    close = draw(series(lo=1.0, hi=1e3, missing=False))
    n = close.shape[0]
    up = np.array(draw(st.lists(st.floats(0.0, 50.0), min_size=n, max_size=n)), dtype=np.float64)
    down = np.array(draw(st.lists(st.floats(0.0, 50.0), min_size=n, max_size=n)), dtype=np.float64)
    high, low = close + up, close - down
    if n:
        for i in draw(st.lists(st.integers(0, n - 1), max_size=3)):
            which = draw(st.sampled_from((high, low, close)))
            which[i] = draw(st.sampled_from(MISSING))
    return high, low, close


@st.composite
def price_volume(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    price = draw(series(lo=0.01, hi=1e4, missing=False))
    n = price.shape[0]
    # volumes 0 or >= 1e-3: sums keep ~1e-16 of the largest volume of the recent past, so a
    # window of volumes far below it (1e-200 after 1e6) is not resolved (NaN or imprecise)
    vol = st.one_of(st.just(0.0), st.floats(1e-3, 1e6), st.integers(1, 100).map(float))
    volume = np.array(draw(st.lists(vol, min_size=n, max_size=n)), dtype=np.float64)
    if n:
        for i in draw(st.lists(st.integers(0, n - 1), max_size=3)):
            which = draw(st.sampled_from((price, volume)))
            which[i] = draw(st.sampled_from(MISSING))
    return price, volume


def clean(x: np.ndarray) -> np.ndarray:
    """The reference's view of the input: every non-finite value is NaN."""
    return np.where(np.isfinite(x), x, np.nan)


def scale(*arrays: np.ndarray) -> float:
    finite = [np.abs(a[np.isfinite(a)]) for a in arrays]
    return max([1.0] + [float(f.max()) for f in finite if f.size])


def assert_identical(got: np.ndarray, want: np.ndarray) -> None:
    """Same NaN positions and the same bits elsewhere."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    assert np.array_equal(np.isnan(got), np.isnan(want))
    keep = ~np.isnan(got)
    assert np.array_equal(got[keep].view(np.int64), want[keep].view(np.int64))


def assert_close(got: np.ndarray, want: np.ndarray, size: float = 1.0) -> None:
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * size, equal_nan=True)


def columns(*arrays: np.ndarray) -> list[np.ndarray]:
    """2-D inputs: each array, its reverse and a rotation as three columns (same transform for all)."""
    return [np.column_stack([a, a[::-1], np.roll(a, 3)]) for a in arrays]


def grid_of(p: int) -> np.ndarray:
    return np.array([p, p + 2, max(1, p - 1)], dtype=np.int64)


def stream(state: np.ndarray, update: object, n_out: int, *inputs: np.ndarray) -> np.ndarray:
    """Feed the inputs event by event; one row per event, one column per output."""
    rows = [update(state, *(float(a[i]) for a in inputs)) for i in range(inputs[0].shape[0])]
    return np.array(rows, dtype=np.float64).reshape(inputs[0].shape[0], n_out)


def check_forms(one: object, two: object, grid: object, state: object, update: object,
                inputs: tuple[np.ndarray, ...], params: tuple, grid_params: tuple[np.ndarray, ...]) -> tuple:
    """Check 1-D = 2-D columns = grid columns = streaming, bit for bit; return the 1-D outputs."""
    def as_tuple(r: object) -> tuple:
        return r if isinstance(r, tuple) else (r,)

    ref = as_tuple(one(*inputs, *params))
    cols = columns(*inputs)
    out2 = as_tuple(two(*cols, *params))
    for j in range(3):
        by_col = as_tuple(one(*(np.ascontiguousarray(c[:, j]) for c in cols), *params))
        for a, b in zip(out2, by_col, strict=True):
            assert_identical(a[:, j], b)
    if grid is not None:
        outg = as_tuple(grid(*inputs, *grid_params))
        for p in range(grid_params[0].shape[0]):
            single = as_tuple(one(*inputs, *(g[p].item() for g in grid_params)))
            for a, b in zip(outg, single, strict=True):
                assert_identical(a[:, p], b)
    streamed = stream(state(*params), update, len(ref), *inputs)
    for k, r in enumerate(ref):
        assert_identical(streamed[:, k], r)
    return ref


# ---------------------------------------------------------------------------------------------
# References, from the definitions


def ema_ref(x: np.ndarray, span: int) -> np.ndarray:
    x = clean(x)
    out = pd.Series(x).ewm(span=span, adjust=False, ignore_na=True, min_periods=span).mean().to_numpy().copy()
    out[np.isnan(x)] = np.nan
    return out


def macd_ref(x: np.ndarray, fast: int, slow: int, signal: int) -> tuple[np.ndarray, ...]:
    line = ema_ref(x, fast) - ema_ref(x, slow)
    sig = ema_ref(line, signal)
    return line, sig, line - sig


def wma_ref(x: np.ndarray, n: int) -> np.ndarray:
    x = clean(x)
    out = np.full(x.shape[0], np.nan)
    if x.shape[0] >= n:
        w = np.arange(1.0, n + 1.0)
        out[n - 1 :] = sliding_window_view(x, n) @ w / w.sum()
    return out


def bollinger_ref(x: np.ndarray, n: int, k: float) -> tuple[np.ndarray, ...]:
    x = clean(x)
    mean = np.full(x.shape[0], np.nan)
    sd = np.full(x.shape[0], np.nan)
    if x.shape[0] >= n:
        win = sliding_window_view(x, n)
        mean[n - 1 :] = win.mean(axis=1)
        sd[n - 1 :] = win.std(axis=1)  # ddof=0
    return mean + k * sd, mean, mean - k * sd


def rsi_value(ag: float, al: float) -> float:
    if al == 0.0:
        return 100.0 if ag > 0.0 else 50.0
    return 100.0 - 100.0 / (1.0 + ag / al)


def rsi_ref(x: np.ndarray, n: int) -> np.ndarray:
    """Wilder's RSI as he wrote it, over the valid values."""
    x = clean(x)
    out = np.full(x.shape[0], np.nan)
    idx = np.flatnonzero(~np.isnan(x))
    if idx.shape[0] <= n:
        return out
    d = np.diff(x[idx])
    gain, loss = np.where(d > 0, d, 0.0), np.where(d < 0, -d, 0.0)
    ag, al = gain[:n].mean(), loss[:n].mean()
    out[idx[n]] = rsi_value(ag, al)
    for i in range(n, d.shape[0]):
        ag = ((n - 1) * ag + gain[i]) / n
        al = ((n - 1) * al + loss[i]) / n
        out[idx[i + 1]] = rsi_value(ag, al)
    return out


def rsi_pandas(x: np.ndarray, n: int) -> np.ndarray:
    """RSI from pandas ewm(alpha=1/n, adjust=False), started at Wilder's seed."""
    x = clean(x)
    out = np.full(x.shape[0], np.nan)
    idx = np.flatnonzero(~np.isnan(x))
    if idx.shape[0] <= n:
        return out
    d = np.diff(x[idx])
    avg = []
    for part in (np.where(d > 0, d, 0.0), np.where(d < 0, -d, 0.0)):
        seeded = np.concatenate([[part[:n].mean()], part[n:]])
        avg.append(pd.Series(seeded).ewm(alpha=1.0 / n, adjust=False).mean().to_numpy())
    out[idx[n:]] = [rsi_value(g, lo) for g, lo in zip(*avg, strict=True)]
    return out


def atr_ref(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int) -> np.ndarray:
    ok = np.isfinite(high) & np.isfinite(low) & np.isfinite(close)
    out = np.full(high.shape[0], np.nan)
    idx = np.flatnonzero(ok)
    h, lo, c = high[idx], low[idx], close[idx]
    tr = h - lo
    tr[1:] = np.maximum(tr[1:], np.maximum(np.abs(h[1:] - c[:-1]), np.abs(lo[1:] - c[:-1])))
    if tr.shape[0] < n:
        return out
    atr = tr[:n].mean()
    out[idx[n - 1]] = atr
    for i in range(n, tr.shape[0]):
        atr = ((n - 1) * atr + tr[i]) / n
        out[idx[i]] = atr
    return out


def vwap_ref(price: np.ndarray, volume: np.ndarray) -> np.ndarray:
    ok = np.isfinite(price) & np.isfinite(volume)
    with np.errstate(invalid="ignore"):
        pv = np.where(ok, price * volume, 0.0)
    num = np.cumsum(pv.astype(np.longdouble))
    den = np.cumsum(np.where(ok, volume, 0.0).astype(np.longdouble))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok & (den != 0), (num / den).astype(np.float64), np.nan)


def rolling_vwap_ref(price: np.ndarray, volume: np.ndarray, n: int) -> np.ndarray:
    ok = np.isfinite(price) & np.isfinite(volume)
    out = np.full(price.shape[0], np.nan)
    if price.shape[0] < n:
        return out
    with np.errstate(invalid="ignore"):
        pv = sliding_window_view(np.where(ok, price * volume, np.nan), n).sum(axis=1)
    v = sliding_window_view(np.where(ok, volume, np.nan), n)
    nonzero = (v != 0).sum(axis=1) > 0  # NaN != 0, but a NaN window is NaN anyway
    with np.errstate(invalid="ignore", divide="ignore"):
        out[n - 1 :] = np.where(nonzero, pv / v.sum(axis=1), np.nan)
    return out


def obv_ref(close: np.ndarray, volume: np.ndarray) -> np.ndarray:
    ok = np.isfinite(close) & np.isfinite(volume)
    out = np.full(close.shape[0], np.nan)
    idx = np.flatnonzero(ok)
    if idx.size:
        c, v = close[idx], volume[idx]
        steps = (np.sign(np.diff(c)) * v[1:]).astype(np.longdouble)
        out[idx] = np.concatenate([[0.0], np.cumsum(steps).astype(np.float64)])
    return out


# ---------------------------------------------------------------------------------------------
# Property tests: every form against every other and against the reference


@PROPERTY
@given(series(), PERIOD)
def test_ema(x: np.ndarray, span: int) -> None:
    (out,) = check_forms(ki.ema_nb, ki.ema_2d_nb, ki.ema_grid_nb, ki.ema_state_nb, ki.ema_update_nb,
                         (x,), (span,), (grid_of(span),))
    assert_close(out, ema_ref(x, span), scale(x))


@PROPERTY
@given(series(), PERIOD, PERIOD, PERIOD)
def test_macd(x: np.ndarray, fast: int, slow: int, signal: int) -> None:
    grid = (grid_of(fast), grid_of(slow)[::-1].copy(), grid_of(signal))
    out = check_forms(ki.macd_nb, ki.macd_2d_nb, ki.macd_grid_nb, ki.macd_state_nb, ki.macd_update_nb,
                      (x,), (fast, slow, signal), grid)
    for got, want in zip(out, macd_ref(x, fast, slow, signal), strict=True):
        assert_close(got, want, scale(x))


@PROPERTY
@given(series(), PERIOD)
def test_wma(x: np.ndarray, window: int) -> None:
    (out,) = check_forms(ki.wma_nb, ki.wma_2d_nb, ki.wma_grid_nb, ki.wma_state_nb, ki.wma_update_nb,
                         (x,), (window,), (grid_of(window),))
    assert_close(out, wma_ref(x, window), scale(x))


@PROPERTY
@given(series(), PERIOD, st.floats(0.0, 4.0))
def test_bollinger(x: np.ndarray, window: int, k: float) -> None:
    grid = (grid_of(window), np.array([k, 1.0, 2.5]))
    out = check_forms(ki.bollinger_nb, ki.bollinger_2d_nb, ki.bollinger_grid_nb, ki.bollinger_state_nb,
                      ki.bollinger_update_nb, (x,), (window, k), grid)
    for got, want in zip(out, bollinger_ref(x, window, k), strict=True):
        assert_close(got, want, scale(x))


@PROPERTY
@given(series(), PERIOD)
def test_rsi(x: np.ndarray, period: int) -> None:
    (out,) = check_forms(ki.rsi_nb, ki.rsi_2d_nb, ki.rsi_grid_nb, ki.rsi_state_nb, ki.rsi_update_nb,
                         (x,), (period,), (grid_of(period),))
    assert_close(out, rsi_ref(x, period))
    assert_close(out, rsi_pandas(x, period))
    assert np.all((out[~np.isnan(out)] >= 0.0) & (out[~np.isnan(out)] <= 100.0))


@PROPERTY
@given(bars(), PERIOD)
def test_atr(hlc: tuple[np.ndarray, np.ndarray, np.ndarray], period: int) -> None:
    (out,) = check_forms(ki.atr_nb, ki.atr_2d_nb, ki.atr_grid_nb, ki.atr_state_nb, ki.atr_update_nb,
                         hlc, (period,), (grid_of(period),))
    assert_close(out, atr_ref(*hlc, period), scale(*hlc))


@PROPERTY
@given(price_volume())
def test_vwap(pv: tuple[np.ndarray, np.ndarray]) -> None:
    (out,) = check_forms(kv.vwap_nb, kv.vwap_2d_nb, None, kv.vwap_state_nb, kv.vwap_update_nb, pv, (), ())
    assert_close(out, vwap_ref(*pv), scale(pv[0]))


@PROPERTY
@given(price_volume(), PERIOD)
def test_rolling_vwap(pv: tuple[np.ndarray, np.ndarray], window: int) -> None:
    (out,) = check_forms(kv.rolling_vwap_nb, kv.rolling_vwap_2d_nb, kv.rolling_vwap_grid_nb,
                         kv.rolling_vwap_state_nb, kv.rolling_vwap_update_nb, pv, (window,), (grid_of(window),))
    assert_close(out, rolling_vwap_ref(*pv, window), scale(pv[0]))


@PROPERTY
@given(price_volume())
def test_obv(cv: tuple[np.ndarray, np.ndarray]) -> None:
    (out,) = check_forms(kv.obv_nb, kv.obv_2d_nb, None, kv.obv_state_nb, kv.obv_update_nb, cv, (), ())
    assert_close(out, obv_ref(*cv), scale(cv[1]))


# ---------------------------------------------------------------------------------------------
# Conventions, one at a time


def test_docstring_examples_run() -> None:
    for module in MODULES:
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_ema_is_pandas_ewm_adjust_false_after_warm_up() -> None:
    x = np.cumsum(np.random.default_rng(1).normal(size=300)) + 100.0
    want = pd.Series(x).ewm(span=10, adjust=False).mean().to_numpy()
    got = ki.ema_nb(x, 10)
    assert np.isnan(got[:9]).all()
    assert_close(got[9:], want[9:])
    assert_identical(ki.ema_nb(x, 1), x)


def test_missing_value_is_skipped_by_recursive_kernels() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0])
    gap = np.array([1.0, 2.0, np.nan, 3.0, np.inf, 4.0])
    for kernel, args in ((ki.ema_nb, (2,)), (ki.rsi_nb, (2,))):
        got = kernel(gap, *args)
        assert np.isnan(got[[2, 4]]).all()
        assert_identical(got[[0, 1, 3, 5]], kernel(x, *args))


def test_macd_warm_up() -> None:
    x = np.cumsum(np.random.default_rng(2).normal(size=50)) + 50.0
    line, sig, hist = ki.macd_nb(x, 3, 5, 4)
    assert np.isnan(line[:4]).all() and not np.isnan(line[4:]).any()
    assert np.isnan(sig[:7]).all() and not np.isnan(sig[7:]).any()  # slow + signal - 2 = 7
    assert_identical(np.isnan(hist), np.isnan(sig))
    # pandas' usual construction, with the signal EMA started at the first MACD value.
    s = pd.Series(x)
    want = s.ewm(span=3, adjust=False).mean() - s.ewm(span=5, adjust=False).mean()
    want_sig = want[4:].ewm(span=4, adjust=False).mean()
    assert_close(line[4:], want[4:].to_numpy())
    assert_close(sig[7:], want_sig[3:].to_numpy())


def test_wma_weights_newest_heaviest() -> None:
    got = ki.wma_nb(np.array([1.0, 2.0, 4.0, 8.0]), 3)
    assert_close(got[2:], [(1 + 4 + 12) / 6, (2 + 8 + 24) / 6])


def test_bollinger_is_population_std() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0])
    upper, middle, lower = ki.bollinger_nb(x, 4, 1.0)
    s = pd.Series(x)
    assert_close(upper[3:], (s.mean() + s.std(ddof=0)) * np.ones(1))
    assert_close(lower[3:], (s.mean() - np.sqrt(1.25)) * np.ones(1))
    assert middle[3] == 2.5


def test_bollinger_constant_window_has_zero_width() -> None:
    x = np.concatenate([[1e6, -1e6, 3.0], np.full(6, 100.25), [100.5, 100.25, 100.25, 100.25]])
    upper, middle, lower = ki.bollinger_nb(x, 3, 2.0)
    for i in (5, 6, 7, 8, 12):
        assert upper[i] == middle[i] == lower[i] == 100.25, i


def test_bollinger_tiny_variance_after_large_moves() -> None:
    """Cancellation would leave rounding of 1e6-sized terms in M2; the exact recomputation removes it."""
    rng = np.random.default_rng(3)
    x = np.concatenate([[1e6, -1e6, 5e5], 1.0 + rng.normal(scale=1e-6, size=40)])
    for window in (3, 7):
        upper, _, lower = ki.bollinger_nb(x, window, 2.0)
        sd = np.full(x.shape[0], np.nan)
        sd[window - 1 :] = sliding_window_view(x, window).std(axis=1)
        keep = slice(window + 2, None)  # the windows without the large values
        np.testing.assert_allclose(((upper - lower) / 4.0)[keep], sd[keep], rtol=1e-7)


def test_rsi_edge_values() -> None:
    assert ki.rsi_nb(np.full(5, 3.0), 2)[2:].tolist() == [50.0, 50.0, 50.0]
    assert ki.rsi_nb(np.arange(5.0), 2)[2:].tolist() == [100.0, 100.0, 100.0]
    assert ki.rsi_nb(-np.arange(5.0), 2)[2:].tolist() == [0.0, 0.0, 0.0]
    assert np.isnan(ki.rsi_nb(np.arange(3.0), 3)).all()  # first value at index n


def test_atr_first_true_range_and_period_one() -> None:
    high, low, close = np.array([10.0, 12.0, 9.0]), np.array([8.0, 11.0, 7.0]), np.array([9.0, 11.5, 8.0])
    assert ki.atr_nb(high, low, close, 1).tolist() == [2.0, 3.0, 4.5]  # |12 - 9|, |7 - 11.5|
    got = ki.atr_nb(high, low, close, 2)
    assert np.isnan(got[0]) and got[1] == 2.5 and got[2] == (2.5 + 4.5) / 2


def test_vwap_zero_volume() -> None:
    price, volume = np.array([10.0, 11.0, 12.0, 13.0, 14.0]), np.array([0.0, 0.0, 2.0, 0.0, 0.0])
    assert_identical(kv.vwap_nb(price, volume), np.array([np.nan, np.nan, 12.0, 12.0, 12.0]))
    assert_identical(kv.rolling_vwap_nb(price, volume, 2), np.array([np.nan, np.nan, 12.0, 12.0, np.nan]))
    # volumes whose float sum does not cancel exactly still give NaN once they have left
    volume = np.array([0.1, 0.2, 0.0, 0.0, 0.7])
    assert np.isnan(kv.rolling_vwap_nb(price, volume, 2)[3])
    # a window of volumes far below the recent past is not resolved, but never raises
    volume = np.array([1e6, 1.5e-224, 0.0, 0.0, 1.0])
    got = kv.rolling_vwap_nb(price, volume, 2)
    assert got[4] == 14.0 and not np.isinf(got).any()


def test_obv_starts_at_zero() -> None:
    close = np.array([np.nan, 10.0, 11.0, 11.0, 10.0, 12.0])
    volume = np.array([5.0, 1.0, 2.0, 4.0, 8.0, 16.0])
    assert_identical(kv.obv_nb(close, volume), np.array([np.nan, 0.0, 2.0, 2.0, -6.0, 10.0]))


def test_update_kernels_run_inside_numba() -> None:
    @numba.njit
    def drive(x: np.ndarray, volume: np.ndarray) -> np.ndarray:
        out = np.empty((x.shape[0], 9))
        states = (ki.ema_state_nb(5), ki.wma_state_nb(5), ki.rsi_state_nb(5), ki.atr_state_nb(5),
                  kv.vwap_state_nb(), kv.rolling_vwap_state_nb(5), kv.obv_state_nb(),
                  ki.macd_state_nb(3, 6, 4), ki.bollinger_state_nb(5, 2.0))
        for i in range(x.shape[0]):
            out[i, 0] = ki.ema_update_nb(states[0], x[i])
            out[i, 1] = ki.wma_update_nb(states[1], x[i])
            out[i, 2] = ki.rsi_update_nb(states[2], x[i])
            out[i, 3] = ki.atr_update_nb(states[3], x[i] + 1.0, x[i] - 1.0, x[i])
            out[i, 4] = kv.vwap_update_nb(states[4], x[i], volume[i])
            out[i, 5] = kv.rolling_vwap_update_nb(states[5], x[i], volume[i])
            out[i, 6] = kv.obv_update_nb(states[6], x[i], volume[i])
            out[i, 7] = ki.macd_update_nb(states[7], x[i])[2]
            out[i, 8] = ki.bollinger_update_nb(states[8], x[i])[0]
        return out

    rng = np.random.default_rng(4)
    x, volume = 100.0 + np.cumsum(rng.normal(size=200)), rng.uniform(0, 10, size=200)
    x[[7, 50]] = np.nan
    out = drive(x, volume)
    want = (ki.ema_nb(x, 5), ki.wma_nb(x, 5), ki.rsi_nb(x, 5), ki.atr_nb(x + 1.0, x - 1.0, x, 5),
            kv.vwap_nb(x, volume), kv.rolling_vwap_nb(x, volume, 5), kv.obv_nb(x, volume),
            ki.macd_nb(x, 3, 6, 4)[2], ki.bollinger_nb(x, 5, 2.0)[0])
    for k, w in enumerate(want):
        assert_identical(out[:, k], w)


def test_no_drift_on_a_long_random_walk() -> None:
    """Level 1e4, 1 M rows (20 k without the JIT): running sums and variances stay exact to 1e-9."""
    n = 20_000 if NO_JIT else 1_000_000
    rng = np.random.default_rng(5)
    x = 1e4 + np.cumsum(rng.normal(size=n))
    volume = rng.integers(1, 1_000, size=n).astype(np.float64)
    assert_close(ki.wma_nb(x, 20), wma_ref(x, 20))
    for got, want in zip(ki.bollinger_nb(x, 20, 2.0), bollinger_ref(x, 20, 2.0), strict=True):
        assert_close(got, want)
    upper, _, lower = ki.bollinger_nb(x, 20, 1.0)
    np.testing.assert_allclose((upper - lower)[19:] / 2, sliding_window_view(x, 20).std(axis=1), rtol=1e-9)
    assert_close(kv.rolling_vwap_nb(x, volume, 20), rolling_vwap_ref(x, volume, 20))
    assert_close(kv.vwap_nb(x, volume), vwap_ref(x, volume))
    assert_close(kv.obv_nb(x, volume), obv_ref(x, volume), 1e-3)


def test_real_spy_minutes() -> None:
    """SPY 1-minute bars: pandas' rolling/ewm, the Wilder loops, and a per-session VWAP."""
    frame = ntlab.datasets.load("spy_1min")
    if NO_JIT:
        frame = frame.head(3_000)
    high, low, close, volume = (frame[c].to_numpy() for c in ("high", "low", "close", "volume"))
    s = pd.Series(close)
    assert_close(ki.ema_nb(close, 20)[19:], s.ewm(span=20, adjust=False).mean().to_numpy()[19:])
    upper, middle, _ = ki.bollinger_nb(close, 20, 2.0)
    assert_close(middle, s.rolling(20).mean().to_numpy())
    sd = np.full(close.shape[0], np.nan)
    sd[19:] = sliding_window_view(close, 20).std(axis=1)
    np.testing.assert_allclose(upper - middle, 2.0 * sd, rtol=1e-9, atol=1e-12)
    # pandas' rolling std (add/remove updates, never recomputed) is itself off by ~1e-7 here
    np.testing.assert_allclose(upper - middle, 2.0 * s.rolling(20).std(ddof=0).to_numpy(), rtol=1e-6)
    assert_close(ki.rsi_nb(close, 14), rsi_ref(close, 14))
    assert_close(ki.atr_nb(high, low, close, 14), atr_ref(high, low, close, 14))
    # A session VWAP: the caller resets per day (here one vwap_nb call per date).
    day = frame["ts"].dt.date().to_numpy()
    starts = np.flatnonzero(np.r_[True, day[1:] != day[:-1]])
    got = np.concatenate([kv.vwap_nb(close[a:b], volume[a:b]) for a, b in zip(starts, np.r_[starts[1:], len(day)], strict=True)])
    want = frame.select(
        ((pl.col("close") * pl.col("volume")).cum_sum() / pl.col("volume").cum_sum()).over(pl.col("ts").dt.date())
    ).to_series().to_numpy()
    assert_close(got, want)
    assert not math.isnan(got[-1])


# ---------------------------------------------------------------------------------------------
# Caller-provided output arrays

BATCH = sorted(n for m in MODULES for n in m.__all__ if not n.endswith(("_state_nb", "_update_nb")))
# Parameters of each family: 1-D/2-D form, grid form (zipped int64/float64 arrays).
BATCH_PARAMS = {
    "ema": ((5,), (np.array([1, 3, 20], dtype=np.int64),)),
    "macd": ((3, 7, 4), tuple(np.array(v, dtype=np.int64) for v in ([3, 1, 12], [7, 2, 26], [4, 1, 9]))),
    "wma": ((5,), (np.array([1, 3, 20], dtype=np.int64),)),
    "bollinger": ((5, 2.0), (np.array([1, 3, 20], dtype=np.int64), np.array([2.0, 1.5, 3.0]))),
    "rsi": ((5,), (np.array([1, 3, 20], dtype=np.int64),)),
    "atr": ((5,), (np.array([1, 3, 20], dtype=np.int64),)),
    "vwap": ((), ()),
    "rolling_vwap": ((5,), (np.array([1, 3, 20], dtype=np.int64),)),
    "obv": ((), ()),
}


def batch_args(name: str, rng: np.random.Generator) -> tuple:
    """Inputs (with NaN and inf) and parameters of the batch kernel ``name``."""
    t = 257
    shape = (t, 3) if name.endswith("_2d_nb") else (t,)
    family = name.removesuffix("_nb").removesuffix("_2d").removesuffix("_grid")

    def spoil(x: np.ndarray) -> np.ndarray:
        x[rng.random(shape) < 0.03] = np.nan
        x[rng.random(shape) < 0.01] = np.inf
        return x

    close = 100.0 + rng.standard_normal(shape).cumsum(axis=0)
    if family == "atr":
        spread = rng.random(shape)
        inputs = (spoil(close + spread), spoil(close - spread), spoil(close.copy()))
    elif family in ("vwap", "rolling_vwap", "obv"):
        volume = rng.integers(0, 1000, shape).astype(np.float64)
        inputs = (spoil(close), spoil(volume))
    else:
        inputs = (spoil(close),)
    one, grid = BATCH_PARAMS[family]
    return inputs + (grid if name.endswith("_grid_nb") else one)


def dirty_out(want: np.ndarray, layout: str) -> np.ndarray:
    """A buffer of ``want``'s shape full of 7.0; "view": a strided slice of a wider array."""
    if layout == "contiguous":
        return np.full(want.shape, 7.0)
    wide = np.full((want.shape[0], 2 * (want.shape[1] if want.ndim == 2 else 1) + 1), 7.0)[:, 1::2]
    out = wide[:, 0] if want.ndim == 1 else wide
    assert not out.flags.c_contiguous
    return out


@pytest.mark.parametrize("layout", ["contiguous", "view"])
@pytest.mark.parametrize("name", BATCH)
def test_batch_kernels_write_into_out(name: str, layout: str) -> None:
    """``out=`` gives the allocating call's result bit for bit, written into (and returned as) ``out``.

    Multi-output kernels take a tuple of three arrays, returned as the result tuple.
    """
    (f,) = (getattr(m, name) for m in MODULES if name in m.__all__)
    args = batch_args(name, np.random.default_rng(len(name)))
    want = f(*args)
    if isinstance(want, tuple):
        out = tuple(dirty_out(w, layout) for w in want)
        got = f(*args, out=out)
        assert isinstance(got, tuple) and len(got) == 3
        pairs = list(zip(got, out, want, strict=True))
        again = f(*args, None)
    else:
        out = dirty_out(want, layout)
        got = f(*args, out=out)
        pairs = [(got, out, want)]
        again = (f(*args, None),)  # out=None given explicitly allocates
        want = (want,)
    for g, o, w in pairs:
        assert g is o
        assert np.array_equal(g, w, equal_nan=True)
        assert_identical(o, w)
    for a, w in zip(again, want, strict=True):
        assert_identical(a, w)
