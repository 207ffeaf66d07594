"""The event-driven engine and the compiled broker: fill rules of every order type, fees,
slippage, partial fills, latency, brackets, rejections, accounting, look-ahead, and parity of
compiled and Python strategies. Bars are hand-made where a rule is checked, real (SPY
minutes) where strategies are compared with an independent pandas reference.
"""

from __future__ import annotations

import math
from fractions import Fraction
from datetime import UTC, datetime, timedelta

import numba
import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import njit

import ntlab.datasets
from ntlab.backtest.engine import backtest, bar_data
from ntlab.exceptions import ConfigError, DataError, SchemaError
from ntlab.execution import ExecutionModel
from ntlab.execution import broker as b
from ntlab.strategy import CompiledStrategy, Strategy
from ntlab.strategy import verbs as v
from ntlab.strategy.examples import EmaCross, SmaCross, ema_cross, sma_cross

PROPERTY = settings(deadline=None, max_examples=30, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


def bars_of(rows: list[tuple[float, float, float, float, float]], symbol: str | None = None) -> pl.DataFrame:
    """Bars from (open, high, low, close, volume) rows, one minute apart."""
    frame = pl.DataFrame(
        {
            "ts": [T0 + timedelta(minutes=i) for i in range(len(rows))],
            **{k: [float(r[j]) for r in rows] for j, k in enumerate(("open", "high", "low", "close", "volume"))},
        }
    ).with_columns(pl.col("ts").dt.cast_time_unit("ns"))
    return frame if symbol is None else frame.with_columns(symbol=pl.lit(symbol))


class Scripted(Strategy):
    """Does what ``script`` says at each bar index: a list of (verb, args, kwargs)."""

    def on_start(self, ctx):  # noqa: ANN001
        self.ids: dict[str, int] = {}
        self.fills = []

    def on_bar(self, ctx):  # noqa: ANN001
        for name, verb, args, kwargs in self.script.get(ctx.bar_index, []):
            args = [self.ids[a[1:]] if isinstance(a, str) and a.startswith("#") else a for a in args]
            out = getattr(ctx, verb)(*args, **kwargs)
            if name:
                self.ids[name] = out

    def on_fill(self, ctx, fill):  # noqa: ANN001
        self.fills.append(fill)


def run(rows, script, **model):  # noqa: ANN001, ANN201
    strategy = Scripted(script=script)
    result = backtest(bars_of(rows, "X"), strategy, cash=10_000.0, model=ExecutionModel(**model))
    return result, strategy


def fills(result) -> list[tuple[int, float, float]]:  # noqa: ANN001
    """(bar index, qty, price) of each fill."""
    ts = result.equity["ts"].to_list()
    return [(ts.index(r["ts"]), r["qty"], r["price"]) for r in result.fills.iter_rows(named=True)]


FLAT = (100.0, 101.0, 99.0, 100.0, 1000.0)


# ---------------------------------------------------------------------------------------------
# Fill rules


def test_market_orders_fill_at_the_close_or_the_next_open() -> None:
    rows = [FLAT, (102.0, 103.0, 101.0, 102.5, 1000.0), FLAT]
    buy = {0: [("", "buy", ("X", 2), {})]}
    assert fills(run(rows, buy)[0]) == [(0, 2.0, 100.0)]
    assert fills(run(rows, buy, fill_on="next_open")[0]) == [(1, 2.0, 102.0)]
    assert fills(run(rows, buy, latency_bars=2)[0]) == [(2, 2.0, 100.0)]  # two bars later, at the open
    assert fills(run(rows, {2: [("", "buy", ("X", 1), {})]}, fill_on="next_open")[0]) == []  # no next bar


@pytest.mark.parametrize(
    ("bar", "qty", "limit", "expected"),
    [
        ((100.0, 101.0, 98.0, 100.0, 1e3), 1, 99.0, 99.0),  # the low reaches the limit
        ((97.0, 101.0, 96.0, 100.0, 1e3), 1, 99.0, 97.0),  # gapped through: the better open
        ((100.0, 101.0, 99.5, 100.0, 1e3), 1, 99.0, None),  # not reached
        ((100.0, 102.0, 99.0, 100.0, 1e3), -1, 101.5, 101.5),  # sell: the high reaches it
        ((103.0, 104.0, 99.0, 100.0, 1e3), -1, 101.5, 103.0),  # sell gapped up
    ],
)
def test_limit_orders(bar, qty, limit, expected) -> None:  # noqa: ANN001
    script = {0: [("", "submit", ("X", qty, "limit"), {"limit": limit})]}
    got = fills(run([FLAT, bar], script, slippage_bps=50.0, allow_short=True)[0])  # no slippage on limits
    assert got == ([] if expected is None else [(1, float(qty), expected)])


@pytest.mark.parametrize(
    ("bar", "qty", "stop", "expected"),
    [
        ((100.0, 102.0, 99.0, 101.0, 1e3), 1, 101.0, 101.0),  # the high reaches the stop
        ((103.0, 104.0, 102.0, 103.0, 1e3), 1, 101.0, 103.0),  # gapped through: the open
        ((100.0, 100.5, 99.0, 100.0, 1e3), 1, 101.0, None),
        ((100.0, 101.0, 97.0, 98.0, 1e3), -1, 98.0, 98.0),  # sell stop: the low reaches it
        ((95.0, 96.0, 94.0, 95.0, 1e3), -1, 98.0, 95.0),
    ],
)
def test_stop_orders_pay_slippage(bar, qty, stop, expected) -> None:  # noqa: ANN001
    script = {0: [("", "submit", ("X", qty, "stop"), {"stop": stop})]}
    got = fills(run([FLAT, bar], script, slippage_bps=10.0)[0])
    assert got == ([] if expected is None else [(1, float(qty), pytest.approx(expected * (1 + math.copysign(1e-3, qty))))])


def test_stop_limit_orders() -> None:
    script = {0: [("", "submit", ("X", 1, "stop_limit"), {"stop": 101.0, "limit": 101.5})]}
    # triggered inside bar 1 (high 102): rests as a limit, fills at bar 2 when the low reaches 101.5
    rows = [FLAT, (100.0, 102.0, 99.0, 101.8, 1e3), (102.0, 102.5, 101.4, 102.0, 1e3)]
    assert fills(run(rows, script)[0]) == [(2, 1.0, 101.5)]
    # triggered at the open of bar 1, within the limit: fills at the open
    assert fills(run([FLAT, (101.2, 102.0, 101.0, 101.5, 1e3)], script)[0]) == [(1, 1.0, 101.2)]
    # gapped above the limit at the open: triggered, then waits for the price to come back
    rows = [FLAT, (103.0, 104.0, 102.0, 103.0, 1e3), (102.0, 102.0, 101.0, 101.2, 1e3)]
    assert fills(run(rows, script)[0]) == [(2, 1.0, 101.5)]
    # never triggered
    assert fills(run([FLAT, (100.0, 100.9, 99.0, 100.0, 1e3), FLAT[:1] + (100.5,) + FLAT[2:]], script)[0]) == []
    sell = {0: [("", "submit", ("X", -1, "stop_limit"), {"stop": 99.0, "limit": 98.5})]}
    assert fills(run([FLAT, (98.8, 99.0, 98.0, 98.2, 1e3)], sell)[0]) == [(1, -1.0, 98.8)]


def test_fees_slippage_and_cash() -> None:
    script = {0: [("", "buy", ("X", 10), {})], 1: [("", "sell", ("X", 10), {})]}
    result, _ = run([FLAT, (101.0, 111.0, 100.0, 110.0, 1e3)], script, fee_bps=10.0, fee_fixed=1.0, slippage_bps=20.0)
    buy, sell = 100.0 * 1.002, 110.0 * 0.998
    fee_buy, fee_sell = 10 * buy * 1e-3 + 1.0, 10 * sell * 1e-3 + 1.0
    assert result.fills["price"].to_list() == pytest.approx([buy, sell], rel=1e-15)
    assert result.fills["fee"].to_list() == pytest.approx([fee_buy, fee_sell], rel=1e-15)
    assert result.final_equity == pytest.approx(10_000.0 + 10 * (sell - buy) - fee_buy - fee_sell, rel=1e-15)
    (trade,) = result.trades.iter_rows(named=True)
    assert trade["pnl"] == pytest.approx(10 * (sell - buy) - fee_buy - fee_sell, rel=1e-12)
    assert trade["fees"] == pytest.approx(fee_buy + fee_sell)
    assert result.equity["fees"].to_list() == pytest.approx([fee_buy, fee_sell])
    assert result.equity["traded"].to_list() == pytest.approx([10 * buy, 10 * sell])


def test_partial_fills_limited_by_volume() -> None:
    rows = [(100.0, 101.0, 99.0, 100.0, 40.0), (100.0, 101.0, 99.0, 100.0, 30.0), (101.0, 101.0, 99.0, 100.0, 100.0)]
    result, strategy = run(rows, {0: [("", "buy", ("X", 25), {})]}, volume_limit=0.5)
    assert fills(result) == [(0, 20.0, 100.0), (1, 5.0, 100.0)]  # 50 % of 40 at the close, the rest at the next open
    assert result.events["event"].to_list() == ["accepted", "partially_filled", "filled"]
    assert [f.partial for f in strategy.fills] == [True, False]
    assert result.positions["qty"].to_list() == [25.0]


def test_bracket_take_profit_cancels_the_stop() -> None:
    script = {0: [("entry", "bracket", ("X", 2), {"take_profit": 104.0, "stop_loss": 97.0})]}
    rows = [FLAT, FLAT, (101.0, 104.5, 100.0, 104.0, 1e3), FLAT]
    result, _ = run(rows, script)
    assert fills(result) == [(0, 2.0, 100.0), (2, -2.0, 104.0)]
    cancelled = result.events.filter(pl.col("event") == "cancelled")
    assert cancelled["order_id"].to_list() == [2] and "one-cancels-other" in cancelled["reason"][0]
    assert result.positions["qty"].to_list() == [0.0]


def test_bracket_children_wait_for_the_parent_and_die_with_it() -> None:
    # a limit entry that never fills: the stop below the market must not fire; cancelling
    # the entry cancels both children
    script = {
        0: [("entry", "bracket", ("X", 1), {"take_profit": 110.0, "stop_loss": 99.5, "limit": 90.0})],
        2: [("", "cancel", ("#entry",), {})],
    }
    result, _ = run([FLAT, FLAT, FLAT, FLAT], script)
    assert fills(result) == []
    assert result.events.filter(pl.col("event") == "cancelled")["order_id"].to_list() == [0, 1, 2]
    assert result.events["reason"].to_list()[-2:] == ["its parent order was cancelled, rejected or is unknown"] * 2


def test_stop_loss_of_a_bracket() -> None:
    script = {0: [("", "bracket", ("X", 1), {"take_profit": 110.0, "stop_loss": 98.0})]}
    result, _ = run([FLAT, FLAT, (99.0, 99.5, 97.0, 97.5, 1e3)], script)
    assert fills(result) == [(0, 1.0, 100.0), (2, -1.0, 98.0)]


@pytest.mark.parametrize(
    ("verb", "args", "kwargs", "model", "reason"),
    [
        ("buy", ("X", 0.0), {}, {}, "quantity must be finite and non-zero"),
        ("buy", ("X", math.nan), {}, {}, "quantity must be finite"),
        ("submit", ("X", 1, "limit"), {}, {}, "price missing or not > 0"),
        ("submit", ("X", 1, "stop"), {"stop": -1.0}, {}, "price missing or not > 0"),
        ("submit", ("X", 1, "stop_limit"), {"stop": 101.0, "limit": math.inf}, {}, "price missing"),
        ("sell", ("X", 1), {}, {"allow_short": False}, "short selling is disabled"),
        ("buy", ("X", 1000), {}, {"max_leverage": 2.0}, "above max_leverage"),
        ("cancel", (12345,), {}, {}, "no open order with this id"),
    ],
)
def test_rejections_have_reasons(verb, args, kwargs, model, reason) -> None:  # noqa: ANN001
    result, _ = run([FLAT, FLAT], {0: [("", verb, args, kwargs)]}, **model)
    (rejected,) = result.rejections.iter_rows(named=True)
    assert reason in rejected["reason"]
    assert fills(result) == []


def test_leverage_allows_reducing_and_counts_open_sells_for_shorting() -> None:
    script = {0: [("", "buy", ("X", 150), {})], 1: [("", "submit", ("X", -100, "limit"), {"limit": 200.0}), ("", "sell", ("X", 60), {})]}
    result, _ = run([FLAT, FLAT, FLAT], script, allow_short=False, max_leverage=2.0)
    assert result.rejections["reason"].to_list() == [b_reason("R_SHORT")]  # 150 - 100 open - 60 < 0
    assert fills(result) == [(0, 150.0, 100.0)]


def b_reason(name: str) -> str:
    from ntlab.execution import orders as o

    return o.REJECT_REASONS[getattr(o, name)]


def test_unknown_asset_and_a_full_book_are_rejected() -> None:
    @njit
    def bad_asset(ctx, state):  # noqa: ANN001, ANN202
        if v.now(ctx) == state[0]:
            v.buy(ctx, 7, 1.0)

    first = int(bars_of([FLAT])["ts"].dt.epoch("ns")[0])
    result = backtest(bars_of([FLAT, FLAT]), CompiledStrategy(on_bar=bad_asset, init=lambda: np.array([float(first)])))
    assert result.rejections["reason"].to_list() == [b_reason("R_ASSET")]
    script = {0: [("", "submit", ("X", 1, "limit"), {"limit": 50.0}) for _ in range(3)]}
    result, _ = run([FLAT, FLAT], script, max_open_orders=2)
    assert result.events["event"].to_list() == ["accepted", "accepted", "rejected"]
    assert "too many open orders" in result.events["reason"][2]


# ---------------------------------------------------------------------------------------------
# Accounting


def test_short_then_flip_long_splits_the_round_trips() -> None:
    rows = [FLAT, (100.0, 101.0, 89.0, 90.0, 1e3), (90.0, 96.0, 89.0, 95.0, 1e3), (95.0, 96.0, 94.0, 95.0, 1e3)]
    script = {0: [("", "sell", ("X", 2), {})], 1: [("", "buy", ("X", 5), {})], 2: [("", "flatten", ("X",), {})]}
    result, _ = run(rows, script, fee_bps=10.0)
    short, long = result.trades.iter_rows(named=True)
    assert (short["side"], short["qty"], short["entry_price"], short["exit_price"]) == ("short", 2.0, 100.0, 90.0)
    flip_fee = 5 * 90.0 * 1e-3
    assert short["fees"] == pytest.approx(2 * 100.0 * 1e-3 + flip_fee * 2 / 5)
    assert short["pnl"] == pytest.approx(2 * 10.0 - short["fees"])
    assert (long["side"], long["qty"], long["entry_price"], long["exit_price"]) == ("long", 3.0, 90.0, 95.0)
    assert long["pnl"] == pytest.approx(3 * 5.0 - flip_fee * 3 / 5 - 3 * 95.0 * 1e-3)
    assert result.final_equity == pytest.approx(10_000.0 + short["pnl"] + long["pnl"])
    assert result.positions.row(0, named=True)["realised"] == pytest.approx(20.0 + 15.0)


def test_average_price_and_unrealised_pnl() -> None:
    rows = [FLAT, (110.0, 111.0, 109.0, 110.0, 1e3), (120.0, 121.0, 119.0, 120.0, 1e3)]
    script = {0: [("", "buy", ("X", 1), {})], 1: [("", "buy", ("X", 3), {})]}
    result, _ = run(rows, script)
    pos = result.positions.row(0, named=True)
    assert pos["avg_price"] == pytest.approx((100 + 3 * 110) / 4)
    assert pos["unrealised"] == pytest.approx(4 * 120 - (100 + 330))
    assert result.trades.height == 0  # still open
    eq = result.equity
    assert (eq["equity"] - (eq["cash"] + eq["position_value"])).abs().max() == 0.0
    assert eq["equity"].to_list() == pytest.approx([10_000.0, 10_000.0 + 10.0, 10_000.0 + 10.0 + 40.0])


def test_many_assets_with_missing_bars() -> None:
    a = bars_of([FLAT, (101.0, 102.0, 100.0, 102.0, 1e3), (102.0, 103.0, 101.0, 103.0, 1e3)], "A")
    c = bars_of([(50.0, 51.0, 49.0, 50.0, 1e3), (50.0, 51.0, 49.0, 51.0, 1e3), (51.0, 52.0, 50.0, 52.0, 1e3)], "C").slice(1, 1)  # C only at minute 1
    bars = pl.concat([a, c])
    strategy = Scripted(script={0: [("", "buy", ("C", 10), {}), ("", "buy", ("A", 1), {})]})
    result = backtest(bars, strategy, cash=1_000.0)
    # C has no bar at minute 0: its market order waits for its next bar's open (minute 1)
    assert result.fills.select("symbol", "price").rows() == [("A", 100.0), ("C", 50.0)]
    eq = result.equity["equity"].to_list()
    assert eq == pytest.approx([1000.0, 1000.0 + 2 + 10 * 1.0, 1000.0 + 3 + 10 * 1.0])  # C marked at its last close
    data = bar_data(bars)
    assert data.symbols == ["A", "C"] and np.isnan(data.ohlcv[0, 1]).all() and np.isnan(data.ohlcv[2, 1]).all()


# ---------------------------------------------------------------------------------------------
# Strategies: compiled = Python = independent reference


@pytest.fixture(scope="module")
def spy() -> pl.DataFrame:
    return ntlab.datasets.load("spy_1min").head(20_000)


def reference_crossover(close: np.ndarray, fast: int, slow: int, fee: float) -> tuple[list[tuple[int, int, float]], set[int]]:
    """Trades ``(entry bar, exit bar, pnl)`` of the long-only SMA crossover decided on exact
    (rational) moving averages, and the bars where SMA(fast) - SMA(slow) is within 1e-9 of
    zero: there, float arithmetic (any engine's) may round the difference to the other sign."""
    prices = [Fraction(float(c)) for c in close]
    trades, ties, entry, prev = [], set(), None, None
    fast_sum, slow_sum = Fraction(0), Fraction(0)
    for t, p in enumerate(prices):
        fast_sum += p - (prices[t - fast] if t >= fast else 0)
        slow_sum += p - (prices[t - slow] if t >= slow else 0)
        diff = fast_sum / fast - slow_sum / slow if t >= slow - 1 else None
        if diff is not None and abs(diff) < Fraction(1, 10**9):
            ties.add(t)
        if diff is not None and prev is not None:
            if entry is None and diff > 0 >= prev:
                entry = t
            elif entry is not None and diff < 0 <= prev:
                trades.append((entry, t, close[t] - close[entry] - fee * (close[t] + close[entry])))
                entry = None
        prev = diff
    return trades, ties


def test_sma_crossover_equals_an_independent_reference(spy) -> None:  # noqa: ANN001
    result = backtest(spy, sma_cross, model=ExecutionModel(fee_bps=10.0), fast=10, slow=50)
    ts = spy["ts"].to_list()
    got = {(ts.index(r["entry_ts"]), ts.index(r["exit_ts"])): r["pnl"] for r in result.trades.iter_rows(named=True)}
    ref_trades, ties = reference_crossover(spy["close"].to_numpy(), 10, 50, 1e-3)
    ref = {(e, x): pnl for e, x, pnl in ref_trades}
    same = got.keys() & ref.keys()
    assert len(ref) > 100 and len(same) >= 0.97 * len(ref)
    np.testing.assert_allclose([got[k] for k in sorted(same)], [ref[k] for k in sorted(same)], rtol=1e-9, atol=1e-12)
    near = ties | {t + 1 for t in ties}  # a decision moved by a near-tie lands on the tie or the bar after
    for entry, exit_ in got.keys() ^ ref.keys():
        assert entry in near or exit_ in near, f"trade {entry}->{exit_} differs from the exact reference away from any near-tie"


def test_compiled_and_python_strategies_agree(spy) -> None:  # noqa: ANN001
    model = ExecutionModel(fee_bps=5.0, slippage_bps=1.0)
    compiled = backtest(spy, sma_cross, model=model, fast=5, slow=30)
    python = backtest(spy, SmaCross(fast=5, slow=30), model=model)
    assert compiled.events.equals(python.events)
    assert compiled.trades.equals(python.trades)
    assert compiled.equity.equals(python.equity)


def test_ema_cross_trades_on_crosses_of_price_and_ema(spy) -> None:  # noqa: ANN001
    result = backtest(spy, ema_cross, span=100)
    assert backtest(spy, EmaCross(span=100)).events.equals(result.events)
    close = spy["close"].to_numpy()
    ema = pd.Series(close).ewm(span=100, adjust=False, min_periods=100).mean().to_numpy()
    ts = spy["ts"].to_list()
    entries = [ts.index(x) for x in result.trades["entry_ts"]]
    assert entries, "the EMA cross should trade"
    for t in entries:
        assert close[t] > ema[t] and close[t - 1] <= ema[t - 1]


@st.composite
def random_orders(draw):  # noqa: ANN001, ANN201
    n = draw(st.integers(5, 40))
    steps = np.cumsum(draw(st.lists(st.floats(-2, 2), min_size=n, max_size=n)))
    close = 100 + steps
    rows = [(c + draw(st.floats(-1, 1)), c + 2.0, c - 2.0, c, draw(st.sampled_from([5.0, 50.0]))) for c in close]
    orders = np.zeros((n, 4))
    for t in range(n):
        if draw(st.booleans()):
            orders[t] = (draw(st.sampled_from([-3.0, -1.0, 1.0, 2.0])), draw(st.sampled_from([0.0, 1.0, 2.0, 3.0])), close[t] + draw(st.floats(-3, 3)), 0.0)
    return rows, orders


@njit
def _orders_on_bar(ctx, state):  # noqa: ANN001, ANN202
    t = ctx.clock[1]
    n = state.shape[0] // 4
    if t < n and state[4 * t] != 0.0:
        typ = np.int64(state[4 * t + 1])
        px = state[4 * t + 2]
        v.submit(ctx, 0, state[4 * t], typ, px if typ == v.LIMIT or typ == v.STOP_LIMIT else np.nan, px if typ >= v.STOP else np.nan)


class _OrdersPy(Strategy):
    def on_bar(self, ctx):  # noqa: ANN001
        t = ctx.bar_index
        qty, typ, px, _ = self.orders[t]
        if qty:
            kind = ("market", "limit", "stop", "stop_limit")[int(typ)]
            ctx.submit("asset", qty, kind, limit=px if kind in ("limit", "stop_limit") else None, stop=px if kind in ("stop", "stop_limit") else None)


@PROPERTY
@given(case=random_orders(), fill_on=st.sampled_from(["close", "next_open"]), volume_limit=st.sampled_from([0.0, 0.5]))
def test_compiled_and_python_agree_on_random_orders(case, fill_on, volume_limit) -> None:  # noqa: ANN001
    rows, orders = case
    model = ExecutionModel(fill_on=fill_on, volume_limit=volume_limit, fee_bps=3.0, slippage_bps=2.0)
    compiled = backtest(bars_of(rows), CompiledStrategy(on_bar=_orders_on_bar, init=lambda: orders.ravel().copy()), model=model)
    python = backtest(bars_of(rows), _OrdersPy(orders=orders), model=model)
    assert compiled.events.equals(python.events)
    assert compiled.equity.equals(python.equity)
    eq = compiled.equity
    np.testing.assert_allclose(eq["equity"].to_numpy(), (eq["cash"] + eq["position_value"]).to_numpy(), rtol=0, atol=0)


@PROPERTY
@given(case=random_orders(), cut=st.integers(1, 30), noise=st.floats(-5, 5))
def test_no_look_ahead(case, cut, noise) -> None:  # noqa: ANN001
    """Changing the bars after t never changes what happened at or before t."""
    rows, orders = case
    cut = min(cut, len(rows) - 1)
    changed = rows[:cut] + [(o + noise, h + noise + 1, lo + noise - 1, c + noise, vol * 2) for o, h, lo, c, vol in rows[cut:]]
    strategy = CompiledStrategy(on_bar=_orders_on_bar, init=lambda: orders.ravel().copy())
    first = backtest(bars_of(rows), strategy)
    second = backtest(bars_of(changed), strategy)
    limit = bars_of(rows)["ts"][cut - 1]
    assert first.events.filter(pl.col("ts") <= limit).equals(second.events.filter(pl.col("ts") <= limit))
    assert first.equity.head(cut).equals(second.equity.head(cut))


def test_logs_grow_without_changing_results(spy, monkeypatch) -> None:  # noqa: ANN001
    big = backtest(spy, sma_cross, fast=3, slow=7)
    real_new_ctx = b.new_ctx
    monkeypatch.setattr(b, "new_ctx", lambda *a, **k: real_new_ctx(*a, **{**k, "capacity": 8}))
    small = backtest(spy, sma_cross, fast=3, slow=7)
    small_py = backtest(spy, SmaCross(fast=3, slow=7))
    assert big.trades.height > 1000
    assert small.events.equals(big.events) and small.trades.equals(big.trades)
    assert small_py.events.equals(big.events)


# ---------------------------------------------------------------------------------------------
# Errors and the result object


def test_bad_inputs_have_clear_errors() -> None:
    good = bars_of([FLAT, FLAT])
    with pytest.raises(SchemaError, match=r"lack column\(s\) \['volume'\]"):
        backtest(good.drop("volume"), sma_cross)
    with pytest.raises(SchemaError, match="'ts' must be a Datetime"):
        backtest(good.with_columns(pl.col("ts").dt.epoch("ns")), sma_cross)
    with pytest.raises(DataError, match="empty"):
        backtest(good.head(0), sma_cross)
    with pytest.raises(DataError, match=r"two rows for symbol 'asset' at 2024-01-02 14:30:00"):
        backtest(pl.concat([good, good.head(1)]), sma_cross)
    with pytest.raises(ConfigError, match="go to the Strategy's constructor"):
        backtest(good, SmaCross(), fast=3)
    with pytest.raises(ConfigError, match="CompiledStrategy or a Strategy instance, got type"):
        backtest(good, SmaCross)
    if not numba.config.DISABLE_JIT:  # without the JIT every function is plain Python
        with pytest.raises(ConfigError, match="must be a Numba @njit function"):
            CompiledStrategy(on_bar=lambda ctx, state: None, init=lambda: np.zeros(1))
    with pytest.raises(ConfigError, match=r"numeric NumPy array or a tuple of them, got <U1 array"):
        backtest(good, CompiledStrategy(on_bar=sma_cross.on_bar, init=lambda: np.array(["a"])))
    with pytest.raises(ConfigError, match=r"numeric NumPy array or a tuple of them, got list"):
        backtest(good, CompiledStrategy(on_bar=sma_cross.on_bar, init=lambda: (np.zeros(2), [1.0])))
    with pytest.raises(ConfigError, match="cash=-1"):
        backtest(good, sma_cross, cash=-1)
    with pytest.raises(ConfigError, match="unknown symbol 'Y'"):
        backtest(good, Scripted(script={0: [("", "buy", ("Y", 1), {})]}))
    with pytest.raises(ConfigError, match="order_type='iceberg'"):
        backtest(good, Scripted(script={0: [("", "submit", ("asset", 1, "iceberg"), {})]}))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fill_on": "open"}, "fill_on='open'"),
        ({"fee_bps": -1.0}, "fee_bps=-1.0 must be a finite number >= 0"),
        ({"volume_limit": 2.0}, r"fraction of the bar's volume"),
        ({"latency_bars": 1.5}, "latency_bars=1.5 must be an int >= 0"),
        ({"max_open_orders": 0}, "max_open_orders=0 must be an int >= 1"),
    ],
)
def test_execution_model_checks(kwargs, match) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match=match):
        ExecutionModel(**kwargs)


