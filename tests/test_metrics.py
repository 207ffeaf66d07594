"""Performance metrics against independent formulas (pandas/NumPy/statistics), edge cases, errors."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import statistics
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ntlab.datasets
from ntlab.backtest import metrics as m
from ntlab.exceptions import ConfigError, DataError, SchemaError

START = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
YEAR = dt.timedelta(days=365.25)
REL = 1e-12


def make_equity(
    values: list[float] | np.ndarray,
    ts: list[dt.datetime] | None = None,
    *,
    step: dt.timedelta = DAY,
    gross: list[float] | np.ndarray | None = None,
    traded: list[float] | np.ndarray | None = None,
    fees: list[float] | np.ndarray | None = None,
) -> pl.DataFrame:
    """An engine-like equity frame: fully invested unless ``gross`` says otherwise."""
    values = np.asarray(values, dtype=float)
    n = values.size
    stamps = ts if ts is not None else [START + i * step for i in range(n)]
    position = values if gross is None else np.asarray(gross, dtype=float)
    return pl.DataFrame(
        {
            "ts": pl.Series(stamps, dtype=pl.Datetime("ns", "UTC")),
            "cash": values - position,
            "position_value": position,
            "gross_exposure": position,
            "equity": values,
            "traded": np.zeros(n) if traded is None else np.asarray(traded, dtype=float),
            "fees": np.zeros(n) if fees is None else np.asarray(fees, dtype=float),
        }
    )


def make_trades(pnl: list[float], holding: list[dt.timedelta] | None = None) -> pl.DataFrame:
    n = len(pnl)
    holding = holding or [DAY] * n
    entry = [START + i * DAY for i in range(n)]
    return pl.DataFrame(
        {
            "symbol": ["X"] * n,
            "side": ["long"] * n,
            "qty": [2.0] * n,
            "entry_ts": pl.Series(entry, dtype=pl.Datetime("ns", "UTC")),
            "exit_ts": pl.Series([e + h for e, h in zip(entry, holding, strict=True)], dtype=pl.Datetime("ns", "UTC")),
            "entry_price": [50.0] * n,
            "exit_price": [50.0 + p / 2 for p in pnl],
            "fees": [0.0] * n,
            "pnl": pnl,
            "return": [p / 100.0 for p in pnl],
        },
        schema_overrides={"pnl": pl.Float64, "return": pl.Float64},
    )


def same(a: float, b: float, rel: float = REL) -> bool:
    """Equal to ``rel`` (relative), NaN equal to NaN, inf equal to inf of the same sign."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or math.isclose(a, b, rel_tol=rel, abs_tol=0.0)


# --------------------------------------------------------------------------------------------
# Real data: SPY buy and hold, and a month-switching strategy on SPY
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spy() -> pl.DataFrame:
    return ntlab.datasets.load("spy_daily")


@pytest.fixture(scope="module")
def spy_hold(spy: pl.DataFrame) -> pl.DataFrame:
    close = spy["SPY"].to_numpy()
    equity = 1e4 * close / close[0]
    traded = np.zeros(close.size)
    traded[0] = 1e4
    return make_equity(equity, spy["ts"].to_list(), traded=traded)


@pytest.fixture(scope="module")
def spy_switching(spy: pl.DataFrame) -> pl.DataFrame:
    """Long SPY in odd months, in cash in even ones; 5 bp fees on the notional traded."""
    close = spy["SPY"].to_numpy()
    months = spy["ts"].dt.month().to_numpy()
    invested = (months % 2 == 1).astype(float)  # decided at the close of each row
    equity, traded, fees = np.empty(close.size), np.empty(close.size), np.empty(close.size)
    previous_weight, previous_equity = 0.0, 1e4
    for i in range(close.size):
        growth = previous_weight * (close[i] / close[i - 1] - 1.0) if i else 0.0
        before_fees = previous_equity * (1.0 + growth)
        traded[i] = abs(invested[i] - previous_weight) * before_fees
        fees[i] = 5e-4 * traded[i]
        equity[i] = before_fees - fees[i]
        previous_weight, previous_equity = invested[i], equity[i]
    return make_equity(equity, spy["ts"].to_list(), gross=invested * equity, traded=traded, fees=fees)


