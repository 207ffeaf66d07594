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
from ntlab.backtest.vectorized import (
    _fast_path,
    backtest_signals,
    backtest_targets,
    crossovers,
    sweep_signals,
)
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


# ---------------------------------------------------------------------------------------------
# sweep_signals: the fused kernel against one backtest_signals run per column


@pytest.fixture(scope="module")
def spy_minutes() -> pl.DataFrame:
    return ntlab.datasets.load("spy_1min").head(6000)


def _crossover_columns(close: np.ndarray, pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    from ntlab.features import batch

    entries, exits = [], []
    for fast, slow in pairs:
        diff = batch("rolling_mean", close, window=fast) - batch("rolling_mean", close, window=slow)
        prev = np.concatenate([[np.nan], diff[:-1]])
        entries.append((diff > 0) & (prev <= 0))
        exits.append((diff < 0) & (prev >= 0))
    return np.column_stack(entries), np.column_stack(exits)


def _one_by_one(bars, entries, exits, **kwargs) -> list[dict]:
    rows = []
    for k in range(entries.shape[1]):
        r = backtest_signals(bars, entries[:, k], exits[:, k], size=kwargs.get("size", 1.0), model=kwargs.get("model"))
        s = r.metrics(risk_free=kwargs.get("risk_free", 0.0))
        rows.append({name: s[name] for name in ("n_trades", "win_rate", "total_fees", "end_equity", "total_return", "max_drawdown", "sharpe", "exposure")}
                    | {"pnl": float(r.trades["pnl"].sum())})  # fmt: skip
    return rows


@pytest.mark.parametrize(
    ("model", "size", "risk_free"),
    [(None, 1.0, 0.0), (ExecutionModel(fee_bps=10.0, slippage_bps=2.0, fee_fixed=0.35), 7.0, 0.04)],
)
def test_sweep_equals_a_backtest_per_column(spy_minutes, model, size, risk_free) -> None:
    close = spy_minutes["close"].to_numpy()
    pairs = [(f, s) for f in (3, 5, 10, 20) for s in (30, 60, 120) if f < s]
    entries, exits = _crossover_columns(close, pairs)
    labels = pl.DataFrame({"fast": [p[0] for p in pairs], "slow": [p[1] for p in pairs]})
    assert _fast_path(bar_data(spy_minutes), model or ExecutionModel())  # the fused kernel runs here
    swept = sweep_signals(spy_minutes, entries, exits, size=size, model=model, labels=labels, risk_free=risk_free)
    assert swept.params == ("fast", "slow") and swept.frame.columns[:2] == ["fast", "slow"] and len(swept) == len(pairs)
    assert swept.n_failed == 0 and set(swept.best("sharpe")) == {"fast", "slow"}
    for got, want in zip(swept.frame.iter_rows(named=True), _one_by_one(spy_minutes, entries, exits, size=size, model=model, risk_free=risk_free), strict=True):
        assert got["n_trades"] == want["n_trades"] > 0
        for name in ("win_rate", "pnl", "total_fees", "end_equity", "total_return", "max_drawdown", "sharpe", "exposure"):
            assert got[name] == pytest.approx(want[name], rel=1e-9, abs=1e-9), name


def test_sweep_falls_back_to_the_broker_where_the_kernel_does_not_apply(spy_minutes) -> None:
    """A leverage limit (and a volume limit, a latency, next-open fills, several assets or a
    missing close) is the broker's business: each column then runs through backtest_signals."""
    close = spy_minutes["close"].to_numpy()
    entries, exits = _crossover_columns(close, [(5, 30), (10, 60)])
    capped = ExecutionModel(fee_bps=1.0, max_leverage=0.0001)  # refuses every entry
    swept = sweep_signals(spy_minutes, entries, exits, model=capped).frame
    assert swept["n_trades"].to_list() == [0, 0] and swept["exposure"].to_list() == [0.0, 0.0]
    loose = sweep_signals(spy_minutes, entries, exits, model=ExecutionModel(fee_bps=1.0, max_leverage=1000.0)).frame
    fast = sweep_signals(spy_minutes, entries, exits, model=ExecutionModel(fee_bps=1.0)).frame
    for name in ("n_trades", "pnl", "end_equity", "max_drawdown", "sharpe"):
        assert loose[name].to_list() == pytest.approx(fast[name].to_list(), rel=1e-9), name


def test_sweep_inputs_and_errors(spy_minutes, two_assets) -> None:
    n = spy_minutes.height
    entries = np.zeros((n, 3), dtype=bool)
    entries[10, :] = True
    exits = np.zeros(n)  # one column for all, numbers taken as signals
    exits[20] = 1.0
    swept = sweep_signals(spy_minutes, entries, exits, labels=["a", "b", "c"]).frame
    assert swept["column"].to_list() == ["a", "b", "c"] and swept["n_trades"].to_list() == [1, 1, 1]
    assert sweep_signals(spy_minutes, entries[:, 0], exits).frame["column"].to_list() == [0]
    with pytest.raises(ConfigError, match="on one asset; these bars hold 2 symbols"):
        sweep_signals(two_assets, entries, exits)
    with pytest.raises(DataError, match=r"entries have 3 columns and exits 2"):
        sweep_signals(spy_minutes, entries, np.zeros((n, 2)))
    with pytest.raises(DataError, match=r"one row per bar \(6000\)"):
        sweep_signals(spy_minutes, entries[:-1], exits)
    with pytest.raises(DataError, match="labels have 2 rows for 3 signal columns"):
        sweep_signals(spy_minutes, entries, exits, labels=["a", "b"])
    with pytest.raises(ConfigError, match=r"label columns \['sharpe'\] clash"):
        sweep_signals(spy_minutes, entries, exits, labels=pl.DataFrame({"sharpe": [1, 2, 3]}))
    with pytest.raises(ConfigError, match="size=0.0 must be a number > 0"):
        sweep_signals(spy_minutes, entries, exits, size=0.0)
    with pytest.raises(ConfigError, match="cash=-1.0"):
        sweep_signals(spy_minutes, entries, exits, cash=-1.0)


def test_crossovers_equal_the_numpy_expressions() -> None:
    rng = np.random.default_rng(5)
    fast = rng.standard_normal((500, 3)).cumsum(axis=0)
    slow = rng.standard_normal((500, 2)).cumsum(axis=0)
    fast[:7, 1] = np.nan  # a warm-up
    slow[250, 0] = np.nan  # a hole
    pairs = [(0, 0), (1, 0), (2, 1), (1, 1)]
    entries, exits = crossovers(fast, slow, pairs=pairs)
    assert entries.shape == (500, 4) and entries.flags["F_CONTIGUOUS"] and entries.dtype == np.bool_
    for k, (i, j) in enumerate(pairs):
        d = fast[:, i] - slow[:, j]
        prev = np.concatenate([[np.nan], d[:-1]])
        np.testing.assert_array_equal(entries[:, k], (d > 0) & (prev <= 0))
        np.testing.assert_array_equal(exits[:, k], (d < 0) & (prev >= 0))
        assert entries[:, k].any() and exits[:, k].any()
    one, _ = crossovers(fast[:, 0], slow)  # one column against each of the other side's
    np.testing.assert_array_equal(one, crossovers(fast[:, [0, 0]], slow)[0])
    with pytest.raises(DataError, match="same number of rows"):
        crossovers(fast[:-1], slow)
    with pytest.raises(DataError, match="fast has 3 columns and slow 2"):
        crossovers(fast, slow)
    with pytest.raises(DataError, match=r"pair \(3, 0\) is out of range: fast has 3 columns, slow 2"):
        crossovers(fast, slow, pairs=[(0, 0), (3, 0)])