def test_context_reads(spy) -> None:  # noqa: ANN001
    seen = {}

    class Probe(Strategy):
        def on_bar(self, ctx):  # noqa: ANN001
            if ctx.bar_index == 3:
                seen.update(now=ctx.now, bar=ctx.bar("SPY"), price=ctx.price("SPY"), cash=ctx.cash, equity=ctx.equity)
                ctx.submit("SPY", 1, "limit", limit=1.0, tag=7.0)
            if ctx.bar_index == 4:
                seen["orders"] = ctx.open_orders("SPY")
                seen["all"] = ctx.open_orders()

    result = backtest(spy.head(6), Probe(), cash=500.0)
    row = spy.row(3, named=True)
    assert seen["now"] == row["ts"] and seen["price"] == row["close"] and seen["bar"]["high"] == row["high"]
    assert seen["cash"] == seen["equity"] == 500.0
    (order,) = seen["orders"]
    assert seen["all"][0]["id"] == 0 and math.isnan(order.pop("stop"))
    assert order == {"id": 0, "symbol": "SPY", "qty": 1.0, "type": "limit", "limit": 1.0}
    assert result.events["tag"].to_list() == [7.0]
    assert "1 symbol(s), 6 bars, 0 trades, 0 rejections, final equity 500.00 (+0.00%)" in repr(result)


