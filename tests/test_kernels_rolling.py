"""Returns and rolling-window kernels: every form against an exact reference, bit for bit
between forms, numerical stability on long series, and pandas on real closes.

References are written from the documented conventions, independently of the kernels: window
statistics are computed exactly with :class:`fractions.Fraction` (then rounded once), min/max
and log returns with plain NumPy/math. pandas is the peer on the real ETF and SPY closes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import numba
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import njit
from numpy.lib.stride_tricks import sliding_window_view

import ntlab.datasets
from ntlab.kernels import covariance as kc
from ntlab.kernels import extrema as kx
from ntlab.kernels import rolling as kr

# The rolling-window kernel modules: moments and returns, min/max, correlation/beta.
MODULES = (kr, kx, kc)


def kernel(name: str) -> Callable:
    """The kernel ``name``, from whichever of :data:`MODULES` holds it."""
    (module,) = (m for m in MODULES if name in m.__all__)
    return getattr(module, name)

NO_JIT = bool(numba.config.DISABLE_JIT)
NAN = math.nan
INF = math.inf
PROPERTY = settings(
    deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)

# ---------------------------------------------------------------------------------------------
# Exact references (per window; None where the window is incomplete or has a missing value)


def windows_of(x: np.ndarray, window: int) -> list[list[Fraction] | None]:
    out: list[list[Fraction] | None] = []
    for t in range(len(x)):
        win = x[max(0, t - window + 1) : t + 1]
        ok = t >= window - 1 and bool(np.all(np.isfinite(win)))
        out.append([Fraction(float(v)) for v in win] if ok else None)
    return out


def exact_mean(win: list[Fraction]) -> Fraction:
    return sum(win, Fraction(0)) / len(win)


def exact_var(win: list[Fraction]) -> Fraction:
    m = exact_mean(win)
    return sum(((v - m) ** 2 for v in win), Fraction(0)) / (len(win) - 1)


def exact_cov(wx: list[Fraction], wy: list[Fraction]) -> Fraction:
    mx, my = exact_mean(wx), exact_mean(wy)
    return sum(((a - mx) * (b - my) for a, b in zip(wx, wy, strict=True)), Fraction(0)) / (len(wx) - 1)


def ref_sum(win: list[Fraction]) -> float:
    return float(sum(win, Fraction(0)))


def ref_mean(win: list[Fraction]) -> float:
    return float(exact_mean(win))


def ref_var(win: list[Fraction]) -> float:
    return float(exact_var(win)) if len(win) > 1 else NAN


def ref_std(win: list[Fraction]) -> float:
    return math.sqrt(ref_var(win))


def ref_zscore(win: list[Fraction]) -> float:
    var = ref_var(win)
    return float(win[-1] - exact_mean(win)) / math.sqrt(var) if var > 0 else NAN


def ref_min(win: list[Fraction]) -> float:
    return float(min(win))


def ref_max(win: list[Fraction]) -> float:
    return float(max(win))


def reference(x: np.ndarray, window: int, stat: Callable[[list[Fraction]], float]) -> np.ndarray:
    return np.array([NAN if w is None else stat(w) for w in windows_of(x, window)], dtype=np.float64)


def ref_bivar(x: np.ndarray, y: np.ndarray, window: int, kind: str) -> np.ndarray:
    good = np.where(np.isfinite(x) & np.isfinite(y), 0.0, NAN)  # a pair is missing if either is
    out = []
    for wx, wy in zip(windows_of(x + good, window), windows_of(y + good, window), strict=True):
        if wx is None or window < 2:
            out.append(NAN)
            continue
        vx, vy, c = exact_var(wx), exact_var(wy), exact_cov(wx, wy)
        if kind == "beta":
            out.append(float(c / vy) if vy > 0 else NAN)
        else:
            out.append(float(c) / math.sqrt(float(vx) * float(vy)) if vx > 0 and vy > 0 else NAN)
    return np.array(out, dtype=np.float64)


def ref_returns(x: np.ndarray, log: bool) -> np.ndarray:
    out = np.full(len(x), NAN)
    for t in range(1, len(x)):
        a, b = float(x[t - 1]), float(x[t])
        if not (math.isfinite(a) and math.isfinite(b)) or a == 0.0:
            continue
        if not log:
            out[t] = float((Fraction(b) - Fraction(a)) / Fraction(a))
        elif (a > 0) == (b > 0) and b != 0.0:
            out[t] = math.log(abs(b)) - math.log(abs(a))
    return out


# ---------------------------------------------------------------------------------------------
# Comparisons


def assert_same(a: np.ndarray, b: np.ndarray) -> None:
    """Bit-identical: same NaN positions, same bits elsewhere (so -0.0 != 0.0)."""
    assert a.shape == b.shape
    assert np.array_equal(np.isnan(a), np.isnan(b)), (a, b)
    ok = ~np.isnan(a)
    assert np.array_equal(a[ok].view(np.int64), b[ok].view(np.int64)), (a, b)


def assert_close(
    got: np.ndarray, ref: np.ndarray, rtol: float = 1e-9, atol: float | np.ndarray = 0.0
) -> None:
    """Same NaN positions; elsewhere ``|got - ref| <= rtol * |ref| + atol``."""
    assert np.array_equal(np.isnan(got), np.isnan(ref)), (got, ref)
    ok = ~np.isnan(ref)
    err = np.abs(got[ok] - ref[ok])
    bound = rtol * np.abs(ref[ok]) + (atol[ok] if isinstance(atol, np.ndarray) else atol)
    assert np.all(err <= bound), (np.max(err - bound), got[ok][err > bound], ref[ok][err > bound])


def window_scale(x: np.ndarray, window: int) -> np.ndarray:
    """max |x| over each window (0 where undefined), the scale of cancellation errors."""
    a = np.where(np.isfinite(x), np.abs(x), 0.0)
    return np.array([a[max(0, t - window + 1) : t + 1].max(initial=0.0) for t in range(len(a))])


@njit
def feed(update: Callable[..., float], state: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Stream ``x`` through ``update`` inside njit code, as the live engine does."""
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = update(state, x[i])
    return out


