"""Tests of ntlab.portfolio.rebalance: vectorbt as the reference, an independent cost formula, limits, errors."""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest

import ntlab.datasets
from ntlab.exceptions import ConfigError, DataError, SchemaError
from ntlab.portfolio import OptimizationError, optimize
from ntlab.portfolio.rebalance import RebalanceResult, compare, rebalance


@pytest.fixture(scope="module")
def daily() -> pl.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ntlab.datasets.load("sp500_daily")


@pytest.fixture(scope="module")
def wide(daily: pl.DataFrame) -> pl.DataFrame:
    """20 stocks with no missing close, 2016-2018 (real data)."""
    frame = daily.pivot(on="symbol", index="ts", values="close").sort("ts")
    frame = frame.filter(pl.col("ts") >= dt.datetime(2016, 1, 1, tzinfo=dt.UTC))
    full = [c for c in frame.columns[1:] if frame[c].null_count() == 0]
    return frame.select("ts", *full[:20])


def _vectorbt_equity(prices: pl.DataFrame, result: RebalanceResult) -> np.ndarray:
    """The same target weights traded by vectorbt (target-percent orders sharing one cash pool)."""
    import vectorbt as vbt

    close = prices.to_pandas().set_index("ts")
    targets = result.weights.pivot(on="symbol", index="ts", values="weight").to_pandas().set_index("ts")
    size = pd.DataFrame(np.nan, index=close.index, columns=close.columns)
    size.loc[targets.index, targets.columns] = targets.fillna(0.0).to_numpy()
    size.loc[targets.index] = size.loc[targets.index].fillna(0.0)
    pf = vbt.Portfolio.from_orders(
        close, size=size, size_type="targetpercent", group_by=True, cash_sharing=True, call_seq="auto",
        init_cash=1_000_000.0, freq="1D",
    )
    return pf.value().to_numpy()[-result.equity.height :]


@pytest.mark.parametrize(("strategy", "lag"), [("equal_weight", 0), ("min_volatility", 1), ("max_sharpe", 1)])
def test_equity_equals_vectorbt_trading_the_same_weights(wide: pl.DataFrame, strategy: str, lag: int) -> None:
    result = rebalance(wide, strategy, lookback=126, every=21, lag=lag, cost_bps=0.0, progress=False, risk_free_rate=0.0)
    assert result.rebalances.height == len(range(125, wide.height - lag, 21))
    assert (result.rebalances["status"] == "ok").all()
    np.testing.assert_allclose(result.equity["equity"].to_numpy(), _vectorbt_equity(wide, result), rtol=1e-9)
    # the weights recorded are the optimiser's on the decision window
    first = result.rebalances.row(0, named=True)
    window = wide.filter(pl.col("ts") <= first["decided"]).tail(126)
    if strategy != "equal_weight":
        expected = dict(optimize(window, strategy, risk_free_rate=0.0).frame.rows())
        got = dict(result.weights.filter(pl.col("ts") == first["ts"]).select("symbol", "weight").rows())
        # weights drift between decision and execution only through the cost-free resize: exact when lag = 0
        for symbol, weight in got.items():
            assert weight == pytest.approx(expected[symbol], abs=1e-12 if lag == 0 else 0.05)


def test_costs_follow_the_stated_formula(wide: pl.DataFrame) -> None:
    bps = 25.0
    result = rebalance(wide, "equal_weight", lookback=60, every=40, cost_bps=bps, progress=False)
    e = result.equity
    for row in result.rebalances.iter_rows(named=True):
        i = e["ts"].to_list().index(row["ts"])
        assert row["cost"] == pytest.approx(bps / 1e4 * e["traded"][i], rel=1e-12)
        assert e["fees"][i] == pytest.approx(row["cost"], rel=1e-12)
    # fully invested after costs: cash stays at zero (to rounding) and never goes negative
    assert e["cash"][0] == 1_000_000.0  # the decision row, before the first trade
    assert np.abs(e["cash"].to_numpy()[1:]).max() < 1e-6
    assert result.metrics()["total_fees"] == pytest.approx(float(result.rebalances["cost"].sum()), rel=1e-12)
    free = rebalance(wide, "equal_weight", lookback=60, every=40, cost_bps=0.0, progress=False)
    assert result.final_equity < free.final_equity


