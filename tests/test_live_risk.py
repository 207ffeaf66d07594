"""The live risk filter: each limit, the trading states, the kill switch, the loss stops, and a
property test against an independent plain-Python checker."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ntlab.exceptions import ConfigError
from ntlab.execution import broker as b
from ntlab.execution import orders as o
from ntlab.execution.orders import ExecutionModel
from ntlab.live import risk as rk
from ntlab.live.risk import RiskLimits, RiskState
from ntlab.strategy import verbs as v

NS_DAY = 86_400_000_000_000
SEC = 1_000_000_000
T0 = 19_700 * NS_DAY + 12 * 3600 * SEC  # noon, UTC
TEXT = o.REJECT_REASONS


def make(n_assets: int = 2, cash: float = 1e6, marks: tuple = (100.0, 50.0), capacity: int = 4096) -> tuple:
    ctx = b.new_ctx(n_assets, 64, ExecutionModel().params(), cash=cash, capacity=capacity)
    arr = b.arrays(ctx)
    arr["mark"][: len(marks)] = marks
    arr["bar"][: len(marks), b.CLOSE] = marks
    arr["clock"][b.C_TS] = T0
    return ctx, arr


def ids(arr: dict) -> list[int]:
    """Ids of the requests left."""
    return [int(i) for i in arr["requests"][: arr["n_requests"][0], o.O_ID]]


def rejections(arr: dict) -> dict[int, str]:
    """Order id -> reason text of the rejected events."""
    ev = arr["events"][: arr["n_events"][0]]
    return {int(e[o.E_ORDER]): TEXT[int(e[o.E_REASON])] for e in ev if e[o.E_KIND] == o.REJECTED}


def kinds(arr: dict, kind: int) -> list[int]:
    ev = arr["events"][: arr["n_events"][0]]
    return [int(e[o.E_ORDER]) for e in ev if e[o.E_KIND] == kind]


# ---------------------------------------------------------------------------------------------
# Limits, one by one


def test_order_size_notional_and_their_prices() -> None:
    ctx, arr = make()
    rs = RiskState(RiskLimits(max_order_qty=5, max_order_notional=450), 2)
    big = v.buy(ctx, 0, 6)
    ok = v.buy(ctx, 1, 5)  # 5 * 50 = 250
    rich = v.buy(ctx, 0, 5)  # 500 at the last price
    lim_ok = v.submit(ctx, 0, 5, v.LIMIT, 89.0)  # 445 at its limit
    stop_rich = v.submit(ctx, 0, -5, v.STOP, np.nan, 95.0)  # 475 at its stop
    sl_ok = v.submit(ctx, 0, -4, v.STOP_LIMIT, 99.0, 101.0)  # 396 at its limit
    assert rs.check(ctx) == 3
    assert ids(arr) == [ok, lim_ok, sl_ok]
    assert rejections(arr) == {big: TEXT[o.R_RISK_ORDER_SIZE], rich: TEXT[o.R_RISK_NOTIONAL], stop_rich: TEXT[o.R_RISK_NOTIONAL]}
    assert "max_order_qty" in TEXT[o.R_RISK_ORDER_SIZE]
    c = rs.counters()
    assert (c["checked"], c["passed"], c["rejected"]) == (6, 3, 3)
    assert c[TEXT[o.R_RISK_NOTIONAL]] == 2


def test_position_counts_open_orders_of_the_side_and_allows_reducing() -> None:
    ctx, arr = make()
    rs = RiskState(RiskLimits(max_position=10), 2)
    rest = v.submit(ctx, 0, 6, v.LIMIT, 90.0)
    assert rs.check(ctx) == 0
    b.end_bar_nb(ctx)  # the limit buy rests
    assert kinds(arr, o.ACCEPTED) == [rest]
    arr["position"][0] = 3.0
    too_much = v.buy(ctx, 0, 2)  # 3 + 6 + 2 = 11
    fits = v.buy(ctx, 0, 1)  # 10
    then_full = v.buy(ctx, 0, 1)  # 11 with the one before
    sells = v.sell(ctx, 0, 13)  # 3 - 13 = -10: sells do not count the open buy
    assert rs.check(ctx) == 2
    assert ids(arr) == [fits, sells]
    assert rejections(arr) == {too_much: TEXT[o.R_RISK_POSITION], then_full: TEXT[o.R_RISK_POSITION]}
    arr["n_requests"][0] = 0
    arr["position"][0] = 30.0  # above the limit (say it was lowered): reducing still passes
    down = v.sell(ctx, 0, 5)
    up = v.buy(ctx, 0, 0.5)
    assert rs.check(ctx) == 1 and ids(arr) == [down]
    assert rejections(arr)[up] == TEXT[o.R_RISK_POSITION]


def test_cancels_free_what_they_cancel_once() -> None:
    ctx, arr = make()
    rs = RiskState(RiskLimits(max_position=10), 2)
    rest = v.submit(ctx, 0, 8, v.LIMIT, 90.0)
    rs.check(ctx)
    b.end_bar_nb(ctx)
    v.cancel(ctx, rest)
    v.cancel(ctx, rest)  # twice: frees it once
    a = v.submit(ctx, 0, 8, v.LIMIT, 91.0)
    bb = v.submit(ctx, 0, 3, v.LIMIT, 91.0)  # 11
    v.cancel(ctx, a)  # an order of this call
    c = v.submit(ctx, 0, 9, v.LIMIT, 92.0)
    v.cancel(ctx, 12345)  # unknown: frees nothing
    d = v.buy(ctx, 0, 2)  # 9 + 2 = 11
    assert rs.check(ctx) == 2
    assert rejections(arr) == {bb: TEXT[o.R_RISK_POSITION], d: TEXT[o.R_RISK_POSITION]}
    assert ids(arr) == [rest, rest, a, a, c, 12345]
    b.end_bar_nb(ctx)
    assert sorted(kinds(arr, o.CANCELLED)) == [rest, a]


def test_gross_notional_counts_the_worst_side_of_every_asset() -> None:
    ctx, arr = make(3, marks=(100.0, 50.0, np.nan))
    arr["position"][:] = [10.0, -20.0, 0.0]  # 1000 + 1000
    rs = RiskState(RiskLimits(max_gross_notional=2500), 3)
    over = v.buy(ctx, 1, -11)  # short 31 * 50 = 1550: 2550
    fits = v.buy(ctx, 0, 5)  # 1500 + 1000
    reduce = v.sell(ctx, 0, 5)  # the worst side of asset 0 stays 15
    flip = v.sell(ctx, 0, 20)  # 10 - 25 = -15: the worst side stays 15
    more = v.buy(ctx, 1, 5)  # less short: the worst side of asset 1 stays 20
    nope = v.sell(ctx, 0, 6)  # 10 - 31 = -21: 2100 + 1000
    no_price = v.buy(ctx, 2, 1)
    assert rs.check(ctx) == 3
    assert ids(arr) == [fits, reduce, flip, more]
    assert rejections(arr) == {over: TEXT[o.R_RISK_GROSS], nope: TEXT[o.R_RISK_GROSS], no_price: TEXT[o.R_RISK_NO_PRICE]}
    arr["n_requests"][0] = 0
    arr["position"][:] = [40.0, -20.0, 0.0]  # 5000 already: reducing still passes
    down, up = v.sell(ctx, 0, 1), v.buy(ctx, 0, 1)
    assert rs.check(ctx) == 1 and ids(arr) == [down] and rejections(arr)[up] == TEXT[o.R_RISK_GROSS]


def test_price_band_and_missing_prices() -> None:
    ctx, arr = make(3, marks=(100.0, 50.0))
    rs = RiskState(RiskLimits(price_band_bps=100), 3)
    inside = v.submit(ctx, 0, 1, v.LIMIT, 99.5)
    outside = v.submit(ctx, 0, 1, v.LIMIT, 98.9)
    stop_out = v.submit(ctx, 1, -1, v.STOP, np.nan, 49.0)
    sl_stop_out = v.submit(ctx, 0, 1, v.STOP_LIMIT, 101.0, 101.5)
    sl_limit_out = v.submit(ctx, 0, 1, v.STOP_LIMIT, 101.5, 100.5)
    market = v.buy(ctx, 1, 1)
    unpriced = v.buy(ctx, 2, 1)
    assert rs.check(ctx) == 5
    assert ids(arr) == [inside, market]
    band, none = TEXT[o.R_RISK_PRICE_BAND], TEXT[o.R_RISK_NO_PRICE]
    assert rejections(arr) == {outside: band, stop_out: band, sl_stop_out: band, sl_limit_out: band, unpriced: none}


def test_rate_limit_is_a_rolling_second_of_clock_time() -> None:
    ctx, arr = make()
    rs = RiskState(RiskLimits(max_orders_per_second=3), 2)
    first = [v.buy(ctx, 0, 1 + i) for i in range(4)]
    assert rs.check(ctx) == 1 and ids(arr) == first[:3]
    arr["n_requests"][0] = 0
    arr["clock"][b.C_TS] = T0 + SEC - 1  # the three are still within the second
    late = v.buy(ctx, 0, 9)
    assert rs.check(ctx) == 1 and rejections(arr)[late] == TEXT[o.R_RISK_RATE]
    arr["clock"][b.C_TS] = T0 + SEC  # they left it
    ok = [v.buy(ctx, 0, 1 + i) for i in range(3)]
    assert rs.check(ctx) == 0 and ids(arr) == ok
    arr["n_requests"][0] = 0
    arr["clock"][b.C_TS] = T0 + 2 * SEC - 1
    again = v.buy(ctx, 0, 1)
    assert rs.check(ctx) == 1 and rejections(arr)[again] == TEXT[o.R_RISK_RATE]


def test_rate_limit_follows_a_swap_of_the_limits() -> None:
    ctx, arr = make()
    rs = RiskState(RiskLimits(), 2)  # no rate limit: the ring still records (RING_MIN slots)
    first = [v.buy(ctx, 0, 1 + i) for i in range(3)]
    assert rs.check(ctx) == 0 and ids(arr) == first
    arr["n_requests"][0] = 0
    rs.params[:] = RiskLimits(max_orders_per_second=4).params()  # what the engine does
    arr["clock"][b.C_TS] = T0 + SEC // 2
    one, two = v.buy(ctx, 0, 7), v.buy(ctx, 0, 8)
    assert rs.check(ctx) == 1 and ids(arr) == [one]
    arr["n_requests"][0] = 0
    rs.params[:] = RiskLimits(max_orders_per_second=10**5).params()  # above the ring: clamped to it
    burst = [v.buy(ctx, 0, 1) for _ in range(rk.RING_MIN)]
    assert rs.check(ctx) == 4 and ids(arr) == burst[: rk.RING_MIN - 4]
    assert two in rejections(arr)


def test_rate_window_spans_midnight() -> None:
    ctx, arr = make()
    midnight = (T0 // NS_DAY + 1) * NS_DAY
    rs = RiskState(RiskLimits(max_orders_per_second=2, duplicate_window_ns=2 * SEC), 2)
    arr["clock"][b.C_TS] = midnight - SEC // 2
    v.buy(ctx, 0, 1)
    v.buy(ctx, 0, 2)
    assert rs.check(ctx) == 0
    arr["n_requests"][0] = 0
    arr["clock"][b.C_TS] = midnight + SEC // 4  # 0.75 s later, on the next day
    rate, dup = v.buy(ctx, 0, 3), v.buy(ctx, 0, 1)
    assert rs.check(ctx) == 2
    assert rejections(arr)[rate] == TEXT[o.R_RISK_RATE]
    assert rejections(arr)[dup] == TEXT[o.R_RISK_DUPLICATE]


def test_duplicates_within_the_window() -> None:
    ctx, arr = make()
    rs = RiskState(RiskLimits(duplicate_window_ns=SEC), 2)
    a = v.buy(ctx, 0, 2)
    again = v.buy(ctx, 0, 2)  # market orders: NaN prices compare equal
    other_qty = v.buy(ctx, 0, 3)
    other_asset = v.buy(ctx, 1, 2)
    lim = v.submit(ctx, 0, 2, v.LIMIT, 99.0)
    other_price = v.submit(ctx, 0, 2, v.LIMIT, 99.5)
    lim_again = v.submit(ctx, 0, 2, v.LIMIT, 99.0)
    assert rs.check(ctx) == 2
    assert ids(arr) == [a, other_qty, other_asset, lim, other_price]
    assert rejections(arr) == {again: TEXT[o.R_RISK_DUPLICATE], lim_again: TEXT[o.R_RISK_DUPLICATE]}
    arr["n_requests"][0] = 0
    arr["clock"][b.C_TS] = T0 + SEC  # at the window's edge: still a duplicate
    edge = v.buy(ctx, 0, 2)
    assert rs.check(ctx) == 1 and edge in rejections(arr)
    arr["clock"][b.C_TS] = T0 + SEC + 1
    later = v.buy(ctx, 0, 2)
    assert rs.check(ctx) == 0 and ids(arr) == [later]


def test_duplicate_guard_remembers_the_last_32_orders() -> None:
    ctx, arr = make()
    rs = RiskState(RiskLimits(duplicate_window_ns=60 * SEC), 2)
    for i in range(rk.DUP_SLOTS):
        v.buy(ctx, 0, 1.0 + i)
    first_again = v.buy(ctx, 0, 1.0)
    assert rs.check(ctx) == 1 and first_again in rejections(arr)
    arr["n_requests"][0] = 0
    v.buy(ctx, 0, 100.0)  # the 33rd: the first falls out of the guard's memory
    second_again, last_again, forgotten = v.buy(ctx, 0, 2.0), v.buy(ctx, 0, 32.0), v.buy(ctx, 0, 1.0)
    assert rs.check(ctx) == 2 and {second_again, last_again} <= set(rejections(arr)) and forgotten not in rejections(arr)


# ---------------------------------------------------------------------------------------------
# States, kill switch, loss stops


def test_malformed_orders_are_left_to_the_venue() -> None:
    ctx, arr = make()
    rs = RiskState(RiskLimits(max_order_qty=1, max_position=1, max_gross_notional=1, price_band_bps=1), 2)
    typ, price, qty = v.submit(ctx, 0, 1, 9), v.submit(ctx, 0, 1, v.LIMIT), v.buy(ctx, 0, 0.0)
    asset = v.buy(ctx, 0.5, 1)
    assert rs.check(ctx) == 0 and ids(arr) == [typ, price, qty, asset]
    b.end_bar_nb(ctx)
    assert rejections(arr) == {typ: TEXT[o.R_TYPE], price: TEXT[o.R_PRICE], qty: TEXT[o.R_QTY], asset: TEXT[o.R_ASSET]}


def test_reducing_allows_only_reductions_without_flips() -> None:
    ctx, arr = make()
    b._account_nb(ctx, 0, 10.0, 100.0, 0.0)  # bought 10 at 100
    rs = RiskState(RiskLimits(), 2)
    rs.set_state("reducing")
    assert rs.state == "reducing"
    down = v.sell(ctx, 0, 4)
    flat = v.sell(ctx, 0, 6)  # 10 - 4 - 6 = 0: allowed
    past = v.sell(ctx, 0, 1)  # would flip with the ones before
    up = v.buy(ctx, 0, 1)
    other = v.buy(ctx, 1, 1)  # flat asset: nothing to reduce
    bad = v.buy(ctx, 7, 1)  # malformed: left to the venue
    cxl = v.cancel(ctx, 555)
    assert rs.check(ctx) == 3
    assert ids(arr) == [down, flat, bad, cxl]
    red = TEXT[o.R_RISK_REDUCING]
    assert rejections(arr) == {past: red, up: red, other: red}
    b.end_bar_nb(ctx)
    assert rejections(arr)[bad] == TEXT[o.R_ASSET] and rejections(arr)[cxl] == TEXT[o.R_UNKNOWN_ORDER]


def test_reducing_short_counts_open_buys() -> None:
    ctx, arr = make()
    arr["position"][0] = -5.0
    rs = RiskState(RiskLimits(), 2)
    v.submit(ctx, 0, 3, v.LIMIT, 90.0)
    rs.check(ctx)
    b.end_bar_nb(ctx)
    rs.set_state(rk.REDUCING)
    ok, flip = v.buy(ctx, 0, 2), v.buy(ctx, 0, 1)
    assert rs.check(ctx) == 1 and ids(arr) == [ok] and flip in rejections(arr)


def test_halted_allows_only_cancels_and_set_state_checks() -> None:
    ctx, arr = make()
    rs = RiskState(RiskLimits(), 2)
    rs.set_state(rk.HALTED)
    x = v.buy(ctx, 0, 1)
    junk = v.submit(ctx, 5, 0.0)  # rejected too while halted
    c = v.cancel(ctx, 3)
    assert rs.check(ctx) == 2 and ids(arr) == [c]
    assert rejections(arr) == {x: TEXT[o.R_RISK_HALTED], junk: TEXT[o.R_RISK_HALTED]}
    assert "halted" in repr(rs) and "only cancels" in repr(rs)
    for bad in ("paused", 3, True, -1):
        with pytest.raises(ConfigError, match="must be one of"):
            rs.set_state(bad)
    rs.set_state(0)
    assert rs.state == "active"


def test_kill_switch_cancels_open_orders_and_halts() -> None:
    ctx, arr = make()
    rs = RiskState(RiskLimits(max_position=100), 2)
    a = v.submit(ctx, 0, 2, v.LIMIT, 90.0)
    entry = v.bracket(ctx, 1, 3, take_profit=60.0, stop_loss=40.0, limit=45.0)
    rs.check(ctx)
    b.end_bar_nb(ctx)
    assert len(kinds(arr, o.ACCEPTED)) == 4 and arr["n_orders"][0] == 4
    assert rs.kill(ctx) == 4
    assert arr["n_orders"][0] == 0 and rs.state == "halted"
    cancelled = {int(e[o.E_ORDER]): TEXT[int(e[o.E_REASON])] for e in arr["events"][: arr["n_events"][0]] if e[o.E_KIND] == o.CANCELLED}
    assert cancelled[a] == cancelled[entry] == TEXT[o.R_RISK_HALTED] and len(cancelled) == 4
    later = v.buy(ctx, 0, 1)
    assert rs.check(ctx) == 1 and rejections(arr)[later] == TEXT[o.R_RISK_HALTED]
    assert rk.kill_switch_nb(ctx, rs.array) == 0


def test_daily_loss_halts_resets_at_midnight_and_stays_halted() -> None:
    ctx, arr = make(cash=1000.0)
    arr["position"][0] = 10.0  # equity 2000
    rs = RiskState(RiskLimits(max_daily_loss=100), 2)
    assert rs.check(ctx) == 0 and rs.array[rk.S_DAY_START] == 2000.0
    arr["mark"][0] = 91.0  # -90
    v.buy(ctx, 1, 1)
    assert rs.check(ctx) == 0 and rs.state == "active"
    arr["n_requests"][0] = 0
    arr["mark"][0] = 89.0  # -110: halts, and the order of this call is rejected
    x = v.buy(ctx, 1, 1)
    assert rs.check(ctx) == 1 and rs.state == "halted"
    assert rejections(arr)[x] == TEXT[o.R_RISK_LOSS]
    assert "max_daily_loss" in repr(rs)
    arr["clock"][b.C_TS] = (T0 // NS_DAY + 1) * NS_DAY + 5  # next UTC day
    arr["mark"][0] = 80.0
    y = v.buy(ctx, 1, 1)
    assert rs.check(ctx) == 1 and rs.state == "halted" and rejections(arr)[y] == TEXT[o.R_RISK_LOSS]
    assert rs.array[rk.S_DAY_START] == 1800.0
    rs.set_state("active")
    z = v.buy(ctx, 1, 1)
    assert rs.check(ctx) == 0 and ids(arr) == [z]


def test_drawdown_from_the_peak_and_rebase() -> None:
    ctx, arr = make(cash=0.0)
    arr["position"][0] = 10.0
    rs = RiskState(RiskLimits(max_drawdown=0.1), 2)
    rs.check(ctx)
    arr["mark"][0] = 120.0  # peak 1200
    rs.check(ctx)
    arr["mark"][0] = 109.0  # 9.2 % down
    assert rs.check(ctx) == 0 and rs.state == "active" and rs.array[rk.S_PEAK] == 1200.0
    arr["mark"][0] = 107.0  # 10.8 %
    rs.check(ctx)
    assert rs.state == "halted" and rs.array[rk.S_CAUSE] == o.R_RISK_DRAWDOWN
    rs.set_state("active")  # still in the drawdown: halts again
    x = v.buy(ctx, 1, 1)
    assert rs.check(ctx) == 1 and rejections(arr)[x] == TEXT[o.R_RISK_DRAWDOWN]
    rs.set_state("active", rebase=True)
    y = v.buy(ctx, 1, 1)
    assert rs.check(ctx) == 0 and ids(arr) == [y] and rs.array[rk.S_PEAK] == 1070.0


def test_loss_stops_wait_for_a_price() -> None:
    ctx, arr = make(marks=(np.nan, 50.0))
    arr["position"][0] = 1.0
    rs = RiskState(RiskLimits(max_daily_loss=1, max_drawdown=0.5), 2)
    assert rs.check(ctx) == 0 and math.isnan(rs.array[rk.S_DAY_START]) and rs.state == "active"


def test_a_full_event_log_is_not_overrun() -> None:
    ctx, arr = make(capacity=2)
    rs = RiskState(RiskLimits(max_order_qty=1), 2)
    for _ in range(4):
        v.buy(ctx, 0, 2)
    assert rs.check(ctx) == 4 and arr["n_events"][0] == 2 and arr["n_requests"][0] == 0
    assert rs.counters()["rejected"] == 4


def test_limits_are_checked_and_laid_out() -> None:
    lim = RiskLimits(max_order_qty=1, max_order_notional=2, max_position=3, max_gross_notional=4, price_band_bps=5,
                     max_orders_per_second=6, duplicate_window_ns=7, max_daily_loss=8, max_drawdown=0.5)  # fmt: skip
    p = lim.params()
    assert p.shape == (rk.L_WIDTH,) and p[rk.L_MAX_RATE] == 6 and p[rk.L_DUP_WINDOW] == 7 and p[rk.L_MAX_DRAWDOWN] == 0.5
    assert list(p[:5]) == [1, 2, 3, 4, 5] and p[rk.L_MAX_DAILY_LOSS] == 8
    assert not RiskLimits().params().any()
    for kwargs, match in [
        ({"max_order_qty": -1}, "max_order_qty=-1 must be a finite number >= 0"),
        ({"max_position": math.nan}, "max_position=nan"),
        ({"price_band_bps": True}, "price_band_bps=True"),
        ({"max_daily_loss": "10"}, "max_daily_loss='10'"),
        ({"max_orders_per_second": 2.5}, "must be an int >= 0"),
        ({"duplicate_window_ns": -1}, "duplicate_window_ns=-1 must be an int"),
        ({"max_orders_per_second": 10**7}, "above 1,000,000"),
        ({"max_drawdown": 1.0}, r"fraction of peak equity: give a value in \(0, 1\)"),
    ]:
        with pytest.raises(ConfigError, match=match):
            RiskLimits(**kwargs)
    for n in (0, 2.0, True):
        with pytest.raises(ConfigError, match="n_assets"):
            rk.new_state(RiskLimits(), n)
    state = rk.new_state(RiskLimits(max_orders_per_second=4), 3)
    assert state.shape == (rk.S_HEADER + rk.RING_MIN + rk.DUP_SLOTS * rk.F_WIDTH + 6,)
    assert rk.new_state(RiskLimits(max_orders_per_second=100), 1)[rk.S_RING_SIZE] == 100
    assert "active: checked 0" in repr(RiskState(RiskLimits(), 1))
    assert list(RiskState(RiskLimits(), 1).counters())[3:] == list(TEXT[o.R_RISK_ORDER_SIZE : o.R_RISK_LAST + 1])


def test_compiled_callers_get_the_same_filter() -> None:
    if numba.config.DISABLE_JIT:
        pytest.skip(reason="the compiled caller exists only with the JIT on")

    @numba.njit
    def on_event(ctx, params, state, counters):
        v.buy(ctx, 0, 10.0)
        v.buy(ctx, 0, 1.0)
        return rk.check_requests_nb(ctx, params, state, counters)

    ctx, arr = make()
    rs = RiskState(RiskLimits(max_order_qty=5), 2)
    assert on_event(ctx, rs.params, rs.array, rs.counts) == 1 and ids(arr) == [1]


# ---------------------------------------------------------------------------------------------
# Property: whatever the venue accepts satisfies every limit, checked independently

N_ASSETS = 3
TYPES = (o.MARKET, o.LIMIT, o.STOP, o.STOP_LIMIT)
STOPS = (o.R_RISK_LOSS, o.R_RISK_DRAWDOWN)


class Checker:
    """The rules, written again in plain Python from the documentation, with no shortcuts."""

    def __init__(self, limits: RiskLimits) -> None:
        self.lim = limits
        self.mode, self.cause = rk.ACTIVE, o.R_NONE
        self.day, self.day_start, self.peak = None, None, None
        self.passed: list[tuple] = []  # (time, asset, qty, type, limit, stop)

    def set_state(self, mode: int, rebase: bool) -> None:
        self.mode, self.cause = mode, (o.R_RISK_HALTED if mode == rk.HALTED else o.R_NONE)
        if rebase:
            self.day_start = self.peak = None

    def stops(self, ts: int, cash: float, position: np.ndarray, mark: np.ndarray) -> None:
        if ts // NS_DAY != self.day:
            self.day, self.day_start = ts // NS_DAY, None
        if not (self.lim.max_daily_loss or self.lim.max_drawdown):
            return
        equity = cash + sum(q * m for q, m in zip(position, mark, strict=True) if q != 0)
        if not math.isfinite(equity):
            return
        self.day_start = equity if self.day_start is None else self.day_start
        self.peak = equity if self.peak is None else max(self.peak, equity)
        if self.mode == rk.HALTED:
            return
        if self.lim.max_daily_loss and self.day_start - equity > self.lim.max_daily_loss:
            self.mode, self.cause = rk.HALTED, o.R_RISK_LOSS
        elif self.lim.max_drawdown and self.peak > 0 and self.peak - equity > self.lim.max_drawdown * self.peak:
            self.mode, self.cause = rk.HALTED, o.R_RISK_DRAWDOWN

    def violations(self, req: np.ndarray, ts: int, pending: list, position: np.ndarray, mark: np.ndarray, slack: float) -> set:
        """The limits ``req`` breaks (``slack``: relative margin on float comparisons)."""
        lim, out = self.lim, set()
        if self.mode == rk.HALTED:
            return {self.cause}
        a, qty, typ, limit, stop = req[o.O_ASSET], req[o.O_QTY], int(req[o.O_TYPE]), req[o.O_LIMIT], req[o.O_STOP]
        valid = _valid(req)
        window = lim.duplicate_window_ns or 0
        recent = self.passed[-rk.DUP_SLOTS :]
        if window and any(p[1:3] == (a, qty) and p[3] == typ and p[0] >= ts - window and _same(p[4], limit) and _same(p[5], stop) for p in recent):
            out.add(o.R_RISK_DUPLICATE)
        rate = lim.max_orders_per_second or 0
        if rate and sum(1 for p in self.passed if p[0] > ts - SEC) >= rate:
            out.add(o.R_RISK_RATE)
        if not valid:
            return out
        a = int(a)
        m, q = mark[a], position[a]

        def over(value: float, cap: float | None) -> bool:
            return bool(cap) and value > cap * (1 + slack)

        side = sum(p for x, p in pending if x == a and (p > 0) == (qty > 0))
        if self.mode == rk.REDUCING and not (q * qty < 0 and abs(q + side + qty) <= abs(q) and (q + side + qty) * q >= 0):
            out.add(o.R_RISK_REDUCING)
        if (lim.price_band_bps or lim.max_order_notional or lim.max_gross_notional) and not (0 < m < math.inf):
            out.add(o.R_RISK_NO_PRICE)
            return out
        if over(abs(qty), lim.max_order_qty):
            out.add(o.R_RISK_ORDER_SIZE)
        price = {o.MARKET: m, o.LIMIT: limit, o.STOP: stop, o.STOP_LIMIT: limit}[typ]
        if over(abs(qty) * price, lim.max_order_notional):
            out.add(o.R_RISK_NOTIONAL)
        prices = {o.MARKET: [], o.LIMIT: [limit], o.STOP: [stop], o.STOP_LIMIT: [stop, limit]}[typ]
        if any(over(abs(p - m) / m * 1e4, lim.price_band_bps) for p in prices):
            out.add(o.R_RISK_PRICE_BAND)
        if abs(q + side + qty) > abs(q + side) and over(abs(q + side + qty), lim.max_position):
            out.add(o.R_RISK_POSITION)
        before, after = _gross(pending, position, mark), _gross([*pending, (a, qty)], position, mark)
        if after > before and over(after, lim.max_gross_notional):  # unchanged worst sides: equal sums
            out.add(o.R_RISK_GROSS)
        return out


def _valid(req: np.ndarray) -> bool:
    """Whether the venue would take the order's asset, quantity and prices (NaN > 0 is False)."""
    typ, limit, stop = int(req[o.O_TYPE]), req[o.O_LIMIT], req[o.O_STOP]
    return req[o.O_ASSET] in range(N_ASSETS) and req[o.O_QTY] != 0 and (typ in (o.MARKET, o.STOP) or limit > 0) and (typ in (o.MARKET, o.LIMIT) or stop > 0)