def reference(frame: pl.DataFrame, ppy: float, risk_free: float) -> dict[str, float]:
    """The metrics written from their definitions with pandas, nothing from ntlab."""
    pdf = frame.to_pandas().set_index("ts")
    equity = pdf["equity"]
    r = equity.pct_change().dropna()
    rf = (1 + risk_free) ** (1 / ppy) - 1
    excess = r - rf
    years = (equity.index[-1] - equity.index[0]).total_seconds() / (365.25 * 86400)
    cagr = (equity.iloc[-1] / equity.iloc[0]) ** (1 / years) - 1
    max_dd = (equity / equity.cummax() - 1).min()
    downside = ((excess.clip(upper=0)) ** 2).mean() ** 0.5
    return {
        "total_return": equity.iloc[-1] / equity.iloc[0] - 1,
        "annualised_return": cagr,
        "annualised_volatility": r.std(ddof=1) * ppy**0.5,
        "sharpe": excess.mean() / excess.std(ddof=1) * ppy**0.5,
        "sortino": excess.mean() / downside * ppy**0.5,
        "max_drawdown": max_dd,
        "calmar": cagr / abs(max_dd),
        "exposure": (pdf["gross_exposure"] > 0).mean(),
        "turnover": pdf["traded"].mean() / equity.mean() * ppy,
        "total_fees": pdf["fees"].sum(),
    }


@pytest.mark.parametrize("curve", ["spy_hold", "spy_switching"])
@pytest.mark.parametrize("risk_free", [0.0, 0.03])
def test_summary_matches_independent_formulas_on_real_data(
    curve: str, risk_free: float, request: pytest.FixtureRequest
) -> None:
    frame = request.getfixturevalue(curve)
    result = m.summary(frame, risk_free=risk_free)
    assert result.periods_per_year == 252
    expected = reference(frame, 252, risk_free)
    for key, value in expected.items():
        assert same(result[key], value), (key, result[key], value)


@pytest.mark.parametrize("curve", ["spy_hold", "spy_switching"])
def test_single_metric_functions_agree_with_the_reference(curve: str, request: pytest.FixtureRequest) -> None:
    frame = request.getfixturevalue(curve)
    expected = reference(frame, 252, 0.02)
    assert same(m.total_return(frame), expected["total_return"])
    assert same(m.annualised_return(frame), expected["annualised_return"])
    assert same(m.annualised_volatility(frame), expected["annualised_volatility"])
    assert same(m.sharpe(frame, risk_free=0.02), expected["sharpe"])
    assert same(m.sortino(frame, risk_free=0.02), expected["sortino"])
    assert same(m.max_drawdown(frame), expected["max_drawdown"])
    assert same(m.calmar(frame), expected["calmar"])
    assert same(m.exposure(frame), expected["exposure"])
    assert same(m.turnover(frame), expected["turnover"])
    # the override reaches every annualised metric
    at_365 = reference(frame, 365.0, 0.02)
    assert same(m.sharpe(frame, periods_per_year=365, risk_free=0.02), at_365["sharpe"])
    assert same(m.sortino(frame, periods_per_year=365, risk_free=0.02), at_365["sortino"])
    assert same(m.annualised_volatility(frame, periods_per_year=365), at_365["annualised_volatility"])
    assert same(m.turnover(frame, periods_per_year=365), at_365["turnover"])
    assert m.summary(frame, periods_per_year=365).periods_per_year == 365


def test_real_switching_strategy_is_half_invested_and_turns_over(spy_switching: pl.DataFrame) -> None:
    result = m.summary(spy_switching)
    assert 0.45 < result["exposure"] < 0.55
    assert 11 < result["turnover"] < 13  # six buys and six sells of the whole equity a year
    assert result["total_fees"] > 0


def test_returns_from_equity_are_pct_change_stamped_at_the_step_end(spy_hold: pl.DataFrame) -> None:
    out = m.returns_from_equity(spy_hold)
    expected = spy_hold.to_pandas()["equity"].pct_change().iloc[1:].to_numpy()
    assert out.columns == ["ts", "return"] and out.height == spy_hold.height - 1
    assert out["ts"].equals(spy_hold["ts"].slice(1))
    np.testing.assert_allclose(out["return"].to_numpy(), expected, rtol=REL, atol=0)