@njit
def feed2(update: Callable[..., float], state: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = update(state, x[i], y[i])
    return out


# ---------------------------------------------------------------------------------------------
# Univariate kernels: all forms equal, and equal to the reference

UNIVARIATE = {
    "sum": ref_sum,
    "mean": ref_mean,
    "var": ref_var,
    "std": ref_std,
    "zscore": ref_zscore,
    "min": ref_min,
    "max": ref_max,
}


FORMS = ("nb", "2d_nb", "grid_nb", "state_nb", "update_nb")


def forms(prefix: str) -> list[Callable]:
    """The five forms of an indicator, in the order of FORMS."""
    return [kernel(f"{prefix}_{suffix}") for suffix in FORMS]


def check_all_forms(name: str, x: np.ndarray, window: int, *args: float) -> np.ndarray:
    """Compute every form of ``name``; assert they are bit-identical; return the 1-D result."""
    one, two, grid, state, update = forms("realised_vol" if name == "rvol" else f"rolling_{name}")
    got = one(x, window, *args)
    assert got.dtype == np.float64 and got.shape == x.shape
    x2 = np.column_stack([x[::-1], x, x * 2.0])  # C order: strided columns
    out2 = two(x2, window, *args)
    assert_same(out2[:, 1], got)
    assert_same(out2[:, 0], one(np.ascontiguousarray(x[::-1]), window, *args))
    grid_windows = np.array([window, 1, window + 3], dtype=np.int64)
    out_grid = grid(x, grid_windows, *args)
    assert out_grid.shape == (len(x), 3)
    for p, w in enumerate(grid_windows):
        assert_same(out_grid[:, p], one(x, int(w), *args))
    st_ = state(window, *args)
    assert_same(np.array([update(st_, float(v)) for v in x]), got)
    assert_same(feed(update, state(window, *args), x), got)
    return got


finite = st.one_of(
    st.integers(-20, 20).map(float),  # repeats: constant windows and ties
    st.integers(-10**7, 10**7).map(lambda k: k / 1000.0),
    st.tuples(st.floats(1e-6, 1e6), st.booleans()).map(lambda f: f[0] if f[1] else -f[0]),
)
values = st.one_of(finite, finite, finite, finite, finite, finite, st.sampled_from([NAN, INF, -INF]))


def lists_of(elements: st.SearchStrategy, max_size: int = 60) -> st.SearchStrategy:
    """Lists whose length is drawn uniformly (plain lists favour a few elements)."""
    return st.integers(0, max_size).flatmap(lambda n: st.lists(elements, min_size=n, max_size=n))


series = lists_of(values).map(lambda v: np.array(v, dtype=np.float64))
windows = st.integers(1, 12)


@pytest.mark.parametrize("name", sorted(UNIVARIATE))
@PROPERTY
@given(x=series, window=windows)
def test_univariate_forms_equal_reference(name: str, x: np.ndarray, window: int) -> None:
    got = check_all_forms(name, x, window)
    ref = reference(x, window, UNIVARIATE[name])
    scale = window_scale(x, window)
    eps = np.finfo(np.float64).eps
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_rounding = np.nan_to_num(4 * eps * scale / reference(x, window, ref_std), posinf=0.0)
    atol = {
        "sum": 4 * eps * window * scale,  # a sum that cancels is exact only to the inputs' scale
        "mean": 4 * eps * scale,
        "zscore": 1e-9 + mean_rounding,  # x - mean is exact only to the rounding of the mean
    }.get(name, 0.0)
    assert_close(got, ref, atol=atol)


price_values = st.integers(1, 10**6).map(lambda k: k / 100.0)


@PROPERTY
@given(x=lists_of(st.one_of(*[price_values] * 8, st.just(NAN))), window=windows)
def test_realised_vol_forms_equal_reference(x: list[float], window: int) -> None:
    prices = np.array(x, dtype=np.float64)
    got = check_all_forms("rvol", prices, window, 365.0)
    r = kr.log_returns_nb(prices)
    assert_close(got, reference(r, window, ref_std) * math.sqrt(365.0))
    per_period = kr.realised_vol_nb(prices, window, 1.0)
    assert_same(kr.realised_vol_nb(prices, window), per_period * math.sqrt(252.0))  # the default


@PROPERTY
@given(x=series, window=windows)
def test_zscore_is_mean_and_std_of_the_same_window(x: np.ndarray, window: int) -> None:
    z = kr.rolling_zscore_nb(x, window)
    std = kr.rolling_std_nb(x, window)
    expected = (x - kr.rolling_mean_nb(x, window)) / np.where(std > 0.0, std, NAN)
    assert_same(z, expected)


# ---------------------------------------------------------------------------------------------
# Bivariate kernels


@pytest.mark.parametrize("kind", ["corr", "beta"])
@PROPERTY
@given(xy=lists_of(st.tuples(values, values)), window=windows)
def test_bivariate_forms_equal_reference(kind: str, xy: list[tuple[float, float]], window: int) -> None:
    x = np.array([a for a, _ in xy], dtype=np.float64)
    y = np.array([b for _, b in xy], dtype=np.float64)
    one, two, grid, state, update = forms(f"rolling_{kind}")
    got = one(x, y, window)
    x2, y2 = np.column_stack([x, y]), np.column_stack([y, x])
    out2 = two(x2, y2, window)
    assert_same(out2[:, 0], got)
    assert_same(out2[:, 1], one(y, x, window))
    windows_ = np.array([window, 2, window + 2], dtype=np.int64)
    out_grid = grid(x, y, windows_)
    for p, w in enumerate(windows_):
        assert_same(out_grid[:, p], one(x, y, int(w)))
    st_ = state(window)
    assert_same(np.array([update(st_, float(a), float(b)) for a, b in zip(x, y, strict=True)]), got)
    assert_same(feed2(update, state(window), x, y), got)
    ref = ref_bivar(x, y, window, kind)
    if kind == "corr":
        assert_close(got, ref, atol=1e-9)
        assert np.all(np.abs(got[~np.isnan(got)]) <= 1.0)
    else:  # beta's natural scale is std(x) / std(y)
        both = np.isfinite(x) & np.isfinite(y)
        sx = kr.rolling_std_nb(np.where(both, x, NAN), window)
        sy = kr.rolling_std_nb(np.where(both, y, NAN), window)
        ratio = np.where(sy > 0, sx / np.where(sy > 0, sy, 1.0), 0.0)
        assert_close(got, ref, atol=1e-9 * np.nan_to_num(ratio))


# ---------------------------------------------------------------------------------------------
# Returns


@pytest.mark.parametrize("log", [False, True])
@PROPERTY
@given(x=series)
def test_returns_forms_equal_reference(log: bool, x: np.ndarray) -> None:
    name = "log_returns" if log else "returns"
    one, two, state, update = (kernel(f"{name}_{f}") for f in ("nb", "2d_nb", "state_nb", "update_nb"))
    got = one(x)
    out2 = two(np.column_stack([x, x[::-1]]))
    assert_same(out2[:, 0], got)
    assert_same(out2[:, 1], one(np.ascontiguousarray(x[::-1])))
    st_ = state()
    assert_same(np.array([update(st_, float(v)) for v in x]), got)
    assert_same(feed(update, state(), x), got)
    ref = ref_returns(x, log)
    logs = np.abs(np.log(np.abs(x), where=np.isfinite(x) & (x != 0), out=np.zeros(len(x))))
    atol = 4 * np.finfo(np.float64).eps * (logs + np.roll(logs, 1)) if log else 0.0
    assert_close(got, ref, atol=atol)


def test_returns_conventions() -> None:
    x = np.array([100.0, 110.0, 0.0, 5.0, -5.0, NAN, 4.0, 2.0, INF, 1.0])
    assert_close(kr.returns_nb(x), np.array([NAN, 0.1, -1.0, NAN, -2.0, NAN, NAN, -0.5, NAN, NAN]))
    lr = kr.log_returns_nb(x)
    assert np.isnan(lr[[0, 2, 3, 4, 5, 6, 8, 9]]).all()  # first, log(0), x/0, negative ratio, missing
    assert lr[1] == math.log1p(0.1) and lr[7] == math.log(0.5)
    assert kr.returns_nb(np.empty(0)).shape == (0,)
    with np.errstate(over="ignore", under="ignore"):  # NumPy scalars warn without JIT
        far = kr.log_returns_nb(np.array([1e-300, 1e300, 3e-300]))  # the ratio over-, underflows
    assert_close(far[1:], np.array([600 * math.log(10), math.log(3) - 600 * math.log(10)]), rtol=1e-15)


# ---------------------------------------------------------------------------------------------
# Conventions, by example


def test_warm_up_and_short_series() -> None:
    x = np.arange(1.0, 6.0)
    assert_same(kr.rolling_sum_nb(x, 3), np.array([NAN, NAN, 6.0, 9.0, 12.0]))
    for name in ("sum", "mean", "var", "std", "zscore", "min", "max"):
        assert np.isnan(kernel(f"rolling_{name}_nb")(x, 6)).all(), name  # shorter than the window
        assert kernel(f"rolling_{name}_nb")(np.empty(0), 3).shape == (0,)
    assert np.isnan(kc.rolling_corr_nb(x, x, 6)).all()
    assert kr.rolling_mean_2d_nb(np.empty((0, 4)), 3).shape == (0, 4)
    assert kr.rolling_mean_grid_nb(x, np.empty(0, dtype=np.int64)).shape == (5, 0)


def test_missing_value_leaves_the_window() -> None:
    x = np.array([1.0, 2.0, NAN, 4.0, 5.0, 6.0, INF, 8.0, 9.0, 10.0])
    expected = np.array([NAN, NAN, NAN, NAN, NAN, 15.0, NAN, NAN, NAN, 27.0])
    assert_same(kr.rolling_sum_nb(x, 3), expected)
    assert_same(kx.rolling_max_nb(x, 3), np.array([NAN, NAN, NAN, NAN, NAN, 6.0, NAN, NAN, NAN, 10.0]))
    # pandas agrees for NaN; an infinity is missing here, pandas would propagate it
    assert_same(kr.rolling_sum_nb(x[:6], 3), pd.Series(x[:6]).rolling(3).sum().to_numpy())
    y = np.array([1.0, 2.0, 3.0, NAN, 5.0, 6.0, 7.0, 8.0])
    expected = np.array([NAN, -1.0, -1.0, NAN, NAN, NAN, -1.0, -1.0])  # a pair is missing if x or y is
    assert_same(kc.rolling_corr_nb(y, y[::-1].copy(), 2), expected)


def test_window_of_one() -> None:
    x = np.array([3.0, NAN, -1.5])
    assert_same(kr.rolling_sum_nb(x, 1), x)
    assert_same(kr.rolling_mean_nb(x, 1), x)
    assert_same(kx.rolling_min_nb(x, 1), x)
    assert np.isnan(kr.rolling_var_nb(x, 1)).all() and np.isnan(kr.rolling_std_nb(x, 1)).all()
    assert np.isnan(kc.rolling_beta_nb(x, x, 1)).all()


def test_constant_windows_are_exact() -> None:
    x = np.array([0.1, 0.1, 0.1, 0.1, 0.7, 0.1])
    assert sum([0.1, 0.1, 0.1]) / 3 != 0.1  # the naive mean is off by one ulp
    assert_same(kr.rolling_mean_nb(x, 3), np.array([NAN, NAN, 0.1, 0.1, 0.3, 0.3]))
    var = kr.rolling_var_nb(x, 3)
    assert var[2] == 0.0 and var[3] == 0.0 and var[4] > 0.0
    assert kr.rolling_std_nb(x, 3)[3] == 0.0
    assert np.isnan(kr.rolling_zscore_nb(x, 3)[:4]).all()
    ramp = np.arange(6.0)
    assert np.isnan(kc.rolling_corr_nb(x, ramp, 3)[2:4]).all()
    assert_same(kc.rolling_beta_nb(x, ramp, 3)[2:4], np.array([0.0, 0.0]))  # constant x: beta 0
    assert np.isnan(kc.rolling_beta_nb(ramp, x, 3)[2:4]).all()  # constant y: undefined
    prices = np.array([10.0, 10.0, 10.0, 10.0, 11.0])
    assert_same(kr.realised_vol_nb(prices, 3)[3:4], np.array([0.0]))  # unchanged prices: zero vol


def test_beta_is_the_regression_slope() -> None:
    rng = np.random.default_rng(7)
    y = rng.standard_normal(200)
    x = 1.5 * y + 0.25 + 0.1 * rng.standard_normal(200)
    beta = kc.rolling_beta_nb(x, y, 50)
    for t in (49, 120, 199):
        slope = np.polyfit(y[t - 49 : t + 1], x[t - 49 : t + 1], 1)[0]
        assert beta[t] == pytest.approx(slope, rel=1e-12)
    corr = kc.rolling_corr_nb(x, y, 50)
    assert corr[199] == pytest.approx(np.corrcoef(x[150:], y[150:])[0, 1], rel=1e-12)


def test_correlation_of_tiny_values() -> None:
    """Scale-free where the product of the variances underflows; NaN where a variance does."""
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal(40), rng.standard_normal(40)
    corr = kc.rolling_corr_nb(x, y, 10)
    assert_close(kc.rolling_corr_nb(x * 1e-100, y * 1e-100, 10), corr, rtol=1e-12)
    tiny = np.array([0.0, 1e-170] * 5)  # its squares underflow to 0: the variance is 0
    assert np.isnan(kc.rolling_corr_nb(tiny, y[:10], 4)[3:]).all()


def test_min_max_deque_stays_within_the_window() -> None:
    """The deque keeps only candidates: all of a falling window for max, one of a rising one."""
    st_max, st_min = kx.rolling_max_state_nb(4), kx.rolling_min_state_nb(4)
    for v in range(10, 0, -1):
        kx.rolling_max_update_nb(st_max, float(v))
        kx.rolling_min_update_nb(st_min, float(v))
        assert 1 <= st_max[kx.X_SIZE] <= 4
        assert st_min[kx.X_SIZE] == 1
    assert st_max[kx.X_SIZE] == 4
    x = np.array([5.0, 1.0, 5.0, 2.0, 5.0, 3.0, 0.0])  # ties keep the newest candidate
    assert_same(kx.rolling_max_nb(x, 2), np.array([NAN, 5.0, 5.0, 5.0, 5.0, 5.0, 3.0]))
    assert_same(kx.rolling_min_nb(x, 3), np.array([NAN, NAN, 1.0, 1.0, 2.0, 2.0, 0.0]))


def test_2d_layouts_give_the_same_columns() -> None:
    x = np.random.default_rng(1).standard_normal((300, 5)).cumsum(axis=0)
    c_order = kr.rolling_std_2d_nb(x, 7)
    assert_same(kr.rolling_std_2d_nb(np.asfortranarray(x), 7), c_order)
    assert_same(kr.rolling_std_2d_nb(x[:, ::2], 7), c_order[:, ::2])
    assert_same(kr.rolling_std_nb(x[:, 3], 7), c_order[:, 3])  # a strided 1-D view


def test_states_are_independent_and_resume() -> None:
    x = np.random.default_rng(3).standard_normal(3000).cumsum()
    a, b = kr.rolling_var_state_nb(30), kr.rolling_var_state_nb(30)
    first = feed(kr.rolling_var_update_nb, a, x[:1700])
    feed(kr.rolling_var_update_nb, b, x[::-1].copy())  # another stream in between
    rest = feed(kr.rolling_var_update_nb, a, x[1700:])
    assert_same(np.concatenate([first, rest]), kr.rolling_var_nb(x, 30))


# ---------------------------------------------------------------------------------------------
# Numerical stability and the exact-recomputation paths


def sliding(x: np.ndarray, window: int, stat: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Two-pass NumPy statistic of every complete window (chunked to bound memory)."""
    out = np.full(len(x), NAN)
    views = sliding_window_view(x, window)
    for lo in range(0, len(views), 100_000):
        chunk = views[lo : lo + 100_000]
        out[window - 1 + lo : window - 1 + lo + len(chunk)] = stat(chunk)
    return out


def two_pass_var(w: np.ndarray) -> np.ndarray:
    d = w - w.mean(axis=1, keepdims=True)
    var = (d * d).sum(axis=1) / (w.shape[1] - 1)
    return np.where(np.ptp(w, axis=1) == 0.0, 0.0, var)  # the mean of equal values may round


def test_long_random_walk_does_not_drift() -> None:
    """1 M rows at level 1e4 (20k without JIT), with a volatility burst and a frozen stretch."""
    n = 20_000 if NO_JIT else 1_000_000
    rng = np.random.default_rng(11)
    steps = rng.standard_normal(n)
    steps[n // 3 : n // 3 + 50] *= 300.0  # a burst: its squares dwarf what follows
    steps[n // 2 : n // 2 + 300] = 0.0  # prices frozen: constant windows
    x = 1e4 + steps.cumsum()
    y = 0.5 * x + rng.standard_normal(n)
    w = 20
    var = sliding(x, w, two_pass_var)
    assert_close(kr.rolling_var_nb(x, w), var)
    assert_close(kr.rolling_std_nb(x, w), np.sqrt(var))
    assert (kr.rolling_var_nb(x, w)[n // 2 + w : n // 2 + 300] == 0.0).all()
    mean = sliding(x, w, lambda v: v.mean(axis=1))
    assert_close(kr.rolling_mean_nb(x, w), mean, rtol=1e-12)
    assert_close(kr.rolling_sum_nb(x, w), mean * w, rtol=1e-12)
    z = kr.rolling_zscore_nb(x, w)
    ok = var > 0
    assert_close(z[ok], (x[ok] - mean[ok]) / np.sqrt(var[ok]), atol=1e-7)  # z = O(1): absolute
    vy = sliding(y, w, two_pass_var)
    dx = sliding_window_view(x, w) - sliding_window_view(x, w).mean(axis=1, keepdims=True)
    dy = sliding_window_view(y, w) - sliding_window_view(y, w).mean(axis=1, keepdims=True)
    c = np.concatenate([np.full(w - 1, NAN), (dx * dy).sum(axis=1) / (w - 1)])
    c = np.where(var == 0.0, 0.0, c)  # x frozen: the covariance is exactly 0
    assert_close(kc.rolling_beta_nb(x, y, w), c / vy, atol=1e-9 * np.sqrt(np.nan_to_num(var / vy)))
    with np.errstate(invalid="ignore"):  # 0 / 0 where x is frozen: NaN, as in the kernel
        corr = c / np.sqrt(var * vy)
    assert_close(kc.rolling_corr_nb(x, y, w), corr, rtol=0.0, atol=1e-9)
    r = np.log(x[1:] / x[:-1])
    rv = np.concatenate([[NAN], np.sqrt(sliding(r, w, two_pass_var)) * math.sqrt(252)])
    assert_close(kr.realised_vol_nb(x, w), rv)


def test_adaptive_recomputation_after_a_spike() -> None:
    """A spike leaves the window: the small variance after it is still exact to 1e-9."""
    x = np.concatenate([[1e9], np.arange(1.0, 40.0) % 3.0])
    got = kr.rolling_var_nb(x, 5)
    assert_close(got, reference(x, 5, ref_var))
    y = np.concatenate([[-3e8], np.arange(1.0, 40.0) % 4.0])
    assert_close(kc.rolling_corr_nb(x, y, 5), ref_bivar(x, y, 5, "corr"), atol=1e-9)
    assert_close(kc.rolling_beta_nb(x, y, 5), ref_bivar(x, y, 5, "beta"), atol=1e-9)


def test_periodic_recomputation_of_an_all_missing_window() -> None:
    """The periodic recomputation (every 1024 events for window 4) may meet a window of NaNs."""
    x = np.random.default_rng(5).standard_normal(1100)
    x[1020:1024] = NAN
    for name in ("sum", "var"):
        got = kernel(f"rolling_{name}_nb")(x, 4)
        assert_close(got, reference(x, 4, UNIVARIATE[name]), atol=1e-15 * 4)
    y = x[::-1].copy() + 1.0
    y[1020:1024] = 0.5  # x is missing there anyway
    assert_close(kc.rolling_corr_nb(x, y, 4), ref_bivar(x, y, 4, "corr"), atol=1e-9)


# ---------------------------------------------------------------------------------------------
# pandas on real closes


@pytest.fixture(scope="module")
def etf_closes() -> pd.DataFrame:
    frame = ntlab.datasets.load("etf_daily_closes").drop("ts").to_pandas()
    return frame.head(300) if NO_JIT else frame


PANDAS_ROLLING = ["sum", "mean", "var", "std", "min", "max"]


@pytest.mark.parametrize("name", PANDAS_ROLLING)
def test_etf_closes_match_pandas(etf_closes: pd.DataFrame, name: str) -> None:
    prices = etf_closes.to_numpy(dtype=np.float64)
    got = kernel(f"rolling_{name}_2d_nb")(prices, 21)
    expected = getattr(etf_closes.rolling(21), name)().to_numpy()
    # pandas' add/remove variance loses digits on prices (~1e-10 here); ours are exact to 1e-10
    assert_close(got.ravel(), expected.ravel(), rtol=1e-7 if name in ("var", "std") else 1e-12)


def test_etf_returns_beta_and_vol_match_pandas(etf_closes: pd.DataFrame) -> None:
    prices = etf_closes.to_numpy(dtype=np.float64)
    rets = kr.returns_2d_nb(prices)
    assert_close(rets.ravel(), etf_closes.pct_change(fill_method=None).to_numpy().ravel(), atol=1e-15)
    logr = kr.log_returns_2d_nb(prices)
    assert_close(logr.ravel(), np.log(etf_closes).diff().to_numpy().ravel(), atol=1e-14)
    spy = np.ascontiguousarray(np.broadcast_to(rets[:, [etf_closes.columns.get_loc("SPY")]], rets.shape))
    beta = kc.rolling_beta_2d_nb(rets, spy, 63)
    r = etf_closes.pct_change(fill_method=None)
    expected = r.rolling(63).cov(r["SPY"]).div(r["SPY"].rolling(63).var(), axis=0)
    assert_close(beta.ravel(), expected.to_numpy().ravel(), rtol=1e-6)
    corr = kc.rolling_corr_2d_nb(rets, spy, 63)
    assert_close(corr.ravel(), r.rolling(63).corr(r["SPY"]).to_numpy().ravel(), rtol=0.0, atol=1e-7)
    z = kr.rolling_zscore_2d_nb(prices, 21)
    ez = (etf_closes - etf_closes.rolling(21).mean()) / etf_closes.rolling(21).std()
    assert_close(z.ravel(), ez.to_numpy().ravel(), rtol=0.0, atol=1e-6)


def test_spy_realised_volatility_matches_pandas() -> None:
    spy = ntlab.datasets.load("spy_daily")["SPY"].to_numpy()
    if NO_JIT:
        spy = spy[:500]
    s = pd.Series(spy)
    expected = (np.log(s).diff().rolling(21).std() * np.sqrt(252)).to_numpy()
    got = kr.realised_vol_nb(spy, 21)
    assert_close(got, expected, rtol=1e-7)
    grid = kr.realised_vol_grid_nb(spy, np.array([21, 63], dtype=np.int64), 252.0)
    assert_same(grid[:, 0], got)
    assert 0.05 < np.nanmedian(got) < 0.4  # SPY's annualised daily volatility is ~15-20%


# ---------------------------------------------------------------------------------------------
# Caller-provided output arrays

BATCH = sorted(n for m in MODULES for n in m.__all__ if not n.endswith(("_state_nb", "_update_nb")))


def batch_args(name: str, rng: np.random.Generator) -> tuple:
    """Inputs (with NaN and inf) and parameters of the batch kernel ``name``."""
    t, n = 257, 3
    shape = (t, n) if name.endswith("_2d_nb") else (t,)

    def walk() -> np.ndarray:
        x = 100.0 + rng.standard_normal(shape).cumsum(axis=0)
        x[rng.random(shape) < 0.03] = NAN
        x[rng.random(shape) < 0.01] = INF
        return x

    inputs = (walk(), walk()) if "_corr_" in name or "_beta_" in name else (walk(),)
    if "returns" in name:
        return inputs
    params = (np.array([1, 2, 7, 40], dtype=np.int64),) if name.endswith("_grid_nb") else (7,)
    return inputs + params + ((52.0,) if name.startswith("realised_vol") else ())


@pytest.mark.parametrize("layout", ["contiguous", "view"])
@pytest.mark.parametrize("name", BATCH)
def test_batch_kernels_write_into_out(name: str, layout: str) -> None:
    """``out=`` gives the allocating call's result bit for bit, written into (and returned as) ``out``."""
    f = kernel(name)
    args = batch_args(name, np.random.default_rng(len(name)))
    want = f(*args)
    # A dirty buffer, so every element must be written; "view": a strided slice of a wider array.
    if layout == "contiguous":
        out = np.full(want.shape, 7.0)
    else:
        out = np.full((want.shape[0], 2 * (want.shape[1] if want.ndim == 2 else 1) + 1), 7.0)[:, 1::2]
        out = out[:, 0] if want.ndim == 1 else out
        assert not out.flags.c_contiguous
    got = f(*args, out=out)
    assert got is out
    assert np.array_equal(got, want, equal_nan=True)
    assert_same(out, want)
    assert_same(f(*args, None), want)  # out=None given explicitly allocates