def test_turnover_cap_limits_every_rebalance_but_the_first(wide: pl.DataFrame) -> None:
    free = rebalance(wide, "max_sharpe", lookback=126, every=21, progress=False, risk_free_rate=0.0)
    capped = rebalance(wide, "max_sharpe", lookback=126, every=21, max_turnover=0.1, progress=False, risk_free_rate=0.0)
    later = capped.rebalances.slice(1)
    assert capped.rebalances["turnover"][0] > 0.99  # the initial build from cash
    assert (later["turnover"] <= 0.1 + 1e-9).all()
    assert later["capped"].any()
    assert float(free.rebalances["turnover"].slice(1).max()) > 0.1
    assert capped.metrics()["turnover"] < free.metrics()["turnover"]


def test_assets_enter_only_with_a_full_window_and_missing_prices_are_carried(daily: pl.DataFrame) -> None:
    frame = daily.filter(pl.col("symbol").is_in(["AAPL", "MSFT", "XOM", "KO"]))
    frame = frame.filter(pl.col("ts") < dt.datetime(2014, 6, 1, tzinfo=dt.UTC))
    # KO listed late and XOM missing for a stretch: long form with gaps
    frame = frame.filter(~((pl.col("symbol") == "KO") & (pl.col("ts") < dt.datetime(2013, 9, 1, tzinfo=dt.UTC))))
    gap = (pl.col("symbol") == "XOM") & pl.col("ts").is_between(dt.datetime(2013, 11, 4, tzinfo=dt.UTC), dt.datetime(2013, 11, 8, tzinfo=dt.UTC))
    frame = frame.filter(~gap)
    result = rebalance(frame.select("ts", "symbol", "close"), "equal_weight", lookback=40, every=10, progress=False)
    listed = dt.datetime(2013, 9, 1, tzinfo=dt.UTC)
    for row in result.rebalances.iter_rows(named=True):
        held = set(result.weights.filter(pl.col("ts") == row["ts"])["symbol"])
        decided = row["decided"]
        window_start = frame.filter(pl.col("symbol") == "AAPL").filter(pl.col("ts") <= decided).tail(40)["ts"][0]
        assert ("KO" in held) == (window_start >= listed)
        assert row["assets"] == len(held) or "XOM" in held
    assert np.isfinite(result.equity["equity"].to_numpy()).all()
    assert (result.equity["equity"].to_numpy() > 0).all()


def test_optimiser_failure_holds_the_book_and_warns(wide: pl.DataFrame) -> None:
    calls = {"n": 0}

    def flaky(window: pl.DataFrame) -> dict[str, float]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OptimizationError("solver gave up")
        return {c: 1.0 / (window.width - 1) for c in window.columns[1:]}

    with pytest.warns(RuntimeWarning, match="1 of .* rebalances kept the previous book"):
        result = rebalance(wide, flaky, lookback=60, every=60, progress=False)
    assert result.failures == 1
    assert result.rebalances["status"][1].startswith("held: solver gave up")
    assert result.rebalances["turnover"][1] < 1e-12
    assert "1 held on error" in repr(result)
    with pytest.raises(OptimizationError, match="rebalance decided at .*solver gave up"):
        calls["n"] = 0
        rebalance(wide, flaky, lookback=60, every=60, on_error="raise", progress=False)


def test_transaction_cost_penalty_receives_current_weights(wide: pl.DataFrame) -> None:
    plain = rebalance(wide, "min_volatility", lookback=126, every=21, progress=False)
    sticky = rebalance(wide, "min_volatility", lookback=126, every=21, progress=False, cost=0.05)
    assert sticky.params["cost"] == 0.05
    assert float(sticky.rebalances["turnover"].slice(1).mean()) < float(plain.rebalances["turnover"].slice(1).mean())