def test_drawdown_is_the_underwater_curve(spy_hold: pl.DataFrame) -> None:
    out = m.drawdown(spy_hold)
    equity = spy_hold.to_pandas()["equity"]
    np.testing.assert_allclose(out["drawdown"].to_numpy(), (equity / equity.cummax() - 1).to_numpy(), rtol=REL)
    assert out["ts"].equals(spy_hold["ts"])


# --------------------------------------------------------------------------------------------
# Periods per year
# --------------------------------------------------------------------------------------------


def test_periods_per_year_of_real_daily_and_session_minute_bars(spy: pl.DataFrame) -> None:
    assert m.periods_per_year(spy["ts"]) == 252
    minutes = ntlab.datasets.load("spy_1min")["ts"]
    per_day = pd.Series(minutes.to_list()).dt.date.value_counts().median()
    assert m.periods_per_year(minutes) == 252 * per_day


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (dt.timedelta(hours=1), 8766.0),  # 24/7: 365.25 * 24
        (dt.timedelta(minutes=1), 365.25 * 1440),
        (DAY, 365.25),  # daily bars with weekends: crypto
        (dt.timedelta(weeks=1), 365.25 / 7),
        (dt.timedelta(days=30), 365.25 / 30),
    ],
)
def test_periods_per_year_of_regular_calendar_data(step: dt.timedelta, expected: float) -> None:
    count = max(200, 3 * DAY * 7 // step)  # three weeks at least: weekends tell 24/7 data apart
    ts = pl.datetime_range(START, START + (count - 1) * step, step, eager=True, time_unit="ns")
    assert math.isclose(m.periods_per_year(ts), expected, rel_tol=REL)


def test_a_weekday_only_sample_of_24_7_data_looks_like_a_session() -> None:
    ts = pl.datetime_range(START, START + dt.timedelta(hours=10), "1h", eager=True, time_unit="ns")  # a Wednesday
    assert m.periods_per_year(ts) == 252 * 11


def test_periods_per_year_of_weekday_hourly_session_bars() -> None:
    days = pd.bdate_range("2021-01-04", periods=40, tz="UTC")
    stamps = [d + pd.Timedelta(hours=14 + h) for d in days for h in range(7)]
    ts = pl.Series(stamps, dtype=pl.Datetime("ns", "UTC"))
    assert m.periods_per_year(ts) == 252 * 7


def test_periods_per_year_accepts_other_time_units_and_zones() -> None:
    ts = pl.Series([START + i * DAY for i in range(10)]).cast(pl.Datetime("us", "Europe/Paris"))
    assert m.periods_per_year(ts) == 365.25


@pytest.mark.parametrize(
    ("ts", "error", "match"),
    [
        ([1, 2, 3], SchemaError, "must be a polars Series"),
        (pl.Series([START + i * DAY for i in range(3)]).dt.replace_time_zone(None), SchemaError, "replace_time_zone"),
        (pl.Series([1, 2, 3]), SchemaError, "ts has dtype Int64; expected a time-zone-aware Datetime"),
        (pl.Series([START]), DataError, "at least two timestamps, got 1; pass periods_per_year="),
        (pl.Series([START, START + DAY, START]), DataError, r"row 2 \(2020-01-01 00:00:00\+00:00\) is earlier than"),
        (pl.Series([START, None]), DataError, "^ts is null at row 1"),
    ],
)
def test_periods_per_year_errors(ts: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        m.periods_per_year(ts)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -252, math.nan, math.inf])
def test_bad_periods_per_year_override_is_a_config_error(bad: float) -> None:
    with pytest.raises(ConfigError, match=r"periods_per_year=.* must be a finite number > 0"):
        m.sharpe(make_equity([1.0, 2.0, 3.0]), periods_per_year=bad)


@pytest.mark.parametrize("bad", [-1.0, -2.0, math.nan])
def test_bad_risk_free_is_a_config_error(bad: float) -> None:
    with pytest.raises(ConfigError, match=r"risk_free=.* must be a finite annual rate > -1"):
        m.summary(make_equity([1.0, 2.0, 3.0]), risk_free=bad)