def test_features_reach_the_context(spy) -> None:  # noqa: ANN001
    frame = spy.head(50).with_columns(signal=pl.int_range(50).cast(pl.Float64))
    got = []

    class Reader(Strategy):
        def on_bar(self, ctx):  # noqa: ANN001
            got.append(ctx.feature("SPY", "signal"))

    backtest(frame, Reader(), features=["signal"])
    assert got == list(map(float, range(50)))
    with pytest.raises(ConfigError, match="unknown feature 'nope'"):
        backtest(frame, type("R", (Strategy,), {"on_bar": lambda self, ctx: ctx.feature("SPY", "nope")})(), features=["signal"])


def test_trade_ticks_are_bars_of_one_trade() -> None:
    ticks = ntlab.datasets.load("binance_spot_btcusdt_trades").head(5000)
    result = backtest(ticks, ema_cross, span=50, size=0.0005, model=ExecutionModel(volume_limit=1.0))
    data = bar_data(ticks)
    assert data.ts.size == ticks["ts"].n_unique() and result.trades.height > 5
    prices = set(ticks["price"].to_list())
    assert set(result.fills["price"].to_list()) <= prices  # every fill at a traded price
    sizes = dict(zip(ticks["ts"].dt.epoch("ns").to_list(), ticks["size"].to_list(), strict=True))
    assert all(abs(q) <= sizes[t] + 1e-12 for t, q in zip(result.fills["ts"].dt.epoch("ns"), result.fills["qty"], strict=True))