def test_weight_function_results_are_checked(wide: pl.DataFrame) -> None:
    with pytest.raises(DataError, match="outside the window"):
        rebalance(wide, lambda w: {"NOPE": 1.0}, lookback=60, on_error="raise", progress=False)
    with pytest.warns(RuntimeWarning):
        result = rebalance(wide, lambda w: {w.columns[1]: float("nan")}, lookback=60, every=200, progress=False)
    assert result.failures == result.rebalances.height


def test_compare_and_reports(wide: pl.DataFrame, tmp_path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = ntlab.datasets.load("sp500_index")
    a = rebalance(wide, "equal_weight", lookback=60, every=21, progress=False)
    b = rebalance(wide, "min_volatility", lookback=60, every=21, progress=False, name="minvol")
    table = compare([a, b], index)
    assert table["strategy"].to_list() == ["equal_weight", "minvol", "SP500"]
    bench = index.filter(pl.col("ts").is_between(a.equity["ts"][0], a.equity["ts"][-1]))
    assert table["total_return"][2] == pytest.approx(bench["SP500"][-1] / bench["SP500"][0] - 1, rel=1e-12)
    assert table["total_return"][0] == pytest.approx(a.final_equity / 1e6 - 1, rel=1e-12)
    page = a.tearsheet(tmp_path / "t.html", benchmark=index)
    assert "Rebalancing: equal_weight" in page and (tmp_path / "t.html").exists()
    assert "<img" in a.tearsheet()
    figure = b.plot_weights(top=3)
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert "other" in labels and len([x for x in labels if x not in ("other", "net")]) == 3
    assert "RebalanceResult(&#x27;equal_weight&#x27;, " in a._repr_html_()
    with pytest.raises(ConfigError):
        compare([])
    with pytest.raises(SchemaError):
        compare([a], index.with_columns(x=1.0))
    with pytest.raises(DataError, match="fewer than 2 prices"):
        compare([a], index.filter(pl.col("ts") < dt.datetime(2000, 1, 1, tzinfo=dt.UTC)))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"strategy": "best"}, ConfigError, "unknown strategy 'best'"),
        ({"strategy": 3}, ConfigError, "must be a name or a function"),
        ({"lookback": 1}, ConfigError, "lookback must be an integer >= 2"),
        ({"every": 0}, ConfigError, "every must be"),
        ({"lag": -1}, ConfigError, "lag must be"),
        ({"cost_bps": -1.0}, ConfigError, "cost_bps must be"),
        ({"initial_cash": 0.0}, ConfigError, "initial_cash must be"),
        ({"max_turnover": 0.0}, ConfigError, "max_turnover must be"),
        ({"on_error": "ignore"}, ConfigError, "on_error must be"),
        ({"lookback": 10_000}, DataError, "fewer than lookback"),
    ],
)
def test_parameter_errors(wide: pl.DataFrame, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        rebalance(wide, **{"strategy": "equal_weight", "progress": False, **kwargs})


def test_price_frame_errors(wide: pl.DataFrame) -> None:
    with pytest.raises(SchemaError, match="Polars DataFrame"):
        rebalance(wide.to_pandas())
    with pytest.raises(SchemaError, match="'ts' or 'date'"):
        rebalance(wide.rename({"ts": "time"}))
    with pytest.raises(SchemaError, match="'close'"):
        rebalance(pl.DataFrame({"ts": [1], "symbol": ["A"], "price": [1.0]}))
    with pytest.raises(DataError, match="duplicate timestamps"):
        rebalance(pl.concat([wide.head(3), wide.head(1)]))
    with pytest.raises(DataError, match="at least 2 assets"):
        rebalance(wide.select("ts", wide.columns[1]))
    bad = wide.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(-1.0).otherwise(pl.col(wide.columns[2])).alias(wide.columns[2]))
    with pytest.raises(DataError, match=f"{wide.columns[2]} is -1.0"):
        rebalance(bad)
    few = wide.select("ts", *wide.columns[1:3]).head(80).with_columns(pl.lit(None, pl.Float64).alias(wide.columns[2]))
    with pytest.warns(RuntimeWarning, match="need 2"):
        result = rebalance(few, "equal_weight", lookback=20, progress=False)
    assert result.final_equity == 1_000_000.0