# --------------------------------------------------------------------------------------------
# Hand-computable curves
# --------------------------------------------------------------------------------------------


def test_cagr_over_exactly_two_years() -> None:
    frame = make_equity([100.0, 150.0, 121.0], [START, START + YEAR, START + 2 * YEAR])
    assert math.isclose(m.annualised_return(frame), 0.10, rel_tol=REL)
    assert math.isclose(m.total_return(frame), 0.21, rel_tol=REL)


def test_cagr_counts_calendar_time_not_bars() -> None:
    # the same two values over half a year: 21 % in half a year is 46.41 % a year
    frame = make_equity([100.0, 110.0, 121.0], [START, START + YEAR / 4, START + YEAR / 2])
    assert math.isclose(m.annualised_return(frame), 1.21**2 - 1, rel_tol=REL)


def test_cagr_overflows_to_inf_over_a_tiny_span() -> None:
    frame = make_equity([1.0, 1e3], step=dt.timedelta(microseconds=1))
    assert m.annualised_return(frame) == math.inf


def test_known_drawdown_and_recovery() -> None:
    frame = make_equity([100.0, 120.0, 90.0, 105.0, 120.0, 130.0, 110.0, 125.0])
    assert m.max_drawdown(frame) == -0.25  # 90 / 120 - 1
    # 120 at row 1, back to 120 at row 4; the drawdown from 130 (row 5) runs to the end: 2 days
    assert m.max_drawdown_duration(frame) == (3 * DAY, 3)
    assert m.drawdown(frame)["drawdown"].to_list()[:5] == [0.0, 0.0, -0.25, 105 / 120 - 1, 0.0]


def test_drawdown_not_recovered_runs_to_the_last_row() -> None:
    frame = make_equity([100.0, 101.0, 90.0, 95.0, 99.0])
    assert m.max_drawdown_duration(frame) == (3 * DAY, 3)


def test_longest_drawdown_is_measured_in_time_and_reported_in_bars_too() -> None:
    minute = dt.timedelta(minutes=1)
    ts = [START, START + minute, START + 2 * minute, START + 3 * minute, START + 2 * DAY, START + 4 * DAY]
    # peak row 0 to recovery row 3: 3 bars in 3 minutes; peak row 3 to recovery row 5: 2 bars in ~4 days
    frame = make_equity([10.0, 9.0, 9.0, 10.0, 9.5, 10.5], ts)
    assert m.max_drawdown_duration(frame) == (4 * DAY - 3 * minute, 2)


def test_no_drawdown_has_zero_duration() -> None:
    assert m.max_drawdown_duration(make_equity([1.0, 1.0, 2.0, 3.0])) == (dt.timedelta(0), 0)


def test_sharpe_and_sortino_by_hand() -> None:
    values = [100.0, 102.0, 100.98, 104.0094, 101.929212]  # returns +2 %, -1 %, +3 %, -2 %
    frame = make_equity(values)
    returns = [values[i] / values[i - 1] - 1 for i in range(1, len(values))]
    ppy = 365.25  # daily calendar data
    assert same(m.sharpe(frame), statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(ppy))
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns))  # over ALL periods
    assert same(m.sortino(frame), statistics.mean(returns) / downside * math.sqrt(ppy))
    assert same(m.sortino(frame, periods_per_year=252), statistics.mean(returns) / downside * math.sqrt(252))


def test_exposure_and_turnover_by_hand() -> None:
    frame = make_equity([100.0, 100.0, 100.0, 100.0], gross=[0.0, 50.0, 50.0, 0.0], traded=[0.0, 50.0, 0.0, 50.0])
    assert m.exposure(frame) == 0.5
    assert m.turnover(frame, periods_per_year=4) == 1.0  # 100 traded per year on 100 of equity


# --------------------------------------------------------------------------------------------
# Edge cases
# --------------------------------------------------------------------------------------------


