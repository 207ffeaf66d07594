"""Tests of ntlab.portfolio.optimize: agreement with direct PyPortfolioOpt calls, a closed form, errors."""

from __future__ import annotations

import warnings

import cvxpy
import numpy as np
import pandas as pd
import polars as pl
import pytest
from pypfopt import (
    BlackLittermanModel,
    EfficientCVaR,
    EfficientFrontier,
    HRPOpt,
    objective_functions,
    risk_models,
)
from pypfopt import expected_returns as pmu
from pypfopt.black_litterman import market_implied_prior_returns

import ntlab.datasets
from ntlab.exceptions import ConfigError, DataError, SchemaError
from ntlab.portfolio import (
    OptimizationError,
    Weights,
    black_litterman,
    discrete_allocation,
    expected_returns,
    optimize,
    prices_to_pandas,
    returns_from_prices,
    risk_model,
)

TOL = 1e-6


@pytest.fixture(scope="module")
def full() -> pl.DataFrame:
    return ntlab.datasets.load("pypfopt_stock_prices")


@pytest.fixture(scope="module")
def prices(full: pl.DataFrame) -> pl.DataFrame:
    return full.tail(750)


@pytest.fixture(scope="module")
def px(prices: pl.DataFrame) -> pd.DataFrame:
    return prices_to_pandas(prices)


