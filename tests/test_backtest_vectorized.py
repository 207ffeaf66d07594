"""Vectorised backtests equal the event engine running a strategy that reads the same signals."""

from __future__ import annotations

import numba
import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import njit

import ntlab.datasets
from ntlab.backtest import backtest, bar_data
from ntlab.backtest.vectorized import backtest_signals, backtest_targets
from ntlab.exceptions import ConfigError, DataError
from ntlab.execution import ExecutionModel
from ntlab.execution import broker as b
from ntlab.strategy import CompiledStrategy
from ntlab.strategy import verbs as v
from ntlab.strategy.examples import sma_cross

# without the JIT every bar runs as Python: fewer examples keep the coverage pass short
PROPERTY = settings(deadline=None, max_examples=4 if numba.config.DISABLE_JIT else 25, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@njit
def _signals_on_bar(ctx, state):  # noqa: ANN001, ANN202
    """Entries in feature 0, exits in feature 1 (1.0; NaN where an asset has no bar), size in state[0]."""
    for k in range(ctx.position.shape[0]):
        q = v.position(ctx, k)
        if ctx.features[k, 0] == 1.0 and q == 0.0:
            v.buy(ctx, k, state[0])
        elif ctx.features[k, 1] == 1.0 and q > 0.0:
            v.sell(ctx, k, q)


@njit
def _targets_on_bar(ctx, state):  # noqa: ANN001, ANN202
    for k in range(ctx.position.shape[0]):
        target = ctx.features[k, 0]
        if not np.isnan(target) and target != v.position(ctx, k):
            v.submit(ctx, k, target - v.position(ctx, k))


SIGNALS = CompiledStrategy(on_bar=_signals_on_bar, init=lambda size=1.0: np.array([size]))
TARGETS = CompiledStrategy(on_bar=_targets_on_bar, init=lambda: np.zeros(1))


@pytest.fixture(scope="module")
def two_assets() -> pl.DataFrame:
    """SPY minutes and the same minutes of a second, scaled series with a hole in it."""
    spy = ntlab.datasets.load("spy_1min").head(3000)
    other = spy.with_columns(symbol=pl.lit("SPY2"), **{c: pl.col(c) * 0.5 for c in ("open", "high", "low", "close")})
    return pl.concat([spy, other.filter((pl.int_range(pl.len()) < 1000) | (pl.int_range(pl.len()) > 1100))])


@PROPERTY
@given(seed=st.integers(0, 2**16), density=st.sampled_from([0.01, 0.2]), fill_on=st.sampled_from(["close", "next_open"]))
def test_signals_equal_the_event_engine(two_assets, seed, density, fill_on) -> None:  # noqa: ANN001
    rng = np.random.default_rng(seed)
    frame = two_assets.with_columns(entry=rng.random(two_assets.height) < density, exit=rng.random(two_assets.height) < density)
    model = ExecutionModel(fee_bps=7.0, slippage_bps=1.0, fill_on=fill_on)
    vector = backtest_signals(frame, "entry", "exit", size=2.0, model=model)
    event = backtest(frame, SIGNALS, features=["entry", "exit"], model=model, size=2.0)
    assert vector.events.equals(event.events)
    assert vector.equity.equals(event.equity)
    assert vector.trades.height > 0 and set(vector.trades["symbol"]) == {"SPY", "SPY2"}


def test_sizes_per_symbol(two_assets) -> None:  # noqa: ANN001
    data = bar_data(two_assets)
    entries = np.zeros((data.ts.size, 2), dtype=bool)
    entries[10] = True
    result = backtest_signals(data, entries, np.zeros_like(entries), size=[2.0, 3.0])
    assert result.positions.select("symbol", "qty").rows() == [("SPY", 2.0), ("SPY2", 3.0)]


@PROPERTY
@given(seed=st.integers(0, 2**16), volume_limit=st.sampled_from([0.0, 0.01]))
def test_targets_equal_the_event_engine(seed, volume_limit) -> None:  # noqa: ANN001
    spy = ntlab.datasets.load("spy_1min").head(2000)
    rng = np.random.default_rng(seed)
    targets = np.where(rng.random(spy.height) < 0.05, rng.integers(-5, 6, spy.height).astype(float), np.nan)
    model = ExecutionModel(fee_bps=2.0, volume_limit=volume_limit)
    vector = backtest_targets(spy, targets, model=model)
    event = backtest(spy.with_columns(target=targets), TARGETS, features=["target"], model=model)
    assert vector.events.equals(event.events)
    assert vector.equity.equals(event.equity)
    assert vector.trades.equals(event.trades)


def test_sma_crossover_vectorised_equals_the_compiled_strategy() -> None:
    spy = ntlab.datasets.load("spy_1min")
    close = spy["close"]
    # signals from ntlab's kernels (Polars' rolling mean rounds differently at near-ties)
    from ntlab.features import batch

    d = batch("rolling_mean", close.to_numpy(), window=10) - batch("rolling_mean", close.to_numpy(), window=50)
    prev = np.concatenate([[np.nan], d[:-1]])
    model = ExecutionModel(fee_bps=10.0)
    vector = backtest_signals(spy, (d > 0) & (prev <= 0), (d < 0) & (prev >= 0), model=model)
    event = backtest(spy, sma_cross, model=model, fast=10, slow=50)
    assert vector.trades.equals(event.trades) and vector.equity.equals(event.equity)
    assert vector.trades.height > 300
    named = backtest_signals(spy.with_columns(e=(d > 0) & (prev <= 0), x=(d < 0) & (prev >= 0)), "e", "x", model=model)
    assert named.trades.equals(vector.trades)


def test_logs_grow(monkeypatch) -> None:  # noqa: ANN001
    spy = ntlab.datasets.load("spy_1min").head(2000)
    every = np.arange(spy.height) % 2 == 0
    big = backtest_signals(spy, every, ~every)
    real = b.new_ctx
    monkeypatch.setattr(b, "new_ctx", lambda *a, **k: real(*a, **{**k, "capacity": 16}))
    small = backtest_signals(spy, every, ~every)
    assert small.events.equals(big.events) and big.trades.height == 1000


def test_errors() -> None:
    spy = ntlab.datasets.load("spy_1min").head(100)
    ok = np.zeros(100, dtype=bool)
    with pytest.raises(DataError, match=r"entries has shape \(99,\); it needs one row per bar time and one column per symbol: \(100, 1\)"):
        backtest_signals(spy, ok[:-1], ok)
    with pytest.raises(ConfigError, match="exits='nope' names no column of bars"):
        backtest_signals(spy, ok, "nope")
    with pytest.raises(ConfigError, match="size=0 must be > 0"):
        backtest_signals(spy, ok, ok, size=0)
    with pytest.raises(ConfigError, match="cash=nan"):
        backtest_targets(spy, np.full(100, np.nan), cash=float("nan"))
    assert backtest_targets(spy, pl.Series(np.full(100, np.nan))).trades.height == 0