def test_constant_equity_has_nan_ratios_not_errors() -> None:
    result = m.summary(make_equity([100.0] * 10))
    assert result["annualised_volatility"] == 0.0
    assert result["total_return"] == result["annualised_return"] == result["max_drawdown"] == 0.0
    assert all(math.isnan(result[k]) for k in ("sharpe", "sortino", "calmar"))
    assert result["max_drawdown_duration"] == dt.timedelta(0) and result["max_drawdown_bars"] == 0


def test_constant_equity_under_a_risk_free_rate() -> None:
    frame = make_equity([100.0] * 10)
    assert math.isnan(m.sharpe(frame, risk_free=0.05))  # zero volatility, even with an excess return
    assert same(m.sortino(frame, risk_free=0.05), -math.sqrt(365.25))  # every step misses the target by rf


def test_constant_growth_is_zero_volatility_with_only_gains() -> None:
    frame = make_equity(100.0 * 1.001 ** np.arange(50))
    assert m.annualised_volatility(frame) < 1e-12  # rounding noise only
    assert math.isnan(m.sharpe(frame))
    assert m.sortino(frame) == math.inf
    assert m.calmar(frame) == math.inf


def test_single_row() -> None:
    frame = make_equity([100.0])
    result = m.summary(frame)
    assert math.isnan(result.periods_per_year)
    assert result["total_return"] == 0.0 and result["max_drawdown"] == 0.0 and result["exposure"] == 1.0
    for key in ("annualised_return", "annualised_volatility", "sharpe", "sortino", "calmar", "turnover"):
        assert math.isnan(result[key]), key
    assert m.returns_from_equity(frame).height == 0
    assert m.max_drawdown_duration(frame) == (dt.timedelta(0), 0)
    assert m.turnover(make_equity([100.0], traded=[100.0]), periods_per_year=252) == 252.0


def test_two_rows_have_sortino_but_no_sample_volatility() -> None:
    frame = make_equity([100.0, 90.0])
    assert math.isnan(m.annualised_volatility(frame)) and math.isnan(m.sharpe(frame))
    assert same(m.sortino(frame, periods_per_year=252), -1.0 * math.sqrt(252))  # mean -10 %, downside 10 %


def test_other_timestamp_units_and_zones_are_converted() -> None:
    frame = make_equity([100.0, 110.0, 99.0])
    moved = frame.with_columns(pl.col("ts").dt.cast_time_unit("ms").dt.convert_time_zone("America/New_York"))
    assert m.summary(moved).to_frame().equals(m.summary(frame).to_frame())  # NaN equals NaN here
    assert m.check_equity(moved)["ts"].dtype == pl.Datetime("ns", "UTC")
    integers = frame.with_columns(pl.col("equity").cast(pl.Int64))
    assert m.check_equity(integers)["equity"].dtype == pl.Float64


# --------------------------------------------------------------------------------------------
# Trades
# --------------------------------------------------------------------------------------------


def test_trade_stats_match_pandas() -> None:
    pnl = [120.0, -40.0, 0.0, 35.5, -80.25, 10.0, -5.0]
    holding = [dt.timedelta(hours=h) for h in (1, 2, 3, 4, 5, 6, 30)]
    trades = make_trades(pnl, holding)
    stats = m.trade_stats(trades)
    frame = trades.to_pandas()
    wins, losses = frame.pnl[frame.pnl > 0], frame.pnl[frame.pnl < 0]
    expected = {
        "n_trades": 7,
        "win_rate": 3 / 7,
        "profit_factor": wins.sum() / abs(losses.sum()),
        "avg_trade_pnl": frame.pnl.mean(),
        "median_trade_pnl": frame.pnl.median(),
        "avg_trade_return": frame["return"].mean(),
        "median_trade_return": frame["return"].median(),
        "avg_win": wins.mean(),
        "avg_loss": losses.mean(),
        "largest_win": 120.0,
        "largest_loss": -80.25,
        "expectancy": frame.pnl.mean() / abs(losses.mean()),
    }
    for key, value in expected.items():
        assert same(stats[key], value), key
    assert stats["avg_holding_time"] == dt.timedelta(hours=51 / 7)
    assert m.win_rate(trades) == 3 / 7
    assert m.profit_factor(trades) == expected["profit_factor"]
    assert m.summary(make_equity([1.0, 2.0]), trades)["n_trades"] == 7


