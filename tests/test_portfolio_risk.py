"""Portfolio risk metrics against independent NumPy/scipy formulas on real data, properties and error paths."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

import ntlab.datasets
from ntlab.exceptions import ConfigError, DataError, DataQualityWarning
from ntlab.portfolio import risk

LEVELS = (0.9, 0.95, 0.99)
METHODS = ("historical", "parametric", "cornish_fisher")


# ----------------------------------------------------------------------------------------------------------------------
# fixtures: real data
# ----------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spy() -> np.ndarray:
    px = ntlab.datasets.load("spy_daily")
    assert px.columns == ["ts", "SPY"]
    c = px["SPY"].to_numpy()
    return c[1:] / c[:-1] - 1.0


@pytest.fixture(scope="module")
def etf() -> pl.DataFrame:
    return ntlab.datasets.load("etf_daily_closes")


@pytest.fixture(scope="module")
def sp500_returns() -> pl.DataFrame:
    with pytest.warns(DataQualityWarning, match="sp500_daily"):  # 11 known bad rows are dropped/repaired
        long = ntlab.datasets.load("sp500_daily")
    syms = ["AAPL", "MSFT", "JPM", "XOM", "JNJ"]
    wide = long.filter(pl.col("symbol").is_in(syms)).pivot(on="symbol", index="ts", values="close").sort("ts")
    wide = wide.select("ts", *syms).drop_nulls()
    return wide.select("ts", *[(pl.col(s) / pl.col(s).shift(1) - 1.0).alias(s) for s in syms]).slice(1)


# ----------------------------------------------------------------------------------------------------------------------
# volatility, beta, tracking error
# ----------------------------------------------------------------------------------------------------------------------
def test_volatility_matches_formula(spy: np.ndarray) -> None:
    n = spy.size
    mu = spy.sum() / n
    sd = math.sqrt(((spy - mu) ** 2).sum() / (n - 1))
    assert risk.volatility(spy) == pytest.approx(sd * math.sqrt(252), rel=1e-12)
    assert risk.volatility(pl.Series(spy), periods_per_year=12) == pytest.approx(sd * math.sqrt(12), rel=1e-12)
    assert risk.volatility(list(spy[:10])) == pytest.approx(np.std(spy[:10], ddof=1) * math.sqrt(252))


def test_beta_and_tracking_error(sp500_returns: pl.DataFrame) -> None:
    r = sp500_returns["AAPL"].to_numpy()
    b = sp500_returns["MSFT"].to_numpy()
    slope = stats.linregress(b, r).slope
    assert risk.beta(r, b) == pytest.approx(slope, rel=1e-10)
    assert risk.beta(b, b) == pytest.approx(1.0)
    d = r - b
    te = math.sqrt(((d - d.mean()) ** 2).sum() / (d.size - 1)) * math.sqrt(252)
    assert risk.tracking_error(r, b) == pytest.approx(te, rel=1e-12)
    assert risk.tracking_error(pl.Series(r), pl.Series(b), periods_per_year=52) == pytest.approx(
        te * math.sqrt(52 / 252), rel=1e-12
    )


# ----------------------------------------------------------------------------------------------------------------------
# VaR / CVaR
# ----------------------------------------------------------------------------------------------------------------------
def _cf(z: float | np.ndarray, s: float, k: float) -> float | np.ndarray:
    return z + (z * z - 1) * s / 6 + (z**3 - 3 * z) * k / 24 - (2 * z**3 - 5 * z) * s * s / 36


@pytest.mark.parametrize("level", LEVELS)
def test_historical_var_cvar(spy: np.ndarray, level: float) -> None:
    srt = np.sort(spy)
    j = math.floor((1 - level) * (spy.size - 1))  # numpy "lower": order statistic floor(alpha (n-1))
    q = srt[j]
    assert risk.var(spy, level) == pytest.approx(-q, rel=1e-12)
    assert risk.cvar(spy, level) == pytest.approx(-srt[: j + 1].mean() if srt[j + 1] > q else -spy[spy <= q].mean())


@pytest.mark.parametrize("level", LEVELS)
def test_parametric_var_cvar(spy: np.ndarray, level: float) -> None:
    mu, sd = spy.mean(), spy.std(ddof=1)
    assert risk.var(spy, level, "parametric") == pytest.approx(-stats.norm.ppf(1 - level, mu, sd), rel=1e-10)
    # ES of a normal by numerical integration of the quantile function
    es, _ = integrate.quad(lambda p: stats.norm.ppf(p, mu, sd), 0, 1 - level, limit=200)
    assert risk.cvar(spy, level, "parametric") == pytest.approx(-es / (1 - level), rel=1e-7)


@pytest.mark.parametrize("level", LEVELS)
def test_cornish_fisher_var_cvar(spy: np.ndarray, level: float) -> None:
    mu, sd = spy.mean(), spy.std(ddof=1)
    s, k = stats.skew(spy), stats.kurtosis(spy, fisher=True)
    z = stats.norm.ppf(1 - level)
    zcf = z + (z**2 - 1) * s / 6 + (z**3 - 3 * z) * k / 24 - (2 * z**3 - 5 * z) * s**2 / 36
    assert risk.var(spy, level, "cornish_fisher") == pytest.approx(-(mu + sd * zcf), rel=1e-10)
    tail, _ = integrate.quad(lambda p: _cf(stats.norm.ppf(p), s, k), 0, 1 - level, limit=200)
    assert risk.cvar(spy, level, "cornish_fisher") == pytest.approx(-(mu + sd * tail / (1 - level)), rel=1e-4)


def test_cornish_fisher_reduces_to_normal_for_symmetric_mesokurtic_sample() -> None:
    x = stats.norm.ppf((np.arange(2000) + 0.5) / 2000) * 0.01  # skew 0, excess kurtosis ~0
    x = np.concatenate([x, -x])
    for f in (risk.var, risk.cvar):
        assert f(x, 0.99, "cornish_fisher") == pytest.approx(f(x, 0.99, "parametric"), rel=2e-2)


def test_constant_series_has_degenerate_risk() -> None:
    x = np.full(50, 0.001)
    for m in METHODS:
        assert risk.var(x, 0.95, m) == pytest.approx(-0.001)
        assert risk.cvar(x, 0.95, m) == pytest.approx(-0.001)


_returns = st.lists(
    st.floats(-0.5, 0.5, allow_nan=False, allow_infinity=False, allow_subnormal=False), min_size=5, max_size=200
).map(np.array)


@settings(deadline=None, max_examples=40, derandomize=True)
@given(_returns, st.floats(0.5, 0.995), st.sampled_from(METHODS))
def test_cvar_at_least_var(x: np.ndarray, level: float, method: str) -> None:
    if method == "cornish_fisher":
        s, k = stats.skew(x), stats.kurtosis(x)
        p = np.linspace(1e-6, 1 - level, 400)
        assume(np.isfinite(s) and np.all(np.diff(_cf(stats.norm.ppf(p), s, k)) >= 0))  # monotone CF tail
    assert risk.cvar(x, level, method) >= risk.var(x, level, method) - 1e-12


@settings(deadline=None, max_examples=40, derandomize=True)
@given(_returns, st.floats(0.5, 0.98), st.floats(0.001, 0.019), st.sampled_from(("historical", "parametric")))
def test_var_increases_with_level(x: np.ndarray, level: float, step: float, method: str) -> None:
    assert risk.var(x, level + step, method) >= risk.var(x, level, method) - 1e-12


@settings(deadline=None, max_examples=40, derandomize=True)
@given(_returns, st.floats(0.5, 0.995), st.floats(0.01, 100.0))
def test_historical_scaling(x: np.ndarray, level: float, c: float) -> None:
    assert risk.var(c * x, level) == pytest.approx(c * risk.var(x, level), rel=1e-9, abs=1e-12)
    assert risk.cvar(c * x, level) == pytest.approx(c * risk.cvar(x, level), rel=1e-9, abs=1e-12)


# ----------------------------------------------------------------------------------------------------------------------
# drawdowns
# ----------------------------------------------------------------------------------------------------------------------
def test_drawdowns_by_hand() -> None:
    eq = [100, 110, 99, 88, 110, 120, 108, 90, 100]
    dd = risk.drawdowns(eq, kind="equity")
    assert dd.to_dicts() == [
        {"start": 5, "trough": 7, "end": None, "depth": pytest.approx(0.25), "length": 3, "recovered": False},
        {"start": 1, "trough": 3, "end": 4, "depth": pytest.approx(0.2), "length": 3, "recovered": True},
    ]
    assert risk.max_drawdown(eq, kind="equity") == pytest.approx(0.25)
    r = np.diff(eq) / np.asarray(eq[:-1], dtype=float)
    from_r = risk.drawdowns(r)  # the returns curve starts at 1: same positions
    assert from_r.drop("depth").equals(dd.drop("depth"))
    np.testing.assert_allclose(from_r["depth"].to_numpy(), dd["depth"].to_numpy(), rtol=1e-12)
    assert risk.max_drawdown([0.01, 0.02]) == 0.0
    assert risk.drawdowns([0.01, 0.02]).height == 0


def test_drawdowns_real_spy(spy: np.ndarray) -> None:
    e = np.concatenate(([1.0], np.cumprod(1 + spy)))
    peak = np.maximum.accumulate(e)
    mdd = np.max(1 - e / peak)
    assert risk.max_drawdown(spy) == pytest.approx(mdd, rel=1e-12)
    dd = risk.drawdowns(spy)
    top = dd.row(0, named=True)
    assert top["depth"] == pytest.approx(mdd, rel=1e-12)
    assert top["trough"] == int(np.argmax(1 - e / peak))
    assert e[top["start"]] == peak[top["trough"]]
    assert e[top["end"]] >= e[top["start"]] > e[top["end"] - 1]
    # episodes do not overlap and the underwater periods are exactly those with e < peak
    under = np.zeros(e.size, dtype=bool)
    for row in dd.iter_rows(named=True):
        stop = row["end"] if row["recovered"] else e.size
        under[row["start"] + 1 : stop] = True
    assert np.array_equal(under, e < peak)


def test_episode_kernel_pure_python() -> None:
    kern = getattr(risk._episodes_kernel, "py_func", risk._episodes_kernel)  # plain under NUMBA_DISABLE_JIT
    out = kern(np.array([1.0, 2.0, 1.5, 1.0, 2.5, 2.0]))
    np.testing.assert_allclose(out, [[1, 3, 4, 0.5], [4, 5, -1, 0.2]])
    assert kern(np.array([1.0, 1.1])).shape == (0, 4)


# ----------------------------------------------------------------------------------------------------------------------
# portfolio returns and risk contributions
# ----------------------------------------------------------------------------------------------------------------------
def test_portfolio_returns(sp500_returns: pl.DataFrame) -> None:
    w = np.array([0.3, 0.2, 0.2, 0.2, 0.1])
    x = sp500_returns.drop("ts").to_numpy()
    got = risk.portfolio_returns(w, sp500_returns)
    assert got.name == "portfolio"
    np.testing.assert_allclose(got.to_numpy(), (x * w).sum(axis=1), rtol=1e-12)
    by_name = risk.portfolio_returns({"AAPL": 0.5, "XOM": 0.5}, sp500_returns)
    np.testing.assert_allclose(by_name.to_numpy(), 0.5 * (x[:, 0] + x[:, 3]), rtol=1e-12)


def test_risk_contributions_real(sp500_returns: pl.DataFrame) -> None:
    syms = sp500_returns.columns[1:]
    x = sp500_returns.drop("ts").to_numpy()
    cov = np.cov(x, rowvar=False) * 252
    w = np.array([0.3, 0.2, 0.2, 0.2, 0.1])
    rc = risk.risk_contributions(w, cov, symbols=syms)
    sigma = math.sqrt(w @ cov @ w)
    assert rc["symbol"].to_list() == syms
    assert rc["component"].sum() == pytest.approx(sigma, rel=1e-12)
    assert rc["percent"].sum() == pytest.approx(1.0, rel=1e-12)
    assert sigma == pytest.approx(risk.volatility(risk.portfolio_returns(w, sp500_returns)), rel=1e-10)
    # marginal = numerical gradient of sigma(w)
    h = 1e-7
    grad = [(math.sqrt((w + h * e) @ cov @ (w + h * e)) - sigma) / h for e in np.eye(5)]
    np.testing.assert_allclose(rc["marginal"].to_numpy(), grad, rtol=1e-5)


def test_equal_risk_by_hand() -> None:
    # two uncorrelated assets, vols 10 % and 20 %: inverse-vol weights 2/3, 1/3 give equal risk
    cov = np.diag([0.01, 0.04])
    rc = risk.risk_contributions([2 / 3, 1 / 3], cov)
    sigma = math.sqrt((2 / 3) ** 2 * 0.01 + (1 / 3) ** 2 * 0.04)
    assert rc["symbol"].to_list() == ["0", "1"]
    np.testing.assert_allclose(rc["percent"].to_numpy(), [0.5, 0.5])
    np.testing.assert_allclose(rc["component"].to_numpy(), [sigma / 2, sigma / 2])
    np.testing.assert_allclose(rc["marginal"].to_numpy(), [2 / 3 * 0.01 / sigma, 1 / 3 * 0.04 / sigma])


# ----------------------------------------------------------------------------------------------------------------------
# stress tests
# ----------------------------------------------------------------------------------------------------------------------
def _window(frame: pl.DataFrame, start: str, end: str) -> pl.DataFrame:
    d = pl.col("ts").cast(pl.Date)
    return frame.filter((d >= dt.date.fromisoformat(start)) & (d <= dt.date.fromisoformat(end)))


def test_stress_test_gfc_by_hand(etf: pl.DataFrame) -> None:
    w = {"SPY": 0.5, "TLT": 0.3, "XLF": 0.2}
    res = risk.stress_test(w, etf, "2008-09-01", "2009-03-09")
    win = _window(etf, "2008-09-01", "2009-03-09")
    ret = {s: win[s][-1] / win[s][0] - 1 for s in w}
    assert res.start == dt.date(2008, 9, 2) and res.end == dt.date(2009, 3, 9)  # 1 Sept 2008 was Labor Day
    assert res.cumulative_return == pytest.approx(sum(w[s] * ret[s] for s in w), rel=1e-12)
    value = sum(w[s] * win[s].to_numpy() / win[s][0] for s in w)
    assert res.max_drawdown == pytest.approx(np.max(1 - value / np.maximum.accumulate(value)), rel=1e-12)
    c = res.contributions.filter(pl.col("weight") != 0)
    assert dict(zip(c["symbol"], c["contribution"], strict=True)) == pytest.approx({s: w[s] * ret[s] for s in w})
    assert res.contributions["contribution"].sum() == pytest.approx(res.cumulative_return)
    assert res.cumulative_return < -0.2 and res.excluded == ()
    # vector weights in column order give the same answer
    vec = [w.get(a, 0.0) for a in etf.columns[1:]]
    assert risk.stress_test(vec, etf, dt.date(2008, 9, 1), dt.datetime(2009, 3, 9)).cumulative_return == pytest.approx(
        res.cumulative_return
    )


def test_stress_scenarios(etf: pl.DataFrame) -> None:
    w = {"SPY": 0.6, "TLT": 0.4}
    table = risk.stress_scenarios(w, etf)
    assert "gfc_2008" in table["scenario"].to_list() and "covid_2020" not in table["scenario"].to_list()
    gfc = table.filter(pl.col("scenario") == "gfc_2008").row(0, named=True)
    assert gfc["cumulative_return"] == pytest.approx(
        risk.stress_test(w, etf, *risk.SCENARIOS["gfc_2008"]).cumulative_return
    )
    one = risk.stress_scenarios(w, etf, names=["china_2015"])
    assert one["scenario"].to_list() == ["china_2015"]
    with pytest.raises(ConfigError, match="unknown scenarios"):
        risk.stress_scenarios(w, etf, names=["nope"])
    with pytest.raises(DataError, match="not covered"):
        risk.stress_scenarios(w, etf, names=["dotcom_2000"])


def test_stress_missing_assets() -> None:
    px = ntlab.datasets.load("pypfopt_stock_prices")  # AMZN starts in 1997, BABA in 2014
    w = {"AAPL": 0.5, "BABA": 0.5}
    with pytest.raises(DataError, match=r"missing prices.*BABA"):
        risk.stress_test(w, px, "2008-09-01", "2009-03-09")
    with pytest.warns(DataQualityWarning, match="BABA"):
        res = risk.stress_test(w, px, "2008-09-01", "2009-03-09", missing="exclude")
    win = _window(px, "2008-09-01", "2009-03-09")
    assert res.excluded == ("BABA",)
    assert res.cumulative_return == pytest.approx(0.5 * (win["AAPL"][-1] / win["AAPL"][0] - 1), rel=1e-12)
    baba = res.contributions.filter(pl.col("symbol") == "BABA").row(0, named=True)
    assert baba["asset_return"] is None and baba["contribution"] == 0.0
    with pytest.warns(DataQualityWarning):
        t = risk.stress_scenarios(w, px, names=["gfc_2008"], missing="exclude")
    assert t["n_excluded"].to_list() == [1]


# ----------------------------------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------------------------------
def test_return_input_errors() -> None:
    with pytest.raises(DataError, match="non-finite value.*row 2"):
        risk.volatility([0.1, 0.2, np.nan, 0.3])
    with pytest.raises(DataError, match="null at row 1"):
        risk.var(pl.Series([0.1, None, 0.2]))
    with pytest.raises(DataError, match="one-dimensional"):
        risk.var(np.zeros((3, 2)))
    with pytest.raises(DataError, match="at least 2"):
        risk.volatility([0.1])
    with pytest.raises(DataError, match="at least 2"):
        risk.var([0.1], method="parametric")
    with pytest.raises(DataError, match="same length"):
        risk.beta([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(DataError, match="zero variance"):
        risk.beta([0.1, 0.2, 0.3], [0.1, 0.1, 0.1])
    with pytest.raises(DataError, match="-100 %"):
        risk.max_drawdown([0.1, -1.0])
    with pytest.raises(DataError, match="equity must be > 0"):
        risk.drawdowns([1.0, 0.0], kind="equity")


@pytest.mark.parametrize("level", [0.0, 1.0, -0.5, 1.5, "0.95"])
def test_level_errors(level: object) -> None:
    with pytest.raises(ConfigError, match=r"level must lie strictly in \(0, 1\)"):
        risk.var([0.1, 0.2], level)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="level must lie"):
        risk.cvar([0.1, 0.2], level)  # type: ignore[arg-type]


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown method"):
        risk.var([0.1, 0.2], method="monte_carlo")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="periods_per_year"):
        risk.volatility([0.1, 0.2], periods_per_year=0)
    with pytest.raises(ConfigError, match="kind must be"):
        risk.max_drawdown([0.1], kind="prices")  # type: ignore[arg-type]


def test_risk_contribution_errors() -> None:
    cov = np.array([[0.04, 0.01], [0.01, 0.09]])
    with pytest.raises(DataError, match="square"):
        risk.risk_contributions([0.5, 0.5], np.ones((2, 3)))
    with pytest.raises(DataError, match="non-finite"):
        risk.risk_contributions([0.5, 0.5], np.array([[np.nan, 0], [0, 1.0]]))
    with pytest.raises(DataError, match="weights length 3 != number of assets 2"):
        risk.risk_contributions([0.2, 0.3, 0.5], cov)
    with pytest.raises(DataError, match="weights must be finite"):
        risk.risk_contributions([np.inf, 0.5], cov)
    with pytest.raises(DataError, match="not symmetric"):
        risk.risk_contributions([0.5, 0.5], np.array([[0.04, 0.02], [0.01, 0.09]]))
    with pytest.raises(DataError, match="not positive semi-definite"):
        risk.risk_contributions([0.5, 0.5], np.array([[0.01, 0.05], [0.05, 0.01]]))
    with pytest.raises(DataError, match="symbols length"):
        risk.risk_contributions([0.5, 0.5], cov, symbols=["A"])
    with pytest.raises(DataError, match="variance is zero"):
        risk.risk_contributions([0.0, 0.0], cov)


def test_weights_and_stress_errors(etf: pl.DataFrame) -> None:
    frame = pl.DataFrame({"ts": [1, 2], "A": [0.1, None], "B": [0.2, 0.1]})
    with pytest.raises(DataError, match="column 'A'.*row 1"):
        risk.portfolio_returns([0.5, 0.5], frame)
    assert risk.portfolio_returns([0.0, 1.0], frame).to_list() == [0.2, 0.1]  # unweighted nulls are fine
    with pytest.raises(DataError, match="not in the frame"):
        risk.portfolio_returns({"C": 1.0}, frame)
    with pytest.raises(DataError, match="weights length 3 != number of assets 2"):
        risk.portfolio_returns([0.2, 0.3, 0.5], frame)
    with pytest.raises(DataError, match="weights must be finite"):
        risk.portfolio_returns([np.nan, 1.0], frame)
    with pytest.raises(DataError, match="no asset columns"):
        risk.portfolio_returns([], frame.select("ts"))
    w = {"SPY": 1.0}
    with pytest.raises(ConfigError, match="missing must be"):
        risk.stress_test(w, etf, "2008-09-01", "2009-03-09", missing="drop")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="must be after start"):
        risk.stress_test(w, etf, "2009-03-09", "2008-09-01")
    with pytest.raises(ConfigError, match="ISO date"):
        risk.stress_test(w, etf, "Sept 2008", "2009-03-09")
    with pytest.raises(DataError, match="no 'time' column"):
        risk.stress_test(w, etf, "2008-09-01", "2009-03-09", ts_column="time")
    with pytest.raises(DataError, match="not covered"):
        risk.stress_test(w, etf, "2000-03-24", "2002-10-09")
    with pytest.raises(DataError, match="fewer than two"):
        risk.stress_test(w, etf, "2008-09-06", "2008-09-07")  # a weekend
    with pytest.raises(DataError, match="or below zero"):
        risk.stress_test({"SPY": 3.0, "TLT": -2.0}, etf, "2008-09-01", "2009-03-09")