def test_trades_with_one_time_stamp_are_one_bar() -> None:
    ticks = pl.DataFrame({"ts": [T0, T0, T0 + timedelta(seconds=1)], "price": [10.0, 11.0, 9.0], "size": [1.0, 2.0, 3.0]})
    data = bar_data(ticks.with_columns(pl.col("ts").dt.cast_time_unit("ns")))
    assert data.ohlcv[:, 0].tolist() == [[10.0, 11.0, 10.0, 11.0, 3.0], [9.0, 9.0, 9.0, 9.0, 3.0]]


def test_python_strategies_get_on_trade_for_trade_ticks() -> None:
    ticks = ntlab.datasets.load("binance_spot_btcusdt_trades").head(300)
    calls = {"trade": 0, "bar": 0}

    class Ticks(Strategy):
        def on_trade(self, ctx):  # noqa: ANN001
            calls["trade"] += 1

        def on_bar(self, ctx):  # noqa: ANN001
            calls["bar"] += 1

    backtest(ticks, Ticks())
    assert calls == {"trade": 300, "bar": 0}
    backtest(spy_bars := ntlab.datasets.load("spy_1min").head(10), Ticks())
    assert calls == {"trade": 300, "bar": spy_bars.height}


@njit
def _verbs_on_bar(ctx, state):  # noqa: ANN001, ANN202
    t = ctx.clock[1]
    if t == 0:
        state[0] = v.cash(ctx)
        state[1] = v.now(ctx)
        state[2] = v.flatten(ctx, 0)  # flat: nothing to close
        v.submit(ctx, 0, 1.0, v.LIMIT, 1.0)  # rests far below the market
    elif t == 1:
        state[3] = 1.0 if v.has_open_orders(ctx, 0) else 0.0
        state[4] = v.equity(ctx)
        n = 0
        while v.buy(ctx, 0, 1.0) >= 0:  # fill the request buffer
            n += 1
        state[5] = n
        state[6] = v.cancel(ctx, 0)
        state[7] = v.bracket(ctx, 0, 1.0, 200.0, 50.0)
        state[8] = v.submit(ctx, 0, 1.0, 9)  # an unknown order type, if there were room
    elif t == 2:
        state[9] = 1.0 if v.has_open_orders(ctx, 0) else 0.0
        v.submit(ctx, 0, 1.0, 9)
        v.submit(ctx, 0, 1.0, v.LIMIT, 90.0, np.nan, -1, 12345)  # its parent does not exist