@pytest.mark.parametrize(
    ("pnl", "factor"),
    [([10.0, 5.0], math.inf), ([0.0, 0.0], math.nan), ([-1.0, -2.0], 0.0), ([3.0, -1.0], 3.0)],
)
def test_profit_factor_edges(pnl: list[float], factor: float) -> None:
    assert same(m.profit_factor(make_trades(pnl)), factor)


def test_only_wins_leave_the_loss_statistics_undefined() -> None:
    stats = m.trade_stats(make_trades([1.0, 2.0]))
    assert math.isnan(stats["avg_loss"]) and math.isnan(stats["largest_loss"]) and math.isnan(stats["expectancy"])
    stats = m.trade_stats(make_trades([-1.0]))
    assert math.isnan(stats["avg_win"]) and math.isnan(stats["largest_win"]) and stats["expectancy"] == -1.0


@pytest.mark.parametrize("trades", [None, make_trades([]).clear()])
def test_no_trades_give_a_zero_count_and_nan_stats(trades: pl.DataFrame | None) -> None:
    stats = m.trade_stats(trades)
    assert stats["n_trades"] == 0 and stats["avg_holding_time"] is None
    assert all(math.isnan(v) for k, v in stats.items() if k not in ("n_trades", "avg_holding_time"))
    result = m.summary(make_equity([1.0, 2.0]), trades)
    assert result["n_trades"] == 0 and math.isnan(result["win_rate"]) and math.isnan(result["profit_factor"])


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda t: t.drop("pnl"), SchemaError, "trades frame has no column 'pnl'"),
        (lambda t: t.with_columns(pl.col("pnl").cast(pl.String)), SchemaError, "trades.pnl has dtype String"),
        (lambda t: t.with_columns(pl.col("exit_ts").cast(pl.Int64)), SchemaError, "trades.exit_ts has dtype Int64"),
        (lambda t: t.with_columns(pl.lit(None, pl.Float64).alias("pnl")), DataError, "trades.pnl is null at row 0"),
        (lambda t: t.with_columns(pl.lit(math.inf).alias("return")), DataError, r"trades.return is inf at row 0; it"),
        (lambda t: t.with_columns(pl.col("entry_ts") + DAY * 5), DataError, r"exit_ts .* is before entry_ts .* row 0"),
        (lambda t: t.to_pandas(), SchemaError, "trades must be a polars DataFrame, not DataFrame"),
    ],
)
def test_bad_trades(change: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        m.trade_stats(change(make_trades([1.0, -1.0])))  # type: ignore[operator]


# --------------------------------------------------------------------------------------------
# Bad equity frames
# --------------------------------------------------------------------------------------------


def shifted_ts(frame: pl.DataFrame, rows: list[int]) -> pl.DataFrame:
    return frame.with_columns(pl.Series("ts", [frame["ts"][i] for i in rows]))


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda f: f.to_pandas(), SchemaError, "equity must be a polars DataFrame"),
        (lambda f: f.drop("equity"), SchemaError, "equity frame has no column 'equity'"),
        (lambda f: f.drop("fees"), SchemaError, r"no column 'fees' \(it has .*\); expected a numeric dtype"),
        (lambda f: f.with_columns(pl.col("equity").cast(pl.String)), SchemaError, "equity.equity has dtype String"),
        (lambda f: f.with_columns(pl.col("ts").dt.date()), SchemaError, "equity.ts has dtype Date; expected a time"),
        (lambda f: f.with_columns(pl.col("ts").dt.replace_time_zone(None)), SchemaError, "replace_time_zone"),
        (lambda f: f.clear(), DataError, "equity frame is empty"),
        (lambda f: f.with_columns(pl.Series("traded", [0.0, None, 0.0, 0.0])), DataError, "traded is null at row 1"),
        (lambda f: shifted_ts(f, [0, 1, 2, 2]), DataError, r"row 3 \(2020-01-03 00:00:00\+00:00\) repeats row 2"),
        (lambda f: shifted_ts(f, [0, 2, 1, 3]), DataError, r"row 2 \(2020-01-02 .*\) is earlier than row 1"),
        (lambda f: f.with_columns(equity=pl.Series([1.0, 2.0, 0.0, 1.0])), DataError, r"equity is 0.0 at row 2"),
        (lambda f: f.with_columns(equity=pl.Series([1.0, -2.0, 1.0, 1.0])), DataError, r"equity is -2.0 at row 1"),
        (lambda f: f.with_columns(equity=pl.Series([1.0, math.nan, 1.0, 1.0])), DataError, r"equity is nan at row 1"),
        (lambda f: f.with_columns(traded=pl.Series([0.0, 0.0, -1.0, 0.0])), DataError, r"traded is -1.0 at row 2"),
        (lambda f: f.with_columns(fees=pl.Series([0.0, math.inf, 0.0, 0.0])), DataError, r"fees is inf at row 1"),
        (lambda f: f.with_columns(gross_exposure=pl.lit(-1.0)), DataError, r"gross_exposure is -1.0 at row 0"),
    ],
)
def test_bad_equity(change: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        m.summary(change(make_equity([1.0, 2.0, 3.0, 4.0])))  # type: ignore[operator]


def test_wiped_out_equity_says_where_and_how_to_truncate() -> None:
    frame = make_equity([100.0, 50.0, 0.0, 10.0])
    with pytest.raises(DataError, match=r"equity is 0.0 at row 2 \(2020-01-03 00:00:00\+00:00\).*equity.head\(2\)"):
        m.max_drawdown(frame)
    assert m.max_drawdown(frame.head(2)) == -0.5


def test_only_the_needed_columns_are_required() -> None:
    minimal = make_equity([1.0, 2.0, 1.5]).select("ts", "equity")
    assert m.max_drawdown(minimal) == -0.25
    assert m.monthly_returns(minimal).height == 1
    with pytest.raises(SchemaError, match="no column 'gross_exposure'"):
        m.exposure(minimal)
    with pytest.raises(SchemaError, match="no column 'traded'"):
        m.turnover(minimal)


# --------------------------------------------------------------------------------------------
# The Metrics object
# --------------------------------------------------------------------------------------------


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.headers: list[str] = []
        self._tag: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag = tag

    def handle_data(self, data: str) -> None:
        if self._tag == "td":
            self.cells.append(data)
        elif self._tag == "th":
            self.headers.append(data)


def test_metrics_is_a_read_only_mapping_with_a_frame() -> None:
    result = m.summary(make_equity([100.0, 120.0, 90.0, 130.0]), make_trades([5.0, -2.0]))
    assert list(result) == [key for key, *_ in m._SPEC] and len(result) == len(m._SPEC)
    assert result["sharpe"] == result.to_dict()["sharpe"] and result.get("nope") is None
    with pytest.raises(KeyError, match="no metric 'sharp'; the metrics are"):
        result["sharp"]
    with pytest.raises(TypeError):
        result.data["sharpe"] = 1.0  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.risk_free = 1.0  # type: ignore[misc]
    frame = result.to_frame()
    assert frame.schema == pl.Schema({"metric": pl.String, "value": pl.Float64})
    values = dict(frame.iter_rows())
    assert values["max_drawdown_duration"] == 2.0  # days: from the peak at row 1 to the recovery at row 3
    assert values["avg_holding_time"] == 1.0 and values["n_trades"] == 2.0
    assert values["sharpe"] == result["sharpe"]
    no_trades = dict(m.summary(make_equity([1.0, 2.0])).to_frame().iter_rows())
    assert math.isnan(no_trades["avg_holding_time"])


def test_metrics_formats_values_for_display() -> None:
    result = m.Metrics(
        data={
            "total_return": 12.345678,
            "sharpe": 1.23456,
            "sortino": math.inf,
            "calmar": math.nan,
            "end_equity": 1234567.891,
            "n_trades": 12345,
            "max_drawdown_duration": dt.timedelta(days=400, hours=5, minutes=3),
            "avg_holding_time": None,
            "custom": -math.inf,
        },
        periods_per_year=252,
    )
    shown = {key: result.format(key) for key in result}
    assert shown == {
        "total_return": "1,234.57%",
        "sharpe": "1.23",
        "sortino": "inf",
        "calmar": "n/a",
        "end_equity": "1,234,567.89",
        "n_trades": "12,345",
        "max_drawdown_duration": "400d 5h",
        "avg_holding_time": "n/a",
        "custom": "-inf",
    }
    text = repr(result)
    assert text.splitlines()[0] == "Metrics (periods_per_year=252, risk_free=0.00%)"
    assert "Sharpe ratio" in text and "1,234.57%" in text and "custom" in text
    parser = _Cells()
    parser.feed(result._repr_html_())
    assert parser.cells == [
        "Total return", "1,234.57%", "Sharpe ratio", "1.23", "Sortino ratio", "inf", "Calmar ratio", "n/a",
        "End equity", "1,234,567.89", "Trades", "12,345", "Longest drawdown", "400d 5h",
        "Avg holding time", "n/a", "custom", "-inf",
    ]  # fmt: skip
    # a section heading each time the section changes; unknown metrics are "Other"
    assert parser.headers == ["Returns", "Risk", "Returns", "Trades", "Risk", "Trades", "Other"]


@pytest.mark.parametrize(
    ("duration", "shown"),
    [
        (dt.timedelta(days=1, hours=2, minutes=59), "1d 2h"),
        (dt.timedelta(hours=3, minutes=7, seconds=5), "3h 7m"),
        (dt.timedelta(minutes=12, seconds=5.4), "12m 5s"),
        (dt.timedelta(seconds=5.25), "5.25s"),
        (dt.timedelta(0), "0s"),
    ],
)
def test_durations_are_human_readable(duration: dt.timedelta, shown: str) -> None:
    assert m.Metrics(data={"max_drawdown_duration": duration}, periods_per_year=1).format("max_drawdown_duration") == (
        shown
    )


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

positive_curves = st.lists(st.floats(min_value=1.0, max_value=1e6), min_size=1, max_size=60)
PROPERTY = settings(deadline=None, max_examples=40, derandomize=True)


@PROPERTY
@given(values=positive_curves)
def test_max_drawdown_is_a_fraction_between_minus_one_and_zero(values: list[float]) -> None:
    frame = make_equity(values)
    worst = m.max_drawdown(frame)
    assert -1.0 <= worst <= 0.0
    duration, bars = m.max_drawdown_duration(frame)
    assert 0 <= bars <= len(values) - 1 and duration == bars * DAY
    assert (bars == 0) == (worst == 0.0)


@PROPERTY
@given(values=positive_curves, power=st.integers(min_value=-20, max_value=20))
def test_scaling_equity_changes_no_ratio(values: list[float], power: int) -> None:
    scale = 2.0**power  # exact in floating point: the returns are the same numbers
    traded = np.linspace(0.0, 100.0, len(values))
    base = m.summary(make_equity(values, traded=traded), risk_free=0.01)
    scaled = m.summary(make_equity(np.asarray(values) * scale, traded=traded * scale), risk_free=0.01)
    for key in ("total_return", "annualised_return", "annualised_volatility", "sharpe", "sortino", "calmar"):
        assert same(base[key], scaled[key]), key
    for key in ("max_drawdown", "exposure", "turnover", "max_drawdown_bars", "max_drawdown_duration"):
        assert base[key] == scaled[key] or (math.isnan(base[key]) and math.isnan(scaled[key])), key


@PROPERTY
@given(values=positive_curves)
def test_a_new_all_time_high_ends_the_drawdown(values: list[float]) -> None:
    frame = make_equity([*values, max(values) * 1.01])
    assert m.drawdown(frame)["drawdown"][-1] == 0.0
    _, bars = m.max_drawdown_duration(frame)
    assert m.max_drawdown(frame) == m.max_drawdown(make_equity(values))
    assert bars <= len(values)


@PROPERTY
@given(values=st.lists(st.floats(min_value=1.0, max_value=1e6), min_size=2, max_size=60))
def test_total_return_compounds_the_step_returns(values: list[float]) -> None:
    frame = make_equity(values)
    growth = float(np.prod(1.0 + m.returns_from_equity(frame)["return"].to_numpy()))
    assert math.isclose(m.total_return(frame) + 1.0, growth, rel_tol=1e-9)