def _same(x: float, y: float) -> bool:
    return x == y or (math.isnan(x) and math.isnan(y))


def _gross(pending: list, position: np.ndarray, mark: np.ndarray) -> float:
    total = 0.0
    for a in range(len(position)):
        if not math.isfinite(mark[a]):
            continue
        buys = sum(p for x, p in pending if x == a and p > 0)
        sells = sum(p for x, p in pending if x == a and p < 0)
        total += max(abs(position[a] + buys), abs(position[a] + sells)) * abs(mark[a])
    return total


LIMIT_CHOICES = {
    "max_order_qty": st.sampled_from([None, None, 4.0, 8.0]),
    "max_order_notional": st.sampled_from([None, None, 500.0, 900.0]),
    "max_position": st.sampled_from([None, None, 6.0, 12.0]),
    "max_gross_notional": st.sampled_from([None, None, 1500.0, 2500.0]),
    "price_band_bps": st.sampled_from([None, None, 100.0, 250.0]),
    "max_orders_per_second": st.sampled_from([None, None, 1, 3]),
    "duplicate_window_ns": st.sampled_from([None, None, SEC, 3 * SEC]),
    "max_daily_loss": st.sampled_from([None, None, None, 40.0, 150.0]),
    "max_drawdown": st.sampled_from([None, None, None, 0.01, 0.03]),
}
BPS = (-300, -150, -60, 0, 60, 150, 300)  # limit and stop prices, from the last price
request = st.one_of(
    st.tuples(st.just("cancel"), st.integers(0, 40)),
    st.tuples(st.just("again")),  # the last new order again, the same in every field
    st.tuples(st.just("new"), st.sampled_from([0, 0, 1, 1, 2, 2, N_ASSETS]), st.integers(-10, 10), st.sampled_from(TYPES), st.sampled_from(BPS), st.sampled_from(BPS)),
)
step = st.tuples(
    st.sampled_from([1, SEC // 3, SEC - 1, SEC, 2 * SEC, 6 * 3600 * SEC, NS_DAY]),  # time since the last event
    st.lists(st.integers(-200, 200), min_size=N_ASSETS, max_size=N_ASSETS),  # returns, bps
    st.sampled_from([None] * 24 + ["reducing", "active", "active", "rebase", "halted", "kill"]),  # operator
    st.lists(request, max_size=6),
)
PROPERTY = settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(limits=st.fixed_dictionaries(LIMIT_CHOICES), steps=st.lists(step, min_size=1, max_size=14), late=st.integers(0, 4),
       start=st.lists(st.integers(-15, 15), min_size=N_ASSETS, max_size=N_ASSETS))  # fmt: skip
def test_what_reaches_the_venue_satisfies_every_limit(limits, steps, late, start) -> None:
    lim = RiskLimits(**limits)
    n = len(steps)
    ts = T0 - 30 * SEC + np.cumsum([s[0] for s in steps]).astype(np.int64)
    close = 100.0 * np.cumprod(1 + np.array([s[1] for s in steps]) / 1e4, axis=0)
    ohlcv = np.empty((n, N_ASSETS, 5))
    ohlcv[:, :, b.CLOSE] = close
    ohlcv[:, :, b.OPEN] = np.vstack([close[:1], close[:-1]])
    ohlcv[:, :, b.HIGH] = ohlcv[:, :, [b.OPEN, b.CLOSE]].max(axis=2) * 1.004
    ohlcv[:, :, b.LOW] = ohlcv[:, :, [b.OPEN, b.CLOSE]].min(axis=2) * 0.996
    ohlcv[:, :, b.VOLUME] = 1e6
    ohlcv[:late, N_ASSETS - 1] = np.nan  # an asset without a price at first
    ctx = b.new_ctx(N_ASSETS, n, ExecutionModel().params(), cash=5000.0, max_requests=8)
    arr = b.arrays(ctx)
    for a, q in enumerate(start[: N_ASSETS - 1]):  # positions bought at 100 before the run
        if q:
            b._account_nb(ctx, a, float(q), 100.0, 0.0)
    rs, model = RiskState(lim, N_ASSETS), Checker(lim)
    ids_seen: list[int] = []
    last = (0, 1.0, o.MARKET, np.nan, np.nan)
    for t, (_, _, action, reqs) in enumerate(steps):
        b.begin_bar_nb(ctx, t, ts, ohlcv, np.empty((n, N_ASSETS, 0)))
        if action == "kill":
            rs.kill(ctx)
            model.set_state(rk.HALTED, rebase=False)
        elif action is not None:
            mode = {"reducing": rk.REDUCING, "active": rk.ACTIVE, "rebase": rk.ACTIVE, "halted": rk.HALTED}[action]
            rs.set_state(mode, rebase=action == "rebase")
            model.set_state(mode, rebase=action == "rebase")
        for r in reqs:
            if r[0] == "cancel":  # an open order, or any id seen (or not)
                live = arr["orders"][: arr["n_orders"][0], o.O_ID]
                pick = live if r[1] % 2 and live.size else ids_seen
                v.cancel(ctx, int(pick[r[1] % len(pick)]) if len(pick) else r[1])
                continue
            if r[0] == "new":
                _, a, qty, typ, lb, sb = r
                m = arr["mark"][a] if a < N_ASSETS else 100.0
                last = (a, float(qty), typ, m * (1 + lb / 1e4), m * (1 + sb / 1e4))
            ids_seen.append(v.submit(ctx, *last))
        # what the checker sees: the context right before the filter
        now, cash = int(arr["clock"][b.C_TS]), float(arr["cash"][0])
        position, mark = arr["position"].copy(), arr["mark"].copy()
        requests = arr["requests"][: arr["n_requests"][0]].copy()
        live = arr["orders"][: arr["n_orders"][0]]
        pending = [(int(row[o.O_ASSET]), row[o.O_QTY], row[o.O_ID]) for row in live if row[o.O_KIND] != b.DEAD]
        n_events = int(arr["n_events"][0])
        rejected = rs.check(ctx)
        model.stops(now, cash, position, mark)
        assert (rs.array[rk.S_STATE], rs.array[rk.S_CAUSE]) == (model.mode, model.cause)
        logged = arr["events"][n_events : arr["n_events"][0]]
        assert len(logged) == rejected and (logged[:, o.E_KIND] == o.REJECTED).all()
        reasons = iter(logged[:, o.E_REASON].astype(int))
        left = [(r[o.O_ID], r[o.O_KIND]) for r in arr["requests"][: arr["n_requests"][0]]]
        kept, passed = 0, set()
        for req in requests:
            oid = req[o.O_ID]
            if req[o.O_KIND] == o.RQ_CANCEL:
                freed = [p for p in pending if p[2] == oid]
                if freed:
                    pending.remove(freed[0])
                assert left[kept] == (oid, o.RQ_CANCEL)
                kept += 1
                continue
            pairs = [(x, p) for x, p, _ in pending]
            sure = model.violations(req, now, pairs, position, mark, 1e-9)
            maybe = model.violations(req, now, pairs, position, mark, -1e-9)
            if kept < len(left) and left[kept] == (oid, o.RQ_NEW):
                assert not sure, (oid, [TEXT[x] for x in sure])
                kept += 1
                passed.add(oid)
                model.passed.append((now, req[o.O_ASSET], req[o.O_QTY], int(req[o.O_TYPE]), req[o.O_LIMIT], req[o.O_STOP]))
                if _valid(req):
                    pending.append((int(req[o.O_ASSET]), req[o.O_QTY], oid))
            else:
                reason = next(reasons)
                assert reason in maybe, (oid, TEXT[reason], [TEXT[x] for x in maybe])
        assert kept == len(left)
        before = int(arr["n_events"][0])
        b.end_bar_nb(ctx)
        ev = arr["events"][before : arr["n_events"][0]]
        assert set(ev[ev[:, o.E_KIND] == o.ACCEPTED, o.E_ORDER]) <= passed