@pytest.fixture(scope="module")
def mu_cov(px: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    return pmu.mean_historical_return(px), risk_models.CovarianceShrinkage(px).ledoit_wolf()


@pytest.fixture(scope="module")
def long_sp500() -> pl.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bars = ntlab.datasets.load("sp500_daily")
    symbols = sorted(bars["symbol"].unique().to_list())[:30]
    return bars.filter(pl.col("symbol").is_in(symbols)).select("ts", "symbol", "close").sort("symbol", "ts")


def assert_same(w: Weights, raw: dict[str, float]) -> None:
    got = w.to_dict()
    assert set(got) == set(raw)
    for k, v in raw.items():
        assert got[k] == pytest.approx(v, abs=TOL), k


SECTORS = {
    "tech": ["AAPL", "AMD", "AMZN", "FB", "GOOG", "MA", "T", "UAA"],
    "fin": ["BAC", "BBY", "JPM", "MA"],
}


def sector_mapper(symbols: list[str]) -> dict[str, str]:
    return {s: ("tech" if s in SECTORS["tech"] else "fin" if s in SECTORS["fin"] else "other") for s in symbols}


# ----------------------------------------------------------------------------- inputs
def test_inputs_and_wrappers(full: pl.DataFrame, px: pd.DataFrame) -> None:
    pxf = prices_to_pandas(full)
    assert pxf.shape == (full.height, full.width - 1) and pxf["AMZN"].isna().any()
    rets = returns_from_prices(full)
    pd.testing.assert_frame_equal(rets, pmu.returns_from_prices(pxf))
    logr = returns_from_prices(full, log=True)
    pd.testing.assert_frame_equal(logr, pmu.returns_from_prices(pxf, log_returns=True))
    pd.testing.assert_series_equal(expected_returns(px), pmu.mean_historical_return(px))
    pd.testing.assert_series_equal(expected_returns(px, "ema", span=100), pmu.ema_historical_return(px, span=100))
    pd.testing.assert_series_equal(expected_returns(px, "capm", frequency=52), pmu.capm_return(px, frequency=52))
    pd.testing.assert_frame_equal(risk_model(px, "sample"), risk_models.sample_cov(px))
    pd.testing.assert_frame_equal(risk_model(px), risk_models.CovarianceShrinkage(px).ledoit_wolf())
    pd.testing.assert_frame_equal(risk_model(px, "exp", span=60), risk_models.exp_cov(px, span=60))
    pd.testing.assert_frame_equal(risk_model(px, "semicovariance"), risk_models.semicovariance(px))


def test_long_frame_matches_wide(long_sp500: pl.DataFrame) -> None:
    wide = long_sp500.pivot(on="symbol", index="ts", values="close").sort("ts")
    a, b = prices_to_pandas(long_sp500), prices_to_pandas(wide)
    pd.testing.assert_frame_equal(a[b.columns], b)
    renamed = long_sp500.rename({"ts": "date"})
    assert prices_to_pandas(renamed).shape == a.shape
    recent = long_sp500.filter(pl.col("ts") >= pl.col("ts").max() - pl.duration(days=730))
    w = optimize(recent, "min_volatility")
    rpx = prices_to_pandas(recent)
    ef = EfficientFrontier(pmu.mean_historical_return(rpx), risk_models.CovarianceShrinkage(rpx).ledoit_wolf())
    assert_same(w, ef.min_volatility())
    assert w.frame.height == 30 and w.frame["weight"].is_sorted(descending=True)


# ----------------------------------------------------------------------------- agreement with PyPortfolioOpt
@pytest.mark.parametrize(
    ("objective", "target", "call"),
    [
        ("max_sharpe", None, lambda ef: ef.max_sharpe(risk_free_rate=0.02)),
        ("min_volatility", None, lambda ef: ef.min_volatility()),
        ("efficient_risk", 0.2, lambda ef: ef.efficient_risk(0.2)),
        ("efficient_return", 0.2, lambda ef: ef.efficient_return(0.2)),
    ],
)
def test_mean_variance_matches_pypfopt(prices, mu_cov, objective, target, call) -> None:
    w = optimize(prices, objective, target=target)
    ef = EfficientFrontier(*mu_cov)
    assert_same(w, call(ef))
    perf = ef.portfolio_performance(risk_free_rate=0.02)
    assert w.performance == pytest.approx(dict(zip(["expected_return", "volatility", "sharpe"], perf)), abs=TOL)
    assert w.objective == objective
    html = w._repr_html_()
    assert "<table>" in html and objective in html and "sharpe" in html


def test_constraints_match_pypfopt(prices, px, mu_cov) -> None:
    symbols = list(px.columns)
    mapper = sector_mapper(symbols)
    upper, lower = {"tech": 0.3, "fin": 0.2, "other": 0.8}, {"fin": 0.1}
    current = {s: 1 / len(symbols) for s in symbols}
    with pytest.warns(UserWarning, match="additional objectives"):
        w = optimize(
            prices,
            "max_sharpe",
            weight_bounds=(0.01, 0.25),
            l2_gamma=0.1,
            sector_mapper=mapper,
            sector_upper=upper,
            sector_lower=lower,
            current_weights=current,
            cost=0.01,
        )
    ef = EfficientFrontier(*mu_cov, weight_bounds=(0.01, 0.25))
    ef.add_objective(objective_functions.L2_reg, gamma=0.1)
    ef.add_objective(objective_functions.transaction_cost, w_prev=np.full(len(symbols), 1 / len(symbols)), k=0.01)
    ef.add_sector_constraints(mapper, lower, upper)
    with pytest.warns(UserWarning, match="additional objectives"):
        assert_same(w, ef.max_sharpe(risk_free_rate=0.02))
    weights = w.to_dict()
    assert sum(v for s, v in weights.items() if mapper[s] == "tech") <= 0.3 + 1e-6
    assert sum(v for s, v in weights.items() if mapper[s] == "fin") >= 0.1 - 1e-6
    assert min(weights.values()) >= 0.01 - 1e-6 and max(weights.values()) <= 0.25 + 1e-6


def test_market_neutral_matches_pypfopt(prices, mu_cov) -> None:
    w = optimize(prices, "efficient_risk", target=0.15, weight_bounds=(-1, 1), market_neutral=True)
    ef = EfficientFrontier(*mu_cov, weight_bounds=(-1, 1))
    assert_same(w, ef.efficient_risk(0.15, market_neutral=True))
    assert sum(w.to_dict().values()) == pytest.approx(0, abs=1e-6)
    w2 = optimize(prices, "efficient_return", target=0.1, weight_bounds=(-1, 1), market_neutral=True)
    assert_same(w2, EfficientFrontier(*mu_cov, weight_bounds=(-1, 1)).efficient_return(0.1, market_neutral=True))


def test_other_methods_and_frequency(prices, px) -> None:
    w = optimize(prices, "min_volatility", mu_method="ema", cov_method="sample", frequency=52)
    ef = EfficientFrontier(pmu.ema_historical_return(px, frequency=52), risk_models.sample_cov(px, frequency=52))
    assert_same(w, ef.min_volatility())


def test_hrp_matches_pypfopt(prices, px) -> None:
    w = optimize(prices, "hrp")
    hrp = HRPOpt(pmu.returns_from_prices(px))
    assert_same(w, hrp.optimize())
    assert w.performance["sharpe"] == pytest.approx(hrp.portfolio_performance(risk_free_rate=0.02)[2], abs=TOL)


# HRP: our bisection (and correlation) against a direct HRPOpt, to 1e-10, on real data
@pytest.fixture(scope="module")
def sp500_756() -> pl.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        daily = ntlab.datasets.load("sp500_daily")
    return daily.pivot(on="symbol", index="ts", values="close").sort("ts").tail(756)


def _complete(wide: pl.DataFrame) -> list[str]:
    return [c for c in wide.columns[1:] if wide[c].null_count() == 0]


def assert_hrp_is_hrpopt(
    prices: pl.DataFrame | pd.DataFrame, risk_free_rate: float = 0.02, frequency: int = 252
) -> tuple[Weights, dict[str, float]]:
    w = optimize(prices, "hrp", risk_free_rate=risk_free_rate, frequency=frequency)
    hrp = HRPOpt(pmu.returns_from_prices(prices_to_pandas(prices)))
    raw = hrp.optimize()
    perf = hrp.portfolio_performance(risk_free_rate=risk_free_rate, frequency=frequency)
    got = w.to_dict()
    assert list(got) == list(w.frame["symbol"]) and set(got) == set(raw)
    assert max(abs(got[k] - v) for k, v in raw.items()) < 1e-10
    assert sum(got.values()) == pytest.approx(1.0, abs=1e-12)
    for key, ref in zip(("expected_return", "volatility", "sharpe"), perf):
        assert w.performance[key] == pytest.approx(ref, abs=1e-10), key
    return w, raw


def test_hrp_equals_hrpopt_on_real_data(prices, full) -> None:
    assert_hrp_is_hrpopt(prices)
    assert_hrp_is_hrpopt(prices, risk_free_rate=0.0, frequency=52)
    w, _ = assert_hrp_is_hrpopt(full)  # whole history: AMZN, BABA, META... listed mid-window (NaN)
    assert prices_to_pandas(full).isna().any().sum() >= 5 and w.frame.height == full.width - 1


def test_hrp_equals_hrpopt_500_stocks(sp500_756) -> None:
    complete = _complete(sp500_756)
    assert len(complete) >= 450
    w, _ = assert_hrp_is_hrpopt(sp500_756.select("ts", *complete[:500]))
    assert w.frame.height == len(complete[:500]) and (w.frame["weight"] > 0).all()


def test_hrp_equals_hrpopt_with_missing_prices(sp500_756) -> None:
    gappy = [c for c in sp500_756.columns[1:] if 0 < sp500_756[c].null_count() < 600]
    listed_mid_window = [c for c in gappy if sp500_756[c][0] is None]
    assert len(gappy) >= 10 and len(listed_mid_window) >= 5
    prices = sp500_756.select("ts", *_complete(sp500_756)[:60], *gappy)
    assert pmu.returns_from_prices(prices_to_pandas(prices)).isna().any().any()  # pairwise-complete corr/cov
    assert_hrp_is_hrpopt(prices)


def test_hrp_two_and_three_assets(px) -> None:
    w3, _ = assert_hrp_is_hrpopt(px.iloc[:, :3])  # an odd split: 1 | 2
    assert w3.frame.height == 3
    w2, _ = assert_hrp_is_hrpopt(px.iloc[:, :2])  # one split: the inverse-variance weights
    var = pmu.returns_from_prices(px.iloc[:, :2]).var()
    for s, v in ((1 / var) / (1 / var).sum()).items():
        assert w2.to_dict()[s] == pytest.approx(v, abs=1e-12)


def test_hrp_correlation_is_pandas_bit_for_bit(sp500_756) -> None:
    from ntlab.portfolio.optimize import _corr_like_pandas

    rets = pmu.returns_from_prices(prices_to_pandas(sp500_756.select("ts", *_complete(sp500_756)[:500])))
    assert np.array_equal(_corr_like_pandas(rets), rets.corr().to_numpy())
    rng = np.random.default_rng(7)
    x = rng.normal(0.001, 0.02, size=(40, 6)) + 1e4  # a large mean: Welford's running updates matter
    x[:, 1] = 3 * x[:, 0]  # collinear: pandas clips the correlation to 1
    x[:, 2] = -x[:, 0]
    x[:, 3] = 5.0  # constant: NaN
    for frame in (pd.DataFrame(x), pd.DataFrame(x[:2]), pd.DataFrame(x[:1]), pd.DataFrame(x[:, :1])):
        assert np.array_equal(_corr_like_pandas(frame), frame.corr().to_numpy(), equal_nan=True)
    x[5, 4] = np.nan  # missing values: pandas' own pairwise-complete correlation
    assert np.array_equal(_corr_like_pandas(pd.DataFrame(x)), pd.DataFrame(x).corr().to_numpy(), equal_nan=True)


@pytest.mark.parametrize(
    "option", [{"l2_gamma": 0.1}, {"sector_mapper": {"AAPL": "tech"}}, {"market_neutral": True}, {"cost": 0.01}]
)
def test_hrp_rejects_constraints(prices, option) -> None:
    with pytest.raises(ConfigError, match="objective 'hrp' takes no l2_gamma, sector constraints"):
        optimize(prices, "hrp", **option)


@pytest.mark.parametrize("target", [None, 0.15])
def test_cvar_matches_pypfopt(prices, px, mu_cov, target) -> None:
    w = optimize(prices, "cvar", target=target, weight_bounds=(0, 0.3))
    ecv = EfficientCVaR(mu_cov[0], pmu.returns_from_prices(px).dropna(), weight_bounds=(0, 0.3))
    raw = ecv.min_cvar() if target is None else ecv.efficient_return(target)
    assert_same(w, raw)
    assert set(w.performance) == {"expected_return", "cvar"}
    assert w.performance["cvar"] == pytest.approx(ecv.portfolio_performance()[1], abs=TOL)


def test_black_litterman_matches_pypfopt(prices, px) -> None:
    views, conf = {"AAPL": 0.25, "JPM": 0.05}, {"AAPL": 0.8, "JPM": 0.4}
    caps = {s: float(i + 1) for i, s in enumerate(px.columns)}
    cov = risk_models.CovarianceShrinkage(px).ledoit_wolf()
    w = black_litterman(prices, views, conf, market_caps=caps, risk_aversion=2.5)
    pi = market_implied_prior_returns(pd.Series(caps), 2.5, cov, 0.02)
    bl = BlackLittermanModel(
        cov, pi=pi, absolute_views=views, risk_aversion=2.5, omega="idzorek", view_confidences=[0.8, 0.4]
    )
    ef = EfficientFrontier(bl.bl_returns(), bl.bl_cov())
    assert_same(w, ef.max_sharpe(risk_free_rate=0.02))
    assert w.objective == "black_litterman"

    w2 = black_litterman(prices, views, use="bl_weights")
    bl2 = BlackLittermanModel(cov, pi="equal", absolute_views=views, risk_aversion=1.0)
    assert_same(w2, bl2.bl_weights(1.0))
    assert w2.performance["volatility"] > 0


def test_min_variance_closed_form(prices, px) -> None:
    w = optimize(prices, "min_volatility", weight_bounds=(None, None), cov_method="sample")
    cov = risk_models.sample_cov(px).to_numpy()
    x = np.linalg.solve(cov, np.ones(len(cov)))
    expected = dict(zip(px.columns, x / x.sum()))
    assert_same(w, expected)
    assert (w.frame["weight"] < 0).any()


# ----------------------------------------------------------------------------- discrete allocation
@pytest.mark.parametrize("method", ["lp", "greedy"])
def test_discrete_allocation(prices, long_sp500, method) -> None:
    w = optimize(prices, "min_volatility")
    last = prices.tail(1).row(0, named=True)
    for latest in (prices, {k: v for k, v in last.items() if k != "ts"}):
        alloc, leftover = discrete_allocation(w, latest, 10_000, method=method)
        assert alloc.schema == {"symbol": pl.String, "shares": pl.Int64, "value": pl.Float64}
        assert leftover >= 0 and alloc["value"].sum() + leftover <= 10_000 + 1e-6
        assert (alloc["shares"] >= 0).all()
        for s, n, v in alloc.iter_rows():
            assert v == pytest.approx(n * last[s])
    lw = optimize(long_sp500.filter(pl.col("ts").dt.year() >= 2017), "min_volatility")
    alloc, leftover = discrete_allocation(lw, long_sp500, 50_000, method=method)
    assert alloc["value"].sum() <= 50_000 and leftover >= 0


def test_discrete_allocation_errors(prices) -> None:
    w = optimize(prices, "min_volatility")
    with pytest.raises(ConfigError, match="allocation method"):
        discrete_allocation(w, prices, 1000, method="bogus")
    with pytest.raises(ConfigError, match="total_value must be positive"):
        discrete_allocation(w, prices, 0)
    with pytest.raises(DataError, match="no positive latest price"):
        discrete_allocation(w, {"AAPL": 100.0}, 1000)


# ----------------------------------------------------------------------------- errors
def test_input_errors(prices, full) -> None:
    with pytest.raises(SchemaError, match="Polars or pandas"):
        prices_to_pandas([1, 2])
    with pytest.raises(SchemaError, match="time column"):
        prices_to_pandas(prices.drop("ts"))
    with pytest.raises(SchemaError, match="'close'"):
        prices_to_pandas(pl.DataFrame({"ts": [1, 2], "symbol": ["a", "b"], "px": [1.0, 2.0]}))
    with pytest.raises(DataError, match="at least 2 assets"):
        optimize(prices.select("ts", "AAPL"))
    with pytest.raises(DataError, match="no values"):
        optimize(prices.with_columns(pl.lit(None, dtype=pl.Float64).alias("AAPL")))
    with pytest.raises(DataError, match="must be positive"):
        optimize(prices.with_columns(pl.col("AAPL") * 0 - 1))
    with pytest.raises(DataError, match="not sorted"):
        optimize(prices.reverse())
    with pytest.raises(DataError, match="not sorted"):
        prices_to_pandas(prices_to_pandas(prices).iloc[::-1])
    long = prices.unpivot(index="ts", variable_name="symbol", value_name="close")
    with pytest.raises(DataError, match="within each symbol"):
        prices_to_pandas(long.reverse())
    with pytest.raises(ConfigError, match="frequency"):
        returns_from_prices(prices, frequency=0)


def test_config_errors(prices) -> None:
    with pytest.raises(ConfigError, match="unknown objective 'bogus'"):
        optimize(prices, "bogus")
    with pytest.raises(ConfigError, match="unknown expected-returns method"):
        expected_returns(prices, "bogus")
    with pytest.raises(ConfigError, match="unknown risk-model method"):
        risk_model(prices, "bogus")
    with pytest.raises(ConfigError, match="unknown risk-model method"):
        optimize(prices, cov_method="bogus")
    with pytest.raises(ConfigError, match="needs target"):
        optimize(prices, "efficient_risk")
    with pytest.raises(ConfigError, match="annual return"):
        optimize(prices, "efficient_return")
    with pytest.raises(ConfigError, match="hrp"):
        optimize(prices, "hrp", l2_gamma=0.1)
    with pytest.raises(ConfigError, match="market_neutral is not supported"):
        optimize(prices, "max_sharpe", market_neutral=True)
    with pytest.raises(ConfigError, match="needs current_weights"):
        optimize(prices, "min_volatility", cost=0.01)
    with pytest.raises(ConfigError, match="need a sector_mapper"):
        optimize(prices, "min_volatility", sector_upper={"tech": 0.3})
    with pytest.raises(ConfigError, match="no sector for"):
        optimize(prices, "min_volatility", sector_mapper={"AAPL": "tech"}, sector_upper={"tech": 0.3})
    with pytest.raises(ConfigError, match="Black-Litterman use"):
        black_litterman(prices, {"AAPL": 0.1}, use="bogus")
    with pytest.raises(DataError, match="unknown"):
        black_litterman(prices, {"NOPE": 0.1})
    with pytest.raises(ConfigError, match="one value in"):
        black_litterman(prices, {"AAPL": 0.1}, {"AAPL": 1.5})


def test_infeasible_problems(prices, px) -> None:
    n = px.shape[1]
    with pytest.raises(OptimizationError, match=rf"upper bound 0.01 x {n} assets .* at least"):
        optimize(prices, "min_volatility", weight_bounds=(0, 0.01))
    with pytest.raises(OptimizationError, match="lower bound 0.5"):
        optimize(prices, "min_volatility", weight_bounds=(0.5, 1))
    mapper = sector_mapper(list(px.columns))
    with pytest.raises(OptimizationError, match="sector_upper sums to 0.6"):
        optimize(prices, "min_volatility", sector_mapper=mapper, sector_upper={"tech": 0.2, "fin": 0.2, "other": 0.2})
    with pytest.raises(OptimizationError, match="sector_lower sums to 1.2"):
        optimize(prices, "min_volatility", sector_mapper=mapper, sector_lower={"tech": 0.6, "fin": 0.6})
    with pytest.raises(OptimizationError, match="efficient_return failed.*relax weight_bounds"):
        optimize(prices, "efficient_return", target=5.0)
    with pytest.raises(OptimizationError, match="efficient_risk failed"):
        optimize(prices, "efficient_risk", target=0.01)
    with pytest.raises(OptimizationError, match="cvar failed.*lower target"):
        optimize(prices, "cvar", target=5.0)
    # a sector floor above its own cap: only the solver finds it infeasible
    with pytest.raises(OptimizationError, match="min_volatility failed"):
        optimize(prices, "min_volatility", sector_mapper=mapper, sector_lower={"fin": 0.95}, sector_upper={"fin": 0.9})


def test_max_sharpe_risk_free_above_every_return(prices, px) -> None:
    best = float(pmu.mean_historical_return(px).max())
    with pytest.raises(
        OptimizationError,
        match=rf"max_sharpe failed.*lower risk_free_rate \(5.0\) below the best "
        rf"expected return \({best:.4f}\)",
    ):
        optimize(prices, "max_sharpe", risk_free_rate=5.0)
    with pytest.raises(OptimizationError, match="black_litterman max_sharpe failed.*lower risk_free_rate"):
        black_litterman(prices, {"AAPL": 0.1}, risk_free_rate=5.0)


def test_solver_failure_is_wrapped(prices, monkeypatch) -> None:
    def boom(self, *a, **k):
        raise cvxpy.error.SolverError("solver exploded")

    monkeypatch.setattr(EfficientFrontier, "min_volatility", boom)
    with pytest.raises(OptimizationError, match="min_volatility failed: solver exploded.*add l2_gamma") as info:
        optimize(prices, "min_volatility")
    assert isinstance(info.value, RuntimeError)

    from pypfopt import DiscreteAllocation

    monkeypatch.setattr(DiscreteAllocation, "lp_portfolio", boom)
    w = optimize(prices, "hrp")
    with pytest.raises(OptimizationError, match="try method='greedy'"):
        discrete_allocation(w, prices, 1000)