def test_verbs_read_the_context_and_report_a_full_buffer() -> None:
    state = np.zeros(10)
    strategy = CompiledStrategy(on_bar=_verbs_on_bar, init=lambda: state)
    result = backtest(bars_of([FLAT, FLAT, FLAT, FLAT]), strategy, cash=5_000.0)
    first = int(bars_of([FLAT])["ts"].dt.epoch("ns")[0])
    assert state[0] == 5_000.0 and state[1] == first and state[2] == -1.0
    assert state[3] == 1.0 and state[4] == 5_000.0
    assert state[5] == 256 and state[6] == -1.0 and state[7] == -1.0 and state[8] == -1.0  # all refused: buffer full
    assert state[9] == 1.0  # the limit far below the market still rests
    # the resting limit holds one of the 256 open-order slots: the last buy finds the book full
    assert result.positions["qty"][0] == 255.0
    reasons = result.rejections["reason"].to_list()
    assert reasons == [b_reason("R_BOOK_FULL"), "unknown order type", "its parent order was cancelled, rejected or is unknown"]


def test_result_reprs_and_tear_sheet(spy, monkeypatch, tmp_path) -> None:  # noqa: ANN001
    result = backtest(spy.head(3000), sma_cross, fast=5, slow=20)
    page = result.tearsheet(title="probe")
    assert "probe" in page and page.count("data:image/png;base64,") == 4
    assert result.tearsheet(tmp_path / "t.html") == (tmp_path / "t.html").read_text()
    html = result._repr_html_()
    assert "Backtest result" in html and "Sharpe" in html and f"{result.n_trades:,}" in html

    def broken(**_):  # noqa: ANN003, ANN202
        raise DataError("equity is 0.0 at row 7")

    monkeypatch.setattr(result, "metrics", broken)
    assert "metrics unavailable: equity is 0.0 at row 7" in result._repr_html_()
    assert ExecutionModel(fee_bps=2.0).to_dict()["fee_bps"] == 2.0
